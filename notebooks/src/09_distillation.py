# %% [markdown]
# # 09 · Knowledge distillation
#
# A large model that works well is often too slow or too big to deploy. **Knowledge distillation**
# (Hinton, Vinyals & Dean, 2015) trains a small **student** to imitate a large **teacher**: not just
# its answers, but its whole probability distribution over the classes, softened by a **temperature**.
# The hope is a student better than the same small network trained on the labels alone.
#
# **In this notebook you will**
# - train a teacher (chapter 04's LeNet CNN) and a student with over 10x fewer parameters;
# - see the teacher's "dark knowledge": its probabilities for one digit at several temperatures;
# - derive the distillation loss $\alpha\,\mathrm{CE} + (1-\alpha)\,T^2\,\mathrm{KL}$, and check
#   numerically why the factor $T^2$ is there;
# - compare, seed by seed, a student trained from scratch with a distilled one and with two controls
#   (label smoothing, the simpler rival of soft targets; the teacher's data augmentation), every
#   setting chosen on validation and each final model tested once;
# - estimate the share of the teacher–student gap that distillation recovers, with a bootstrap interval,
#   beside Hinton et al.'s 91 %, and see how many test images a precise answer would need;
# - fill a compression table (parameters, bytes on disk, CPU latency, accuracy), play with a
#   temperature slider, and write the same `Distiller` in Keras with its own `train_step`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from lib import check, data, distill, results
from lib.cnn import LeNet, ShiftAugment
from lib.device import seed_everything, setup_notebook
from lib.recipes import one_cycle, train_classifier
from lib.train import count_parameters

device = setup_notebook(seed=0)


X_train, y_train = (torch.tensor(a, device=device) for a in data.digits("train", images=True))
X_val, y_val = (torch.tensor(a, device=device) for a in data.digits("val", images=True))
X_test, y_test = (torch.tensor(a, device=device) for a in data.digits("test", images=True))
print(f"train {tuple(X_train.shape)}, validation {tuple(X_val.shape)}, test {tuple(X_test.shape)}")

# %% [markdown]
# ## 1. Intuition: what a label does not say
#
# The label of an image of a 7 says "7" and nothing else. A trained network says more: *7, with a
# little probability of 1 and even less of 9, and certainly not 0*. These small probabilities on the
# wrong classes — Hinton called them **dark knowledge** — describe how the teacher sees the similarity
# between classes, and they differ from image to image. A student that learns to reproduce them gets
# many numbers per image instead of one, which is exactly what a small model trained on little data
# needs.
#
# ## 2. The teacher
#
# The teacher is chapter 04's CNN, `lib.cnn.LeNet`: two conv blocks (3x3 convolutions, batch norm,
# ReLU, max-pooling) and a two-layer classifier with dropout. It is trained here on the 1,077 training
# digits with chapter 04's light augmentation — every training image shifted by up to one pixel, a new
# random shift in every batch (`lib.cnn.ShiftAugment`) — with the course's classifier recipe,
# `lib.recipes.train_classifier` (chapters 03–04), here with a **one-cycle** learning rate
# (`lib.recipes.one_cycle`: it rises from 1/25 of its peak over the first 30% of the steps, then decays
# to almost 0) and no label smoothing, since the students below learn from the teacher's own
# probabilities. Beside it, the simplest baselines: always answering the most frequent training class,
# and a logistic regression on the 64 pixels. Everything is measured on the **validation** split; the
# test split is used once per final model, in section 5.

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
teacher = LeNet().to(device)
train_classifier(teacher, X_train, y_train, epochs=40, lr=3e-3, batch_size=64, weight_decay=1e-2,
                 label_smoothing=0.0, schedule=one_cycle(), augment=ShiftAugment(max_shift=1, seed=0), seed=0,
                 progress=False)
teacher_params = count_parameters(teacher)
teacher_val = distill.accuracy(teacher, X_val, y_val)
majority_val = float((y_val == torch.bincount(y_train).argmax()).float().mean())
pixels = lambda X: X.flatten(1).cpu().numpy()
logreg = LogisticRegression(max_iter=2000).fit(pixels(X_train), y_train.cpu().numpy())
logreg_val = logreg.score(pixels(X_val), y_val.cpu().numpy())
print(f"teacher: {teacher_params:,} parameters, validation accuracy {100 * teacher_val:.1f}% "
      f"({round((1 - teacher_val) * len(y_val))} errors on {len(y_val)} images)")
print(f"baselines: majority class {100 * majority_val:.1f}%, logistic regression on pixels {100 * logreg_val:.1f}%")

# %% [markdown]
# The printed accuracy is a *measured* number: on another CPU its last digits, and after 40 epochs of
# training perhaps a validation image or two, come out differently, so the tests do not compare it as
# text. `lib.results.expect` checks it instead: it must lie within a tolerance of the value stored here
# and meet the bar (a strong CNN: at least 98.5 %). Every tolerance in this chapter is three times the
# standard deviation of the difference between two runs that differ only by their seed (for a single
# model, estimated from the binomial spread of an accuracy on 360 images; for means over seeds, from
# the seeds' own spread, measured by `tools/seed_spread.py distillation`), so a machine that behaves
# like a new seed passes.

# %%
results.expect("teacher validation accuracy", 100 * teacher_val, 99.4, results.tolerance_for_accuracy(99.4, 360),
               unit=" %", at_least=98.5)

# %% [markdown]
# ## 3. Soft targets and temperature
#
# A classifier turns its **logits** $v_1, \dots, v_N$ ($N = 10$ classes) into probabilities with the
# softmax. Distillation divides the logits by a **temperature** $T > 0$ first:
#
# $$p_i^{(T)} = \frac{\exp(v_i / T)}{\sum_{j=1}^{N} \exp(v_j / T)}.$$
#
# $T = 1$ is the usual softmax. A large $T$ flattens the distribution: the ratios between the small
# probabilities stay ordered the same way but become visible. As $T \to 0$ it tends to a one-hot vector
# on the largest logit. From scratch, and checked against `lib.distill.soften`:

# %%
def soften_scratch(logits: torch.Tensor, T: float) -> torch.Tensor:
    z = logits / T
    z = z - z.max(dim=1, keepdim=True).values      # subtract the max: exp never overflows
    e = z.exp()
    return e / e.sum(dim=1, keepdim=True)


teacher_val_logits = distill.logits_of(teacher, X_val)
same_lib = same_torch = True
for T in (0.5, 1.0, 4.0, 20.0):
    same_lib &= torch.allclose(soften_scratch(teacher_val_logits, T), distill.soften(teacher_val_logits, T), atol=1e-6)
    same_torch &= torch.allclose(soften_scratch(teacher_val_logits, T), F.softmax(teacher_val_logits / T, dim=1),
                                 atol=1e-6)
assert same_lib and same_torch
print(f"soften_scratch == lib.distill.soften (to 1e-6): {same_lib}")
print(f"soften_scratch == F.softmax(logits / T) (to 1e-6): {same_torch}")

# %% [markdown]
# The teacher's probabilities for one validation digit at four temperatures (the test images stay unseen
# until the final evaluation). We pick the correctly classified validation image whose runner-up class gets the most probability at $T = 1$ — a digit the teacher finds
# ambiguous.

# %%
# NBVAL_IGNORE_OUTPUT
probs1 = distill.soften(teacher_val_logits, 1.0)
correct = probs1.argmax(1) == y_val
runner_up = probs1.topk(2, dim=1).values[:, 1]
example = int(torch.where(correct, runner_up, torch.zeros_like(runner_up)).argmax())
top = probs1[example].argsort(descending=True)[:3].tolist()
print(f"validation image {example}: label {int(y_val[example])}; the teacher's top three classes at T = 1: {top}")

temperatures = [1, 2, 5, 10]
fig, axes = plt.subplots(1, len(temperatures) + 1, figsize=(11, 2.8), layout="constrained",
                         gridspec_kw={"width_ratios": [0.6] + [1] * len(temperatures)})
axes[0].imshow(X_val[example, 0].cpu(), cmap="gray_r")
axes[0].set(title=f"validation image (label {int(y_val[example])})", xticks=[], yticks=[])
axes[0].grid(False)
for ax, T in zip(axes[1:], temperatures):
    ax.bar(range(10), distill.soften(teacher_val_logits[example:example + 1], T)[0].cpu())
    ax.set(title=f"T = {T}", xlabel="class", xticks=range(10), yscale="log", ylim=(1e-6, 1.5))
    if T != temperatures[0]:
        ax.tick_params(labelleft=False)
axes[1].set_ylabel("teacher probability")
fig.suptitle("Dark knowledge: one digit's soft targets at several temperatures (log scale)")
plt.show()

# %% [markdown]
# ## 4. The distillation loss
#
# Let $z$ be the student's logits and $q^{(T)} = \operatorname{softmax}(z / T)$ its softened
# probabilities; $p^{(T)}$ the teacher's; $y$ the true label. The student minimises
#
# $$\mathcal L = \alpha\, \mathrm{CE}\big(y, q^{(1)}\big) + (1 - \alpha)\, T^2\, \mathrm{KL}\big(p^{(T)} \,\big\|\, q^{(T)}\big),
# \qquad \mathrm{KL}(p \,\|\, q) = \sum_i p_i \log \frac{p_i}{q_i},$$
#
# a mix, weighted by $\alpha \in [0, 1]$, of the usual cross-entropy with the labels and the KL
# divergence from the teacher's soft targets (the KL equals the cross-entropy with the soft targets
# minus the teacher's entropy, a constant for the student, so the two give the same gradients).
#
# **Why $T^2$?** Differentiate the KL term with respect to a student logit (the softmax-with-cross-entropy
# derivative, with the extra $1/T$ of the chain rule through $z/T$):
#
# $$\frac{\partial\, \mathrm{KL}(p^{(T)} \| q^{(T)})}{\partial z_i} = \frac{1}{T}\big(q_i^{(T)} - p_i^{(T)}\big).$$
#
# For large $T$, $e^{x} \approx 1 + x$ gives $q_i^{(T)} \approx \frac{1 + z_i/T}{N + \sum_j z_j / T}$; if the
# logits have mean zero (subtracting a constant from all logits changes nothing), $q_i^{(T)} \approx
# \frac{1}{N} + \frac{z_i}{NT}$, and likewise for $p$. So
#
# $$\frac{\partial\, \mathrm{KL}}{\partial z_i} \approx \frac{z_i - v_i}{N\,T^2}.$$
#
# The soft term's gradients shrink like $1/T^2$; multiplying by $T^2$ keeps them the same size whatever
# the temperature, so $\alpha$ keeps its meaning when $T$ changes. The formula also shows that at high
# temperature distillation becomes **matching the logits**: it is the gradient of $\frac{1}{2N}\sum_i
# (z_i - v_i)^2$. The code below writes the loss from scratch, checks it against
# `lib.distill.distillation_loss`, and measures the gradient at several temperatures.

# %%
def distillation_loss_scratch(z, v, y, T, alpha):
    hard = F.cross_entropy(z, y)
    p = soften_scratch(v, T)
    kl = (p * (p.log() - soften_scratch(z, T).log())).sum(dim=1).mean()
    return alpha * hard + (1 - alpha) * T**2 * kl


g = torch.Generator().manual_seed(0)
z = torch.randn(6, 10, generator=g, dtype=torch.float64)
v = 3 * torch.randn(6, 10, generator=g, dtype=torch.float64)
y = torch.randint(0, 10, (6,), generator=g)
close = all(torch.allclose(distillation_loss_scratch(z, v, y, T, alpha),
                           distill.distillation_loss(z, v, y, T=T, alpha=alpha), atol=1e-10)
            for T, alpha in [(1.0, 0.5), (4.0, 0.1), (10.0, 0.0)])
assert close
print(f"distillation_loss_scratch == lib.distill.distillation_loss (to 1e-10): {close}")

# %%
z0, v0 = z - z.mean(1, keepdim=True), v - v.mean(1, keepdim=True)    # zero-mean logits
T_grid = [1, 2, 4, 8, 16, 32, 64]
grad_kl, grad_scaled = [], []
for T in T_grid:
    zz = z0.clone().requires_grad_(True)
    distill.distillation_loss(zz, v0, y, T=T, alpha=0.0).backward()     # = T^2 * KL
    grad_scaled.append(float(zz.grad.norm()))
    grad_kl.append(grad_scaled[-1] / T**2)                               # the KL alone
limit = float(((z0 - v0) / 10 / len(z0)).norm())                       # (z - v) / N, batch mean
print(f"T^2 * gradient at T = 64: {grad_scaled[-1]:.4f}; high-temperature limit (z - v)/N: {limit:.4f}")
assert abs(grad_scaled[-1] - limit) < 0.01 * limit

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.loglog(T_grid, grad_kl, "o-", label="KL alone: falls like $1/T^2$")
ax.loglog(T_grid, grad_scaled, "s-", label="$T^2 \\cdot$ KL: flat")
ax.axhline(limit, color="gray", ls="--", label="limit $(z - v)/N$")
ax.set(xlabel="temperature $T$", ylabel="gradient norm w.r.t. student logits",
       title="Why the loss has a factor $T^2$")
ax.legend()
plt.show()

# %% [markdown]
# ## 5. The student, four ways
#
# The student has the teacher's architecture, shrunk: `LeNet(channels=(8, 16), hidden=32, dropout=0)`
# — 8 and 16 filters instead of 32 and 64, 32 hidden units instead of 128. Every student sees the same
# 1,077 training images for 30 epochs with the same recipe (AdamW, peak learning rate $10^{-2}$,
# batches of 256, one-cycle schedule); a seed fixes its initial weights and its batch order, so the
# students of one seed differ only in what they learn from. There are four **arms**:
#
# - **scratch**: the labels alone (cross-entropy);
# - **distilled**: the distillation loss with $\alpha = 0.1$ (mostly soft targets, as Hinton et al.
#   recommend) on the teacher's logits for the training images, computed once;
# - **label smoothing**: the labels, softened the same way for every image — the one-hot target times
#   $1 - \varepsilon$, plus $\varepsilon / 10$ on every class. It is the simpler rival of soft targets: if
#   distillation only helped because its targets are not one-hot, smoothing would do as well, with no
#   teacher at all;
# - **augmented**: the labels, with the teacher's one-pixel shifts. The teacher saw shifted images and
#   the students do not; if the distilled student's edge were only the teacher's augmentation passed on
#   through its logits, giving the student the augmentation directly would match it.

# %%
def make_student() -> torch.nn.Module:
    return LeNet(channels=(8, 16), hidden=32, dropout=0.0).to(device)


student_params = count_parameters(make_student())
ratio = teacher_params / student_params
print(f"student: {student_params:,} parameters; the teacher has {ratio:.1f}x more")
assert ratio >= 10, "the student must have at least 10x fewer parameters than the teacher"

teacher_train_logits = distill.logits_of(teacher, X_train)
STUDENT = dict(epochs=30, lr=1e-2, batch_size=256, weight_decay=0.0, schedule=one_cycle())
ALPHA = 0.1
runs = {}  # (arm, setting, seed) -> trained student, so that no run is repeated


def student_run(seed: int, arm: str = "scratch", setting: float | None = None) -> torch.nn.Module:
    """A student of one arm: "scratch", "distilled" (setting = T), "smoothed" (setting = epsilon) or
    "augmented"; trained once per (arm, setting, seed) and cached."""
    key = (arm, setting, seed)
    if key not in runs:
        extra = {"label_smoothing": 0.0}
        if arm == "distilled":
            extra.update(soft_targets=teacher_train_logits, soft_loss=distill.distillation(setting, ALPHA))
        elif arm == "smoothed":
            extra["label_smoothing"] = setting
        elif arm == "augmented":
            extra["augment"] = ShiftAugment(max_shift=1, seed=seed)
        torch.manual_seed(seed)
        model = make_student()
        train_classifier(model, X_train, y_train, seed=seed, progress=False, **STUDENT, **extra)
        runs[key] = model
    return runs[key]


# %% [markdown]
# ### Choosing $T$ and $\varepsilon$ on validation
#
# Distillation has a knob, the temperature; label smoothing has one too, $\varepsilon$. Each gets the
# same tuning effort: three settings, three seeds each (seeds 0, 1, 2, the scratch and augmented
# students' seeds too), scored on the validation split. For each setting we print the mean over the
# seeds and its **standard error** (s.e.), the standard deviation over the seeds divided by $\sqrt 3$:
# how much the mean itself would move with three other seeds.

# %%
# NBVAL_IGNORE_OUTPUT
SEEDS = range(3)
sweep_T, sweep_eps = [2, 4, 8], [0.1, 0.2, 0.4]


def val_accuracy(arm: str, setting: float | None = None) -> np.ndarray:
    """Validation accuracy (%) of the arm's students, one per seed: (3,)."""
    return np.array([100 * distill.accuracy(student_run(s, arm, setting), X_val, y_val) for s in SEEDS])


def se(a: np.ndarray) -> float:
    return float(a.std(ddof=1) / np.sqrt(len(a)))


val = {("scratch", None): val_accuracy("scratch"), ("augmented", None): val_accuracy("augmented")}
val.update({("distilled", T): val_accuracy("distilled", T) for T in sweep_T})
val.update({("smoothed", eps): val_accuracy("smoothed", eps) for eps in sweep_eps})
for (arm, setting), acc in val.items():
    name = arm if setting is None else f"{arm}, {'T' if arm == 'distilled' else 'eps'} = {setting}"
    print(f"{name:24s} validation accuracy {acc.mean():.2f} ± {se(acc):.2f}%  (mean ± s.e.; seeds {np.round(acc, 1)})")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True, layout="constrained")
for ax, arm, grid, label in [(axes[0], "distilled", sweep_T, "temperature $T$ (α = 0.1)"),
                             (axes[1], "smoothed", sweep_eps, "label smoothing $\\varepsilon$")]:
    ax.errorbar(grid, [val[arm, g].mean() for g in grid], [se(val[arm, g]) for g in grid], fmt="o-", capsize=3,
                label=f"{arm} (3 seeds, mean ± s.e.)")
    for name, style in [("scratch", "--"), ("augmented", ":")]:
        ax.axhline(val[name, None].mean(), color="gray", ls=style, label=f"{name} (same 3 seeds)")
    ax.set(xscale="log", xticks=grid, xticklabels=grid, xlabel=label)
    ax.minorticks_off()
    ax.legend(fontsize=8)
axes[0].set_ylabel("validation accuracy (%)")
fig.suptitle("Tuning each arm's knob on validation")
plt.show()

# %% [markdown]
# In the stored run the three temperatures' means span 0.65 points and the three smoothings' 0.28, with
# standard errors of 0.2–0.5 points: 360 validation images and three seeds cannot rank the settings
# reliably, and the one with the highest mean is partly luck (another CPU can crown another). So we do
# not take the highest mean. We go through the settings in order of simplicity — smallest temperature,
# lightest smoothing first — and take the **first whose mean is within one standard error of the best**
# (the "one-standard-error rule", `results.choose_within_se`). Since the rule can still change its answer
# when a setting sits near the margin, the check accepts every setting the stored run could not tell
# apart; the choice made on this machine is printed first.

# %%
# NBVAL_IGNORE_OUTPUT
best_T = results.choose_within_se(sweep_T, [val["distilled", T].mean() for T in sweep_T],
                                  [se(val["distilled", T]) for T in sweep_T])
best_eps = results.choose_within_se(sweep_eps, [val["smoothed", e].mean() for e in sweep_eps],
                                    [se(val["smoothed", e]) for e in sweep_eps])
print(f"chosen on this machine: T = {best_T}, eps = {best_eps}")

# %%
results.expect_choice("temperature chosen on validation (first within one s.e. of the best)", best_T, [4, 8])
results.expect_choice("label smoothing chosen on validation (first within one s.e. of the best)", best_eps,
                      [0.1, 0.2, 0.4])

# %% [markdown]
# ### Which arm is better? Decided on validation
#
# The comparisons are **paired**: for each seed, an arm's result minus the scratch student's of the same
# seed (same initial weights, same batches). By the course's rule (`results.paired_comparison`) an arm
# is **better** if the mean paired difference lies more than two standard errors from zero; otherwise
# the honest word is **tie**. Like every choice, this is decided on validation. The chosen $T$ and
# $\varepsilon$ were picked on these same validation runs, which flatters the distilled and smoothed arms
# a little; the test numbers further down are free of that.

# %%
# NBVAL_IGNORE_OUTPUT
pairs = {("distilled", "scratch"): (val["distilled", best_T], val["scratch", None]),
         ("smoothed", "scratch"): (val["smoothed", best_eps], val["scratch", None]),
         ("augmented", "scratch"): (val["augmented", None], val["scratch", None]),
         ("distilled", "smoothed"): (val["distilled", best_T], val["smoothed", best_eps])}
verdicts = {}
for (a, b), (acc_a, acc_b) in pairs.items():
    paired = results.paired_comparison(acc_a, acc_b, names=(a, b))
    verdicts[a, b] = paired.verdict
    print(f"{a} − {b} (validation, points): {paired}; {a} ahead on {int((acc_a > acc_b).sum())} of 3 seeds")

# %%
results.expect_choice("distilled vs scratch on validation", verdicts["distilled", "scratch"],
                      ["distilled better", "tie"])
results.expect_choice("smoothed vs scratch on validation", verdicts["smoothed", "scratch"], ["tie"])
results.expect_choice("augmented vs scratch on validation", verdicts["augmented", "scratch"], ["tie"])
results.expect_choice("distilled vs smoothed on validation", verdicts["distilled", "smoothed"],
                      ["distilled better", "tie"])

# %% [markdown]
# ### The final models, each tested once
#
# Every choice is made; now, and only now, each final model meets the test split, once: the teacher,
# and the three students of each arm (the distilled ones at the chosen $T$, the smoothed ones at the
# chosen $\varepsilon$). `test_correct` keeps, for each model, which of the 360 test images it gets
# right; every number below is computed from it. The paired differences are printed as measurements;
# the verdicts above stay those of validation.

# %%
# NBVAL_IGNORE_OUTPUT
@torch.no_grad()
def correct_on_test(model: torch.nn.Module) -> np.ndarray:
    """1 where the model classifies a test image correctly: (360,). Called once per final model."""
    return (distill.logits_of(model, X_test).argmax(1) == y_test).cpu().numpy()


final = {"scratch": ("scratch", None), f"distilled (T = {best_T})": ("distilled", best_T),
         f"smoothed (eps = {best_eps})": ("smoothed", best_eps), "augmented": ("augmented", None)}
test_correct = {"teacher": correct_on_test(teacher)[None]}
test_correct.update({name: np.stack([correct_on_test(student_run(s, *arm)) for s in SEEDS])
                     for name, arm in final.items()})
test_acc = {name: 100 * c.mean(1) for name, c in test_correct.items()}   # one accuracy per run (%)
distilled_name, smoothed_name = list(final)[1:3]

logreg_test = 100 * logreg.score(pixels(X_test), y_test.cpu().numpy())
print(f"{'model':24s} test accuracy (%, per seed)     mean ± std   paired difference from scratch (points)")
print(f"{'logistic regression':24s} {logreg_test:5.1f}")
print(f"{'teacher (1 run)':24s} {test_acc['teacher'][0]:5.1f}")
for name in final:
    acc = test_acc[name]
    line = f"{name:24s} {str(np.round(acc, 1)):27s} {acc.mean():5.2f} ± {acc.std(ddof=1):.2f}"
    if name != "scratch":
        gain = acc - test_acc["scratch"]
        line += f"   {gain.mean():+.2f} ± {se(gain):.2f} (s.e.), ahead on {int((gain > 0).sum())} of {len(gain)} seeds"
    print(line)
for rival in (smoothed_name, "augmented"):
    d = test_acc[distilled_name] - test_acc[rival]
    print(f"distilled − {rival}: {d.mean():+.2f} ± {se(d):.2f} points (paired, mean ± s.e.), "
          f"ahead on {int((d > 0).sum())} of {len(d)} seeds")

# %% [markdown]
# The checks: each arm's mean over three seeds lies within three times the spread of the difference of
# two such means (`results.tolerance_for_mean`, from the spread over five seeds measured by
# `tools/seed_spread.py distillation`: at most 0.9 points for one student's accuracy, 1.2 for a paired
# gain). The chapter's bar: the distilled student's mean accuracy is above the scratch student's.

# %%
results.expect("scratch student test accuracy, mean of 3 seeds", test_acc["scratch"].mean(), 97.0,
               results.tolerance_for_mean(0.9, 3), unit=" %")
results.expect("distilled student test accuracy, mean of 3 seeds", test_acc[distilled_name].mean(), 98.2,
               results.tolerance_for_mean(0.9, 3), unit=" %")
results.expect("distilled − scratch, paired mean over 3 seeds",
               (test_acc[distilled_name] - test_acc["scratch"]).mean(), 1.2, results.tolerance_for_mean(1.2, 3),
               unit=" points", at_least=0.0)
results.expect("smoothed student test accuracy, mean of 3 seeds", test_acc[smoothed_name].mean(), 98.1,
               results.tolerance_for_mean(0.9, 3), unit=" %")
results.expect("augmented student test accuracy, mean of 3 seeds", test_acc["augmented"].mean(), 96.7,
               results.tolerance_for_mean(0.9, 3), unit=" %")

# %% [markdown]
# **What the stored run shows** (the numbers above; another CPU behaves like other seeds). On validation,
# where the verdicts are taken, every comparison is a **tie** by the two-standard-error rule: the
# distilled student is ahead of its scratch twin by $+0.56 \pm 0.28$ points — exactly on the line of two
# standard errors — and of the smoothed one by $+0.65 \pm 0.46$; smoothing and augmentation are within
# their noise of scratch. On test, the distilled student's mean is above the scratch student's by
# $+1.20 \pm 0.88$ points (ahead on 2 of 3 seeds), the chapter's bar; but label smoothing, with no
# teacher, gains about as much ($+1.02 \pm 0.40$), and distilled minus smoothed is $+0.19 \pm 0.74$. The
# augmented student is no better than scratch on either split, so the teacher's shifts, handed to the
# student directly, are not what helps. What these data support: softer targets than one-hot labels help
# this student by about a point on test, and the teacher's image-specific soft targets are not measurably
# better than a uniform smoothing of the labels (Müller, Kornblith & Hinton, 2019, compare the two).
# Scratch has no knob to tune; distillation and smoothing had three settings each, on the same three
# seeds. Three seeds on 360 images decide little: the five-seed study in `tools/seed_spread.py` finds
# test gains over scratch of $0.94 \pm 0.52$ points at $T = 4$ and $1.06 \pm 0.27$ at $T = 8$.
#
# ### How much of the gap? An interval, not a point
#
# Hinton et al. report the **share of the teacher–student gap** that distillation closes,
# $(e_s - e_d) / (e_s - e_t)$ with $e$ the test errors of the scratch student, the distilled student
# and the teacher. Ours rests on a few test images: the teacher's errors and the students' are counted
# in ones. To see how far it could move, we **bootstrap** (`lib.distill.bootstrap_gap_recovered`):
# draw 360 test images with replacement and three seeds with replacement — the same images for every
# model, the same seeds for both students, so the pairing is kept — recompute the share, 4,000 times,
# and read off the middle 95 % of the results. The interval covers both sources of noise, the test
# images and the seeds; it cannot cover the teacher's own seed (there is one teacher).

# %%
# NBVAL_IGNORE_OUTPUT
n_test = len(y_test)
errors = {name: (1 - c.mean()) * n_test for name, c in test_correct.items()}   # mean errors on the 360
share = distill.gap_recovered(errors["teacher"], errors["scratch"], errors[distilled_name])
boot = distill.bootstrap_gap_recovered(test_correct["teacher"], test_correct["scratch"],
                                       test_correct[distilled_name], n_boot=4000, seed=0)
low, high = np.nanpercentile(100 * boot, [2.5, 97.5])
half_width = (high - low) / 2
print(f"errors on {n_test} test images (mean over seeds): teacher {errors['teacher']:.1f}, "
      f"scratch {errors['scratch']:.1f}, distilled {errors[distilled_name]:.1f}")
print(f"share of the gap recovered: {100 * share:.0f}%, 95% bootstrap interval [{low:.0f}%, {high:.0f}%] "
      f"(half-width {half_width:.0f} points; {int(np.isnan(boot).sum())} of {len(boot)} resamples had no gap)")
print(f"Hinton et al. 2015, MNIST (10,000 test images): teacher 67, student 146, distilled 74 errors "
      f"-> {100 * distill.gap_recovered(67, 146, 74):.0f}%")
needed = n_test * (half_width / 15) ** 2      # a half-width shrinks like 1/sqrt(test images)
print(f"test images needed for a half-width of 15 points at these error rates: about {100 * round(needed / 100):,}; "
      f"the whole digits set has 1,797")

# %% [markdown]
# In the stored run the share is 50 %, and its 95 % interval runs from −39 % to 92 %: from distillation
# doing harm to recovering nearly all of the gap. The whole gap is about 9 test images (the teacher makes
# 2 errors, the scratch students about 11), so one image moves the share by 11 points. Hinton et al.'s
# 91 % lies at the top of the interval: these data cannot tell our share from theirs, nor from zero.
# Their setting also differs: a large student (two layers of 800 units) that overfits 60,000 images,
# where ours is a tiny network limited by capacity as much as by data.
#
# An interval no wider than ±15 points is out of reach here. A half-width shrinks like $1/\sqrt{n}$, so
# at these error rates it would take about 6,800 test images — almost four times the whole digits set
# (1,797 images); repeating the experiment on fresh splits of the same 1,797 images cannot go beyond it.
# A data set that can be generated at any size, such as chapter 06's MNIST-1D, could; but when we tried
# it while preparing this chapter (three seeds, not rerun here), neither an MLP nor a tiny CNN student of
# a 1-D CNN teacher (97.7 % accurate) gained anything from distillation, so it would have measured a
# share near zero very precisely. We keep chapter 04's teacher and digits, report the share with its
# interval, and rest the conclusions on the paired comparisons above. The checks below use the spread
# of the share and of the half-width over triples of seeds in the five-seed study (about 16 and 15
# points).

# %%
results.expect("share of the teacher–student gap recovered", 100 * share, 50, results.tolerance_for_mean(16, 1),
               unit=" %", digits=0)
results.expect("half-width of its 95% bootstrap interval", half_width, 65, results.tolerance_for_mean(15, 1),
               unit=" points", digits=0)

# %%
# errors on the 360 test images, from 0: the teacher is one run, each student a point per seed
fig, ax = plt.subplots(figsize=(7, 3.6))
names = ["teacher"] + list(final)
labels = ["teacher\n(1 run)"] + [n.replace(" (", "\n(") for n in final]
errs = [(1 - c.mean(1)) * n_test for c in (test_correct[n] for n in names)]
ax.bar(labels, [e.mean() for e in errs], color=["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:purple"],
       alpha=0.5, label="mean")
for i, e in enumerate(errs):
    ax.plot(np.full(len(e), i), e, "ko", ms=4, label="one seed" if i == 1 else None)
ax.set(ylim=(0, None), ylabel=f"errors on {n_test} test images",
       title="Test errors of the final models (bars: mean over 3 seeds)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 6. The compression table
#
# What the student saves: parameters, bytes of the saved weights (`torch.save` of the `state_dict`),
# and the CPU time of one forward pass over a batch of 256 validation images (median of 30 runs, one
# thread). The accuracies are the test means above (no new look at the test split). Latency depends on
# the machine and its load, so the table is not compared by the tests; the cell after it asserts the
# stable columns.

# %%
# NBVAL_IGNORE_OUTPUT
batch = X_val[:256].cpu()   # any 256 images time the same; the test split is not needed
table = {"teacher": teacher, "student (scratch)": student_run(0),
         f"student (distilled, T = {best_T})": student_run(0, "distilled", best_T)}
accs = {"teacher": test_acc["teacher"].mean(), "student (scratch)": test_acc["scratch"].mean(),
        f"student (distilled, T = {best_T})": test_acc[distilled_name].mean()}
rows = {}
for name, model in table.items():
    rows[name] = (count_parameters(model), distill.state_dict_bytes(model), 1000 * distill.cpu_latency(model, batch),
                  accs[name])
print(f"{'model':30s} {'parameters':>10s} {'bytes':>9s} {'ms / batch':>10s} {'accuracy':>9s}")
for name, (n, size, ms, acc) in rows.items():
    print(f"{name:30s} {n:10,d} {size:9,d} {ms:10.2f} {acc:8.1f}%")
speedup = rows["teacher"][2] / rows["student (scratch)"][2]
print(f"the student is {speedup:.1f}x faster per batch on this CPU")

# %%
size_ratio = rows["teacher"][1] / rows["student (scratch)"][1]
assert ratio >= 10 and size_ratio >= 8
print(f"parameters: teacher/student = {ratio:.1f}x; bytes on disk: {size_ratio:.0f}x smaller "
      f"(a saved file also holds names and metadata)")

# %% [markdown]
# ## 7. Widget: the temperature slider
#
# Move $T$ and watch the teacher's distribution for the example above flatten. `softened` holds the
# logic and returns the probabilities; the printed **entropy** $H = -\sum_i p_i \log_2 p_i$ (bits) goes
# from near 0 (one sure class) towards $\log_2 10 \approx 3.32$ (uniform).

# %%
from lib.widgets import InteractiveFigure, slider


def softened(T: float) -> np.ndarray:
    """The teacher's probabilities for the chosen example at temperature T: (10,)."""
    return distill.soften(teacher_val_logits[example:example + 1], T)[0].cpu().numpy()


def entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def draw_temperature(T: float) -> float:
    p = softened(T)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(range(10), p)
    ax.set(xlabel="class", ylabel="probability", xticks=range(10), ylim=(0, 1),
           title=f"T = {T:.2f}: entropy {entropy_bits(p):.2f} bits")
    return round(entropy_bits(p), 2)


# %%
# NBVAL_IGNORE_OUTPUT
entropies = [entropy_bits(softened(T)) for T in (1, 5, 20)]
assert entropies[0] < entropies[1] < entropies[2] < math.log2(10)
print("entropy (bits) at T = 1, 5, 20:", np.round(entropies, 2), "- growing, below log2(10) = 3.32")

# %%
# NBVAL_IGNORE_OUTPUT
temperature_widget = InteractiveFigure(draw_temperature, T=slider(1.0, -0.5, 1.5, 0.05, "T", log=True))
temperature_widget

# %%
# NBVAL_IGNORE_OUTPUT
temperature_widget.controls["T"].value = 10.0
assert temperature_widget.result == round(entropy_bits(softened(10.0)), 2)
print(f"the widget at T = 10 shows entropy {temperature_widget.result:.2f} bits, that of softened(10)")

# %% [markdown]
# ## 8. The same in Keras: a `Distiller`
#
# `lib.distill.keras_distiller` wraps a Keras student in a `keras.Model` subclass whose **`train_step`**
# computes $\alpha\,\mathrm{CE} + (1-\alpha)\,T^2\,\mathrm{KL}$ under a `tf.GradientTape` and applies
# the gradients to the student only. The targets passed to `fit` are a pair: the labels and the
# teacher's logits (computed once by our PyTorch teacher; any teacher would do). Keras wants images as
# `(batch, 8, 8, 1)`.

# %%
from lib.keras_models import load_keras

keras = load_keras()
seed_everything(0)                       # seeds Keras' initial weights too, now that it is loaded
to_nhwc = lambda x: x.cpu().numpy().transpose(0, 2, 3, 1)
k_student = distill.keras_student(channels=(8, 16), hidden=32)
distiller = distill.keras_distiller(k_student, T=best_T, alpha=0.1)
# close to the PyTorch runs' one-cycle schedule: 30% warm-up from lr/25 (linear here, a half-cosine
# there), then cosine decay to 0
steps = STUDENT["epochs"] * math.ceil(len(y_train) / STUDENT["batch_size"])
warmup = int(0.3 * steps)
schedule = keras.optimizers.schedules.CosineDecay(STUDENT["lr"] / 25, steps - warmup,
                                                  warmup_target=STUDENT["lr"], warmup_steps=warmup)
distiller.compile(optimizer=keras.optimizers.Adam(schedule))
distiller.fit(to_nhwc(X_train), (y_train.cpu().numpy(), teacher_train_logits.cpu().numpy()),
              batch_size=STUDENT["batch_size"], epochs=STUDENT["epochs"], shuffle=True, verbose=0)
keras_acc = distiller.evaluate(to_nhwc(X_test), y_test.cpu().numpy(), batch_size=360, verbose=0,
                               return_dict=True)["accuracy"]
k_params = sum(int(np.prod(w.shape)) for w in k_student.trainable_weights)
print(f"Keras student: {k_params:,} trainable parameters (PyTorch student: {student_params:,})")
assert k_params == student_params

# %%
# NBVAL_IGNORE_OUTPUT
print(f"Keras distilled student: test accuracy {100 * keras_acc:.1f}%")

# %%
results.expect("Keras distilled student test accuracy", 100 * keras_acc, 98.3,
               results.tolerance_for_accuracy(98.3, 360), unit=" %",
               at_least=96.0)  # the bar: within 1 point of the PyTorch scratch student (97.0 %) or better

# %% [markdown]
# ## Summary
#
# - Distillation trains a small student on a large teacher's **soft targets** $p^{(T)} =
#   \operatorname{softmax}(v / T)$; the temperature $T$ exposes the teacher's knowledge about wrong
#   classes.
# - The loss is $\alpha\,\mathrm{CE}(y, q) + (1-\alpha)\,T^2\,\mathrm{KL}(p^{(T)} \| q^{(T)})$; the $T^2$
#   keeps the soft gradients $T$-independent, and at high $T$ the soft term becomes matching logits.
# - Here a student with 14x fewer parameters (11x fewer bytes on disk, several times faster on a CPU)
#   gains about a point of test accuracy from distillation over the same network trained on the labels
#   (stored run: $+1.2 \pm 0.9$ points on test, paired over three seeds; on validation, where the
#   verdict is taken, $+0.56 \pm 0.28$, a tie by the two-standard-error rule). Label smoothing, with no
#   teacher, gains about as much; the teacher's augmentation given to the student directly does not.
# - The share of the teacher–student gap recovered (50 % in the stored run) has a 95 % bootstrap interval
#   from −39 % to 92 %: 360 test images cannot pin it down, and ±15 points would need about 6,800.
# - Choose $T$ (and any rival's knob) on validation with a rule that resists noise, compare arms paired
#   over seeds, test each final model once, and put an interval on any number that rests on a handful
#   of examples.
# - Bigger run on a GPU: MNIST (`lib.download`), a wider teacher, a transfer set with unlabelled or
#   augmented images labelled by the teacher (Beyer et al., 2022).
#
# ## Exercises
#
# ### Exercise 1 — softmax with temperature
# Complete `soft_targets(logits, T)` for a 1-D NumPy array of logits: return the probabilities
# $\operatorname{softmax}(\text{logits}/T)$ as a NumPy array. Make it safe for large logits
# (subtract the maximum before exponentiating).

# %%
def soft_targets(logits: np.ndarray, T: float) -> np.ndarray:
    ### BEGIN SOLUTION
    z = np.asarray(logits, dtype=float) / T
    e = np.exp(z - z.max())
    return e / e.sum()
    ### END SOLUTION


# %%
cases = [((np.array(l, dtype=float), T), distill.soften(torch.tensor([l], dtype=torch.float64), T)[0].numpy())
         for l, T in [([2.0, 1.0, 0.1], 1.0), ([2.0, 1.0, 0.1], 5.0), ([1000.0, 990.0, 0.0], 2.0),
                      ([0.5, -0.5, 3.0, 1.0], 0.5)]]
check.check_function("soft_targets", soft_targets, cases, atol=1e-8)

# %% [markdown]
# ### Exercise 2 — the distillation loss
# Complete `kd_loss(student_logits, teacher_logits, target, T, alpha)` with PyTorch tensors
# (`(batch, classes)` logits, `(batch,)` labels): $\alpha\,\mathrm{CE} + (1-\alpha)\,T^2\,\mathrm{KL}(p^{(T)} \| q^{(T)})$,
# both terms averaged over the batch. Do not use `lib.distill` (the check compares with it). Sum the KL
# over classes and average over the batch: `F.kl_div(log_q, p, reduction="batchmean")`, not the
# default `"mean"`, which also divides by the number of classes.

# %%
def kd_loss(student_logits, teacher_logits, target, T, alpha):
    ### BEGIN SOLUTION
    hard = F.cross_entropy(student_logits, target)
    p = F.softmax(teacher_logits / T, dim=1)
    kl = (p * (F.log_softmax(teacher_logits / T, dim=1) - F.log_softmax(student_logits / T, dim=1))).sum(1).mean()
    return alpha * hard + (1 - alpha) * T**2 * kl
    ### END SOLUTION


# %%
g = torch.Generator().manual_seed(5)
kd_cases = []
for T, alpha in [(1.0, 1.0), (1.0, 0.0), (4.0, 0.1), (10.0, 0.5)]:
    s_, t_ = torch.randn(4, 10, generator=g), 2 * torch.randn(4, 10, generator=g)
    y_ = torch.randint(0, 10, (4,), generator=g)
    kd_cases.append(((s_, t_, y_, T, alpha), distill.distillation_loss(s_, t_, y_, T=T, alpha=alpha)))
check.check_function("kd_loss", kd_loss, kd_cases, atol=1e-5)

# %% [markdown]
# ### Exercise 3 — how much of the gap?
# Complete `share_of_gap(teacher_errors, student_errors, distilled_errors)`: the fraction of the
# teacher–student gap that the distilled student closes (1 = as good as the teacher, 0 = no better than
# the student from scratch). Hinton et al.'s MNIST numbers (67, 146, 74) should give about 0.91.

# %%
def share_of_gap(teacher_errors: float, student_errors: float, distilled_errors: float) -> float:
    ### BEGIN SOLUTION
    return (student_errors - distilled_errors) / (student_errors - teacher_errors)
    ### END SOLUTION


# %%
check.check_function("share_of_gap", share_of_gap,
                     [((67, 146, 74), 72 / 79), ((10, 20, 20), 0.0), ((10, 20, 10), 1.0),
                      ((errors["teacher"], errors["scratch"], errors[distilled_name]), share)], atol=1e-9)

# %% [markdown]
# ### Exercise 4 — does any teacher help? (predict, then run)
# Before running anything: distil a student with $\alpha = 0$ (soft targets only, no labels) from an
# **untrained** LeNet, whose weights are random. Will its validation accuracy be `"close"` to the
# scratch student's (within 2 points), `"far below"` it, or `"above"` it? Write your prediction in
# `prediction`, then test it: complete `untrained_teacher_student()` so that it returns the validation
# accuracy (%) of such a student — seed 0, the `STUDENT` recipe but 20 epochs to keep it quick, the
# untrained teacher's logits on the training images as soft targets, $T = 4$. The check compares your
# prediction with what you measured.

# %%
### BEGIN SOLUTION
prediction = "far below"
### END SOLUTION


def untrained_teacher_student() -> float:
    ### BEGIN SOLUTION
    torch.manual_seed(1)
    random_teacher = LeNet().to(device)
    logits = distill.logits_of(random_teacher, X_train)
    torch.manual_seed(0)
    model = make_student()
    train_classifier(model, X_train, y_train, seed=0, progress=False, **{**STUDENT, "epochs": 20},
                     label_smoothing=0.0, soft_targets=logits, soft_loss=distill.distillation(4.0, 0.0))
    return 100 * distill.accuracy(model, X_val, y_val)
    ### END SOLUTION


# %%
measured = check.answer_of("untrained_teacher_student", lambda: untrained_teacher_student())
scratch0 = val["scratch", None][0]
outcome = "close" if abs(measured - scratch0) <= 2 else ("above" if measured > scratch0 else "far below")
print(f"untrained teacher's student: {measured:.1f}% on validation; scratch student (seed 0): {scratch0:.1f}%")
check.check_true("an untrained teacher's student", outcome == "far below",
                 "with alpha = 0 the student sees no labels, only the soft targets of a teacher with random "
                 "weights: it should land far below the scratch student. Did you pass alpha=0.0 and the "
                 "untrained LeNet's logits as soft_targets?")
check.check_equal("your prediction", check.answer_of("prediction", lambda: prediction), outcome)

# %% [markdown]
# ## Further reading
#
# - Hinton, Vinyals & Dean (2015), *Distilling the Knowledge in a Neural Network*: the soft targets, the
#   temperature, the $T^2$ factor and the MNIST numbers (67 / 146 / 74 errors) compared with in section 5.
# - Buciluǎ, Caruana & Niculescu-Mizil (2006), *Model Compression*: the idea before the name — a small model
#   trained on a large ensemble's outputs over a big transfer set.
# - Ba & Caruana (2014), *Do Deep Nets Really Need to be Deep?*: students trained by matching logits, the
#   high-temperature limit derived in section 4.
# - Müller, Kornblith & Hinton (2019), *When Does Label Smoothing Help?*: label smoothing against soft
#   targets, and why a teacher trained with smoothing distils worse — the rival arm of section 5.
# - Stanton et al. (2021), *Does Knowledge Distillation Really Work?*: students generalise better yet
#   often fail to match their teacher's predictions; fidelity is not the same as accuracy.
# - Beyer et al. (2022), *Knowledge Distillation: A Good Teacher Is Patient and Consistent*: teacher and
#   student on the same augmented views, trained for long — the modern recipe, and a bigger experiment
#   than ours to try on a GPU.
# - Sanh et al. (2019), *DistilBERT*: distillation at scale, applied to chapter 07's kind of model.
# - Efron & Tibshirani (1993), *An Introduction to the Bootstrap*: the percentile interval of section 5.
# - Goodfellow, Bengio & Courville, *Deep Learning*, section 12.1.4 (Model compression): the idea in two
#   paragraphs, in the context of deploying large models.
# - Howard & Gugger, *Deep Learning for Coders* (the fast.ai book), chapter 7: label smoothing as a
#   training trick, with the same argument about over-confident one-hot targets.
# - Keras' example *Knowledge Distillation* (keras.io/examples/vision/knowledge_distillation): the
#   `Distiller` pattern of section 8.

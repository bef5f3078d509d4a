# %% [markdown]
# # 09 · Knowledge distillation
#
# A large model that works well is often too slow or too big to deploy. **Knowledge distillation**
# (Hinton, Vinyals & Dean, 2015) trains a small **student** to imitate a large **teacher**: not just
# its answers, but its whole probability distribution over the classes, softened by a **temperature**.
# The student ends up better than the same small network trained on the labels alone.
#
# **In this notebook you will**
# - train a teacher (chapter 04's LeNet CNN) and a student with over 10x fewer parameters;
# - see the teacher's "dark knowledge": its probabilities for one digit at several temperatures;
# - derive the distillation loss $\alpha\,\mathrm{CE} + (1-\alpha)\,T^2\,\mathrm{KL}$, and check
#   numerically why the factor $T^2$ is there;
# - compare a student trained from scratch with a distilled one over several seeds, choose the
#   temperature on validation with a rule that resists noise, and fill a compression table:
#   parameters, bytes on disk, CPU latency, accuracy;
# - estimate the share of the teacher–student gap that distillation recovers, beside Hinton et al.'s,
#   and see why 360 test images cannot pin it down;
# - play with a temperature slider, and write the same `Distiller` in Keras with its own `train_step`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

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
# digits with the light augmentation of chapter 04 — every training image shifted by up to one pixel, a new
# random shift in every batch
# (`lib.cnn.ShiftAugment`) — with the course's classifier recipe, `lib.recipes.train_classifier`
# (chapters 03–04), here with a **one-cycle** learning rate (`lib.recipes.one_cycle`: it rises from
# 1/25 of its peak over the first 30% of the steps, then decays to almost 0) and no label smoothing,
# since the students below learn from the teacher's own probabilities.

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
teacher = LeNet().to(device)
train_classifier(teacher, X_train, y_train, epochs=40, lr=3e-3, batch_size=64, weight_decay=1e-2,
                 label_smoothing=0.0, schedule=one_cycle(), augment=ShiftAugment(max_shift=1, seed=0), seed=0,
                 progress=False)
teacher_acc = distill.accuracy(teacher, X_test, y_test)
teacher_params = count_parameters(teacher)
print(f"teacher: {teacher_params:,} parameters, test accuracy {100 * teacher_acc:.1f}% "
      f"({round((1 - teacher_acc) * len(y_test))} errors on {len(y_test)} images)")

# %% [markdown]
# The printed accuracy is a *measured* number: on another CPU its last digits, and after 40 epochs of
# training perhaps a test image or two, come out differently, so the tests do not compare it as text.
# `lib.results.expect` checks it instead: it must lie within a tolerance of the value stored here and
# meet the bar (a strong CNN: at least 98.5 %). Every tolerance in this chapter is three times the
# standard deviation of the difference between two runs that differ only by their seed (for a single
# model, estimated from the binomial spread of an accuracy on 360 images; for means over seeds, from
# the seeds' own spread), so a machine that behaves like a new seed passes.

# %%
results.expect("teacher test accuracy", 100 * teacher_acc, 99.4, results.tolerance_for_accuracy(99.4, 360),
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


teacher_test_logits = distill.logits_of(teacher, X_test)
same_lib = same_torch = True
for T in (0.5, 1.0, 4.0, 20.0):
    same_lib &= torch.allclose(soften_scratch(teacher_test_logits, T), distill.soften(teacher_test_logits, T), atol=1e-6)
    same_torch &= torch.allclose(soften_scratch(teacher_test_logits, T), F.softmax(teacher_test_logits / T, dim=1),
                                 atol=1e-6)
assert same_lib and same_torch
print(f"soften_scratch == lib.distill.soften (to 1e-6): {same_lib}")
print(f"soften_scratch == F.softmax(logits / T) (to 1e-6): {same_torch}")

# %% [markdown]
# The teacher's probabilities for one test digit at four temperatures. We pick the correctly classified
# test image whose runner-up class gets the most probability at $T = 1$ — a digit the teacher finds
# ambiguous.

# %%
# NBVAL_IGNORE_OUTPUT
probs1 = distill.soften(teacher_test_logits, 1.0)
correct = probs1.argmax(1) == y_test
runner_up = probs1.topk(2, dim=1).values[:, 1]
example = int(torch.where(correct, runner_up, torch.zeros_like(runner_up)).argmax())
top = probs1[example].argsort(descending=True)[:3].tolist()
print(f"test image {example}: label {int(y_test[example])}; the teacher's top three classes at T = 1: {top}")

temperatures = [1, 2, 5, 10]
fig, axes = plt.subplots(1, len(temperatures) + 1, figsize=(11, 2.8), layout="constrained",
                         gridspec_kw={"width_ratios": [0.6] + [1] * len(temperatures)})
axes[0].imshow(X_test[example, 0].cpu(), cmap="gray_r")
axes[0].set(title=f"test image (label {int(y_test[example])})", xticks=[], yticks=[])
axes[0].grid(False)
for ax, T in zip(axes[1:], temperatures):
    ax.bar(range(10), distill.soften(teacher_test_logits[example:example + 1], T)[0].cpu())
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
# ## 5. The student
#
# The student has the teacher's architecture, shrunk: `LeNet(channels=(8, 16), hidden=32, dropout=0)`
# — 8 and 16 filters instead of 32 and 64, 32 hidden units instead of 128. Every student below sees
# the same 1,077 training images, without augmentation, in the same order for a given seed; the only
# difference between "scratch" and "distilled" is the loss. The teacher's logits on the training
# images are computed once.

# %%
def make_student() -> torch.nn.Module:
    return LeNet(channels=(8, 16), hidden=32, dropout=0.0).to(device)


student_params = count_parameters(make_student())
ratio = teacher_params / student_params
print(f"student: {student_params:,} parameters; the teacher has {ratio:.1f}x more")
assert ratio >= 10, "the student must have at least 10x fewer parameters than the teacher"

teacher_train_logits = distill.logits_of(teacher, X_train)
STUDENT = dict(epochs=80, lr=1e-2, batch_size=256, weight_decay=0.0, label_smoothing=0.0, schedule=one_cycle())
runs = {}  # (kind, T, seed) -> trained student, so that no run is repeated


def student_run(seed: int, T: float | None = None, alpha: float = 0.1) -> torch.nn.Module:
    """A student trained from scratch (T=None) or distilled at temperature T; cached."""
    key = ("scratch", None, seed) if T is None else ("distilled", T, seed)
    if key not in runs:
        torch.manual_seed(seed)
        model = make_student()
        if T is None:   # hard labels only
            train_classifier(model, X_train, y_train, seed=seed, progress=False, **STUDENT)
        else:           # the same, with the distillation loss on the teacher's logits
            train_classifier(model, X_train, y_train, seed=seed, progress=False, **STUDENT,
                             soft_targets=teacher_train_logits, soft_loss=distill.distillation(T, alpha))
        runs[key] = model
    return runs[key]


# %%
# NBVAL_IGNORE_OUTPUT
SEEDS = range(5)
scratch_val = np.array([distill.accuracy(student_run(s), X_val, y_val) for s in SEEDS])
print(f"student from scratch, validation accuracy over {len(SEEDS)} seeds: "
      f"{100 * scratch_val.mean():.1f} ± {100 * scratch_val.std(ddof=1):.1f}% (mean ± standard deviation)")

# %% [markdown]
# ### A temperature sweep
#
# With $\alpha = 0.1$ (mostly soft targets, as Hinton et al. recommend), we distil at five
# temperatures, five seeds each (the same five seeds as the scratch students), and choose $T$ on the
# **validation** split; the test split stays untouched until the final comparison. Each temperature
# gets a mean over the seeds and its **standard error**, the standard deviation over the seeds divided
# by $\sqrt{5}$: how much the mean itself would move with five other seeds.

# %%
# NBVAL_IGNORE_OUTPUT
sweep_T = [1, 2, 4, 8, 16]
sweep = {T: np.array([distill.accuracy(student_run(s, T), X_val, y_val) for s in SEEDS]) for T in sweep_T}
sweep_se = {T: sweep[T].std(ddof=1) / np.sqrt(len(sweep[T])) for T in sweep_T}   # standard error of the mean
for T in sweep_T:
    print(f"T = {T:2d}: validation accuracy {100 * sweep[T].mean():.2f} ± {100 * sweep_se[T]:.2f}% (mean ± s.e.)")
best_mean_T = max(sweep_T, key=lambda T: sweep[T].mean())
print(f"highest mean at T = {best_mean_T}; within one standard error of it: mean >= "
      f"{100 * (sweep[best_mean_T].mean() - sweep_se[best_mean_T]):.2f}%")

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.errorbar(sweep_T, [100 * sweep[T].mean() for T in sweep_T], [100 * sweep_se[T] for T in sweep_T],
            fmt="o-", capsize=3, label="distilled (α = 0.1, 5 seeds, mean ± s.e.)")
ax.axhline(100 * scratch_val.mean(), color="gray", ls="--", label="scratch (same 5 seeds)")
ax.set(xscale="log", xticks=sweep_T, xticklabels=sweep_T, xlabel="temperature $T$",
       ylabel="validation accuracy (%)", title="Temperature sweep")
ax.legend()
plt.show()

# %% [markdown]
# The temperatures from 4 to 16 lie within about one standard error of each other: which of them has
# the highest mean is noise, and on another CPU a different one wins (with three seeds per temperature
# an earlier version of this notebook picked $T = 16$ on one machine and $T = 8$ on another). So we do
# not take the highest mean. We take the **smallest temperature within one standard error of the
# best** (the "one-standard-error rule", which prefers the simpler setting when the data cannot tell
# them apart). $T = 1$ and $T = 2$ fall outside: at $T = 1$ the teacher's probabilities are nearly
# one-hot and carry the least "dark knowledge". Even this rule can change its answer when a setting
# sits near the margin ($T = 4$ clears it by a few tenths of a point), so the check accepts
# any of the temperatures the stored run could not tell apart, 4, 8 and 16; the choice made on this
# machine is printed first.

# %%
# NBVAL_IGNORE_OUTPUT
best_T = results.choose_within_se(sweep_T, [sweep[T].mean() for T in sweep_T], [sweep_se[T] for T in sweep_T])
print("chosen on this machine: T =", best_T)

# %%
results.expect_choice("temperature chosen on validation (smallest within one s.e. of the best)", best_T,
                      [4, 8, 16])

# %% [markdown]
# ### Scratch against distilled, on the test split
#
# Five seeds each; a seed fixes the initial weights and the batch order, so the two students of one
# seed differ only by their loss.

# %%
# NBVAL_IGNORE_OUTPUT
scratch_acc = np.array([distill.accuracy(student_run(s), X_test, y_test) for s in SEEDS])
distilled_acc = np.array([distill.accuracy(student_run(s, best_T), X_test, y_test) for s in SEEDS])
n_test = len(y_test)
errors = {"teacher": (1 - teacher_acc) * n_test, "scratch": (1 - scratch_acc.mean()) * n_test,
          "distilled": (1 - distilled_acc.mean()) * n_test}
share = distill.gap_recovered(errors["teacher"], errors["scratch"], errors["distilled"])

print(f"teacher                : {100 * teacher_acc:.1f}%")
print(f"student from scratch   : {100 * scratch_acc.mean():.1f} ± {100 * scratch_acc.std(ddof=1):.1f}%  "
      "(5 seeds, mean ± standard deviation)")
print(f"student distilled, T={best_T} : {100 * distilled_acc.mean():.1f} ± {100 * distilled_acc.std(ddof=1):.1f}%  "
      "(5 seeds, mean ± standard deviation)")
print(f"distilled beats scratch on {int((distilled_acc > scratch_acc).sum())} of 5 seeds, ties on "
      f"{int((distilled_acc == scratch_acc).sum())}")

paired_gain = 100 * (distilled_acc - scratch_acc)          # seed by seed: same weights at start, same batches
print(f"distilled − scratch, paired over seeds: {paired_gain.mean():+.2f} ± "
      f"{paired_gain.std(ddof=1) / np.sqrt(len(paired_gain)):.2f} points (mean ± s.e.)")
print(f"share of the teacher–student gap recovered: {100 * share:.0f}% "
      f"(errors on {n_test} test images: teacher {errors['teacher']:.1f}, scratch {errors['scratch']:.1f}, "
      f"distilled {errors['distilled']:.1f})")

# %% [markdown]
# The checks. Each mean over five seeds lies within three times the spread of the difference of two
# such means (`results.tolerance_for_mean`, from the seeds' spread: about 0.5 points for one student,
# 0.4 points for the paired gain). The bar of the chapter is that the distilled student beats the one
# trained from scratch: a positive paired gain. The share of the gap is another matter: it rests on a
# handful of test images (the teacher makes two or three errors, the distilled students about four, the
# students from scratch about nine), and
# propagating those counts' spread through $(e_s - e_d)/(e_s - e_t)$ gives a standard deviation of about
# 25 points for the difference between two runs. Its tolerance, 75 points, says what it is: on 360 test
# images this share is not measured, only sketched.

# %%
results.expect("scratch student test accuracy, mean of 5 seeds", 100 * scratch_acc.mean(), 97.5,
               results.tolerance_for_mean(0.5, 5), unit=" %")
results.expect("distilled student test accuracy, mean of 5 seeds", 100 * distilled_acc.mean(), 98.6,
               results.tolerance_for_mean(0.5, 5), unit=" %")
results.expect("distilled − scratch, paired mean over 5 seeds", paired_gain.mean(), 1.1,
               results.tolerance_for_mean(0.4, 5), unit=" points", at_least=0.0)
results.expect("share of the teacher–student gap recovered", 100 * share, 57, 75, unit=" %", digits=0)
print(f"Hinton et al. 2015, MNIST (10,000 test images): teacher 67, student 146, distilled 74 errors "
      f"-> {100 * distill.gap_recovered(67, 146, 74):.0f}%")

# errors on the 360 test images, from 0: the teacher is one run, each student a point per seed
fig, ax = plt.subplots(figsize=(5, 3.5))
n_test = len(y_test)
names = ["teacher\n(1 run)", "scratch\nstudent", f"distilled\nstudent (T={best_T})"]
runs_errors = [np.array([(1 - teacher_acc) * n_test]), (1 - scratch_acc) * n_test, (1 - distilled_acc) * n_test]
ax.bar(names, [e.mean() for e in runs_errors], color=["tab:gray", "tab:blue", "tab:orange"], alpha=0.5,
       label="mean")
for i, e in enumerate(runs_errors):
    ax.plot(np.full(len(e), i), e, "ko", ms=4, label="one seed" if i == 1 else None)
ax.set(ylim=(0, None), ylabel=f"errors on {n_test} test images",
       title="Teacher and students: test errors (bars: mean over seeds)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Our share (printed above; 57 % in the stored reference run) looks smaller than Hinton et al.'s 91 %, but
# with a tolerance of 75 points the two cannot be told apart: our teacher's lead over the students is a few test images. The settings differ too:
# their student was a large network (two layers of 800 units) that overfits without help, trained on
# 60,000 images; ours is a tiny network with 1,077 images, limited by capacity as much as by data.
# Measuring the share properly needs many more test images than errors to count. Distillation helps most when the student is data-starved: try training
# both students on a few hundred labelled images while the teacher keeps all of them.
#
# ## 6. The compression table
#
# What the student saves: parameters, bytes of the saved weights (`torch.save` of the `state_dict`),
# and the CPU time of one forward pass over a batch of 256 images (median of 30 runs, one thread).
# Latency depends on the machine and its load, so the table is not compared by the tests; the cell
# after it asserts the stable columns.

# %%
# NBVAL_IGNORE_OUTPUT
batch = X_test[:256].cpu()
table = {
    "teacher": (teacher, 100 * teacher_acc),
    "student (scratch)": (student_run(0), 100 * scratch_acc.mean()),
    f"student (distilled, T={best_T})": (student_run(0, best_T), 100 * distilled_acc.mean()),
}
rows = {}
for name, (model, acc) in table.items():
    rows[name] = (count_parameters(model), distill.state_dict_bytes(model),
                  1000 * distill.cpu_latency(model, batch), acc)
    model.to(device)
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
    return distill.soften(teacher_test_logits[example:example + 1], T)[0].cpu().numpy()


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


entropies = [entropy_bits(softened(T)) for T in (1, 5, 20)]
print("the entropy grows with T and stays below log2(10) = 3.32 bits:",
      entropies[0] < entropies[1] < entropies[2] < math.log2(10))

# %%
# NBVAL_IGNORE_OUTPUT
temperature_widget = InteractiveFigure(draw_temperature, T=slider(1.0, -0.5, 1.5, 0.05, "T", log=True))
temperature_widget

# %%
temperature_widget.controls["T"].value = 10.0
print("the widget at T = 10 shows the entropy of softened(10):",
      temperature_widget.result == round(entropy_bits(softened(10.0)), 2))

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
results.expect("Keras distilled student test accuracy", 100 * keras_acc, 98.1,
               results.tolerance_for_accuracy(98.1, 360), unit=" %",
               at_least=96.5)  # the bar: within 1 point of the PyTorch scratch student (97.5 %) or better

# %% [markdown]
# ## Summary
#
# - Distillation trains a small student on a large teacher's **soft targets** $p^{(T)} =
#   \operatorname{softmax}(v / T)$; the temperature $T$ exposes the teacher's knowledge about wrong
#   classes.
# - The loss is $\alpha\,\mathrm{CE}(y, q) + (1-\alpha)\,T^2\,\mathrm{KL}(p^{(T)} \| q^{(T)})$; the $T^2$
#   keeps the soft gradients $T$-independent, and at high $T$ the soft term becomes matching logits.
# - Here a student with ~14x fewer parameters, trained on the same 1,077 images, is more accurate when
#   distilled than when trained from scratch (by about 1 point, paired over five seeds); how
#   much of the gap to the teacher it closes, 360 test images cannot say. It is also smaller on disk
#   and faster on a CPU.
# - Choose $T$ (and $\alpha$) on validation data, and compare over several seeds: differences of a few
#   test images are within seed noise.
# - Bigger run on a GPU: MNIST (`lib.download`), a wider teacher, a transfer set with unlabelled or
#   augmented images labelled by the teacher.
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
                      ((errors["teacher"], errors["scratch"], errors["distilled"]), share)], atol=1e-9)

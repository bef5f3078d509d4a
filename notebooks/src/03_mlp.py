# %% [markdown]
# # 03 · Multilayer perceptrons and the craft of training
#
# Chapter 02 trained a tiny network on two-dimensional points. Here the inputs are real images
# (8×8 handwritten digits), there are ten classes, and the question shifts from "how do gradients
# flow?" to "how do we train a network *well*?": how to split the data, how to start the weights,
# how to notice and cure overfitting, how to read the mistakes, how to choose hyper-parameters, and
# what to do when some classes are rare.
#
# **Learning objectives**
# - prepare a dataset: scaling, a stratified train / validation / test split, and why the test set is
#   touched only once;
# - write softmax and cross-entropy in a numerically stable way and derive their gradient;
# - implement a multilayer perceptron (MLP) in NumPy with a hand-written backward pass, and check it
#   against PyTorch's autograd;
# - train the same network as an `nn.Module` with the course's training loop `lib.train.fit`;
# - explain why initialisation matters (He vs. too-small weights);
# - recognise overfitting in the curves and cure it with weight decay, dropout and early stopping;
# - read a confusion matrix, look at the mistakes, run a small hyper-parameter sweep;
# - handle imbalanced classes with class weights;
# - build the same MLP in Keras.

# %%
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix, recall_score

from lib import check, data, results
from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.device import model_device, seed_everything, seeded, setup_notebook
from lib.mlp import MLP, NumpyMLP, cross_entropy, softmax, train_numpy_mlp
from lib.plot import image_grid
from lib.recipes import adamw, class_weights, train_classifier
from lib.train import evaluate, fit, predict

device = setup_notebook(seed=0)

# %% [markdown]
# ## 1. The data: 8×8 digits, scaled and split
#
# scikit-learn ships 1,797 handwritten digits, each an 8×8 image whose pixels count how much ink fell in
# a cell (0..16). `lib.data.digits` divides by 16, so every pixel is in $[0, 1]$: inputs on a common,
# small scale keep the first layer's pre-activations moderate, which makes the learning rate easy to
# choose. (Dividing by 255 as for 8-bit photos would squeeze every pixel below 0.07 — a classic slip.)
#
# The images are split **once**, stratified by class (every split holds the same share of each digit),
# into three roles:
#
# | split | size | used for |
# | --- | --- | --- |
# | train | 1,077 | fitting the weights |
# | validation | 360 | every decision: architecture, learning rate, when to stop |
# | test | 360 | the final, single measurement — never used to decide anything |
#
# If we chose hyper-parameters by the test score, the test score would no longer estimate performance on
# new images. Every chapter of the course uses this same split, so numbers are comparable across chapters.

# %%
X_train, y_train = data.digits("train")
X_val, y_val = data.digits("val")
X_test, y_test = data.digits("test")
print("shapes:", X_train.shape, X_val.shape, X_test.shape, "| pixel range:", X_train.min(), "to", X_train.max())
print("train examples per class:", np.bincount(y_train).tolist())
print("test examples per class: ", np.bincount(y_test).tolist())

image_grid(X_train[:20].reshape(-1, 8, 8), labels=y_train[:20], title="Twenty training digits (label above each)")
plt.show()

# %% [markdown]
# ## 2. Softmax and cross-entropy
#
# A classifier with $k$ classes outputs $k$ real numbers $z = (z_1, \dots, z_k)$, the **logits**.
# **Softmax** turns them into probabilities,
# $$p_j = \frac{e^{z_j}}{\sum_{l=1}^{k} e^{z_l}},$$
# and the **cross-entropy** of the true class $y$ is $\ell = -\log p_y$: zero for a confident right
# answer, large for a confident wrong one. Over a batch of $n$ examples the loss is the mean of $\ell$.
#
# **Why this loss? Maximum likelihood.** Read $p$ as the model's probability distribution over the label
# given the image. The probability the model assigns to the $n$ training labels is $\prod_i p_{y_i}$ (the
# *likelihood*); maximising it is the same as minimising $-\frac{1}{n}\sum_i \log p_{y_i}$, the mean
# cross-entropy. Chapter 01 derived the mean squared error the same way, from Gaussian noise around the
# prediction; for a categorical label the same principle gives cross-entropy.
#
# Two facts make this pair the standard choice:
# - **Stability.** $e^{z}$ overflows for $z \gtrsim 710$ in float64 (88 in float32). Softmax does not change
#   when the same constant is subtracted from every logit, so subtract $\max_j z_j$ first. For the loss, use
#   $\log p_y = z_y - \log\sum_l e^{z_l}$ (log-sum-exp), never `log(softmax(z))`, which gives $\log 0$.
# - **A simple gradient.** With $P$ the $n\times k$ matrix of predicted probabilities and $Y$ the one-hot
#   matrix of the labels,
#   $$\frac{\partial}{\partial z}\Big(\frac{1}{n}\sum_i \ell_i\Big) = \frac{1}{n}\,(P - Y),$$
#   predicted probabilities minus targets: the error signal that backpropagation sends down. Derivation:
#   write one example's loss as $\ell = -z_y + \log\sum_l e^{z_l}$. The derivative of the log-sum-exp with
#   respect to $z_j$ is $e^{z_j}/\sum_l e^{z_l} = p_j$, and that of $-z_y$ is $-1$ if $j = y$, else 0, so
#   $\partial \ell / \partial z_j = p_j - \mathbb{1}[j = y]$; the mean over $n$ examples divides by $n$.

# %%
z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
print("naive softmax: ", naive.round(4).tolist())
print("stable softmax:", softmax(z).round(4).tolist())

labels = np.array([2, 2])
ours = cross_entropy(z, labels)
ref = F.cross_entropy(torch.tensor(z), torch.tensor(labels)).item()
print(f"cross-entropy: lib.mlp.cross_entropy {ours:.6f}, PyTorch {ref:.6f}")
close = np.allclose(ours, ref, rtol=0, atol=1e-9)
assert close
print(f"lib.mlp.cross_entropy == F.cross_entropy (to 1e-9): {close}")

# %% [markdown]
# ## 3. An MLP from scratch, with its backward pass
#
# A one-hidden-layer MLP maps a batch $X \in \mathbb{R}^{n \times 64}$ (one flattened image per row) to
# logits:
# $$Z_1 = X W_1 + b_1,\quad H = \mathrm{ReLU}(Z_1),\quad Z_2 = H W_2 + b_2,$$
# with $W_1: 64 \times m$, $b_1: m$, $W_2: m \times 10$, $b_2: 10$ for a hidden width $m$, and
# $\mathrm{ReLU}(u) = \max(u, 0)$ elementwise. The backward pass applies the chain rule layer by layer,
# starting from $G_2 = \partial L / \partial Z_2 = (P - Y)/n$:
# $$\frac{\partial L}{\partial W_2} = H^\top G_2,\quad \frac{\partial L}{\partial b_2} = \textstyle\sum_i G_{2,i},\quad
# G_1 = \big(G_2 W_2^\top\big) \odot \mathbb{1}[Z_1 > 0],\quad
# \frac{\partial L}{\partial W_1} = X^\top G_1,\quad \frac{\partial L}{\partial b_1} = \textstyle\sum_i G_{1,i}.$$
# The transposes are dictated by the shapes ($H^\top G_2$ is $m \times 10$, like $W_2$); $\odot$ is the
# elementwise product with ReLU's derivative (1 where the unit was active, 0 elsewhere).

# %%
def mlp_forward(X, W1, b1, W2, b2):
    Z1 = X @ W1 + b1
    H = np.maximum(Z1, 0.0)
    return H @ W2 + b2, (Z1, H)


def loss_and_grads_scratch(X, y, W1, b1, W2, b2):
    """Mean cross-entropy of a one-hidden-layer MLP and its gradients, by hand (lib.mlp.NumpyMLP.loss_and_grads)."""
    Z2, (Z1, H) = mlp_forward(X, W1, b1, W2, b2)
    n = len(y)
    G2 = softmax(Z2)
    G2[np.arange(n), y] -= 1.0
    G2 /= n                                  # dL/dZ2 = (P - Y) / n
    G1 = (G2 @ W2.T) * (Z1 > 0)              # back through W2, then through ReLU
    grads = {"W2": H.T @ G2, "b2": G2.sum(0), "W1": X.T @ G1, "b1": G1.sum(0)}
    return cross_entropy(Z2, y), grads


rng = np.random.default_rng(0)
net = NumpyMLP((64, 32, 10), seed=1)        # the library version: He-initialised weights
W1, b1, W2, b2 = (net.params[k] for k in ("W0", "b0", "W1", "b1"))
Xb, yb = X_train[:50].astype(np.float64), y_train[:50]
loss, grads = loss_and_grads_scratch(Xb, yb, W1, b1, W2, b2)

# autograd on the same float64 weights
params = {k: torch.tensor(v, requires_grad=True) for k, v in dict(W1=W1, b1=b1, W2=W2, b2=b2).items()}
logits = torch.relu(torch.tensor(Xb) @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
F.cross_entropy(logits, torch.tensor(yb)).backward()
close_autograd = all(np.allclose(grads[k], params[k].grad.numpy(), rtol=0, atol=1e-6) for k in grads)

# the library's NumpyMLP must compute the same gradients (its keys: W0, b0 for layer 1, W1, b1 for layer 2)
_, lib_grads = net.loss_and_grads(Xb, yb)
lib_names = {"W1": "W0", "b1": "b0", "W2": "W1", "b2": "b1"}
close_lib = all(np.allclose(grads[k], lib_grads[lib_names[k]], rtol=0, atol=1e-12) for k in grads)
assert close_autograd and close_lib
print(f"loss_and_grads_scratch == torch.autograd (to 1e-6): {close_autograd}")
print(f"loss_and_grads_scratch == lib.mlp.NumpyMLP.loss_and_grads (to 1e-12): {close_lib}")

# %% [markdown]
# **Why the ReLU between the layers?** Without it the network collapses: $(XW_1 + b_1)W_2 + b_2 =
# X(W_1W_2) + (b_1W_2 + b_2)$ is again *one* linear layer, with weight $W_1W_2$ and bias $b_1W_2 + b_2$. Any
# number of stacked linear layers can only draw linear decision boundaries, exactly like softmax
# regression. A nonlinearity between them breaks the collapse; with one hidden layer wide enough, the
# network can approximate any continuous function on a bounded set (the universal approximation theorem).
# The collapse, checked on the weights above:

# %%
linear_stack = (Xb @ W1 + b1) @ W2 + b2                    # two layers, no ReLU
one_layer = Xb @ (W1 @ W2) + (b1 @ W2 + b2)                # one layer with the product weight
collapses = np.allclose(linear_stack, one_layer, rtol=0, atol=1e-12)
assert collapses
print(f"two linear layers == one linear layer with W = W1 W2 (to 1e-12): {collapses}")

# %% [markdown]
# With correct gradients, training is the loop of chapter 01: mini-batch SGD with momentum. We use
# `lib.mlp.train_numpy_mlp` (the same gradients, for any number of layers) with 128 hidden units.

# %%
# NBVAL_IGNORE_OUTPUT
numpy_mlp = NumpyMLP((64, 128, 10), seed=0)
numpy_losses = train_numpy_mlp(numpy_mlp, X_train.astype(np.float64), y_train, epochs=30, lr=0.05, seed=0)
numpy_acc = (numpy_mlp.predict(X_test) == y_test).mean()
print(f"NumPy MLP: training loss {numpy_losses[0]:.3f} -> {numpy_losses[-1]:.4f}, test accuracy {numpy_acc:.2%}")

# %% [markdown]
# The accuracy above is a *measured* number: another CPU rounds in a different order, and after 30
# epochs the network differs a little, as it would with another seed. So the tests do not compare it
# as text. `lib.results.expect` checks it instead and prints a verdict that is the same everywhere:
# the value must lie within a tolerance of the one stored in this notebook *and* meet the chapter's
# bar. For one model's accuracy on the 360 test images the tolerance is three times the spread we
# expect between two runs that differ only by their seed (`results.tolerance_for_accuracy`, from the
# binomial standard deviation of a score on 360 images).

# %%
results.expect("NumPy MLP test accuracy", 100 * numpy_acc, 96.9, results.tolerance_for_accuracy(96.9, 360),
               unit=" %", at_least=95.0)

# %% [markdown]
# ## 4. Initialisation: why the starting weights matter
#
# Each layer multiplies by a random matrix. If its entries are too small, activations shrink by a
# constant factor per layer and vanish after a few layers (and so do the gradients); too large, and they
# explode. For a layer with $n_\text{in}$ inputs followed by ReLU, **He initialisation** draws weights with
# standard deviation $\sqrt{2/n_\text{in}}$: ReLU zeroes half of the signal, the factor 2 gives it back, and
# the activations keep their scale through any depth. (LeCun initialisation, $\sqrt{1/n_\text{in}}$ — the
# same as Glorot/Xavier's $\sqrt{2/(n_\text{in}+n_\text{out})}$ when the widths match — suits tanh-like
# activations; with ReLU it halves the variance at every layer.) PyTorch's `nn.Linear` draws
# uniformly from $\pm 1/\sqrt{n_\text{in}}$; for the shallow networks here any of these work — for deep
# ones it matters, as the plot shows for a 20-layer ReLU stack fed with digits.

# %%
def activation_scale(std_of_fan_in, depth=20, width=256, seed=0):
    """Standard deviation of the activations after each layer of a deep ReLU stack."""
    rng = np.random.default_rng(seed)
    h, stds = X_train[:256].astype(np.float64), []
    for _ in range(depth):
        W = rng.standard_normal((h.shape[1], width)) * std_of_fan_in(h.shape[1])
        h = np.maximum(h @ W, 0.0)
        stds.append(h.std())
    return np.array(stds)


inits = {"N(0, 0.01²)": lambda n: 0.01, "LeCun √(1/n_in)": lambda n: np.sqrt(1 / n),
         "He √(2/n_in)": lambda n: np.sqrt(2 / n)}
scales = {name: activation_scale(f) for name, f in inits.items()}

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, s in scales.items():
    ax.semilogy(np.arange(1, 21), s, marker="o", ms=3, label=name)
ax.set(title="Activation scale through a 20-layer ReLU network", xlabel="layer", ylabel="std of activations",
       xticks=range(1, 21, 2))
ax.legend()
plt.show()
for name, s in scales.items():
    print(f"{name:18s} std after layer 20: {s[-1]:.1e}")
small, glorot, he = (scales[name][-1] for name in inits)
assert small < 1e-15 and 1e-5 < glorot < 1e-2 and 0.1 < he < 10, "He must keep the scale; the others shrink it"

# %% [markdown]
# ## 5. The same network in PyTorch, trained with the course's loop
#
# `lib.mlp.MLP` is the PyTorch twin: `Flatten → Linear → ReLU (→ Dropout) → Linear`. First, the two
# implementations must compute the same function: copy the NumPy weights into it (`MLP.from_numpy`;
# `nn.Linear` stores $W^\top$) and compare logits.
#
# Training goes through `lib.train.fit(model, loader, epochs=…)`, the one loop every later chapter uses:
# batches `(inputs, target)` from a `DataLoader`, a progress bar, a `History` of losses and accuracies per
# epoch (and per step, in `history.steps`), evaluation on a validation loader, optional early stopping
# and checkpoints. What a chapter changes is the **step**, a function `step(model, batch)` that returns
# the batch's loss; here it is the default, `loss_fn(model(*inputs), target)` with cross-entropy. Later
# chapters pass steps of their own (a VAE's ELBO, a distillation loss, masked-language modelling) and
# `fit` does the rest the same way. `lib.recipes.train_classifier` wraps `fit` with the recipe we use for
# classifiers:
# - **AdamW** (Adam with decoupled weight decay, chapter 01's Adam plus a pull of the weight matrices
#   toward 0; biases are left alone, since shrinking them does not make the function any smoother);
# - a **cosine learning-rate schedule** over the steps, large steps early and small ones at the end;
# - **label smoothing** $\varepsilon = 0.1$: the target is $1-\varepsilon + \varepsilon/k$ for the true class
#   and $\varepsilon/k$ for the others, so the network is not pushed toward infinitely large logits. The
#   loss against a smoothed target $q$ is $-\sum_j q_j \log p_j$, smallest when $p = q$, where it equals the
#   entropy of $q$: the training loss therefore has a floor above 0 (exercise 4 computes it) and the
#   training curve below levels off above it instead of falling toward 0.
#
# With a validation set, `fit` also puts back, at the end, the weights of the epoch with the lowest
# validation loss (`restore_best=True`), with or without early stopping: the model we evaluate is that
# epoch's.

# %%
twin = MLP.from_numpy(numpy_mlp)
close = np.allclose(numpy_mlp.forward(X_val), twin(torch.tensor(X_val, dtype=torch.float64)).detach().numpy(),
                    rtol=0, atol=1e-9)   # the logits of every validation image
assert close
print(f"lib.mlp.NumpyMLP == lib.mlp.MLP (to 1e-9): {close}")

# %%
# NBVAL_IGNORE_OUTPUT
with seeded(0):
    mlp = MLP((64, 256, 10), dropout=0.2)
history = train_classifier(mlp, X_train, y_train, epochs=100, lr=1e-3, val=(X_val, y_val), seed=0)
test_loader = data.make_loader(X_test, y_test, batch_size=512)
mlp_test = evaluate(mlp, test_loader)                  # the final model: its one look at the test set
print(f"PyTorch MLP: validation accuracy {history['val_accuracy'][history.best_epoch]:.2%} "
      f"(epoch {history.best_epoch + 1}, the lowest validation loss), "
      f"test accuracy {mlp_test['accuracy']:.2%} ({round((1 - mlp_test['accuracy']) * 360)} errors)")
history.plot(title="PyTorch MLP (64-256-10) on digits")
plt.show()

# %%
results.expect("PyTorch MLP test accuracy", 100 * mlp_test["accuracy"], 98.3,
               results.tolerance_for_accuracy(98.3, 360), unit=" %", at_least=97.5)

# %% [markdown]
# `fit` can also write a checkpoint (atomically: a temporary file, then a rename) and `load_checkpoint`
# reads it back with `torch.load(..., weights_only=True)`, which refuses to run code hidden in a file.

# %%
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "mlp.pt"
    save_checkpoint(path, mlp, epoch=history.best_epoch + 1, note="chapter 03 MLP")
    restored = MLP((64, 256, 10), dropout=0.2)
    extra = load_checkpoint(path, restored)
restored.to(model_device(mlp))                            # same device as the original (CPU or GPU)
val_loader = data.make_loader(X_val, y_val, batch_size=512)
same_predictions = torch.equal(predict(mlp, val_loader), predict(restored, val_loader))
print("checkpoint extra:", extra, "| identical predictions after reload:", same_predictions)
assert same_predictions

# %% [markdown]
# ## 6. Overfitting and its cures
#
# With few examples and many parameters a network can memorise its training set: the training loss keeps
# falling toward 0 while the validation loss turns around and rises — the network becomes over-confident
# on examples it has not seen. To make this visible we train a wide two-hidden-layer MLP
# (64-256-256-10, about 85,000 parameters) on only **150** training images for 80 epochs with plain Adam
# at a constant learning rate, then try three cures:
# - **weight decay**: shrink every weight a little each step ($w \leftarrow w - \eta\lambda w$ in AdamW),
#   preferring small weights and smooth functions;
# - **dropout**: during training zero each hidden unit with probability $p$ (and scale the rest by
#   $1/(1-p)$), so no unit can rely on a particular other one; at evaluation all units are used;
# - **early stopping**: watch the validation loss and stop when it has not improved for `patience` epochs,
#   keeping the best weights.
#
# `fit` restores the best epoch's weights whenever it gets a validation set; that *is* early stopping's
# cure, so the other three arms switch it off (`restore_best=False`) and end with the weights their own
# training produced. One run proves little, so every arm is trained with three seeds (the seed sets the
# initial weights, the batches and the dropout masks; the arms of one seed share them) and each claim is
# a paired comparison over the seeds (`lib.results.paired_comparison`: a mean difference beyond two
# standard errors, else "tie"). The curves show seed 0.

# %%
# NBVAL_IGNORE_OUTPUT
X_small, y_small = X_train[:150], y_train[:150]
settings = {  # name: (dropout, weight decay, patience)
    "no regularisation": (0.0, 0.0, None),
    "weight decay (AdamW, λ=1)": (0.0, 1.0, None),
    "dropout p=0.5": (0.5, 0.0, None),
    "early stopping (patience 10)": (0.0, 0.0, 10),
}
SEEDS = [0, 1, 2]
runs = {name: [] for name in settings}                  # one History per seed
for seed in SEEDS:
    for name, (p_drop, decay, patience) in settings.items():
        with seeded(seed):
            model = MLP((64, 256, 256, 10), dropout=p_drop)
        small_loader = data.make_loader(X_small, y_small, batch_size=32, shuffle=True, seed=seed)
        runs[name].append(fit(model, small_loader, epochs=80, optimizer=adamw(model, lr=3e-3, weight_decay=decay),
                              val_loader=val_loader, patience=patience, restore_best=patience is not None,
                              progress=False))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for name, hs in runs.items():
    axes[0].plot(hs[0]["val_loss"], label=name)
    axes[1].semilogy(hs[0]["train_loss"], label=name)
axes[0].set(title="Validation loss (150 training images, seed 0)", xlabel="epoch", ylabel="cross-entropy", ylim=(0.1, 0.6))
axes[1].set(title="Training loss (seed 0)", xlabel="epoch", ylabel="cross-entropy (log scale)")
axes[0].legend(fontsize=8)
plt.show()
final = {name: [h["val_loss"][-1] if name != "early stopping (patience 10)" else min(h["val_loss"]) for h in hs]
         for name, hs in runs.items()}                  # the validation loss of the weights each arm returns
print(f"{'':30s} {'epochs':14s} {'lowest val loss':22s} val loss of the returned weights   (seeds {SEEDS})")
for name, hs in runs.items():
    print(f"{name:30s} {str([len(h['val_loss']) for h in hs]):14s} "
          f"{str([round(min(h['val_loss']), 3) for h in hs]):22s} {[round(v, 3) for v in final[name]]}")

plain, decay, drop = ([np.array(h["val_loss"]) for h in runs[name]] for name in list(settings)[:3])
comparisons = {
    "returned weights: weight decay vs none": results.paired_comparison(
        final["weight decay (AdamW, λ=1)"], final["no regularisation"], names=("weight decay", "none"),
        higher_is_better=False),
    "returned weights: dropout vs none": results.paired_comparison(
        final["dropout p=0.5"], final["no regularisation"], names=("dropout", "none"), higher_is_better=False),
    "lowest val loss: dropout vs none": results.paired_comparison(
        [h.min() for h in drop], [h.min() for h in plain], names=("dropout", "none"), higher_is_better=False),
}
for claim, c in comparisons.items():
    print(f"{claim:40s} {c}")
rise = [h[-1] / h.min() - 1 for h in plain]
print("early stopping returns the unregularised run's minimum (the same seed follows the same path until it "
      "stops); the unregularised run ends above that minimum by " + ", ".join(f"{r:.0%}" for r in rise))

# %%
for claim, expected in zip(comparisons, ["weight decay better", "tie", "dropout better"]):
    results.expect_choice(claim, comparisons[claim].verdict, [expected] if expected != "tie" else ["tie", "none better"])
results.expect("smallest rise of the unregularised validation loss above its minimum", 100 * min(rise), 25.0,
               12.0, unit=" %", at_least=15.0, digits=0)
same_path = all(np.isclose(min(e["val_loss"]), p.min()) for e, p in zip(runs["early stopping (patience 10)"], plain))
print("early stopping stopped after", "at most 60" if max(len(h["val_loss"]) for h in runs["early stopping (patience 10)"]) <= 60
      else "more than 60", "of the 80 epochs in every seed; its best epoch is the unregularised run's:", same_path)
assert same_path and max(len(h["val_loss"]) for h in runs["early stopping (patience 10)"]) <= 60

# %% [markdown]
# Read the curves and the table: without regularisation the training loss dives toward $10^{-3}$ while the
# validation loss reaches its minimum within a few epochs and then climbs, in every seed, by 24–29%. Early
# stopping keeps exactly that minimum and saves the remaining epochs. Weight decay ends with a lower
# validation loss than no regularisation in every seed. Dropout lowers the minimum (though part of that
# may be its jumpier curve: the lowest point of a noisier curve is lower by chance), but used alone with a
# constant learning rate its noisy curve drifts back up: the weights it ends with are no better than no
# regularisation at all (a tie, or worse). Three seeds are few: two standard errors is then a low bar
# (about 80% confidence rather than 95%), so read "better" here as good evidence, not proof. In practice
# the cures are combined — our recipe uses weight decay, dropout, label smoothing and validation-based
# choices together.
#
# ## 7. Reading the mistakes: confusion matrix and misclassified images
#
# Accuracy is one number; the **confusion matrix** $C$ says which mistakes: $C_{ij}$ counts images of
# true class $i$ predicted as class $j$. The diagonal holds the correct answers. `sklearn.metrics`
# computes and draws it. Looking at mistakes is a way of deciding what to try next, so it is done on the
# **validation** set: an error analysis of the test set would turn it into a second validation set.

# %%
# NBVAL_IGNORE_OUTPUT
val_pred = predict(mlp, val_loader).argmax(1).numpy()
cm = confusion_matrix(y_val, val_pred, labels=range(10))
fig, ax = plt.subplots(figsize=(5, 4.5))
ConfusionMatrixDisplay(cm, display_labels=range(10)).plot(ax=ax, colorbar=False)
ax.set(title="PyTorch MLP on the validation set", xlabel="predicted digit", ylabel="true digit")
plt.show()
wrong = np.flatnonzero(val_pred != y_val)
image_grid(X_val[wrong].reshape(-1, 8, 8), labels=[f"{t}→{p}" for t, p in zip(y_val[wrong], val_pred[wrong])],
           title="Misclassified validation images (true → predicted)")
plt.show()

# %%
print("the confusion matrix counts every validation image once:", cm.sum() == len(y_val))
print("its diagonal is the number of correct answers:           ", np.trace(cm) == (val_pred == y_val).sum())
assert cm.sum() == len(y_val) and np.trace(cm) == (val_pred == y_val).sum()

# %% [markdown]
# Many of the misclassified digits are hard for a person too at 8×8 resolution.
#
# ## 8. A small hyper-parameter sweep
#
# The learning rate and the width (number of hidden units) are the first two knobs to try. A **grid
# sweep** trains one network per combination and compares them **on the validation set** (the test set
# stays untouched). Each run here is short (30 epochs) to fit the time budget; on a GPU, sweep more values
# and several seeds per cell.

# %%
# NBVAL_IGNORE_OUTPUT
learning_rates, widths = [3e-4, 3e-3, 3e-2, 3e-1], [16, 64, 256]
sweep = np.zeros((len(learning_rates), len(widths)))
for i, lr in enumerate(learning_rates):
    for j, width in enumerate(widths):
        with seeded(0):
            model = MLP((64, width, 10))
        h = train_classifier(model, X_train, y_train, epochs=30, lr=lr, batch_size=64,
                             val=(X_val, y_val), progress=False)
        sweep[i, j] = h["val_accuracy"][-1]
best_i, best_j = np.unravel_index(sweep.argmax(), sweep.shape)
print(f"best validation accuracy {sweep.max():.1%} (learning rate {learning_rates[best_i]}, {widths[best_j]} units)")
print("mean over the widths, per learning rate:", ", ".join(f"{lr}: {m:.1%}" for lr, m in zip(learning_rates, sweep.mean(1))))

fig, ax = plt.subplots(figsize=(4.5, 4))
ax.imshow(sweep, cmap="viridis", vmin=0.8, vmax=1.0)
for (i, j), v in np.ndenumerate(sweep):
    ax.text(j, i, f"{v:.1%}", ha="center", va="center", color="w" if v < 0.93 else "k", fontsize=9)
ax.set(xticks=range(len(widths)), xticklabels=widths, yticks=range(len(learning_rates)), yticklabels=learning_rates,
       xlabel="hidden units", ylabel="learning rate", title="Validation accuracy, 30 epochs")
ax.grid(False)
plt.show()

# %%
too_small, too_large = sweep[0], sweep[-1]
results.expect("best validation accuracy of the sweep", 100 * sweep.max(), 98.1,
               results.tolerance_for_accuracy(98.1, 360), unit=" %", at_least=97.0)
print("learning rate 3e-4 is too small for 30 epochs (on average > 10 points below the best):",
      too_small.mean() < sweep.max() - 0.1)
print("learning rate 0.3 is too large (on average > 10 points below the best):", too_large.mean() < sweep.max() - 0.1)
assert sweep.max() >= 0.97 and too_small.mean() < sweep.max() - 0.1 and too_large.mean() < sweep.max() - 0.1

# %% [markdown]
# The picture has the shape of chapter 01's learning-rate experiment: too small a learning rate has not
# converged in 30 epochs whatever the width; too large a one (0.3) is far worse everywhere; in between,
# 3e-3 and 3e-2 are within noise of each other (one seed, and a cell's accuracy on 360 images spreads by
# about ±0.9 points), and width helps up to a point. Section 5's recipe (learning rate $10^{-3}$, 100 epochs,
# a cosine schedule) was fixed in advance, as the course's recipe for all its classifiers, not chosen by
# this sweep; a sweep like this one, on validation, is how one would choose it for a new problem.
#
# ## 9. Imbalanced classes and class weights
#
# Real datasets are rarely balanced: fraud is rare, so are most diseases. To see what happens, keep only
# **6** training images of the digits 3, 8 and 9 (about 107 of each other digit) and evaluate on the
# balanced validation set. A network minimising the average loss mostly ignores rare classes: predicting
# them is rarely worth it. **Class weights** $w_c = n / (k\, n_c)$ ($n$ examples, $k$ classes, $n_c$ examples
# of class $c$) multiply each example's loss so that every class contributes equally;
# `F.cross_entropy(weight=…)` implements this. (Oversampling the rare classes, e.g. with
# `WeightedRandomSampler`, is the alternative.) Both arms are trained with three seeds, paired (same seed,
# same initial weights and batches), 40 epochs each.

# %%
# NBVAL_IGNORE_OUTPUT
minority = [3, 8, 9]
rng = np.random.default_rng(0)
keep = np.ones(len(y_train), bool)
for c in minority:
    members = np.flatnonzero(y_train == c)
    keep[rng.choice(members, len(members) - 6, replace=False)] = False
X_imb, y_imb = X_train[keep], y_train[keep]
weights = class_weights(y_imb)
print("training examples per class:", np.bincount(y_imb).tolist())
print("class weights:", [round(float(w), 2) for w in weights])

recalls = {"unweighted": [], "class-weighted": []}     # per seed: the recall of each digit on validation
for seed in SEEDS:
    for name, w in [("unweighted", None), ("class-weighted", weights)]:
        with seeded(seed):
            model = MLP((64, 256, 10), dropout=0.2)
        train_classifier(model, X_imb, y_imb, epochs=40, class_weight=w, progress=False, seed=seed)
        pred = predict(model, val_loader).argmax(1).numpy()
        recalls[name].append(recall_score(y_val, pred, average=None))
        print(f"seed {seed} {name:15s} validation accuracy {(pred == y_val).mean():.1%}, "
              f"recall of 3/8/9: {recalls[name][-1][minority].round(2)}")
rare_recall = {name: [r[minority].mean() for r in rs] for name, rs in recalls.items()}
gain = results.paired_comparison(rare_recall["class-weighted"], rare_recall["unweighted"],
                                 names=("class-weighted", "unweighted"))
print("mean recall of 3/8/9, class-weighted minus unweighted:", gain)

fig, ax = plt.subplots(figsize=(6.5, 3.3))
for k, (name, rs) in enumerate(recalls.items()):
    ax.bar(np.arange(10) + (k - 0.5) * 0.4, np.mean(rs, axis=0), width=0.4, label=name)
ax.set(title="Per-class recall on validation, mean of 3 seeds (3, 8, 9 rare in training)", xlabel="digit",
       ylabel="recall", xticks=range(10), ylim=(0, 1.25), yticks=np.linspace(0, 1, 6))
ax.legend(loc="upper center", ncol=2, fontsize=8)
plt.show()

# %%
# The gain is a mean over three paired seeds; its tolerance comes from the seeds' own spread (the gains
# of the stored run were 62, 59 and 72 points: a standard deviation of 6.6).
results.expect_choice("class weights on the rare digits' recall", gain.verdict, ["class-weighted better"])
results.expect("gain in the mean recall of the rare digits from class weights", 100 * gain.mean, 64.7,
               results.tolerance_for_mean(6.6, len(SEEDS)), unit=" points", at_least=20.0)

# %% [markdown]
# **Recall** of class $c$ is the share of true $c$'s that the model finds. Unweighted, the rare digits are
# mostly missed; weighted, most are found, in every seed, at the cost of a lower recall on some frequent
# digits: some of their images are now taken for a rare one.
#
# ## 10. Widget: explore the confusion matrix
#
# Pick a cell (true digit, predicted digit) and see the validation images behind it — the diagonal shows
# correctly classified examples, off-diagonal cells the confusions. `confusion_cell` is the plain function
# behind the widget.

# %%
import ipywidgets as widgets

from lib.widgets import InteractiveFigure


def confusion_cell(true: int, pred: int, y_true=y_val, y_pred=val_pred) -> np.ndarray:
    """Indices of the validation images with label ``true`` that the model predicted as ``pred``."""
    return np.flatnonzero((y_true == true) & (y_pred == pred))


def draw_cell(true: int, pred: int, limit: int = 20) -> np.ndarray:
    idx = confusion_cell(true, pred)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3), gridspec_kw={"width_ratios": [1, 2]})
    axes[0].imshow(cm, cmap="Blues")
    axes[0].add_patch(plt.Rectangle((pred - 0.5, true - 0.5), 1, 1, fill=False, ec="red", lw=2))
    axes[0].set(title="confusion matrix", xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10))
    axes[0].grid(False)
    shown = idx[:limit]
    if len(shown):
        tiles = np.concatenate([X_val[i].reshape(8, 8) for i in shown], axis=1)
        axes[1].imshow(tiles, cmap="gray_r")
    axes[1].set(title=f"true {true}, predicted {pred}: {len(idx)} image(s)", xticks=[], yticks=[])
    return idx


print("validation images of digit 0 predicted as 0 (cell count equals the matrix):", len(confusion_cell(0, 0)) == cm[0, 0])

# %%
# NBVAL_IGNORE_OUTPUT
explorer = InteractiveFigure(draw_cell, true=widgets.Dropdown(options=range(10), value=3, description="true"),
                             pred=widgets.Dropdown(options=range(10), value=3, description="predicted"))
explorer

# %%
explorer.controls["true"].value = 8   # what choosing a cell in the dropdowns does
explorer.controls["pred"].value = 8
print("the widget shows exactly the images of cell (8, 8):", np.array_equal(explorer.result, confusion_cell(8, 8)))

# %% [markdown]
# ## 11. The same in Keras
#
# The classic Keras MLP was written for MNIST: 28×28 inputs (`Flatten(input_shape=(28, 28))` or 784 values),
# `Dense(512, activation="relu")` with `Dropout`, a softmax output, a cross-entropy loss and pixels divided
# by 255. **Common pitfall:** copying it unchanged to other data — the input shape must be this
# data's (64 values), the pixels must be scaled once (ours are already in $[0,1]$; some tutorials skip
# the scaling altogether), and `model.predict` returns probabilities, so accuracy needs an
# `argmax`. `lib.mlp.keras_mlp` builds the corrected model; it outputs logits, so the loss is told
# `from_logits=True`. It keeps the classic width 512 with dropout 0.3 (our PyTorch MLP: 256 units, dropout
# 0.2) and is trained for 40 epochs with the same learning rate, schedule and label smoothing (AdamW with
# weight decay $10^{-4}$ — Keras' decays the biases too — and a cosine schedule; Keras' label smoothing
# needs one-hot targets), so the accuracies are comparable but come from different models.

# %%
# NBVAL_IGNORE_OUTPUT
from lib.keras_models import load_keras
from lib.mlp import keras_mlp

keras = load_keras()
seed_everything(0)  # now that Keras is loaded, this seeds its initial weights and dropout too
kmodel = keras_mlp((64, 512, 10), dropout=0.3)
epochs, batch = 40, 32
schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=epochs * int(np.ceil(len(X_train) / batch)))
kmodel.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
               loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
               metrics=["accuracy"])
kmodel.fit(X_train, keras.utils.to_categorical(y_train, 10), epochs=epochs, batch_size=batch, verbose=0)
keras_acc = (kmodel.predict(X_test, verbose=0).argmax(axis=1) == y_test).mean()
print(f"Keras MLP test accuracy {keras_acc:.2%} | PyTorch MLP {mlp_test['accuracy']:.2%} | NumPy MLP {numpy_acc:.2%}")

# %%
print("Keras MLP parameters:", kmodel.count_params(), "= PyTorch MLP((64, 512, 10)):",
      sum(p.numel() for p in MLP((64, 512, 10)).parameters()))
results.expect("Keras MLP test accuracy", 100 * keras_acc, 97.8, results.tolerance_for_accuracy(97.8, 360),
               unit=" %", at_least=97.0)

# %% [markdown]
# ## Summary
#
# - Scale the inputs, split once (stratified) into train / validation / test, and decide everything on
#   validation — the sweep, the error analysis, the class-weight comparison; the test set is measured
#   once per final model (the NumPy, PyTorch and Keras MLPs).
# - Cross-entropy is the negative log-likelihood of a categorical model; with softmax, computed stably
#   (max-subtraction, log-sum-exp), its gradient is $(P-Y)/n$.
# - Without a nonlinearity, stacked linear layers collapse into one; the ReLU between them is what depth
#   buys. The backward pass of an MLP is matrix products with transposes plus ReLU's 0/1 mask; the
#   hand-written version equals autograd's (checked to $10^{-6}$).
# - He initialisation keeps activations at scale through ReLU layers; too-small weights make them vanish.
# - Overfitting shows as a rising validation loss; weight decay, dropout and early stopping each counter
#   regularisation in its own way (three paired seeds): weight decay ends lower, dropout reaches a lower
#   minimum but ends no better, early stopping keeps the minimum. `fit` restores the best validation epoch
#   unless told not to.
# - Label smoothing puts a floor under the training loss: the entropy of the smoothed target.
# - Confusion matrices and misclassified images show *which* mistakes; a sweep on validation shows which
#   learning rates and widths work; class weights rescue rare classes (three paired seeds).
# - Results on the fixed test split: NumPy MLP ≥ 95%, PyTorch MLP ≥ 97.5%, Keras MLP ≥ 97% (asserted above).
#
# Next, chapter 04 replaces the fully connected first layers by **convolutions**, which know that
# neighbouring pixels belong together.
#
# ## Further reading
#
# - Goodfellow, Bengio and Courville, *Deep Learning* (2016), chapter 6 (deep feedforward networks,
#   maximum likelihood and cross-entropy) and chapter 7 (regularisation: weight decay, early stopping,
#   dropout) — the theory behind sections 2 and 6.
# - He et al., "Delving deep into rectifiers" (2015) — the derivation of He initialisation (section 4).
# - Srivastava et al., "Dropout" (JMLR 2014); Loshchilov and Hutter, "Decoupled weight decay
#   regularization" (ICLR 2019) — dropout and AdamW as used here.
# - Müller, Kornblith and Hinton, "When does label smoothing help?" (NeurIPS 2019) — what smoothing does
#   to the logits.
# - Dive into Deep Learning (d2l.ai), chapter 5 "Multilayer perceptrons" — the same ground with a
#   different emphasis (dropout and numerical stability); Prince, *Understanding Deep Learning*, chapters
#   5 (loss functions from maximum likelihood) and 9 (regularisation).
# - Karpathy, "A recipe for training neural networks" (2019, blog) — the practical craft of section 6–9.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer (replace `raise NotImplementedError()` in the student version)
# and a check cell that prints ✅ or ❌.
#
# **Exercise 1 — the gradient with label smoothing (2 points).** Section 2 derived $\partial L/\partial z = (P - Y)/n$
# for one-hot targets. With label smoothing (section 5) the target of an example with label $y$ is the row
# $q = (1-\varepsilon)\,\mathrm{onehot}(y) + \varepsilon/k$, and the loss is $-\frac1n\sum_i\sum_j q_{ij}\log p_{ij}$.
# Complete `smoothed_ce_grad(logits, y, eps)`: its gradient with respect to `logits: (n, k)`, for integer
# labels `y: (n,)`, as a NumPy array `(n, k)`. Derive it first (hint: each row of $q$ sums to 1). The check
# compares with autograd through `F.cross_entropy(..., label_smoothing=eps)`.

# %%
def smoothed_ce_grad(logits: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    ### BEGIN SOLUTION
    n, k = logits.shape
    q = np.full((n, k), eps / k)
    q[np.arange(n), y] += 1.0 - eps
    return (softmax(logits) - q) / n
    ### END SOLUTION


# %% [check: 2 points]
def autograd_smoothed_grad(logits, y, eps):
    t = torch.tensor(logits, requires_grad=True)
    F.cross_entropy(t, torch.tensor(y), label_smoothing=eps).backward()
    return t.grad.numpy()


ex_rng = np.random.default_rng(3)
cases = [(ex_rng.normal(size=(n, k)) * 3, ex_rng.integers(0, k, n), eps) for n, k, eps in [(4, 3, 0.0), (7, 10, 0.1), (5, 4, 0.3)]]
# compared after rounding to 12 decimals: exp() may differ in the last bit between NumPy, PyTorch and CPUs
check.check_function("smoothed_ce_grad", lambda z, y, e: np.round(np.asarray(smoothed_ce_grad(z, y, e), dtype=float), 12),
                     [((z, y, e), np.round(autograd_smoothed_grad(z, y, e), 12)) for z, y, e in cases], atol=1e-10)

# %% [markdown]
# **Exercise 2 — counting parameters (2 points).** Complete `mlp_parameter_count(sizes)`: the number of weights and
# biases of a fully connected network with layer widths `sizes`, e.g. `(64, 256, 10)`.

# %%
def mlp_parameter_count(sizes: tuple[int, ...]) -> int:
    ### BEGIN SOLUTION
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    ### END SOLUTION


# %% [check: 2 points]
check.check_function("mlp_parameter_count", mlp_parameter_count,
                     [((s,), sum(p.numel() for p in MLP(s).parameters()))
                      for s in [(64, 10), (64, 256, 10), (64, 256, 256, 10), (5, 3, 7, 2)]])

# %% [markdown]
# **Exercise 3 — a confusion matrix by hand (2 points).** Complete `my_confusion_matrix(y_true, y_pred, k)`: a
# `(k, k)` integer array whose entry `[i, j]` counts examples of true class `i` predicted as `j`. Do not
# use scikit-learn; the check compares with `sklearn.metrics.confusion_matrix`.

# %%
def my_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    ### BEGIN SOLUTION
    C = np.zeros((k, k), dtype=int)
    np.add.at(C, (y_true, y_pred), 1)
    return C
    ### END SOLUTION


# %% [check: 2 points]
ex_rng = np.random.default_rng(4)
cm_cases = [(ex_rng.integers(0, k, 40), ex_rng.integers(0, k, 40), k) for k in (3, 10)]
check.check_function("my_confusion_matrix", my_confusion_matrix,
                     [((t, p, k), confusion_matrix(t, p, labels=range(k))) for t, p, k in cm_cases])

# %% [markdown]
# **Exercise 4 — predict, then measure: how low can the training loss go? (3 points)** Our recipe trains with label
# smoothing $\varepsilon = 0.1$ (section 5).
# 1. Complete `smoothing_floor(eps, k)`: the smallest value the smoothed cross-entropy can take for $k$
#    classes, whatever the logits (the entropy of the smoothed target).
# 2. *Before running the check*, predict: an MLP trained for 100 epochs on only 100 images, with no dropout
#    and no weight decay, memorises them; without smoothing its training loss falls below 0.1. With
#    $\varepsilon = 0.1$, will its final training loss also fall below 0.1? Make `my_prediction()` return
#    `True` or `False`.
#
# The cells after the answer run the experiment (two short trainings, about a second) and compare.

# %%
def smoothing_floor(eps: float, k: int) -> float:
    ### BEGIN SOLUTION
    q = np.full(k, eps / k)
    q[0] += 1.0 - eps
    return float(-(q * np.log(q)).sum())
    ### END SOLUTION


def my_prediction() -> bool:
    ### BEGIN SOLUTION
    return False
    ### END SOLUTION


# %% [check: 2 points]
def final_training_loss(eps: float) -> float:
    with seeded(0):
        model = MLP((64, 256, 10))
    h = train_classifier(model, X_train[:100], y_train[:100], epochs=100, lr=3e-3, weight_decay=0.0,
                         label_smoothing=eps, progress=False, seed=0)
    return h["train_loss"][-1]


def entropy_by_torch(eps, k):   # the smoothed loss of the logits log q is the entropy of q
    log_q = torch.tensor([[math.log(1 - eps + eps / k)] + [math.log(eps / k)] * (k - 1)], dtype=torch.float64)
    return round(float(F.cross_entropy(log_q, torch.tensor([0]), label_smoothing=eps)), 12)


# rounded to 12 decimals: log() may differ in the last bit between NumPy, PyTorch and CPUs
check.check_function("smoothing_floor", lambda eps, k: round(float(smoothing_floor(eps, k)), 12),
                     [((eps, k), entropy_by_torch(eps, k)) for eps, k in [(0.1, 10), (0.2, 3), (0.05, 100)]], atol=1e-10)

# %%
# NBVAL_IGNORE_OUTPUT
loss_plain, loss_smoothed = final_training_loss(0.0), final_training_loss(0.1)
print(f"measured final training loss: {loss_plain:.4f} without smoothing, {loss_smoothed:.4f} with eps = 0.1")

# %% [check: 1 point]
check.check_equal("my_prediction (does the smoothed loss fall below 0.1?)",
                  check.answer_of("my_prediction", my_prediction), bool(loss_smoothed < 0.1))

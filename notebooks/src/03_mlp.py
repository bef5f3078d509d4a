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

from lib import data, results
from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.device import model_device, seed_everything, setup_notebook
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
# Two facts make this pair the standard choice:
# - **Stability.** $e^{z}$ overflows for $z \gtrsim 710$ in float64 (88 in float32). Softmax does not change
#   when the same constant is subtracted from every logit, so subtract $\max_j z_j$ first. For the loss, use
#   $\log p_y = z_y - \log\sum_l e^{z_l}$ (log-sum-exp), never `log(softmax(z))`, which gives $\log 0$.
# - **A simple gradient.** With $P$ the $n\times k$ matrix of predicted probabilities and $Y$ the one-hot
#   matrix of the labels,
#   $$\frac{\partial}{\partial z}\Big(\frac{1}{n}\sum_i \ell_i\Big) = \frac{1}{n}\,(P - Y),$$
#   predicted probabilities minus targets: the error signal that backpropagation sends down.

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
ax.set(title="Activation scale through a 20-layer ReLU network", xlabel="layer", ylabel="std of activations")
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
#   and $\varepsilon/k$ for the others, so the network is not pushed toward infinitely large logits.
#
# With a validation set, `fit` also puts back, at the end, the weights of the epoch with the lowest
# validation loss (`restore_best=True`), with or without early stopping: the model we evaluate is that
# epoch's.

# %%
twin = MLP.from_numpy(numpy_mlp)
close = np.allclose(numpy_mlp.forward(X_test), twin(torch.tensor(X_test, dtype=torch.float64)).detach().numpy(),
                    rtol=0, atol=1e-9)   # the logits of every test image
assert close
print(f"lib.mlp.NumpyMLP == lib.mlp.MLP (to 1e-9): {close}")

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
mlp = MLP((64, 256, 10), dropout=0.2)
history = train_classifier(mlp, X_train, y_train, epochs=100, lr=1e-3, val=(X_val, y_val), seed=0)
test_loader = data.make_loader(X_test, y_test, batch_size=512)
mlp_test = evaluate(mlp, test_loader)
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
same_predictions = torch.equal(predict(mlp, test_loader), predict(restored, test_loader))
print("checkpoint extra:", extra, "| identical predictions after reload:", same_predictions)
assert same_predictions

# %% [markdown]
# ## 6. Overfitting and its cures
#
# With few examples and many parameters a network can memorise its training set: the training loss keeps
# falling toward 0 while the validation loss turns around and rises — the network becomes over-confident
# on examples it has not seen. To make this visible we train a wide two-hidden-layer MLP
# (64-256-256-10, about 85,000 parameters) on only **150** training images with plain Adam at a constant
# learning rate, then try three cures:
# - **weight decay**: shrink every weight a little each step ($w \leftarrow w - \eta\lambda w$ in AdamW),
#   preferring small weights and smooth functions;
# - **dropout**: during training zero each hidden unit with probability $p$ (and scale the rest by
#   $1/(1-p)$), so no unit can rely on a particular other one; at evaluation all units are used;
# - **early stopping**: watch the validation loss and stop when it has not improved for `patience` epochs,
#   keeping the best weights.

# %%
# NBVAL_IGNORE_OUTPUT
X_small, y_small = X_train[:150], y_train[:150]
val_loader = data.make_loader(X_val, y_val, batch_size=512)
settings = {  # name: (dropout, weight decay, patience)
    "no regularisation": (0.0, 0.0, None),
    "weight decay (AdamW, λ=1)": (0.0, 1.0, None),
    "dropout p=0.5": (0.5, 0.0, None),
    "early stopping (patience 10)": (0.0, 0.0, 10),
}
curves = {}
for name, (p_drop, decay, patience) in settings.items():
    torch.manual_seed(0)
    model = MLP((64, 256, 256, 10), dropout=p_drop)
    small_loader = data.make_loader(X_small, y_small, batch_size=32, shuffle=True, seed=0)  # same batches for all
    curves[name] = fit(model, small_loader, epochs=120, optimizer=adamw(model, lr=3e-3, weight_decay=decay),
                       val_loader=val_loader, patience=patience, progress=False)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for name, h in curves.items():
    axes[0].plot(h["val_loss"], label=name)
    axes[1].semilogy(h["train_loss"], label=name)
axes[0].set(title="Validation loss (150 training images)", xlabel="epoch", ylabel="cross-entropy", ylim=(0.1, 0.6))
axes[1].set(title="Training loss", xlabel="epoch", ylabel="cross-entropy (log scale)")
axes[0].legend(fontsize=8)
plt.show()
for name, h in curves.items():
    print(f"{name:30s} epochs {len(h['val_loss']):3d}  best val loss {min(h['val_loss']):.3f}  "
          f"final val loss {h['val_loss'][-1]:.3f}  final val acc {h['val_accuracy'][-1]:.1%}")

# %%
plain, decay, drop, early = (curves[name] for name in settings)
checks = {
    "without regularisation the validation loss rises >20% above its minimum": plain["val_loss"][-1] > 1.2 * min(plain["val_loss"]),
    "weight decay ends with a lower validation loss": decay["val_loss"][-1] < plain["val_loss"][-1],
    "dropout reaches a lower best validation loss": min(drop["val_loss"]) < min(plain["val_loss"]),
    "early stopping stops well before 120 epochs": len(early["val_loss"]) < 60,
}
for claim, holds in checks.items():
    print(f"{claim}: {holds}")
assert all(checks.values())

# %% [markdown]
# Read the curves: without regularisation the training loss dives toward $10^{-3}$ while the validation
# loss reaches its minimum within a few epochs and then climbs. Weight decay keeps the validation loss nearly flat;
# dropout lowers it but, used alone, still drifts up late; early stopping simply keeps the weights from the
# best epoch. In practice they are combined — our recipe uses weight decay, dropout, label smoothing and
# validation-based choices together.
#
# ## 7. Reading the mistakes: confusion matrix and misclassified images
#
# Accuracy is one number; the **confusion matrix** $C$ says which mistakes: $C_{ij}$ counts test images
# of true class $i$ predicted as class $j$. The diagonal holds the correct answers. `sklearn.metrics`
# computes and draws it.

# %%
# NBVAL_IGNORE_OUTPUT
test_pred = predict(mlp, test_loader).argmax(1).numpy()
cm = confusion_matrix(y_test, test_pred, labels=range(10))
fig, ax = plt.subplots(figsize=(5, 4.5))
ConfusionMatrixDisplay(cm, display_labels=range(10)).plot(ax=ax, colorbar=False)
ax.set(title="PyTorch MLP on the test set", xlabel="predicted digit", ylabel="true digit")
plt.show()
wrong = np.flatnonzero(test_pred != y_test)
image_grid(X_test[wrong].reshape(-1, 8, 8), labels=[f"{t}→{p}" for t, p in zip(y_test[wrong], test_pred[wrong])],
           title="Misclassified test images (true → predicted)")
plt.show()

# %%
print("the confusion matrix counts every test image once:", cm.sum() == len(y_test))
print("its diagonal is the number of correct answers:     ", np.trace(cm) == (test_pred == y_test).sum())
assert cm.sum() == len(y_test) and np.trace(cm) == (test_pred == y_test).sum()

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
        torch.manual_seed(0)
        model = MLP((64, width, 10))
        h = train_classifier(model, X_train, y_train, epochs=30, lr=lr, batch_size=64,
                             val=(X_val, y_val), progress=False)
        sweep[i, j] = h["val_accuracy"][-1]
best_i, best_j = np.unravel_index(sweep.argmax(), sweep.shape)
print(f"best validation accuracy {sweep.max():.1%} (learning rate {learning_rates[best_i]}, {widths[best_j]} units)")

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
# converged in 30 epochs whatever the width; too large a one bounces around and never settles; in between,
# width helps up to a point. A short sweep favours large steps; our recipe in section 5 uses a smaller
# learning rate ($10^{-3}$) with more epochs (100), which ends at least as well and is less sensitive.
#
# ## 9. Imbalanced classes and class weights
#
# Real datasets are rarely balanced: fraud is rare, so are most diseases. To see what happens, keep only
# **6** training images of the digits 3, 8 and 9 (about 107 of each other digit) and test on the balanced
# test set. A network minimising the average loss mostly ignores rare classes: predicting them is rarely
# worth it. **Class weights** $w_c = n / (k\, n_c)$ ($n$ examples, $k$ classes, $n_c$ examples of class $c$)
# multiply each example's loss so that every class contributes equally; `F.cross_entropy(weight=…)`
# implements this. (Oversampling the rare classes, e.g. with `WeightedRandomSampler`, is the alternative.)

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

recalls = {}
for name, w in [("unweighted", None), ("class-weighted", weights)]:
    torch.manual_seed(0)
    model = MLP((64, 256, 10), dropout=0.2)
    train_classifier(model, X_imb, y_imb, epochs=40, class_weight=w, progress=False)
    pred = predict(model, test_loader).argmax(1).numpy()
    recalls[name] = recall_score(y_test, pred, average=None)
    print(f"{name:15s} test accuracy {(pred == y_test).mean():.1%}, recall of 3/8/9: {recalls[name][minority].round(2)}")
print(f"class weights raise the mean recall of 3/8/9 by "
      f"{100 * (recalls['class-weighted'][minority].mean() - recalls['unweighted'][minority].mean()):.1f} points")

fig, ax = plt.subplots(figsize=(6, 3))
for k, (name, r) in enumerate(recalls.items()):
    ax.bar(np.arange(10) + (k - 0.5) * 0.4, r, width=0.4, label=name)
ax.set(title="Per-class recall on the test set (3, 8, 9 are rare in training)", xlabel="digit",
       ylabel="recall", xticks=range(10))
ax.legend(loc="lower left")
plt.show()

# %%
# The rare digits have 108 test images together, so each mean recall has a binomial spread of several
# points (recalls near 33 % and 81 % in the stored run); the gain is a difference of the two, so their tolerances add in
# quadrature: about 25 points.
gain = recalls["class-weighted"][minority].mean() - recalls["unweighted"][minority].mean()
n_rare = int(np.isin(y_test, minority).sum())
results.expect("gain in the mean recall of the rare digits from class weights", 100 * gain, 47.4,
               math.hypot(results.tolerance_for_accuracy(33.3, n_rare), results.tolerance_for_accuracy(80.7, n_rare)),
               unit=" points", at_least=20.0)

# %% [markdown]
# **Recall** of class $c$ is the share of true $c$'s that the model finds. Unweighted, the rare digits are
# mostly missed; weighted, most are found, at the cost of a lower recall on some frequent digits: some of
# their images are now taken for a rare one.
#
# ## 10. Widget: explore the confusion matrix
#
# Pick a cell (true digit, predicted digit) and see the test images behind it — the diagonal shows
# correctly classified examples, off-diagonal cells the confusions. `confusion_cell` is the plain function
# behind the widget.

# %%
import ipywidgets as widgets

from lib.widgets import InteractiveFigure


def confusion_cell(true: int, pred: int, y_true=y_test, y_pred=test_pred) -> np.ndarray:
    """Indices of the test images with label ``true`` that the model predicted as ``pred``."""
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
        tiles = np.concatenate([X_test[i].reshape(8, 8) for i in shown], axis=1)
        axes[1].imshow(tiles, cmap="gray_r")
    axes[1].set(title=f"true {true}, predicted {pred}: {len(idx)} image(s)", xticks=[], yticks=[])
    return idx


print("test images of digit 0 predicted as 0 (cell count equals the matrix):", len(confusion_cell(0, 0)) == cm[0, 0])

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
# 0.2) and is trained for 60 epochs with the same learning rate, schedule and label smoothing (AdamW with
# weight decay $10^{-4}$ — Keras' decays the biases too — and a cosine schedule; Keras' label smoothing
# needs one-hot targets), so the accuracies are comparable but come from different models.

# %%
# NBVAL_IGNORE_OUTPUT
from lib.keras_models import load_keras
from lib.mlp import keras_mlp

keras = load_keras()
seed_everything(0)  # now that Keras is loaded, this seeds its initial weights and dropout too
kmodel = keras_mlp((64, 512, 10), dropout=0.3)
epochs, batch = 60, 32
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
results.expect("Keras MLP test accuracy", 100 * keras_acc, 98.1, results.tolerance_for_accuracy(98.1, 360),
               unit=" %", at_least=97.0)

# %% [markdown]
# ## Summary
#
# - Scale the inputs, split once (stratified) into train / validation / test, and decide everything on
#   validation; the test set is measured once.
# - Softmax + cross-entropy, computed stably (max-subtraction, log-sum-exp), give the gradient $(P-Y)/n$.
# - The backward pass of an MLP is matrix products with transposes plus ReLU's 0/1 mask; the hand-written
#   version equals autograd's (checked to $10^{-6}$).
# - He initialisation keeps activations at scale through ReLU layers; too-small weights make them vanish.
# - Overfitting shows as a rising validation loss; weight decay, dropout and early stopping counter it.
# - Confusion matrices and misclassified images show *which* mistakes; sweeps choose hyper-parameters on
#   validation; class weights rescue rare classes.
# - Results on the fixed test split: NumPy MLP ≥ 95%, PyTorch MLP ≥ 97.5%, Keras MLP ≥ 97% (asserted above).
#
# Next, chapter 04 replaces the fully connected first layers by **convolutions**, which know that
# neighbouring pixels belong together.

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer (between `### BEGIN SOLUTION` and `### END SOLUTION`) and a
# check cell that prints ✅ or ❌.
#
# **Exercise 1 — the gradient of softmax cross-entropy.** Complete `ce_grad(logits, y)`: return
# $\partial L/\partial z$ for the *mean* cross-entropy $L$ of integer labels `y: (n,)` under
# `logits: (n, k)`, as a NumPy array of shape `(n, k)`.

# %%
from lib import check


def ce_grad(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    ### BEGIN SOLUTION
    g = softmax(logits)
    g[np.arange(len(y)), y] -= 1.0
    return g / len(y)
    ### END SOLUTION


# %%
def autograd_ce_grad(logits, y):
    t = torch.tensor(logits, requires_grad=True)
    F.cross_entropy(t, torch.tensor(y)).backward()
    return t.grad.numpy()


ex_rng = np.random.default_rng(3)
cases = [(ex_rng.normal(size=(n, k)) * 3, ex_rng.integers(0, k, n)) for n, k in [(4, 3), (7, 10)]]
# compared after rounding to 12 decimals: exp() may differ in the last bit between NumPy, PyTorch and CPUs
check.check_function("ce_grad", lambda z, y: np.round(np.asarray(ce_grad(z, y), dtype=float), 12),
                     [((z, y), np.round(autograd_ce_grad(z, y), 12)) for z, y in cases], atol=1e-10)

# %% [markdown]
# **Exercise 2 — counting parameters.** Complete `mlp_parameter_count(sizes)`: the number of weights and
# biases of a fully connected network with layer widths `sizes`, e.g. `(64, 256, 10)`.

# %%
def mlp_parameter_count(sizes: tuple[int, ...]) -> int:
    ### BEGIN SOLUTION
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    ### END SOLUTION


# %%
check.check_function("mlp_parameter_count", mlp_parameter_count,
                     [((s,), sum(p.numel() for p in MLP(s).parameters()))
                      for s in [(64, 10), (64, 256, 10), (64, 256, 256, 10), (5, 3, 7, 2)]])

# %% [markdown]
# **Exercise 3 — a confusion matrix by hand.** Complete `my_confusion_matrix(y_true, y_pred, k)`: a
# `(k, k)` integer array whose entry `[i, j]` counts examples of true class `i` predicted as `j`. Do not
# use scikit-learn; the check compares with `sklearn.metrics.confusion_matrix`.

# %%
def my_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    ### BEGIN SOLUTION
    C = np.zeros((k, k), dtype=int)
    np.add.at(C, (y_true, y_pred), 1)
    return C
    ### END SOLUTION


# %%
ex_rng = np.random.default_rng(4)
cm_cases = [(ex_rng.integers(0, k, 40), ex_rng.integers(0, k, 40), k) for k in (3, 10)]
check.check_function("my_confusion_matrix", my_confusion_matrix,
                     [((t, p, k), confusion_matrix(t, p, labels=range(k))) for t, p, k in cm_cases])

# %% [markdown]
# **Exercise 4 — balanced class weights.** Complete `balanced_weights(y, k)` returning the `(k,)` weights
# $w_c = n / (k\, n_c)$ of section 9, for labels `y: (n,)` in which every class occurs.

# %%
def balanced_weights(y: np.ndarray, k: int) -> np.ndarray:
    ### BEGIN SOLUTION
    return len(y) / (k * np.bincount(y, minlength=k))
    ### END SOLUTION


# %%
from sklearn.utils.class_weight import compute_class_weight

check.check_function("balanced_weights", balanced_weights,
                     [((y, k), compute_class_weight("balanced", classes=np.arange(k), y=y))
                      for y, k in [(y_imb, 10), (np.array([0, 0, 0, 1, 2, 2]), 3)]])

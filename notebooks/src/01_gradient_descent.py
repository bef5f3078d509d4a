# %% [markdown]
# # 01 · Gradient descent
#
# Training a neural network means finding parameters that make a loss small. Almost every model in
# this course — up to the large Transformers — is trained by the same idea: **compute the slope of the
# loss and take a small step downhill**. This chapter builds that idea on the smallest model there is,
# a straight line, where we know the exact answer and can check every step.
#
# **Learning objectives**
# - derive the gradient of the mean squared error of a linear model by hand;
# - implement batch gradient descent and show it reaches the closed-form least-squares solution;
# - explain what a learning rate that is too small, right, or too large does — and predict the limit;
# - compare full-batch, mini-batch and stochastic gradient descent;
# - implement momentum and Adam (with bias correction) and check them against PyTorch and Keras;
# - train a logistic-regression classifier with gradient descent.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from lib import data
from lib.device import setup_notebook
from lib.optim import SGD, Adam, Param, optimize_path
from lib.plot import contour_path, decision_boundary

device = setup_notebook(seed=0)

# %% [markdown]
# ## 1. A line, a loss, and its gradient
#
# We observe $n$ points $(x_i, y_i)$ that lie roughly on a line and want the line $\hat y = wx + b$
# that fits them best. "Best" needs a number to minimise: the **mean squared error** (MSE)
#
# $$L(w, b) = \frac{1}{n}\sum_{i=1}^{n} \big(\hat y_i - y_i\big)^2, \qquad \hat y_i = w x_i + b .$$
#
# The gradient $\nabla L = (\partial L/\partial w,\ \partial L/\partial b)$ points in the direction in
# which $L$ grows fastest. By the chain rule, with the residual $r_i = \hat y_i - y_i$:
#
# $$\frac{\partial L}{\partial w} = \frac{2}{n}\sum_i r_i\, x_i, \qquad
#   \frac{\partial L}{\partial b} = \frac{2}{n}\sum_i r_i .$$
#
# **Gradient descent** repeats $\theta \leftarrow \theta - \eta\, \nabla L(\theta)$ for the parameters
# $\theta = (w, b)$ and a **learning rate** $\eta > 0$.

# %%
x, y = data.linear_data(n=100, w=2.0, b=-1.0, noise=0.5, seed=0)


def mse(w, b):
    """Loss for one (w, b), or for whole grids of them (broadcasting over the data axis)."""
    w, b = np.asarray(w)[..., None], np.asarray(b)[..., None]
    return np.mean((w * x + b - y) ** 2, axis=-1)


def mse_grad(theta):
    w, b = theta
    r = w * x + b - y
    return np.array([2 * np.mean(r * x), 2 * np.mean(r)])


# a finite-difference check of the hand-derived gradient: (L(θ+h e_k) - L(θ-h e_k)) / 2h
theta0, h = np.array([0.3, 0.7]), 1e-6
numeric = np.array([(mse(*(theta0 + h * e)) - mse(*(theta0 - h * e))) / (2 * h) for e in np.eye(2)])
print("hand-derived gradient:", mse_grad(theta0).round(6), " finite differences:", numeric.round(6))
assert np.allclose(mse_grad(theta0), numeric, atol=1e-6)

# %% [markdown]
# ## 2. Gradient descent reaches the least-squares answer
#
# For a linear model the minimum is known in closed form: stacking the inputs as rows $(x_i, 1)$ of a
# matrix $A$, the least-squares solution solves $A^\top A\,\theta = A^\top y$ (`np.linalg.lstsq`
# computes it stably). Gradient descent must arrive at the same place.

# %%
A = np.c_[x, np.ones_like(x)]
theta_ls = np.linalg.lstsq(A, y, rcond=None)[0]

theta = np.zeros(2)
eta = 0.1
losses = []
for step in range(500):
    losses.append(mse(*theta))
    theta = theta - eta * mse_grad(theta)

gap = np.abs(theta - theta_ls).max()
print(f"least squares:    w = {theta_ls[0]:.6f}, b = {theta_ls[1]:.6f}")
print(f"gradient descent: w = {theta[0]:.6f}, b = {theta[1]:.6f}   (within 1e-4: {gap < 1e-4})")
assert gap < 1e-4, "gradient descent must reach the least-squares solution within 1e-4"

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].scatter(x, y, s=10, label="data")
grid = np.linspace(-2, 2, 2)
axes[0].plot(grid, theta[0] * grid + theta[1], "r", label="fitted line")
axes[0].set(title="The data and the fitted line", xlabel="x", ylabel="y")
axes[0].legend()
axes[1].semilogy(np.array(losses) - mse(*theta_ls) + 1e-16)  # + 1e-16: log(0) is undefined
axes[1].set(title="Gradient descent: excess loss $L - L^*$", xlabel="step", ylabel="$L(\\theta_t) - L(\\theta^*)$")
plt.show()

# %% [markdown]
# The excess loss $L(\theta_t) - L(\theta^*)$ falls on a straight line in a log plot: gradient descent
# on a quadratic converges *linearly* (by a constant factor per step). After about 90 steps it reaches
# $10^{-16}$, the rounding floor of float64 arithmetic (we add $10^{-16}$ so that the logarithm of an
# exact zero stays defined), and the curve goes flat. The factor per step depends on the learning
# rate — next.
#
# ## 3. The learning rate: too small, right, too large
#
# The MSE is a quadratic bowl. Its curvature is given by the Hessian $H = \frac{2}{n}A^\top A$, whose
# eigenvalues $\lambda_{\min} \le \lambda_{\max}$ measure how steep the bowl is along its two axes.
# Gradient descent on a quadratic is stable exactly when $\eta < 2/\lambda_{\max}$: beyond that, each
# step overshoots the valley by more than it started with and the iterates **diverge**.

# %%
H = 2 / len(x) * A.T @ A
lam = np.linalg.eigvalsh(H)
eta_max = 2 / lam.max()
print(f"Hessian eigenvalues: {lam.round(3)}  →  divergence above eta = 2/λ_max = {eta_max:.3f}")

start = np.array([-1.0, 2.5])
paths = {f"η = {eta}": optimize_path(mse_grad, start, "sgd", lr=eta, steps=25)
         for eta in (0.02, 0.4, round(1.02 * eta_max, 3))}
contour_path(mse, paths, extent=(-2, 5, -3, 3), optimum=theta_ls,
             title="Learning rate too small, about right, too large (25 steps)")
plt.show()

diverged = optimize_path(mse_grad, start, "sgd", lr=1.02 * eta_max, steps=200)
stable = optimize_path(mse_grad, start, "sgd", lr=0.98 * eta_max, steps=200)
print("just above the limit, distance to the optimum after 200 steps grows to",
      f"{np.linalg.norm(diverged[-1] - theta_ls):.0f}; just below it shrinks to {np.linalg.norm(stable[-1] - theta_ls):.1e}")
assert np.linalg.norm(diverged[-1] - theta_ls) > 10 > 1e-3 > np.linalg.norm(stable[-1] - theta_ls)

# %% [markdown]
# ## 4. Stochastic and mini-batch gradient descent
#
# The full gradient averages over all $n$ examples. With a million examples that is expensive, so in
# practice each step uses a random **mini-batch** of $B$ examples: the gradient is then a noisy but
# unbiased estimate of the full one. $B = 1$ is **stochastic gradient descent** (SGD); $B = n$ is
# full-batch gradient descent. One **epoch** is one pass over the data. All three runs below use the
# same learning rate $\eta = 0.05$, so only the batch size differs.

# %%
def minibatch_gd(batch_size, eta, epochs=30, seed=0):
    rng = np.random.default_rng(seed)
    theta = np.zeros(2)
    curve = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            i = order[start:start + batch_size]
            r = theta[0] * x[i] + theta[1] - y[i]
            theta = theta - eta * np.array([2 * np.mean(r * x[i]), 2 * np.mean(r)])
        curve.append(mse(*theta))
    return theta, curve


fig, ax = plt.subplots()
for batch_size in (100, 10, 1):
    theta_b, curve = minibatch_gd(batch_size, eta=0.05)
    ax.semilogy(np.arange(1, len(curve) + 1), np.array(curve) - mse(*theta_ls) + 1e-12, label=f"B = {batch_size}")
    print(f"B = {batch_size:>3}: {len(x) // batch_size:>3} steps per epoch, final excess loss {mse(*theta_b) - mse(*theta_ls):.1e}")
ax.set(title="Full-batch, mini-batch and stochastic GD (η = 0.05)", xlabel="epochs completed",
       ylabel="excess loss $L - L^*$")
ax.legend()
plt.show()

# %% [markdown]
# Per epoch, smaller batches take many more (cheaper) steps and make much faster progress; but with a
# constant learning rate their noisy gradients keep them jittering around the minimum instead of
# settling, so the smallest batch ends *less* accurate than mini-batches. That is why training recipes
# decay the learning rate.
#
# ## 5. Momentum
#
# When the bowl is much steeper in one direction than another ($\lambda_{\max} \gg \lambda_{\min}$),
# gradient descent zig-zags across the steep direction and crawls along the shallow one. **Momentum**
# keeps an exponentially decaying sum of past gradients, a velocity $v$ (with a decay factor
# $\mu \in [0, 1)$, typically 0.9), so that consistent directions build up speed and oscillating ones
# cancel:
#
# $$v \leftarrow \mu v + \nabla L(\theta), \qquad \theta \leftarrow \theta - \eta\, v .$$
#
# We make the problem ill-conditioned by moving the inputs away from zero ($x + 3$): now $w$ and $b$
# are strongly coupled and the valley is long and thin.

# %%
x_shift = x + 3
A_shift = np.c_[x_shift, np.ones_like(x)]
theta_shift = np.linalg.lstsq(A_shift, y, rcond=None)[0]
lam_shift = np.linalg.eigvalsh(2 / len(x) * A_shift.T @ A_shift)
print(f"condition number λ_max/λ_min: {lam.max() / lam.min():.1f} before, {lam_shift.max() / lam_shift.min():.1f} after the shift")


def mse_shift(w, b):
    w, b = np.asarray(w)[..., None], np.asarray(b)[..., None]
    return np.mean((w * x_shift + b - y) ** 2, axis=-1)


def grad_shift(theta):
    r = theta[0] * x_shift + theta[1] - y
    return np.array([2 * np.mean(r * x_shift), 2 * np.mean(r)])


def steps_to_reach(path, target, tol=1e-4):
    close = np.flatnonzero(np.abs(path - target).max(axis=1) < tol)
    return int(close[0]) if len(close) else None


print(f"optimum: w = {theta_shift[0]:.3f}, b = {theta_shift[1]:.3f};  divergence above η = 2/λ_max = {2 / lam_shift.max():.4f}")

eta = 1.8 / lam_shift.max()   # close to the fastest stable rate for plain GD
plain = optimize_path(grad_shift, [0.0, 0.0], "sgd", lr=eta, steps=3000)
heavy = optimize_path(grad_shift, [0.0, 0.0], "momentum", lr=eta, momentum=0.8, steps=3000)
n_plain, n_heavy = steps_to_reach(plain, theta_shift), steps_to_reach(heavy, theta_shift)
print(f"η = {eta:.4f}; steps to reach the optimum within 1e-4: plain GD {n_plain}, momentum μ = 0.8 {n_heavy}")
assert n_heavy < n_plain / 3
SHIFT_EXTENT = (-1, 4, -9, 1)
contour_path(mse_shift, {"plain GD": plain[:61], "momentum μ = 0.8": heavy[:61]}, extent=SHIFT_EXTENT,
             optimum=theta_shift, title="A long, thin valley: the first 60 steps")
plt.show()

# %% [markdown]
# ## 6. Adam, and why it needs bias correction
#
# **Adam** (Kingma & Ba, 2015) keeps two running averages per parameter: of the gradient,
# $m \leftarrow \beta_1 m + (1-\beta_1) g$, and of its square, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$.
# It steps by $m / \sqrt{v}$, so every parameter moves about $\eta$ per step whatever the scale of its
# gradient. Both averages start at zero, so early on they are biased towards zero: after $t$ steps
# $\mathbb E[m_t] \approx (1-\beta_1^t)\,\mathbb E[g]$. **Bias correction** divides that factor out:
#
# $$\hat m = \frac{m}{1-\beta_1^t}, \quad \hat v = \frac{v}{1-\beta_2^t}, \quad
#   \theta \leftarrow \theta - \eta\, \frac{\hat m}{\sqrt{\hat v} + \epsilon}.$$
#
# *Common pitfall:* leaving the correction out (as some tutorials do). With $\beta_1 = 0.9$,
# $\beta_2 = 0.999$, the first uncorrected step is $\frac{0.1\,g}{\sqrt{0.001}\,|g|} \approx 3.2\,\eta$ —
# more than three times the intended step. For a constant gradient the ratio of uncorrected to corrected
# step is $(1-\beta_1^t)/\sqrt{1-\beta_2^t}$; the cell prints it for a few $t$.

# %%
def adam_step_scratch(theta, g, state, eta=0.1, beta1=0.9, beta2=0.999, eps=1e-8, correct=True):
    """One Adam step written out in NumPy (the twin of lib.optim.Adam.step). ``state`` holds m, v and t."""
    state["t"] += 1
    state["m"] = beta1 * state["m"] + (1 - beta1) * g
    state["v"] = beta2 * state["v"] + (1 - beta2) * g * g
    m, v = state["m"], state["v"]
    if correct:
        m, v = m / (1 - beta1 ** state["t"]), v / (1 - beta2 ** state["t"])
    return theta - eta * m / (np.sqrt(v) + eps)


for correct in (True, False):
    state = {"t": 0, "m": np.zeros(2), "v": np.zeros(2)}
    first = adam_step_scratch(np.array([-1.0, 2.5]), mse_grad(np.array([-1.0, 2.5])), state, correct=correct)
    print(f"bias correction {'on ' if correct else 'off'}: first step moves the parameters by {np.abs(first - [-1.0, 2.5]).round(3)} (η = 0.1)")

for t in (1, 10, 100, 1000):
    print(f"t = {t:>4}: uncorrected step / corrected step = {(1 - 0.9 ** t) / np.sqrt(1 - 0.999 ** t):.2f}")

# %%
# adam_step_scratch and lib.optim.Adam follow the same path for 100 steps
theta_nb, state = np.array([-1.0, 2.5]), {"t": 0, "m": np.zeros(2), "v": np.zeros(2)}
p = Param([-1.0, 2.5])
opt = Adam([p], lr=0.1)
for _ in range(100):
    theta_nb = adam_step_scratch(theta_nb, mse_grad(theta_nb), state)
    p.grad = mse_grad(p.data)
    opt.step()
close = np.allclose(theta_nb, p.data, rtol=0, atol=1e-12)
assert close
print(f"adam_step_scratch == lib.optim.Adam (to 1e-12): {close}")

# %% [markdown]
# ## 7. Our optimizers against PyTorch
#
# `lib.optim` holds the from-scratch `SGD` (with optional momentum) and `Adam` used from here on, with
# the same interface as `torch.optim`: `opt = Adam(params, lr=...)`, then `opt.step()` after the
# gradients are filled in. (They are the course library's own code, so they keep their plain names.)
# We run each of them and the framework's own optimizer for 100 steps on the same problem (the
# ill-conditioned line, in float64) and compare the parameters.
#
# (The same comparison with Keras comes at the end of the chapter.) Two details decide whether "the
# same optimizer" really gives the same numbers in the two frameworks:
# - **Momentum.** PyTorch keeps $v \leftarrow \mu v + g$ and steps $-\eta v$; Keras keeps
#   $u \leftarrow \mu u - \eta g$ and steps $+u$. For a constant $\eta$ these are the same iterates.
# - **Adam's $\epsilon$.** PyTorch divides by $\sqrt{\hat v} + \epsilon$. Keras folds the corrections
#   into the step size, $\eta_t = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)$, and divides by
#   $\sqrt{v} + \epsilon$ — equivalent to PyTorch's formula with $\epsilon$ replaced by
#   $\epsilon/\sqrt{1-\beta_2^t}$, a much larger $\epsilon$ in the first steps.
#   `Adam(eps_mode="keras")` reproduces that.

# %%
def run(make_ours, make_theirs, framework, steps=100):
    """Run our optimizer and the framework's side by side; return both final parameter vectors.

    framework: "torch" or "keras" (the Keras branch is used in the last section, once Keras is imported).
    """
    ours = Param([0.0, 0.0])
    opt = make_ours([ours])
    if framework == "torch":
        theirs = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        fopt = make_theirs([theirs])
    else:
        theirs = keras.Variable(np.zeros(2), dtype="float64")
        fopt = make_theirs()
    for _ in range(steps):
        ours.grad = grad_shift(ours.data)
        opt.step()
        if framework == "torch":
            theirs.grad = torch.from_numpy(grad_shift(theirs.detach().numpy()))
            fopt.step()
        else:
            fopt.apply_gradients([(keras.ops.convert_to_tensor(grad_shift(theirs.numpy())), theirs)])
    final = theirs.detach().numpy() if framework == "torch" else theirs.numpy()
    return ours.data, final


torch_cases = {  # (ours, theirs): constructors
    ("lib.optim.SGD", "torch.optim.SGD"): (lambda p: SGD(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    ("lib.optim.SGD(momentum=0.9)", "torch.optim.SGD(momentum=0.9)"):
        (lambda p: SGD(p, lr=0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("lib.optim.Adam", "torch.optim.Adam"): (lambda p: Adam(p, lr=0.05), lambda p: torch.optim.Adam(p, lr=0.05)),
}
for (ours_name, theirs_name), (ours, theirs) in torch_cases.items():
    close = np.allclose(*run(ours, theirs, "torch"), rtol=0, atol=1e-6)   # parameters after 100 steps
    assert close
    print(f"{ours_name} == {theirs_name} (to 1e-6): {close}")

# %% [markdown]
# ## 8. Logistic regression: gradient descent for classification
#
# Now each input is a point $x \in \mathbb R^2$ with a class $y \in \{0, 1\}$, and the weights form a
# vector $w \in \mathbb R^2$. A linear model outputs a probability $p = \sigma(w^\top x + b)$ with the
# sigmoid $\sigma(z) = 1/(1+e^{-z})$, and the loss is the
# **binary cross-entropy** $L = -\frac1n\sum_i \big[y_i \log p_i + (1-y_i)\log(1-p_i)\big]$.
# Its gradient has the same shape as the MSE's — residual times input:
#
# $$\frac{\partial L}{\partial w} = \frac1n \sum_i (p_i - y_i)\, x_i, \qquad
#   \frac{\partial L}{\partial b} = \frac1n \sum_i (p_i - y_i).$$
#
# We train it with our Adam on the "moons" set and compare with scikit-learn's solver, which minimises
# the same loss (no regularisation) by a second-order method. The moons overlap, so the best line
# misclassifies some points — a straight boundary is all a linear model can draw (chapter 02 fixes
# that with a hidden layer).

# %%
from sklearn.linear_model import LogisticRegression

Xc, yc = data.toy_2d("moons", n=300, noise=0.3, seed=1)
Xc = ((Xc - Xc.mean(0)) / Xc.std(0)).astype(np.float64)  # standardised: a round bowl, fast descent


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def bce_grad(theta):
    p = sigmoid(Xc @ theta[:2] + theta[2])
    return np.r_[Xc.T @ (p - yc), np.sum(p - yc)] / len(yc)


params = Param(np.zeros(3))
opt = Adam([params], lr=0.05)
for _ in range(3000):
    params.grad = bce_grad(params.data)
    opt.step()
reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(Xc, yc)
ref = np.r_[reference.coef_[0], reference.intercept_]
accuracy = np.mean((sigmoid(Xc @ params.data[:2] + params.data[2]) > 0.5) == yc)
print(f"ours:    w = {params.data[:2].round(3)}, b = {params.data[2]:.3f}, training accuracy {accuracy:.1%}")
print(f"sklearn: w = {ref[:2].round(3)}, b = {ref[2]:.3f}")
assert np.allclose(params.data, ref, atol=2e-3)
decision_boundary(lambda g: (sigmoid(g @ params.data[:2] + params.data[2]) > 0.5).astype(int), Xc, yc,
                  title="Logistic regression trained with our Adam")
plt.show()

# %% [markdown]
# ## Widget: an optimizer explorer
#
# Pick an optimizer, a learning rate and (for momentum) $\mu$, and watch the path on the ill-conditioned
# valley of section 5, where plain GD diverges above $2/\lambda_{\max} \approx 0.080$. Try: plain GD
# at 0.075 and at 0.085; momentum 0.5 vs 0.95; Adam with a large learning rate. The function behind it, `explore`, is an ordinary function.

# %%
import ipywidgets as widgets

from lib.widgets import InteractiveFigure, slider


def explore(optimizer: str, lr: float, momentum: float, steps: int) -> str:
    kwargs = {"momentum": momentum} if optimizer == "momentum" else {}
    path = optimize_path(grad_shift, [0.0, 0.0], optimizer, lr=lr, steps=steps, **kwargs)
    contour_path(mse_shift, {optimizer: path}, extent=SHIFT_EXTENT, optimum=theta_shift,
                 title=f"{optimizer}, η = {lr:.3g}")
    final = mse_shift(*path[-1]) if np.all(np.isfinite(path[-1])) else np.inf
    return f"{optimizer}, lr={lr:.3g}: loss after {len(path) - 1} steps = {final:.4f} (minimum {mse_shift(*theta_shift):.4f})"


# %%
# NBVAL_IGNORE_OUTPUT
explorer = InteractiveFigure(
    explore,
    optimizer=widgets.Dropdown(options=["sgd", "momentum", "adam"], value="sgd", description="optimizer"),
    lr=slider(0.05, -3, 0, 0.05, "learning rate", log=True),
    momentum=slider(0.9, 0.0, 0.99, 0.01, "momentum μ"),
    steps=widgets.IntSlider(value=60, min=5, max=300, description="steps"),
)
explorer

# %%
explorer.children[0].value = "momentum"
print(explorer.result)
explorer.children[0].value = "adam"
print(explorer.result)

# %% [markdown]
# ## The same in Keras
#
# Section 7 compared our optimizers with `torch.optim`; now Keras, with the same `run` function.
# Importing TensorFlow takes a few seconds, which is why only notebooks with a Keras section
# do it, through `lib.keras_models.load_keras()` (which also keeps TensorFlow's start-up log lines out of
# the notebook).
#
# One more detail appears: Keras stores the learning rate in float32, and in Adam it converts
# $\beta_1, \beta_2$ to float32 when it computes $\beta^t$. Numbers like $0.05$ or $0.999$ are not exact
# in binary, so their float32 versions are off in the 8th digit — enough to move Adam's iterates by
# more than $10^{-6}$ over 100 steps (the second cell below measures it). We use values that float32 represents exactly
# ($\eta = 1/16$, $\beta_1 = 7/8$, $\beta_2 = 1 - 2^{-10}$) to compare the *algorithms*, and show the
# effect of the rounding separately.

# %%
from lib.keras_models import load_keras

keras = load_keras()

eta, b1, b2 = 1 / 16, 0.875, 1 - 2 ** -10
keras_cases = {  # (ours, theirs): constructors
    ("lib.optim.SGD", "keras.optimizers.SGD"): (lambda p: SGD(p, lr=eta), lambda: keras.optimizers.SGD(eta)),
    ("lib.optim.SGD(momentum=7/8)", "keras.optimizers.SGD(momentum=7/8)"):
        (lambda p: SGD(p, lr=eta, momentum=b1), lambda: keras.optimizers.SGD(eta, momentum=b1)),
    ('lib.optim.Adam(eps_mode="keras")', "keras.optimizers.Adam"):
        (lambda p: Adam(p, lr=eta, betas=(b1, b2), eps=1e-7, eps_mode="keras"),
         lambda: keras.optimizers.Adam(eta, beta_1=b1, beta_2=b2, epsilon=1e-7)),
}
for (ours_name, theirs_name), (ours, theirs) in keras_cases.items():
    close = np.allclose(*run(ours, theirs, "keras"), rtol=0, atol=1e-6)   # parameters after 100 steps
    assert close
    print(f"{ours_name} == {theirs_name} (to 1e-6): {close}")

# %%
largest_difference = lambda pair: np.abs(pair[0] - pair[1]).max()
torch_eps = largest_difference(run(lambda p: Adam(p, lr=eta, betas=(b1, b2), eps=1e-3, eps_mode="torch"),
                                   lambda: keras.optimizers.Adam(eta, beta_1=b1, beta_2=b2, epsilon=1e-3), "keras"))
rounded = largest_difference(run(lambda p: Adam(p, lr=0.05, eps=1e-7, eps_mode="keras"),
                                 lambda: keras.optimizers.Adam(0.05), "keras"))
print(f"ε = 1e-3: Adam with PyTorch's ε placement differs from Keras by {torch_eps:.1e}")
print(f"default Keras Adam (η = 0.05, β = 0.9, 0.999): float32 rounding of η and β moves it by about {rounded:.0e}")
assert torch_eps > 1e-4
close = np.allclose(*run(lambda p: Adam(p, lr=eta, betas=(b1, b2), eps=1e-3, eps_mode="keras"),
                         lambda: keras.optimizers.Adam(eta, beta_1=b1, beta_2=b2, epsilon=1e-3), "keras"),
                    rtol=0, atol=1e-9)
assert close
print(f'lib.optim.Adam(eps=1e-3, eps_mode="keras") == keras.optimizers.Adam(epsilon=1e-3) (to 1e-9): {close}')

# %% [markdown]
# ## Summary
#
# - Gradient descent steps against the gradient: $\theta \leftarrow \theta - \eta \nabla L$. On a
#   linear least-squares problem it provably reaches the closed-form answer (here within $10^{-4}$).
# - The learning rate must stay below $2/\lambda_{\max}$ of the loss's curvature, or the iterates
#   diverge; ill-conditioning ($\lambda_{\max} \gg \lambda_{\min}$) makes plain GD slow.
# - Mini-batches trade exact gradients for many cheap, noisy steps.
# - Momentum accelerates along consistent directions; Adam normalises each parameter's step and needs
#   bias correction in its first steps.
# - Our optimizers in `lib.optim` equal `torch.optim` and Keras step for step, once the frameworks'
#   conventions (ε placement, float32 hyper-parameters) are matched.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — gradient of the mean absolute error.** Derive the gradient of
# $L_1(w, b) = \frac1n\sum_i |wx_i + b - y_i|$ (hint: $\frac{d}{dr}|r| = \operatorname{sign}(r)$, and
# take $\operatorname{sign}(0) = 0$) and complete `mae_grad(theta)`, returning
# $(\partial L_1/\partial w, \partial L_1/\partial b)$ for the data `x, y` of section 1.

# %%
from lib import check


def mae_grad(theta: np.ndarray) -> np.ndarray:
    ### BEGIN SOLUTION
    r = theta[0] * x + theta[1] - y
    return np.array([np.mean(np.sign(r) * x), np.mean(np.sign(r))])
    ### END SOLUTION


# %%
def mae(theta):
    return np.mean(np.abs(theta[0] * x + theta[1] - y))


def numeric_grad(f, theta, h=1e-7):
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])


cases = [((t,), numeric_grad(mae, t)) for t in (np.array([0.3, 0.2]), np.array([2.5, -1.5]))]
check.check_function("mae_grad", mae_grad, cases, atol=1e-5)

# %% [markdown]
# **Exercise 2 — the divergence threshold.** Complete `largest_stable_lr(inputs)`: for the MSE of a
# line fitted to `inputs` (any 1-D array of $x$ values), return $2/\lambda_{\max}$ of the Hessian
# $\frac{2}{n}A^\top A$ with rows $(x_i, 1)$.

# %%
def largest_stable_lr(inputs: np.ndarray) -> float:
    ### BEGIN SOLUTION
    design = np.c_[inputs, np.ones_like(inputs)]
    return 2 / np.linalg.eigvalsh(2 / len(inputs) * design.T @ design).max()
    ### END SOLUTION


# %%
check.check_function("largest_stable_lr", largest_stable_lr,
                     [((x,), eta_max), ((x_shift,), 2 / lam_shift.max())])
limit = largest_stable_lr(x_shift)
check.check_true("the threshold predicts divergence",
                 np.isfinite(optimize_path(grad_shift, [0, 0], "sgd", lr=0.95 * limit, steps=300)[-1]).all()
                 and len(optimize_path(grad_shift, [0, 0], "sgd", lr=1.05 * limit, steps=300)) < 301,
                 "GD should converge just below your threshold and blow up just above it")

# %% [markdown]
# **Exercise 3 — Nesterov momentum.** Nesterov's variant takes the gradient step from the point the
# velocity is about to carry $\theta$ to. In the equivalent form PyTorch uses: with $g = \nabla L(\theta)$,
# $v \leftarrow \mu v + g$ and then $\theta \leftarrow \theta - \eta\,(g + \mu v)$.
# Complete `nesterov_final(lr, mu, steps)`: run `steps` Nesterov steps on the ill-conditioned problem
# (`grad_shift`), starting from $\theta = (0, 0)$ with $v = 0$, and return the final $\theta$. The check compares it with
# `torch.optim.SGD(..., nesterov=True)`.

# %%
def nesterov_final(lr: float, mu: float, steps: int) -> np.ndarray:
    ### BEGIN SOLUTION
    theta, v = np.zeros(2), np.zeros(2)
    for _ in range(steps):
        g = grad_shift(theta)
        v = mu * v + g
        theta = theta - lr * (g + mu * v)
    return theta
    ### END SOLUTION


# %%
def torch_nesterov(lr, mu, steps):
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr, momentum=mu, nesterov=True)
    for _ in range(steps):
        w.grad = torch.from_numpy(grad_shift(w.detach().numpy()))
        opt.step()
    return w.detach().numpy()


check.check_function("nesterov_final", nesterov_final,
                     [((0.02, 0.9, 50), torch_nesterov(0.02, 0.9, 50)), ((0.05, 0.5, 80), torch_nesterov(0.05, 0.5, 80))])

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
# - explain why the squared error and the cross-entropy are the natural losses (maximum likelihood);
# - implement batch gradient descent and show it reaches the closed-form least-squares solution;
# - explain what a learning rate that is too small, right, or too large does — and predict the limit;
# - compare full-batch, mini-batch and stochastic gradient descent;
# - implement momentum and Adam (with bias correction) and check them against PyTorch and Keras;
# - explain why Adam divides by $\sqrt{v}$ and what AdamW changes;
# - train a logistic-regression classifier with gradient descent.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from lib import check, data
from lib.device import setup_notebook
from lib.optim import SGD, Adam, AdamW, Param, optimize_path
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
# ## 2. Why the squared error? Maximum likelihood
#
# Why square the residuals, rather than take their absolute value or fourth power? Because of an
# assumption about the noise. Suppose each point is the line plus independent Gaussian noise,
# $y_i = w x_i + b + \varepsilon_i$ with $\varepsilon_i \sim \mathcal N(0, \sigma^2)$. The probability
# density of seeing $y_i$ is then
# $p(y_i \mid x_i; w, b) = \frac{1}{\sqrt{2\pi\sigma^2}} \exp\!\big(-\frac{(y_i - \hat y_i)^2}{2\sigma^2}\big)$.
# The **likelihood** of the parameters is the product of these densities over the data, and
# **maximum likelihood** picks the parameters under which the observed data are most probable.
# A product of $n$ small numbers is awkward; its negative logarithm is a sum and has the same minimiser:
#
# $$-\log \prod_{i=1}^n p(y_i \mid x_i; w, b) = \frac{1}{2\sigma^2}\sum_i (y_i - \hat y_i)^2
#   + \frac n2 \log(2\pi\sigma^2) = \frac{n}{2\sigma^2}\, L(w, b) + \text{const}.$$
#
# Whatever $\sigma$ is, it only scales and shifts the MSE, so **minimising the MSE is maximum likelihood
# under Gaussian noise**. Another noise model gives another loss: Laplace noise gives the mean absolute
# error (exercise 1), and a coin flip for a class label gives the cross-entropy (section 9). The cell
# computes the negative log-likelihood with `torch.distributions.Normal` ($\sigma = 0.5$, the noise
# `linear_data` adds) for three lines and compares it with the formula.

# %%
sigma = 0.5
const = len(x) / 2 * np.log(2 * np.pi * sigma ** 2)
for w_try, b_try in [(0.0, 0.0), (1.0, -0.5), (2.0, -1.0)]:
    noise_model = torch.distributions.Normal(torch.from_numpy(w_try * x + b_try), sigma)
    nll = -noise_model.log_prob(torch.from_numpy(y)).sum().item()
    via_mse = len(x) / (2 * sigma ** 2) * mse(w_try, b_try) + const
    assert np.isclose(nll, via_mse, rtol=1e-12)
    print(f"w = {w_try}, b = {b_try}:  Gaussian negative log-likelihood {nll:9.4f} = n/(2σ²)·MSE + const {via_mse:9.4f}")

# %% [markdown]
# ## 3. Gradient descent reaches the least-squares answer
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
# ## 4. The learning rate: too small, right, too large
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
# ## 5. Stochastic and mini-batch gradient descent
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
# ## 6. Momentum
#
# We make the problem ill-conditioned by moving the inputs away from zero ($x + 3$): now $w$ and $b$
# are strongly coupled, and the bowl becomes a long, thin valley, much steeper across than along
# ($\lambda_{\max} \gg \lambda_{\min}$). A learning rate that is safe for the steep direction
# ($\eta < 2/\lambda_{\max}$) is tiny for the shallow one. Near the limit, each step overshoots the
# valley floor and lands on the opposite wall, so gradient descent **zig-zags** across the valley
# (along the steep direction each step multiplies the distance to the floor by $1 - \eta\lambda_{\max}$,
# a negative number) while it crawls along it.
#
# **Momentum** keeps an exponentially decaying sum of past gradients, a velocity $v$ (with a decay
# factor $\mu \in [0, 1)$, typically 0.9):
#
# $$v \leftarrow \mu v + \nabla L(\theta), \qquad \theta \leftarrow \theta - \eta\, v .$$
#
# Gradients that keep their sign add up (for a constant gradient, $v$ grows to $g/(1-\mu)$: ten times
# $g$ for $\mu = 0.9$), while gradients that flip sign at every step, like those across the valley,
# largely cancel ($v$ stays near $g/(1+\mu)$). So momentum can take a smaller learning rate, which damps
# the zig-zag, and still move faster along the valley. The cell runs plain GD near its fastest stable
# rate, $\eta = 1.8/\lambda_{\max}$, and momentum $\mu = 0.9$ with $\eta = 0.3/\lambda_{\max}$, from
# a start on the valley's wall. Both runs are deterministic (no data sampling), so one run of each is the
# whole story.

# %%
x_shift = x + 3
A_shift = np.c_[x_shift, np.ones_like(x)]
theta_shift = np.linalg.lstsq(A_shift, y, rcond=None)[0]
lam_shift, eigvecs_shift = np.linalg.eigh(2 / len(x) * A_shift.T @ A_shift)
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


def crossings(path, steps=40):
    """How often the path crosses the valley floor in its first ``steps`` steps (a zig-zag crosses at every step)."""
    across = (path[:steps + 1] - theta_shift) @ eigvecs_shift[:, -1]   # coordinate along the steep direction
    return int(np.sum(np.sign(across[1:]) != np.sign(across[:-1])))


print(f"optimum: w = {theta_shift[0]:.3f}, b = {theta_shift[1]:.3f};  divergence above η = 2/λ_max = {2 / lam_shift.max():.4f}")
START_SHIFT = [3.5, -4.0]   # on the valley's wall
eta_plain, eta_heavy = 1.8 / lam_shift.max(), 0.3 / lam_shift.max()
plain = optimize_path(grad_shift, START_SHIFT, "sgd", lr=eta_plain, steps=3000)
heavy = optimize_path(grad_shift, START_SHIFT, "momentum", lr=eta_heavy, momentum=0.9, steps=3000)
n_plain, n_heavy = steps_to_reach(plain, theta_shift), steps_to_reach(heavy, theta_shift)
print(f"plain GD (η = {eta_plain:.4f}):          crosses the valley floor {crossings(plain)} times in the first 40 steps, "
      f"reaches the optimum (within 1e-4) after {n_plain} steps")
print(f"momentum μ = 0.9 (η = {eta_heavy:.4f}):  crosses the valley floor {crossings(heavy)} times in the first 40 steps, "
      f"reaches the optimum (within 1e-4) after {n_heavy} steps")
assert crossings(plain) == 40 and crossings(heavy) < 10 and n_heavy < n_plain / 2

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
for ax, (name, path) in zip(axes, [("plain GD", plain), ("momentum μ = 0.9", heavy)]):
    contour_path(mse_shift, {name: path[:41]}, extent=(-0.5, 4, -8, -3.5), optimum=theta_shift, ax=ax,
                 title=f"{name}: the first 40 steps")
    ax.legend(fontsize=8, loc="lower left")                 # away from the start at the top right
axes[1].set_ylabel("")
fig.suptitle("A long, thin valley: plain GD zig-zags across it, momentum moves along it")
plt.show()

# %% [markdown]
# Plain GD crosses the valley floor at every step — the zig-zag — and then creeps along the floor.
# Momentum crosses it only a few times in the first 40 steps, in slow swings, while its velocity builds
# up along the floor; it reaches the optimum in about a third of plain GD's steps (the printed counts).
# The learning rates were picked by hand for this picture, not tuned: the widget at the end lets you
# try others.
#
# %% [markdown]
# ## 7. Adam: a step size for every parameter
#
# **Adam** (Kingma & Ba, 2015) keeps two running averages per parameter: of the gradient,
# $m \leftarrow \beta_1 m + (1-\beta_1) g$, and of its square, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$
# (typically $\beta_1 = 0.9$, $\beta_2 = 0.999$), and steps by $\eta\, m/\sqrt{v}$ (with the corrections
# below). Why divide by $\sqrt v$?
#
# - $\sqrt v$ is the root-mean-square size of the parameter's recent gradients, so $m/\sqrt v$ has no
#   units: multiply the loss, or one parameter's gradients, by 100, and $m$ and $\sqrt v$ both grow
#   100-fold while the step stays the same. Plain GD's step would grow 100-fold (exercise 4 measures
#   both). Each parameter effectively gets its own learning rate, $\eta/\sqrt v$: large where
#   gradients are small, small where they are large — the valley of section 6 is steep in one direction
#   and shallow in the other.
# - For a constant gradient $g$, $m \to g$ and $\sqrt v \to |g|$: each parameter moves by about $\eta$
#   per step, downhill. When the gradient's sign keeps changing (noise, or a zig-zag), $|m|$ is much
#   smaller than $\sqrt v$ and so is the step: $m/\sqrt v$ works like a signal-to-noise ratio.
#
# **Bias correction.** Both averages start at zero, so early on they are biased towards zero: after $t$
# steps $\mathbb E[m_t] \approx (1-\beta_1^t)\,\mathbb E[g]$ and $\mathbb E[v_t] \approx (1-\beta_2^t)\,\mathbb E[g^2]$.
# The correction divides those factors out:
#
# $$\hat m = \frac{m}{1-\beta_1^t}, \quad \hat v = \frac{v}{1-\beta_2^t}, \quad
#   \theta \leftarrow \theta - \eta\, \frac{\hat m}{\sqrt{\hat v} + \epsilon},$$
#
# with a small $\epsilon$ (PyTorch: $10^{-8}$) against division by zero.
#
# *Common pitfall:* leaving the correction out (as some tutorials do). For a constant gradient the
# uncorrected step is the corrected one times $(1-\beta_1^t)/\sqrt{1-\beta_2^t}$. At $t = 1$ that is
# $0.1/\sqrt{0.001} \approx 3.2$: the first step is three times the intended one.

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

steps_t = np.arange(1, 20_001)
ratio = (1 - 0.9 ** steps_t) / np.sqrt(1 - 0.999 ** steps_t)   # uncorrected / corrected step, constant gradient
for t in (1, 10, 100, 1000):
    print(f"t = {t:>4}: uncorrected step / corrected step = {ratio[t - 1]:.2f}")
print(f"largest ratio {ratio.max():.2f}, at t = {steps_t[ratio.argmax()]}")
fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogx(steps_t, ratio)
ax.axhline(1, color="0.5", ls="--", lw=1)
for timescale, name in [(10, "1/(1−β₁) = 10"), (1000, "1/(1−β₂) = 1000")]:
    ax.axvline(timescale, color="C1", ls=":", lw=1)
    ax.text(timescale * 1.15, 5.5, name, fontsize=8, color="C1")
ax.set(title="Adam without bias correction: step / corrected step (β₁ = 0.9, β₂ = 0.999)",
       xlabel="step t", ylabel="ratio")
plt.show()

# %% [markdown]
# The ratio is not monotonic: it *rises* from 3.2 to about 6.6 and only then falls to 1. The two
# averages forget their zero start at different speeds. $m$'s bias factor $1-\beta_1^t$ reaches 1 within
# a few times $1/(1-\beta_1) = 10$ steps; $v$'s factor $1-\beta_2^t \approx t\,(1-\beta_2)$ needs thousands
# of steps. At $t = 1$ both are biased and part of the error cancels. Between 10 and 1000 steps $m$
# is already unbiased while $\sqrt{v}$ is still too small by $\sqrt{t\,(1-\beta_2)}$, so the
# uncorrected step is largest — around $t \approx 12$ — and it takes beyond $t \approx 5000$ for the
# two to agree. Without correction Adam would take its largest steps exactly when training starts.

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
# ### Weight decay: Adam with L2 vs AdamW
#
# **Weight decay** pulls every weight towards zero, a simple regulariser (chapter 03): add $\lambda\theta$
# to the gradient, the gradient of an L2 penalty $\frac\lambda2\lVert\theta\rVert^2$. For plain GD that
# is the same as shrinking every weight by the factor $1 - \eta\lambda$ at each step. In Adam it is not:
# the $\lambda\theta$ term enters $m$ and $v$ and is divided by $\sqrt{\hat v}$, so a weight whose
# gradients are large is hardly decayed at all. **AdamW** (Loshchilov & Hutter, 2019) *decouples* the
# decay from the gradient statistics:
#
# $$\theta \leftarrow \theta - \eta\Big(\frac{\hat m}{\sqrt{\hat v} + \epsilon} + \lambda\theta\Big),$$
#
# so every weight shrinks by the same factor $1 - \eta\lambda$ per step. AdamW trains nearly every
# Transformer, and it is the course's recipe from chapter 03 on (`lib.recipes.adamw`). The cell gives two
# weights, both starting at 1, gradients that flip sign at every step (no net pull) of sizes 1 and 100,
# and measures how far the weight decay alone moves each in 200 steps ($\eta = 0.01$, $\lambda = 0.1$).

# %%
def decay_effect(make, steps=200):
    """How far weight decay alone moves two weights whose gradients alternate in sign, of sizes 1 and 100."""
    finals = []
    for weight_decay in (0.0, 0.1):
        weights = Param([1.0, 1.0])
        opt = make([weights], weight_decay)
        for t in range(steps):
            weights.grad = np.array([1.0, 100.0]) * (-1) ** t
            opt.step()
        finals.append(weights.data)
    return finals[0] - finals[1]


coupled = decay_effect(lambda p, wd: Adam(p, lr=0.01, weight_decay=wd))
decoupled = decay_effect(lambda p, wd: AdamW(p, lr=0.01, weight_decay=wd))
print(f"Adam + L2: weight decay moves the weight with gradients of size 1 by {coupled[0]:.3f}, size 100 by {coupled[1]:.4f}")
print(f"AdamW:     weight decay moves the weight with gradients of size 1 by {decoupled[0]:.3f}, size 100 by {decoupled[1]:.3f}")
print(f"plain shrinking by (1 - ηλ) per step for 200 steps: {1 - (1 - 0.01 * 0.1) ** 200:.3f}")
assert coupled[1] < coupled[0] / 10 and abs(decoupled[1] - decoupled[0]) < 0.01

# %% [markdown]
# ## 8. Our optimizers against PyTorch
#
# `lib.optim` holds the from-scratch `SGD` (with optional momentum), `Adam` and `AdamW` used from here on, with
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
    ("lib.optim.AdamW(weight_decay=0.1)", "torch.optim.AdamW(weight_decay=0.1)"):
        (lambda p: AdamW(p, lr=0.05, weight_decay=0.1), lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1)),
}
for (ours_name, theirs_name), (ours, theirs) in torch_cases.items():
    close = np.allclose(*run(ours, theirs, "torch"), rtol=0, atol=1e-6)   # parameters after 100 steps
    assert close
    print(f"{ours_name} == {theirs_name} (to 1e-6): {close}")

# %% [markdown]
# ## 9. Logistic regression: gradient descent for classification
#
# Now each input is a point $x \in \mathbb R^2$ with a class $y \in \{0, 1\}$, and the weights form a
# vector $w \in \mathbb R^2$. A linear model outputs a probability $p = \sigma(w^\top x + b)$ with the
# sigmoid $\sigma(z) = 1/(1+e^{-z})$.
#
# The loss follows from maximum likelihood, as in section 2. The model says that the label is a biased
# coin flip: $y = 1$ with probability $p$, $y = 0$ with probability $1 - p$, i.e. a Bernoulli distribution,
# $P(y \mid x) = p^{y}(1-p)^{1-y}$. The negative log-likelihood of the data, averaged over the $n$ points,
# is the **binary cross-entropy**
#
# $$L = -\frac1n\sum_i \big[y_i \log p_i + (1-y_i)\log(1-p_i)\big].$$
#
# Its gradient has the same shape as the MSE's — residual times input (the sigmoid's derivative
# $\sigma' = p(1-p)$ cancels against the logarithm's $1/p$ and $1/(1-p)$):
#
# $$\frac{\partial L}{\partial w} = \frac1n \sum_i (p_i - y_i)\, x_i, \qquad
#   \frac{\partial L}{\partial b} = \frac1n \sum_i (p_i - y_i).$$
#
# We train it with our Adam on the "moons" set and compare with scikit-learn's solver, which minimises
# the same loss (no regularisation) by a quasi-Newton method (L-BFGS). The two moons are not linearly
# separable — each curls into the other — so the best line misclassifies some points: a straight
# boundary is all a linear model can draw (chapter 02 fixes that with a hidden layer).

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
p_fit = sigmoid(Xc @ params.data[:2] + params.data[2])
bce = -np.mean(yc * np.log(p_fit) + (1 - yc) * np.log(1 - p_fit))
bernoulli_nll = -torch.distributions.Bernoulli(probs=torch.from_numpy(p_fit)).log_prob(torch.from_numpy(yc).double()).mean().item()
assert np.isclose(bce, bernoulli_nll, rtol=1e-12)
print(f"binary cross-entropy {bce:.6f} = mean Bernoulli negative log-likelihood {bernoulli_nll:.6f}")
reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(Xc, yc)
ref = np.r_[reference.coef_[0], reference.intercept_]
accuracy = np.mean((sigmoid(Xc @ params.data[:2] + params.data[2]) > 0.5) == yc)
print(f"ours:    w = {params.data[:2].round(3)}, b = {params.data[2]:.3f}, training accuracy {accuracy:.1%} "
      f"(always predicting the majority class: {max(yc.mean(), 1 - yc.mean()):.1%})")
print(f"sklearn: w = {ref[:2].round(3)}, b = {ref[2]:.3f}")
assert np.allclose(params.data, ref, atol=2e-3)
decision_boundary(lambda g: (sigmoid(g @ params.data[:2] + params.data[2]) > 0.5).astype(int), Xc, yc,
                  title="Logistic regression trained with our Adam")
plt.show()

# %% [markdown]
# ## Widget: an optimizer explorer
#
# Pick an optimizer, a learning rate and (for momentum) $\mu$, and watch the path on the ill-conditioned
# valley of section 6, where plain GD diverges above $2/\lambda_{\max} \approx 0.080$. Try: plain GD
# at 0.075 and at 0.085; momentum 0.5 vs 0.95; Adam with a large learning rate. The function behind it, `explore`, is an ordinary function.

# %%
import ipywidgets as widgets

from lib.widgets import InteractiveFigure, slider


SHIFT_EXTENT = (-1, 5, -9, 1)


def explore(optimizer: str, lr: float, momentum: float, steps: int) -> str:
    kwargs = {"momentum": momentum} if optimizer == "momentum" else {}
    path = optimize_path(grad_shift, START_SHIFT, optimizer, lr=lr, steps=steps, **kwargs)
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
# Section 8 compared our optimizers with `torch.optim`; now Keras, with the same `run` function.
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
# - The MSE is the negative log-likelihood of Gaussian noise, the binary cross-entropy that of a
#   Bernoulli label: both losses are maximum likelihood.
# - Gradient descent steps against the gradient: $\theta \leftarrow \theta - \eta \nabla L$. On a
#   linear least-squares problem it provably reaches the closed-form answer (here within $10^{-4}$).
# - The learning rate must stay below $2/\lambda_{\max}$ of the loss's curvature, or the iterates
#   diverge; ill-conditioning ($\lambda_{\max} \gg \lambda_{\min}$) makes plain GD zig-zag across the
#   valley and crawl along it.
# - Mini-batches trade exact gradients for many cheap, noisy steps.
# - Momentum adds up gradients that agree and cancels those that flip sign: fewer zig-zags, faster
#   progress along the valley. Adam divides each parameter's step by the size of its recent gradients,
#   $\sqrt{\hat v}$, which makes the step independent of the gradient's scale; its bias correction
#   matters most around step 10, where the uncorrected step would be 6.6 times too large. AdamW applies
#   weight decay outside that division, so every weight decays alike.
# - Our optimizers in `lib.optim` equal `torch.optim` (SGD, momentum, Adam, AdamW) and Keras step for step, once the frameworks'
#   conventions (ε placement, float32 hyper-parameters) are matched.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — gradient of the mean absolute error (2 points).** Derive the gradient of
# $L_1(w, b) = \frac1n\sum_i |wx_i + b - y_i|$ (hint: $\frac{d}{dr}|r| = \operatorname{sign}(r)$, and
# take $\operatorname{sign}(0) = 0$) and complete `mae_grad(theta)`, returning
# $(\partial L_1/\partial w, \partial L_1/\partial b)$ for the data `x, y` of section 1.

# %%
def mae_grad(theta: np.ndarray) -> np.ndarray:
    ### BEGIN SOLUTION
    r = theta[0] * x + theta[1] - y
    return np.array([np.mean(np.sign(r) * x), np.mean(np.sign(r))])
    ### END SOLUTION


# %% [check: 2 points]
def mae(theta):
    return np.mean(np.abs(theta[0] * x + theta[1] - y))


def numeric_grad(f, theta, h=1e-7):
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])


cases = [((t,), numeric_grad(mae, t)) for t in (np.array([0.3, 0.2]), np.array([2.5, -1.5]))]
check.check_function("mae_grad", mae_grad, cases, atol=1e-5)

# %% [markdown]
# **Exercise 2 — the divergence threshold (2 points).** Complete `largest_stable_lr(inputs)`: for the MSE of a
# line fitted to `inputs` (any 1-D array of $x$ values), return $2/\lambda_{\max}$ of the Hessian
# $\frac{2}{n}A^\top A$ with rows $(x_i, 1)$.

# %%
def largest_stable_lr(inputs: np.ndarray) -> float:
    ### BEGIN SOLUTION
    design = np.c_[inputs, np.ones_like(inputs)]
    return 2 / np.linalg.eigvalsh(2 / len(inputs) * design.T @ design).max()
    ### END SOLUTION


# %% [check: 2 points]
check.check_function("largest_stable_lr", largest_stable_lr,
                     [((x,), eta_max), ((x_shift,), 2 / lam_shift.max())])
limit = largest_stable_lr(x_shift)
check.check_true("the threshold predicts divergence",
                 np.isfinite(optimize_path(grad_shift, [0, 0], "sgd", lr=0.95 * limit, steps=300)[-1]).all()
                 and len(optimize_path(grad_shift, [0, 0], "sgd", lr=1.05 * limit, steps=300)) < 301,
                 "GD should converge just below your threshold and blow up just above it")

# %% [markdown]
# **Exercise 3 — Nesterov momentum (2 points).** Nesterov's variant takes the gradient step from the point the
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


# %% [check: 2 points]
def torch_nesterov(lr, mu, steps):
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr, momentum=mu, nesterov=True)
    for _ in range(steps):
        w.grad = torch.from_numpy(grad_shift(w.detach().numpy()))
        opt.step()
    return w.detach().numpy()


check.check_function("nesterov_final", nesterov_final,
                     [((0.02, 0.9, 50), torch_nesterov(0.02, 0.9, 50)), ((0.05, 0.5, 80), torch_nesterov(0.05, 0.5, 80))])


# %% [markdown]
# **Exercise 4 — predict, then measure: a loss 100 times larger (1 point).** Multiply the loss of section 6 by 100,
# so every gradient is 100 times larger. *Before running anything*, predict by what factor the length of
# the **first step** changes for (a) plain gradient descent and (b) Adam, both with the same learning rate
# as before. Store your two numbers in `factor_gd` and `factor_adam`; the check cell then measures both
# and compares.

# %%
### BEGIN SOLUTION
factor_gd, factor_adam = 100, 1
### END SOLUTION

# %% [check: 1 point]
def first_step_length(optimizer: str, scale: float) -> float:
    path = optimize_path(lambda theta: scale * grad_shift(theta), START_SHIFT, optimizer, lr=0.01, steps=1)
    return float(np.linalg.norm(path[1] - path[0]))


measured = [first_step_length(name, 100) / first_step_length(name, 1) for name in ("sgd", "adam")]
print(f"measured: plain GD's first step grows by {measured[0]:.1f}, Adam's by {measured[1]:.3f}")
predicted = check.answer_of("factor_gd, factor_adam", lambda: [factor_gd, factor_adam])
check.check_close("your predicted factors (plain GD, Adam)", predicted, measured, rtol=0.05)

# %% [markdown]
# ## Further reading
#
# - Kingma & Ba, [Adam: A Method for Stochastic Optimization](https://arxiv.org/abs/1412.6980) (ICLR 2015) —
#   the algorithm of section 7, with the bias correction derived.
# - Loshchilov & Hutter, [Decoupled Weight Decay Regularization](https://arxiv.org/abs/1711.05101) (ICLR 2019) —
#   why L2 and weight decay differ in Adam, and AdamW.
# - Polyak (1964), *Some methods of speeding up the convergence of iteration methods*, and Sutskever et al.,
#   [On the importance of initialization and momentum in deep learning](https://proceedings.mlr.press/v28/sutskever13.html)
#   (ICML 2013) — the heavy-ball momentum of section 6 and Nesterov's variant (exercise 3).
# - Goh, [Why Momentum Really Works](https://distill.pub/2017/momentum/) (Distill, 2017) — interactive
#   figures of momentum on ill-conditioned quadratics, the analysis behind section 6.
# - Ruder, [An overview of gradient descent optimization algorithms](https://arxiv.org/abs/1609.04747) (2016) —
#   a short survey of SGD, momentum, Nesterov, AdaGrad, RMSProp and Adam.
# - Dive into Deep Learning, [§3.1 Linear regression](https://d2l.ai/chapter_linear-regression/linear-regression.html)
#   (squared loss as maximum likelihood) and [chapter 12, Optimization algorithms](https://d2l.ai/chapter_optimization/index.html)
#   (GD, SGD, mini-batches, momentum, Adam) — the same material with more variants.
# - Goodfellow, Bengio & Courville, [Deep Learning](https://www.deeplearningbook.org/), §4.3 (gradient-based
#   optimisation, the Hessian's role), §5.5 (maximum likelihood) and chapter 8 (optimisation for deep models).
# - Prince, [Understanding Deep Learning](https://udlbook.github.io/udlbook/), chapter 5 (loss functions from
#   maximum likelihood) and chapter 6 (fitting models: SGD, momentum, Adam) — clear figures of each.
# - Howard & Gugger, *Deep Learning for Coders with fastai and PyTorch* (the fast.ai book), chapter 4 (SGD from
#   scratch on MNIST) and chapter 16 (momentum, Adam and decoupled weight decay inside a training loop).

# %% [markdown]
# # 02 · Backpropagation
#
# Gradient descent (chapter 01) needs the gradient of the loss with respect to every parameter. For a
# line we derived it by hand; a network has millions of parameters and we want the computer to do it.
# **Backpropagation** is the chain rule applied backwards over the graph of operations that computed the
# loss — exactly what `torch.autograd` and `tf.GradientTape` do. In this chapter you build it yourself.
#
# **Learning objectives**
# - draw a computation as a graph and apply the chain rule along it;
# - build a scalar autograd engine with `backward()` in reverse topological order, and see why
#   gradients must be added (`+=`) where paths merge;
# - explain why backpropagation runs backwards: reverse mode vs forward mode;
# - verify gradients with finite differences, and against PyTorch and TensorFlow;
# - write the backward pass of a one-hidden-layer network in matrix form;
# - build a network as `Neuron` → `Layer` → `MLP`, and match a `Layer` to PyTorch's `nn.Linear`;
# - know why gradients accumulate across `backward()` calls until `zero_grad()` clears them;
# - train a small neural network with your own engine;
# - see why sigmoid networks are hard to train deep, and ReLU networks less so.

# %%
import math
import random

import matplotlib.pyplot as plt
import numpy as np
import torch

from lib import check, data, results
from lib.autograd import MLP, VALUE_OPS, Layer, Neuron, Value, draw_graph, random_expression, value_and_grad
from lib.device import seeded, setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## 1. Computational graphs and the chain rule
#
# Take $f(a, b, c) = \tanh(a b + c)$. Computing it is a sequence of elementary steps, each with a
# simple local derivative:
#
# $$d = a b, \quad e = d + c, \quad f = \tanh(e); \qquad
#   \frac{\partial d}{\partial a} = b,\quad \frac{\partial e}{\partial d} = 1,\quad
#   \frac{\partial f}{\partial e} = 1 - \tanh^2(e).$$
#
# The **chain rule** multiplies local derivatives along the path from an input to the output:
# $\frac{\partial f}{\partial a} = \frac{\partial f}{\partial e}\frac{\partial e}{\partial d}
# \frac{\partial d}{\partial a} = (1-f^2)\cdot 1 \cdot b$. Going **backwards** from $f$ computes each
# shared factor once: first $\partial f/\partial e$, then $\partial f/\partial d$, then the inputs. When
# a value feeds several later steps, the contributions of the paths are **added**.

# %% [markdown]
# ## 2. A tiny autograd engine, from scratch
#
# Each number becomes a node that remembers its parents and how to pass a gradient back to them. The
# engine below supports `+`, `*` and `tanh` — enough for the example. `backward()` orders the graph so
# that every node comes after its parents (a **topological order**), seeds $\partial f/\partial f = 1$,
# and visits the nodes in reverse, each one adding its share to its parents' gradients.

# %%
class Scalar:
    def __init__(self, data, parents=()):
        self.data, self.grad, self.parents = data, 0.0, parents
        self.backward_step = lambda: None

    def __add__(self, other):
        out = Scalar(self.data + other.data, (self, other))

        def step():
            self.grad += out.grad          # ∂(s+o)/∂s = 1
            other.grad += out.grad
        out.backward_step = step
        return out

    def __mul__(self, other):
        out = Scalar(self.data * other.data, (self, other))

        def step():
            self.grad += other.data * out.grad   # ∂(s·o)/∂s = o
            other.grad += self.data * out.grad
        out.backward_step = step
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Scalar(t, (self,))

        def step():
            self.grad += (1 - t * t) * out.grad
        out.backward_step = step
        return out

    def backward(self):
        order, seen = [], set()

        def visit(node):                   # depth-first: a node is added after all its parents
            if id(node) not in seen:
                seen.add(id(node))
                for parent in node.parents:
                    visit(parent)
                order.append(node)
        visit(self)
        self.grad = 1.0
        for node in reversed(order):
            node.backward_step()


a, b, c = Scalar(2.0), Scalar(-1.5), Scalar(0.5)
f = (a * b + c).tanh()
f.backward()
print(f"f = {f.data:.6f};  ∂f/∂a = {a.grad:.6f}, ∂f/∂b = {b.grad:.6f}, ∂f/∂c = {c.grad:.6f}")
assert abs(a.grad - (1 - f.data ** 2) * b.data) < 1e-12   # the chain rule by hand

# %% [markdown]
# The course library's `lib.autograd.Value` is the same engine with more operations (`-`, `/`, `**`,
# `exp`, `log`, `sigmoid`, `relu`) and an iterative topological sort, so that very deep graphs do not hit
# Python's recursion limit. It must give the same numbers as our `Scalar`, and it can draw the graph:
# each box shows the node's operation (or name), its value and its gradient.

# %%
A, B, C = Value(2.0, label="a"), Value(-1.5, label="b"), Value(0.5, label="c")
D = A * B
D.label = "d = a·b"
E = D + C
E.label = "e = d + c"
F = E.tanh()
F.label = "f = tanh(e)"
F.backward()
draw_graph(F, title="f = tanh(a·b + c): values and gradients after backward()")
plt.show()
same = np.array_equal([a.grad, b.grad, c.grad, f.data], [A.grad, B.grad, C.grad, F.data])
assert same
print(f"Scalar == lib.autograd.Value (exactly): {same}")

# %% [markdown]
# ### Where paths merge, gradients add: the `a + a` bug
#
# Every backward step above *adds* to its parents' gradients (`+=`). Writing `=` instead is a classic
# bug, and it goes unnoticed on graphs like $\tanh(ab + c)$, where each value is used once. It shows as
# soon as a node feeds two later steps: in $f = a + a$ both paths from $f$ to $a$ carry a 1, so
# $\partial f/\partial a = 2$, but an assigning engine writes the second 1 over the first. `ScalarAssigning`
# below is `Scalar` with that bug; we compare both with `lib.autograd.Value` and with finite differences.

# %%
class ScalarAssigning(Scalar):
    """`Scalar` with the bug: its backward steps assign (=) the parents' gradients instead of adding (+=)."""

    def __add__(self, other):
        out = ScalarAssigning(self.data + other.data, (self, other))

        def step():
            self.grad = out.grad           # overwrites what another path put there
            other.grad = out.grad
        out.backward_step = step
        return out

    def __mul__(self, other):
        out = ScalarAssigning(self.data * other.data, (self, other))

        def step():
            self.grad = other.data * out.grad
            other.grad = self.data * out.grad
        out.backward_step = step
        return out


def grad_of_a(kind, fn, a=3.0, b=-1.5):
    """∂fn/∂a at (a, b), by the engine `kind` (a class of nodes)."""
    node_a, node_b = kind(a), kind(b)
    fn(node_a, node_b).backward()
    return node_a.grad


for name, fn in {"a + a": lambda a, b: a + a, "a · a": lambda a, b: a * a, "a · b + a": lambda a, b: a * b + a}.items():
    exact = (fn(3.0 + 1e-6, -1.5) - fn(3.0 - 1e-6, -1.5)) / 2e-6      # central difference, numbers only
    right, library, wrong = (grad_of_a(kind, fn) for kind in (Scalar, Value, ScalarAssigning))
    assert abs(right - exact) < 1e-6 and right == library and abs(wrong - exact) > 0.5
    print(f"f = {name:<9} at a = 3, b = -1.5:  ∂f/∂a = {exact:5.2f} (finite differences);  "
          f"Scalar (+=) {right:5.2f}, lib.autograd.Value {library:5.2f}, ScalarAssigning (=) {wrong:5.2f}")

# %% [markdown]
# The assigning engine keeps only the last path it visits: 1 instead of 2 for $a + a$, 3 instead of
# $2a = 6$ for $a \cdot a$, and $b = -1.5$ instead of $b + 1 = -0.5$ for $ab + a$. Networks reuse values
# everywhere — an input feeds every neuron of the first layer, a hidden unit every neuron of the next —
# so such an engine trains on wrong gradients without any error message. Finite differences (section 4)
# catch it.
#
# ## 3. Why backwards? Reverse mode and forward mode
#
# The chain rule can also be applied *forwards*. **Forward mode** carries, next to each value $v$, its
# derivative $\dot v$ with respect to *one* chosen input (a pair called a *dual number*), and every
# operation updates both: $(a, \dot a) \cdot (b, \dot b) = (ab,\ \dot a\, b + a\, \dot b)$,
# $\tanh(a, \dot a) = (\tanh a,\ (1 - \tanh^2 a)\,\dot a)$. Starting with $\dot x_i = 1$ for one input
# and 0 for the others, one forward pass yields $\partial f/\partial x_i$ — for that one input.
#
# **Reverse mode** (backpropagation) runs one forward pass, then one backward pass, and yields
# $\partial f/\partial x_i$ for *every* input at once. A loss is one number computed from many parameters
# (a million in a small network): forward mode would need a million passes, reverse mode needs two. Its
# price is memory — every intermediate value is kept until the backward pass has used it. Forward mode
# wins in the opposite case, few inputs and many outputs, and frameworks offer it too
# (`torch.func.jvp`). `Dual` below is forward mode from scratch; we count the operations each mode
# performs on the loss of a neuron with $n$ weights.

# %%
class Dual:
    """Forward mode: a value and its derivative (tangent) with respect to one chosen input."""

    operations = 0   # how many Duals were computed, to compare the cost of the two modes

    def __init__(self, value, tangent=0.0):
        self.value, self.tangent = value, tangent
        Dual.operations += 1

    def __add__(self, other):
        other = other if isinstance(other, Dual) else Dual(other)
        return Dual(self.value + other.value, self.tangent + other.tangent)

    def __sub__(self, other):
        other = other if isinstance(other, Dual) else Dual(other)
        return Dual(self.value - other.value, self.tangent - other.tangent)

    def __mul__(self, other):
        other = other if isinstance(other, Dual) else Dual(other)
        return Dual(self.value * other.value, self.tangent * other.value + self.value * other.tangent)

    def __truediv__(self, other):
        other = other if isinstance(other, Dual) else Dual(other)
        return Dual(self.value / other.value,
                    (self.tangent * other.value - self.value * other.tangent) / other.value ** 2)

    __radd__, __rmul__ = __add__, __mul__


def dual_function(fn, derivative):
    return lambda d: Dual(fn(d.value), derivative(d.value) * d.tangent)


sigmoid = lambda v: 1 / (1 + math.exp(-v))
DUAL_OPS = {"tanh": dual_function(math.tanh, lambda v: 1 - math.tanh(v) ** 2),
            "exp": dual_function(math.exp, math.exp),
            "sigmoid": dual_function(sigmoid, lambda v: sigmoid(v) * (1 - sigmoid(v))),
            "relu": dual_function(lambda v: max(v, 0.0), lambda v: float(v > 0))}


def forward_mode_gradient(fn, xs, ops):
    """The gradient of fn at xs by forward mode: one pass per input, each seeding that input's tangent."""
    return [fn([Dual(x, float(j == i)) for j, x in enumerate(xs)], ops).tangent for i in range(len(xs))]


# the same random formula (section 5 explains random_expression), differentiated both ways
formula = random_expression(n_inputs=4, n_ops=15, seed=1)
point = [0.3, -1.2, 0.8, 0.5]
forward = forward_mode_gradient(formula, point, DUAL_OPS)
reverse = value_and_grad(lambda v: formula(v, VALUE_OPS), point)[1]
close = np.allclose(forward, reverse, rtol=0, atol=1e-12)
assert close
print(f"forward mode (4 passes) == reverse mode (1 forward + 1 backward pass) (to 1e-12): {close}")


def neuron_loss(w, x, ops):
    """(tanh(w · x) - 1)²: the loss of one neuron with target 1, as a function of its n weights w."""
    z = sum((wi * xi for wi, xi in zip(w[1:], x[1:])), w[0] * x[0])
    error = ops["tanh"](z) - 1.0
    return error * error


for n in (10, 100):
    x_n = [math.sin(i) for i in range(n)]
    loss_of_weights = lambda w, ops: neuron_loss(w, x_n, ops)
    start_weights = [0.1 * math.cos(i) for i in range(n)]
    Dual.operations = 0
    forward = forward_mode_gradient(loss_of_weights, start_weights, DUAL_OPS)
    forward_operations = Dual.operations
    weights_n = [Value(v) for v in start_weights]
    loss_n = loss_of_weights(weights_n, VALUE_OPS)
    loss_n.backward()
    assert np.allclose(forward, [v.grad for v in weights_n], rtol=0, atol=1e-12)
    print(f"n = {n:>3} weights, the same gradient: forward mode {n} passes, {forward_operations:>6,} operations; "
          f"reverse mode 1 forward + 1 backward pass over {len(loss_n.topological_order()):,} nodes")

# %% [markdown]
# Forward mode repeats the whole function once per input: $n$ passes of about $4n$ operations each
# (a product and a sum per weight, on values and tangents), so its cost grows like $n^2$. Reverse mode
# builds the graph once and visits each node once more backwards, so its cost grows like $n$. For a
# network with a million weights, forward mode would cost about a million evaluations of the network,
# reverse mode about two or three — that is why training uses reverse mode.

# %% [markdown]
# ## 4. Gradient checking with finite differences
#
# A derivative is a limit of difference quotients. The **central difference**
# $\frac{f(x+h) - f(x-h)}{2h}$ differs from the derivative by two errors: truncation, of order $h^2$
# ($10^{-12}$ for $h = 10^{-6}$), and rounding, about $\varepsilon/h$ where $\varepsilon \approx 10^{-16}$
# is float64's precision ($10^{-10}$). So it matches the true derivative to about $10^{-9}$: slow (two
# evaluations per input) but independent of any backward code, which makes it the standard test for a
# hand-written backward pass.

# %%
def numeric_gradient(fn, xs, h=1e-6):
    """Central differences of a scalar function of a list of floats."""
    grads = []
    for i in range(len(xs)):
        up, down = list(xs), list(xs)
        up[i] += h
        down[i] -= h
        grads.append((fn(up) - fn(down)) / (2 * h))
    return grads


expression = random_expression(n_inputs=4, n_ops=15, seed=1)
xs = [0.3, -1.2, 0.8, 0.5]
values = [Value(x) for x in xs]
out = expression(values, VALUE_OPS)
out.backward()
numeric = numeric_gradient(lambda v: expression([Value(x) for x in v], VALUE_OPS).data, xs)
worst = max(abs(v.grad - n) for v, n in zip(values, numeric))
print(f"engine: {[round(v.grad, 6) for v in values]}\nnumeric: {[round(n, 6) for n in numeric]}")
print("largest difference below 1e-6:", worst < 1e-6)
assert worst < 1e-6

# %% [markdown]
# ## 5. Three engines, one answer
#
# `random_expression` builds a random formula of 4 inputs from `+`, `−`, `×`, a safe division
# $a/(1 + b^2)$ (never by zero), `tanh`, `exp`, `sigmoid`, `relu` and squares. We evaluate the *same* formula with our `Value`s, with PyTorch tensors
# (`requires_grad=True`, then `.backward()`) and with TensorFlow variables under a `GradientTape`, all in
# float64, for 30 random formulas and inputs, and compare the gradients.

# %%
from lib.keras_models import load_keras

load_keras()   # imports TensorFlow quietly
import tensorflow as tf

TORCH_OPS = {"tanh": torch.tanh, "exp": torch.exp, "sigmoid": torch.sigmoid, "relu": torch.relu}
TF_OPS = {"tanh": tf.tanh, "exp": tf.exp, "sigmoid": tf.sigmoid, "relu": tf.nn.relu}

close_torch = close_tf = True
rng = random.Random(0)
for seed in range(30):
    fn = random_expression(n_inputs=4, n_ops=15, seed=seed)
    xs = [rng.uniform(-1.5, 1.5) for _ in range(4)]

    ours = np.array(value_and_grad(lambda v: fn(v, VALUE_OPS), xs)[1])   # Values in, backward(), grads out

    tensors = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    fn(tensors, TORCH_OPS).backward()
    theirs_torch = np.array([t.grad.item() for t in tensors])

    variables = [tf.Variable(x, dtype=tf.float64) for x in xs]
    with tf.GradientTape() as tape:
        result = fn(variables, TF_OPS)
    theirs_tf = np.array([g.numpy() for g in tape.gradient(result, variables)])

    tol = 1e-6 * max(1.0, np.abs(ours).max())   # relative to the gradient's size
    close_torch &= np.allclose(ours, theirs_torch, rtol=0, atol=tol)
    close_tf &= np.allclose(ours, theirs_tf, rtol=0, atol=tol)

assert close_torch and close_tf
print(f"lib.autograd.Value == torch.autograd (to 1e-6 relative): {close_torch}")
print(f"lib.autograd.Value == tf.GradientTape (to 1e-6 relative): {close_tf}")

# %% [markdown]
# ## 6. Backpropagation in matrix form
#
# A scalar engine makes one node per number: clear, but far too slow for real networks. Frameworks work
# with whole matrices. Take a batch of $n$ inputs with $d$ features each, $X \in \mathbb R^{n\times d}$,
# and targets $Y \in \mathbb R^{n\times k}$. A network with one hidden layer of $m$ tanh units has
# weights $W_1 \in \mathbb R^{d\times m}$, $b_1 \in \mathbb R^m$, $W_2 \in \mathbb R^{m\times k}$,
# $b_2 \in \mathbb R^k$ and computes (adding a bias vector to every row)
#
# $$Z = XW_1 + b_1,\quad H = \tanh(Z),\quad \hat Y = HW_2 + b_2,\quad
#   L = \tfrac{1}{nk}\textstyle\sum_{i,j} (\hat Y_{ij} - Y_{ij})^2 .$$
#
# Going backwards, each line of the forward pass gives one line of the backward pass. Writing
# $G_{\hat Y} = \partial L/\partial \hat Y$ (a matrix of the same shape as $\hat Y$) and so on:
#
# $$G_{\hat Y} = \tfrac{2}{nk}(\hat Y - Y),\quad
#   G_{W_2} = H^\top G_{\hat Y},\quad G_{b_2} = \textstyle\sum_{\text{rows}} G_{\hat Y},\quad
#   G_H = G_{\hat Y} W_2^\top,$$
# $$G_Z = G_H \odot (1 - H^2),\quad G_{W_1} = X^\top G_Z,\quad G_{b_1} = \textstyle\sum_{\text{rows}} G_Z .$$
#
# where $\odot$ multiplies element by element. *Common pitfalls* (both appear in published tutorials):
# dropping the activation's derivative $(1 - H^2)$ — the chain rule must pass *through* $\tanh$ — and
# forgetting a transpose. The shapes catch the second: $G_{W_1}$ must have the shape of $W_1$, $(d, m)$,
# and $X^\top G_Z$ is the only product of $X$ and $G_Z$ that has it.

# %%
def backward_scratch(X, Y, W1, b1, W2, b2):
    """Loss and gradients (G_W1, G_b1, G_W2, G_b2) of the network above, by hand: what .backward() computes."""
    Z = X @ W1 + b1
    H = np.tanh(Z)
    Y_hat = H @ W2 + b2
    loss = np.mean((Y_hat - Y) ** 2)
    G_Y = 2 * (Y_hat - Y) / Y.size
    G_W2, G_b2 = H.T @ G_Y, G_Y.sum(axis=0)
    G_H = G_Y @ W2.T
    G_Z = G_H * (1 - H ** 2)
    G_W1, G_b1 = X.T @ G_Z, G_Z.sum(axis=0)
    return loss, (G_W1, G_b1, G_W2, G_b2)


rs = np.random.default_rng(0)
n, d, m, k = 32, 5, 7, 3
X, Y = rs.normal(size=(n, d)), rs.normal(size=(n, k))
weights = [rs.normal(size=(d, m)) * 0.5, np.zeros(m), rs.normal(size=(m, k)) * 0.5, np.zeros(k)]
loss, grads = backward_scratch(X, Y, *weights)

tw = [torch.tensor(w, requires_grad=True) for w in weights]
t_loss = ((torch.tanh(torch.tensor(X) @ tw[0] + tw[1]) @ tw[2] + tw[3] - torch.tensor(Y)) ** 2).mean()
t_loss.backward()
print("shapes:", ", ".join(f"G_{name} {ours.shape}" for name, ours in zip(["W1", "b1", "W2", "b2"], grads)))
close = all(np.allclose(ours, t.grad.numpy(), atol=1e-10) for ours, t in zip(grads, tw))
assert close
print(f"backward_scratch == torch.autograd (to 1e-10): {close}")

# %% [markdown]
# ## 7. Neuron → Layer → MLP
#
# A network of `Value`s is built from three pieces. Each is a **module** with `parameters()` (the list
# of its trainable `Value`s) and `zero_grad()`, like `torch.nn.Module`:
#
# - a `Neuron(nin)` computes $\mathrm{act}(w \cdot x + b)$ from a list of `nin` inputs;
# - a `Layer(nin, nout)` is a list of `nout` neurons that read the same inputs; it returns a list of
#   `nout` values;
# - an `MLP(nin, [n1, n2, …])` is a list of layers, each reading the previous layer's outputs.
#
# A `Layer` is exactly PyTorch's `nn.Linear(nin, nout)` followed by the activation. `Linear.weight` has
# shape `(nout, nin)`: its row $i$ holds neuron $i$'s weights and `Linear.bias[i]` its bias, so
# $y = Wx + b$ computes all the neurons at once. (An `MLP` is in the same way an `nn.Sequential` of
# `Linear` layers and activations.) We copy a layer's weights into an `nn.Linear` and compare the
# outputs and the gradients of a loss, in float64.

# %%
layer = Layer(3, 4, act="tanh", rng=random.Random(0))
print(f"{layer}: {len(layer.neurons)} neurons with {len(layer.neurons[0].w)} weights and a bias each, "
      f"{len(layer.parameters())} parameters")

f64 = lambda numbers: torch.tensor(numbers, dtype=torch.float64)
linear = torch.nn.Linear(3, 4, dtype=torch.float64)
with torch.no_grad():
    linear.weight.copy_(f64([[w.data for w in neuron.w] for neuron in layer.neurons]))  # row i = neuron i
    linear.bias.copy_(f64([neuron.b.data for neuron in layer.neurons]))
print("nn.Linear(3, 4).weight has shape", tuple(linear.weight.shape), "= (neurons, inputs)")

x_in, y_target = [0.5, -1.0, 2.0], [0.3, -0.2, 0.8, 0.0]


def layer_loss(layer, x, target) -> Value:
    """Squared error of the layer's outputs (a list of Values) against the target numbers."""
    return sum(((out - t) ** 2 for out, t in zip(layer(x), target)), Value(0.0))


def torch_layer_loss(linear, x, target) -> torch.Tensor:
    return ((torch.tanh(linear(f64(x))) - f64(target)) ** 2).sum()


outputs = [out.data for out in layer(x_in)]
layer_loss(layer, x_in, y_target).backward()
torch_layer_loss(linear, x_in, y_target).backward()
ours_w = f64([[w.grad for w in neuron.w] for neuron in layer.neurons])
ours_b = f64([neuron.b.grad for neuron in layer.neurons])
same_out = torch.allclose(f64(outputs), torch.tanh(linear(f64(x_in))), rtol=0, atol=1e-12)
same_w = torch.allclose(ours_w, linear.weight.grad, rtol=0, atol=1e-12)
same_b = torch.allclose(ours_b, linear.bias.grad, rtol=0, atol=1e-12)
close = same_out and same_w and same_b   # the outputs, and the gradients of the weights and of the biases
assert close
print(f"lib.autograd.Layer == tanh(nn.Linear) (to 1e-12): {close}")

# %% [markdown]
# ### Gradients accumulate until `zero_grad()`
#
# In PyTorch, `loss.backward()` does not *overwrite* the `.grad` of a parameter: it **adds** this
# pass's gradient to it. Our engine does the same. Call `backward()` twice and every parameter's
# gradient doubles; `zero_grad()` sets them back to zero. (Only the *leaves* of the graph, the
# parameters and inputs, accumulate: intermediate nodes start from zero in every pass. PyTorch does not
# even keep their gradients.)
#
# Why does PyTorch work this way?
#
# - **Gradient accumulation over micro-batches.** When a batch is too large for memory, run it as $k$
#   micro-batches, call `backward()` on each micro-batch's loss divided by $k$, and take one optimizer
#   step: the accumulated gradient is the gradient of the whole batch.
# - **Shared parameters and several losses.** A parameter used in several places (the same embedding
#   at a network's input and output), or a sum of losses computed in separate passes, must receive
#   the sum of all contributions. Within one graph, `backward()` already adds the paths (section 1);
#   accumulation extends the same rule across `backward()` calls.
#
# The price: a training loop must clear the gradients once per step, with `model.zero_grad()` or
# `optimizer.zero_grad()`.

# %%
once = [p.grad for p in layer.parameters()]
t_once = linear.weight.grad.clone()
layer_loss(layer, x_in, y_target).backward()          # a second backward() without zero_grad()
torch_layer_loss(linear, x_in, y_target).backward()
twice = [p.grad for p in layer.parameters()]
print("second backward() without zero_grad(): every gradient exactly doubled:", twice == [2 * g for g in once],
      "| in PyTorch too:", torch.equal(linear.weight.grad, 2 * t_once))
layer.zero_grad()
linear.zero_grad()
print("after zero_grad(): ours are all 0:", all(p.grad == 0.0 for p in layer.parameters()),
      "| PyTorch's .grad is None, which it reads as 0:", linear.weight.grad is None)

# the mean loss over 8 points in one pass = 4 passes over micro-batches of 2, each divided by 4
point_rng = random.Random(1)
batch = [([point_rng.uniform(-1, 1) for _ in range(3)], [point_rng.uniform(-1, 1) for _ in range(4)]) for _ in range(8)]
(sum((layer_loss(layer, x, t) for x, t in batch), Value(0.0)) * (1 / 8)).backward()
full_batch = [p.grad for p in layer.parameters()]
layer.zero_grad()
for k in range(4):
    micro = batch[2 * k: 2 * k + 2]
    (sum((layer_loss(layer, x, t) for x, t in micro), Value(0.0)) * (1 / 2) * (1 / 4)).backward()
accumulated = [p.grad for p in layer.parameters()]
same = max(abs(a - b) for a, b in zip(full_batch, accumulated)) < 1e-12
print("gradient of the full batch = gradients of 4 micro-batches, accumulated (to 1e-12):", same)
assert same
layer.zero_grad()

# %% [markdown]
# What happens when a training loop forgets `zero_grad()`? Then every step uses the *sum* of all the
# gradients so far: the update keeps pushing in old directions, like momentum that never decays, and the
# parameters swing around the minimum instead of settling. We fit one linear neuron to five points of
# the line $y = 2x + 1$ with plain gradient descent (`lr = 0.2`, 60 steps), once with `zero_grad()` and
# once without.

# %%
from lib.optim import SGD

line_x = [-1.0, -0.5, 0.0, 0.5, 1.0]
line_y = [2 * x + 1 for x in line_x]


def fit_line(zero_grad: bool, steps: int = 60):
    neuron = Neuron(1, act="linear", rng=random.Random(0))
    optimizer = SGD(neuron.parameters(), lr=0.2)
    losses = []
    for _ in range(steps):
        if zero_grad:
            optimizer.zero_grad()
        errors = [neuron([x]) - y for x, y in zip(line_x, line_y)]
        loss = sum((e * e for e in errors), Value(0.0)) * (1 / len(errors))
        loss.backward()
        optimizer.step()
        losses.append(loss.data)
    return neuron, losses


fig, ax = plt.subplots(figsize=(6, 3))
for zero_grad in (True, False):
    neuron, losses = fit_line(zero_grad)
    print(f"{'with zero_grad():   ' if zero_grad else 'without zero_grad():'} w = {neuron.w[0].data:.3f}, "
          f"b = {neuron.b.data:.3f}; loss over the last 10 steps between {min(losses[-10:]):.1e} and {max(losses[-10:]):.1e}")
    ax.semilogy(losses, label="with zero_grad()" if zero_grad else "without zero_grad()")
ax.set(title="Fitting y = 2x + 1: forgetting zero_grad()", xlabel="step", ylabel="mean squared error")
ax.legend()
plt.show()

# %% [markdown]
# ## 8. Training a neural network with our own engine
#
# With gradients for every parameter we can train. `lib.autograd.MLP(2, [8, 8, 1])` is a network of
# `Value`s: two inputs, two hidden layers of 8 tanh units, one output score $s$; a point is class 1 when
# $s > 0$. The loss is the logistic loss $\log(1 + e^{-t s})$ with $t = \pm 1$ the label, averaged over a
# mini-batch of 16 points. Every one of the 105 parameters gets its gradient from our `backward()`, and
# chapter 01's `Adam` (which works on anything with `.data` and `.grad`) takes the steps. As in PyTorch,
# every step starts with `optimizer.zero_grad()`, which clears the same parameters as
# `model.zero_grad()`.

# %%
# NBVAL_IGNORE_OUTPUT
import time

from lib.optim import Adam

X_moons, y_moons = data.toy_2d("moons", n=200, noise=0.1, seed=0)
X_test, y_test = data.toy_2d("moons", n=300, noise=0.1, seed=1)
model = MLP(2, [8, 8, 1], act="tanh", seed=0)
optimizer = Adam(model.parameters(), lr=0.05)


def score(point) -> Value:
    return model([Value(float(point[0])), Value(float(point[1]))])[0]


def logistic_loss(s: Value, label: int) -> Value:
    t = 1.0 if label == 1 else -1.0
    return (1 + (-t * s).exp()).log()


batch_rng = np.random.default_rng(0)
start = time.perf_counter()
history = []
for step in range(150):
    batch = batch_rng.choice(len(y_moons), 16, replace=False)
    optimizer.zero_grad()
    loss = sum((logistic_loss(score(X_moons[i]), y_moons[i]) for i in batch), Value(0.0)) * (1 / len(batch))
    loss.backward()
    optimizer.lr = 0.05 if step < 100 else 0.01   # a smaller step to settle at the end
    optimizer.step()
    history.append(loss.data)
print(f"{len(model.parameters())} parameters, 150 steps in {time.perf_counter() - start:.1f} s, final batch loss {history[-1]:.3f}")

# %% [markdown]
# Evaluating the engine point by point is slow, so for the picture we copy its weights into matrices and
# run the same network with NumPy — section 6's matrix form — after checking that both give the same
# scores. As in `nn.Linear`, row $i$ of a layer's weight matrix holds neuron $i$'s weights.

# %%
weights = [np.array([[w.data for w in neuron.w] for neuron in layer.neurons]) for layer in model.layers]  # (nout, nin)
biases = [np.array([neuron.b.data for neuron in layer.neurons]) for layer in model.layers]


def score_numpy(P: np.ndarray) -> np.ndarray:
    h = P.astype(np.float64)
    for i, (W, bias) in enumerate(zip(weights, biases)):
        h = h @ W.T + bias
        if i < len(weights) - 1:
            h = np.tanh(h)
    return h[:, 0]


engine_scores = np.array([score(p).data for p in X_test])
close = np.allclose(score_numpy(X_test), engine_scores, atol=1e-9)   # on the held-out points
assert close
print(f"score_numpy == lib.autograd.MLP (to 1e-9): {close}")
predict = lambda P: (score_numpy(P) > 0).astype(int)
train_acc = np.mean(predict(X_moons) == y_moons)
test_acc = np.mean((engine_scores > 0) == y_test)

# %%
# NBVAL_IGNORE_OUTPUT
from sklearn.linear_model import LogisticRegression

linear_baseline = LogisticRegression().fit(X_moons, y_moons)   # the simplest baseline: a straight boundary
print(f"engine-trained MLP on moons: training accuracy {100 * train_acc:.1f}%, held-out accuracy {100 * test_acc:.1f}%")
print(f"baselines on the held-out points: logistic regression {100 * linear_baseline.score(X_test, y_test):.1f}%, "
      f"majority class {100 * max(y_test.mean(), 1 - y_test.mean()):.1f}%")

# %%
# Accuracies of a trained model are *measured* numbers (chapter 00 explains the check): each must lie
# within three times the standard deviation of the difference between two runs (estimated from the
# binomial spread of a score on that many points; for the training points an upper bound, since a
# model moves less on the data it was fitted to) and meet the bar of 95 %.
results.expect("engine-trained MLP, training accuracy on moons", 100 * train_acc, 99.0,
               results.tolerance_for_accuracy(99.0, len(y_moons)), unit=" %", at_least=95.0)
results.expect("engine-trained MLP, held-out accuracy on moons", 100 * test_acc, 98.3,
               results.tolerance_for_accuracy(98.3, len(y_test)), unit=" %", at_least=95.0)

from lib.plot import decision_boundary

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot(history)
axes[0].set(title="Training loss (mini-batches of 16)", xlabel="step", ylabel="logistic loss")
decision_boundary(predict, X_test, y_test, ax=axes[1], title=f"Held-out moons: {test_acc:.1%} correct")
plt.show()

# %% [markdown]
# ## 9. A teaser: how gradients flow through deep networks
#
# In the backward pass each layer multiplies the gradient by its activation's derivative (and by its
# weights). The sigmoid's derivative is at most $\sigma'(0) = 1/4$, so through many sigmoid layers the
# gradient shrinks geometrically and the first layers barely learn — the **vanishing gradient**. ReLU's
# derivative is exactly 1 wherever the unit is active — and 0 wherever it is not, which at initialisation
# is about half the units: a ReLU layer passes back the gradient of only half its units. We measure the
# gradient norm at every layer of a 12-layer PyTorch network at initialisation (PyTorch's default
# initialisation, random inputs and targets). Expect both curves to fall towards the input — ReLU
# halves the signal's energy at every layer, and PyTorch's default weights are too small to make up for
# it, together about a factor 2 per layer here (chapter 03's He initialisation, variance $2/n_\text{in}$
# instead of PyTorch's default $1/(3n_\text{in})$, compensates exactly) — but the sigmoid's far faster. Chapter 05 returns to vanishing gradients, through time.

# %%
def layer_gradient_norms(activation, depth=12, width=64, seed=0):
    """‖∂L/∂W‖ of each of `depth` hidden layers at initialisation (layer 1 nearest the input)."""
    with seeded(seed):   # the weights and data depend on `seed` alone
        layers = []
        for _ in range(depth):
            layers += [torch.nn.Linear(width, width), activation()]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
        x, target = torch.randn(256, width), torch.randn(256, 1)
    torch.nn.functional.mse_loss(net(x), target).backward()
    return [net[2 * i].weight.grad.norm().item() for i in range(depth)]


norms = {name: layer_gradient_norms(act) for name, act in [("sigmoid", torch.nn.Sigmoid), ("ReLU", torch.nn.ReLU)]}
fig, ax = plt.subplots()
for name, values in norms.items():
    ax.semilogy(range(1, 13), values, "o-", label=name)
ax.set(title="Gradient norm of each layer's weights at initialisation", xlabel="layer (1 = nearest the input)",
       ylabel="‖∂L/∂W‖")
ax.legend()
plt.show()
ratio = {name: v[-1] / v[0] for name, v in norms.items()}
print(f"last layer / first layer gradient norm: sigmoid ≈ 10^{math.log10(ratio['sigmoid']):.0f}, ReLU ≈ 10^{math.log10(ratio['ReLU']):.0f}")
print(f"average shrink factor per layer: sigmoid {ratio['sigmoid'] ** (1 / 11):.1f}, ReLU {ratio['ReLU'] ** (1 / 11):.1f}")
assert ratio["sigmoid"] > 100 * ratio["ReLU"]

# %% [markdown]
# ## Widget: every value and every gradient of a tiny network
#
# A network with two inputs $x_1, x_2$, two tanh hidden units $h_j = \tanh(z_j)$ with
# $z_j = w_{1j}x_1 + w_{2j}x_2$, and a linear output $\hat y = v_1 h_1 + v_2 h_2$, whose output is compared
# with a target $t$ by $L = (\hat y - t)^2$ (the subtraction $\hat y - t$ is one "−" node, whose
# backward step sends $+1$ times its gradient to $\hat y$ and $-1$ times it to $t$). Nothing is trained:
# move the sliders and watch each node's value (forward) and gradient (backward) change. Things to
# try: make a hidden unit saturate ($|z_j| > 3$) and see the gradients of its incoming weights vanish;
# set an input to 0 and see which weight gradients become 0.

# %%
import ipywidgets as widgets

from lib.widgets import InteractiveFigure, slider


def tiny_network(x1: float, x2: float, w11: float, w21: float, w12: float, w22: float, v1: float, v2: float,
                 target: float) -> Value:
    """Build the graph of L = (v1·tanh(w11 x1 + w21 x2) + v2·tanh(w12 x1 + w22 x2) − target)²; run backward."""
    nodes = {name: Value(val, label=name) for name, val in
             dict(x1=x1, x2=x2, w11=w11, w21=w21, w12=w12, w22=w22, v1=v1, v2=v2).items()}
    h1 = (nodes["w11"] * nodes["x1"] + nodes["w21"] * nodes["x2"]).tanh()
    h1.label = "h1"
    h2 = (nodes["w12"] * nodes["x1"] + nodes["w22"] * nodes["x2"]).tanh()
    h2.label = "h2"
    y_hat = nodes["v1"] * h1 + nodes["v2"] * h2
    y_hat.label = "ŷ"
    loss = (y_hat - Value(target, label="t")) ** 2
    loss.label = "L"
    loss.backward()
    return loss


def show_network(**kwargs) -> str:
    loss = tiny_network(**kwargs)
    draw_graph(loss, title="Tiny network: value | gradient of L at every node")
    grads = {n.label: round(n.grad, 4) for n in loss.topological_order() if n.label.startswith(("w", "v"))}
    return f"L = {loss.data:.4f}; weight gradients {grads}"


defaults = dict(x1=1.0, x2=-0.5, w11=0.8, w21=0.3, w12=-0.6, w22=0.9, v1=1.2, v2=-0.7, target=0.5)
print(show_network(**defaults))

# %%
# NBVAL_IGNORE_OUTPUT
network_widget = InteractiveFigure(show_network, **{name: slider(v, -3, 3, 0.1, name) for name, v in defaults.items()})
network_widget

# %%
network_widget.children[0].value = 0.0   # input x1 = 0: the weights leaving x1 get zero gradient
print(network_widget.result)

# %% [markdown]
# ## Summary
#
# - A computation is a graph of simple operations; the chain rule multiplies local derivatives along it.
# - Reverse mode (backpropagation) visits the graph once, in reverse topological order, and adds
#   gradients where paths merge — an engine that assigns instead gets $\partial(a + a)/\partial a = 1$;
#   our engine, `torch.autograd` and `tf.GradientTape` agree to $10^{-6}$ on random expressions.
# - Reverse mode gives the gradient with respect to every input in one backward pass; forward mode
#   (dual numbers) needs one pass per input, which is why training uses reverse mode.
# - Finite differences check any backward pass independently.
# - A network is `Neuron` → `Layer` → `MLP`; a `Layer` is `nn.Linear` (row $i$ of the weight = neuron
#   $i$) plus its activation, and agrees with it to $10^{-12}$.
# - As in PyTorch, `backward()` adds to the parameters' gradients, which makes micro-batch accumulation
#   and shared parameters work; `zero_grad()` once per step clears them, and a loop that forgets it
#   does not converge.
# - In matrix form each forward line has a backward line; the activation's derivative and the transposes
#   are the usual mistakes.
# - Our engine trains a real (small) network to ≥ 95 % on held-out moons — slowly (one Python object
#   per number), which is why frameworks work with tensors.
# - Sigmoid derivatives shrink gradients by a large factor at every layer; with ReLU the shrinking is
#   much slower: its derivative is 1 on the active half of the units and 0 on the rest, and weights
#   scaled for that (chapter 03's He initialisation) stop the shrinking.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — a new operation (2 points).** The softplus function $\operatorname{softplus}(x) = \log(1 + e^x)$
# is a smooth ReLU. Complete `softplus_grad(x)`, its derivative, derived by hand (no autograd). The check
# compares it with PyTorch's autograd at several points.

# %%
def softplus_grad(x: float) -> float:
    ### BEGIN SOLUTION
    return 1 / (1 + math.exp(-x))
    ### END SOLUTION


# %% [check: 2 points]
def torch_softplus_grad(x):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.softplus(t).backward()
    return t.grad.item()


check.check_function("softplus_grad", softplus_grad, [((x,), torch_softplus_grad(x)) for x in (-3.0, 0.0, 0.7, 4.0)])

# %% [markdown]
# **Exercise 2 — backward of a linear layer (2 points).** A linear layer computes $Y = XW + b$ for
# $X: (n, d)$, $W: (d, m)$, $b: (m,)$. Given the upstream gradient $G_Y = \partial L/\partial Y$ of shape
# $(n, m)$, complete `linear_backward(X, W, G_Y)` to return $(G_X, G_W, G_b)$. (Let the shapes guide you.)

# %%
def linear_backward(X: np.ndarray, W: np.ndarray, G_Y: np.ndarray):
    ### BEGIN SOLUTION
    return G_Y @ W.T, X.T @ G_Y, G_Y.sum(axis=0)
    ### END SOLUTION


# %% [check: 2 points]
Xe, We, be = (torch.tensor(np.random.default_rng(s).normal(size=shape), requires_grad=True)
              for s, shape in [(1, (6, 4)), (2, (4, 3)), (3, (3,))])
G = torch.tensor(np.random.default_rng(4).normal(size=(6, 3)))
(Xe @ We + be).backward(G)
expected = [Xe.grad.numpy(), We.grad.numpy(), be.grad.numpy()]
answer = check.answer_of("linear_backward", lambda: linear_backward(Xe.detach().numpy(), We.detach().numpy(), G.numpy()))
check.check_true("linear_backward returns three arrays", isinstance(answer, (tuple, list)) and len(answer) == 3,
                 "return a tuple (G_X, G_W, G_b)")
for name, got, exp in zip(["G_X", "G_W", "G_b"], answer, expected):
    check.check_close(name, got, exp, atol=1e-10)

# %% [markdown]
# **Exercise 3 — division in the engine (2 points).** `Value` implements $a / b$ as $a \cdot b^{-1}$. Complete
# `quotient_grads(a, b)`: return $\left(\frac{\partial}{\partial a}\frac{a}{b},\ \frac{\partial}{\partial b}\frac{a}{b}\right)$
# computed **with the engine**: build $a/b$ from two `Value`s, call `backward()` and read the two
# gradients. The check compares them with the formulas $1/b$ and $-a/b^2$ (which you could also derive
# by hand — the point is to see that the engine's `__truediv__` and `__pow__` give them).

# %%
def quotient_grads(a: float, b: float) -> tuple[float, float]:
    ### BEGIN SOLUTION
    va, vb = Value(a), Value(b)
    (va / vb).backward()
    return va.grad, vb.grad
    ### END SOLUTION


# %% [check: 2 points]
check.check_function("quotient_grads", quotient_grads,
                     [((a, b), (1 / b, -a / b ** 2)) for a, b in [(1.0, 2.0), (-3.0, 0.5), (2.5, -4.0)]])


# %% [markdown]
# **Exercise 4 — predict, then measure: tanh in the deep network (1 point).** Section 9 measured how much the
# gradient shrinks from the last hidden layer to the first in a 12-layer network at initialisation:
# by about $10^{10}$ with sigmoids, $10^{3}$ with ReLUs. *Before running anything*, predict: with tanh
# (which, like the sigmoid, saturates, but has derivative 1 at 0 instead of 1/4), will the shrinking be
# closer (on a log scale) to the sigmoid's or to the ReLU's? Set `prediction` to `"sigmoid"` or
# `"ReLU"`; the check cell measures it with `layer_gradient_norms`.

# %%
### BEGIN SOLUTION
prediction = "ReLU"
### END SOLUTION

# %% [check: 1 point]
tanh_norms = layer_gradient_norms(torch.nn.Tanh)
orders = {name: math.log10(v[-1] / v[0]) for name, v in [*norms.items(), ("tanh", tanh_norms)]}
print("last layer / first layer gradient norm: " + ", ".join(f"{name} ≈ 10^{order:.1f}" for name, order in orders.items()))
closer = min(("sigmoid", "ReLU"), key=lambda name: abs(orders[name] - orders["tanh"]))
check.check_equal("your prediction: tanh's shrinking is closer to", check.answer_of("prediction", lambda: prediction), closer)

# %% [markdown]
# ## Further reading
#
# - Rumelhart, Hinton & Williams, [Learning representations by back-propagating errors](https://www.nature.com/articles/323533a0)
#   (Nature, 1986) — the paper that made backpropagation the way to train multilayer networks.
# - Baydin, Pearlmutter, Radul & Siskind, [Automatic differentiation in machine learning: a survey](https://arxiv.org/abs/1502.05767)
#   (JMLR, 2018) — forward and reverse mode, dual numbers, and how frameworks implement them (section 3).
# - Olah, [Calculus on Computational Graphs: Backpropagation](https://colah.github.io/posts/2015-08-Backprop/) (2015) —
#   a short, visual explanation of why reverse mode is faster, with the sum over paths of section 1.
# - Glorot & Bengio, [Understanding the difficulty of training deep feedforward neural networks](https://proceedings.mlr.press/v9/glorot10a.html)
#   (AISTATS 2010) and He et al., [Delving Deep into Rectifiers](https://arxiv.org/abs/1502.01852) (ICCV 2015) —
#   the gradient-flow measurements behind section 9 and the initialisations that fix them (chapter 03).
# - Karpathy, Neural Networks: Zero to Hero, [lecture 1 (building micrograd)](https://karpathy.ai/zero-to-hero.html) —
#   the scalar engine of section 2 built live, including the `+=` bug; lecture 5 ("becoming a backprop
#   ninja") writes the matrix-form backward pass of section 6 for a real network.
# - Dive into Deep Learning, [§2.5 Automatic differentiation](https://d2l.ai/chapter_preliminaries/autograd.html) and
#   [§5.3 Forward propagation, backward propagation, and computational graphs](https://d2l.ai/chapter_multilayer-perceptrons/backprop.html).
# - Goodfellow, Bengio & Courville, [Deep Learning](https://www.deeplearningbook.org/), §6.5 — back-propagation
#   and other differentiation algorithms, with the general algorithm on graphs of tensors.
# - Prince, [Understanding Deep Learning](https://udlbook.github.io/udlbook/), chapter 7 (gradients and
#   initialisation) — backpropagation in matrix form and why initialisation scales matter.
# - The fast.ai book, chapter 17 (a neural net from the foundations) — forward and backward passes of an MLP
#   written by hand, then refactored into PyTorch modules.

"""A scalar reverse-mode autograd engine (chapter 02), in the spirit of micrograd.

A ``Value`` holds a number (``data``), the gradient of the final output with respect to it
(``grad``), and how it was made (its parents and the local derivative rule). ``backward()`` visits
the graph in reverse topological order and applies the chain rule once per edge, which is exactly
what ``torch.autograd`` and ``tf.GradientTape`` do for tensors.

The semantics are PyTorch's: ``backward()`` *adds* to the ``grad`` of every leaf (a Value not
computed from others: a parameter, an input), so gradients accumulate across calls until
``zero_grad()`` sets them back to 0. Networks are ``Module``s, like ``torch.nn.Module``:
``Neuron`` (``act(w . x + b)``) → ``Layer`` (``nout`` neurons on the same inputs, the engine's
``act(nn.Linear(nin, nout)(x))``) → ``MLP`` (layers in sequence, the engine's ``nn.Sequential``).
"""
from __future__ import annotations

import math
import random
from typing import Callable

from lib.validate import describe, is_number, require_int


class Value:
    """A scalar node of a computational graph."""

    __slots__ = ("data", "grad", "_parents", "_backward", "op", "label")

    def __init__(self, data: float, _parents: tuple["Value", ...] = (), op: str = "", label: str = "") -> None:
        if isinstance(data, Value):
            raise TypeError("Value(data) takes a number, got a Value; use it directly")
        if isinstance(data, (str, bytes, bool)):  # float("3") and float(True) would pass silently
            raise TypeError(f"Value(data) takes a number, got {describe(data)}")
        self.data = float(data)
        self.grad = 0.0
        self._parents = _parents
        self._backward: Callable[[], None] = lambda: None  # sends self.grad to the parents
        self.op = op
        self.label = label

    def __repr__(self) -> str:
        name = f"{self.label}=" if self.label else ""
        return f"Value({name}{self.data:.4g}, grad={self.grad:.4g})"

    # -- arithmetic: each op computes its output and remembers its local derivatives
    def _binary(self, other: "Value", value: float, d_self: float, d_other: float, op: str) -> "Value":
        out = Value(value, (self, other), op)

        def _backward() -> None:  # += : a node used twice (a + a) gets both contributions
            self.grad += d_self * out.grad
            other.grad += d_other * out.grad
        out._backward = _backward
        return out

    def __add__(self, other) -> "Value":
        other = _lift(other)
        return self._binary(other, self.data + other.data, 1.0, 1.0, "+")

    def __sub__(self, other) -> "Value":  # its own "-" node, not a + (-1)·b, so draw_graph shows a subtraction
        other = _lift(other)
        return self._binary(other, self.data - other.data, 1.0, -1.0, "-")

    def __mul__(self, other) -> "Value":
        other = _lift(other)
        return self._binary(other, self.data * other.data, other.data, self.data, "*")

    def __pow__(self, exponent: float) -> "Value":
        if not is_number(exponent):
            raise TypeError(f"only constant exponents are supported, got {type(exponent).__name__}")
        out = Value(self.data ** exponent, (self,), f"**{exponent:g}")

        def _backward() -> None:
            self.grad += exponent * self.data ** (exponent - 1) * out.grad
        out._backward = _backward
        return out

    def _unary(self, value: float, local_grad: float, op: str) -> "Value":
        out = Value(value, (self,), op)

        def _backward() -> None:
            self.grad += local_grad * out.grad
        out._backward = _backward
        return out

    def exp(self) -> "Value":
        e = math.exp(self.data)
        return self._unary(e, e, "exp")

    def log(self) -> "Value":
        if self.data <= 0:
            raise ValueError(f"log needs a positive input, got {self.data}")
        return self._unary(math.log(self.data), 1.0 / self.data, "log")

    def tanh(self) -> "Value":
        t = math.tanh(self.data)
        return self._unary(t, 1.0 - t * t, "tanh")

    def sigmoid(self) -> "Value":
        s = 1.0 / (1.0 + math.exp(-self.data))
        return self._unary(s, s * (1.0 - s), "sigmoid")

    def relu(self) -> "Value":
        return self._unary(max(self.data, 0.0), float(self.data > 0), "relu")

    def __neg__(self) -> "Value":
        return self._unary(-self.data, -1.0, "neg")

    def __truediv__(self, other) -> "Value":
        return self * _lift(other) ** -1

    def __radd__(self, other) -> "Value":
        return self + other

    def __rmul__(self, other) -> "Value":
        return self * other

    def __rsub__(self, other) -> "Value":
        return _lift(other) - self

    def __rtruediv__(self, other) -> "Value":
        return _lift(other) / self

    # -- reverse mode
    def topological_order(self) -> list["Value"]:
        """Every node this one depends on, each after all of its parents."""
        order, seen = [], set()
        stack = [(self, False)]
        while stack:  # iterative depth-first search: deep graphs must not hit the recursion limit
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((p, False) for p in node._parents if id(p) not in seen)
        return order

    def backward(self) -> None:
        """Add d(self)/d(leaf) to the ``grad`` of every leaf of the graph, like ``torch.Tensor.backward()``.

        Leaves (Values with no parents: parameters, inputs, constants) **accumulate**: two calls
        without zeroing double their gradients, as in PyTorch; ``Module.zero_grad()`` (or an
        optimizer's) clears them. Like PyTorch's ``AccumulateGrad``, a pass sums all paths' contributions
        from zero and then adds the total to what the leaf held, so two passes give exactly twice one.
        Intermediate nodes restart from 0 in every pass and keep d(self)/d(node) afterwards, for
        ``draw_graph`` (PyTorch frees them unless ``retain_grad()`` was called).
        """
        order = self.topological_order()
        held = [(node, node.grad) for node in order if not node._parents]  # leaves and their gradients so far
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            node._backward()
        for node, before in held:
            node.grad = before + node.grad


def _lift(x) -> Value:
    if isinstance(x, Value):
        return x
    if is_number(x):
        return Value(x)
    raise TypeError(f"cannot combine a Value with {type(x).__name__}")


# --------------------------------------------------------------------------- a tiny neural network
def _check_act_rng(act, rng) -> random.Random:
    """ValueError for an unknown activation, TypeError for an rng that is no ``random.Random``."""
    if not isinstance(act, str) or act not in ("tanh", "relu", "linear"):
        raise ValueError(f"act must be 'tanh', 'relu' or 'linear'; got {act!r}")
    if rng is not None and not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random or None, got {describe(rng)}")
    return random.Random(0) if rng is None else rng


def _inputs(x, n: int) -> list:
    """``x`` as a list of ``n`` Values or numbers; TypeError/ValueError otherwise."""
    if isinstance(x, (str, bytes, Value)) or not hasattr(x, "__iter__"):
        raise TypeError(f"x must be a list of {n} numbers or Values, got {describe(x)}")
    x = list(x)
    if len(x) != n:
        raise ValueError(f"expected {n} inputs, got {len(x)}")
    for i, xi in enumerate(x):
        if not (isinstance(xi, Value) or is_number(xi)):
            raise TypeError(f"x[{i}] must be a number or a Value, got {describe(xi)}")
    return x


class Module:
    """Base class of the engine's networks, like ``torch.nn.Module``: ``parameters()`` lists every
    trainable Value in a fixed order; ``zero_grad()`` sets their ``grad`` to 0, needed once per
    training step because ``backward()`` accumulates. (PyTorch's ``zero_grad()`` sets ``.grad`` to
    None by default and treats None as 0; a Value's gradient is always a number, so here it is 0.0.)
    """

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        """Set ``grad = 0.0`` on every parameter; inputs and intermediate nodes are left alone."""
        for p in self.parameters():
            p.grad = 0.0


class Neuron(Module):
    """``act(w . x + b)``: a list of ``nin`` numbers or Values in, one Value out.

    ``act`` is "tanh", "relu" or "linear". ``w`` holds ``nin`` Values drawn uniformly from
    ``[-1/sqrt(nin), 1/sqrt(nin)]`` with ``rng`` (a ``random.Random``; None means
    ``random.Random(0)``); ``b`` starts at 0. ``parameters()`` is ``[*w, b]``.
    """

    def __init__(self, nin: int, act: str = "tanh", rng: random.Random | None = None) -> None:
        require_int("nin", nin, 1)
        rng = _check_act_rng(act, rng)
        scale = 1.0 / math.sqrt(nin)  # keeps pre-activations of order 1 whatever the fan-in
        self.w = [Value(rng.uniform(-scale, scale)) for _ in range(nin)]
        self.b = Value(0.0)
        self.act = act

    def __call__(self, x) -> Value:
        return self._forward(_inputs(x, len(self.w)))

    def _forward(self, x: list) -> Value:  # x already checked
        z = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return z if self.act == "linear" else getattr(z, self.act)()

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]

    def __repr__(self) -> str:
        return f"Neuron({len(self.w)}, act={self.act!r})"


class Layer(Module):
    """``nout`` neurons on the same ``nin`` inputs: a list of ``nin`` numbers or Values in, a list
    of ``nout`` Values out (output i is neuron i's; a list even when ``nout`` is 1).

    The engine's ``act(torch.nn.Linear(nin, nout)(x))``: neuron i's weights are row i of
    ``Linear.weight`` (shape ``(nout, nin)``) and its bias is ``Linear.bias[i]``. The neurons draw
    their weights one after another from ``rng`` (None means ``random.Random(0)``).
    ``parameters()`` goes neuron by neuron, weights then bias: ``nout * (nin + 1)`` Values.
    """

    def __init__(self, nin: int, nout: int, act: str = "tanh", rng: random.Random | None = None) -> None:
        require_int("nin", nin, 1)
        require_int("nout", nout, 1)
        rng = _check_act_rng(act, rng)
        self.nin, self.nout, self.act = int(nin), int(nout), act
        self.neurons = [Neuron(nin, act, rng) for _ in range(nout)]

    def __call__(self, x) -> list[Value]:
        return self._forward(_inputs(x, self.nin))

    def _forward(self, x: list) -> list[Value]:  # x already checked
        return [neuron._forward(x) for neuron in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for neuron in self.neurons for p in neuron.parameters()]

    def __repr__(self) -> str:
        return f"Layer({self.nin}, {self.nout}, act={self.act!r})"


class MLP(Module):
    """``Layer``s in sequence: ``MLP(2, [16, 16, 1])`` maps a list of 2 numbers or Values to a list
    of 1 Value through two hidden layers of 16 ``act`` units; the last layer is linear. The engine's
    ``nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))``.
    All weights come from one ``random.Random(seed)``, layer after layer; ``parameters()`` goes
    layer by layer in ``Layer.parameters()`` order.
    """

    def __init__(self, nin: int, sizes: list[int], act: str = "tanh", seed: int = 0) -> None:
        require_int("nin", nin, 1)
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or not len(sizes):
            raise ValueError(f"sizes must be a non-empty list of layer widths, got {sizes!r}")
        for i, size in enumerate(sizes):
            require_int(f"sizes[{i}]", size, 1)
        rng = _check_act_rng(act, random.Random(require_int("seed", seed)))
        dims = [nin, *sizes]
        self.layers = [Layer(dims[i], dims[i + 1], act if i < len(sizes) - 1 else "linear", rng)
                       for i in range(len(sizes))]

    def __call__(self, x) -> list[Value]:
        out = _inputs(x, self.layers[0].nin)
        for layer in self.layers:
            out = layer._forward(out)
        return out

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP({self.layers[0].nin}, {[layer.nout for layer in self.layers]})"


# --------------------------------------------------------------------------- random expressions
UNARY = ("tanh", "exp", "sigmoid", "relu", "square")
BINARY = ("+", "-", "*", "/")


def random_expression(n_inputs: int, n_ops: int = 12, seed: int = 0) -> Callable:
    """A random differentiable expression ``f(xs, ops)`` of ``n_inputs`` scalars.

    ``ops`` maps "tanh", "exp", "sigmoid", "relu" to the backend's functions, so the *same*
    expression can be evaluated with ``Value``s, torch tensors or TensorFlow tensors and the three
    gradients compared. Divisions are by ``1 + b**2`` so the expression is defined everywhere.
    """
    require_int("n_inputs", n_inputs, 1)
    require_int("n_ops", n_ops, 0)
    rng = random.Random(require_int("seed", seed))
    program = []  # (op, i, j): combine earlier intermediate results i and j
    for k in range(n_ops):
        available = n_inputs + k
        if rng.random() < 0.4:
            program.append((rng.choice(UNARY), rng.randrange(available), None))
        else:
            program.append((rng.choice(BINARY), rng.randrange(available), rng.randrange(available)))

    def f(xs, ops):
        if len(xs) != n_inputs:
            raise ValueError(f"expected {n_inputs} inputs, got {len(xs)}")
        vals = list(xs)
        for op, i, j in program:
            a = vals[i]
            if op == "square":
                vals.append(a * a)
            elif op in ops:
                vals.append(ops[op](a))
            elif op == "+":
                vals.append(a + vals[j])
            elif op == "-":
                vals.append(a - vals[j])
            elif op == "*":
                vals.append(a * vals[j])
            else:
                vals.append(a / (vals[j] * vals[j] + 1.0))
        # every op contributes to the output; "x * 0" keeps unused inputs in the graph (gradient 0)
        zero = xs[0] * 0.0
        for x in xs[1:]:
            zero = zero + x * 0.0
        return sum(vals[n_inputs:], zero)

    return f


def value_and_grad(fn: Callable[[list[Value]], Value], xs: list[float]) -> tuple[float, list[float]]:
    """Evaluate ``fn`` on fresh ``Value``s made from the numbers ``xs``; return ``(fn(xs), [d fn / d x_i])``."""
    if not callable(fn):
        raise TypeError(f"fn must be a function of a list of Values, got {describe(fn)}")
    if isinstance(xs, (str, bytes)) or not hasattr(xs, "__iter__"):
        raise TypeError(f"xs must be a list of numbers, got {describe(xs)}")
    values = [Value(x) for x in xs]
    out = fn(values)
    if not isinstance(out, Value):
        raise TypeError(f"fn must return a Value, got {type(out).__name__}")
    out.backward()
    return out.data, [v.grad for v in values]


VALUE_OPS = {name: (lambda name: lambda v: getattr(v, name)())(name) for name in ("tanh", "exp", "sigmoid", "relu")}


def draw_graph(root: Value, ax=None, title: str = "Computational graph"):
    """Draw the graph behind ``root`` left to right: each node shows its op, value and gradient."""
    import matplotlib.pyplot as plt

    if not isinstance(root, Value):
        raise TypeError(f"root must be a Value, got {describe(root)}")
    order = root.topological_order()
    depth: dict[int, int] = {}
    for node in order:  # parents come first, so their depth is known
        depth[id(node)] = 1 + max((depth[id(p)] for p in node._parents), default=-1)
    columns: dict[int, list[Value]] = {}
    for node in order:
        columns.setdefault(depth[id(node)], []).append(node)
    pos = {id(n): (d, i - (len(col) - 1) / 2) for d, col in columns.items() for i, n in enumerate(col)}
    tallest = max(map(len, columns.values()))
    ax = ax or plt.subplots(figsize=(1.9 * len(columns) + 1, 0.75 * tallest + 1.2))[1]
    for node in order:
        x, y = pos[id(node)]
        for p in node._parents:
            px, py = pos[id(p)]
            ax.annotate("", (x - 0.28, y), (px + 0.28, py), arrowprops={"arrowstyle": "->", "color": "0.5"},
                        zorder=1)  # under the boxes, which are drawn at zorder 3
        name = node.label or node.op or "constant"
        ax.text(x, y, f"{name}\n{node.data:.3g} | grad {node.grad:.3g}", ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "fc": "lightyellow" if node._parents else "lightblue", "ec": "0.4"}, zorder=3)
    half = (tallest - 1) / 2
    ax.set(xlim=(-0.6, len(columns) - 0.4), ylim=(-half - 0.6, half + 0.6), title=title,
           xlabel="depth in the graph (inputs on the left)")
    ax.set_yticks([])
    ax.set_xticks(range(len(columns)))
    ax.grid(False)
    return ax

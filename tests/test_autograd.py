import math
import random

import numpy as np
import pytest
import torch

from lib.autograd import MLP, VALUE_OPS, Layer, Module, Neuron, Value, draw_graph, random_expression, value_and_grad
from lib.optim import SGD

TORCH_OPS = {"tanh": torch.tanh, "exp": torch.exp, "sigmoid": torch.sigmoid, "relu": torch.relu}


def test_simple_chain_rule():
    x, y = Value(2.0), Value(-3.0)
    z = (x * y + x ** 2).tanh()
    z.backward()
    t = math.tanh(-2.0)
    assert x.grad == pytest.approx((1 - t * t) * (-3.0 + 4.0))
    assert y.grad == pytest.approx((1 - t * t) * 2.0)


def test_shared_node_gradients_accumulate():
    a = Value(3.0)
    b = a + a  # a is used twice: its gradient is the sum of both paths
    b.backward()
    assert a.grad == 2.0


@pytest.mark.parametrize("seed", range(20))
def test_random_expressions_match_torch_float64(seed):
    rng = random.Random(seed)
    xs = [rng.uniform(-1.5, 1.5) for _ in range(4)]
    f = random_expression(4, n_ops=14, seed=seed)
    out, grads = value_and_grad(lambda v: f(v, VALUE_OPS), xs)
    tensors = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    t_out = f(tensors, TORCH_OPS)
    t_out.backward()
    assert out == pytest.approx(t_out.item(), rel=1e-12, abs=1e-12)
    assert grads == pytest.approx([t.grad.item() for t in tensors], rel=1e-9, abs=1e-9)


def test_value_and_grad_checks_its_function():
    assert value_and_grad(lambda v: v[0] * v[1], [2.0, 3.0]) == (6.0, [3.0, 2.0])
    with pytest.raises(TypeError, match="must return a Value"):
        value_and_grad(lambda v: 1.0, [2.0])


def test_errors_are_clear():
    with pytest.raises(TypeError, match="cannot combine"):
        Value(1.0) + "2"
    with pytest.raises(ValueError, match="positive"):
        Value(-1.0).log()
    with pytest.raises(TypeError, match="constant exponents"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(ValueError, match="expected 2 inputs"):
        MLP(2, [3, 1])([1.0, 2.0, 3.0])


def test_deep_graph_does_not_hit_recursion_limit():
    x = Value(0.5)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0


def test_mlp_parameter_count_and_determinism():
    m1, m2 = MLP(2, [4, 4, 1], seed=1), MLP(2, [4, 4, 1], seed=1)
    assert len(m1.parameters()) == (2 * 4 + 4) + (4 * 4 + 4) + (4 + 1)
    assert [p.data for p in m1.parameters()] == [p.data for p in m2.parameters()]


def test_subtraction_and_negation_are_single_nodes_with_the_right_gradients():
    a, b = Value(5.0, label="a"), Value(2.0, label="b")
    d = a - b
    assert (d.op, d._parents, d.data) == ("-", (a, b), 3.0)  # no hidden (-1)·b node to draw
    n = -a
    assert (n.op, n._parents, n.data) == ("neg", (a,), -5.0)
    (d * d + n).backward()  # 2·3·(1, -1) + (-1, 0)
    assert (a.grad, b.grad) == (5.0, -6.0)
    r = 1.0 - a  # __rsub__: a constant on the left
    r.backward()
    assert (r.data, r.op, a.grad) == (-4.0, "-", 4.0)


def test_reused_node_a_plus_a_gets_both_contributions():
    a = Value(3.0)
    (a + a).backward()
    assert a.grad == 2.0  # an engine that assigned (=) instead of adding (+=) would give 1
    b = Value(3.0)
    (b - b).backward()
    assert b.grad == 0.0  # +1 and -1: an assigning engine would give -1
    c = Value(3.0)
    (c * c).backward()
    assert c.grad == 6.0


def test_draw_graph_runs():
    import matplotlib
    matplotlib.use("Agg")
    z = (Value(1.0, label="a") * Value(2.0, label="b")).tanh()
    z.backward()
    ax = draw_graph(z)
    assert ax.get_title() == "Computational graph"


def test_values_take_numbers_and_sizes_are_checked():
    with pytest.raises(TypeError, match="takes a number"):
        Value("3")  # used to become 3.0 silently
    assert (Value(2.0) + np.float32(1.5)).data == 3.5  # NumPy scalars combine like Python numbers
    assert (Value(2.0) ** np.int64(3)).data == 8.0
    with pytest.raises(ValueError, match="nin must be a positive int"):
        MLP(0, [4, 1])  # used to divide by zero
    with pytest.raises(ValueError, match="sizes must be a non-empty list"):
        MLP(2, [])  # used to build a network that returns its input
    with pytest.raises(ValueError, match="n_inputs must be a positive int"):
        random_expression(0)
    with pytest.raises(TypeError, match="root must be a Value"):
        draw_graph(3.0)


# --------------------------------------------------------------------------- PyTorch semantics
TORCH_ACT = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "linear": torch.nn.Identity}


def to_linear(layer: Layer) -> torch.nn.Linear:
    """The float64 ``nn.Linear`` with the layer's weights: row i = neuron i's weights, bias i = its bias."""
    linear = torch.nn.Linear(layer.nin, layer.nout, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.float64))
        linear.bias.copy_(torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64))
    return linear


def to_sequential(mlp: MLP) -> torch.nn.Sequential:
    modules = []
    for layer in mlp.layers:
        modules += [to_linear(layer), TORCH_ACT[layer.act]()]
    return torch.nn.Sequential(*modules)


def torch_grads(net: torch.nn.Module) -> list[float]:
    """Gradients in the engine's parameter order (neuron by neuron: weights, then bias); None reads as 0."""
    out = []
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            w = m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight)
            b = m.bias.grad if m.bias.grad is not None else torch.zeros_like(m.bias)
            out += torch.cat([w, b[:, None]], dim=1).flatten().tolist()
    return out


POINTS = [[0.3, -1.2], [1.5, 0.4], [-0.7, 0.9], [0.1, 0.2], [-1.1, -0.5], [0.8, -0.3]]
TARGETS = [0.5, -1.0, 0.2, 0.9, -0.3, 0.0]


def mse(model: MLP) -> Value:
    return sum(((model(x)[0] - t) ** 2 for x, t in zip(POINTS, TARGETS)), Value(0.0)) * (1 / len(POINTS))


def torch_mse(net: torch.nn.Module) -> torch.Tensor:
    return ((net(torch.tensor(POINTS, dtype=torch.float64))[:, 0] - torch.tensor(TARGETS, dtype=torch.float64)) ** 2).mean()


def test_backward_accumulates_and_zero_grad_clears_like_torch():
    model = MLP(2, [4, 3, 1], seed=3)
    net = to_sequential(model)
    loss, t_loss = mse(model), torch_mse(net)
    loss.backward()
    t_loss.backward(retain_graph=True)
    once, t_once = [p.grad for p in model.parameters()], torch_grads(net)
    assert any(g != 0 for g in once)
    assert once == pytest.approx(t_once, rel=1e-12, abs=1e-12)
    loss.backward()  # no zero_grad: the leaves' gradients add up
    t_loss.backward()
    twice = [p.grad for p in model.parameters()]
    assert twice == [2 * g for g in once]  # exactly, as PyTorch adds this pass's full gradient to .grad
    assert twice == pytest.approx([2 * g for g in t_once], rel=1e-12, abs=1e-12)
    assert twice == pytest.approx(torch_grads(net), rel=1e-12, abs=1e-12)
    model.zero_grad()
    net.zero_grad()
    assert [p.grad for p in model.parameters()] == [0.0] * len(once) == torch_grads(net)
    loss.backward()  # after zeroing, one pass gives one pass's gradient again
    assert [p.grad for p in model.parameters()] == once


def test_intermediate_nodes_are_reset_leaves_accumulate():
    x = Value(1.5)
    h = x * 3.0
    y = h * h + h.tanh()
    y.backward()
    x_once, h_once = x.grad, h.grad
    y.backward()
    assert h.grad == h_once  # d y / d h of this pass, not the sum of two
    assert x.grad == 2 * x_once
    tx = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    th = tx * 3.0
    ty = th * th + th.tanh()
    ty.backward(retain_graph=True)
    ty.backward()
    assert x.grad == pytest.approx(tx.grad.item(), rel=1e-12)
    leaf = Value(2.0)  # backward() on a leaf adds 1 to its gradient each time, as torch does
    leaf.backward()
    leaf.backward()
    assert leaf.grad == 2.0


def test_two_losses_on_shared_parameters_add_up():
    model = MLP(2, [3, 1], seed=0)
    first = (model(POINTS[0])[0] - 1.0) ** 2
    second = model(POINTS[1])[0] * 2.0
    first.backward()
    second.backward()
    separately = [p.grad for p in model.parameters()]
    model.zero_grad()
    (first + second).backward()
    assert separately == pytest.approx([p.grad for p in model.parameters()], rel=1e-12, abs=1e-15)


def test_training_without_zero_grad_diverges_from_training_with_it():
    def train(zero: bool) -> tuple[list[float], list[float]]:
        model = MLP(2, [4, 1], seed=1)
        net = to_sequential(model)
        opt, t_opt = SGD(model.parameters(), lr=0.1), torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(15):
            if zero:
                opt.zero_grad()
                t_opt.zero_grad()
            mse(model).backward()
            torch_mse(net).backward()
            opt.step()
            t_opt.step()
        theirs = [p for m in net if isinstance(m, torch.nn.Linear)
                  for p in torch.cat([m.weight, m.bias[:, None]], dim=1).flatten().tolist()]
        return [p.data for p in model.parameters()], theirs

    zeroed, zeroed_torch = train(zero=True)
    forgot, forgot_torch = train(zero=False)
    assert zeroed == pytest.approx(zeroed_torch, rel=1e-10, abs=1e-12)  # each loop is PyTorch's loop
    assert forgot == pytest.approx(forgot_torch, rel=1e-10, abs=1e-12)
    assert max(abs(a - b) for a, b in zip(zeroed, forgot)) > 0.1


@pytest.mark.parametrize("act", ["tanh", "relu", "linear"])
def test_layer_equals_nn_linear_float64(act):
    rng = random.Random(7)
    layer = Layer(3, 4, act=act, rng=rng)
    for n in layer.neurons:  # non-zero biases, so that a swapped bias would show
        n.b.data = rng.uniform(-0.5, 0.5)
    linear = to_linear(layer)
    assert tuple(linear.weight.shape) == (4, 3)
    xs = [0.4, -1.3, 0.7]
    inputs = [Value(x) for x in xs]
    out = layer(inputs)
    assert isinstance(out, list) and len(out) == 4
    upstream = [1.0, -2.0, 0.5, 3.0]
    sum((o * u for o, u in zip(out, upstream)), Value(0.0)).backward()
    tx = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    t_out = TORCH_ACT[act]()(linear(tx))
    t_out.backward(torch.tensor(upstream, dtype=torch.float64))
    assert [o.data for o in out] == pytest.approx(t_out.tolist(), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose([[w.grad for w in n.w] for n in layer.neurons], linear.weight.grad.numpy(),
                               rtol=1e-12, atol=1e-12)
    assert [n.b.grad for n in layer.neurons] == pytest.approx(linear.bias.grad.tolist(), rel=1e-12, abs=1e-12)
    assert [v.grad for v in inputs] == pytest.approx(tx.grad.tolist(), rel=1e-12, abs=1e-12)


def test_mlp_equals_nn_sequential_float64():
    model = MLP(2, [5, 4, 2], act="relu", seed=2)
    net = to_sequential(model)
    for x in POINTS:
        assert [o.data for o in model(x)] == pytest.approx(net(torch.tensor(x, dtype=torch.float64)).tolist(),
                                                           rel=1e-12, abs=1e-12)


def test_modules_are_neuron_layer_mlp():
    model = MLP(2, [4, 1], seed=0)
    assert all(isinstance(m, Module) for m in (model, *model.layers, *model.layers[0].neurons))
    assert [type(layer) for layer in model.layers] == [Layer, Layer]
    assert [(layer.nin, layer.nout, layer.act) for layer in model.layers] == [(2, 4, "tanh"), (4, 1, "linear")]
    assert model.parameters() == [p for layer in model.layers for n in layer.neurons for p in [*n.w, n.b]]
    assert len(model([1.0, 2.0])) == 1 and len(Layer(2, 1)([1.0, 2.0])) == 1  # width 1 is still a list
    assert repr(model) == "MLP(2, [4, 1])" and repr(model.layers[0]) == "Layer(2, 4, act='tanh')"
    assert Module().parameters() == []
    rng = random.Random(0)  # weights come from one generator, layer by layer, neuron by neuron
    expected = []
    for nin, nout in [(2, 4), (4, 1)]:
        for _ in range(nout):
            expected += [rng.uniform(-nin ** -0.5, nin ** -0.5) for _ in range(nin)] + [0.0]
    assert [p.data for p in model.parameters()] == pytest.approx(expected, rel=1e-15)
    layer = model.layers[0]
    for p in model.parameters():
        p.grad = 1.0
    layer.zero_grad()  # clears this layer only
    assert [p.grad for p in layer.parameters()] == [0.0] * 12
    assert [p.grad for p in model.layers[1].parameters()] == [1.0] * 5
    neuron = Neuron(3, act="relu", rng=random.Random(1))
    assert neuron.parameters() == [*neuron.w, neuron.b] and neuron.act == "relu"


def test_module_arguments_are_checked():
    with pytest.raises(ValueError, match="nout must be a positive int"):
        Layer(2, 0)
    with pytest.raises(TypeError, match="nin must be a positive int"):
        Layer(2.0, 3)
    with pytest.raises(ValueError, match="act must be 'tanh', 'relu' or 'linear'"):
        Layer(2, 3, act="sigmoid")
    with pytest.raises(ValueError, match="act must be"):
        MLP(2, [3, 1], act="gelu")
    with pytest.raises(TypeError, match="rng must be a random.Random"):
        Neuron(2, rng=3)
    with pytest.raises(TypeError, match="seed must be an int"):
        MLP(2, [3, 1], seed="a")
    with pytest.raises(TypeError, match="x must be a list of 2 numbers or Values"):
        Layer(2, 3)(1.5)
    with pytest.raises(TypeError, match=r"x\[1\] must be a number or a Value"):
        Layer(2, 3)([1.0, "2"])
    with pytest.raises(ValueError, match="expected 2 inputs, got 3"):
        Layer(2, 3)([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="xs must be a list of numbers"):
        value_and_grad(lambda v: v[0], 2.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        random_expression(2, seed=None)

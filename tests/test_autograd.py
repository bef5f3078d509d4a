import math
import random

import pytest
import torch

from lib.autograd import MLP, VALUE_OPS, Value, draw_graph, random_expression, value_and_grad

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


def test_draw_graph_runs():
    import matplotlib
    matplotlib.use("Agg")
    z = (Value(1.0, label="a") * Value(2.0, label="b")).tanh()
    z.backward()
    ax = draw_graph(z)
    assert ax.get_title() == "Computational graph"


def test_values_take_numbers_and_sizes_are_checked():
    import numpy as np

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

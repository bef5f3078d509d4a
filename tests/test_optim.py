import numpy as np
import pytest
import torch

from lib.autograd import Value
from lib.optim import SGD, Adam, AdamW, Param, optimize_path

A = np.random.default_rng(0).normal(size=(6, 3))
B = np.random.default_rng(1).normal(size=6)


def grad(w):
    return A.T @ (A @ w - B)


def run_ours(make, w0, steps=100):
    p = Param(w0)
    opt = make([p])
    for _ in range(steps):
        p.grad = grad(p.data)
        opt.step()
    return p.data


def run_torch(make, w0, steps=100):
    w = torch.tensor(w0, requires_grad=True)
    opt = make([w])
    for _ in range(steps):
        w.grad = torch.from_numpy(grad(w.detach().numpy()))
        opt.step()
    return w.detach().numpy()


@pytest.mark.parametrize("ours,theirs", [
    (lambda p: SGD(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    (lambda p: SGD(p, lr=0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    (lambda p: SGD(p, lr=0.05, weight_decay=0.1), lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.1)),
    (lambda p: Adam(p, lr=0.05), lambda p: torch.optim.Adam(p, lr=0.05)),
    (lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-3), lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-3)),
    (lambda p: Adam(p, lr=0.05, weight_decay=0.3), lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.3)),
    (lambda p: AdamW(p, lr=0.05, weight_decay=0.3), lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.3)),
    (lambda p: AdamW(p, lr=0.01, betas=(0.8, 0.99), eps=1e-3), lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99), eps=1e-3)),
])
def test_matches_torch_optim_over_100_steps(ours, theirs):
    w0 = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(run_ours(ours, w0), run_torch(theirs, w0), atol=1e-12)


def test_eps_modes_differ_and_keras_mode_equals_rescaled_eps():
    w0 = np.array([0.5, -1.0, 2.0])
    torch_mode = run_ours(lambda p: Adam(p, lr=0.05, eps=1e-2), w0, steps=1)
    keras_mode = run_ours(lambda p: Adam(p, lr=0.05, eps=1e-2, eps_mode="keras"), w0, steps=1)
    assert np.abs(torch_mode - keras_mode).max() > 1e-4
    rescaled = run_ours(lambda p: Adam(p, lr=0.05, eps=1e-2 / np.sqrt(1 - 0.999)), w0, steps=1)
    np.testing.assert_allclose(keras_mode, rescaled, atol=1e-14)


def test_adamw_decay_is_decoupled_from_the_gradient_scale():
    # a weight whose gradient is huge: Adam's L2 term is divided by sqrt(v_hat) and nearly vanishes,
    # AdamW's decay shrinks it by lr * wd * p whatever the gradient
    w0 = np.array([1.0])

    def final(make, scale):
        p = Param(w0)
        opt = make([p])
        for _ in range(20):
            p.grad = np.array([scale * (-1) ** opt.t])  # an oscillating gradient: no net drift
            opt.step()
        return p.data[0]

    drift = final(lambda p: Adam(p, lr=0.01), 1e3)
    decoupled = final(lambda p: AdamW(p, lr=0.01, weight_decay=0.5), 1e3) - drift
    coupled = final(lambda p: Adam(p, lr=0.01, weight_decay=0.5), 1e3) - drift
    # about -0.095: 20 steps of lr * wd * p (p itself oscillates by a few per cent around 1)
    np.testing.assert_allclose(decoupled, (1 - 0.005) ** 20 - 1, rtol=0.03)
    assert abs(coupled) < 1e-3 * abs(decoupled)
    np.testing.assert_array_equal(run_ours(lambda p: AdamW(p, lr=0.05, weight_decay=0.0), w0 * [1, 1, 1]),
                                  run_ours(lambda p: Adam(p, lr=0.05), w0 * [1, 1, 1]))


def test_works_on_values_and_tensors():
    v = Value(3.0)
    opt = SGD([v], lr=0.5)
    v.grad = 2.0
    opt.step()
    assert v.data == 2.0
    opt.zero_grad()
    assert v.grad == 0.0
    t = torch.nn.Parameter(torch.ones(2))
    t.grad = torch.ones(2)
    Adam([t], lr=0.1).step()
    assert torch.allclose(t.detach(), torch.full((2,), 0.9))


def test_bad_arguments_raise_value_error():
    p = [Param([1.0])]
    with pytest.raises(ValueError, match="lr must be a positive"):
        Adam(p, lr=-1)
    with pytest.raises(ValueError, match="betas"):
        Adam(p, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="eps_mode"):
        Adam(p, eps_mode="tf")
    with pytest.raises(ValueError, match="momentum"):
        SGD(p, momentum=1.0)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match=".data and .grad"):
        SGD([1.0], lr=0.1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optimize_path(grad, [0, 0, 0], optimizer="lbfgs")


def test_optimize_path_converges_and_stops_on_divergence():
    path = optimize_path(grad, np.zeros(3), "momentum", lr=0.02, steps=300)
    np.testing.assert_allclose(path[-1], np.linalg.lstsq(A, B, rcond=None)[0], atol=1e-6)
    blown = optimize_path(grad, np.zeros(3), "sgd", lr=5.0, steps=300)
    assert len(blown) < 301


def test_numbers_are_checked_and_numpy_scalars_accepted():
    p = Param([1.0, 2.0])
    p.grad = np.array([0.5, -0.5])
    SGD([p], lr=np.float32(0.1)).step()  # used to be refused: np.float32 is no Python float
    np.testing.assert_allclose(p.data, [1.0 - np.float32(0.1) * 0.5, 2.0 + np.float32(0.1) * 0.5])
    for bad in (float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="lr must be a positive number"):
            SGD([Param(0.0)], lr=bad)
    with pytest.raises(ValueError, match="weight_decay must be a non-negative number"):
        SGD([Param(0.0)], weight_decay=float("nan"))  # used to turn every weight into NaN
    with pytest.raises(ValueError, match="weight_decay must be a non-negative number"):
        AdamW([Param(0.0)], weight_decay=-0.1)
    with pytest.raises(ValueError, match="betas must be two numbers"):
        Adam([Param(0.0)], betas=0.9)
    with pytest.raises(ValueError, match=r"grad_fn must return the shape of the parameters \(2,\); got \(2, 2\)"):
        optimize_path(lambda w: np.ones((2, 2)), [0.0, 0.0])  # used to turn the iterate into a matrix
    with pytest.raises(ValueError, match="start must be finite"):
        optimize_path(lambda w: w, [np.nan, 0.0])
    with pytest.raises(TypeError, match="steps must be a non-negative int"):
        optimize_path(lambda w: w, [0.0], steps=2.5)

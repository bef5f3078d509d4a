"""lib.mlp: NumPy MLP with hand-written backward against autograd, torch twin, class weights, Keras."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.mlp import MLP, NumpyMLP, cross_entropy, keras_mlp, softmax, train_numpy_mlp
from lib.recipes import class_weights, train_classifier


def test_softmax_and_cross_entropy_match_torch():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 4)) * 50  # large logits: the stable versions must not overflow
    y = rng.integers(0, 4, 6)
    np.testing.assert_allclose(softmax(z), torch.softmax(torch.tensor(z), 1).numpy(), atol=1e-12)
    assert cross_entropy(z, y) == pytest.approx(float(F.cross_entropy(torch.tensor(z), torch.tensor(y))), abs=1e-10)
    with pytest.raises(TypeError, match="y must be integer class indices"):
        cross_entropy(z, y.astype(float))


@pytest.mark.parametrize("sizes,wd", [((64, 32, 10), 0.0), ((5, 7, 6, 3), 0.01)])
def test_backward_equals_autograd(sizes, wd):
    rng = np.random.default_rng(1)
    model = NumpyMLP(sizes, seed=2)
    X, y = rng.standard_normal((9, sizes[0])), rng.integers(0, sizes[-1], 9)
    loss, grads = model.loss_and_grads(X, y, weight_decay=wd)
    twin = MLP.from_numpy(model)
    out = twin(torch.tensor(X))
    ref_loss = F.cross_entropy(out, torch.tensor(y)) + 0.5 * wd * sum((l.weight ** 2).sum() for l in twin.linears)
    ref_loss.backward()
    assert loss == pytest.approx(ref_loss.item(), abs=1e-12)
    np.testing.assert_allclose(out.detach().numpy(), model.forward(X), atol=1e-12)
    for l, linear in enumerate(twin.linears):
        np.testing.assert_allclose(grads[f"W{l}"], linear.weight.grad.numpy().T, atol=1e-12)
        np.testing.assert_allclose(grads[f"b{l}"], linear.bias.grad.numpy(), atol=1e-12)


def test_numpy_mlp_errors_and_training():
    model = NumpyMLP((4, 8, 3), seed=0)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        model.forward(np.zeros((2, 5)))
    with pytest.raises(RuntimeError, match="forward"):
        NumpyMLP((4, 3)).backward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="sizes"):
        NumpyMLP((4,))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    losses = train_numpy_mlp(model, X, y, epochs=20, lr=0.1, seed=0)
    assert losses[-1] < 0.5 * losses[0]
    again = NumpyMLP((4, 8, 3), seed=0)
    assert train_numpy_mlp(again, X, y, epochs=20, lr=0.1, seed=0) == losses  # deterministic


def test_torch_mlp_shapes_and_errors():
    m = MLP((64, 16, 10), dropout=0.5)
    assert m(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert m(torch.rand(3, 64)).shape == (3, 10)
    with pytest.raises(ValueError, match="64 values"):
        m(torch.rand(3, 63))
    with pytest.raises(ValueError, match="dropout"):
        MLP((64, 10), dropout=1.0)


def test_class_weights():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(class_weights(y), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="at least one example"):
        class_weights(y, num_classes=4)
    with pytest.raises(TypeError, match="y must be integer class indices"):
        class_weights(y.astype(float))


def test_train_classifier_deterministic_and_weighted():
    from lib.data import digits

    X, y = digits("train")
    X, y = X[:200], y[:200]
    X, y = X[y < 5], y[y < 5]
    keep = np.flatnonzero((y != 0) | (np.arange(len(y)) % 4 == 0))   # class 0 made rare
    X, y = X[keep], y[keep]
    runs = []
    for weight in (class_weights(y), class_weights(y), None):
        torch.manual_seed(0)
        model = MLP((64, 16, 5), dropout=0.1)
        h = train_classifier(model, X, y, epochs=3, val=(X[:50], y[:50]), class_weight=weight, progress=False)
        runs.append(h["train_loss"])
    assert runs[0] == runs[1] and runs[0] != runs[2]   # reproducible, and the weights change the loss
    assert "val_accuracy" in h
    with pytest.raises(ValueError, match="same length"):
        train_classifier(MLP(), X, y[:-1], epochs=1)


def test_keras_mlp_matches_torch_mlp():
    model = keras_mlp((64, 32, 10), dropout=0.2)
    assert tuple(model(np.zeros((2, 64), np.float32)).shape) == (2, 10)
    assert model.count_params() == sum(p.numel() for p in MLP((64, 32, 10)).parameters())


def test_labels_sizes_and_loops_are_checked():
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        cross_entropy(logits, np.array([0, -1]))  # -1 used to pick the last class silently
    with pytest.raises(TypeError, match="sizes must be a sequence of ints"):
        MLP((64, 2.5, 10))  # 2.5 used to become 2
    with pytest.raises(ValueError, match="num_classes=2 but y holds class 3"):
        class_weights(np.array([0, 1, 3]), num_classes=2)  # used to return 4 weights
    with pytest.raises(ValueError, match="empty"):
        class_weights(np.array([], dtype=np.int64))
    model = NumpyMLP((4, 3, 2))
    X, y = np.ones((6, 4)), np.array([0, 1] * 3)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        train_numpy_mlp(model, X, y, batch_size=-1)  # used to return losses of 0.0
    with pytest.raises(ValueError, match="NaN"):
        train_numpy_mlp(model, np.full((6, 4), np.nan), y)
    model.forward(X)
    with pytest.raises(ValueError, match=r"dlogits must have the shape of the last forward's logits \(6, 2\)"):
        model.backward(np.ones(6))  # used to give gradients of the wrong shape
    with pytest.raises(ValueError, match=r"x must be a tensor"):
        MLP((4, 2))(torch.zeros(4))
    with pytest.raises(ValueError, match="val must be a pair"):
        train_classifier(MLP((4, 2)), X.astype(np.float32), y, val=(X,), epochs=1, progress=False)

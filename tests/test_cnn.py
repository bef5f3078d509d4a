"""lib.cnn: from-scratch convolution and pooling against PyTorch, LeNet, shifts, Keras twin."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.cnn import (LeNet, ShiftAugment, conv2d_im2col, conv2d_loops, im2col, keras_lenet, max_pool2d,
                     random_shift, shift_images, train_lenet)

CASES = [  # (batch, C_in, H, W, C_out, kernel, stride, padding)
    (2, 1, 8, 8, 3, 3, 1, 0),
    (2, 3, 7, 9, 4, 3, 1, 1),
    (1, 2, 9, 6, 5, (2, 3), (2, 1), (1, 2)),
    (3, 4, 10, 10, 2, 5, 3, 2),
]


@pytest.mark.parametrize("conv", [conv2d_loops, conv2d_im2col])
@pytest.mark.parametrize("case", CASES)
def test_conv_equals_torch(conv, case):
    n, c, h, w, o, k, s, p = case
    rng = np.random.default_rng(0)
    kk = k if isinstance(k, tuple) else (k, k)
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c) + kk), rng.standard_normal(o)
    ref = F.conv2d(torch.tensor(x), torch.tensor(wt), torch.tensor(b), stride=s, padding=p).numpy()
    got = conv(x, wt, b, stride=s, padding=p)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-10)
    np.testing.assert_allclose(conv(x, wt, None, stride=s, padding=p), ref - b[None, :, None, None], atol=1e-10)


def test_im2col_matches_unfold():
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 7))
    got = im2col(x, 3, 2, (2, 1), ((6 - 3) // 2 + 1, 7 - 2 + 1))
    ref = F.unfold(torch.tensor(x), (3, 2), stride=(2, 1)).numpy()
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("k,s", [(2, None), (3, 1), ((2, 3), (1, 2)), (3, 2)])
def test_max_pool_equals_torch(k, s):
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 8)).astype(np.float32)
    ref = F.max_pool2d(torch.tensor(x), k, s).numpy()
    np.testing.assert_array_equal(max_pool2d(x, k, s), ref)


def test_conv_and_pool_errors():
    x, w = np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3))
    with pytest.raises(ValueError, match="x must have shape"):
        conv2d_im2col(x[0], w)
    with pytest.raises(ValueError, match="C_in=2"):
        conv2d_loops(x, np.zeros((3, 1, 3, 3)))
    with pytest.raises(ValueError, match="b must have shape"):
        conv2d_im2col(x, w, np.zeros(2))
    with pytest.raises(ValueError, match="stride"):
        conv2d_im2col(x, w, stride=0)
    with pytest.raises(ValueError, match="does not fit"):
        conv2d_im2col(x, np.zeros((3, 2, 7, 7)))
    with pytest.raises(TypeError, match="padding"):
        conv2d_im2col(x, w, padding=1.5)
    with pytest.raises(ValueError, match="kernel_size"):
        max_pool2d(x, 6)


def test_lenet_shapes_and_errors():
    model = LeNet(num_classes=7).eval()
    x = torch.rand(5, 1, 8, 8)
    assert model(x).shape == (5, 7)
    maps = model.feature_maps(x)
    assert [tuple(m.shape) for m in maps] == [(5, 32, 8, 8), (5, 64, 4, 4)]
    assert LeNet(channels=(4, 8), hidden=16, batchnorm=False)(x).shape == (5, 10)
    with pytest.raises(ValueError, match=r"\(batch, 1, 8, 8\)"):
        model(torch.rand(5, 64))
    with pytest.raises(ValueError, match="num_classes"):
        LeNet(num_classes=1)


def test_shift_images():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    down_left = shift_images(x, 1, -1)
    assert down_left[0, 0, 0].tolist() == [0, 0, 0, 0]
    assert down_left[0, 0, 1].tolist() == [1, 2, 3, 0]
    assert torch.equal(shift_images(x, 0, 0), x)
    assert torch.equal(shift_images(shift_images(x, 2, 0), -2, 0)[..., :2, :], x[..., :2, :])
    with pytest.raises(ValueError, match="smaller than the image"):
        shift_images(x, 4, 0)


def test_random_shift_is_a_shift_and_deterministic():
    x = torch.rand(20, 2, 8, 8)
    a = random_shift(x, 2, torch.Generator().manual_seed(3))
    b = random_shift(x, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    moved = 0
    for i in range(len(x)):  # each image equals its input moved by one (dy, dx) in [-2, 2]^2
        assert any(torch.equal(a[i], shift_images(x[i], dy, dx)) for dy in range(-2, 3) for dx in range(-2, 3))
        moved += not torch.equal(a[i], x[i])
    assert moved >= 10  # (0, 0) is 1 of the 25 shifts: most of the 20 images move
    assert not torch.equal(a, random_shift(x, 2, torch.Generator().manual_seed(4)))  # the generator decides
    assert torch.equal(random_shift(x, 0), x)
    aug = ShiftAugment(1).eval()
    assert aug(x) is x
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(x, -1)
    with pytest.raises(ValueError, match=r"\(batch, C, H, W\)"):
        random_shift(x[0], 1)


def test_train_lenet_learns_and_is_deterministic():
    from lib.data import digits

    X, y = digits("train", images=True)
    X, y = X[:300], y[:300]
    m1, h1 = train_lenet(X, y, epochs=3, seed=1, channels=(4, 8), hidden=16, progress=False)
    m2, h2 = train_lenet(X, y, epochs=3, seed=1, channels=(4, 8), hidden=16, progress=False)
    assert h1["train_loss"] == h2["train_loss"]
    assert h1["train_loss"][-1] < h1["train_loss"][0]
    assert not m1.training
    with pytest.raises(ValueError, match=r"\(n, 1, 8, 8\)"):
        train_lenet(X.reshape(len(X), 64), y, epochs=1)


def test_keras_lenet_matches_structure():
    model = keras_lenet(channels=(4, 8), hidden=16, max_shift=1)
    out = model(np.zeros((3, 8, 8, 1), np.float32))
    assert tuple(out.shape) == (3, 10)
    torch_params = sum(p.numel() for p in LeNet(channels=(4, 8), hidden=16).parameters())
    # Keras BN also stores moving mean/variance as (non-trainable) weights; PyTorch keeps them as buffers
    keras_trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert keras_trainable == torch_params


def test_max_pool_of_integers_and_bools():
    x = np.random.default_rng(0).integers(-9, 10, (2, 3, 6, 6))
    expected = F.max_pool2d(torch.tensor(x, dtype=torch.float64), 2).numpy()
    np.testing.assert_array_equal(max_pool2d(x, 2), expected)  # no cast of -inf to int (a RuntimeWarning)
    pixels = (x + 9).astype(np.uint8)  # unsigned: the start value must be 0, not a wrapped -inf
    np.testing.assert_array_equal(max_pool2d(pixels, 2), F.max_pool2d(torch.tensor(pixels, dtype=torch.float64), 2))
    mask = np.zeros((1, 1, 4, 4), dtype=bool)
    mask[0, 0, 0, 0] = True
    assert max_pool2d(mask, 2).tolist() == [[[[True, False], [False, False]]]]  # used to be all True
    with pytest.raises(TypeError, match="x must be an array of real numbers"):
        max_pool2d(np.full((1, 1, 2, 2), "a"), 2)


def test_cnn_arguments_are_checked():
    with pytest.raises(ValueError, match=r"LeNet expects x of shape \(batch, 1, 8, 8\); got \(2, 1, 6, 6\)"):
        LeNet().feature_maps(torch.zeros(2, 1, 6, 6))
    with pytest.raises(TypeError, match="floating"):
        LeNet()(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="channels must be two positive ints"):
        LeNet(channels=8)
    with pytest.raises(TypeError, match="dy must be an int"):
        shift_images(torch.zeros(1, 8, 8), 0.5, 0)
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(random_shift(x, np.int64(1), torch.Generator().manual_seed(0)),
                       random_shift(x, 1, torch.Generator().manual_seed(0)))
    for bad in (True, -1):
        with pytest.raises(ValueError, match="max_shift must be a non-negative int"):
            ShiftAugment(bad)
    with pytest.raises(TypeError, match="stride must be an int or a pair of ints"):
        conv2d_loops(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2)), stride=True)

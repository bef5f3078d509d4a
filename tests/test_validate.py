"""lib.validate: the shared checks behind every public function's error messages."""
import numpy as np
import pytest
import torch
from torch import nn

from lib import validate
from lib.device import model_device, require_device, resolve_device


def test_ints_and_numbers_accept_numpy_scalars_and_refuse_bools():
    assert validate.require_positive_int("n", np.int64(3)) == 3
    with pytest.raises(TypeError, match="n must be a positive int, got True"):
        validate.require_positive_int("n", True)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 4\], got 5"):
        validate.require_int("k", 5, 1, 4)
    assert validate.require_positive_number("lr", np.float32(0.5)) == 0.5
    assert type(validate.require_positive_number("lr", np.float32(0.5))) is float
    for bad in (float("nan"), float("inf"), -1):
        with pytest.raises(ValueError, match="lr must be a positive number"):
            validate.require_positive_number("lr", bad)
    with pytest.raises(TypeError, match="p must be a number in \\[0, 1\\)"):
        validate.require_probability("p", "0.5")


def test_tensor_messages_name_the_expected_and_the_given_shape():
    with pytest.raises(ValueError, match=r"x must have shape \(batch, seq, d_model\) = \(\*, \*, 16\), got \(4, 8\)"):
        validate.require_tensor("x", torch.zeros(4, 8), "batch, seq, d_model", (None, None, 16))
    with pytest.raises(TypeError, match="ids must be an int64 tensor, got torch.float32"):
        validate.require_tensor("ids", torch.zeros(2), kind="long")
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got a float64 array of shape \\(2,\\)"):
        validate.require_tensor("x", np.zeros(2))
    with pytest.raises(ValueError, match="2 NaN or infinite values"):
        validate.require_finite("X", torch.tensor([1.0, float("nan"), float("inf")]))
    validate.require_finite("y", np.arange(3))  # integers are always finite


def test_model_device_without_parameters():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.BatchNorm1d(2).requires_grad_(False)) == torch.device("cpu")
    buffers_only = nn.Module()
    buffers_only.register_buffer("table", torch.zeros(2, device="meta"))
    assert model_device(buffers_only) == torch.device("meta")  # a buffer decides
    assert model_device(nn.Identity()) == torch.device("cpu")  # nothing decides: the CPU
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        model_device(lambda x: x)


def test_devices_and_losses():
    with pytest.raises(ValueError, match="device 'gpu' is not a device name"):
        require_device("device", "gpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(FloatingPointError, match="the loss is nan at epoch 2/5, batch 7"):
        validate.check_loss(torch.tensor(float("nan")), "epoch 2/5, batch 7")
    with pytest.raises(ValueError, match="single number"):
        validate.check_loss(torch.zeros(3), "evaluate")
    validate.check_loss(torch.tensor(float("inf")), "evaluate", finite=False)


def test_require_labels_accepts_class_indices_and_names_what_is_wrong():
    validate.require_labels("y", torch.tensor([0, 2, 1]), n_classes=3, n=3)
    validate.require_labels("y", np.array([0, 5]))
    with pytest.raises(TypeError, match="y must be integer class indices, got torch.float32"):
        validate.require_labels("y", torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="y must be integer class indices, got bool"):
        validate.require_labels("y", np.array([True, False]))
    with pytest.raises(TypeError, match="an integer tensor or array"):
        validate.require_labels("y", [0, 1])
    with pytest.raises(ValueError, match=r"y must have shape \(3,\), got \(2,\)"):
        validate.require_labels("y", torch.tensor([0, 1]), n=3)
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 2\); got \[0, 2\] \(is n_classes right\?\)"):
        validate.require_labels("y", torch.tensor([0, 2]), n_classes=2)
    with pytest.raises(ValueError, match=r"y must be class indices >= 0; got \[-1, 1\]"):
        validate.require_labels("y", np.array([-1, 1]))

"""Tests for lib.quant: Q4_1 from scratch against the gguf package, and the model file's tensors."""
import numpy as np
import pytest
from gguf import GGMLQuantizationType, quants

from lib import quant
from lib.llm import smollm2_file


def test_quantize_and_dequantize_equal_gguf():
    w = np.random.default_rng(0).normal(size=(6, 128)).astype(np.float32)
    w[0, :32] = 0.25                                          # a constant block: scale 0
    raw = quant.quantize_q4_1(w)
    assert raw.shape == (6, 80) and raw.dtype == np.uint8
    assert np.array_equal(raw, quants.quantize(w, GGMLQuantizationType.Q4_1))
    back = quant.dequantize_q4_1(raw)
    assert np.array_equal(back, quants.dequantize(raw, GGMLQuantizationType.Q4_1))
    d, m, q = quant.q4_1_fields(raw)
    assert q.max() <= 15 and np.array_equal(back[0, :32], np.full(32, 0.25, np.float32))
    # each weight within half a step (plus float16 rounding of d and m) of the original
    step = np.repeat(d, 32).reshape(w.shape)
    assert (np.abs(back - w) <= 0.5 * step + 2e-3 * np.abs(w).max()).all()


def test_nibble_layout_low_then_high():
    raw = np.zeros((1, 20), np.uint8)
    raw[0, :2] = np.array([1.0], np.float16).view(np.uint8)   # d = 1
    raw[0, 4] = 0x73                                          # weight 0 = 3, weight 16 = 7
    w = quant.dequantize_q4_1(raw)[0]
    assert w[0] == 3 and w[16] == 7 and w[1] == 0


def test_model_file_tensors_and_the_model_weights():
    path = smollm2_file()
    assert quant.gguf_tensor_types(path) == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    raw, kind, shape = quant.gguf_tensor(path, "blk.0.ffn_down.weight")
    assert kind == "Q4_1" and shape == (576, 1536) and raw.shape == (576, 1536 // 32 * 20)
    # quantizing the de-quantized values again gives back the same bytes: Q4_1 is a fixed point
    assert np.array_equal(quant.quantize_q4_1(quant.dequantize_q4_1(raw)), raw)
    with pytest.raises(KeyError, match="no tensor"):
        quant.gguf_tensor(path, "blk.99.nothing")


def test_bad_inputs():
    with pytest.raises(ValueError, match="multiple of 20"):
        quant.dequantize_q4_1(np.zeros(30, np.uint8))
    with pytest.raises(ValueError, match="multiple of 20"):
        quant.dequantize_q4_1(np.zeros(20, np.float32))
    with pytest.raises(ValueError, match="multiple of 32"):
        quant.quantize_q4_1(np.zeros((2, 33), np.float32))
    with pytest.raises(TypeError, match="floats"):
        quant.quantize_q4_1(np.zeros(32, np.int64))

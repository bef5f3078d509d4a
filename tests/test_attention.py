"""lib.attention: agreement with PyTorch's attention, masks, positions, errors."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.attention import (MultiHeadAttention, causal_mask, scaled_dot_product_attention,
                           sinusoidal_positions)


def _qkv(b=2, h=3, t=6, s=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, t, d, generator=g), torch.randn(b, h, s, d, generator=g),
            torch.randn(b, h, s, d, generator=g))


def _padding(b=2, s=6):
    pad = torch.zeros(b, s, dtype=torch.bool)
    pad[1, 4:] = True  # the second sequence is two tokens shorter
    return pad


FUTURE = torch.ones(6, 6, dtype=torch.bool).triu(1)  # written out here, not lib's causal_mask: key j > query i


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_matches_torch(causal, padded):
    q, k, v = _qkv()
    pad = _padding() if padded else None
    out, w = scaled_dot_product_attention(q, k, v, causal=causal, key_padding_mask=pad)
    allowed = torch.ones(2, 1, 6, 6, dtype=torch.bool)  # the reference mask, built without lib.attention
    if causal:
        allowed &= ~FUTURE
    if padded:
        allowed &= ~pad[:, None, None, :]
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 6), atol=1e-6)


def test_sdpa_is_causal_flag_equivalent():
    q, k, v = _qkv()
    out, _ = scaled_dot_product_attention(q, k, v, causal=True)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)


def test_causal_mask_never_looks_ahead():
    q, k, v = _qkv()
    _, w = scaled_dot_product_attention(q, k, v, causal=True)
    assert float(w[..., FUTURE].abs().max()) == 0.0
    assert torch.equal(causal_mask(6), ~FUTURE) and causal_mask(2, 3).tolist() == [[True, False, False],
                                                                                 [True, True, False]]
    # and changing a future value leaves earlier outputs unchanged
    v2 = v.clone()
    v2[:, :, 4:] += 100.0
    out1, _ = scaled_dot_product_attention(q, k, v, causal=True)
    out2, _ = scaled_dot_product_attention(q, k, v2, causal=True)
    assert torch.allclose(out1[:, :, :4], out2[:, :, :4])
    assert not torch.allclose(out1[:, :, 4:], out2[:, :, 4:])


def test_padding_gets_no_weight():
    q, k, v = _qkv()
    _, w = scaled_dot_product_attention(q, k, v, key_padding_mask=_padding())
    assert float(w[1, :, :, 4:].abs().max()) == 0.0


def test_fully_masked_row_is_zero_not_nan():
    q, k, v = _qkv(b=1, h=1, t=2, s=2)
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(2, 2, dtype=torch.bool))
    assert torch.isfinite(out).all() and float(w.abs().max()) == 0.0


@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_nn_multiheadattention(causal):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    mine = MultiHeadAttention(16, 4).copy_from_torch(ref)
    x = torch.randn(2, 6, 16)
    pad = _padding()
    mask = FUTURE if causal else None  # nn.MultiheadAttention: True = NOT allowed
    expected, w_ref = ref(x, x, x, key_padding_mask=pad, attn_mask=mask, average_attn_weights=False)
    for need in (True, False):
        got, w = mine(x, key_padding_mask=pad, causal=causal, need_weights=need)
        assert torch.allclose(got, expected, atol=1e-5)
    _, w = mine(x, key_padding_mask=pad, causal=causal, need_weights=True)
    assert torch.allclose(w, w_ref, atol=1e-5)


def test_mha_round_trip_and_cross_attention():
    torch.manual_seed(1)
    mine = MultiHeadAttention(8, 2)
    ref = mine.to_torch()
    q, kv = torch.randn(3, 4, 8), torch.randn(3, 7, 8)
    got, w = mine(q, kv, need_weights=True)
    assert w.shape == (3, 2, 4, 7)
    assert torch.allclose(got, ref(q, kv, kv)[0], atol=1e-5)


def test_sinusoidal_positions():
    pe = sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16)
    assert torch.allclose(pe[0, 0::2], torch.zeros(8)) and torch.allclose(pe[0, 1::2], torch.ones(8))
    assert torch.allclose(pe[:, 0], torch.sin(torch.arange(50.0)))


def test_errors():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        MultiHeadAttention(8, 2)(torch.randn(2, 3, 5))
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="key_padding_mask"):
        scaled_dot_product_attention(q, k, v, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(6, 6))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(10, 7)


def test_attention_arguments_are_checked():
    with pytest.raises(ValueError, match="n_heads must be a positive int"):
        MultiHeadAttention(8, 0)  # used to raise ZeroDivisionError
    mha = MultiHeadAttention(8, 2)
    q = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"key must have shape \(B, S, d_model\) = \(2, \*, 8\), got \(3, 4, 8\)"):
        mha(q, torch.randn(3, 4, 8))
    with pytest.raises(ValueError, match=r"value must have shape .* = \(2, 4, 8\), got \(2, 3, 8\)"):
        mha(q, torch.randn(2, 4, 8), torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match=r"attn_mask must be \(T, S\) = \(5, 5\)"):
        mha(q, attn_mask=torch.ones(4, 4, dtype=torch.bool))
    allowed = torch.ones(2, 1, 1, 5, dtype=torch.bool)  # broadcastable masks stay valid
    assert mha(q, attn_mask=allowed)[0].shape == (2, 5, 8)
    with pytest.raises(ValueError, match="attn_mask must be"):
        mha(q, attn_mask=torch.ones(5, dtype=torch.bool), need_weights=True)  # the fused path refuses 1-D
    with pytest.raises(ValueError, match="dropout_p must be a number in \\[0, 1\\)"):
        scaled_dot_product_attention(q, q, q, dropout_p=1.5)
    with pytest.raises(TypeError, match="mha must be an nn.MultiheadAttention"):
        mha.copy_from_torch(nn.Linear(8, 8))
    with pytest.raises(TypeError, match="max_len must be an int"):
        sinusoidal_positions(2.5, 4)

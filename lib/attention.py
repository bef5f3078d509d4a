"""Attention from scratch: scaled dot-product attention, masks, multi-head attention, positions.

Shapes: ``B`` batch, ``H`` heads, ``T``/``S`` query/key lengths, ``d`` the width of one head,
``d_model = H * d``. Two mask conventions meet here, so the names say which one is meant:

- ``key_padding_mask: (B, S) bool``, **True where the key is padding** (ignored), as in
  ``nn.MultiheadAttention`` and in ``lib.transformer``.
- ``attn_mask: (T, S)`` or broadcastable to ``(B, H, T, S)`` bool, **True where attention is allowed**,
  as in ``F.scaled_dot_product_attention``.
- ``causal=True``: query ``t`` may look at keys ``0..t`` only (no peeking at the future).

``MultiHeadAttention`` computes its weights by hand when they are asked for (``need_weights=True``,
for plots) and otherwise calls PyTorch's fused ``F.scaled_dot_product_attention``; the unit tests
check that both paths agree with each other and with ``nn.MultiheadAttention``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lib.validate import describe, require_int, require_probability, require_tensor


def causal_mask(t: int, s: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """``(t, s)`` bool, True where query ``i`` may attend to key ``j`` (``j <= i``); ``s`` defaults to ``t``."""
    t = require_int("t", t, 0)
    s = t if s is None else require_int("s", s, 0)
    return torch.ones(t, s, dtype=torch.bool, device=device).tril()


def combine_masks(batch: int, t: int, s: int, key_padding_mask: torch.Tensor | None = None,
                  attn_mask: torch.Tensor | None = None, causal: bool = False,
                  device: torch.device | str | None = None) -> torch.Tensor | None:
    """One "True = allowed" mask broadcastable to ``(B, H, t, s)`` from the three kinds, or None."""
    allowed = None
    if key_padding_mask is not None:
        require_tensor("key_padding_mask", key_padding_mask)
        if key_padding_mask.dtype != torch.bool or key_padding_mask.shape != (batch, s):
            raise ValueError(f"key_padding_mask must be bool of shape {(batch, s)}; got "
                             f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
        allowed = ~key_padding_mask[:, None, None, :]          # (B, 1, 1, s)
    if attn_mask is not None:
        require_tensor("attn_mask", attn_mask)
        if attn_mask.dtype != torch.bool:
            raise TypeError(f"attn_mask must be bool (True = allowed); got {attn_mask.dtype}")
        try:
            shape = torch.broadcast_shapes(attn_mask.shape, (batch, 1, t, s))
            fits = attn_mask.ndim >= 2 and (attn_mask.ndim > 4 or (
                len(shape) == 4 and shape[0] == batch and tuple(shape[2:]) == (t, s)))
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"attn_mask must be (T, S) = ({t}, {s}) or broadcastable to (B, H, T, S) = "
                             f"({batch}, H, {t}, {s}); got {tuple(attn_mask.shape)}")
        allowed = attn_mask if allowed is None else allowed & attn_mask
    if causal:
        c = causal_mask(t, s, device=device)
        allowed = c if allowed is None else allowed & c
    return allowed


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, causal: bool = False,
                                 key_padding_mask: torch.Tensor | None = None,
                                 dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""$\mathrm{softmax}(QK^\top/\sqrt{d})\,V$ written out, returning the output and the weights.

    ``q: (..., T, d)``, ``k: (..., S, d)``, ``v: (..., S, d_v)``; with ``key_padding_mask`` the
    inputs must be 4-D ``(B, H, ., .)``. Returns ``out: (..., T, d_v)`` and ``weights: (..., T, S)``
    (each row sums to 1 over the allowed keys). A query with no allowed key gets all-zero weights.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        require_tensor(name, t, kind="float")
        if t.ndim < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., length, d); got {tuple(t.shape)}")
    require_probability("dropout_p", dropout_p)
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"need q (...,T,d), k (...,S,d), v (...,S,dv); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if key_padding_mask is not None and q.ndim != 4:
        raise ValueError(f"key_padding_mask needs 4-D (B, H, T, d) inputs; got q of shape {tuple(q.shape)}")
    t, s = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])     # (..., T, S)
    allowed = combine_masks(q.shape[0], t, s, key_padding_mask, attn_mask, causal, q.device)
    if allowed is not None:
        # -inf, not a large negative number: exp(-inf) is exactly 0, so masked keys get no weight
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.nan_to_num(weights, nan=0.0)  # rows with every key masked: 0/0 -> 0
    if dropout_p > 0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention: project, split into ``n_heads`` heads, attend per head, merge, project.

    ``forward(query: (B, T, d_model), key=None, value=None, ...)``; key and value default to the
    query (self-attention). Returns ``(out: (B, T, d_model), weights: (B, H, T, S) or None)``.
    ``copy_from_torch`` / ``to_torch`` move weights to and from ``nn.MultiheadAttention``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        require_int("d_model", d_model, 1)
        require_int("n_heads", n_heads, 1)
        require_probability("dropout", dropout)
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_heads, self.d_head, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape  # (B, T, d_model) -> (B, H, T, d_head): each head sees its own slice
        return x.view(b, t, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, causal: bool = False,
                attn_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        require_tensor("query", query)
        if query.ndim != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"query must be (B, T, {self.d_model}); got {tuple(query.shape)}")
        key = query if key is None else key
        value = key if value is None else value
        require_tensor("key", key, "B, S, d_model", (query.shape[0], None, self.d_model))
        require_tensor("value", value, "B, S, d_model", (query.shape[0], key.shape[1], self.d_model))
        q, k, v = self._split(self.q_proj(query)), self._split(self.k_proj(key)), self._split(self.v_proj(value))
        p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, attn_mask, causal, key_padding_mask, p)
        else:
            allowed = combine_masks(q.shape[0], q.shape[2], k.shape[2], key_padding_mask, attn_mask, causal,
                                    q.device)
            out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p), None
        b, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, self.d_model)), weights

    @torch.no_grad()
    def copy_from_torch(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a ``nn.MultiheadAttention`` (same sizes, ``batch_first`` either way)."""
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"mha must be an nn.MultiheadAttention, got {describe(mha)}")
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_heads or not mha._qkv_same_embed_dim:
            raise ValueError(f"need nn.MultiheadAttention({self.d_model}, {self.n_heads}); got "
                             f"({mha.embed_dim}, {mha.num_heads})")
        # PyTorch stacks W_q, W_k, W_v into one (3*d_model, d_model) matrix
        for proj, w in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_weight.chunk(3)):
            proj.weight.copy_(w)
        if mha.in_proj_bias is not None:
            for proj, b in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.chunk(3)):
                proj.bias.copy_(b)
        self.out_proj.load_state_dict(mha.out_proj.state_dict())
        return self

    @torch.no_grad()
    def to_torch(self) -> nn.MultiheadAttention:
        """A ``nn.MultiheadAttention(batch_first=True)`` holding these weights."""
        bias = self.q_proj.bias is not None
        mha = nn.MultiheadAttention(self.d_model, self.n_heads, dropout=self.dropout, bias=bias, batch_first=True)
        mha.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
        if bias:
            mha.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
        mha.out_proj.load_state_dict(self.out_proj.state_dict())
        return mha


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    r"""The fixed encodings of "Attention is all you need": ``(max_len, d_model)``.

    $PE_{p,2i} = \sin(p / 10000^{2i/d})$, $PE_{p,2i+1} = \cos(p / 10000^{2i/d})$: each pair of
    columns is a clock with its own period, from $2\pi$ to $10000\cdot 2\pi$ positions.
    """
    require_int("max_len", max_len)
    require_int("d_model", d_model)
    if max_len < 1 or d_model < 2 or d_model % 2:
        raise ValueError(f"need max_len >= 1 and an even d_model >= 2; got {max_len}, {d_model}")
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe

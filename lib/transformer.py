"""Small Transformers in the nanoGPT style: a config, a pre-norm ``Block``, an ``Encoder``, a ``GPT``
decoder and an encoder–decoder ``Seq2Seq``.

**Encoder API (used by chapter 07).** ``Encoder(vocab_size, d_model=64, n_heads=4, n_layers=2,
max_len=32, dropout=0.0, d_ff=None)`` (or ``Encoder.from_config(TransformerConfig(...))``) embeds
tokens plus *learned* positions and runs ``n_layers`` bidirectional pre-norm blocks and a final
LayerNorm. ``forward(ids: (B, T) long, pad_mask: (B, T) bool | None = None, return_attention=False)``
returns ``hidden: (B, T, d_model)``; ``pad_mask`` is True where ``ids`` is padding (e.g.
``ids == vocab.pad``), and padded keys get no attention. With ``return_attention=True`` it returns
``(hidden, attention)`` where ``attention`` is a list, one per layer, of ``(B, n_heads, T, T)``
weights. ``T`` must not exceed ``max_len``. Heads are yours to add (e.g. ``nn.Linear(d_model,
vocab_size)`` for masked-language modelling); ``encoder.config`` holds the sizes. A sequence
made only of padding has no key to attend to: keep at least one real token per row.

``keras_block`` / ``copy_block_to_keras`` build the same block with ``keras.layers.MultiHeadAttention``.

``as_language_model`` / ``target_correct`` turn a sequence-to-sequence task into next-token
prediction, so that one decoder-only model (a ``GPT``, or an RNN language model such as
``lib.rnn.CharRNN``) can be trained on it with ``lib.lm.lm_loss`` and scored position by position.

Shapes: ``B`` batch, ``T`` length, ``V`` vocabulary. Every model here is device-agnostic.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from lib.attention import MultiHeadAttention
from lib.text import IGNORE_INDEX
from lib.train import eval_mode, predict
from lib.validate import describe, is_int, require_ids, require_int, require_module, require_probability, require_tensor


@dataclass
class TransformerConfig:
    """Sizes of a Transformer. ``d_ff`` (the MLP's hidden width) defaults to ``4 * d_model``."""
    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    max_len: int = 32
    dropout: float = 0.0
    d_ff: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "max_len"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
            setattr(self, name, int(value))  # a NumPy int becomes the equal Python int
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        require_probability("dropout", self.dropout)
        if self.d_ff is not None:
            self.d_ff = require_int("d_ff", self.d_ff, 1)
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + Attn(LN(x))`` [``+ CrossAttn(LN(x), memory)``] ``+ MLP(LN(x))``.

    Normalising *before* each sub-layer (pre-norm) keeps the residual path an identity, which is
    why deep pre-norm stacks train without learning-rate warm-up tricks. ``x: (B, T, d_model)``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, d_ff: int | None = None,
                 cross_attention: bool = False) -> None:
        super().__init__()
        if d_ff is not None:
            require_int("d_ff", d_ff, 1)
        d_ff = d_ff or 4 * d_model
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ln_cross = nn.LayerNorm(d_model) if cross_attention else None
        self.cross = MultiHeadAttention(d_model, n_heads, dropout) if cross_attention else None
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None, causal: bool = False,
                memory: torch.Tensor | None = None, memory_pad_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        """Returns ``(x, weights)``; ``weights["self"]`` (and ``["cross"]``) are ``(B, H, T, S)`` or None."""
        a, w_self = self.attn(self.ln1(x), key_padding_mask=pad_mask, causal=causal, need_weights=need_weights)
        x = x + self.drop(a)
        weights = {"self": w_self}
        if self.cross is not None:
            if memory is None:
                raise ValueError("this block has cross-attention: pass memory (B, S, d_model)")
            require_tensor("memory", memory, "B, S, d_model", (x.shape[0], None, x.shape[2]))
            c, weights["cross"] = self.cross(self.ln_cross(x), memory, key_padding_mask=memory_pad_mask,
                                             need_weights=need_weights)
            x = x + self.drop(c)
        return x + self.mlp(self.ln2(x)), weights


def _init_weights(module: nn.Module) -> None:
    # GPT-2's initialisation: small normal weights keep early logits near uniform
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class _Stack(nn.Module):
    """Token + learned position embeddings, ``n_layers`` blocks, a final LayerNorm."""

    def __init__(self, config: TransformerConfig, causal: bool, cross_attention: bool = False) -> None:
        super().__init__()
        self.config, self.causal = config, causal
        self.tok = nn.Embedding(config.vocab_size, config.d_model)
        self.pos = nn.Embedding(config.max_len, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config.d_model, config.n_heads, config.dropout, config.d_ff,
                                          cross_attention) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)

    def run(self, ids: torch.Tensor, pad_mask: torch.Tensor | None, need_weights: bool,
            memory: torch.Tensor | None = None, memory_pad_mask: torch.Tensor | None = None):
        require_ids("ids", ids, self.config.vocab_size, self.config.max_len)
        if pad_mask is not None and (pad_mask.dtype != torch.bool or pad_mask.shape != ids.shape):
            raise ValueError(f"pad_mask must be bool of shape {tuple(ids.shape)}; got "
                             f"{pad_mask.dtype} {tuple(pad_mask.shape)}")
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.tok(ids) + self.pos(positions))
        weights = []
        for block in self.blocks:
            x, w = block(x, pad_mask, self.causal, memory, memory_pad_mask, need_weights)
            weights.append(w)
        return self.ln_f(x), weights


class Encoder(_Stack):
    """Bidirectional Transformer encoder (BERT-style body, no head). See the module docstring."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 max_len: int = 32, dropout: float = 0.0, d_ff: int | None = None) -> None:
        super().__init__(TransformerConfig(vocab_size, d_model, n_heads, n_layers, max_len, dropout, d_ff),
                         causal=False)
        self.apply(_init_weights)

    @classmethod
    def from_config(cls, config: TransformerConfig) -> "Encoder":
        return cls(**asdict(config))

    def forward(self, ids: torch.Tensor, pad_mask: torch.Tensor | None = None, return_attention: bool = False):
        """``ids: (B, T)`` -> ``hidden: (B, T, d_model)`` [, list of ``(B, H, T, T)`` per layer]."""
        hidden, weights = self.run(ids, pad_mask, return_attention)
        return (hidden, [w["self"] for w in weights]) if return_attention else hidden


class GPT(nn.Module):
    """Decoder-only language model: causal self-attention, next-token logits.

    ``forward(ids: (B, T) long, pad_mask=None, return_attention=False)`` -> ``logits: (B, T, V)``
    [, list of ``(B, H, T, T)``]. Right-padding needs no mask: a causal model never looks right,
    so padding after a name cannot change the predictions for the name. As in GPT-2, the output
    layer shares its weights with the token embedding (fewer parameters, and on small data a
    lower test loss).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.body = _Stack(config, causal=True)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(_init_weights)
        self.head.weight = self.body.tok.weight  # weight tying: one (V, d_model) matrix, used twice

    def forward(self, ids: torch.Tensor, pad_mask: torch.Tensor | None = None, return_attention: bool = False):
        hidden, weights = self.body.run(ids, pad_mask, return_attention)
        logits = self.head(hidden)
        return (logits, [w["self"] for w in weights]) if return_attention else logits


class Seq2Seq(nn.Module):
    """Encoder–decoder Transformer ("Attention is all you need", pre-norm, small).

    ``forward(src: (B, S), tgt_in: (B, T), src_pad_mask=None, return_attention=False)`` ->
    ``logits: (B, T, V)``; ``tgt_in`` is the target shifted right behind a start token. With
    ``return_attention`` also a dict of lists per layer: ``"encoder"``, ``"decoder"`` (self) and
    ``"cross"`` (decoder position over source position), each ``(B, H, ., .)``. Source and target
    share one vocabulary of ``config.vocab_size`` tokens.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _Stack(config, causal=False)
        self.decoder = _Stack(config, causal=True, cross_attention=True)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(_init_weights)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_pad_mask: torch.Tensor | None = None,
                return_attention: bool = False):
        memory, w_enc = self.encoder.run(src, src_pad_mask, return_attention)
        hidden, w_dec = self.decoder.run(tgt_in, None, return_attention, memory, src_pad_mask)
        logits = self.head(hidden)
        if not return_attention:
            return logits
        return logits, {"encoder": [w["self"] for w in w_enc], "decoder": [w["self"] for w in w_dec],
                        "cross": [w["cross"] for w in w_dec]}

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, start: int, steps: int,
                      src_pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Generate ``steps`` tokens one at a time, always taking the most likely: ``(B, steps)``."""
        require_ids("src", src, self.config.vocab_size, self.config.max_len)
        require_int("start", start, 0, self.config.vocab_size - 1)
        # the decoder reads the start token and all but the last generated one: steps tokens in all
        require_int("steps", steps, 0, self.config.max_len)
        with eval_mode(self):
            memory, _ = self.encoder.run(src, src_pad_mask, False)
            out = torch.full((src.shape[0], 1), start, dtype=torch.long, device=src.device)
            for _ in range(steps):
                hidden, _ = self.decoder.run(out, None, False, memory, src_pad_mask)
                out = torch.cat([out, self.head(hidden[:, -1]).argmax(-1, keepdim=True)], dim=1)
        return out[:, 1:]


# --------------------------------------------------------------------------- seq2seq as language modelling
def _int_matrix(name: str, a) -> np.ndarray:
    if not isinstance(a, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be a NumPy array or tensor of token ids (n, length), got {describe(a)}")
    a = a.cpu().numpy() if isinstance(a, torch.Tensor) else a
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be a 2-D integer array (n, length), got {a.dtype} {a.shape}")
    return a


def as_language_model(src, tgt, sep: int) -> tuple[np.ndarray, np.ndarray]:
    """A sequence-to-sequence task as next-token prediction for a decoder-only model.

    ``src: (n, S)`` and ``tgt: (n, L)`` integer token ids. Returns ``ids = [src, sep, tgt[:-1]]`` and
    ``targets = [IGNORE_INDEX] * S + tgt``, both ``(n, S + L)`` int64: the model reads the source and
    the separator ``sep``, then writes the target one token at a time, scored on the target only
    (``lib.lm.lm_loss`` skips ``IGNORE_INDEX``). Feeding the true previous target tokens is teacher
    forcing, as in ``Seq2Seq``.
    """
    src, tgt = _int_matrix("src", src), _int_matrix("tgt", tgt)
    if len(src) != len(tgt):
        raise ValueError(f"src and tgt must have the same number of rows, got {len(src)} and {len(tgt)}")
    sep = require_int("sep", sep, 0)
    if (src == sep).any() or (tgt == sep).any():
        raise ValueError(f"the separator {sep} also occurs in the data: choose a token id not used by src or tgt")
    n, s_len = src.shape
    ids = np.concatenate([src, np.full((n, 1), sep), tgt[:, :-1]], axis=1).astype(np.int64)
    targets = np.concatenate([np.full((n, s_len), IGNORE_INDEX), tgt], axis=1).astype(np.int64)
    return ids, targets


def target_correct(model: nn.Module, ids, targets, *, batch_size: int = 1000) -> np.ndarray:
    """``(n, L)`` bool: whether the model's most likely next token equals each target token.

    ``ids, targets`` as made by :func:`as_language_model` (the ``L`` scored positions are the last
    ones). Under teacher forcing a row that is all True is also what greedy decoding would write,
    so ``.all(axis=1).mean()`` is the exact-match rate and ``.mean(axis=0)`` the accuracy per output
    position.
    """
    require_module("model", model)
    ids, targets = _int_matrix("ids", ids), _int_matrix("targets", targets)
    if ids.shape != targets.shape:
        raise ValueError(f"ids and targets must have the same shape, got {ids.shape} and {targets.shape}")
    scored = targets != IGNORE_INDEX
    first = int(np.argmax(scored.any(axis=0)))
    if not scored.any() or not scored[:, first:].all():
        raise ValueError("targets must score the same last positions of every row (as_language_model's layout)")
    guesses = predict(model, torch.as_tensor(ids), batch_size=batch_size).argmax(-1).numpy()
    return guesses[:, first:] == targets[:, first:]


# --------------------------------------------------------------------------- Keras
def keras_block(d_model: int, n_heads: int, d_ff: int | None = None, causal: bool = False):
    """The pre-norm ``Block`` as a Keras model built from ``keras.layers.MultiHeadAttention``:
    ``(B, T, d_model) -> (B, T, d_model)``. LayerNorm epsilon is PyTorch's 1e-5 (Keras' default is 1e-3)."""
    from lib.keras_models import load_keras

    keras = load_keras()
    layers = keras.layers
    x = keras.Input(shape=(None, d_model))
    h = layers.LayerNormalization(epsilon=1e-5)(x)
    a = layers.MultiHeadAttention(n_heads, d_model // n_heads)(h, h, use_causal_mask=causal)
    x1 = layers.Add()([x, a])
    h = layers.LayerNormalization(epsilon=1e-5)(x1)
    h = layers.Dense(d_ff or 4 * d_model, activation="gelu")(h)
    return keras.Model(x, layers.Add()([x1, layers.Dense(d_model)(h)]))


@torch.no_grad()
def copy_block_to_keras(block: Block, keras_model) -> None:
    """Copy a self-attention ``Block``'s weights into ``keras_block(...)`` of the same sizes.

    Keras multiplies ``x @ W`` and keeps per-head axes: query/key/value kernels are
    ``(d_model, heads, d_head)``, the output kernel ``(heads, d_head, d_model)``.
    """
    if not isinstance(block, Block):
        raise TypeError(f"block must be a lib.transformer.Block, got {type(block).__name__}")
    if block.cross is not None:
        raise ValueError("only self-attention blocks have a Keras twin here")
    mha = block.attn
    h, dh, d = mha.n_heads, mha.d_head, mha.d_model

    def np_(t: torch.Tensor):
        return t.detach().cpu().numpy()

    kinds = {type(layer).__name__: [] for layer in keras_model.layers}
    for layer in keras_model.layers:
        kinds[type(layer).__name__].append(layer)
    ln1, ln2 = kinds["LayerNormalization"]
    dense1, dense2 = kinds["Dense"]
    (attention,) = kinds["MultiHeadAttention"]
    if attention.num_heads != h or dense1.units != block.mlp[0].out_features:
        raise ValueError("the Keras block's sizes differ from the PyTorch block's")
    weights = []
    for proj in (mha.q_proj, mha.k_proj, mha.v_proj):
        weights += [np_(proj.weight.T.reshape(d, h, dh)), np_(proj.bias.reshape(h, dh))]
    weights += [np_(mha.out_proj.weight.T.reshape(h, dh, d)), np_(mha.out_proj.bias)]
    attention.set_weights(weights)
    for k_ln, t_ln in ((ln1, block.ln1), (ln2, block.ln2)):
        k_ln.set_weights([np_(t_ln.weight), np_(t_ln.bias)])
    for k_dense, t_lin in ((dense1, block.mlp[0]), (dense2, block.mlp[2])):
        k_dense.set_weights([np_(t_lin.weight.T), np_(t_lin.bias)])

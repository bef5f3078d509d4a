"""Recurrent networks from scratch: RNN, LSTM and GRU cells, unrolling, and a character LM.

The cells use PyTorch's parameter names and layouts (``weight_ih: (G*H, I)``, ``weight_hh:
(G*H, H)``, ``bias_ih``, ``bias_hh``; ``G`` = 1, 4, 3 gates stacked in PyTorch's order: LSTM
``i, f, g, o``, GRU ``r, z, n``), so ``copy_from_torch`` can take the weights of ``nn.RNN`` /
``nn.LSTM`` / ``nn.GRU`` and the outputs can be compared number for number. Training uses the
framework layers (``CharRNN``): a Python loop over time steps is slow, the cells are for
understanding. ``B`` batch, ``T`` time, ``I`` input size, ``H`` hidden size, ``V`` vocabulary.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lib.validate import describe, require_ids, require_int, require_probability, require_tensor


class _Cell(nn.Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        input_size, hidden_size = require_int("input_size", input_size, 1), require_int("hidden_size", hidden_size, 1)
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self.gates * hidden_size
        # PyTorch's initialisation: uniform in +-1/sqrt(H) for every weight and bias
        k = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(g, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(g).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(g).uniform_(-k, k))

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, {self.input_size}); got {describe(x)}")
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"x must be (B, {self.input_size}); got {tuple(x.shape)}")

    def _check_hidden(self, h: torch.Tensor, batch: int, name: str = "h") -> None:
        require_tensor(name, h, "B, H", (batch, self.hidden_size))

    def zero_state(self, batch: int, device=None):
        require_int("batch", batch, 0)
        return torch.zeros(batch, self.hidden_size, device=device)

    @torch.no_grad()
    def copy_from_torch(self, module: nn.Module, layer: int = 0) -> "_Cell":
        """Copy layer ``layer`` of an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (or a matching ``nn.*Cell``)."""
        if not isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
            raise TypeError(f"module must be an nn.RNN/nn.LSTM/nn.GRU or a matching cell, got {describe(module)}")
        require_int("layer", layer, 0)
        suffix = "" if isinstance(module, nn.RNNCellBase) else f"_l{layer}"
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            source = getattr(module, name + suffix, None)
            if source is None or source.shape != getattr(self, name).shape:
                raise ValueError(f"{type(module).__name__} has no {name}{suffix} of shape "
                                 f"{tuple(getattr(self, name).shape)} (is it the matching kind and size?)")
            getattr(self, name).copy_(source)
        return self


class RNNCell(_Cell):
    r"""Elman RNN: $h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})$; ``x: (B, I), h: (B, H)``."""

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x)
        if h is not None:
            self._check_hidden(h, x.shape[0])
        h = self.zero_state(x.shape[0], x.device) if h is None else h
        return torch.tanh(x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh)


class LSTMCell(_Cell):
    r"""LSTM: gates $i, f, o = \sigma(\cdot)$, candidate $g = \tanh(\cdot)$,
    $c_t = f \odot c_{t-1} + i \odot g$, $h_t = o \odot \tanh(c_t)$. State ``(h, c)``, each ``(B, H)``."""
    gates = 4

    def zero_state(self, batch: int, device=None):
        require_int("batch", batch, 0)
        return (torch.zeros(batch, self.hidden_size, device=device),
                torch.zeros(batch, self.hidden_size, device=device))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        self._check(x)
        if state is not None:
            # a bare h would be unpacked along its batch dimension when the batch has two rows
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"an LSTM's state must be a tuple (h, c) of two (B, {self.hidden_size}) tensors; "
                                f"got {describe(state) if not isinstance(state, (tuple, list)) else f'{len(state)} items'}")
            self._check_hidden(state[0], x.shape[0], "h")
            self._check_hidden(state[1], x.shape[0], "c")
        h, c = self.zero_state(x.shape[0], x.device) if state is None else state
        z = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh   # (B, 4H)
        i, f, g, o = z.chunk(4, dim=1)
        # the cell state is updated additively: gradients pass through f, not through a squashing
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class GRUCell(_Cell):
    r"""GRU: $r, z = \sigma(\cdot)$, $n = \tanh(W_{in}x + b_{in} + r \odot (W_{hn}h + b_{hn}))$,
    $h_t = (1-z)\odot n + z \odot h_{t-1}$. ``x: (B, I), h: (B, H)``."""
    gates = 3

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x)
        if h is not None:
            self._check_hidden(h, x.shape[0])
        h = self.zero_state(x.shape[0], x.device) if h is None else h
        xr, xz, xn = (x @ self.weight_ih.T + self.bias_ih).chunk(3, dim=1)
        hr, hz, hn = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


def _hidden(state) -> torch.Tensor:
    return state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h, c)


def _check_sequence(cell: _Cell, x: torch.Tensor) -> None:
    if not isinstance(cell, _Cell):
        raise TypeError(f"cell must be an RNNCell, LSTMCell or GRUCell of lib.rnn, got {describe(cell)}")
    require_tensor("x", x, "B, T, I", (None, None, cell.input_size))
    if x.shape[1] == 0:
        raise ValueError("x must have at least one time step; got T = 0")


def unroll(cell: _Cell, x: torch.Tensor, state=None):
    """Run ``cell`` over ``x: (B, T, I)``, one step at a time (backpropagation through time follows
    this loop backwards). Returns ``(outputs: (B, T, H), final state)``."""
    _check_sequence(cell, x)
    outputs = []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state)
        outputs.append(_hidden(state))
    return torch.stack(outputs, dim=1), state


def gradient_norms_through_time(cell: _Cell, x: torch.Tensor, state=None) -> torch.Tensor:
    r"""$\lVert \partial L / \partial h_t \rVert$ for every step ``t`` when the loss looks only at the
    last hidden state (``L = sum(h_T)``): how much of the final error flows back to step ``t``.
    ``x: (B, T, I)``; returns ``(T,)``, the norm taken over the batch and the hidden units."""
    _check_sequence(cell, x)
    hs = []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state)
        if not _hidden(state).requires_grad:
            raise RuntimeError("the hidden states carry no gradient: call this outside torch.no_grad() "
                               "with a cell whose parameters require grad")
        hs.append(_hidden(state))
    # torch.autograd.grad returns dL/dh_t for each t and, unlike .backward(), leaves the cell's
    # parameter gradients untouched
    grads = torch.autograd.grad(hs[-1].sum(), hs)
    return torch.stack([g.norm() for g in grads]).detach()


KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class CharRNN(nn.Module):
    """Character language model: embedding -> ``nn.RNN``/``nn.LSTM``/``nn.GRU`` -> next-character logits.

    ``forward(ids: (B, T) long) -> logits: (B, T, V)``. The recurrence runs left to right, so the
    prediction at ``t`` never sees ``ids[:, t+1:]`` (right padding is harmless).
    """

    def __init__(self, vocab_size: int, kind: str = "lstm", emb_dim: int = 32, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}; got {kind!r}")
        for name, value in (("vocab_size", vocab_size), ("emb_dim", emb_dim), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            require_int(name, value, 1)
        require_probability("dropout", dropout)
        self.kind = kind
        self.emb = nn.Embedding(vocab_size, emb_dim)
        self.rnn = KINDS[kind](emb_dim, hidden_size, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        require_ids("ids", ids, vocab_size=self.emb.num_embeddings)
        out, _ = self.rnn(self.emb(ids))
        return self.head(self.drop(out))


def keras_char_lstm(vocab_size: int, emb_dim: int = 32, hidden_size: int = 128):
    """The same character LSTM in Keras: ``(B, T)`` ids -> ``(B, T, V)`` logits (not compiled)."""
    from lib.keras_models import load_keras

    keras = load_keras()
    return keras.Sequential([
        keras.Input(shape=(None,), dtype="int32"),
        keras.layers.Embedding(vocab_size, emb_dim),
        keras.layers.LSTM(hidden_size, return_sequences=True),
        keras.layers.Dense(vocab_size),
    ])


@torch.no_grad()
def copy_char_lstm_to_keras(model: CharRNN, keras_model) -> None:
    """Copy a one-layer ``CharRNN(kind="lstm")`` into a ``keras_char_lstm`` of the same sizes.

    Keras keeps ``x @ W`` (the transpose of PyTorch's ``W @ x``) and a single bias, so the LSTM
    gets ``kernel = W_ih^T``, ``recurrent_kernel = W_hh^T``, ``bias = b_ih + b_hh``; both stack
    the gates in the same order (Keras calls the candidate ``c``, PyTorch ``g``).
    """
    if not isinstance(model, CharRNN) or model.kind != "lstm" or model.rnn.num_layers != 1:
        raise ValueError("need a one-layer CharRNN with kind='lstm'")
    if len(getattr(keras_model, "layers", ())) != 3:
        raise ValueError("keras_model must be a keras_char_lstm(...) (Embedding, LSTM, Dense)")
    emb, lstm, dense = (layer for layer in keras_model.layers)
    r = model.rnn
    emb.set_weights([model.emb.weight.cpu().numpy()])
    lstm.set_weights([r.weight_ih_l0.T.cpu().numpy(), r.weight_hh_l0.T.cpu().numpy(),
                      (r.bias_ih_l0 + r.bias_hh_l0).cpu().numpy()])
    dense.set_weights([model.head.weight.T.cpu().numpy(), model.head.bias.cpu().numpy()])

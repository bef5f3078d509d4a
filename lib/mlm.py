"""Masked-language-model (MLM) pretraining of a small encoder (chapter 07).

BERT's recipe, at the scale of names: hide about 15% of the letters and train the encoder to put
them back. Shapes: ``B`` batch, ``T`` sequence length, ``V`` vocabulary size, ``d`` the
encoder's width (``d_model``). Ids follow ``lib.text.CharVocab``: pad 0,
boundary 1, mask 2, letters from 3 on; a ``pad_mask`` is True at padding, as in ``lib.transformer``.

- ``mask_tokens``: choose positions with probability ``rate``; of those 80% become the mask id,
  10% a random letter, 10% stay as they are (the "80/10/10 rule"). Targets are ``-100`` elsewhere.
- ``mlm_loss``: cross-entropy averaged over the chosen positions only.
- ``MaskedLM`` (encoder + BERT's MLM head); ``MaskedBatches`` (length-bucketed batches, masked
  afresh every time) and ``mlm_step``, with which ``pretrain`` trains through ``lib.train.fit``;
  ``evaluate_mlm`` (held-out loss, and accuracy on the ``hidden_positions``), ``fill_masks`` (the model's guesses).

Fine-tuning the pretrained encoder on labels lives in ``lib.finetuning``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lib.device import model_device
from lib.lm import lm_loss
from lib.recipes import adamw, warmup_cosine
from lib.text import IGNORE_INDEX, CharVocab
from lib.train import History, eval_mode, fit
from lib.validate import (describe, require_ids, require_int, require_module, require_number, require_positive_int,
                          require_tensor)

IGNORE = IGNORE_INDEX  # target value that F.cross_entropy skips (lib.text.IGNORE_INDEX, -100)


def _check_masked_lm(model) -> None:
    if not isinstance(model, MaskedLM):
        raise TypeError(f"model must be a lib.mlm.MaskedLM, got {describe(model)}")


# --------------------------------------------------------------------------- the MLM objective
def mask_tokens(ids: torch.Tensor, vocab_size: int, *, rate: float = 0.15, mask_id: int = 2, n_special: int = 3,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: returns ``inputs, targets``, both ``(B, T)`` int64 like ``ids``.

    Only ordinary tokens (id ``>= n_special``: never padding, boundaries or the mask itself) can be
    chosen, each independently with probability ``rate``. A chosen position becomes ``mask_id``
    with probability 0.8, a random ordinary token with 0.1, and keeps its token with 0.1 — so the
    model cannot learn that "only ``*`` needs predicting" and must keep a good representation of
    every letter. ``targets`` holds the original token at chosen positions and ``-100`` elsewhere.
    """
    require_ids("ids", ids)
    require_number("rate", rate, low=0, high=1, low_open=True)
    for name, value in (("vocab_size", vocab_size), ("mask_id", mask_id), ("n_special", n_special)):
        require_int(name, value)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    if not 0 <= mask_id < vocab_size or not 0 < n_special < vocab_size:
        raise ValueError(f"need 0 <= mask_id < vocab_size and 0 < n_special < vocab_size; "
                         f"got mask_id={mask_id}, n_special={n_special}, vocab_size={vocab_size}")
    def uniform() -> torch.Tensor:  # drawn on the CPU so a seed gives the same masks on any device
        return torch.rand(ids.shape, generator=generator).to(ids.device)

    chosen = (ids >= n_special) & (uniform() < rate)
    action = uniform()                       # one draw decides mask / random / keep
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(n_special, vocab_size, ids.shape, generator=generator).to(ids.device)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    targets = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    return inputs, targets


def mlm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""$\frac{1}{|M|}\sum_{i \in M} -\log p_\theta(x_i \mid \tilde x)$ over the masked set $M$.

    ``logits: (B, T, V)``, ``targets: (B, T)`` with ``-100`` at unmasked positions, which carry no
    loss (predicting a letter the model can see would be copying, not learning). A batch with no
    masked position returns a zero that still has a gradient (instead of 0/0 = NaN). The same
    formula as a language model's loss over its non-padded targets: it is ``lib.lm.lm_loss``.
    """
    return lm_loss(logits, targets)


# --------------------------------------------------------------------------- models
def encoder_sizes(encoder: nn.Module, d_model: int | None, vocab_size: int | None) -> tuple[int, int]:
    """``(d_model, vocab_size)``: the given ones, else read from ``encoder.config`` (as
    ``lib.transformer.Encoder`` has); other encoders must be told them."""
    config = getattr(encoder, "config", None)
    d_model = d_model or getattr(config, "d_model", None)
    vocab_size = vocab_size or getattr(config, "vocab_size", None)
    if d_model is None or vocab_size is None:
        raise ValueError("pass d_model (and vocab_size) for an encoder without a .config")
    return d_model, vocab_size


def trim_padding(ids: torch.Tensor, *others: torch.Tensor, pad_id: int = 0) -> tuple[torch.Tensor, ...]:
    """Drop the trailing columns where every row is padding (from ``ids`` and same-shaped ``others``).

    Padded keys get no attention and positions count from the left, so this changes no result;
    it only saves time, since most names are much shorter than the longest.
    """
    require_tensor("ids", ids, "B, T")
    for i, other in enumerate(others):
        if not isinstance(other, torch.Tensor) or other.shape[:2] != ids.shape:
            raise ValueError(f"others[{i}] must have the shape of ids {tuple(ids.shape)}; got {describe(other)}")
    length = max(1, int((ids != pad_id).sum(1).max())) if ids.numel() else ids.shape[1]
    return tuple(t[:, :length] for t in (ids, *others))


class MaskedLM(nn.Module):
    """An encoder with BERT's MLM head (dense, GELU, LayerNorm, then a projection to the vocabulary).

    ``encoder(ids, pad_mask) -> (B, T, d)`` is any module with ``lib.transformer.Encoder``'s API.
    ``forward(ids: (B, T)) -> logits (B, T, V)``; the pad mask is computed from ``pad_id``.
    """

    def __init__(self, encoder: nn.Module, vocab_size: int | None = None, d_model: int | None = None,
                 pad_id: int = 0) -> None:
        super().__init__()
        require_module("encoder", encoder)
        d_model, vocab_size = encoder_sizes(encoder, d_model, vocab_size)
        require_positive_int("d_model", d_model)
        require_int("vocab_size", vocab_size, 2)
        require_int("pad_id", pad_id, 0, vocab_size - 1)
        self.encoder, self.pad_id = encoder, pad_id
        self.head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model),
                                  nn.Linear(d_model, vocab_size))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        require_ids("ids", ids)
        return self.head(self.encoder(ids, ids == self.pad_id))


# --------------------------------------------------------------------------- training loops
def length_buckets(ids: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
                   pad_id: int = 0, window: int = 32) -> list[torch.Tensor]:
    """One epoch of shuffled batches (row indices) in which each batch holds similar lengths.

    Shuffle, sort each run of ``window`` batches' worth of rows by length, cut into batches and
    shuffle the batches. A batch then needs little padding (``trim_padding`` cuts it to its longest
    row), which saves about a third of the work on names, while every epoch still sees every row
    once in a random order.
    """
    require_tensor("ids", ids, "N, T")
    require_positive_int("batch_size", batch_size)
    require_positive_int("window", window)
    lengths = (ids != pad_id).sum(1)
    order = torch.randperm(len(ids), generator=generator)
    chunks = order.split(batch_size * window)
    order = torch.cat([c[torch.argsort(lengths[c], stable=True)] for c in chunks])
    batches = order.split(batch_size)
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


class MaskedBatches:
    """An epoch of MLM batches ``(inputs, targets)``, each ``(B, T')`` int64, for ``lib.train.fit``.

    Every pass over it draws new ``length_buckets`` of ``ids: (N, T)``, trims each batch's padding
    and masks it afresh with ``mask_tokens`` (dynamic masking, as in RoBERTa: the model never sees
    the same corruption of a name twice). All draws come from ``generator``, in order, so a seeded
    generator gives the same batches on any machine.
    """

    def __init__(self, ids: torch.Tensor, vocab_size: int, batch_size: int, *, rate: float = 0.15,
                 pad_id: int = 0, generator: torch.Generator | None = None) -> None:
        require_ids("ids", ids)
        if not len(ids):
            raise ValueError("ids is empty: there is nothing to pretrain on")
        require_positive_int("batch_size", batch_size)
        require_number("rate", rate, low=0, high=1, low_open=True)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
        self.ids, self.vocab_size, self.batch_size = ids, vocab_size, batch_size
        self.rate, self.pad_id, self.generator = rate, pad_id, generator

    def __len__(self) -> int:
        return math.ceil(len(self.ids) / self.batch_size)

    def __iter__(self):
        for rows in length_buckets(self.ids, self.batch_size, self.generator, pad_id=self.pad_id):
            batch, = trim_padding(self.ids[rows], pad_id=self.pad_id)
            yield mask_tokens(batch, self.vocab_size, rate=self.rate, generator=self.generator)


def hidden_positions(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` bool: chosen positions whose input was changed (masked or replaced by another letter).

    The chosen positions left unchanged (about 10%) show the answer in the input, so an accuracy that
    counted them would reward copying: masked-letter accuracies are measured on these positions only.
    """
    return (targets != IGNORE) & (inputs != targets)


def mlm_step(model: MaskedLM, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """The ``lib.train.fit`` step of MLM pretraining: ``mlm_loss`` of ``model(inputs)`` on a batch
    ``(inputs, targets)``, weighted by the number of chosen positions, with ``accuracy`` the share of
    hidden letters (``hidden_positions``: masked or replaced, not the unchanged ones) predicted right."""
    inputs, targets = batch
    logits = model(inputs)
    chosen = targets != IGNORE
    hidden = hidden_positions(inputs, targets)
    n = int(chosen.sum())
    accuracy = (float((logits.detach().argmax(-1)[hidden] == targets[hidden]).float().mean())
                if hidden.any() else 0.0)
    return {"loss": mlm_loss(logits, targets), "n": n, "accuracy": accuracy}


def pretrain(model: MaskedLM, ids: torch.Tensor, *, epochs: int = 1, batch_size: int = 256,
             lr: float = 2e-3, rate: float = 0.15, warmup: float = 0.05, weight_decay: float = 0.01,
             seed: int = 0, device: torch.device | str | None = None, progress: bool = True) -> History:
    """MLM pretraining: ``lib.train.fit`` with ``mlm_step`` over ``MaskedBatches`` of ``ids: (N, T)``.

    ``lib.recipes.adamw`` (``weight_decay`` on matrices) with ``warmup_cosine(warmup)``: a linear
    warm-up over the first ``warmup`` share of the steps, then cosine decay to zero. ``seed`` fixes
    the batches, the masks and dropout. Returns the ``History``: per epoch ``train_loss`` (masked
    positions only) and ``train_accuracy``; per optimizer step the same in ``history.steps``.
    """
    from lib.device import seeded

    _check_masked_lm(model)
    require_positive_int("epochs", epochs)
    require_number("warmup", warmup, low=0, high=1, high_open=True)
    require_int("seed", seed, 0)
    batches = MaskedBatches(ids, model.head[-1].out_features, batch_size, rate=rate, pad_id=model.pad_id,
                            generator=torch.Generator().manual_seed(seed))
    with seeded(seed):  # dropout masks
        return fit(model, batches, epochs=epochs, step=mlm_step, optimizer=adamw(model, lr, weight_decay),
                   schedule=warmup_cosine(warmup), device=device, progress=progress)


@torch.no_grad()
def evaluate_mlm(model: MaskedLM, ids: torch.Tensor, *, rate: float = 0.15, seed: int = 1,
                 top_k: int = 1, batch_size: int = 1024) -> tuple[float, float]:
    """Held-out MLM ``(loss, accuracy)`` over ``ids: (N, T)`` with fixed, seeded masks.

    Loss is averaged over all chosen positions of the set (not per batch), as in training; accuracy
    is the share of hidden positions (``hidden_positions``: masked or replaced, never the unchanged
    ones, whose answer is in the input) whose original token is among the model's ``top_k`` guesses.
    """
    _check_masked_lm(model)
    require_ids("ids", ids)
    require_positive_int("batch_size", batch_size)
    vocab_size = model.head[-1].out_features
    require_int("top_k", top_k, 1, vocab_size)
    require_number("rate", rate, low=0, high=1, low_open=True)
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)
    with eval_mode(model):
        loss_sum, correct, count, hidden_count = 0.0, 0, 0, 0
        for start in range(0, len(ids), batch_size):
            batch, = trim_padding(ids[start:start + batch_size], pad_id=model.pad_id)
            inputs, targets = mask_tokens(batch, vocab_size, rate=rate, generator=generator)
            logits, targets = model(inputs.to(device)), targets.to(device)
            chosen = targets != IGNORE
            hidden = hidden_positions(inputs.to(device), targets)
            loss_sum += float(F.cross_entropy(logits[chosen], targets[chosen], reduction="sum"))
            best = logits[hidden].topk(top_k, dim=-1).indices                    # (|H|, top_k)
            correct += int((best == targets[hidden].unsqueeze(-1)).any(-1).sum())
            count += int(chosen.sum())
            hidden_count += int(hidden.sum())
    if count == 0 or hidden_count == 0:
        raise ValueError(f"no position of the {len(ids)} sequences was masked (too few ordinary tokens at "
                         f"rate={rate}): loss and accuracy are undefined")
    return loss_sum / count, correct / hidden_count


@torch.no_grad()
def fill_masks(model: MaskedLM, text: str, vocab: CharVocab | None = None,
               top_k: int = 3) -> list[tuple[int, list[tuple[str, float]]]]:
    """The model's ``top_k`` letters (with probabilities) for every ``*`` in ``text``.

    ``text`` is a lower-case name with ``*`` for hidden letters, e.g. ``"em*a"``. Returns a list of
    ``(position in text, [(letter, probability), ...])``, best first.
    """
    _check_masked_lm(model)
    vocab = vocab or CharVocab()
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {describe(text)}")
    if "*" not in text:
        raise ValueError(f"text must contain at least one '*' to fill in; got {text!r}")
    require_int("top_k", top_k, 1, len(vocab) - 3)
    ids = torch.tensor([vocab.encode(text)], device=model_device(model))
    with eval_mode(model):
        probs = model(ids)[0].softmax(-1)                   # (T, V)
    probs[:, :3] = 0.0                                  # only letters are sensible answers
    probs = probs / probs.sum(-1, keepdim=True)
    out = []
    for pos in [i for i, c in enumerate(text) if c == "*"]:
        p, idx = probs[pos + 1].topk(top_k)             # +1: the leading boundary token
        out.append((pos, [(vocab.itos[int(i)], float(q)) for q, i in zip(p, idx)]))
    return out

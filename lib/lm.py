"""Character language models on names: the counting bigram, loss in nats per character, sampling.

Every model here maps ``ids: (B, T) long -> logits: (B, T, V)`` where ``logits[:, t]`` scores the
character after ``ids[:, :t+1]`` — the bigram table, ``lib.rnn.CharRNN`` and ``lib.transformer.GPT``
alike — so one ``nll_per_char`` and one ``sample`` serve them all. Names are wrapped as ``.name.``
(``lib.text.CharVocab``), so predicting the final ``.`` (the end of the name) counts as a character.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lib.device import model_device
from lib.text import IGNORE_INDEX, CharVocab, lm_tensors
from lib.train import eval_mode
from lib.validate import (describe, require_ids, require_int, require_module, require_number, require_tensor,
                          require_texts)


def _check_vocab(vocab) -> None:
    if not isinstance(vocab, CharVocab):
        raise TypeError(f"vocab must be a lib.text.CharVocab, got {describe(vocab)}")


def bigram_counts(names: list[str], vocab: CharVocab) -> torch.Tensor:
    """``(V, V)`` int64 counts: ``counts[a, b]`` = how often character ``b`` follows ``a`` in ``.name.``."""
    require_texts("names", names)
    _check_vocab(vocab)
    counts = torch.zeros(len(vocab), len(vocab), dtype=torch.long)
    for name in names:
        ids = torch.tensor(vocab.encode(name))
        counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1, dtype=torch.long), accumulate=True)
    return counts


class BigramLM(nn.Module):
    r"""The counting model $P(b \mid a) = (N_{ab} + \alpha) / (N_a + \alpha V)$ as a (fixed) layer.

    ``alpha`` is add-$\alpha$ smoothing: a pair never seen in training still gets a small
    probability, so the test loss stays finite. ``forward(ids: (B, T)) -> logits: (B, T, V)``.
    """

    def __init__(self, names: list[str], vocab: CharVocab, alpha: float = 1.0) -> None:
        super().__init__()
        require_number("alpha", alpha, low=0)
        counts = bigram_counts(names, vocab).double() + alpha
        self.register_buffer("log_probs", (counts / counts.sum(1, keepdim=True)).log().float())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        require_ids("ids", ids, vocab_size=len(self.log_probs))
        return self.log_probs[ids]  # log-probabilities are valid logits (softmax gives them back)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the targets that are not ``IGNORE_INDEX`` (-100: padding, or letters
    that were not masked); a ``loss_fn`` for ``lib.train.fit``. ``logits: (B, T, V)``,
    ``targets: (B, T)``. With no target at all it returns a zero that still has a gradient
    (instead of 0/0 = NaN)."""
    require_tensor("logits", logits, "B, T, V", kind="float")
    require_tensor("targets", targets, "B, T", tuple(logits.shape[:2]), kind="long")
    if not (targets != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def nll_per_char(model: nn.Module, names: list[str], vocab: CharVocab, batch_size: int = 1024) -> float:
    """Test negative log-likelihood in nats per character: total ``-log p`` of every character
    (and every end mark) of ``names`` divided by their number. ``log(V)`` means "no idea"."""
    require_module("model", model)
    require_texts("names", names)
    _check_vocab(vocab)
    batch_size = require_int("batch_size", batch_size, 1)
    if not len(names):
        raise ValueError("names is empty")
    with eval_mode(model):
        device = model_device(model)
        total, count = 0.0, 0
        for start in range(0, len(names), batch_size):
            x, y = lm_tensors(names[start:start + batch_size], vocab)
            logits = model(x.to(device))
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), y.to(device).reshape(-1),
                                           ignore_index=IGNORE_INDEX, reduction="sum"))
            count += int((y != IGNORE_INDEX).sum())
    return total / count


@torch.no_grad()
def sample(model: nn.Module, vocab: CharVocab, n: int = 10, temperature: float = 1.0, prefix: str = "",
           max_len: int = 20, seed: int = 0) -> list[str]:
    r"""Draw ``n`` names, character by character, from $\mathrm{softmax}(\text{logits} / T)$.

    ``temperature`` T < 1 sharpens the distribution (safer, more common names), T > 1 flattens it
    (more surprising ones); ``temperature=0`` always takes the most likely character. Every name
    starts with ``prefix``. The same ``seed`` gives the same names (a private generator is used,
    so the global random state is untouched). Stops at the end mark or after ``max_len`` letters.
    """
    require_module("model", model)
    _check_vocab(vocab)
    require_number("temperature", temperature, low=0)
    n, max_len = require_int("n", n, 1), require_int("max_len", max_len, 1)
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {describe(prefix)}")
    require_int("seed", seed, 0)
    with eval_mode(model):
        device = model_device(model)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        start = [vocab.bos, *vocab.encode(prefix, boundaries=False)]
        ids = torch.tensor([start] * n, dtype=torch.long)
        done = torch.zeros(n, dtype=torch.bool)
        window = getattr(getattr(model, "config", None), "max_len", None)  # a GPT sees at most max_len tokens
        for _ in range(max_len - len(prefix)):
            context = ids if window is None else ids[:, -window:]
            logits = model(context.to(device))[:, -1].double().cpu()
            # only letters and the end mark may follow; never padding or the mask token
            logits[:, [vocab.pad, vocab.mask]] = -math.inf
            if temperature == 0:
                nxt = logits.argmax(1)
            else:
                nxt = torch.multinomial(torch.softmax(logits / temperature, 1), 1, generator=generator)[:, 0]
            nxt = torch.where(done, torch.full_like(nxt, vocab.pad), nxt)
            done |= nxt == vocab.bos
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            if done.all():
                break
    return [vocab.decode(row[1:]).split(vocab.BOS)[0] for row in ids]


def train_lm(model: nn.Module, train_names: list[str], val_names: list[str], vocab: CharVocab, *,
             epochs: int = 15, lr: float = 3e-3, batch_size: int = 64, weight_decay: float = 0.01,
             seed: int = 0, device: torch.device | str | None = None, progress: bool = True, schedule=None):
    """Train a character LM with the course's recipe; returns ``lib.train.History``.

    ``lib.recipes.adamw`` (weight decay on matrices only) with a learning rate decayed by a cosine over
    the steps, global gradient norm clipped at 1 (recorded as ``grad_norm``), and the weights of the
    epoch with the lowest validation loss restored at the end (early stopping without stopping
    early). ``seed`` fixes the batch order and dropout (``lib.device.seeded``); seed the model's
    initial weights yourself. ``schedule``: a function ``factor(step, total_steps)`` to use instead of
    the cosine (e.g. ``lib.recipes.warmup_cosine(0.1)``); ``None`` keeps ``lib.recipes.cosine``.
    """
    from lib.data import make_loader
    from lib.device import seeded
    from lib.recipes import adamw, cosine
    from lib.train import fit

    require_texts("train_names", train_names)
    require_texts("val_names", val_names)
    train_loader = make_loader(*lm_tensors(train_names, vocab), batch_size=batch_size, shuffle=True, seed=seed)
    val_loader = make_loader(*lm_tensors(val_names, vocab), batch_size=512)
    with seeded(seed):
        return fit(model, train_loader, epochs=epochs, optimizer=adamw(model, lr, weight_decay),
                   schedule=cosine if schedule is None else schedule,
                   loss_fn=lm_loss, val_loader=val_loader, clip_grad=1.0, device=device, progress=progress)

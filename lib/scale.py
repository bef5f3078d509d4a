"""Scale and compute (chapter 10): scaling-law sweeps, FLOP and memory arithmetic, and the tools that
trade compute for memory and time (accumulation, checkpointing, mixed precision, data parallelism).

- Data: :func:`packed_windows` concatenates names into one character stream (``.emma.olivia.``) and
  cuts it into windows, as GPT training packs documents: every position is a real token, so a step
  of ``B`` windows of length ``T`` trains on exactly ``B * T`` tokens. :class:`TokenStream` hands
  ``fit`` a new stretch of that stream each epoch (one pass, no repetition).
- Counting: :func:`non_embedding_parameters` (Kaplan's N), :func:`gpt_flops` (the 6ND rule and what it
  leaves out), :func:`training_memory` (bytes per parameter for weights, gradients and Adam),
  :func:`activation_bytes` (what autograd saves for the backward pass, measured with
  ``torch.autograd.graph.saved_tensors_hooks``).
- Fitting: :func:`power_law`, :func:`fit_power_law` (``L = E + A x^-alpha`` with a t interval),
  :func:`fit_log_slope` (a straight line in log-log, with its interval).
- Trading: :func:`accumulated_gradients`, :func:`checkpointed`, :func:`autocast_step`; data
  parallelism is ``lib.ddp_train`` (a module and the script ``torchrun`` runs).

Training goes through ``lib.train.fit``, as everywhere in the course.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lib.device import seeded
from lib.lm import lm_loss
from lib.recipes import adamw, constant
from lib.text import CharVocab
from lib.train import count_parameters, fit
from lib.transformer import GPT, TransformerConfig
from lib.validate import (describe, require_array, require_int, require_module, require_number, require_tensor,
                          require_texts)

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


# --------------------------------------------------------------------------- data
def packed_windows(names: list[str], vocab: CharVocab, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Names joined into one stream ``.a.b.c.`` and cut into ``(n, length)`` inputs and next-character
    targets (int64). The last incomplete window is dropped."""
    require_texts("names", names)
    if not isinstance(vocab, CharVocab):
        raise TypeError(f"vocab must be a lib.text.CharVocab, got {describe(vocab)}")
    length = require_int("length", length, 1)
    stream = [vocab.bos]
    for name in names:
        stream += vocab.encode(name, boundaries=False) + [vocab.bos]
    n = (len(stream) - 1) // length
    if n < 1:
        raise ValueError(f"the names give {len(stream)} tokens, too few for one window of {length} + 1")
    ids = torch.tensor(stream[:n * length + 1], dtype=torch.long)
    return ids[:-1].view(n, length), ids[1:].view(n, length)


class TokenStream:
    """A loader for ``fit`` that never repeats data: each epoch yields the next ``steps`` batches of
    ``batch_size`` windows from one seeded permutation of ``(x, y)``; ``len()`` is ``steps``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, steps: int, seed: int = 0) -> None:
        require_tensor("x", x, "n, T", kind="long")
        require_tensor("y", y, "n, T", tuple(x.shape), kind="long")
        self.batch_size, self.steps = require_int("batch_size", batch_size, 1), require_int("steps", steps, 1)
        self.x, self.y = x, y
        self.order = torch.randperm(len(x), generator=torch.Generator().manual_seed(require_int("seed", seed, 0)))
        self.position = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            if self.position + self.batch_size > len(self.order):
                raise ValueError(f"the stream of {len(self.x)} windows is used up: ask for fewer steps")
            rows = self.order[self.position:self.position + self.batch_size]
            self.position += self.batch_size
            yield self.x[rows], self.y[rows]


# --------------------------------------------------------------------------- counting
def non_embedding_parameters(model: GPT) -> int:
    """Kaplan et al.'s N: every parameter of a ``GPT`` except the token and position embeddings
    (the tied output layer is the token embedding, so it is not counted either)."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a lib.transformer.GPT, got {describe(model)}")
    return count_parameters(model) - model.body.tok.weight.numel() - model.body.pos.weight.numel()


def gpt_flops(config: TransformerConfig, seq_len: int, tokens: int) -> dict[str, int]:
    """Training FLOPs (forward + backward, a multiply-add = 2 FLOPs) of a ``GPT`` on ``tokens`` tokens
    in windows of ``seq_len``.

    Returns ``{"6ND", "linear", "head", "attention", "total"}``: ``6ND`` is the rule with N the
    non-embedding parameters; ``linear`` the matrix products with the blocks' weight matrices
    (6 x weights x tokens: forward 2, backward 4); ``head`` the output layer (6 d V per token);
    ``attention`` the two (T x T) products per layer, ``QK^T`` and ``AV`` (forward 4 T d per token and
    layer, backward twice that; counted for the full square, as the kernels compute it);
    ``total = linear + head + attention``.
    """
    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config must be a lib.transformer.TransformerConfig, got {describe(config)}")
    seq_len = require_int("seq_len", seq_len, 1, config.max_len)
    tokens = require_int("tokens", tokens, 0)
    d, L, V, ff = config.d_model, config.n_layers, config.vocab_size, config.d_ff
    weights = L * (4 * d * d + 2 * d * ff)
    non_embedding = L * (4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d) + 2 * d
    out = {"6ND": 6 * non_embedding * tokens, "linear": 6 * weights * tokens, "head": 6 * d * V * tokens,
           "attention": 12 * L * seq_len * d * tokens}
    out["total"] = out["linear"] + out["head"] + out["attention"]
    return out


def training_memory(n_params: int, *, precision: str = "float32", shards: int = 1, stage: int = 0) -> dict[str, float]:
    """Bytes of the training state of ``n_params`` parameters with Adam, per device.

    ``precision="float32"``: weights 4, gradients 4, Adam's two moments 8 bytes per parameter.
    ``"bfloat16"``/``"float16"`` (mixed precision): weights and gradients 2 bytes each, and the
    optimizer keeps a float32 master copy and the moments (12 bytes). ``stage`` is ZeRO's over
    ``shards`` devices: 1 shards the optimizer state, 2 also the gradients, 3 also the weights
    (FSDP). Activations are not included: they depend on batch and length (:func:`activation_bytes`).
    Returns ``{"weights", "gradients", "optimizer", "total"}`` in bytes.
    """
    n_params = require_int("n_params", n_params, 0)
    if precision not in BYTES:
        raise ValueError(f"precision must be one of {tuple(BYTES)}, got {precision!r}")
    shards, stage = require_int("shards", shards, 1), require_int("stage", stage, 0, 3)
    b = BYTES[precision]
    per = {"weights": b, "gradients": b, "optimizer": 8 if b == 4 else 12}
    out = {}
    for level, key in enumerate(("optimizer", "gradients", "weights"), start=1):
        out[key] = n_params * per[key] / (shards if stage >= level else 1)
    out["total"] = out["weights"] + out["gradients"] + out["optimizer"]
    return out


def activation_bytes(model: nn.Module, loss_of: Callable[[nn.Module], torch.Tensor]) -> int:
    """Bytes that autograd keeps for the backward pass of ``loss_of(model)``, parameters excluded.

    Every tensor saved for backward passes through ``torch.autograd.graph.saved_tensors_hooks``; the
    distinct storages that are not parameters are the activations (views of one storage count once,
    as the largest of them: a batch sliced from a bigger tensor counts as the slice). This is exact
    and the same on every CPU; it does not see a kernel's scratch memory.
    """
    require_module("model", model)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:  # the largest saved view of a storage, at most the storage
            size = min(storage.nbytes(), t.numel() * t.element_size())
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), size)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_of(model)
    require_tensor("loss_of(model)", loss, kind="float")
    return sum(seen.values())


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Measured bytes of weights, gradients and optimizer state (after at least one step)."""
    require_module("model", model)
    size = lambda t: t.numel() * t.element_size()  # noqa: E731
    params = list(model.parameters())
    return {"weights": sum(size(p) for p in params),
            "gradients": sum(size(p.grad) for p in params if p.grad is not None),
            "optimizer": sum(size(v) for s in optimizer.state.values() for v in s.values()
                             if isinstance(v, torch.Tensor))}


# --------------------------------------------------------------------------- fitting
def power_law(x, e: float, a: float, alpha: float):
    """``e + a * x ** -alpha``."""
    return e + a * np.asarray(x, dtype=float) ** -alpha


def fit_power_law(x: Sequence[float], y: Sequence[float], *, confidence: float = 0.95,
                  p0: Sequence[float] | None = None) -> dict[str, tuple[float, float, float]]:
    """Least-squares fit of ``y = E + A x^-alpha`` (``scipy.optimize.curve_fit``).

    Returns ``{"E": (value, low, high), "A": ..., "alpha": ...}``: intervals from the covariance of the
    fit and Student's t with ``n - 3`` degrees of freedom (they assume the law holds and the errors
    are independent, so they are optimistic). Needs at least 4 points with ``x > 0``.
    """
    from scipy.optimize import curve_fit
    from scipy.stats import t as student_t

    x, y = require_array("x", np.asarray(x, dtype=float), ndim=1), require_array("y", np.asarray(y, dtype=float), ndim=1)
    if len(x) != len(y) or len(x) < 4 or (x <= 0).any() or not np.isfinite(y).all():
        raise ValueError(f"need at least 4 points, x > 0 and finite y, of equal length; got {len(x)} and {len(y)}")
    require_number("confidence", confidence, 0, 1, low_open=True, high_open=True)
    scale = float(np.median(x))  # fit in x / median: A stays of order 1 whatever the unit of x
    guess = [y.min() * 0.9, y.max() - y.min() + 1e-3, 0.3] if p0 is None else list(p0)
    params, cov = curve_fit(lambda u, e, a, alpha: e + a * u ** -alpha, x / scale, y, p0=guess,
                            bounds=([0, 0, 0], [np.inf, np.inf, 5]), maxfev=20000)
    half = student_t.ppf(0.5 + confidence / 2, len(x) - 3) * np.sqrt(np.diag(cov))
    e, a, alpha = params
    a_unit = a * scale ** alpha  # back to A in the unit of x
    return {"E": (e, e - half[0], e + half[0]), "alpha": (alpha, alpha - half[2], alpha + half[2]),
            "A": (a_unit, (a - half[1]) * scale ** alpha, (a + half[1]) * scale ** alpha)}


def fit_log_slope(x: Sequence[float], y: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Slope of ``log y`` against ``log x`` by least squares (a pure power law ``y = a x^slope``), as
    ``(value, low, high)`` with a Student's t interval on ``n - 2`` degrees of freedom (assumes
    independent errors: optimistic for points that share runs). Needs at least 3 points, all > 0."""
    from scipy.stats import t as student_t

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 3 or (x <= 0).any() or (y <= 0).any():
        raise ValueError(f"need equally long 1-D x, y with at least 3 points, all > 0; got {x.shape}, {y.shape}")
    require_number("confidence", confidence, 0, 1, low_open=True, high_open=True)
    coef, cov = np.polyfit(np.log(x), np.log(y), 1, cov="unscaled")
    residual = np.log(y) - np.polyval(coef, np.log(x))
    slope, sigma2 = coef[0], float(residual @ residual) / (len(x) - 2)
    half = student_t.ppf(0.5 + confidence / 2, len(x) - 2) * np.sqrt(cov[0, 0] * sigma2)
    return float(slope), float(slope - half), float(slope + half)


# --------------------------------------------------------------------------- scaling sweep
def scaling_run(config: TransformerConfig, train: tuple[torch.Tensor, torch.Tensor],
                val: tuple[torch.Tensor, torch.Tensor], *, snapshots: int, steps: int, batch_size: int = 32,
                lr: float = 3e-3, seed: int = 0, device=None) -> dict:
    """Train a ``GPT(config)`` on a single pass of ``train`` windows, with the validation loss taken
    every ``steps`` optimizer steps (``snapshots`` times) at a constant learning rate (AdamW).

    Returns ``{"N": non-embedding parameters, "tokens": tokens seen at each snapshot, "loss":
    validation loss (nats per character) at each snapshot, "history": lib.train.History}``. The
    weights and the batch order depend on ``seed`` only.
    """
    snapshots, steps = require_int("snapshots", snapshots, 1), require_int("steps", steps, 1)
    from lib.data import make_loader

    with seeded(seed):
        model = GPT(config)
    loader = TokenStream(*train, batch_size=batch_size, steps=steps, seed=seed)
    with seeded(seed):
        history = fit(model, loader, epochs=snapshots, optimizer=adamw(model, lr, 0.0), schedule=constant,
                      loss_fn=lm_loss, val_loader=make_loader(*val, batch_size=512), device=device,
                      restore_best=False, progress=False)
    tokens_per_step = batch_size * train[0].shape[1]
    return {"N": non_embedding_parameters(model), "tokens": [tokens_per_step * steps * (i + 1) for i in range(snapshots)],
            "loss": list(history["val_loss"]), "history": history}


def compute_frontier(runs: list[dict], budgets: Sequence[float]) -> list[dict]:
    """For each compute budget C (FLOPs, C = 6 N D), the lowest loss reachable with at most C.

    A run of N parameters can spend C on ``D = C / (6 N)`` tokens: its loss there is interpolated
    linearly in log tokens between its snapshots; past its last snapshot it counts with its last loss
    (it could have stopped there, using less than C); before its first snapshot it is left out.
    Returns one dict per budget that some run covers: ``{"C", "N", "D" (tokens used), "loss",
    "saturated"}``; ``saturated`` is True when the best run ended before spending C (a budget past
    the sweep: its point says nothing about how the optimal model grows).
    """
    out = []
    for c in budgets:
        best = None
        for run in runs:
            tokens = np.asarray(run["tokens"], dtype=float)
            d = min(c / (6 * run["N"]), tokens[-1])
            if d >= tokens[0]:
                loss = float(np.interp(np.log(d), np.log(tokens), run["loss"]))
                if best is None or loss < best["loss"]:
                    best = {"C": float(c), "N": run["N"], "D": d, "loss": loss,
                            "saturated": bool(c / (6 * run["N"]) > tokens[-1])}
        if best is not None:
            out.append(best)
    return out


# --------------------------------------------------------------------------- trading compute for memory
def accumulated_gradients(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
                          micro_batches: int) -> list[torch.Tensor]:
    """Gradients of the mean loss over ``(x, y)`` computed ``micro_batches`` rows-chunks at a time.

    Each chunk's mean loss is weighted by its share of the rows, so the sum equals the gradient of
    the whole batch's mean; only one chunk's activations are alive at a time. ``micro_batches=1`` is
    the large batch itself. Returns one tensor per parameter (``model.parameters()`` order).
    """
    require_module("model", model)
    require_tensor("x", x)
    require_tensor("y", y, shape=(len(x), *([None] * (y.ndim - 1))))
    micro_batches = require_int("micro_batches", micro_batches, 1, len(x))
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for xb, yb in zip(x.tensor_split(micro_batches), y.tensor_split(micro_batches)):
        grads = torch.autograd.grad(loss_fn(model(xb), yb) * (len(xb) / len(x)), params, allow_unused=True)
        for acc, g in zip(total, grads):
            if g is not None:
                acc += g
    return total


class _Checkpointed(nn.Module):
    """A ``Block`` whose activations are recomputed in the backward pass instead of stored."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x, *args):
        return checkpoint(self.block, x, *args, use_reentrant=False)


def checkpointed(model: GPT) -> GPT:
    """A copy of ``model`` with every block under ``torch.utils.checkpoint`` (activation
    checkpointing): the forward pass keeps only each block's input; the backward pass runs the block
    again to get the rest. Same outputs and gradients, less memory, about one more forward pass."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a lib.transformer.GPT, got {describe(model)}")
    twin = copy.deepcopy(model)
    twin.body.blocks = nn.ModuleList(_Checkpointed(b) for b in twin.body.blocks)
    return twin


def autocast_step(loss_fn: Callable, dtype: torch.dtype = torch.bfloat16) -> Callable:
    """A ``fit`` step whose forward pass runs under ``torch.autocast`` in ``dtype`` on the model's
    device (matrix products in low precision, weights and optimizer in float32; the backward pass
    follows the forward's precision). For float16 on CUDA use ``fit(amp=True)``, which adds
    gradient scaling."""
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be torch.bfloat16 or torch.float16, got {dtype!r}")

    def step(model: nn.Module, batch) -> dict:
        x, y = batch
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            logits = model(x)
        return {"loss": loss_fn(logits.float(), y)}

    return step


# --------------------------------------------------------------------------- comparisons and budgets
def max_difference(a: nn.Module | Sequence[torch.Tensor], b: nn.Module | Sequence[torch.Tensor]) -> float:
    """Largest absolute difference between two models' parameters (or two lists of tensors)."""
    ta = list(a.parameters()) if isinstance(a, nn.Module) else list(a)
    tb = list(b.parameters()) if isinstance(b, nn.Module) else list(b)
    if len(ta) != len(tb) or any(u.shape != v.shape for u, v in zip(ta, tb)):
        raise ValueError("the two sets of tensors differ in number or shapes")
    return max((float((u.detach() - v.detach()).abs().max()) for u, v in zip(ta, tb)), default=0.0)


def chinchilla_tokens(n_params: float) -> float:
    """Hoffmann et al. (2022)'s compute-optimal rule of thumb: about 20 training tokens per parameter."""
    return 20.0 * float(require_number("n_params", n_params, low=0))


def training_days(n_params: float, tokens: float, *, gpus: int, flops_per_gpu: float, utilisation: float = 0.4) -> float:
    """Days of training for ``6 N D`` FLOPs on ``gpus`` devices of ``flops_per_gpu`` peak FLOP/s at the
    given model-FLOP utilisation (0.3-0.5 is typical of large runs)."""
    require_number("n_params", n_params, low=0)
    require_number("tokens", tokens, low=0)
    gpus = require_int("gpus", gpus, 1)
    require_number("flops_per_gpu", flops_per_gpu, low=0, low_open=True)
    require_number("utilisation", utilisation, 0, 1, low_open=True)
    return 6 * n_params * tokens / (gpus * flops_per_gpu * utilisation) / 86400



def fit_scaling_law(n: Sequence[float], d: Sequence[float], loss: Sequence[float], *,
                    confidence: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """Least-squares fit of Hoffmann et al.'s ``L(N, D) = E + A N^-alpha + B D^-beta`` to runs of
    several sizes ``n`` seen at several token counts ``d`` (one entry per measurement).

    Returns ``{"E", "A", "alpha", "B", "beta"}``, each ``(value, low, high)`` with intervals from the
    fit's covariance and Student's t with ``len(loss) - 5`` degrees of freedom (optimistic: the
    snapshots of one run are not independent). Needs at least 6 points.
    """
    from scipy.optimize import curve_fit
    from scipy.stats import t as student_t

    n, d, loss = (np.asarray(v, dtype=float) for v in (n, d, loss))
    if not (n.shape == d.shape == loss.shape) or n.ndim != 1 or len(n) < 6 or (n <= 0).any() or (d <= 0).any():
        raise ValueError(f"need equally long 1-D n, d, loss with at least 6 points and n, d > 0; "
                         f"got shapes {n.shape}, {d.shape}, {loss.shape}")
    require_number("confidence", confidence, 0, 1, low_open=True, high_open=True)
    n_scale, d_scale = float(np.median(n)), float(np.median(d))

    def law(nd, e, a, alpha, b, beta):
        return e + a * nd[0] ** -alpha + b * nd[1] ** -beta

    params, cov = curve_fit(law, np.stack([n / n_scale, d / d_scale]), loss, p0=[loss.min() * 0.9, 0.1, 0.3, 0.1, 0.3],
                            bounds=([0, 0, 0, 0, 0], [np.inf, np.inf, 5, np.inf, 5]), maxfev=20000)
    half = student_t.ppf(0.5 + confidence / 2, len(loss) - 5) * np.sqrt(np.diag(cov))
    e, a, alpha, b, beta = params
    out = {"E": (e, e - half[0], e + half[0]), "alpha": (alpha, alpha - half[2], alpha + half[2]),
           "beta": (beta, beta - half[4], beta + half[4])}
    out["A"] = tuple(v * n_scale ** alpha for v in (a, a - half[1], a + half[1]))
    out["B"] = tuple(v * d_scale ** beta for v in (b, b - half[3], b + half[3]))
    return out

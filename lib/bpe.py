"""Byte-level byte-pair encoding (BPE) from scratch: training, encoding, decoding, and a real tokenizer's merges.

A byte-level BPE tokenizer (GPT-2, Llama 3, SmolLM2) works in three steps:

1. **Pre-tokenize**: cut the text into chunks with a regular expression (``GPT2_SPLIT``: words with
   their leading space, runs of digits, runs of punctuation, white space), so that no token spans
   two words.
2. **Bytes**: write each chunk as its UTF-8 bytes, each byte shown as one printable character
   (``byte_alphabet``: GPT-2's table; the space byte is ``Ġ``). Any text, in any script, is then a
   sequence over 256 symbols: no unknown token is possible.
3. **Merge**: apply the learned merges in the order they were learned (their *rank*): repeatedly join
   the adjacent pair of lowest rank, until no learned pair is left. Each symbol left is a token.

``train_bpe`` learns the merges: start from bytes, count every adjacent pair in the corpus (a chunk
counted as often as it occurs), merge the most frequent pair everywhere, record it, repeat.
``BPE.from_tokenizer`` reads a Hugging Face byte-level tokenizer's vocabulary and merges, so the same
``encode`` runs with SmolLM2's 48,900 merges. ``TINY_CORPUS`` is a small English text written for the
course, to train on offline.
"""
from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache

import regex

from lib.validate import describe, require_int, require_texts

# GPT-2's pre-tokenizer pattern (also what the Hugging Face ByteLevel pre-tokenizer uses)
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_SPLIT = regex.compile(GPT2_SPLIT)

TINY_CORPUS = """\
A language model reads text as a sequence of tokens. The tokenizer turns the text into tokens, and the
model turns the tokens into the probabilities of the next token. The tokens are not letters and not
words: they are pieces of words, learned from the data. A frequent word is one token; a rare word is
cut into several pieces; a word that the tokenizer has never seen is still written with the pieces it
knows, down to single bytes if it must.
Byte-pair encoding learns the pieces. It starts from the bytes of the text and counts the pairs of
neighbouring symbols. The most frequent pair becomes a new symbol, and the counting starts again. The
first merges join the most frequent letters, such as t and h, or e and r; later merges join longer
pieces, such as the, ing, tion, and whole words. After a few thousand merges, the frequent words of the
training text are single tokens.
The same text costs a different number of tokens in different languages. A tokenizer trained mostly on
English text writes English words in few tokens, and other languages, numbers and code in more. The
model pays for every token: the time to generate the text, the memory of the cache, and the length of
the context all grow with the number of tokens.
The tokenizer of a pretrained model is fixed before the model is trained. The model learns an
embedding for every token in the vocabulary, and it can only read and write the tokens that the
vocabulary holds. Training the tokenizer is fast; training the model is not.
"""


@lru_cache(maxsize=None)
def byte_alphabet() -> dict[int, str]:
    """GPT-2's table from each byte value (0-255) to one printable character: printable Latin-1
    bytes stand for themselves; the others (controls, space) are shifted to U+0100 and above, so the
    space byte 32 is ``Ġ`` and the newline 10 is ``Ċ``."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shift = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def pretokenize(text: str) -> list[str]:
    """``text`` cut into chunks by ``GPT2_SPLIT`` (each word keeps its leading space)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {describe(text)}")
    return _SPLIT.findall(text)


def to_symbols(chunk: str) -> tuple[str, ...]:
    """A chunk's UTF-8 bytes, one ``byte_alphabet`` character each (``" the"`` -> ``('Ġ', 't', 'h', 'e')``)."""
    table = byte_alphabet()
    return tuple(table[b] for b in chunk.encode("utf-8"))


def _merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """``symbols`` with every non-overlapping occurrence of ``pair`` (left to right) joined into one."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


class BPE:
    """A byte-level BPE tokenizer given its ``merges`` (pairs of symbols, in rank order) and its
    ``vocab`` (symbol -> id; by default the 256 bytes in byte order, then one id per merge; a real
    tokenizer's vocabulary may leave out bytes that never occur in text).

    ``tokens(text)`` gives the symbols, ``encode(text)`` their ids, ``decode(ids)`` the text back
    (exactly: the symbols are bytes)."""

    def __init__(self, merges: list[tuple[str, str]], vocab: dict[str, int] | None = None):
        if not isinstance(merges, (list, tuple)) or not all(
                isinstance(m, (list, tuple)) and len(m) == 2 and all(isinstance(s, str) and s for s in m) for m in merges):
            raise TypeError(f"merges must be a list of pairs of non-empty strings, got {describe(merges)}")
        self.merges = [tuple(m) for m in merges]
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}
        if vocab is None:
            vocab = {s: i for i, s in enumerate(byte_alphabet().values())}
            for a, b in self.merges:
                vocab.setdefault(a + b, len(vocab))
        if not isinstance(vocab, dict):
            raise TypeError(f"vocab must be a dict symbol -> id, got {describe(vocab)}")
        self.vocab = vocab
        self.inverse = {i: s for s, i in vocab.items()}
        self._bytes = {c: b for b, c in byte_alphabet().items()}
        self._cache: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self.vocab)

    def segment(self, chunk: str) -> tuple[str, ...]:
        """One pre-tokenized chunk as symbols: start from its bytes and join the adjacent pair of lowest
        rank until no pair of the merges is left."""
        if chunk not in self._cache:
            symbols = to_symbols(chunk)
            while len(symbols) > 1:
                pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
                best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
                if best not in self.ranks:
                    break
                symbols = _merge_pair(symbols, best)
            self._cache[chunk] = symbols
        return self._cache[chunk]

    def tokens(self, text: str) -> list[str]:
        """The token symbols of ``text`` (``Ġ`` marks a space)."""
        return [s for chunk in pretokenize(text) for s in self.segment(chunk)]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        symbols = self.tokens(text)
        unknown = [s for s in symbols if s not in self.vocab]
        if unknown:  # a real vocabulary may leave out bytes that never occur in text (control bytes)
            raise ValueError(f"symbols not in the vocabulary: {unknown[:5]}")
        return [self.vocab[s] for s in symbols]

    def decode(self, ids: list[int]) -> str:
        """The text of token ids (invalid UTF-8, from a cut inside a character, becomes U+FFFD)."""
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise TypeError(f"ids must be a list of ints, got {describe(ids)}")
        ids = [int(i) for i in ids]
        unknown = [i for i in ids if i not in self.inverse]
        if unknown:
            raise ValueError(f"ids not in the vocabulary (size {len(self)}): {unknown[:5]}")
        data = bytes(self._bytes[c] for i in ids for c in self.inverse[i])
        return data.decode("utf-8", errors="replace")

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "BPE":
        """The merges and vocabulary of a Hugging Face byte-level BPE tokenizer (``tokenizer`` from
        ``AutoTokenizer``, or its ``backend_tokenizer``): our ``encode`` with its merges."""
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        if not hasattr(backend, "to_str"):
            raise TypeError(f"tokenizer must be a Hugging Face fast tokenizer, got {describe(tokenizer)}")
        spec = json.loads(backend.to_str())["model"]
        if spec.get("type") != "BPE":
            raise ValueError(f"not a BPE tokenizer: its model is {spec.get('type')!r}")
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
        return cls(merges, dict(spec["vocab"]))


def train_bpe(texts: list[str], num_merges: int) -> tuple[BPE, list[tuple[tuple[str, str], int]]]:
    """Learn ``num_merges`` merges from ``texts``; return the tokenizer and the history
    ``[(pair, count), ...]`` of what each step merged and how often the pair occurred.

    Each step counts every adjacent pair of symbols over the distinct chunks (weighted by how often
    each chunk occurs), merges the most frequent pair everywhere (ties: the pair that comes first in
    sorted order), and records it. Stops early when no pair occurs twice."""
    require_texts("texts", texts)
    require_int("num_merges", num_merges, 0)
    words = Counter(to_symbols(chunk) for text in texts for chunk in pretokenize(text))
    history: list[tuple[tuple[str, str], int]] = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best_count = max(pairs.values())
        if best_count < 2:
            break
        best = min(p for p, c in pairs.items() if c == best_count)
        history.append((best, best_count))
        merged: Counter = Counter()
        for symbols, count in words.items():
            merged[_merge_pair(symbols, best) if best[0] in symbols else symbols] += count
        words = merged
    return BPE([pair for pair, _ in history]), history

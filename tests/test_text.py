import numpy as np
import pytest
import torch

from lib import text


def test_census_lists_complete():
    records = text.load_names()
    counts = {s: sum(r.source == s for r in records) for s in text.SOURCES}
    assert counts == {"female": 4275, "male": 1219, "last": 88799}
    assert records[0] == text.NameRecord("mary", "female", 2.629)


def test_splits_disjoint_consistent_across_kinds_and_deterministic():
    train, val, test = (set(text.names_split("all", s)) for s in ("train", "val", "test"))
    assert not train & test and not train & val and not val & test
    assert set(text.names_split("first", "test")) <= test  # a name keeps its split whatever the kind
    # deterministic across runs and machines (no set order, no unseeded draw): pinned, as the notebooks' outputs are
    assert text.names_split("male", "val")[:5] == ["ulysses", "gabriel", "silas", "bradford", "elden"]
    assert text.names_split("male", "val", seed=1)[:5] != text.names_split("male", "val")[:5]
    total = sum(len(text.names_split("all", s)) for s in ("train", "val", "test"))
    assert total == len({r.name for r in text.load_names()})


def test_bad_kind_and_split():
    with pytest.raises(ValueError, match="kind must be one of"):
        text.names_split("middle")
    with pytest.raises(ValueError, match="split must be one of"):
        text.names_split("all", "dev")


def test_vocab_round_trip_and_specials():
    v = text.CharVocab()
    assert len(v) == 29 and (v.pad, v.bos, v.mask) == (0, 1, 2)
    ids = v.encode("emma")
    assert ids[0] == ids[-1] == v.bos and v.decode(ids) == "emma"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        v.encode("Émile")
    batch = v.batch(["al", "emma"])
    assert batch.shape == (2, 6) and batch[0, -1] == v.pad
    with pytest.raises(ValueError, match="more than length"):
        v.batch(["christopher"], length=5)


def test_lm_tensors_shift_and_ignore_padding():
    v = text.CharVocab()
    x, y = text.lm_tensors(["ab", "abcd"], v)
    assert x.shape == y.shape == (2, 5)
    assert torch.equal(x[1, 1:], y[1, :-1])
    assert y[0, -1] == -100 and y[0, 2] == v.bos


def test_vocab_rejects_bad_ids_and_bare_strings():
    vocab = text.CharVocab()
    with pytest.raises(ValueError, match=r"ids must be ints in \[0, 29\); got -1"):
        vocab.decode([3, -1])  # -1 used to decode silently as "z"
    with pytest.raises(ValueError, match="1-D"):
        vocab.decode(torch.zeros(2, 3, dtype=torch.long))
    assert vocab.decode([np.int64(3), 4]) == "ab"
    with pytest.raises(TypeError, match="texts must be a list of strings"):
        vocab.batch("emma")  # used to give four one-letter names
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        text.names_split("first", "train", seed=0.5)

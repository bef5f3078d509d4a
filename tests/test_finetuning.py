"""Tests for lib.finetuning: the labelled task, balanced subsets, class weights, the classifier
head's pooling and the Keras head."""
import pytest
import torch
import torch.nn.functional as F

from lib.finetuning import (Classifier, balanced_subset, class_weighted_ce, encode_features, finetune,
                            name_kind_task, predict_labels)
from lib.text import load_names
from lib.text import CharVocab
from lib.transformer import Encoder


def test_pooling_reads_the_right_positions():
    torch.manual_seed(0)
    enc = Encoder(29, d_model=8, n_heads=2, n_layers=1, max_len=16).eval()
    ids = CharVocab().batch(["ann", "bo"], length=10)
    hidden = enc(ids[:, :5], ids[:, :5] == 0)
    last = Classifier(enc, 2, pooling="last").features(ids)
    assert torch.allclose(last[0], hidden[0, 4], atol=1e-6) and torch.allclose(last[1], hidden[1, 3], atol=1e-6)
    assert torch.allclose(Classifier(enc, 2, pooling="first").features(ids), hidden[:, 0], atol=1e-6)
    mean = Classifier(enc, 2, pooling="mean").features(ids)
    assert torch.allclose(mean[1], hidden[1, :4].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        Classifier(enc, 2, pooling="max")
    with pytest.raises(TypeError, match="int64"):
        Classifier(enc, 2)(ids.float())


def test_class_weighted_ce_balances_classes():
    labels = torch.tensor([0, 0, 0, 1])
    loss_fn = class_weighted_ce(labels, 2)
    logits = torch.randn(4, 2)
    w = torch.tensor([4 / 6, 4 / 2])
    assert torch.allclose(loss_fn(logits, labels), F.cross_entropy(logits, labels, weight=w))
    balanced = torch.tensor([0, 1, 0, 1])
    assert torch.allclose(class_weighted_ce(balanced, 2)(logits, balanced), F.cross_entropy(logits, balanced))


def test_name_kind_task_and_balanced_subset():
    names, ids, labels = name_kind_task("test")
    assert len(names) == len(labels) == len(ids) and torch.bincount(labels).tolist() == [313, 313]
    first = {r.name for r in load_names() if r.source != "last"}
    last = {r.name for r in load_names() if r.source == "last"}
    assert all((n in first) != (n in last) for n in names)           # never on both kinds of list
    assert all((n in last) == bool(y) for n, y in zip(names, labels.tolist()))
    assert "james" not in names and "jordan" not in names
    train_names, _, train_labels = name_kind_task("train")
    assert not set(names) & set(train_names) and int((train_labels == 0).sum()) == 2510
    assert name_kind_task("test")[0] == names and name_kind_task("test", seed=1)[0] != names
    idx = balanced_subset(labels, 32, seed=0)
    assert len(idx) == 32 and len(set(idx.tolist())) == 32
    assert torch.bincount(labels[idx]).tolist() == [16, 16]
    assert torch.equal(idx, balanced_subset(labels, 32, seed=0))
    assert not torch.equal(idx, balanced_subset(labels, 32, seed=1))
    assert set(idx.tolist()) <= set(balanced_subset(labels, 128, seed=0).tolist())  # nested with one seed
    skewed = labels[:400]  # 313 first names, 87 surnames: fill from the larger class
    big = balanced_subset(skewed, 300, seed=0)
    assert len(big) == 300 and int((skewed[big] == 1).sum()) == 87
    assert len(balanced_subset(labels, 10**6)) == len(labels)
    with pytest.raises(ValueError, match="positive"):
        balanced_subset(labels, 0)


def test_labels_batch_sizes_and_counts_are_checked():
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\)"):
        class_weighted_ce(torch.tensor([0, 1, 2]), 2)  # used to fail later inside cross_entropy
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        class_weighted_ce(torch.tensor([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="n must be a positive int"):
        balanced_subset(torch.tensor([0, 1, 0, 1]), True)
    torch.manual_seed(0)
    model = Classifier(Encoder(len(CharVocab()), d_model=16, n_heads=2, n_layers=1, max_len=8))
    ids = CharVocab().batch(["anna", "bob"], length=8)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        encode_features(model, ids, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        predict_labels(model, ids, batch_size=-1)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        finetune(model, ids, torch.tensor([0, 1]), epochs=1, batch_size=0, bucket=True)
    with pytest.raises(ValueError, match="dropout must be a number in"):
        Classifier(model.encoder, dropout=1.0)


def test_module_helpers_refuse_non_modules():
    from lib.finetuning import freeze
    from lib.train import count_parameters

    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        freeze(torch.zeros(3))  # used to raise AttributeError
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        count_parameters([torch.zeros(3)])

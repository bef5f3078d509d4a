"""Tests for lib.pretrained: MiniLM found and loaded offline, embeddings, the fine-tuning helpers."""
import os
import socket

import pytest
import torch

from lib import pretrained


@pytest.fixture(scope="module")
def loaded():
    with pytest.MonkeyPatch.context() as mp:  # the root conftest sets both to 1: only load_minilm may, here
        mp.setenv("HF_HUB_OFFLINE", "0")
        mp.setenv("TRANSFORMERS_OFFLINE", "0")
        tokenizer, model = pretrained.load_minilm()
        _, classifier = pretrained.load_minilm(num_labels=2)
        offline = os.environ["HF_HUB_OFFLINE"], os.environ["TRANSFORMERS_OFFLINE"]
    return tokenizer, model, classifier, offline


def test_minilm_dir_holds_the_model_files():
    folder = pretrained.minilm_dir()
    assert folder.name == "model" and folder.parent.name == pretrained.PACKAGE
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json"):
        assert (folder / name).is_file()


def test_no_network_blocks_connections_and_restores_them():
    original = socket.socket.connect
    with pretrained.no_network():
        with pytest.raises(pretrained.NetworkBlocked):
            socket.create_connection(("huggingface.co", 443), timeout=1)
        with pytest.raises(pretrained.NetworkBlocked):
            socket.socket().connect(("127.0.0.1", 9))
        with pytest.raises(pretrained.NetworkBlocked):
            socket.getaddrinfo("huggingface.co", 443)
    assert socket.socket.connect is original


def test_loads_offline_with_the_expected_size(loaded):
    tokenizer, model, classifier, offline = loaded
    assert offline == ("1", "1")
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert sum(p.numel() for p in classifier.parameters()) == 22_713_216 + 384 * 2 + 2
    assert not model.training and model.config.num_hidden_layers == 6
    assert tokenizer.tokenize("emma hernandez") == ["emma", "hernandez"]
    assert tokenizer.tokenize("zbigniew")[0] == "z" and len(tokenizer.tokenize("zbigniew")) > 1
    with pytest.raises(ValueError, match="num_labels"):
        pretrained.load_minilm(num_labels=1)


def test_eager_attention_is_returned(loaded):
    tokenizer, model, _, _ = loaded
    enc = tokenizer(["the cat sat"], return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    t = enc["input_ids"].shape[1]
    assert len(out.attentions) == 6 and out.attentions[0].shape == (1, 12, t, t)
    assert torch.allclose(out.attentions[3].sum(-1), torch.ones(1, 12, t), atol=1e-5)


def test_mean_pool_and_embed_ignore_padding(loaded):
    tokenizer, model, _, _ = loaded
    hidden = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    pooled = pretrained.mean_pool(hidden, mask)
    assert torch.allclose(pooled[0], hidden[0, :2].mean(0)) and torch.allclose(pooled[1], hidden[1].mean(0))
    with pytest.raises(ValueError, match="attention_mask"):
        pretrained.mean_pool(hidden, mask[:, :3])
    alone = pretrained.embed(tokenizer, model, ["a cat"])
    padded = pretrained.embed(tokenizer, model, ["a much longer sentence about dogs and cats", "a cat"])
    assert alone.shape == (1, 384) and torch.allclose(alone[0], padded[1], atol=1e-5)
    assert torch.allclose(padded.norm(dim=1), torch.ones(2), atol=1e-5)
    cat, kitten, stocks = pretrained.embed(tokenizer, model, ["A cat sleeps.", "A kitten naps.", "Stocks fell."])
    assert cat @ kitten > cat @ stocks
    with pytest.raises(TypeError, match="list of strings"):
        pretrained.tokenize(tokenizer, "emma")


def test_fresh_classifier_freezes_and_finetuning_moves_only_the_top(loaded):
    tokenizer, _, classifier, _ = loaded
    a = pretrained.fresh_classifier(classifier, seed=0, train_layers=2)
    b = pretrained.fresh_classifier(classifier, seed=0, train_layers=2)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    other = pretrained.fresh_classifier(classifier, seed=1, train_layers=2)
    assert not torch.equal(a.classifier.weight, other.classifier.weight)  # the head is new, drawn from the seed
    assert not a.bert.embeddings.word_embeddings.weight.requires_grad
    assert not any(p.requires_grad for p in a.bert.encoder.layer[3].parameters())
    assert all(p.requires_grad for p in a.bert.encoder.layer[4].parameters())
    full = pretrained.fresh_classifier(classifier, seed=0)
    assert all(p.requires_grad for p in full.bert.encoder.layer[0].parameters())
    assert not full.bert.embeddings.word_embeddings.weight.requires_grad

    names = ["emma", "olivia", "mary", "james", "john", "robert"]
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    ids, mask = pretrained.tokenize(tokenizer, names)
    model = pretrained.finetune_minilm(classifier, ids, mask, labels, epochs=1, batch_size=3, lr=1e-3,
                                       seed=0, train_layers=1, device="cpu")
    assert torch.equal(model.bert.encoder.layer[4].output.dense.weight,
                       classifier.bert.encoder.layer[4].output.dense.weight)
    assert not torch.equal(model.bert.encoder.layer[5].output.dense.weight,
                           classifier.bert.encoder.layer[5].output.dense.weight)
    assert not model.training
    predictions = pretrained.predict_classes(model, ids, mask, batch_size=4)
    assert predictions.shape == (6,) and set(predictions.tolist()) <= {0, 1}
    with torch.no_grad():
        logits = pretrained.LogitsOnly(model)(ids, mask)
    assert logits.shape == (6, 2)
    assert torch.equal(predictions, logits.argmax(1))  # predict_classes = the argmax of the logits
    with pytest.raises(ValueError, match="labels"):
        pretrained.finetune_minilm(classifier, ids, mask, labels[:3], epochs=1)


def test_batch_sizes_and_layer_counts_are_checked():
    ids, mask = torch.ones(3, 4, dtype=torch.long), torch.ones(3, 4, dtype=torch.long)
    for bad in (0, -1):  # -1 used to return torch.empty's uninitialised memory as "predictions"
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            pretrained.predict_classes(torch.nn.Linear(1, 1), ids, mask, batch_size=bad)
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(N, T\) = \(3, 4\)"):
        pretrained.predict_classes(torch.nn.Linear(1, 1), ids, mask[:, :2])
    with pytest.raises(ValueError, match="train_layers must be a non-negative int"):
        pretrained.fresh_classifier(torch.nn.Linear(1, 1), train_layers=-1)  # used to freeze everything
    with pytest.raises(TypeError, match="texts must be a list of strings"):
        pretrained.tokenize(None, "emma")
    with pytest.raises(ValueError, match="max_length must be a positive int"):
        pretrained.tokenize(None, ["emma"], max_length=0)


def test_logits_only_needs_a_real_token():
    wrapper = pretrained.LogitsOnly(torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="no real token"):
        wrapper(torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))

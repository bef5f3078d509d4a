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


def test_top_layers_on_hidden_states_equal_the_whole_encoder(loaded):
    tokenizer, model, _, _ = loaded
    ids, mask = pretrained.tokenize(tokenizer, ["a dull, lifeless film.", "one of the best movies of the year, by far"],
                                    max_length=64)
    h4, h6 = pretrained.hidden_states(model, ids, mask, layers=(4, 6))
    assert h4.shape == h6.shape == (2, ids.shape[1], 384) and float(h6[0, int(mask[0].sum()):].abs().sum()) == 0
    with torch.no_grad():
        whole = model(input_ids=ids, attention_mask=mask).last_hidden_state
        top = pretrained.TopLayers(model, 4, seed=0).eval()
        assert torch.allclose(top.features(h4, mask), pretrained.mean_pool(whole, mask), atol=1e-4)
        probe = pretrained.TopLayers(model, 6, seed=0).eval()          # no layer: the sentence embedding
        assert len(probe.layers) == 0 and torch.allclose(probe.features(h6, mask), top.features(h4, mask), atol=1e-4)
    assert torch.equal(top.head.weight, pretrained.TopLayers(model, 5, seed=0).head.weight)
    assert not torch.equal(top.head.weight, pretrained.TopLayers(model, 5, seed=1).head.weight)


def test_finetune_minilm_trains_only_the_top_layers(loaded):
    tokenizer, model, _, _ = loaded
    texts = ["a wonderful, moving film", "great fun", "a masterpiece", "dull and lifeless", "a mess", "boring"]
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    ids, mask = pretrained.tokenize(tokenizer, texts)
    h5, = pretrained.hidden_states(model, ids, mask, layers=(5,))
    before = model.encoder.layer[5].output.dense.weight.detach().clone()
    tuned = pretrained.finetune_minilm(model, h5, mask, labels, from_layer=5, epochs=3, batch_size=3, lr=1e-3,
                                       seed=0, device="cpu")
    assert torch.equal(model.encoder.layer[5].output.dense.weight, before)          # the loaded model is untouched
    assert not torch.equal(tuned.layers[0].output.dense.weight, before) and not tuned.training
    again = pretrained.finetune_minilm(model, h5, mask, labels, from_layer=5, epochs=3, batch_size=3, lr=1e-3,
                                       seed=0, device="cpu")
    assert torch.equal(tuned.head.weight, again.head.weight)                          # seeded: reproducible
    predictions = pretrained.predict_classes(tuned, h5, mask, batch_size=4)
    with torch.no_grad():
        assert torch.equal(predictions, tuned(h5, mask).argmax(1))
    with pytest.raises(ValueError, match="labels"):
        pretrained.finetune_minilm(model, h5, mask, labels[:3], from_layer=5, epochs=1)
    with pytest.raises(ValueError, match="from_layer"):
        pretrained.TopLayers(model, 7)
    with pytest.raises(TypeError, match="TopLayers"):
        pretrained.predict_classes(model, h5, mask)


def test_movie_reviews_split_by_movie_without_repeats():
    splits = {s: pretrained.movie_reviews(s) for s in ("train", "val", "test")}
    sizes = {s: len(t) for s, (t, _) in splits.items()}
    assert sizes == {"train": 10234, "val": 1204, "test": 1314} and sum(sizes.values()) == 12808 - 56
    texts = [t for ts, _ in splits.values() for t in ts]
    assert len(set(texts)) == len(texts)
    rows = pretrained._review_rows()
    where = {s: {m for t, _, m in rows if t in set(splits[s][0])} for s in splits}
    assert not where["train"] & where["test"] and not where["val"] & where["test"] and not where["train"] & where["val"]
    assert len(where["test"]) == 52  # 508 movies: 406 train, 50 val, 52 test
    _, labels = splits["test"]
    assert set(labels.tolist()) == {0, 1}
    assert pretrained.REVIEW_CLASSES[1].startswith("fresh")


def test_batch_sizes_and_layer_counts_are_checked():
    ids, mask = torch.ones(3, 4, dtype=torch.long), torch.ones(3, 4, dtype=torch.long)
    for bad in (0, -1):  # -1 used to return torch.empty's uninitialised memory as "predictions"
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            list(pretrained._length_sorted_batches(mask, bad))
    with pytest.raises(TypeError, match="texts must be a list of strings"):
        pretrained.tokenize(None, "emma")
    with pytest.raises(ValueError, match="max_length must be a positive int"):
        pretrained.tokenize(None, ["emma"], max_length=0)

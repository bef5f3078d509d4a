"""Tests for lib.mlm: the 80/10/10 masking, the loss on masked positions only, pretraining, and that
a frozen (pretrained) encoder does not change when its classifier is trained."""
import pytest
import torch
import torch.nn.functional as F

from lib.finetuning import Classifier, finetune, freeze, linear_probe, name_kind_task, unfreeze
from lib.train import count_parameters
from lib.mlm import (IGNORE, MaskedLM, evaluate_mlm, fill_masks, length_buckets, mask_tokens, mlm_loss, pretrain,
                     trim_padding)
from lib.text import CharVocab
from lib.transformer import Encoder

V = 29


def tiny_encoder(seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    return Encoder(V, d_model=16, n_heads=2, n_layers=1, max_len=16)


def test_mask_rates_follow_80_10_10():
    ids = torch.randint(3, V, (400, 50))
    ids[:, -10:] = 0                                        # padding is never chosen
    ids[:, 0] = 1                                           # nor boundaries
    g = torch.Generator().manual_seed(0)
    inputs, targets = mask_tokens(ids, V, rate=0.15, generator=g)
    eligible = ids >= 3
    chosen = targets != IGNORE
    assert not chosen[~eligible].any()
    assert abs(chosen.sum().item() / eligible.sum().item() - 0.15) < 0.01
    assert torch.equal(targets[chosen], ids[chosen])
    masked = chosen & (inputs == 2)
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.02
    # a random letter that happens to equal the original looks "kept": 10% + 10%/26 of chosen
    changed = chosen & (inputs != 2) & (inputs != ids)
    assert abs(changed.sum().item() / chosen.sum().item() - 0.1 * 25 / 26) < 0.015
    kept = chosen & (inputs == ids)
    assert abs(kept.sum().item() / chosen.sum().item() - (0.1 + 0.1 / 26)) < 0.015
    assert torch.equal(inputs[~chosen], ids[~chosen])       # unchosen positions are untouched
    assert inputs[chosen & (inputs != 2)].min() >= 3        # random replacements are letters


def test_mask_tokens_is_seeded_and_validates():
    ids = torch.randint(3, V, (8, 10))
    a = mask_tokens(ids, V, generator=torch.Generator().manual_seed(1))
    b = mask_tokens(ids, V, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(TypeError, match="int64"):
        mask_tokens(ids.float(), V)
    with pytest.raises(ValueError, match="rate"):
        mask_tokens(ids, V, rate=0.0)


def test_mlm_loss_ignores_unmasked_positions():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, V, requires_grad=True)
    targets = torch.full((3, 5), IGNORE)
    targets[0, 1], targets[2, 3] = 7, 12
    loss = mlm_loss(logits, targets)
    by_hand = -(logits[0, 1].log_softmax(-1)[7] + logits[2, 3].log_softmax(-1)[12]) / 2
    assert torch.allclose(loss, by_hand)
    loss.backward()
    carries = logits.grad.abs().sum(-1) > 0
    assert carries.sum() == 2 and carries[0, 1] and carries[2, 3]
    # changing the logits at an unmasked position does not change the loss
    other = logits.detach().clone()
    other[1] += 100.0
    assert torch.allclose(mlm_loss(other, targets), loss)


def test_mlm_loss_with_nothing_masked_is_zero_not_nan():
    logits = torch.randn(2, 4, V, requires_grad=True)
    loss = mlm_loss(logits, torch.full((2, 4), IGNORE))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    with pytest.raises(ValueError, match="logits"):
        mlm_loss(torch.randn(2, 4), torch.zeros(2, 4, dtype=torch.long))


def test_trim_padding_changes_nothing():
    vocab = CharVocab()
    ids = vocab.batch(["ann", "bo"], length=12)
    enc = tiny_encoder().eval()
    clf = Classifier(enc, 2).eval()
    short, = trim_padding(ids)
    assert short.shape == (2, 5)
    full = enc(ids, ids == 0)[:, :5]
    assert torch.allclose(enc(short, short == 0), full, atol=1e-6)
    assert torch.allclose(clf(ids), clf(short), atol=1e-6)


def test_shapes_and_frozen_encoder_does_not_change():
    vocab = CharVocab()
    names, ids, labels = name_kind_task("val", vocab, length=15)
    ids, labels = ids[256:320], labels[256:320]  # both classes
    mlm = MaskedLM(tiny_encoder())
    assert mlm(ids).shape == (64, 15, V)
    clf = Classifier(mlm.encoder, 2)
    assert clf(ids).shape == (64, 2)
    before = {k: v.clone() for k, v in clf.encoder.state_dict().items()}
    head_before = clf.head.weight.detach().clone()
    linear_probe(clf, ids, labels, epochs=2, device="cpu")
    assert all(torch.equal(v, clf.encoder.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(head_before, clf.head.weight)
    assert count_parameters(clf, trainable_only=True) == 16 * 2 + 2
    # full fine-tuning of a frozen encoder still leaves it alone; unfreezing lets it move
    finetune(clf, ids, labels, epochs=1, device="cpu")
    assert all(torch.equal(v, clf.encoder.state_dict()[k]) for k, v in before.items())
    unfreeze(clf.encoder)
    finetune(clf, ids, labels, epochs=1, device="cpu")
    assert not torch.equal(before["tok.weight"], clf.encoder.state_dict()["tok.weight"])
    assert freeze(clf) is clf and count_parameters(clf, trainable_only=True) == 0


def test_pretrain_lowers_the_loss_and_is_deterministic():
    vocab = CharVocab()
    ids = vocab.batch(["anna", "emma", "hannah", "ava", "bob", "otto"] * 40, length=8)
    runs = []
    for _ in range(2):
        model = MaskedLM(tiny_encoder())
        history = pretrain(model, ids, epochs=6, batch_size=32, lr=1e-2, rate=0.3, seed=0,
                           device="cpu", progress=False)
        runs.append(history.steps["train_loss"])
    assert runs[0] == runs[1] and len(runs[0]) == len(history.steps["lr"]) == 6 * 8
    assert len(history["train_loss"]) == 6 and "train_accuracy" in history
    losses = runs[0]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    guesses = fill_masks(model, "h*nnah", vocab, top_k=3)
    assert guesses[0][0] == 1 and len(guesses[0][1]) == 3
    assert all(letter in "abcdefghijklmnopqrstuvwxyz" for letter, _ in guesses[0][1])
    with pytest.raises(ValueError, match=r"\*"):
        fill_masks(model, "hannah", vocab)


def test_length_buckets_cover_every_row_once_with_little_padding():
    vocab = CharVocab()
    names = [("a" * k) for k in range(2, 14)] * 50
    ids = vocab.batch(names, length=15)
    batches = length_buckets(ids, 32, torch.Generator().manual_seed(0), window=4)
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(len(names)))
    plain = sum(trim_padding(ids[b])[0].shape[1] for b in torch.randperm(len(names)).split(32))
    bucketed = sum(trim_padding(ids[b])[0].shape[1] for b in batches)
    assert bucketed < 0.85 * plain
    again = length_buckets(ids, 32, torch.Generator().manual_seed(0), window=4)
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


def test_evaluate_mlm_topk_and_eval_mode():
    vocab = CharVocab()
    ids = vocab.batch(["anna", "emma", "otto"] * 20, length=8)
    model = MaskedLM(tiny_encoder()).train()
    loss, top1 = evaluate_mlm(model, ids, seed=0)
    _, top3 = evaluate_mlm(model, ids, seed=0, top_k=3)
    _, top_all = evaluate_mlm(model, ids, seed=0, top_k=V)
    assert model.training and loss > 0 and 0 <= top1 <= top3 <= top_all == 1.0
    assert evaluate_mlm(model, ids, seed=0) == (loss, top1)


class _Copier(MaskedLM):
    """Predicts the token it sees: right at every chosen-but-unchanged position, wrong at every hidden one."""

    def forward(self, ids):
        return 10.0 * F.one_hot(ids, V).float()


def test_masked_accuracy_leaves_out_the_unchanged_positions():
    from lib.mlm import hidden_positions, mlm_step

    ids = CharVocab().batch(["anna", "emma", "otto", "hannah"] * 50, length=8)
    inputs, targets = mask_tokens(ids, V, rate=0.5, generator=torch.Generator().manual_seed(0))
    hidden = hidden_positions(inputs, targets)
    chosen = targets != IGNORE
    assert bool((inputs[hidden] != ids[hidden]).all()) and 0 < int((chosen & ~hidden).sum()) < int(hidden.sum())
    copier = _Copier(tiny_encoder())
    _, accuracy = evaluate_mlm(copier, ids, rate=0.5, seed=0)
    assert accuracy == 0.0  # copying the input scores nothing; counting kept letters would give about 10%
    assert mlm_step(copier, (inputs, targets))["accuracy"] == 0.0


def test_evaluate_mlm_and_pretrain_check_their_arguments():
    model = MaskedLM(tiny_encoder())
    ids = CharVocab().batch(["anna", "emma", "olivia"], length=10)
    for bad in (-5, 0):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            evaluate_mlm(model, ids, batch_size=bad)  # -5 used to return (0.0, 0.0)
    with pytest.raises(ValueError, match=r"top_k must be an int in \[1, 29\]"):
        evaluate_mlm(model, ids, top_k=0)
    with pytest.raises(ValueError, match="was masked"):
        evaluate_mlm(model, ids[:0])  # nothing to evaluate: no silent 0.0
    with pytest.raises(ValueError, match="empty"):
        pretrain(model, ids[:0], progress=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        pretrain(model, ids, batch_size=0, progress=False)
    with pytest.raises(TypeError, match="lib.mlm.MaskedLM"):
        evaluate_mlm(tiny_encoder(), ids)
    with pytest.raises(ValueError, match="rate must be a number in \\(0, 1\\]"):
        mask_tokens(ids, V, rate=float("nan"))
    with pytest.raises(ValueError, match=r"others\[0\] must have the shape of ids"):
        trim_padding(ids, ids[:, :3])

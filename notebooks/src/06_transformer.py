# %% [markdown]
# # 06 · Attention and the Transformer
#
# A recurrent network squeezes everything it has read into a fixed-size state and passes it on step by
# step. **Attention** (注意力) lets every position look *directly* at every other one and take what it
# needs. Stacking attention with small MLPs gives the **Transformer** (自注意力 + 前馈网络), the
# architecture behind today's large language models.
#
# **You will learn to**
# - see attention as a *soft* dictionary look-up, and write scaled dot-product attention with padding
#   and causal masks, equal to `F.scaled_dot_product_attention`;
# - build multi-head attention equal to `nn.MultiheadAttention`, and a pre-norm Transformer block;
# - give a Transformer a sense of order with sinusoidal and learned positional encodings;
# - train an encoder–decoder Transformer to reverse sequences and read its attention maps;
# - train a GPT-style language model on names and compare it fairly with chapter 05's LSTM;
# - find, and measure, a task where attention beats recurrence — every input must be held until the
#   output needs it — and tell its likely cause (a recurrent state of fixed size) from the other
#   differences (path length, parallel training) and from what attention costs as sequences grow;
# - choose between MLP, CNN, GRU and Transformer on MNIST-1D by validation accuracy;
# - write the same block with Keras' `MultiHeadAttention`.

# %%
import math
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import lib.plot  # noqa: F401  (course-wide figure size and dpi)
from lib import check, results
from lib.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention, sinusoidal_positions
from lib.data import make_loader, mnist1d, sequence_task
from lib.device import seed_everything, setup_notebook
from lib.lm import BigramLM, lm_loss, nll_per_char, sample, train_lm
from lib.rnn import CharRNN
from lib.text import CharVocab, names_split
from lib.recipes import adamw, cosine
from lib.train import count_parameters, eval_mode, evaluate, fit
from lib.transformer import GPT, Block, Seq2Seq, TransformerConfig, as_language_model, target_correct
from lib.widgets import InteractiveFigure

device = setup_notebook(seed=0)

# %% [markdown]
# ## 1. Attention is a soft dictionary look-up
#
# A Python dictionary maps a **query** to the **value** whose **key** equals it exactly. Attention
# does the same with vectors, softly: it scores the query $q$ against every key $k_j$ with a dot
# product, turns the scores into weights with a softmax, and returns the weighted average of the
# values:
# $$\text{weights}_j = \frac{e^{q\cdot k_j / \sqrt d}}{\sum_{j'} e^{q \cdot k_{j'}/\sqrt d}}, \qquad
#   \text{output} = \sum_j \text{weights}_j \, v_j ,$$
# where $d$ is the number of components of $q$ and of each key (section 2 explains the $\sqrt d$).
# A key close to the query gets most of the weight; nothing is ever exactly 0, so gradients reach
# every key and value. Here are four keys pointing east, north, west and south, with values
# 10, 20, 30, 40:

# %%
keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
values = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
query = torch.tensor([[2.0, 1.0]])  # mostly east, a little north
hard = values[(query @ keys.T).argmax()]
weights = torch.softmax(query @ keys.T / math.sqrt(2), dim=-1)
print("hard look-up :", hard.item())
print("soft weights :", [round(float(w_), 3) for w_ in weights[0]])
print("soft look-up :", round((weights @ values).item(), 2))

# %%
angles = torch.linspace(0, 2 * math.pi, 200)
queries = 3 * torch.stack([angles.cos(), angles.sin()], dim=1)
w = torch.softmax(queries @ keys.T / math.sqrt(2), dim=-1)
fig, ax = plt.subplots(figsize=(6, 3.5))
for j, name in enumerate(["east (10)", "north (20)", "west (30)", "south (40)"]):
    ax.plot(angles, w[:, j], label=f"key {name}")
ax.set(xlabel="direction of the query (radians)", ylabel="attention weight",
       title="Weights move smoothly as the query turns")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))   # outside: it would hide a crossing
plt.show()

# %% [markdown]
# ## 2. Scaled dot-product attention, from scratch
#
# With many queries at once, stack them as rows of $Q$ ($T \times d$), keys as rows of $K$
# ($S \times d$) and values as rows of $V$ ($S \times d_v$):
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\Big(\frac{Q K^\top}{\sqrt d}\Big) V .$$
# **Why divide by $\sqrt d$?** If the entries of $q$ and $k$ are independent with mean 0 and variance 1, then
# $q \cdot k$ is a sum of $d$ such products and has standard deviation $\sqrt d$: without the scale,
# long vectors give huge scores, the softmax saturates to one-hot and its gradient vanishes.

# %%
gen = torch.Generator().manual_seed(0)  # its own generator: the same draws however often the cell runs
for d in (4, 64, 1024):
    q_, k_ = torch.randn(2, 20000, d, generator=gen).unbind(0)
    print(f"d = {d:4d}: std of q·k = {(q_ * k_).sum(1).std():6.1f}   sqrt(d) = {math.sqrt(d):5.1f}")

# %% [markdown]
# **Masks** say which keys a query may use. A **padding mask** hides the padding tokens that fill
# short sequences in a batch. A **causal mask** lets position $t$ see only positions $\le t$: a
# language model must not peek at the character it is asked to predict. Masked scores are set to
# $-\infty$, so that $e^{-\infty} = 0$ gives them exactly zero weight.

# %%
def scaled_dot_product_attention_scratch(q, k, v, allowed=None):
    """q: (..., T, d), k: (..., S, d), v: (..., S, dv); allowed: bool, True = may attend."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


torch.manual_seed(0)
B, H, T, d = 2, 3, 6, 8
q, k, v = torch.randn(3, B, H, T, d).unbind(0)
is_pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])   # the 2nd sequence has 4 real tokens
padding_allowed = ~is_pad[:, None, None, :]                        # (B, 1, 1, T): broadcast over heads, queries
causal_allowed = torch.ones(T, T, dtype=torch.bool).tril()         # (T, T): key j <= query t
same_torch = True
for allowed in (None, padding_allowed, causal_allowed, padding_allowed & causal_allowed):
    mine, w_mine = scaled_dot_product_attention_scratch(q, k, v, allowed)
    same_torch &= torch.allclose(mine, F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), rtol=0, atol=1e-5)
same_torch &= torch.allclose(scaled_dot_product_attention_scratch(q, k, v, causal_allowed)[0],
                             F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=0, atol=1e-5)
lib_out, lib_w = scaled_dot_product_attention(q, k, v, causal=True, key_padding_mask=is_pad)
same_lib = torch.allclose(lib_out, mine, atol=1e-6) and torch.allclose(lib_w, w_mine, atol=1e-6)
assert float(w_mine[..., ~causal_allowed].abs().max()) == 0.0       # no query attends to the future
assert float(w_mine[1, ..., 4:].abs().max()) == 0.0                  # and none to padding
print("future and padding positions get exactly zero weight: True")
print("masks compared: none, padding, causal, both, is_causal=True")
assert same_torch and same_lib
print(f"scaled_dot_product_attention_scratch == F.scaled_dot_product_attention (to 1e-5): {same_torch}")
print(f"scaled_dot_product_attention_scratch == lib.attention.scaled_dot_product_attention (to 1e-6): {same_lib}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.2), gridspec_kw={"width_ratios": [1, 1, 1.12]})  # room for a colour bar
panels = [(causal_allowed, "causal mask (white = allowed)"),
          ((padding_allowed & causal_allowed)[1, 0], "causal + padding (padded seq.)"),
          (w_mine[1, 0].detach(), "weights (padded seq., head 0)")]  # heads counted from 0, as in section 6
for ax, (img, title) in zip(axes, panels):
    image = ax.imshow(img.float(), cmap="gray" if img.dtype == torch.bool else "viridis", vmin=0)
    ax.set(xlabel="key position", ylabel="query position")
    ax.set_title(title, fontsize=10)
    ax.grid(False)
fig.colorbar(image, ax=axes[2], fraction=0.046, pad=0.04, label="attention weight")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Multi-head attention
#
# One attention can only compute one weighted average per position. **Multi-head attention** runs
# $h$ of them in parallel, each on its own learned projection of width $d_{head} = d_{model}/h$, so
# that one head can, say, look at the previous token while another looks at the start. With the input
# sequence stacked as the rows of $X$ ($T \times d_{model}$, one token per row):
# $$\text{head}_i = \operatorname{Attention}(X W^Q_i, X W^K_i, X W^V_i), \qquad
#   \operatorname{MHA}(X) = [\text{head}_1, \dots, \text{head}_h]\, W^O .$$
# In practice one matrix $W^Q$ ($d_{model}\times d_{model}$) computes all heads' queries at once and
# the result is reshaped into $h$ slices. We copy the weights of `nn.MultiheadAttention` (which stacks
# $W^Q, W^K, W^V$ into one `in_proj_weight`) and check that both agree.
#
# > **Common pitfall: two mask conventions.** `F.scaled_dot_product_attention` takes `True` = *may
# > attend*; `nn.MultiheadAttention`'s `key_padding_mask` and `attn_mask` take `True` = *may not*.
# > Mixing them up silently lets a model attend only to padding.

# %%
def multi_head_attention_scratch(x, W_in, b_in, W_out, b_out, n_heads, allowed=None):
    """x: (B, T, D); W_in: (3D, D) stacks W^Q, W^K, W^V; returns (B, T, D) and (B, h, T, T)."""
    B_, T_, D = x.shape
    q, k, v = (x @ W_in.T + b_in).chunk(3, dim=-1)
    def split(t):  # (B, T, D) -> (B, h, T, D/h)
        return t.view(B_, T_, n_heads, D // n_heads).transpose(1, 2)
    out, w = scaled_dot_product_attention_scratch(split(q), split(k), split(v), allowed)
    out = out.transpose(1, 2).reshape(B_, T_, D)     # put the heads side by side again
    return out @ W_out.T + b_out, w


torch.manual_seed(0)
D, n_heads = 16, 4
torch_mha = nn.MultiheadAttention(D, n_heads, batch_first=True)
x = torch.randn(2, 6, D)
mine, _ = multi_head_attention_scratch(x, torch_mha.in_proj_weight, torch_mha.in_proj_bias, torch_mha.out_proj.weight,
                                       torch_mha.out_proj.bias, n_heads, padding_allowed & causal_allowed)
reference, _ = torch_mha(x, x, x, key_padding_mask=is_pad, attn_mask=~causal_allowed)  # True = NOT allowed
lib_mha = MultiHeadAttention(D, n_heads).copy_from_torch(torch_mha)
lib_out, _ = lib_mha(x, key_padding_mask=is_pad, causal=True)
n_params = count_parameters(torch_mha)
assert n_params == 4 * D * D + 4 * D
print(f"parameters: {n_params} = 4·D² + 4·D for D = {D}")
same_torch = torch.allclose(mine, reference, rtol=0, atol=1e-5)
same_lib = torch.allclose(lib_out, mine, atol=1e-5)
assert same_torch and same_lib
print(f"multi_head_attention_scratch == nn.MultiheadAttention (to 1e-5): {same_torch}")
print(f"multi_head_attention_scratch == lib.attention.MultiHeadAttention (to 1e-5): {same_lib}")

# %% [markdown]
# ## 4. Positional encodings
#
# Attention treats its input as a *set*: shuffle the tokens and the outputs are shuffled the same
# way, nothing else changes. Word order matters, so we add to every token embedding a vector that
# says *where* it is.

# %%
perm = torch.randperm(6)
out_then_shuffle = lib_mha(x)[0][:, perm]
shuffle_then_out = lib_mha(x[:, perm])[0]
assert torch.allclose(out_then_shuffle, shuffle_then_out, atol=1e-6)
print("attention without positions is blind to order (permutation in, same permutation out): True")

# %% [markdown]
# **Sinusoidal encodings** ("Attention is all you need") use fixed waves of different wavelengths:
# $$PE_{p,\,2i} = \sin\!\big(p / 10000^{2i/d}\big), \qquad PE_{p,\,2i+1} = \cos\!\big(p / 10000^{2i/d}\big).$$
# Each pair of columns is a clock running at its own speed; together they give every position a
# unique code, and the dot product $PE_p \cdot PE_{p'}$ depends only on the distance $p - p'$.
# **Learned encodings** (GPT, BERT) are simply a trainable table with one vector per position; we
# draw the table of a trained model in section 7. Most recent large models instead build *relative*
# position into attention itself: **RoPE** (Su et al., 2021) rotates each query and key by an angle
# proportional to its position, so that $q \cdot k$ depends on the two positions only through their
# distance, and **ALiBi**
# (Press et al., 2022) subtracts from each score a penalty proportional to the distance. Unlike a
# learned table, neither has a largest position built in (LLaMA uses RoPE; ALiBi was designed to
# read sequences longer than those it was trained on).

# %%
def sinusoidal_positions_scratch(max_len, d):
    """The encodings above: (max_len, d), sines in the even columns, cosines in the odd ones."""
    position = torch.arange(max_len)[:, None].float()
    div = 10000 ** (torch.arange(0, d, 2) / d)
    pe = torch.zeros(max_len, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(position / div), torch.cos(position / div)
    return pe


max_len, d_pe = 64, 32
pe = sinusoidal_positions_scratch(max_len, d_pe)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
axes[0].imshow(pe.T, cmap="RdBu", aspect="auto")
axes[0].set(xlabel="position p", ylabel="dimension", title="Sinusoidal encodings")
fig.colorbar(axes[0].images[0], ax=axes[0], label="value")
fig.colorbar(axes[1].imshow(pe @ pe.T, cmap="viridis"), ax=axes[1], label="dot product")
axes[1].set(xlabel="position p'", ylabel="position p", title="Dot products PE_p · PE_p'")
for ax in axes:
    ax.grid(False)
fig.tight_layout()
plt.show()
close = torch.allclose(pe, sinusoidal_positions(max_len, d_pe), atol=1e-5)
assert close
print(f"sinusoidal_positions_scratch == lib.attention.sinusoidal_positions (to 1e-5): {close}")

# %% [markdown]
# ## 5. The Transformer block
#
# A block alternates **attention** (positions exchange information) with a position-wise **MLP**
# (each position thinks on its own), each wrapped in a residual connection and preceded by a
# LayerNorm (the **pre-norm** arrangement of GPT-2 and most modern models):
# $$x \leftarrow x + \operatorname{MHA}(\operatorname{LN}_1(x)), \qquad
#   x \leftarrow x + W_2\,\operatorname{GELU}(W_1 \operatorname{LN}_2(x) + b_1) + b_2 .$$
# The residual path carries $x$ through unchanged, so gradients reach the lowest block easily and
# deep stacks train stably with little or no learning-rate warm-up (Xiong et al., 2020). The MLP is
# usually 4 times wider than $d_{model}$. We write the block out, `block_scratch`, and compare it with
# `lib.transformer.Block` and PyTorch's own `nn.TransformerEncoderLayer(norm_first=True)`.

# %%
def block_scratch(blk, x, allowed=None):
    """The pre-norm block above, computed from the weights of a lib.transformer.Block ``blk``."""
    a = blk.attn
    h = F.layer_norm(x, (x.shape[-1],), blk.ln1.weight, blk.ln1.bias)
    W_in = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
    b_in = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
    x = x + multi_head_attention_scratch(h, W_in, b_in, a.out_proj.weight, a.out_proj.bias, a.n_heads, allowed)[0]
    h = F.layer_norm(x, (x.shape[-1],), blk.ln2.weight, blk.ln2.bias)
    return x + F.gelu(h @ blk.mlp[0].weight.T + blk.mlp[0].bias) @ blk.mlp[2].weight.T + blk.mlp[2].bias


torch.manual_seed(0)
torch_layer = nn.TransformerEncoderLayer(D, n_heads, 4 * D, dropout=0.0, activation="gelu",
                                         batch_first=True, norm_first=True).eval()
block = Block(D, n_heads).eval()
block.attn.copy_from_torch(torch_layer.self_attn)
for mine_, theirs in ((block.ln1, torch_layer.norm1), (block.ln2, torch_layer.norm2),
                      (block.mlp[0], torch_layer.linear1), (block.mlp[2], torch_layer.linear2)):
    mine_.load_state_dict(theirs.state_dict())
with torch.no_grad():
    ours = block_scratch(block, x, causal_allowed)
    lib_block, _ = block(x, causal=True)
    pytorch_block = torch_layer(x, src_mask=~causal_allowed)
same_lib = torch.allclose(ours, lib_block, rtol=0, atol=1e-5)
same_torch = torch.allclose(ours, pytorch_block, rtol=0, atol=1e-5)
assert same_lib and same_torch
print(f"block_scratch == lib.transformer.Block (to 1e-5): {same_lib}")
print(f"block_scratch == nn.TransformerEncoderLayer(norm_first=True) (to 1e-5): {same_torch}")

# %% [markdown]
# Stacking blocks gives the three Transformer families, all in `lib.transformer`:
# an **encoder** (bidirectional attention, as in BERT — chapter 07), a **decoder-only** model
# (causal attention, as in GPT) and the original **encoder–decoder**, whose decoder blocks also
# **cross-attend**: their queries come from the output written so far, their keys and values from
# the encoder's reading of the input.
#
# ## 6. An encoder–decoder Transformer that reverses sequences
#
# The task (`lib.data.sequence_task("reverse")`): read 8 digits, write them in reverse order. The
# 10,000 training, 1,000 validation and 1,000 test sequences are all different, so the test measures
# generalisation. The decoder is trained with **teacher forcing**: it receives the true target
# shifted right behind a start token (10) and predicts every next digit at once. At test time it
# writes one digit at a time, feeding back its own outputs (greedy decoding), and we count a
# sequence as correct only if all 8 digits are.

# %%
START = 10
src_train, tgt_train = sequence_task("reverse", "train", length=8, vocab=10)
src_test, tgt_test = sequence_task("reverse", "test", length=8, vocab=10)


def shift_right(tgt):
    return np.concatenate([np.full((len(tgt), 1), START), tgt[:, :-1]], axis=1)


print("source :", src_test[0].tolist())
print("target :", tgt_test[0].tolist())
print("decoder input (teacher forcing):", shift_right(tgt_test[:1])[0].tolist())

# %%
# NBVAL_IGNORE_OUTPUT
seed_everything(0)
seq2seq = Seq2Seq(TransformerConfig(vocab_size=11, d_model=32, n_heads=2, n_layers=2, max_len=8))
s2s_epochs = 2
s2s_history = fit(seq2seq, make_loader(src_train, shift_right(tgt_train), tgt_train, batch_size=64, shuffle=True),
                  epochs=s2s_epochs, optimizer=adamw(seq2seq, lr=3e-3, weight_decay=0.01), schedule=cosine,
                  loss_fn=lm_loss, clip_grad=1.0, device=device)
decoded = seq2seq.greedy_decode(torch.tensor(src_test, device=device), START, steps=8).cpu().numpy()
exact_match = float((decoded == tgt_test).all(axis=1).mean())
print(f"train loss per epoch: {np.round(s2s_history['train_loss'], 4).tolist()}")
print(f"exact match on {len(tgt_test)} held-out sequences: {exact_match:.1%}")

# %%
results.expect("reverse: exact match on 1000 held-out sequences", 100 * exact_match, 100.0,
               results.tolerance_for_accuracy(100.0, 1000), unit=" %", at_least=99.0)

# %% [markdown]
# **Where does the decoder look?** The cross-attention weights of output position $t$ over input
# positions should peak at $7 - t$ in layer 0: an **anti-diagonal**. (In the stored run both heads of
# layer 0 draw it; the heads of layer 1 are diffuse.)

# %%
n_show = 100
with torch.no_grad(), eval_mode(seq2seq):
    s_ = torch.tensor(src_test[:n_show], device=device)
    t_ = torch.tensor(shift_right(tgt_test[:n_show]), device=device)
    _, attn_maps = seq2seq(s_, t_, return_attention=True)
attn_maps = {kind: [w.cpu() for w in maps] for kind, maps in attn_maps.items()}
fig, axes = plt.subplots(2, 2, figsize=(6.5, 6))
for layer in range(2):
    for head in range(2):
        ax = axes[layer, head]
        image = ax.imshow(attn_maps["cross"][layer][0, head], cmap="viridis", vmin=0, vmax=1)
        ax.set(xlabel="source position", ylabel="output position", title=f"cross-attention L{layer} H{head}")
        ax.grid(False)
fig.tight_layout()
fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
plt.show()
anti = torch.arange(7, -1, -1)
follows = {(l, h): float((attn_maps["cross"][l][:, h].argmax(-1) == anti).float().mean())
           for l in range(2) for h in range(2)}
best_head = max(follows, key=follows.get)
assert follows[best_head] > 0.9
print("some cross-attention head peaks on the anti-diagonal for > 90% of output positions:", True)

# %% [markdown]
# ## 7. A GPT on names, against chapter 05's LSTM
#
# A **GPT** is a stack of causal blocks over token + learned position embeddings, with a linear layer
# to next-character logits (tied to the token embedding, as in GPT-2): `lib.transformer.GPT`. It sees
# the same data as chapter 05 — first names, the same split — and the `lib.lm` helpers train, score
# and sample it exactly like the recurrent models.
#
# A fair comparison gives both models the same budget and the same tuning effort:
# - **budget**: `lib.lm.train_lm`'s recipe (AdamW, cosine decay, clipping, the best validation epoch
#   kept), 8 epochs of batches of 64 — the same 520 steps for both;
# - **tuning**: the learning rate, chosen for each model from {3e-3, 1e-2} by the mean *validation*
#   NLL over seeds 0–2 (`tools/seed_spread.py gpt`): the LSTM chose 1e-2 (mean validation NLL
#   1.872 against 1.984 at 3e-3; chapter 05 used 3e-3), the GPT 3e-3 (2.012 against 2.146 at 1e-2,
#   where it trains unstably). Nothing else was tuned for either.
#
# Each final model is then scored once on the test names.

# %%
# NBVAL_IGNORE_OUTPUT
vocab = CharVocab()
train_names, val_names, test_names = (names_split("first", s) for s in ("train", "val", "test"))
V = len(vocab)
LM_EPOCHS = 8
lm_makers = {"LSTM (chapter 05)": (lambda: CharRNN(V, "lstm", emb_dim=32, hidden_size=128), 1e-2),
             "GPT": (lambda: GPT(TransformerConfig(vocab_size=V, d_model=64, n_heads=4, n_layers=2, max_len=16)), 3e-3)}
bigram = BigramLM(train_names, vocab)
lm_nll, lm_trained = {}, {}
print(f"{'model':19s} {'parameters':>10s} {'steps':>6s} {'CPU s':>6s} {'val NLL':>8s} {'test NLL':>9s}  (nats/char)")
print(f"{'bigram (chapter 05)':19s} {V * V:10d} {'–':>6s} {'–':>6s} {nll_per_char(bigram, val_names, vocab):8.3f} "
      f"{nll_per_char(bigram, test_names, vocab):9.3f}")
for name, (make, lr) in lm_makers.items():
    seed_everything(0)
    model = lm_trained[name] = make()
    start = time.process_time()
    history = train_lm(model, train_names, val_names, vocab, epochs=LM_EPOCHS, lr=lr, batch_size=64, device=device,
                       progress=False)
    seconds = time.process_time() - start
    lm_nll[name] = nll_per_char(model, test_names, vocab)              # the test names, once per final model
    print(f"{name:19s} {count_parameters(model):10d} {len(history.steps['train_loss']):6d} {seconds:6.1f} "
          f"{nll_per_char(model, val_names, vocab):8.3f} {lm_nll[name]:9.3f}")
gpt = lm_trained["GPT"]

# %%
# Tolerances: three times the standard deviation of the difference between two runs, from the spreads
# over seeds 0-4 measured by tools/seed_spread.py gpt (LSTM 0.0028, GPT 0.0039 nats/char; for the
# difference, the spread of the paired differences, 0.0038).
bigram_nll = nll_per_char(bigram, test_names, vocab)
results.expect("LSTM test NLL (8 epochs)", lm_nll["LSTM (chapter 05)"], 1.886, results.tolerance_for_mean(0.0028, 1),
               unit=" nats/char", digits=3, at_most=round(bigram_nll - 0.25, 3))
results.expect("GPT test NLL (8 epochs)", lm_nll["GPT"], 2.022, results.tolerance_for_mean(0.0039, 1),
               unit=" nats/char", digits=3, at_most=round(bigram_nll - 0.25, 3))
# the LSTM's lead, recorded (the section's bar, GPT not worse than the LSTM, is not met: see below)
results.expect("GPT minus LSTM test NLL (the LSTM's lead)", lm_nll["GPT"] - lm_nll["LSTM (chapter 05)"], 0.136,
               results.tolerance_for_mean(0.0038, 1), unit=" nats/char", digits=3)

# %% [markdown]
# **The LSTM wins here.** Over seeds 0–4 the GPT's test NLL is 0.134 nats/char above the LSTM's
# (paired by seed; standard error 0.0017, so about 80 standard errors). At equal budget (520 steps)
# and equal tuning — this recipe, this learning-rate grid — chapter 05's LSTM is clearly the better
# model of these 4,000 names, and the course's bar for
# this section — the GPT's test NLL not worse than the LSTM's — is **not met**. (An earlier edition
# had the GPT slightly ahead, 1.886 against 1.903, only because the GPT got 60 epochs and about twenty
# variants compared on the test names, while the LSTM got 15 epochs at an untuned learning rate.)
# Is it the GPT's recipe? Transformers usually want a learning-rate warm-up, and at 1e-2 without one this
# GPT trains unstably. A larger grid, the same for both models and scored on validation (seeds 0–2, run
# while writing this chapter with `lib.lm.train_lm(schedule=…)`, not here: learning rate 3e-3 or 1e-2 ×
# cosine or 10% warm-up × 8 or 12 epochs), narrows the gap but does not close it: the best GPT reaches 1.985
# at 8 epochs (1e-2 with warm-up) against the LSTM's 1.872, and 1.938 against 1.863 at 12 epochs.
# Why? We can offer a hypothesis, not a test: a name is short, and its letters depend mostly on the
# few just before them. Recurrence builds that in; the GPT must learn what "the previous letter" means
# through its position embeddings, from about 29,000 characters per epoch. Nothing in this chapter
# checks that explanation, and the result itself holds for the budgets, recipes and grids above; more
# steps, more data or other settings could change it. The GPT also needs more CPU time per step:
# between 1.6 and 2 times the LSTM's in our runs (the table above shows one run, on a shared machine).
# The next section shows a regime where attention wins.

# %%
# NBVAL_IGNORE_OUTPUT
print("GPT samples:", ", ".join(sample(gpt, vocab, n=12, temperature=0.8, seed=0)))

# %% [markdown]
# The learned position table of the GPT, drawn as cosine similarities between positions. Unlike the
# sinusoidal table, nothing forces neighbours to be alike. In the stored run the first five positions
# have nearly unrelated vectors — the first letters of a name must be told apart exactly — while
# positions 6 to 10 have similar ones, as if the model had learned "somewhere late in a name" more than
# "exactly position 9". But few names are that long (printed under the figure: about 5% of the
# training names reach position 9, about 1% position 10), so those vectors got little training, and
# their likeness may reflect that as much as anything learned.

# %%
with torch.no_grad():
    P = F.normalize(gpt.body.pos.weight[:12].cpu(), dim=1)
fig, ax = plt.subplots(figsize=(4.5, 4))
fig.colorbar(ax.imshow(P @ P.T, cmap="viridis", vmin=-1, vmax=1), ax=ax, label="cosine similarity")
ax.set(xlabel="position", ylabel="position", title="Learned positions: cosine similarity")
ax.grid(False)
plt.show()
name_lengths = np.array([len(name) for name in train_names])     # position p holds letter p (position 0: '.')
print("training names that reach position p (%):",
      {p: round(100 * float((name_lengths >= p).mean()), 1) for p in range(5, 12)})

# %% [markdown]
# ## 8. Where attention wins: holding every input at once
#
# Names suit a recurrent model. Here is a task built against it: every output needs a different input,
# and all of them must still be at hand when the writing starts. Take the reversal of section 6 and
# give it to a *decoder-only* model: it reads the 8 digits, a separator (10), then writes the digits in
# reverse, scored on those 8 outputs only (`lib.transformer.as_language_model`). By the separator the
# LSTM has read every digit for the last time, so all 8 must sit in its fixed-size state — two vectors
# of 64 numbers, $h$ and $c$ — until they are written; the GPT keeps every input position and can look
# up the one it needs. Output $t$ copies input $7 - t$, which lies $2t + 1$ positions back: 1 position
# for the first output, 15 for the last.
#
# Both models see exactly the same thing: one epoch of the 10,000 training sequences (157 steps of 64),
# the same recipe (`adamw`, cosine decay, clipping at 1) and the same tuning: the learning rate was
# chosen for each from {3e-3, 1e-2} by the mean exact match on the 1,000 validation sequences over
# seeds 0–2 (`tools/seed_spread.py gpt`). The LSTM chose 1e-2 (1.8% against 0.0% at 3e-3); the GPT
# was exact at both and keeps the first, 3e-3. The two have about the same size (printed below): an
# LSTM with 64 hidden units and a 2-layer GPT of width 32. We train each with seeds 0, 1 and 2 — the
# same seed gives both the same batch order — and score each trained model once on the 1,000 test
# sequences. Under teacher forcing a
# sequence whose 8 outputs are all right is exactly what greedy decoding would write, so "all 8
# right" is the exact match of section 6.

# %%
SEP = 10
rev_train, rev_test = (as_language_model(*sequence_task("reverse", s, length=8, vocab=10), sep=SEP)
                       for s in ("train", "test"))
print("reads  :", rev_test[0][0].tolist())
print("scored :", [t if t >= 0 else "-" for t in rev_test[1][0].tolist()], "('-' = not scored)")
rev_makers = {"LSTM": lambda: CharRNN(11, "lstm", emb_dim=32, hidden_size=64),
              "GPT": lambda: GPT(TransformerConfig(vocab_size=11, d_model=32, n_heads=2, n_layers=2, max_len=16))}
rev_lr = {"LSTM": 1e-2, "GPT": 3e-3}                   # chosen on validation (above)
print({name: count_parameters(make()) for name, make in rev_makers.items()}, "parameters")

# %%
# NBVAL_IGNORE_OUTPUT
REV_SEEDS = (0, 1, 2)
rev_correct = {name: [] for name in rev_makers}       # per seed: (1000, 8) bool, right or wrong
rev_seconds = {name: 0.0 for name in rev_makers}
for seed in REV_SEEDS:
    for name, make in rev_makers.items():
        seed_everything(seed)
        model = make()
        start = time.process_time()
        fit(model, make_loader(*rev_train, batch_size=64, shuffle=True, seed=seed), epochs=1,
            optimizer=adamw(model, lr=rev_lr[name], weight_decay=0.01), schedule=cosine, loss_fn=lm_loss,
            clip_grad=1.0, device=device, progress=False)
        rev_seconds[name] += time.process_time() - start
        rev_correct[name].append(target_correct(model, *rev_test))    # the test set, once per trained model
rev_exact = {name: np.array([100 * c.all(axis=1).mean() for c in runs]) for name, runs in rev_correct.items()}
rev_digit = {name: np.array([100 * c.mean() for c in runs]) for name, runs in rev_correct.items()}
print(f"{'':6s} {'CPU s/run':>9s} {'digits right (%), seeds 0-2':>28s} {'exact match (%), seeds 0-2':>28s}")
print(f"{'chance':6s} {'':>9s} {'10.0':>28s} {'0.000001':>28s}")
for name in rev_makers:
    print(f"{name:6s} {rev_seconds[name] / len(REV_SEEDS):9.1f} {str(np.round(rev_digit[name], 1).tolist()):>28s} "
          f"{str(np.round(rev_exact[name], 1).tolist()):>28s}")
rev_diff = rev_exact["GPT"] - rev_exact["LSTM"]                      # paired: same seed, same batches
rev_se = rev_diff.std(ddof=1) / math.sqrt(len(rev_diff))
print(f"GPT minus LSTM, exact match: {rev_diff.mean():.1f} points, standard error {rev_se:.2f} "
      f"({rev_diff.mean() / rev_se:.0f} standard errors)")

# %%
# Tolerances: the GPT's score has the binomial spread of a perfect score on 1,000 sequences; the difference
# has the LSTM's spread over seeds 0-2 (0.76 points, tools/seed_spread.py gpt), for a mean of three seeds.
results.expect("reverse as a language model: GPT exact match, mean of 3 seeds", rev_exact["GPT"].mean(), 100.0,
               results.tolerance_for_accuracy(100.0, 1000), unit=" %", at_least=99.0)
results.expect("reverse as a language model: GPT minus LSTM exact match, mean of 3 paired seeds", rev_diff.mean(),
               98.4, results.tolerance_for_mean(0.76, 3), unit=" points", at_least=0.0)
assert rev_diff.mean() > 2 * rev_se, (rev_diff.mean(), rev_se)
print("the GPT's lead is more than two standard errors of the paired difference (both printed above)")

# %% [markdown]
# The GPT wins by far more than two standard errors. Where does the LSTM fail? Accuracy per output
# position (mean over the three seeds):

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, runs in rev_correct.items():
    ax.plot(range(8), 100 * np.mean([c.mean(axis=0) for c in runs], axis=0), marker="o", label=name)
ax.axhline(10, color="k", ls=":", label="chance")
ax.set_xticks(range(8), [f"{t}\n({2 * t + 1})" for t in range(8)])
ax.set(xlabel="output position t (how far back the digit it copies lies)", ylabel="digits right (%)", ylim=(0, 105),
       title="Reversal after one epoch, test sequences")
ax.legend()
plt.show()
lstm_by_pos = 100 * np.mean([c.mean(axis=0) for c in rev_correct["LSTM"]], axis=0)
print("LSTM, digits right by output position (%):", np.round(lstm_by_pos, 0).tolist())

# %% [markdown]
# The LSTM gets the first output — the digit it read last — right most of the time, but its accuracy
# does not keep falling with distance: the curve is U-shaped, and the farthest digit (output 7, 15
# positions back) is copied more often than the middle ones (printed above). Distance alone does not
# explain the failure; a capacity limit fits it better: all eight digits have to be packed into two
# state vectors of 64 numbers ($h$ and $c$) and kept there while the outputs are written. The GPT
# needs no such store: it looks each digit up where it lies. (Exercise 5 puts the capacity view to a
# test: fewer digits, the same state.)
#
# ## 9. Path length, parallel training, and what attention costs
#
# **Path length** is a separate property, and we measure it on *untrained* models. In an LSTM, the
# signal from a token $\Delta$ steps back passes through $\Delta$ recurrent steps, forwards and (as
# gradient) backwards; in attention every position is one step from every other. Here is the gradient
# of the last output of an untrained LSTM and GPT with respect to each input position of a 64-token
# sequence — the signal that learning starts from:

# %%
def gradient_by_distance(model, embedding, ids):
    """Mean over sequences of || d log p(token 0 at the last position) / d x_s ||, x_s the input
    embedding at position s; returned for distances 0, 1, ... from the last position."""
    kept = []
    handle = embedding.register_forward_hook(lambda module, inputs, out: kept.append(out))
    try:
        log_p = model(ids)[:, -1].log_softmax(-1)[:, 0].sum()
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(log_p, kept[0])
    return grad.norm(dim=-1).mean(0).flip(0)


probe_ids = torch.randint(0, 10, (32, 64), generator=torch.Generator().manual_seed(0))
seed_everything(0)
probe_lstm_lm, probe_gpt = rev_makers["LSTM"](), GPT(TransformerConfig(vocab_size=11, d_model=32, n_heads=2,
                                                                      n_layers=2, max_len=64))
path = {"LSTM": gradient_by_distance(probe_lstm_lm, probe_lstm_lm.emb, probe_ids),
        "GPT": gradient_by_distance(probe_gpt, probe_gpt.body.tok, probe_ids)}
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, g in path.items():
    ax.semilogy(range(64), g, label=name)
ax.yaxis.set_minor_formatter(NullFormatter())
ax.set(xlabel="distance Δ to the last position", ylabel="gradient norm",
       title="Gradient reaching an input Δ steps back (untrained)")
ax.legend()
plt.show()
fade = {name: float(g[1] / g[60]) for name, g in path.items()}
assert fade["LSTM"] > 1e6 and fade["GPT"] < 10, fade
print("gradient at distance 1 over gradient at distance 60: LSTM more than a million, GPT less than 10")

# %% [markdown]
# The untrained LSTM's gradient shrinks by more than six orders of magnitude over 60 steps (about
# eleven in the figure), so a pattern that spans many steps starts with a faint signal to learn from;
# the GPT's gradient, apart from its own position's, hardly depends on distance. This is a property of
# the models at initialisation, not a demonstrated cause of section 8's result — there the *trained*
# LSTM copied the digit 15 positions back better than the one 7 back. Training can teach an LSTM to
# keep information longer, through its forget gate (chapter 05), but it starts from here.
#
# **Parallel training.** An LSTM must finish position $t - 1$ before it starts position $t$: $T$
# steps one after another, whatever the hardware. A Transformer layer computes all $T$ positions at
# once with a few matrix products, which a GPU spreads over thousands of cores. This notebook runs on
# one CPU thread, where nothing runs in parallel, so the times below do not show this advantage; they
# show the price.
#
# **The price.** Attention compares every query with every key: for a sequence of length $T$ it
# computes a $T \times T$ matrix of scores per head, so its number of operations and its memory grow
# as $T^2$. A recurrent layer does the same work at every step: $T$ steps, operations $\propto T$. We
# time one forward pass of each (4 heads of width 16 against an LSTM with 64 hidden units, one
# sequence) as $T$ doubles, and fit the slope of log time against log $T$: 2 would mean time $\propto
# T^2$, 1 time $\propto T$.

# %%
# NBVAL_IGNORE_OUTPUT
lengths = [128, 256, 512, 1024, 2048]
probe_lstm = nn.LSTM(64, 64, batch_first=True)
cost = {"attention": [], "LSTM": []}


def best_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


with torch.no_grad():
    for T_ in lengths:
        qkv = torch.randn(3, 1, 4, T_, 16)
        seq = torch.randn(1, T_, 64)
        cost["attention"].append(best_time(lambda: scaled_dot_product_attention(*qkv.unbind(0), causal=True)))
        cost["LSTM"].append(best_time(lambda: probe_lstm(seq)))
for T_, a_, r_ in zip(lengths, cost["attention"], cost["LSTM"]):
    print(f"T = {T_:5d}: attention {1e3 * a_:7.2f} ms, LSTM {1e3 * r_:7.2f} ms, "
          f"attention weights {4 * T_ * T_ * 4 / 2**20:6.2f} MiB")
slope = {name: np.polyfit(np.log(lengths), np.log(ts), 1)[0] for name, ts in cost.items()}
print("fitted slope of log time against log T (2: time ∝ T², 1: time ∝ T):",
      ", ".join(f"{name} {s_:.1f}" for name, s_ in slope.items()))

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.8))
for name, ts in cost.items():
    ax.loglog(lengths, 1e3 * np.array(ts), marker="o", label=name)
mid = lengths.index(512)   # reference lines drawn through the middle length
for name, power, style in (("attention", 2, "k:"), ("LSTM", 1, "k--")):
    ax.loglog(lengths, 1e3 * cost[name][mid] * (np.array(lengths) / lengths[mid]) ** power, style, lw=1,
              label=f"∝ T{'²' if power == 2 else ''} (through {name} at 512)")
ax.set_xticks(lengths, [str(T_) for T_ in lengths])   # one label per measured length, no overlapping minor labels
ax.xaxis.set_minor_formatter(NullFormatter())
ax.yaxis.set_minor_formatter(NullFormatter())
ax.set(xlabel="sequence length T", ylabel="forward time (ms)", title="Attention's time grows at least as T²")
ax.legend(fontsize=8)
plt.show()
growth = cost["attention"][-1] / cost["attention"][1]
assert growth > 8, growth  # 8 times longer sequences: a linear cost would grow 8 times
print("attention time grows faster than linearly (T x 8 -> time x more than 8):", growth > 8)

# %% [markdown]
# Measured CPU time grows overall at least as fast as the operation count (single doublings vary):
# attention's fitted slope (printed above) is above 2 in the stored run, most likely because its $T \times T$ matrices — scores, mask,
# softmax — stop fitting in the processor's caches as $T$ grows, and each pass over them then waits on
# main memory. The LSTM's time grows more slowly (its fitted slope is well below attention's), but not
# necessarily as a straight $\propto T$ line either: fixed per-call overheads weigh on the shortest
# sequences, and these are wall-clock times on a shared machine, where a single point can jump. Read
# the printed times rather than expecting straight lines.
#
# Attention pays $T^2$ operations for one-step access to every position; an LSTM pays with a path of
# length $T$ and a fixed-size memory. For the short sequences of this chapter the price is small, and the
# reversal of section 8 shows what it buys. Long-context models cut the price with attention that
# never stores the $T \times T$ matrix (FlashAttention) or that looks at a window of keys only.
#
# ## 10. Model selection on MNIST-1D
#
# MNIST-1D (Greydanus, 2020) turns the ten digits into 1-D signals of length 40 — shifted, scaled,
# sheared and noisy — small enough for a CPU yet hard enough to separate architectures. Its paper
# reports test accuracies of 32% (logistic regression), 68% (MLP), 94% (CNN), 91% (GRU) and 96%
# (a human). We train four models with the same budget and recipe (AdamW at 3e-3, cosine decay,
# 6 epochs of batches of 64: 330 steps), one run (seed 0) each, each keeping its best epoch on a
# validation set of 500 training signals, choose the architecture by **validation** accuracy, and score
# each trained model once on the 1,000 test signals.

# %%
X_all, y_all = mnist1d("train")
X_test, y_test = mnist1d("test")
X_tr, y_tr, X_val, y_val = X_all[:3500], y_all[:3500], X_all[3500:], y_all[3500:]
print(f"{len(X_tr)} train / {len(X_val)} validation / {len(X_test)} test signals of length {X_all.shape[1]}")


class ConvNet(nn.Module):
    """Four 1-D convolutions with batch norm; pooling halves the length twice (40 -> 10)."""

    def __init__(self, c=32):
        super().__init__()
        def conv(i, o, k):
            return [nn.Conv1d(i, o, k, padding=k // 2), nn.BatchNorm1d(o), nn.ReLU()]
        self.net = nn.Sequential(*conv(1, c, 5), *conv(c, c, 5), nn.MaxPool1d(2), *conv(c, 2 * c, 3),
                                 nn.MaxPool1d(2), *conv(2 * c, 2 * c, 3), nn.Flatten(), nn.Linear(20 * c, 10))

    def forward(self, x):  # x: (B, 40)
        return self.net(x[:, None])


class GRUNet(nn.Module):
    """A GRU reads the signal in 20 chunks of 2 samples; a linear layer reads all 20 hidden states."""

    def __init__(self, hidden=64, chunk=2):
        super().__init__()
        self.chunk, self.gru = chunk, nn.GRU(chunk, hidden, batch_first=True)
        self.head = nn.Linear(hidden * 40 // chunk, 10)

    def forward(self, x):
        out, _ = self.gru(x.view(x.shape[0], -1, self.chunk))   # (B, 20, hidden)
        return self.head(out.flatten(1))


class SignalTransformer(nn.Module):
    """Chunks of 4 samples become 10 tokens (+ learned positions), 2 blocks, mean-pooled."""

    def __init__(self, d_model=32, n_heads=4, n_layers=2, chunk=4):
        super().__init__()
        self.chunk, self.embed = chunk, nn.Linear(chunk, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(40 // chunk, d_model))
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.norm, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, 10)

    def forward(self, x):
        h = self.embed(x.view(x.shape[0], -1, self.chunk)) + self.pos
        for blk in self.blocks:
            h, _ = blk(h)
        return self.head(self.norm(h).mean(dim=1))


# %%
# NBVAL_IGNORE_OUTPUT
M1D_EPOCHS = 6
makers = {"MLP": lambda: nn.Sequential(nn.Linear(40, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                       nn.Linear(128, 10)),
          "CNN": ConvNet, "GRU": GRUNet, "Transformer": SignalTransformer}
m1d_val, m1d_acc, m1d_params = {}, {}, {}
for name, make in makers.items():
    seed_everything(0)
    model = make()
    history = fit(model, make_loader(X_tr, y_tr, batch_size=64, shuffle=True), epochs=M1D_EPOCHS,
                  optimizer=adamw(model, lr=3e-3, weight_decay=0.01), schedule=cosine,
                  val_loader=make_loader(X_val, y_val, batch_size=500), device=device, progress=False)
    m1d_val[name] = history["val_accuracy"][history.best_epoch]            # the restored (best) epoch
    m1d_acc[name] = evaluate(model, make_loader(X_test, y_test, batch_size=500))["accuracy"]   # test, once
    m1d_params[name] = count_parameters(model)
m1d_choice = max(m1d_val, key=m1d_val.get)
published = {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91, "Transformer": None, "human": 0.96}
print(f"{'model':20s} {'parameters':>10s} {'validation':>10s} {'test':>7s} {'published':>10s}")
print(f"{'majority class':20s} {'–':>10s} {np.bincount(y_val).max() / len(y_val):10.1%} "
      f"{np.bincount(y_test).max() / len(y_test):7.1%} {'–':>10s}")
for name, pub in published.items():
    val_ = f"{m1d_val[name]:.1%}" if name in m1d_val else "–"
    ours = f"{m1d_acc[name]:.1%}" if name in m1d_acc else "–"
    params = f"{m1d_params[name]:d}" if name in m1d_params else "–"
    print(f"{name:20s} {params:>10s} {val_:>10s} {ours:>7s} {('–' if pub is None else f'{pub:.0%}'):>10s}")
print("chosen on validation:", m1d_choice)

# %%
results.expect_choice("MNIST-1D architecture chosen on validation", m1d_choice, ["CNN"])
results.expect("MNIST-1D CNN test accuracy", 100 * m1d_acc["CNN"], 97.1, results.tolerance_for_accuracy(97.1, 1000),
               unit=" %", at_least=94.0)
runner_up = max((acc for name, acc in m1d_val.items() if name != "CNN"))
# a difference of two accuracies on the 500 validation signals: their tolerances add in quadrature
results.expect("MNIST-1D validation: CNN minus the runner-up", 100 * (m1d_val["CNN"] - runner_up), 31.4,
               math.hypot(results.tolerance_for_accuracy(97.4, 500), results.tolerance_for_accuracy(66.0, 500)),
               unit=" points", at_least=0.0)

# %% [markdown]
# The convolution's assumptions — local patterns, the same detector everywhere — match signals that
# are randomly shifted, and the CNN passes the published 94% within 330 steps. The MLP, GRU and
# Transformer must learn those regularities from 3,500 examples, and 330 steps are not enough.
# The published baselines were trained for about 6,000 steps (batches of 100, Adam at 1e-2). Trained
# for 100 epochs (5,500 steps) instead of 6, with nothing else changed, our GRU passes 91%
# *validation* accuracy after 15 epochs and ends at 92.6% validation accuracy — one run, seed 0, not
# run in this notebook (it takes 40 s of CPU). That is close to the published 91% (a test accuracy),
# which suggests that most of the GRU's gap in the table is the budget rather than the architecture;
# one longer run, scored on validation, cannot settle it (and we did not run the MLP longer).
#
# Model selection is choosing the architecture whose assumptions fit the data. Here, at this budget
# and with a single run per architecture, that is the CNN: its validation accuracy is 31 points above
# the runner-up's, far beyond the binomial noise of 500 validation signals (a standard error of about
# 2 points on the difference); the variation between seeds was not measured.
#
# ## 11. Widget: attention-map explorer
#
# Pick a test sequence of the reversal model, which attention (encoder self-attention, decoder
# self-attention, or cross-attention), a layer and a head. `attention_map` returns the weights and
# labels; the widget draws them.

# %%
def attention_map(example: int, kind: str = "cross", layer: int = 1, head: int = 0):
    """Weights (rows = queries, columns = keys) and the tokens along each axis."""
    w = attn_maps[kind][layer][example, head].numpy()
    src_tokens = [str(t) for t in src_test[example]]
    out_tokens = ["<s>"] + [str(t) for t in tgt_test[example][:-1]]
    rows = src_tokens if kind == "encoder" else out_tokens
    cols = out_tokens if kind == "decoder" else src_tokens
    return w, rows, cols


def draw_attention(example=0, kind="cross", layer=0, head=0):
    w, rows, cols = attention_map(example, kind, layer, head)
    fig, ax = plt.subplots(figsize=(4, 4))
    fig.colorbar(ax.imshow(w, cmap="viridis", vmin=0, vmax=1), ax=ax, shrink=0.8, label="attention weight")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="keys", ylabel="queries", title=f"{kind} attention, layer {layer}, head {head}")
    ax.grid(False)
    return w


w, rows, cols = attention_map(3, "cross", 1, 0)
print("example 3 source:", cols, "| decoder input:", rows, "| weights", w.shape)

# %%
# NBVAL_IGNORE_OUTPUT
explorer = InteractiveFigure(
    draw_attention,
    example=widgets.IntSlider(value=0, min=0, max=n_show - 1, description="example", continuous_update=False),
    kind=widgets.Dropdown(options=["cross", "encoder", "decoder"], value="cross", description="attention"),
    layer=widgets.Dropdown(options=[0, 1], value=0, description="layer"),  # opens where the anti-diagonal is
    head=widgets.Dropdown(options=[0, 1], value=0, description="head"))
display(explorer)

# %%
explorer.children[0].value = 5
explorer.children[1].value = "decoder"
assert np.allclose(np.triu(explorer.result, 1), 0)  # decoder self-attention is causal
print(f"widget at {explorer.values()}: {explorer.result.shape} weights, nothing above the diagonal: True")

# %% [markdown]
# ## 12. The same in Keras
#
# Keras has the attention layer built in: `keras.layers.MultiHeadAttention(num_heads, key_dim)`, with
# `use_causal_mask=True` for a decoder. `lib.transformer.keras_block` builds the same pre-norm block
# with it, and `copy_block_to_keras` copies our block's weights (Keras keeps separate per-head axes:
# query kernels are `(d_model, heads, d_head)`). Both must give the same output.

# %%
from lib.keras_models import load_keras
from lib.transformer import copy_block_to_keras, keras_block

keras = load_keras()
seed_everything(0)                       # seeds Keras too, now that it is loaded
torch.manual_seed(1)
block = Block(D, n_heads).eval()
x = torch.randn(2, 6, D)
close = True
for causal in (False, True):   # bidirectional and causal
    kb = keras_block(D, n_heads, causal=causal)
    copy_block_to_keras(block, kb)
    with torch.no_grad():
        close &= np.allclose(kb(x.numpy()).numpy(), block(x, causal=causal)[0].numpy(), rtol=0, atol=1e-5)
n_torch = count_parameters(block)
assert kb.count_params() == n_torch
print(f"bidirectional and causal; both blocks have {n_torch} parameters")
assert close
print(f"keras_block == lib.transformer.Block (to 1e-5): {close}")

# %% [markdown]
# ## Summary
#
# - **Attention** is a differentiable look-up: softmax-weighted averages of values, weighted by how
#   well each key matches the query, with scores scaled by $1/\sqrt{d}$; **masks** (padding, causal)
#   set forbidden scores to $-\infty$.
# - **Multi-head attention** runs several look-ups in parallel on learned projections;
#   **positional encodings** (sinusoidal or learned) tell the order-blind attention where tokens are.
# - A **pre-norm block** is $x + \text{MHA}(\text{LN}(x))$ then $x + \text{MLP}(\text{LN}(x))$; stacks of
#   blocks give encoders, GPT-style decoders and encoder–decoders. Our reversal model reads the
#   input along the anti-diagonal and gets at least 99 % of held-out sequences right (100 % here).
# - On 4,000 first names chapter 05's LSTM beats a slightly larger GPT by about 0.13 nats/char over
#   five paired seeds, at equal budget (520 steps) and equal tuning — a result of this budget, this
#   recipe and this grid (a larger grid with warm-up and 12 epochs narrows the gap without closing it).
#   Our hypothesis, not tested here: with little data and short-range structure, recurrence's built-in
#   sense of order helps more than attention's reach.
# - Where every output needs a different input and all must be held at once (reversal as a language
#   model), the GPT is exact after one epoch and the LSTM of the same size is not: attention looks each
#   input up where it lies, while the LSTM must pack every digit into its fixed-size state (it copies
#   the farthest digit better than the middle ones, so distance alone is not the cause). Separately,
#   at initialisation the GPT's gradient does not fade with distance and the LSTM's does. The price is
#   $T^2$ operations and memory; measured CPU time grows at least that fast.
# - Architectures encode assumptions: on shifted signals (MNIST-1D) the CNN wins on validation (one
#   run per architecture) and passes the published accuracy in a few hundred steps; one longer run
#   brings the GRU close to its published 91%.
#
# ## Exercises
#
# **Exercise 1 — padding and causality together (2 points).** To continue several prompts at once, a GPT pads
# them on the *left*, so that every prompt ends at the last position. A batch holds prompts of the
# lengths in `lengths` (a list of ints), left-padded to a common length `T`. Complete
# `left_padded_causal_mask(lengths, T)`: a `(B, T, T)` boolean tensor, `True` where query $t$ of
# sequence $b$ may attend to key $s$ — a real token, not after the query. (With right padding, as in
# section 2, the causal mask alone would already keep real queries off the padding; why not here?)
# The rows of padding queries may be all `False`: their outputs are thrown away. The check runs
# `F.scaled_dot_product_attention` with your mask on a padded batch and compares every real token's
# output with that of its prompt run alone, unpadded, with `is_causal=True`.

# %%
def left_padded_causal_mask(lengths, T):
    ### BEGIN SOLUTION
    is_real = torch.arange(T)[None, :] >= T - torch.as_tensor(lengths)[:, None]   # (B, T): position s holds a token
    return torch.ones(T, T, dtype=torch.bool).tril() & is_real[:, None, :]        # (T, T) & (B, 1, T) -> (B, T, T)
    ### END SOLUTION


# %% [check: 2 points]
_lengths, _T = [5, 2, 4], 5
_mask = check.answer_of("left_padded_causal_mask", lambda: left_padded_causal_mask(_lengths, _T))
check.check_true("left_padded_causal_mask: shape and type", isinstance(_mask, torch.Tensor)
                 and _mask.dtype == torch.bool and tuple(_mask.shape) == (3, _T, _T),
                 f"expected a bool tensor of shape (3, 5, 5); found {type(_mask).__name__} "
                 f"{getattr(_mask, 'dtype', '')} {tuple(getattr(_mask, 'shape', ()))}")
_q, _k, _v = torch.randn(3, 3, _T, 4, generator=torch.Generator().manual_seed(0)).unbind(0)   # each (B, T, d)
_out = F.scaled_dot_product_attention(_q, _k, _v, attn_mask=_mask)
_wrong = []
for _b, _L in enumerate(_lengths):   # prompt b occupies positions T - L, ..., T - 1
    _alone = F.scaled_dot_product_attention(_q[_b, _T - _L:], _k[_b, _T - _L:], _v[_b, _T - _L:], is_causal=True)
    _wrong += [(_b, _T - _L + i) for i in range(_L) if not torch.allclose(_out[_b, _T - _L + i], _alone[i], atol=1e-6)]
check.check_true("left_padded_causal_mask: real tokens unaffected by padding", not _wrong,
                 f"(sequence, position) pairs whose output differs from the prompt run alone: {_wrong}. "
                 "A real query at position t may see the keys s <= t that hold a token; with left padding "
                 "the padding comes first.")

# %% [markdown]
# **Exercise 2 — keys that are copies (2 points).** A Python dictionary cannot hold a key twice; attention can,
# and the copies add up. A query's score $q \cdot k / \sqrt d$ for key B is `gap` below its score for
# key A. The context holds key A once and $n$ exact copies of key B (each with B's value). Complete
# `copies_needed(gap, share)`: the smallest $n$ for which the copies of B together get at least the
# fraction `share` of the attention weight. (Work it out from the softmax of section 1; `math` is
# imported.)

# %%
def copies_needed(gap, share):
    ### BEGIN SOLUTION
    # n copies weigh n e^(-gap) against A's 1:  n e^(-gap) / (1 + n e^(-gap)) >= share
    return math.ceil(share / (1 - share) * math.exp(gap))
    ### END SOLUTION


# %% [check: 2 points]
def _share_of_copies(gap, n):   # the check builds the scores and applies torch.softmax to them
    scores = torch.tensor([0.0] + [-float(gap)] * int(n), dtype=torch.float64)   # key A, then n copies of B
    return float(torch.softmax(scores, dim=0)[1:].sum())


_cases = [(0, 0.5), (1, 0.5), (2, 0.9), (4, 0.99)]
_got = check.answer_of("copies_needed", lambda: [copies_needed(g, p) for g, p in _cases])
_smallest = [n == int(n) >= 1 and _share_of_copies(g, n) >= p > _share_of_copies(g, n - 1)
             for n, (g, p) in zip(_got, _cases)]
check.check_true("copies_needed", all(_smallest),
                 f"for (gap, share) = {_cases} you answered {_got}; not the smallest sufficient n for "
                 f"{[c for c, ok_ in zip(_cases, _smallest) if not ok_]}. Each key's weight is proportional "
                 "to e^score: test your n by building the scores and applying torch.softmax.")

# %% [markdown]
# **Exercise 3 — where the decoder-only model looks (2 points).** In section 8's layout the model reads `L`
# digits at positions $0, \dots, L-1$, the separator at position $L$, then its own outputs. Complete
# `reversal_positions(t, L)`: the position of the query that predicts output $t$ (counting from 0), and
# the position of the input digit it must copy, as a pair `(query, key)`.

# %%
def reversal_positions(t, L):
    ### BEGIN SOLUTION
    return L + t, L - 1 - t   # output 0 is predicted at the separator
    ### END SOLUTION


# %% [check: 2 points]
for _L in (8, 5):
    _x, _y = as_language_model(*sequence_task("reverse", "test", length=_L, vocab=10), sep=SEP)
    _pairs = check.answer_of("reversal_positions", lambda: [tuple(reversal_positions(t, _L)) for t in range(_L)])
    _ok = all(0 <= k_ <= q_ < 2 * _L and (_x[:, int(k_)] == _y[:, int(q_)]).all() for q_, k_ in _pairs)
    check.check_true(f"reversal_positions, L = {_L}", _ok,
                     f"you answered {_pairs}; a query at position p is scored on the target at p (the next "
                     "token), and it may only look at keys at positions <= p. Print as_language_model's "
                     "inputs and targets for one sequence to see the layout.")

# %% [markdown]
# **Exercise 4 — what attention costs in memory (2 points).** Training keeps every layer's attention weights for
# the backward pass. Complete `attention_weight_bytes(B, h, T, n_layers, bytes_per_number)` (the bytes
# taken by the weights of `n_layers` layers with `h` heads, for a batch of `B` sequences of length `T`)
# and `n_unmasked(T)` (how many of one head's $T \times T$ scores a causal mask leaves finite). Then use
# them: how many GiB ($2^{30}$ bytes) does GPT-2 small (12 layers, 12 heads) need for the weights of a
# batch of 8 sequences of 1,024 tokens in 16-bit floats (2 bytes), and what fraction of them does a
# causal mask leave non-zero?

# %%
def attention_weight_bytes(B, h, T, n_layers, bytes_per_number):
    ### BEGIN SOLUTION
    return n_layers * B * h * T * T * bytes_per_number
    ### END SOLUTION


def n_unmasked(T):
    ### BEGIN SOLUTION
    return T * (T + 1) // 2
    ### END SOLUTION


# %% [check: 2 points]
check.check_equal("attention_weight_bytes", check.answer_of("attention_weight_bytes", lambda: [
    attention_weight_bytes(1, 1, 3, 1, 4), attention_weight_bytes(2, 4, 10, 3, 2)]), [36, 4800])
check.check_equal("n_unmasked", check.answer_of("n_unmasked", lambda: [n_unmasked(T_) for T_ in (1, 4, 7)]),
                  [int(causal_mask(T_).sum()) for T_ in (1, 4, 7)])

# %% [markdown]
# **Exercise 5 — predict, then measure (1 point).** The LSTM of section 8 keeps every digit in its state ($h$
# and $c$, 64 numbers each) until it is needed. *Before running the next cells*: trained the same way (one epoch, same
# recipe), would the same LSTM get a **higher** or **lower** exact match on 5-digit reversals than on
# 8-digit ones? Return your prediction from `my_prediction()` and give your reason in a comment; the
# cell after it trains the LSTM on 5-digit reversals (about a second) and the check compares.

# %%
def my_prediction():
    ### BEGIN SOLUTION
    return "higher"  # 5 digits instead of 8 to hold in the same fixed-size state
    ### END SOLUTION


# %%
# NBVAL_IGNORE_OUTPUT
short_train, short_test = (as_language_model(*sequence_task("reverse", s, length=5, vocab=10), sep=SEP)
                           for s in ("train", "test"))
seed_everything(0)
short_lstm = rev_makers["LSTM"]()
fit(short_lstm, make_loader(*short_train, batch_size=64, shuffle=True, seed=0), epochs=1,
    optimizer=adamw(short_lstm, lr=rev_lr["LSTM"], weight_decay=0.01), schedule=cosine, loss_fn=lm_loss, clip_grad=1.0,
    device=device, progress=False)
short_exact = 100 * target_correct(short_lstm, *short_test).all(axis=1).mean()
print(f"LSTM exact match after one epoch (seed 0): 5 digits {short_exact:.1f}%, 8 digits {rev_exact['LSTM'][0]:.1f}%")

# %% [check: 1 point]
measured = "higher" if short_exact > rev_exact["LSTM"][0] else "lower"
predicted = check.answer_of("my_prediction", my_prediction)
check.check_true("my_prediction", predicted == measured,
                 f"you predicted {predicted!r}; the measurement says {measured!r} "
                 f"({short_exact:.1f}% exact match on 5 digits against {rev_exact['LSTM'][0]:.1f}% on 8). "
                 "Think about how much the state must hold at the separator.")

# %% [markdown]
# ## Further reading
#
# - Bahdanau, Cho & Bengio (2015), *Neural machine translation by jointly learning to align and
#   translate* — attention born as a soft alignment inside a recurrent encoder–decoder.
# - Vaswani et al. (2017), *Attention is all you need* — the Transformer: scaled dot-product and
#   multi-head attention, sinusoidal positions, the encoder–decoder of section 6.
# - Radford et al. (2019), *Language models are unsupervised multitask learners* (GPT-2) — the
#   decoder-only recipe of section 7: pre-norm blocks, learned positions, tied embeddings.
# - Xiong et al. (2020), *On layer normalization in the Transformer architecture* — why pre-norm
#   blocks need little or no learning-rate warm-up.
# - Su et al. (2021), *RoFormer* (RoPE), and Press, Smith & Lewis (2022), *Train short, test long*
#   (ALiBi) — relative positions inside attention.
# - Olsson et al. (2022), *In-context learning and induction heads* — how attention heads in trained
#   language models find an earlier token and copy what followed it.
# - Dao et al. (2022), *FlashAttention* — exact attention without storing the $T \times T$ matrix.
# - Greydanus (2020), *Scaling down deep learning* — MNIST-1D and the baselines of section 10.
# - Dive into Deep Learning (d2l.ai), chapter 11, *Attention Mechanisms and Transformers* — the same
#   ground with more variants (additive attention, Bahdanau's model, vision Transformers).
# - Karpathy, *Neural Networks: Zero to Hero*, "Let's build GPT" — a GPT written line by line, the
#   best companion to section 7.
# - Prince, *Understanding Deep Learning*, chapter 12 (Transformers) — clear figures of attention,
#   positions and the three Transformer families.
# - Goodfellow, Bengio & Courville, *Deep Learning*, section 10.7 — the challenge of long-term
#   dependencies in recurrent networks, the problem section 9 measures.

"""LoRA from scratch, and a causal-LM fine-tune of a pretrained chat model through ``lib.train.fit``.

**LoRA** (low-rank adaptation, Hu et al., 2021) freezes a linear layer's weight ``W: (out, in)`` and
learns a low-rank change to it: ``y = W x + b + (alpha / r) B A x`` with ``A: (r, in)`` and
``B: (out, r)``, ``r`` much smaller than ``in`` and ``out``. ``B`` starts at zero, so training starts
from the pretrained model exactly; ``A`` starts random (Kaiming-uniform, as in peft). After training,
``W + (alpha / r) B A`` can be *merged* into one weight: the adapted model then costs nothing extra.

- ``LoRALinear`` wraps an ``nn.Linear``; ``add_lora`` puts it on chosen projections of chosen layers
  (everything else frozen), ``remove_lora`` puts the original layers back, ``merge_lora`` /
  ``unmerge_lora`` swap in merged ``nn.Linear`` layers and back (exactly), ``copy_to_peft`` copies
  ``A`` and ``B`` into a peft model with the same targets (the agreement check).
- The task: ``ANTONYMS`` (give the opposite of a word in one lower-case word), split into training and
  held-out pairs; ``chat_batch`` turns pairs into right-padded chat-template token ids whose labels are
  ``lib.text.IGNORE_INDEX`` everywhere except on the answer (and its end-of-turn token);
  ``causal_lm_step`` is the step for ``fit`` and ``evaluate`` (cross-entropy on the answer tokens only);
  ``answer_scores`` gives each answer's log-likelihood and whether greedy decoding would produce it;
  ``greedy_answers`` generates the model's answers.
- Cheaper training with LoRA in the top blocks only: ``lower_hidden`` runs the frozen blocks below once,
  ``UpperLayers`` is the rest of the model; ``finetune_lora`` is the chapter's recipe (through ``fit``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lib.data import make_loader
from lib.recipes import adamw, cosine
from lib.text import IGNORE_INDEX
from lib.train import History, eval_mode, fit
from lib.validate import describe, require_int, require_module, require_positive_int, require_positive_number, require_tensor

# (word, opposite): the first 40 train, the last 16 are held out (never trained on)
ANTONYMS = (
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("open", "closed"), ("early", "late"), ("rich", "poor"), ("strong", "weak"), ("old", "young"),
    ("wet", "dry"), ("hard", "soft"), ("high", "low"), ("full", "empty"), ("thick", "thin"), ("loud", "quiet"),
    ("clean", "dirty"), ("heavy", "light"), ("true", "false"), ("win", "lose"), ("buy", "sell"),
    ("push", "pull"), ("inside", "outside"), ("before", "after"), ("first", "last"), ("start", "end"),
    ("love", "hate"), ("friend", "enemy"), ("day", "night"), ("north", "south"), ("east", "west"),
    ("left", "right"), ("give", "take"), ("remember", "forget"), ("accept", "reject"), ("arrive", "leave"),
    ("increase", "decrease"), ("maximum", "minimum"), ("always", "never"),
    # held out
    ("good", "bad"), ("long", "short"), ("near", "far"), ("cheap", "expensive"), ("deep", "shallow"),
    ("safe", "dangerous"), ("sweet", "sour"), ("wide", "narrow"), ("black", "white"), ("brave", "cowardly"),
    ("tall", "short"), ("question", "answer"), ("beginning", "ending"), ("enter", "exit"), ("above", "below"),
    ("visible", "invisible"),
)
N_TRAIN = 40
INSTRUCTION = "Give the opposite of this word: {word}"


def antonym_pairs(split: str = "train") -> list[tuple[str, str]]:
    """The task's ``(word, opposite)`` pairs: "train" (40) or "held_out" (16, never trained on)."""
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    return list(ANTONYMS[:N_TRAIN] if split == "train" else ANTONYMS[N_TRAIN:])


# --------------------------------------------------------------------------- LoRA
class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * x A^T B^T``: a frozen ``nn.Linear`` plus a trainable low-rank change.

    ``A: (r, in_features)`` is drawn Kaiming-uniform (bound ``1 / sqrt(in_features)``, peft's default)
    from a generator seeded by ``seed``; ``B: (out_features, r)`` starts at zero, so the wrapped layer
    first computes exactly what ``base`` does. ``base`` itself is kept untouched (``remove_lora`` puts
    it back). Input ``x: (..., in_features)``, output ``(..., out_features)``."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, *, seed: int = 0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {describe(base)}")
        self.r = require_positive_int("r", r)
        if r > min(base.in_features, base.out_features):
            raise ValueError(f"r must be at most min(in_features, out_features) = "
                             f"{min(base.in_features, base.out_features)}, got {r}")
        require_positive_number("alpha", alpha)
        require_int("seed", seed, 0)
        self.alpha, self.scale = float(alpha), float(alpha) / r
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        weight = base.weight
        bound = 1.0 / math.sqrt(base.in_features)
        a = (torch.rand(r, base.in_features, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * bound
        self.A = nn.Parameter(a.to(device=weight.device, dtype=weight.dtype))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, device=weight.device, dtype=weight.dtype))

    def delta_weight(self) -> torch.Tensor:
        """The change LoRA makes to the weight: ``(alpha / r) B A``, shape ``(out, in)``."""
        return self.scale * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.A), self.B)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A new ``nn.Linear`` with weight ``W + (alpha / r) B A`` (and ``base``'s bias): the same map,
        one matrix product instead of three."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        out.weight.copy_(self.base.weight + self.delta_weight())
        if self.base.bias is not None:
            out.bias.copy_(self.base.bias)
        out.requires_grad_(False)
        return out

    def extra_repr(self) -> str:
        return f"in={self.base.in_features}, out={self.base.out_features}, r={self.r}, alpha={self.alpha:g}"


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _layer_index(name: str) -> int | None:
    """The block index in a name like ``model.layers.27.self_attn.q_proj`` (None if there is none)."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def add_lora(model: nn.Module, *, targets: tuple[str, ...] = ("q_proj", "v_proj"), layers=None, r: int = 8,
             alpha: float = 16.0, seed: int = 0) -> list[str]:
    """Freeze every parameter of ``model`` and wrap each ``nn.Linear`` whose name ends with one of
    ``targets`` (in the blocks listed in ``layers``, all blocks when None) in a ``LoRALinear``.

    Module ``k`` (in the order of ``named_modules``) draws its ``A`` with seed ``seed + k``. Returns the
    names of the wrapped modules. ``ValueError`` if nothing matched or the model already has LoRA."""
    require_module("model", model)
    if isinstance(targets, str) or not targets or not all(isinstance(t, str) for t in targets):
        raise TypeError(f"targets must be a tuple of module-name endings such as ('q_proj', 'v_proj'), got {describe(targets)}")
    if lora_modules(model):
        raise ValueError("model already has LoRA layers: remove_lora(model) first")
    wanted = None if layers is None else {require_int("layer", i, 0) for i in layers}
    names = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and name.split(".")[-1] in targets
             and (wanted is None or _layer_index(name) in wanted)]
    if not names:
        raise ValueError(f"no nn.Linear named {targets} in layers {sorted(wanted) if wanted else 'any'} of "
                         f"{type(model).__name__}")
    model._lora_requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}  # for remove_lora
    model.requires_grad_(False)
    for k, name in enumerate(names):
        _set(model, name, LoRALinear(model.get_submodule(name), r, alpha, seed=seed + k))
    return names


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """The ``LoRALinear`` layers of ``model``, by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def remove_lora(model: nn.Module) -> dict[str, LoRALinear]:
    """Put the original ``nn.Linear`` layers back (bit for bit: they were never changed) and give every
    parameter the ``requires_grad`` it had before ``add_lora``; return the removed ``LoRALinear``
    layers by name."""
    removed = lora_modules(model)
    if not removed:
        raise ValueError("model has no LoRA layers to remove")
    for name, m in removed.items():
        _set(model, name, m.base)
    flags = model.__dict__.pop("_lora_requires_grad", {})
    for n, p in model.named_parameters():
        p.requires_grad_(flags.get(n, p.requires_grad))
    return removed


def merge_lora(model: nn.Module) -> dict[str, LoRALinear]:
    """Replace each ``LoRALinear`` by its merged ``nn.Linear`` (``W + (alpha / r) B A``); return the
    ``LoRALinear`` layers by name, for ``unmerge_lora``. The merged model computes the same function
    with the original architecture: no extra cost at inference."""
    removed = lora_modules(model)
    if not removed:
        raise ValueError("model has no LoRA layers to merge")
    for name, m in removed.items():
        _set(model, name, m.merged())
    return removed


def unmerge_lora(model: nn.Module, removed: dict[str, LoRALinear]) -> None:
    """Undo ``merge_lora``: put the ``LoRALinear`` layers it returned back in place (exactly: the
    original weights were never modified, only copied)."""
    if not isinstance(removed, dict) or not all(isinstance(m, LoRALinear) for m in removed.values()):
        raise TypeError(f"removed must be the dict that merge_lora returned, got {describe(removed)}")
    for name, m in removed.items():
        current = model.get_submodule(name)
        if not isinstance(current, nn.Linear) or current.weight.shape != m.base.weight.shape:
            raise ValueError(f"{name} is not a merged layer of shape {tuple(m.base.weight.shape)}")
        _set(model, name, m)


@torch.no_grad()
def copy_to_peft(source, peft_model: nn.Module) -> int:
    """Copy ``A`` and ``B`` of every ``LoRALinear`` of ``source`` (a model, or the dict of layers by
    name that ``remove_lora`` returns) into the peft LoRA layer of the same name in ``peft_model``
    (``...q_proj.lora_A.default.weight`` is ``A``, ``lora_B`` is ``B``); return how many layers were
    copied. ``ValueError`` if peft lacks such a layer or has another shape or scale."""
    ours = source if isinstance(source, dict) else lora_modules(source)
    if not ours or not all(isinstance(m, LoRALinear) for m in ours.values()):
        raise ValueError(f"source has no LoRA layers to copy: {describe(source)}")
    theirs = {name.removeprefix("base_model.model."): m for name, m in peft_model.named_modules()
              if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}
    for name, m in ours.items():
        if name not in theirs:
            raise ValueError(f"peft_model has no LoRA layer {name}; it has {sorted(theirs)[:3]}...")
        p = theirs[name]
        if p.lora_A["default"].weight.shape != m.A.shape or not math.isclose(p.scaling["default"], m.scale):
            raise ValueError(f"{name}: peft has A {tuple(p.lora_A['default'].weight.shape)}, scale "
                             f"{p.scaling['default']}; ours A {tuple(m.A.shape)}, scale {m.scale}")
        p.lora_A["default"].weight.copy_(m.A)
        p.lora_B["default"].weight.copy_(m.B)
    return len(ours)


# --------------------------------------------------------------------------- the frozen bottom, once
def _run_blocks(rotary: nn.Module, hidden: torch.Tensor, blocks) -> torch.Tensor:
    """``hidden: (B, T, d)`` through ``blocks`` of a Llama-style decoder (causal attention from
    position 0, rotary embeddings from its ``rotary``); same shape back."""
    T = hidden.shape[1]
    position_ids = torch.arange(T, device=hidden.device)[None]
    cos_sin = rotary(hidden, position_ids=position_ids)
    mask = torch.full((T, T), torch.finfo(hidden.dtype).min, device=hidden.device, dtype=hidden.dtype).triu(1)
    for block in blocks:
        hidden = block(hidden, attention_mask=mask[None, None], position_ids=position_ids,
                       position_embeddings=cos_sin)
    return hidden


@torch.no_grad()
def lower_hidden(model: nn.Module, input_ids: torch.Tensor, start: int, *, batch_size: int = 16) -> torch.Tensor:
    """The input of block ``start`` of a Llama-style causal LM for ``input_ids: (n, T)``: the
    embeddings through the (frozen) blocks ``0 .. start - 1``; ``(n, T, d)`` on the model's device.
    With LoRA only in blocks ``start`` and above, this part never changes during training, so it is
    computed once (as chapter 07's ``hidden_states`` does for MiniLM)."""
    require_tensor("input_ids", input_ids, "batch, seq", kind="long")
    decoder = model.get_decoder()
    require_int("start", start, 0, len(decoder.layers))
    device = next(model.parameters()).device
    with eval_mode(model):
        return torch.cat([_run_blocks(decoder.rotary_emb, decoder.embed_tokens(ids.to(device)), decoder.layers[:start])
                          for ids in input_ids.split(batch_size)])


class UpperLayers(nn.Module):
    """Blocks ``start`` and above of a Llama-style causal LM, its final norm and its output layer (the
    same modules, shared, not copied). ``forward(hidden: (B, T, d))`` returns the final hidden states
    ``(B, T, d)`` from the input of block ``start`` (``lower_hidden``); ``head`` maps them to logits."""

    def __init__(self, model: nn.Module, start: int):
        super().__init__()
        require_module("model", model)
        decoder = model.get_decoder()
        self.start = require_int("start", start, 0, len(decoder.layers) - 1)
        self.rotary = decoder.rotary_emb
        self.blocks = nn.ModuleList(decoder.layers[start:])
        self.norm = decoder.norm
        self.head = model.get_output_embeddings()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        require_tensor("hidden", hidden, "batch, seq, d_model", kind="float")
        return self.norm(_run_blocks(self.rotary, hidden, self.blocks))


# --------------------------------------------------------------------------- the causal-LM task
def chat_prompt(tokenizer, word: str) -> list[int]:
    """Token ids of the chat-template prompt asking for the opposite of ``word`` (ends with the
    assistant's header, ready for generation)."""
    messages = [{"role": "user", "content": INSTRUCTION.format(word=word)}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])


def chat_batch(tokenizer, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids, labels: (n, T)`` int64 for ``(word, answer)`` pairs: the chat prompt, then the answer
    and the end-of-turn token ``<|im_end|>``, right-padded with it. ``labels`` equals ``input_ids`` on the
    answer and end-of-turn tokens and ``IGNORE_INDEX`` elsewhere (prompt and padding): the loss is
    on what the assistant says, not on the question. Right padding is harmless under causal attention:
    a real token never attends to the padding after it."""
    if not isinstance(pairs, (list, tuple)) or not pairs or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs):
        raise TypeError(f"pairs must be a non-empty list of (word, answer) string pairs, got {describe(pairs)}")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows = []
    for word, answer in pairs:
        prompt = chat_prompt(tokenizer, word)
        reply = tokenizer(answer, add_special_tokens=False)["input_ids"] + [end]
        rows.append((prompt + reply, len(prompt)))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), end, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        labels[i, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
    return input_ids, labels


def _final_hidden(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor):
    """``(final hidden states, output layer)`` of a causal LM on token ids, or of ``UpperLayers`` on
    the input of its first block."""
    if isinstance(model, UpperLayers):
        require_tensor("labels", labels, "batch, seq", shape=tuple(inputs.shape[:2]), kind="long")
        return model(inputs), model.head
    require_tensor("input_ids", inputs, "batch, seq", kind="long")
    require_tensor("labels", labels, "batch, seq", shape=tuple(inputs.shape), kind="long")
    return model.get_decoder()(input_ids=inputs).last_hidden_state, model.get_output_embeddings()


def causal_lm_step(model: nn.Module, batch) -> dict:
    """A step for ``lib.train.fit``/``evaluate``: batch ``(input_ids, labels)`` from ``chat_batch``
    (or, for ``UpperLayers``, ``(lower_hidden(...), labels)``);
    the loss is the mean cross-entropy of predicting each labelled token from the tokens before it
    (nats per answer token), ``n`` the number of labelled tokens. Only the labelled positions go
    through the output layer (49,152 logits each): the prompt's logits are never needed.
    ``model`` is a causal LM with ``get_decoder()`` and ``get_output_embeddings()`` (transformers)."""
    inputs, labels = batch
    hidden, head = _final_hidden(model, inputs, labels)                      # (B, T, d)
    target = labels[:, 1:]
    where = target != IGNORE_INDEX                                          # position t predicts token t + 1
    n = int(where.sum())
    if n == 0:
        raise ValueError("the batch has no labelled (answer) tokens")
    logits = head(hidden[:, :-1][where])                                    # (n, vocab)
    loss = F.cross_entropy(logits, target[where])
    return {"loss": loss, "n": n, "accuracy": (logits.argmax(-1) == target[where]).float().mean()}


@torch.no_grad()
def answer_scores(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example of a ``chat_batch`` ``(input_ids, labels)`` (or, for ``UpperLayers``, the
    ``lower_hidden`` of the ids and the labels): the mean log-likelihood of its answer tokens (nats per
    token, ``(n,)`` float) and whether greedy decoding would produce exactly the answer and then stop
    (``(n,)`` bool: every labelled token is the arg-max given the tokens before it, which is what
    greedy generation from the prompt picks). One forward pass, in evaluation mode."""
    device = next(model.parameters()).device
    inputs, labels = inputs.to(device), labels.to(device)
    target = labels[:, 1:]
    where = target != IGNORE_INDEX
    if not bool(where.any(1).all()):
        raise ValueError("every example needs at least one labelled (answer) token")
    with eval_mode(model):
        hidden, head = _final_hidden(model, inputs, labels)
        logits = head(hidden[:, :-1][where]).float()                         # (answer tokens, vocab)
    row = where.nonzero()[:, 0]
    logp = torch.log_softmax(logits, -1).gather(-1, target[where][:, None])[:, 0]
    count = where.sum(1)
    mean_logp = torch.zeros(len(target), device=logp.device).index_add_(0, row, logp) / count
    wrong = torch.zeros(len(target), device=logp.device).index_add_(0, row, (logits.argmax(-1) != target[where]).float())
    return mean_logp.cpu(), (wrong == 0).cpu()


@torch.no_grad()
def greedy_answers(model: nn.Module, tokenizer, words: list[str], *, max_new_tokens: int = 8) -> list[str]:
    """The model's greedy replies to the chat prompts of ``words`` (one left-padded batch), decoded
    without special tokens and stripped."""
    require_positive_int("max_new_tokens", max_new_tokens)
    if isinstance(words, str) or not words or not all(isinstance(w, str) for w in words):
        raise TypeError(f"words must be a non-empty list of strings, got {describe(words)}")
    device = next(model.parameters()).device
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompts = [chat_prompt(tokenizer, w) for w in words]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), end, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
    with eval_mode(model):
        gen = model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=end, pad_token_id=end)
    return [tokenizer.decode(g[width:], skip_special_tokens=True).strip() for g in gen.cpu()]


def finetune_lora(model: nn.Module, tokenizer, pairs: list[tuple[str, str]], *, start: int = 24,
                  targets: tuple[str, ...] = ("q_proj", "v_proj"), r: int = 8, alpha: float = 16.0,
                  lr: float = 1e-2, epochs: int = 3, batch_size: int = 8, seed: int = 0) -> History:
    """Put LoRA on ``targets`` of blocks ``start`` and above of ``model`` (``add_lora``, everything else
    frozen) and train it on ``pairs`` through ``lib.train.fit``: the frozen blocks below ``start`` run
    once (``lower_hidden``), then ``UpperLayers`` trains with ``causal_lm_step`` (loss on the answer
    tokens), ``adamw`` at ``lr`` with cosine decay, batches of ``batch_size`` shuffled by ``seed``
    (which also draws the ``A`` matrices). Nothing else is random. Returns the ``History``; the
    model keeps its LoRA layers (``merge_lora`` / ``remove_lora`` afterwards)."""
    n_blocks = len(model.get_decoder().layers)
    require_int("start", start, 0, n_blocks - 1)
    require_int("seed", seed, 0)
    add_lora(model, targets=targets, layers=range(start, n_blocks), r=r, alpha=alpha, seed=seed)
    input_ids, labels = chat_batch(tokenizer, pairs)
    upper = UpperLayers(model, start)
    loader = make_loader(lower_hidden(model, input_ids, start), labels, batch_size=batch_size, shuffle=True, seed=seed)
    return fit(upper, loader, epochs=epochs, step=causal_lm_step, optimizer=adamw(upper, lr), schedule=cosine,
               device=next(model.parameters()).device, progress=False)

# %% [markdown]
# # 11 · From notebook to production: export, verify, compress, serve
#
# A model that only lives in a notebook helps nobody. To be used it must leave the notebook as a file
# that cannot hurt whoever loads it, run outside PyTorch, answer fast enough, fit where it must run, and
# sit behind a server that survives bad requests. Each step can silently change the model, so each step
# here is checked the way the rest of the course checks things: the new runtime's answer equals ours to a
# stated tolerance.
#
# **In this notebook you will**
# - see why a pickle checkpoint is dangerous (one that runs code when loaded, refused by
#   `weights_only=True`) and store weights as `safetensors`, checking the round trip bit for bit;
# - export chapter 04's CNN and chapter 06's GPT with `torch.export` and to ONNX (dynamic batch and
#   sequence length), check onnxruntime against PyTorch on several shapes, inspect the graph, and export
#   a Keras model as a TensorFlow SavedModel;
# - measure latency (p50, p95) and throughput against batch size for PyTorch eager, `torch.compile` and
#   onnxruntime;
# - compress: int8 dynamic quantization (PyTorch and onnxruntime), float16/bfloat16 weights and chapter
#   09's distilled student, side by side in one table, and find where quantization hurts;
# - serve the ONNX model with FastAPI and uvicorn on 127.0.0.1, reject bad requests with clear 4xx
#   answers, and load-test it with and without dynamic micro-batching.

# %%
import contextlib
import io
import json
import pickle
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from lib import check, data, distill, production, results
from lib.cnn import LeNet, ShiftAugment
from lib.device import setup_notebook
from lib.recipes import one_cycle, train_classifier
from lib.train import count_parameters
from lib.transformer import GPT, TransformerConfig

device = setup_notebook(seed=0)
# torch.ao's int8 tools announce their move to the separate torchao package; they still work in the
# pinned torch 2.13, and these two notices would otherwise follow every int8 cell
warnings.filterwarnings("ignore", message=r"(?s).*torch\.ao\.quantization is deprecated")
warnings.filterwarnings("ignore", message=r"(?s).*quantized tensor creation functions")
scratch = tempfile.TemporaryDirectory(prefix="course11_")  # deleted when the kernel exits
workdir = Path(scratch.name)  # every file of this chapter goes here

X_train, y_train = (torch.tensor(a) for a in data.digits("train", images=True))
X_val, y_val = (torch.tensor(a) for a in data.digits("val", images=True))
X_test, y_test = (torch.tensor(a) for a in data.digits("test", images=True))
print(f"train {tuple(X_train.shape)}, validation {tuple(X_val.shape)}, test {tuple(X_test.shape)}")

# %% [markdown]
# ## 1. The models to ship
#
# Everything here runs on the CPU: that is where most small models are served, and it keeps the
# comparisons between runtimes fair (a GPU, when present, adds a column to the latency table). Three
# models, all from earlier chapters and trained (or built) here in seconds, so that nothing stored is
# needed:
#
# - the **teacher**: chapter 04's `LeNet` (two conv blocks with batch norm, two linear layers), trained
#   with chapter 09's recipe (one-cycle schedule, one-pixel shifts) for 20 epochs instead of 40;
# - the **student**: chapter 09's distilled `LeNet(channels=(8, 16), hidden=32)`, trained on the
#   teacher's soft targets at temperature $T = 4$ with $\alpha = 0.1$: the loss is $0.1 \times$ the
#   cross-entropy with the labels (hard) plus $0.9 \times T^2 \times$ the KL divergence from the teacher's
#   softened outputs (soft);
# - a small **GPT** (`lib.transformer.GPT`, two layers, $d_\text{model} = 32$), freshly initialised: the
#   export checks below compare computations, and they do not depend on what the weights have learnt.

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
teacher = LeNet()
train_classifier(teacher, X_train, y_train, epochs=20, lr=3e-3, batch_size=64, weight_decay=1e-2,
                 label_smoothing=0.0, schedule=one_cycle(), augment=ShiftAugment(max_shift=1, seed=0), seed=0,
                 device="cpu", progress=False)
torch.manual_seed(0)
student = LeNet(channels=(8, 16), hidden=32, dropout=0.0)
train_classifier(student, X_train, y_train, epochs=30, lr=1e-2, batch_size=256, weight_decay=0.0,
                 schedule=one_cycle(), label_smoothing=0.0, seed=0, device="cpu", progress=False,
                 soft_targets=distill.logits_of(teacher.eval(), X_train), soft_loss=distill.distillation(4.0, 0.1))
teacher.eval(), student.eval()
torch.manual_seed(0)
gpt = GPT(TransformerConfig(vocab_size=30, d_model=32, n_heads=4, n_layers=2, max_len=16)).eval()
teacher_val, student_val = (100 * distill.accuracy(m, X_val, y_val) for m in (teacher, student))
print(f"teacher: {count_parameters(teacher):,} parameters, validation accuracy {teacher_val:.1f}%")
print(f"student: {count_parameters(student):,} parameters, validation accuracy {student_val:.1f}%")

# %%
results.expect("teacher validation accuracy", teacher_val, 98.9, results.tolerance_for_accuracy(98.9, 360),
               unit=" %", at_least=97.0)
results.expect("distilled student validation accuracy", student_val, 97.2,
               results.tolerance_for_accuracy(97.2, 360), unit=" %", at_least=95.0)

# %% [markdown]
# ## 2. Safe checkpoints
#
# `torch.save` writes a **pickle**: a small program for Python's unpickler that rebuilds the objects. A
# pickle can name any importable function and call it with arguments of its choosing, which is how
# objects with a `__reduce__` method are saved. So loading a checkpoint from a stranger with
# `pickle.load` (or `torch.load(..., weights_only=False)`) runs whatever code its author put in. Below, a
# harmless demonstration: an object whose `__reduce__` asks the unpickler to call `print`; a real attack
# would call `os.system`.

# %%
class Trap:
    """Pickled as 'call print(...) when loading'."""
    def __reduce__(self):
        return (print, ("!! this line was printed by the checkpoint while it was being loaded",))


torch.save({"weights": teacher.state_dict(), "extra": Trap()}, workdir / "trap.pt")
loaded = torch.load(workdir / "trap.pt", weights_only=False)  # runs the checkpoint's code
try:
    torch.load(workdir / "trap.pt", weights_only=True)
except pickle.UnpicklingError as error:
    reason = next(line for line in str(error).splitlines() if "Unsupported global" in line)
    print(f"weights_only=True refuses it: {type(error).__name__}:", reason.split("error: ")[-1].split(". ")[0])

# %% [markdown]
# `weights_only=True` (the default since PyTorch 2.6, and what `lib.checkpoint` always uses) lets the
# unpickler build only tensors and plain containers. **safetensors** goes further: the file is an
# 8-byte header length, a JSON header (each tensor's name, dtype, shape and byte range), then the raw
# bytes. There is nothing to execute, a reader can map the file into memory without copying it, and
# other languages read it too. It is the format of record for weights (the Hugging Face Hub's default).
# Two details: it stores tensors only (no optimizer state or Python objects — keep those in a JSON file
# beside it), and it refuses two names for one memory block, which a GPT with tied input and output
# embeddings has; `save_model` keeps one copy and `load_model` re-ties them.

# %%
save_model(teacher, workdir / "teacher.safetensors")
teacher_copy = LeNet()
load_model(teacher_copy, workdir / "teacher.safetensors")
print("teacher round trip through safetensors (exactly):",
      production.same_state(teacher.state_dict(), teacher_copy.state_dict()))

raw = (workdir / "teacher.safetensors").read_bytes()
header_length = int.from_bytes(raw[:8], "little")
header = json.loads(raw[8:8 + header_length])
print(f"header: {header_length} bytes of JSON describing {len(header) - ('__metadata__' in header)} tensors, e.g.",
      {"features.0.0.weight": header["features.0.0.weight"]["dtype"]},
      header["features.0.0.weight"]["shape"])

try:
    save_file(gpt.state_dict(), workdir / "gpt.safetensors")
except RuntimeError as error:
    print("save_file refuses the GPT's tied weights:", "share memory" in str(error))
save_model(gpt, workdir / "gpt.safetensors")
gpt_copy = GPT(gpt.config)
load_model(gpt_copy, workdir / "gpt.safetensors")
print("GPT round trip through save_model/load_model (exactly):",
      production.same_state(gpt.state_dict(), gpt_copy.state_dict()),
      "| embeddings tied again:", gpt_copy.head.weight is gpt_copy.body.tok.weight)

# %% [markdown]
# ## 3. Export: one graph, several runtimes
#
# Running a model needs its Python class; deploying it should not. **`torch.export`** runs the model once
# on example inputs and records every tensor operation into a graph (an `ExportedProgram`), with the
# sizes we declare **dynamic** kept as symbols (`batch`) instead of numbers. Python control flow that
# depends on the data cannot be recorded: the GPT checks that its ids lie in the vocabulary by reading
# `ids.min()` and `ids.max()`, which is a question about values, not shapes, so
# `lib.production.ExportableGPT` runs the same layers without that check (the server must then validate
# ids itself). **ONNX** is an open file format for such graphs; `torch.onnx.export(..., dynamo=True)`
# translates the exported program into ONNX operators, and **onnxruntime** (Microsoft's inference
# engine, with graph optimisations and kernels of its own) runs it without PyTorch.
#
# First `torch.export`, then ONNX, each checked against the eager model on several shapes.
# `lib.production.export_onnx` is one call of the exporter (plus silencing its progress messages):
#
# ```python
# program = torch.onnx.export(model, (example,), dynamo=True, input_names=["x"],
#                             dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}})
# program.save(path)
# ```
#
# with one `Dim` per dynamic axis (`dynamic={0: "batch", 1: "seq"}`), each bounded by `max_sizes`
# (4096 unless stated). "Equal" means
# within $10^{-5}$: the runtimes add the same numbers in different orders, so the last bits of a float32
# may differ, and the printed lines state the tolerance rather than the digits.

# %%
batch = torch.export.Dim("batch", min=1, max=4096)
exported = torch.export.export(teacher, (X_val[:4],), dynamic_shapes={"x": {0: batch}})
aten_ops = sorted({str(n.target).split(".")[1] for n in exported.graph.nodes if n.op == "call_function"})
print("torch.export graph of the teacher:", aten_ops)
for n in (1, 7, 360):
    diff = (exported.module()(X_val[:n]) - teacher(X_val[:n])).abs().max().item()
    print(f"  batch {n:3d}: exported == eager, max |diff| <= 1e-5: {diff <= 1e-5}")

# %%
teacher_onnx = production.export_onnx(teacher, X_val[:4], workdir / "teacher.onnx")
session = production.onnx_session(teacher_onnx)
print("ONNX input:", session.get_inputs()[0].name, session.get_inputs()[0].shape,
      "-> output:", session.get_outputs()[0].shape)
with torch.no_grad():
    for n in (1, 7, 64, 360):
        diff = np.abs(session.run(None, {"x": X_val[:n].numpy()})[0] - teacher(X_val[:n]).numpy()).max()
        assert diff <= 1e-5, diff
        print(f"  batch {n:3d}: onnxruntime == PyTorch, max |diff| <= 1e-5: True")
opset, operators = production.onnx_operators(teacher_onnx)
print(f"opset {opset}; operators: {dict(sorted(operators.items()))}")

# %% [markdown]
# The ONNX graph has no `BatchNormalization` node: in evaluation mode batch norm is a fixed affine map
# per channel, $\gamma (x - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta$, and a convolution followed by an
# affine map is one convolution with rescaled weights and a bias, so the exporter **folded** it into the
# `Conv`. Dropout vanished too (it is the identity at inference), and `Flatten` plus `Linear` became
# `Reshape` plus `Gemm` (general matrix multiply). The **opset** is the version of the ONNX operator set
# the file uses; a runtime must support it.
#
# The GPT, with both the batch and the sequence length dynamic. Its position table has `max_len = 16`
# rows, so no valid input is longer than 16 tokens: `max_sizes={1: 16}` gives the exporter that bound
# for the `seq` symbol (the batch keeps the default bound of 4096).

# %%
gpt_onnx = production.export_onnx(production.ExportableGPT(gpt), torch.zeros(2, 8, dtype=torch.long),
                                  workdir / "gpt.onnx", dynamic={0: "batch", 1: "seq"}, max_sizes={1: 16})
gpt_session = production.onnx_session(gpt_onnx)
print("ONNX input:", gpt_session.get_inputs()[0].shape, "-> output:", gpt_session.get_outputs()[0].shape)
generator = torch.Generator().manual_seed(0)
with torch.no_grad():
    for b, t in ((1, 5), (3, 11), (8, 16)):
        ids = torch.randint(0, 30, (b, t), generator=generator)
        diff = np.abs(gpt_session.run(None, {"ids": ids.numpy()})[0] - gpt(ids).numpy()).max()
        assert diff <= 1e-5, diff
        print(f"  ids {b} x {t:2d}: onnxruntime == PyTorch GPT, max |diff| <= 1e-5: True")
opset, operators = production.onnx_operators(gpt_onnx)
print(f"opset {opset}; {sum(operators.values())} nodes, the most frequent:", operators.most_common(4))

# %% [markdown]
# ### The same in Keras: a TensorFlow SavedModel
#
# Keras 3 exports a model with `model.export(path, format="tf_saved_model")`: a directory holding the
# TensorFlow graph and the weights, which `tf.saved_model.load` (or TensorFlow Serving, or the converters
# to TensorFlow Lite) runs without the Keras code. Here chapter 09's Keras student (`distill.keras_student`),
# trained for 15 epochs on the labels, is exported, reloaded, and compared with Keras on three batch sizes.

# %%
# NBVAL_IGNORE_OUTPUT
from lib.device import seed_everything
from lib.keras_models import load_keras

keras = load_keras()
seed_everything(0)
X_train_nhwc, X_val_nhwc = (X.permute(0, 2, 3, 1).numpy() for X in (X_train, X_val))
keras_model = distill.keras_student()
keras_model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"],
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
keras_model.fit(X_train_nhwc, y_train.numpy(), epochs=15, batch_size=128, verbose=0)
keras_val = 100 * keras_model.evaluate(X_val_nhwc, y_val.numpy(), verbose=0)[1]
print(f"Keras student: validation accuracy {keras_val:.1f}%")

# %%
import tensorflow as tf

with contextlib.redirect_stdout(io.StringIO()):  # export() lists the signature it wrote
    keras_model.export(str(workdir / "keras_student"), format="tf_saved_model")
reloaded = tf.saved_model.load(str(workdir / "keras_student"))
for n in (1, 7, 360):
    diff = np.abs(reloaded.serve(X_val_nhwc[:n]).numpy() - keras_model(X_val_nhwc[:n], training=False).numpy()).max()
    assert diff <= 1e-5, diff
    print(f"  batch {n:3d}: SavedModel == Keras, max |diff| <= 1e-5: True")
results.expect("Keras student validation accuracy", keras_val, 97.5, results.tolerance_for_accuracy(97.5, 360),
               unit=" %", at_least=93.0)

# %% [markdown]
# ## 4. Latency and throughput
#
# Two numbers describe speed. **Latency** is the time one call takes; we report its median (**p50**)
# and its 95th percentile (**p95**, the slow tail a user waits for one time in twenty), over 25 timed
# calls after 5 untimed **warm-up** calls (the first calls allocate memory, fill caches and, for
# `torch.compile`, compile). **Throughput** is images per second, here batch size / p50. A bigger batch
# amortises the fixed cost of a call (Python, dispatch, reading the weights) over more images, so
# throughput rises with the batch size — and so does latency, since every image waits for the whole
# batch. That is the trade-off a server tunes.
#
# Three runtimes run the same teacher: PyTorch **eager** (one operator at a time, from Python),
# **`torch.compile`** (TorchInductor traces the model and generates fused C++ code; compiled once with
# dynamic shapes), and **onnxruntime**. **Threads**: everything here uses one intra-op thread
# (`setup_notebook` sets PyTorch's; `onnx_session(threads=1)`), so the runtimes are compared on equal
# terms: no runtime gains from cores that the others do not use. (One thread does not make the numbers
# independent of the machine: they still depend on the CPU and on what else it runs.) A server with several
# cores usually runs several one-thread workers rather than one many-thread worker: small models do not
# split well across threads, and each request then pays no synchronisation. The numbers below are
# measurements on this machine, under whatever else it was running; they are printed, not compared.

# %%
# NBVAL_IGNORE_OUTPUT
BATCHES = [1, 8, 64, 256]
compiled = torch.compile(teacher, dynamic=True)
teacher_int8 = torch.ao.quantization.quantize_dynamic(teacher, {torch.nn.Linear}, dtype=torch.qint8)
from onnxruntime.quantization import QuantType, quantize_dynamic

with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    quantize_dynamic(str(teacher_onnx), str(workdir / "teacher_int8.onnx"), weight_type=QuantType.QInt8)
session_int8 = production.onnx_session(workdir / "teacher_int8.onnx")


def torch_runner(model):
    def run(x):
        with torch.inference_mode():
            return model(x)
    return run


RUNNERS = {("eager", "float32"): torch_runner(teacher), ("compile", "float32"): torch_runner(compiled),
           ("onnxruntime", "float32"): lambda x: session.run(None, {"x": x.numpy()}),
           ("eager", "int8"): torch_runner(teacher_int8),
           ("onnxruntime", "int8"): lambda x: session_int8.run(None, {"x": x.numpy()})}
if device.type == "cuda":  # the GPU column: the same teacher on the GPU, synchronised so the timing is real
    teacher_gpu = LeNet().to(device).eval()
    teacher_gpu.load_state_dict(teacher.state_dict())

    def run_gpu(x):
        with torch.inference_mode():
            out = teacher_gpu(x.to(device))
        torch.cuda.synchronize()
        return out
    RUNNERS["eager (cuda)", "float32"] = run_gpu

X_big = X_train[torch.arange(256) % len(X_train)]
timings = {(runtime, precision, b): production.latency(lambda: fn(X_big[:b]), repeats=25, warmup=5, batch=b)
           for (runtime, precision), fn in RUNNERS.items() for b in BATCHES}
print(f"{'runtime':12s} {'weights':8s} {'batch':>5s} {'p50 (ms)':>9s} {'p95 (ms)':>9s} {'best (ms)':>9s}",
      f"{'images/s':>9s}")
for (runtime, precision, b), t in timings.items():
    print(f"{runtime:12s} {precision:8s} {b:5d} {1e3 * t['p50']:9.3f} {1e3 * t['p95']:9.3f} {1e3 * t['best']:9.3f} "
          f"{t['throughput']:9.0f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), layout="constrained")
for (runtime, precision) in RUNNERS:
    rows = [timings[runtime, precision, b] for b in BATCHES]
    p50 = np.array([1e3 * r["p50"] for r in rows])
    p95 = np.array([1e3 * r["p95"] for r in rows])
    line, = axes[0].plot(BATCHES, p50, "o-", label=f"{runtime}, {precision}")
    axes[0].fill_between(BATCHES, p50, p95, color=line.get_color(), alpha=0.15)
    axes[1].plot(p50, [r["throughput"] for r in rows], "o-", color=line.get_color(), label=f"{runtime}, {precision}")
    for b, x, y in zip(BATCHES, p50, [r["throughput"] for r in rows]):
        if runtime == "onnxruntime" and precision == "float32":
            axes[1].annotate(f"batch {b}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
axes[0].set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency (ms): p50, band to p95",
            title="Latency grows with the batch")
axes[1].set(xscale="log", yscale="log", xlabel="p50 latency (ms)", ylabel="throughput (images/s)",
            title="The trade-off: images/s bought with waiting")
for ax in axes:
    ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# On the right, each curve's points are, from left to right, batch 1, 8, 64 and 256 (labelled on the
# onnxruntime float32 curve). With float32 weights, throughput grows from batch 1 to batch 256 for every
# runtime (the fixed cost of a call is shared by more images) while latency grows too; the check below states
# only that much, which holds on any CPU (it compares the fastest of the 25 calls, which other programs
# disturb least). Which runtime wins at which batch depends on the CPU and its load. One thing to look for in
# the table: in the stored run onnxruntime's int8 model is *slower* than its float32 one at every batch size.
# Its graph (printed below) shows why: every convolution became `ConvInteger` and every `Gemm` a
# `MatMulInteger`, each preceded by a `DynamicQuantizeLinear` that quantizes the activations at every call and
# followed by `Cast`/`Mul` nodes that turn the int32 sums back into floats; the float32 graph was one fused
# `Conv` or `Gemm` per layer. On this CPU that extra work costs more than the smaller weights save. A smaller
# model is not always a faster one; measure on the hardware that will serve it.

# %%
opset, int8_operators = production.onnx_operators(workdir / "teacher_int8.onnx")
print(f"onnxruntime int8 graph, opset {opset}: {dict(sorted(int8_operators.items()))}")

# %%
# per-image cost of the fastest call: the least disturbed by other programs sharing the CPU
gains = {key: (timings[(*key, 1)]["best"] * 256) / timings[(*key, 256)]["best"] for key in RUNNERS
         if key[1] == "float32"}
print("float32: images/s of the fastest call at batch 256 at least 1.5x that at batch 1, for every runtime:",
      all(g >= 1.5 for g in gains.values()))

# %% [markdown]
# ## 5. Compression
#
# A model's size on disk and in memory is mostly its weights. Four ways to shrink the teacher, and the
# student of chapter 09, which is smaller by design. **int8 dynamic quantization** stores each weight
# matrix as 8-bit integers $q$ with one float **scale** $s$ per tensor, $w \approx s\,q$; activations are
# quantized on the fly at each call ("dynamic"), the integer products accumulated in int32 and rescaled.
# **float16** and **bfloat16** take half the bytes of float32: float16 keeps 10 bits of mantissa but a
# small range; bfloat16 keeps float32's range with only 7 bits.
#
# 1. **int8, PyTorch**: `quantize_dynamic` quantizes the `Linear` layers only;
# 2. **int8, onnxruntime**: its `quantize_dynamic` quantizes `Conv`, `MatMul` and `Gemm`;
# 3. **float16 weights**: stored as float16 and converted back to float32 to compute (storage only);
# 4. **bfloat16**: weights stored in bfloat16 and the model computes in bfloat16.
#
# **Symmetric int8 from scratch.** With $m = \max |w|$, PyTorch uses $s = m / 127.5$ (the 255 steps of
# $[-128, 127]$ spread over $[-m, m]$) and $q = \mathrm{round}(w / s)$ clamped to $[-128, 127]$, so each
# weight moves by at most $s/2$. PyTorch computes in float32 and multiplies by $1/s$ rather than
# dividing by $s$ (one rounding apart, which can flip a value lying almost exactly halfway between two
# integers), so we do the same in NumPy and compare with the integers PyTorch stored.

# %%
def int8_symmetric_scratch(w: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-tensor symmetric int8 of a float32 array: (q, scale) with w ≈ scale * q."""
    scale = np.float32(np.abs(w).max()) / np.float32(127.5)
    return np.clip(np.round(w * (np.float32(1) / scale)), -128, 127).astype(np.int8), float(scale)


w_fc = teacher.classifier[1].weight.detach()
q_ours, scale_ours = int8_symmetric_scratch(w_fc.numpy())
q_torch = teacher_int8.classifier[1].weight()
print("int8_symmetric_scratch == quantize_dynamic's integers (exactly):",
      np.array_equal(q_ours, q_torch.int_repr().numpy()), "| zero point", q_torch.q_zero_point(),
      "| scales equal (exactly):", scale_ours == q_torch.q_scale())
q_lib, scale_lib = production.int8_symmetric(w_fc)
print("int8_symmetric_scratch == lib.production.int8_symmetric (exactly):",
      np.array_equal(q_ours, q_lib.numpy()) and scale_lib == scale_ours)
print("largest rounding error <= scale / 2:",
      bool((q_lib.float() * scale_lib - w_fc).abs().max() <= scale_lib / 2 * (1 + 1e-5)))

# %% [markdown]
# Now the table. **Size** is the bytes of the file each variant ships as (safetensors for PyTorch
# weights; `torch.save` for PyTorch's int8 model, whose packed weights safetensors cannot hold; the
# `.onnx` file for onnxruntime). **Latency** is p50 at batch 64 on one thread. **Accuracy** is on the
# test split, touched here once per variant; no choice is made from it.

# %%
# NBVAL_IGNORE_OUTPUT
fp16_state = {k: v.half() if v.is_floating_point() else v for k, v in teacher.state_dict().items()}
save_file(fp16_state, workdir / "teacher_fp16.safetensors")
teacher_fp16 = LeNet().eval()
teacher_fp16.load_state_dict({k: v.float() if v.is_floating_point() else v
                              for k, v in load_file(workdir / "teacher_fp16.safetensors").items()})
teacher_bf16 = LeNet().eval().to(torch.bfloat16)
teacher_bf16.load_state_dict(teacher.state_dict())
save_file({k: v.contiguous() for k, v in teacher_bf16.state_dict().items()}, workdir / "teacher_bf16.safetensors")
save_model(student, workdir / "student.safetensors")
torch.save(teacher_int8.state_dict(), workdir / "teacher_int8.pt")


def onnx_predict(sess):
    return lambda x: torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])


def torch_predict(model, dtype=torch.float32):
    def run(x):
        with torch.inference_mode():
            return model(x.to(dtype)).float()
    return run


VARIANTS = {  # name -> (file, predict function)
    "teacher float32 (PyTorch)": ("teacher.safetensors", torch_predict(teacher)),
    "teacher float16 weights": ("teacher_fp16.safetensors", torch_predict(teacher_fp16)),
    "teacher bfloat16": ("teacher_bf16.safetensors", torch_predict(teacher_bf16, torch.bfloat16)),
    "teacher int8 (PyTorch)": ("teacher_int8.pt", torch_predict(teacher_int8)),
    "teacher float32 (onnxruntime)": ("teacher.onnx", onnx_predict(session)),
    "teacher int8 (onnxruntime)": ("teacher_int8.onnx", onnx_predict(session_int8)),
    "distilled student float32": ("student.safetensors", torch_predict(student)),
}
table = {}
for name, (file, predict) in VARIANTS.items():
    accuracy = 100 * float((predict(X_test).argmax(1) == y_test).float().mean())
    speed = production.latency(lambda: predict(X_big[:64]), repeats=25, warmup=5, batch=64)
    table[name] = {"kB": (workdir / file).stat().st_size / 1e3, "p50_ms": 1e3 * speed["p50"],
                   "best_ms": 1e3 * speed["best"], "accuracy": accuracy}
print(f"{'variant':30s} {'size (kB)':>9s} {'p50 @64 (ms)':>12s} {'best @64 (ms)':>13s} {'test acc.':>9s}")
for name, row in table.items():
    print(f"{name:30s} {row['kB']:9.1f} {row['p50_ms']:12.3f} {row['best_ms']:13.3f} {row['accuracy']:8.1f}%")
reference_logits = teacher(X_test).detach()
for name in ("teacher int8 (PyTorch)", "teacher int8 (onnxruntime)"):
    changed = int((VARIANTS[name][1](X_test).argmax(1) != reference_logits.argmax(1)).sum())
    print(f"{name}: accuracy {table[name]['accuracy'] - table['teacher float32 (PyTorch)']['accuracy']:+.1f} points "
          f"against float32; {changed} of {len(X_test)} test predictions changed")

# %% [markdown]
# The sizes are properties of the files: float16 and bfloat16 halve the float32 file; onnxruntime's int8 file
# is under a third of its float32 file (every `Conv` and `Gemm` quantized), PyTorch's about half (only the
# `Linear` layers, about two thirds of the weights, are quantized); the student is an order of magnitude
# smaller than the teacher. The latencies need care: "teacher float16 weights" computes exactly like "teacher
# float32 (PyTorch)" (the same float32 model once loaded), so any difference between those two rows is noise
# from other programs sharing the CPU — compare the `best` column, the least disturbed call, before reading a
# gap of a few tens of percent as real. On digits this easy int8 costs no measurable accuracy: in the stored
# run no test prediction of the teacher changed (printed above); the check allows a loss of up to one point.
# The distilled student costs about a point and a half. The checks:

# %%
sizes = {name: row["kB"] for name, row in table.items()}
fp32_kb = sizes["teacher float32 (PyTorch)"]
print("float16 and bfloat16 files at most 0.52x the float32 file:",
      max(sizes["teacher float16 weights"], sizes["teacher bfloat16"]) <= 0.52 * fp32_kb)
print("onnxruntime int8 file at most 0.35x the float32 ONNX file:",
      sizes["teacher int8 (onnxruntime)"] <= 0.35 * sizes["teacher float32 (onnxruntime)"])
print("student file at most 0.1x the teacher's:", sizes["distilled student float32"] <= 0.1 * fp32_kb)
n_test = len(y_test)
for name, reference in [("teacher float32 (PyTorch)", 98.9), ("teacher int8 (onnxruntime)", 98.9),
                        ("distilled student float32", 97.5)]:
    results.expect(f"{name} test accuracy", table[name]["accuracy"], reference,
                   results.tolerance_for_accuracy(reference, n_test), unit=" %")
int8_loss = table["teacher float32 (PyTorch)"]["accuracy"] - table["teacher int8 (onnxruntime)"]["accuracy"]
# tolerance: two of the 360 test predictions (0.28 points each) changing on another CPU's int8 kernels
results.expect("int8 (onnxruntime) accuracy loss", int8_loss, 0.0, 0.6, unit=" points", at_most=1.0)

# %% [markdown]
# ### Where quantization hurts
#
# Rounding every weight of a layer moves that layer's output, and the error travels to the logits.
# `lib.production.quantization_error_by_layer` rounds **one layer at a time** to int8 (the scheme above)
# and measures the relative change of the logits on the validation images, $\lVert z_q - z\rVert /
# \lVert z\rVert$. Two properties of a layer's weights are candidate explanations, printed beside each
# error: its **number of weights**, and the ratio $\max|w| / \mathrm{std}(w)$ — the scale is set by the
# largest weight, so a layer whose largest weight lies far out (a large ratio) rounds all its typical
# weights coarsely. In the stored run neither candidate orders the errors: the teacher's smallest layer
# is its worst, but the student's smallest is not, and in neither model is the layer with the largest
# ratio the worst. The damage also depends on how much the layers after it amplify the
# change, which is why it is measured, not assumed.

# %%
# NBVAL_IGNORE_OUTPUT
layer_errors = {"teacher": production.quantization_error_by_layer(teacher, X_val),
                "student": production.quantization_error_by_layer(student, X_val)}
names = list(layer_errors["teacher"])
short = dict(zip(names, ["conv1", "conv2", "fc1", "fc2"]))  # features.0.0, features.1.0, classifier.1, classifier.4
layer_weights = {model_name: {n: dict(model.named_modules())[n].weight.detach() for n in names}
                 for model_name, model in (("teacher", teacher), ("student", student))}
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
for k, (model_name, errors) in enumerate(layer_errors.items()):
    ax.bar(np.arange(len(names)) + 0.4 * k - 0.2, [100 * errors[n] for n in names], width=0.4, label=model_name)
ax.set(xticks=range(len(names)), ylabel="relative change of the logits (%)",
       xticklabels=[f"{short[n]}\n{layer_weights['teacher'][n].numel():,} | {layer_weights['student'][n].numel():,} w"
                    for n in names], title="One layer's weights rounded to int8 at a time (weights: teacher | student)")
ax.legend()
plt.show()
print(f"{'model':8s} {'layer':6s} {'weights':>8s} {'max|w|/std':>10s} {'logit change':>12s}")
for model_name, errors in layer_errors.items():
    for n in names:
        w = layer_weights[model_name][n]
        print(f"{model_name:8s} {short[n]:6s} {w.numel():8,d} {float(w.abs().max() / w.std()):10.1f} "
              f"{100 * errors[n]:11.2f}%")

# %%
worst = max(e for errors in layer_errors.values() for e in errors.values())
# over four seeds (0-3) of both models the largest error was 0.74, 1.13, 0.74, 0.56 %: std 0.24 points,
# so two runs differ by sqrt(2) x 0.24 and the tolerance is three times that
results.expect("largest per-layer int8 error of the logits", 100 * worst, 0.74, 1.0, unit=" %", at_most=2.0,
               digits=2)

# %% [markdown]
# ## 6. Serving
#
# A served model is a process that waits for requests. `lib.serve_app` is a **FastAPI** application:
# FastAPI reads each JSON request into a typed **pydantic** model (`images: list[list[list[float]]]`,
# then our own check that each image is 8 × 8 with pixels in $[0, 1]$), so a bad request is refused
# with a **422** and a message saying what was expected before it reaches the model; a batch above 64
# images gets a **413** (too large). **uvicorn** is the server program that speaks HTTP and runs the
# application's event loop. One thread runs the onnxruntime session, so requests queue for it.
#
# Two endpoints answer the same question. `/predict` makes one model call per request.
# `/predict_batched` does **dynamic micro-batching**: requests that arrive while the model is busy, or
# within 2 ms of the first one, are stacked into one batch, run in one call, and the rows sent back to
# their callers — the batch-size trade-off of section 4, made by the server.
#
# `production.serve` starts uvicorn as a subprocess bound to 127.0.0.1 (nothing outside this machine
# can reach it) on a free port, waits until it answers, and stops it when the `with` block ends — also
# when a cell fails. Everything that needs the server happens inside one block, so no later cell can
# leave it running. The load test is bounded: 64 requests of one image each, 16 in flight at a time,
# 10 s per request at most, three rounds alternating the two endpoints.

# %%
bad_requests = {
    "an image of 8 rows of 7 pixels": {"images": [[row[:7] for row in X_val[0, 0].tolist()]]},
    "text instead of images": {"images": "a picture of a seven"},
    "a pixel that is not a number (NaN)": b'{"images": [[' + b",".join([b"[NaN,0,0,0,0,0,0,0]"] * 8) + b"]]}",
    "a pixel outside [0, 1]": {"images": [[[2.0] * 8] * 8]},
    "a misnamed field": {"pictures": X_val[:1, 0].tolist()},
    "a batch of 65 images": {"images": X_val[:65, 0].tolist()},
    "broken JSON": b'{"images": [[[0.5,',
}
payloads = [{"images": [X_val[i % len(X_val), 0].tolist()]} for i in range(64)]
load = {"/predict": [], "/predict_batched": []}
with production.serve(teacher_onnx, max_batch=64, window_ms=2.0) as url:
    code, answer = production.post(url + "/predict", {"images": X_val[:5, 0].tolist()})
    local = session.run(None, {"x": X_val[:5].numpy()})[0]
    print(f"valid request of 5 images: {code}, labels == local argmax: {answer['labels'] == local.argmax(1).tolist()}, "
          "logits == local onnxruntime, max |diff| <= 1e-5:", np.abs(np.array(answer["logits"]) - local).max() <= 1e-5)
    code, answer = production.post(url + "/predict_batched", {"images": X_val[:5, 0].tolist()})
    print(f"the same through /predict_batched: {code}, logits equal (to 1e-5):",
          np.abs(np.array(answer["logits"]) - local).max() <= 1e-5)
    refusals = {}
    for what, payload in bad_requests.items():
        refusals[what] = production.post(url + "/predict", payload)
        print(f"{what}: {refusals[what][0]} {refusals[what][1]['detail']}")
    code, _ = production.post(url + "/predict", {"images": X_val[:1, 0].tolist()})
    print("still serving after the bad requests:", code == 200)
    for round_ in range(3):
        for endpoint in load:
            load[endpoint].append(production.load_test(url + endpoint, payloads, concurrency=16, timeout=10.0))
    stats = production.get_json(url + "/stats")
try:
    production.post(url + "/predict", {"images": X_val[:1, 0].tolist()}, timeout=2.0)
    print("server still answering after the block: True")
except Exception as error:  # the port is closed: connection refused
    print("server still answering after the block: False", f"({type(error).__name__})")

# %%
assert all(400 <= code < 500 for code, _ in refusals.values())
print(f"{len(refusals)} kinds of bad request, all answered 4xx with a message:",
      all(400 <= code < 500 and body["detail"] for code, body in refusals.values()))

# %%
# NBVAL_IGNORE_OUTPUT
def report_load(load: dict, stats: dict) -> np.ndarray:
    """Print each round of each endpoint and the batcher's statistics; return the per-round gains."""
    for endpoint, rounds in load.items():
        for r in rounds:
            print(f"{endpoint:17s} {r['ok']}/{r['requests']} ok, p50 {1e3 * r['p50']:6.1f} ms, "
                  f"p95 {1e3 * r['p95']:6.1f} ms, {r['throughput']:6.0f} requests/s")
    gain = np.array([b["throughput"] / u["throughput"] for u, b in zip(load["/predict"], load["/predict_batched"])])
    print(f"micro-batching's throughput gain, per round: {np.round(gain, 2)}; median {np.median(gain):.2f}x")
    print(f"/predict_batched: {stats['batched_requests']} requests in {stats['batched_calls']} model calls, "
          f"{stats['batched_requests'] / stats['batched_calls']:.1f} requests per call on average")
    return gain


gain = report_load(load, stats)

# %%
print("every load-test request answered 200:",
      all(r["ok"] == r["requests"] for rounds in load.values() for r in rounds))

# %% [markdown]
# The batcher works — requests share model calls (printed above) — but for the teacher it buys nothing you
# can count on: in the runs made while writing this chapter the per-round ratio went from about 0.7 to
# 2.1, often both below and above 1 within a single run. Read it with the latency table in mind. One
# image through the teacher costs onnxruntime a few hundredths of a millisecond (batch 1 in section 4),
# while the server, sharing this machine's cores with the client and other programs, handles only some
# hundreds of requests per second: milliseconds per request of HTTP, JSON, validation and the event loop.
# Micro-batching can only save model calls, so for a model this small there is nothing to save.
#
# ### When micro-batching pays: an expensive model call
#
# To see the other regime, serve a stand-in for a large model: the same input and output as the teacher,
# but four hidden layers of 4096 units: 50.6 million parameters, about 200 MB of float32 weights. Its
# weights are random — its answers mean nothing, only its cost matters. At batch 1 a call is dominated by
# reading all the weights from memory, once per image; a batch of 16 reads them once for all 16 images,
# so its call (below) costs a few times a single image's call but several times less per image. The
# server and the load test are as above (16 requests in flight, three rounds alternating the endpoints),
# with 48 requests per round.

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4096), torch.nn.ReLU(),
                           *[m for _ in range(3) for m in (torch.nn.Linear(4096, 4096), torch.nn.ReLU())],
                           torch.nn.Linear(4096, 10)).eval()
wide_onnx = production.export_onnx(wide, X_val[:4], workdir / "wide.onnx")
print(f"the wide stand-in: {count_parameters(wide):,} parameters, {wide_onnx.stat().st_size / 1e6:.0f} MB of ONNX")
del wide  # the server loads the ONNX file; no need to keep a second copy of the weights here
wide_session = production.onnx_session(wide_onnx)
for b in (1, 16):
    t = production.latency(lambda: wide_session.run(None, {"input": X_big[:b].numpy()}), repeats=5, warmup=1,
                           batch=b)
    print(f"one call at batch {b:2d}: best {1e3 * t['best']:5.1f} ms, {1e3 * t['best'] / b:5.2f} ms per image")
del wide_session
wide_load = {"/predict": [], "/predict_batched": []}
with production.serve(wide_onnx, max_batch=64, window_ms=2.0) as url:
    for round_ in range(3):
        for endpoint in wide_load:
            wide_load[endpoint].append(production.load_test(url + endpoint, payloads[:48], concurrency=16,
                                                            timeout=10.0))
    wide_stats = production.get_json(url + "/stats")
wide_gain = report_load(wide_load, wide_stats)

# %%
print("the wide model answered every request with 200:",
      all(r["ok"] == r["requests"] for rounds in wide_load.values() for r in rounds))
print("micro-batching raised the throughput in every round:", bool((wide_gain > 1).all()))
print("median gain over the rounds at least 1.3x:", bool(np.median(wide_gain) >= 1.3))

# %% [markdown]
# Here micro-batching pays: the batched endpoint served more requests per second in every round. The
# gain is bounded by the transport: batching removes most of the model's cost per request, but not the
# milliseconds of HTTP, JSON and validation that remain, so it stays below roughly the ratio of the model's
# cost per call to the transport's cost per request. In the runs made while writing this chapter, on a
# machine shared with other work, every round of every run gained, and the median of a run was 2x or
# more; the check asks for more throughput in every round and a median gain of at least 1.3x. The same
# reasoning is why large language model servers batch requests: each call reads billions of weights,
# whatever the batch, and on a GPU each layer also costs a kernel launch.

# %% [markdown]
# ## 7. Widget: the latency/throughput explorer
#
# Pick a runtime, a precision and a batch size; the figure places that configuration on its runtime's
# latency/throughput curve, from the table measured in section 4. `configuration` holds the logic.

# %%
from ipywidgets import Dropdown

from lib.widgets import InteractiveFigure


def configuration(runtime: str, precision: str, batch: int) -> dict | None:
    """The measured row for (runtime, precision, batch), or None if that combination was not measured."""
    return timings.get((runtime, precision, batch))


def draw_tradeoff(runtime: str, precision: str, batch: int) -> str:
    row = configuration(runtime, precision, batch)
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    for (rt, pr) in RUNNERS:
        rows = [timings[rt, pr, b] for b in BATCHES]
        ax.plot([1e3 * r["p50"] for r in rows], [r["throughput"] for r in rows], "o-", alpha=0.25, color="gray")
    if row is None:
        ax.set_title(f"{runtime}, {precision}: not measured")
        return "not measured"
    rows = [timings[runtime, precision, b] for b in BATCHES]
    ax.plot([1e3 * r["p50"] for r in rows], [r["throughput"] for r in rows], "o-", color="C0")
    ax.errorbar([1e3 * row["p50"]], [row["throughput"]], xerr=[[0], [1e3 * (row["p95"] - row["p50"])]],
                fmt="o", color="C3", ms=10, capsize=3)
    ax.set(xscale="log", yscale="log", xlabel="latency (ms), p50 with bar to p95", ylabel="images/s",
           title=f"{runtime}, {precision}, batch {batch}: p50 {1e3 * row['p50']:.2f} ms, "
                 f"{row['throughput']:.0f} images/s")
    return f"{runtime}, {precision}, batch {batch}"


# %%
# NBVAL_IGNORE_OUTPUT
explorer = InteractiveFigure(draw_tradeoff,
                             runtime=Dropdown(options=sorted({r for r, _ in RUNNERS}), value="onnxruntime",
                                              description="runtime"),
                             precision=Dropdown(options=["float32", "int8"], value="float32", description="weights"),
                             batch=Dropdown(options=BATCHES, value=64, description="batch"))
explorer

# %%
explorer.set_values(runtime="compile", precision="int8", batch=8)
print("compile with int8 weights:", explorer.result)
explorer.set_values(runtime="eager", precision="int8", batch=256)
print("the widget now shows:", explorer.result, "| the row it draws is the measured one:",
      configuration("eager", "int8", 256) is timings["eager", "int8", 256])

# %% [markdown]
# ## Summary
#
# - A pickle checkpoint is a program; load untrusted ones with `weights_only=True`, and ship weights as
#   safetensors (tensors only, round trip exact, tied weights stored once).
# - `torch.export` records a model as a graph with symbolic sizes, as long as no Python decision depends on
#   the data; ONNX carries that graph to other runtimes. Every export is verified on several shapes
#   (here all within $10^{-5}$), because an exporter can specialise a size or fold a layer wrongly
#   without any error.
# - Latency and throughput trade against each other through the batch size; measure p50 and p95 after
#   warm-up, on a stated number of threads.
# - int8 and 16-bit weights shrink the files about 2–3x at no measurable accuracy cost here; distillation
#   shrinks the model itself more than tenfold for a point or so of accuracy. Which layer suffers most
#   from rounding is measured, not assumed.
# - A server validates before it computes (422/413 with a message), runs the model in one place, and is
#   load-tested with a bounded test. Micro-batching pays when a model call is expensive next to a
#   request: measured here, no consistent gain for the tiny teacher, a gain in every round for a
#   200 MB model whose call costs milliseconds.
#
# **Further reading**: the safetensors documentation (format and security audit); PyTorch's
# `torch.export` and `torch.onnx` tutorials; onnxruntime's performance tuning guide (threads, quantization);
# Jacob et al. (2018), *Quantization and training of neural networks for efficient integer-arithmetic-only
# inference*; Dettmers et al. (2022), *LLM.int8()* (outlier features); Yu et al. (2022), *Orca* (batching
# for LLM serving).
#
# ## Exercises
#
# ### Exercise 1 — per-channel int8 (2 points)
# One scale per tensor is set by the tensor's largest weight. **Per-channel** quantization gives each
# output row $i$ of a weight matrix its own scale $s_i = \max_j |w_{ij}| / 127.5$. Complete
# `int8_per_channel(w)` for a `(rows, columns)` float tensor: return `(q, scales)` with `q` int8 of the
# same shape (round $w \cdot (1/s_i)$ as section 5 does, then clamp to $[-128, 127]$) and `scales` a float
# tensor of shape `(rows,)`. The check
# compares it with PyTorch's `torch.quantize_per_channel` and confirms that its error is no larger than
# the per-tensor scheme's on the teacher's first linear layer.

# %%
def int8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    scales = w.abs().amax(dim=1) / 127.5
    q = torch.clamp(torch.round(w * (1 / scales[:, None])), -128, 127).to(torch.int8)
    return q, scales
    ### END SOLUTION


# %% [check: 2 points]
q_pc, scales_pc = check.answer_of("int8_per_channel", lambda: int8_per_channel(w_fc))
reference = torch.quantize_per_channel(w_fc, scales_pc.double(), torch.zeros(len(w_fc), dtype=torch.long), 0,
                                       torch.qint8)
check.check_close("scales", scales_pc, w_fc.abs().amax(dim=1) / 127.5, atol=1e-9)
mismatches = int((q_pc.to(torch.int64) != reference.int_repr().to(torch.int64)).sum())
check.check_true("integers equal torch.quantize_per_channel's (at most 3 of them may differ)", mismatches <= 3,
                 f"{mismatches} of {q_pc.numel()} integers differ: round (not floor or truncate) w * (1 / scale) "
                 "in float32, then clamp to [-128, 127]")
error_pc = (q_pc.float() * scales_pc[:, None] - w_fc).abs().max()
check.check_true("per-channel error <= per-tensor error", bool(error_pc <= scale_lib / 2 * (1 + 1e-5)),
                 "each row's scale is at most the tensor's, so its rounding error cannot be larger")

# %% [markdown]
# ### Exercise 2 — predict a file's size (2 points)
# A safetensors file is 8 bytes, the JSON header, then the tensors' raw bytes. Compute, from the
# student's `state_dict()` alone, how many bytes of **tensor data** a float16 safetensors file of the
# student holds, when every floating tensor is converted to float16 (2 bytes per number) and every other
# tensor keeps its dtype (batch norm's `num_batches_tracked` counters are int64, 8 bytes). Store it in
# `student_fp16_bytes`. The check writes the file and compares with its size minus the header.

# %%
### BEGIN SOLUTION
student_fp16_bytes = sum(v.numel() * (2 if v.is_floating_point() else v.element_size())
                         for v in student.state_dict().values())
### END SOLUTION

# %% [check: 2 points]
save_file({k: v.half() if v.is_floating_point() else v for k, v in student.state_dict().items()},
          workdir / "student_fp16.safetensors")
raw = (workdir / "student_fp16.safetensors").read_bytes()
check.check_true("bytes of tensor data", check.answer_of("student_fp16_bytes", lambda: student_fp16_bytes)
                 == len(raw) - 8 - int.from_bytes(raw[:8], "little"),
                 "count numel() x bytes per number for every tensor of student.state_dict(): 2 for a floating "
                 "tensor, element_size() for the others (the int64 counters)")

# %% [markdown]
# ### Exercise 3 — export the student and verify it (2 points)
# Export the distilled `student` to ONNX with a dynamic batch (`production.export_onnx`, file
# `workdir / "student.onnx"`), open it with `production.onnx_session`, and run it on the first 1, 5 and 50
# validation images. Store in `student_onnx_diffs` the three largest absolute differences between
# onnxruntime's logits and PyTorch's (a list of three floats). The check wants each at most $10^{-5}$.

# %%
### BEGIN SOLUTION
student_session = production.onnx_session(production.export_onnx(student, X_val[:4], workdir / "student.onnx"))
with torch.no_grad():
    student_onnx_diffs = [float(np.abs(student_session.run(None, {"x": X_val[:n].numpy()})[0]
                                       - student(X_val[:n]).numpy()).max()) for n in (1, 5, 50)]
### END SOLUTION

# %% [check: 2 points]
diffs = check.answer_of("student_onnx_diffs", lambda: student_onnx_diffs)
check.check_equal("number of shapes checked", len(diffs), 3)
check.check_true("the exported file exists", (workdir / "student.onnx").is_file(),
                 "export to workdir / 'student.onnx'")
# the check's own verification: reopen the file, rerun it, and recompute the differences
reopened = production.onnx_session(workdir / "student.onnx")
check.check_true("the batch axis of student.onnx is symbolic", isinstance(reopened.get_inputs()[0].shape[0], str),
                 f"its input shape is {reopened.get_inputs()[0].shape}: export with a dynamic batch")
with torch.no_grad():
    recomputed = [float(np.abs(reopened.run(None, {reopened.get_inputs()[0].name: X_val[:n].numpy()})[0]
                               - student(X_val[:n]).numpy()).max()) for n in (1, 5, 50)]
check.check_true("student.onnx == PyTorch's student on 1, 5 and 50 images (to 1e-5)", max(recomputed) <= 1e-5,
                 f"recomputed differences {recomputed}: did you export the student, in evaluation mode?")
check.check_true("your differences match the recomputed ones (to 1e-6)",
                 all(0 <= d <= 1e-5 and abs(d - r) <= 1e-6 for d, r in zip(diffs, recomputed)),
                 f"yours {diffs}, recomputed {recomputed}: the largest |onnxruntime - PyTorch| per shape")

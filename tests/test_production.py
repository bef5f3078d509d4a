"""Tests of lib.production and lib.serve_app: checkpoints, export parity, int8, latency, the server."""
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from lib import production
from lib.cnn import LeNet
from lib.serve_app import MicroBatcher, create_app
from lib.transformer import GPT, TransformerConfig


@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = LeNet(channels=(4, 8), hidden=16).eval()
    path = production.export_onnx(model, torch.rand(3, 1, 8, 8), tmp_path_factory.mktemp("onnx") / "lenet.onnx")
    return model, path


def test_same_state():
    a = nn.Linear(3, 2).state_dict()
    b = {k: v.clone() for k, v in a.items()}
    assert production.same_state(a, b)
    b["bias"][0] += 1e-7
    assert not production.same_state(a, b)
    assert not production.same_state(a, {k: v.double() for k, v in a.items()})   # dtype counts
    assert not production.same_state(a, {"weight": a["weight"]})
    with pytest.raises(TypeError, match="state dict"):
        production.same_state(a, [1])


def test_onnx_matches_pytorch_on_several_batches(lenet_onnx):
    model, path = lenet_onnx
    session = production.onnx_session(path)
    assert session.get_inputs()[0].shape[0] == "batch"
    with torch.no_grad():
        for n in (1, 5, 70):
            x = torch.rand(n, 1, 8, 8)
            np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], model(x).numpy(), atol=1e-5)
    opset, ops = production.onnx_operators(path)
    assert opset >= 17 and ops["Conv"] == 2 and "BatchNormalization" not in ops  # folded into the convs
    assert model.training is False


def test_export_keeps_training_mode(tmp_path):
    model = LeNet(channels=(2, 2), hidden=4).train()
    production.export_onnx(model, torch.rand(2, 1, 8, 8), tmp_path / "m.onnx")
    assert model.training


def test_exportable_gpt_equals_gpt_and_exports_with_dynamic_sequence(tmp_path):
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=12)).eval()
    wrapper = production.ExportableGPT(gpt)
    ids = torch.randint(0, 11, (3, 7))
    with torch.no_grad():
        torch.testing.assert_close(wrapper(ids), gpt(ids), rtol=0, atol=0)
    path = production.export_onnx(wrapper, torch.zeros(2, 5, dtype=torch.long), tmp_path / "gpt.onnx",
                                  dynamic={0: "batch", 1: "seq"}, max_sizes={1: 12})
    session = production.onnx_session(path)
    with torch.no_grad():
        for b, t in ((1, 2), (4, 12)):
            ids = torch.randint(0, 11, (b, t))
            np.testing.assert_allclose(session.run(None, {"ids": ids.numpy()})[0], gpt(ids).numpy(), atol=1e-5)
    with pytest.raises(TypeError, match="GPT"):
        production.ExportableGPT(nn.Linear(2, 2))


def test_int8_symmetric_equals_pytorch_dynamic_quantization():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(37, 19))
    w = model[0].weight.detach()
    q, scale = production.int8_symmetric(w)
    packed = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)[0].weight()
    assert torch.equal(q, packed.int_repr()) and scale == packed.q_scale() and packed.q_zero_point() == 0
    assert (q.float() * scale - w).abs().max() <= scale / 2 * (1 + 1e-5)
    assert int(q.abs().max()) in (127, 128)  # the largest weight uses the whole range
    with pytest.raises(TypeError):
        production.int8_symmetric(torch.ones(3, dtype=torch.long))


def test_quantization_error_by_layer_restores_the_model():
    torch.manual_seed(0)
    model = LeNet(channels=(4, 8), hidden=16).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    errors = production.quantization_error_by_layer(model, torch.rand(20, 1, 8, 8))
    assert list(errors) == ["features.0.0", "features.1.0", "classifier.1", "classifier.4"]
    assert all(0 < e < 0.1 for e in errors.values())
    assert production.same_state(before, model.state_dict())
    # a layer of zeros is exact in int8: rounding it cannot move the logits, unlike the others
    with torch.no_grad():
        model.classifier[4].weight.zero_()
    assert production.quantization_error_by_layer(model, torch.rand(20, 1, 8, 8))["classifier.4"] < 1e-6


def test_latency_measures_and_validates():
    calls = []
    result = production.latency(lambda: calls.append(1), repeats=7, warmup=2, batch=4)
    assert len(calls) == 9 and result["p95"] >= result["p50"] >= result["best"] > 0
    assert result["throughput"] == pytest.approx(4 / result["p50"])
    with pytest.raises(TypeError):
        production.latency(42)
    with pytest.raises(ValueError):
        production.latency(lambda: None, repeats=1)


# --------------------------------------------------------------------------- the server, in process
@pytest.fixture(scope="module")
def client(lenet_onnx):
    _, path = lenet_onnx
    with TestClient(create_app(str(path), max_batch=4, window_ms=1.0)) as c:
        yield c


def test_server_answers_like_onnxruntime(client, lenet_onnx):
    model, _ = lenet_onnx
    x = torch.rand(3, 1, 8, 8)
    for endpoint in ("/predict", "/predict_batched"):
        response = client.post(endpoint, json={"images": x[:, 0].tolist()})
        assert response.status_code == 200
        with torch.no_grad():
            np.testing.assert_allclose(response.json()["logits"], model(x).numpy(), atol=1e-5)
        assert response.json()["labels"] == model(x).argmax(1).tolist()


@pytest.mark.parametrize("body, code, words", [
    ({"images": [[[0.5] * 7] * 8]}, 422, "8 rows of 8 pixels"),
    ({"images": "seven"}, 422, "valid list"),
    ({"images": [[["a"] * 8] * 8]}, 422, "valid number"),
    ({"images": [[[1.5] * 8] * 8]}, 422, "[0, 1]"),
    ({"images": []}, 422, "at least one"),
    ({"pictures": []}, 422, "Field required"),
    ({"images": [[[0.5] * 8] * 8] * 5}, 413, "limit of 4"),
])
def test_server_rejects_bad_input_with_a_message(client, body, code, words):
    response = client.post("/predict", json=body)
    assert response.status_code == code
    assert words in json.dumps(response.json()["detail"])


def test_server_rejects_nan_and_broken_json(client):
    nan_image = "[" + ",".join(["[NaN,0,0,0,0,0,0,0]"] * 8) + "]"
    for content, words in (('{"images": [' + nan_image + ']}', "not a number (NaN)"),
                           ('{"images": [[[', "not valid JSON: decoding stopped at character 14")):
        response = client.post("/predict_batched", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422 and words in response.json()["detail"][0]
    assert client.get("/health").json() == {"status": "ok", "max_batch": 4}


def test_micro_batcher_stacks_waiting_requests_and_keeps_order():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    calls = []

    def run(x):
        calls.append(len(x))
        return x * 10

    async def main():
        batcher = MicroBatcher(run, max_batch=5, window_s=0.05, executor=ThreadPoolExecutor(1))
        inputs = [np.full((1, 2), i, dtype=np.float32) for i in range(7)]
        outs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        return inputs, outs

    inputs, outs = asyncio.run(main())
    assert all(np.array_equal(o, 10 * x) for x, o in zip(inputs, outs))
    assert sum(calls) == 7 and max(calls) <= 5 and len(calls) < 7


# --------------------------------------------------------------------------- the server, as a process
def test_serve_starts_answers_and_stops(lenet_onnx):
    _, path = lenet_onnx
    with production.serve(path, max_batch=8) as url:
        assert url.startswith("http://127.0.0.1:")
        assert production.get_json(url + "/health")["status"] == "ok"
        code, body = production.post(url + "/predict", {"images": [[[0.0] * 8] * 8]})
        assert code == 200 and len(body["logits"][0]) == 10
        report = production.load_test(url + "/predict_batched", [{"images": [[[0.1] * 8] * 8]}] * 20,
                                      concurrency=5, timeout=10.0)
        assert report["ok"] == report["requests"] == 20 and report["throughput"] > 0
    with pytest.raises(OSError):
        production.get_json(url + "/health", timeout=2.0)


def test_stop_process_kills_a_process_that_ignores_terminate():
    import subprocess
    import sys

    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"ready"  # the handler is installed
    production.stop_process(process, timeout=0.5)
    assert process.returncode == -9  # SIGKILL, after the ignored SIGTERM
    process.stdout.close()


def test_serve_stops_the_server_on_an_error(lenet_onnx):
    _, path = lenet_onnx
    with pytest.raises(ZeroDivisionError):
        with production.serve(path) as url:
            1 / 0
    with pytest.raises(OSError):
        production.get_json(url + "/health", timeout=2.0)


def test_serve_and_load_test_validate(tmp_path):
    with pytest.raises(FileNotFoundError):
        with production.serve(tmp_path / "missing.onnx"):
            pass
    with pytest.raises(ValueError, match="this machine"):
        production.load_test("http://example.com/predict", [{}])
    with pytest.raises(ValueError, match="non-empty"):
        production.load_test("http://127.0.0.1:1/predict", [])

"""Keras checks, grouped in one file: importing TensorFlow costs seconds."""
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lib.autograd import VALUE_OPS, random_expression, value_and_grad
from lib.keras_models import load_keras
from lib.optim import SGD, Adam, Param

keras = load_keras()
import tensorflow as tf  # noqa: E402  (after load_keras silenced it)

ROOT = Path(__file__).resolve().parent.parent

A = np.random.default_rng(0).normal(size=(6, 3))
B = np.random.default_rng(1).normal(size=6)


def grad(w):
    return A.T @ (A @ w - B)


def test_load_keras_is_quiet():
    """A fresh interpreter (TensorFlow is already imported here): a bare `import tensorflow` prints
    C++ log lines straight to file descriptor 2; load_keras prints nothing. Costs one more import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "KERAS_"))}  # load_keras' own settings
    run = subprocess.run([sys.executable, "-c", "from lib.keras_models import load_keras; load_keras()"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0 and run.stdout == "" and run.stderr == "", run.stderr[-2000:]


def test_seed_everything_seeds_keras_once_loaded():
    """Keras draws (initial weights included) come from TensorFlow's generator: seed_everything seeds it."""
    from lib.device import seed_everything

    def draw():
        layer = keras.layers.Dense(3)
        layer.build((None, 2))
        return keras.random.normal((3,)).numpy().tolist(), layer.kernel.numpy().tolist()
    seed_everything(5, deterministic=False)
    first = draw()
    seed_everything(5, deterministic=False)
    assert draw() == first
    seed_everything(6, deterministic=False)
    assert all(a != b for a, b in zip(draw(), first))


@pytest.mark.parametrize("ours,theirs", [
    (lambda p: SGD(p, lr=0.0625), lambda: keras.optimizers.SGD(0.0625)),
    (lambda p: SGD(p, lr=0.0625, momentum=0.875), lambda: keras.optimizers.SGD(0.0625, momentum=0.875)),
    # Keras keeps lr and the betas of the bias correction in float32: values exact in float32 match to 1e-12
    (lambda p: Adam(p, lr=0.0625, betas=(0.875, 0.9990234375), eps=1e-7, eps_mode="keras"),
     lambda: keras.optimizers.Adam(0.0625, beta_1=0.875, beta_2=0.9990234375, epsilon=1e-7)),
])
def test_matches_keras_optimizers_over_100_steps(ours, theirs):
    w0 = np.array([0.5, -1.0, 2.0])
    p = Param(w0)
    opt = ours([p])
    v = keras.Variable(w0, dtype="float64")
    kopt = theirs()
    for _ in range(100):
        p.grad = grad(p.data)
        opt.step()
        kopt.apply_gradients([(tf.constant(grad(v.numpy())), v)])
    np.testing.assert_allclose(p.data, v.numpy(), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_autograd_matches_gradient_tape(seed):
    rng = random.Random(seed)
    xs = [rng.uniform(-1.5, 1.5) for _ in range(3)]
    f = random_expression(3, n_ops=12, seed=seed)
    _, ours = value_and_grad(lambda v: f(v, VALUE_OPS), xs)
    variables = [tf.Variable(x, dtype=tf.float64) for x in xs]
    with tf.GradientTape() as tape:
        t_out = f(variables, {"tanh": tf.tanh, "exp": tf.exp, "sigmoid": tf.sigmoid, "relu": tf.nn.relu})
    grads = tape.gradient(t_out, variables)
    assert ours == pytest.approx([float(g) if g is not None else 0.0 for g in grads], rel=1e-9, abs=1e-9)

"""Knowledge distillation (chapter 09): a small student learns from a large teacher's soft targets.

- ``soften(logits, T)``: the temperature softmax ``softmax(logits / T)``.
- ``distillation_loss``: ``alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(p_T^teacher || p_T^student)``
  (Hinton, Vinyals & Dean 2015). The ``T^2`` keeps the soft term's gradients the same size at every
  temperature: the gradient of the KL term shrinks like ``1/T^2`` once ``T`` is large.
- ``distillation(T, alpha)``: that loss as the ``soft_loss`` of ``lib.recipes.train_classifier``, which
  trains the teacher, the students from scratch and the distilled students alike.
- ``logits_of``, ``accuracy``, ``state_dict_bytes``, ``cpu_latency``, ``gap_recovered``: the
  compression table (parameters are counted by ``lib.train.count_parameters``).
- ``bootstrap_gap_recovered``: how uncertain that share is, resampling test examples and seeds.
- ``keras_student`` / ``keras_distiller``: the Keras version, a ``Distiller`` with its own ``train_step``.
"""
from __future__ import annotations

import copy
import io
import statistics
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.device import model_device
from lib.train import eval_mode, predict
from lib.validate import require_int, require_labels, require_module, require_number, require_positive_number, require_tensor


def _check_logits(name: str, t: torch.Tensor) -> None:
    require_tensor(name, t, "batch, classes", kind="float")


def _check_temperature(T: float) -> None:
    try:
        require_positive_number("temperature T", T)
    except TypeError as e:  # one error type for every bad temperature, as before
        raise ValueError(str(e)) from None


def _check_alpha(alpha: float) -> None:
    require_number("alpha", alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}")


def soften(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Class probabilities at temperature ``T``: ``softmax(logits / T)``. ``logits: (batch, classes)``.

    ``T = 1`` is the ordinary softmax; larger ``T`` flattens the distribution and reveals how the
    model ranks the wrong classes ("dark knowledge"); ``T -> 0`` approaches the arg-max one-hot.
    """
    _check_logits("logits", logits)
    _check_temperature(T)
    return F.softmax(logits / T, dim=1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                      T: float = 4.0, alpha: float = 0.1) -> torch.Tensor:
    """``alpha * CE(student, target) + (1 - alpha) * T^2 * KL(soften(teacher, T) || soften(student, T))``.

    ``student_logits, teacher_logits: (batch, classes)``; ``target: (batch,)`` class indices. Both terms
    are means over the batch; the KL is summed over classes. Returns a scalar. The teacher's logits are
    treated as constants (detached): only the student learns.
    """
    _check_logits("student_logits", student_logits)
    _check_logits("teacher_logits", teacher_logits)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits must have the student's shape {tuple(student_logits.shape)}; "
                         f"got {tuple(teacher_logits.shape)}")
    require_tensor("target", target)
    require_labels("target", target, student_logits.shape[1], student_logits.shape[0])
    _check_temperature(T)
    _check_alpha(alpha)
    hard = F.cross_entropy(student_logits, target)
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / T, dim=1)
    soft = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return alpha * hard + (1.0 - alpha) * T * T * soft


# --------------------------------------------------------------------------- training
def distillation(T: float = 4.0, alpha: float = 0.1) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The ``soft_loss`` for ``lib.recipes.train_classifier``: ``loss(student_logits, y, teacher_logits)``
    is ``distillation_loss`` at temperature ``T`` with weight ``alpha`` on the hard labels.

    ``train_classifier(student, X, y, soft_targets=teacher_logits, soft_loss=distillation(T, alpha))``
    trains a student on the teacher's logits of the same images (computed once, unaugmented)."""
    _check_temperature(T)
    _check_alpha(alpha)

    def loss(student_logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return distillation_loss(student_logits, teacher_logits, target, T=T, alpha=alpha)

    loss.__name__ = f"distillation(T={T}, alpha={alpha})"
    return loss


def logits_of(model: nn.Module, X: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``model``'s logits on ``X`` in evaluation mode (``lib.train.predict``): ``(n, classes)`` on ``X``'s device."""
    require_tensor("X", X)
    return predict(model, X, batch_size=batch_size).to(X.device)


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``X`` classified as ``y`` (a float in [0, 1])."""
    require_tensor("X", X)
    # a y of shape (n, 1) would broadcast against the (n,) predictions into an (n, n) comparison
    if tuple(np.shape(y)) != (len(X),):
        raise ValueError(f"y must have shape (n,) = ({len(X)},), got {tuple(np.shape(y))}")
    return float((logits_of(model, X).argmax(1) == y).float().mean())


# --------------------------------------------------------------------------- compression table
def state_dict_bytes(model: nn.Module) -> int:
    """Size in bytes of ``torch.save(model.state_dict())``: what the model costs on disk."""
    require_module("model", model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.inference_mode()
def cpu_latency(model: nn.Module, x: torch.Tensor, repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time in seconds of one forward pass of ``model`` on ``x`` (a batch), on the CPU.

    Machine- and load-dependent: report it, never compare it in a test. A model on another device is
    timed as a CPU copy; ``model`` itself stays where it is, in the mode it was in.
    """
    require_module("model", model)
    require_tensor("x", x)
    require_int("repeats", repeats, 1)
    require_int("warmup", warmup, 0)
    if model_device(model).type != "cpu":
        model = copy.deepcopy(model).to("cpu")
    x = x.to("cpu")
    times = []
    with eval_mode(model):
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def gap_recovered(teacher_err: float, student_err: float, distilled_err: float) -> float:
    """Share of the teacher–student gap that distillation closes: ``(student - distilled) / (student - teacher)``.

    Errors (or error rates) of the teacher, the student trained from scratch, and the distilled
    student. Hinton et al. 2015 on MNIST: ``gap_recovered(67, 146, 74) = 0.91``.
    """
    for name, value in (("teacher_err", teacher_err), ("student_err", student_err), ("distilled_err", distilled_err)):
        require_number(name, value)
    if student_err == teacher_err:
        raise ValueError("the teacher and the scratch student have the same error: there is no gap")
    return (student_err - distilled_err) / (student_err - teacher_err)


def _correct_matrix(name: str, a) -> np.ndarray:
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be (n,) or (runs, n): one row of 0/1 per run; got shape {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must hold 0/1 or booleans (1 = correctly classified)")
    return a.astype(np.float64)


def bootstrap_gap_recovered(teacher_correct, scratch_correct, distilled_correct, *, n_boot: int = 2000,
                            seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of ``gap_recovered`` over test examples and seeds: ``(n_boot,)`` shares.

    ``teacher_correct: (n,)`` or ``(runs, n)``, ``scratch_correct, distilled_correct: (seeds, n)``: 1 where
    a run classifies test example ``i`` correctly; the scratch and distilled rows are paired by seed.
    Each resample draws ``n`` examples with replacement, the same ones for every model (they are scored
    on the same images), and as many seeds as there are with replacement, the same ones for both
    students (the pairing); the teacher's runs are resampled likewise. It then computes the share from
    the mean error rates. A resample in which the scratch student is no worse than the teacher has no
    gap to share: it is ``nan`` (``np.nanpercentile`` skips it; count them with ``np.isnan``).
    """
    teacher = _correct_matrix("teacher_correct", teacher_correct)
    scratch = _correct_matrix("scratch_correct", scratch_correct)
    distilled = _correct_matrix("distilled_correct", distilled_correct)
    n = teacher.shape[1]
    if scratch.shape[1] != n or distilled.shape != scratch.shape:
        raise ValueError("teacher_correct, scratch_correct and distilled_correct must cover the same n examples, "
                         f"the two students with the same seeds; got shapes {teacher.shape}, {scratch.shape}, "
                         f"{distilled.shape}")
    require_int("n_boot", n_boot, 1)
    require_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    shares = np.empty(n_boot)
    for start in range(0, n_boot, 256):          # blocks keep the (runs, block, n) arrays small
        b = min(256, n_boot - start)
        idx = rng.integers(0, n, (b, n))
        seeds = rng.integers(0, len(scratch), (b, len(scratch)))
        runs = rng.integers(0, len(teacher), (b, len(teacher)))
        # error rate of every run on each resample's examples: (runs, b)
        err_t, err_s, err_d = (1 - m[:, idx].mean(2) for m in (teacher, scratch, distilled))
        e_t = np.take_along_axis(err_t.T, runs, 1).mean(1)
        e_s = np.take_along_axis(err_s.T, seeds, 1).mean(1)
        e_d = np.take_along_axis(err_d.T, seeds, 1).mean(1)
        gap = e_s - e_t
        with np.errstate(divide="ignore", invalid="ignore"):
            shares[start:start + b] = np.where(gap > 0, (e_s - e_d) / gap, np.nan)
    return shares


# --------------------------------------------------------------------------- Keras
def keras_student(channels: tuple[int, int] = (8, 16), hidden: int = 32, num_classes: int = 10):
    """The student in Keras: the same small LeNet (``lib.cnn.keras_lenet`` without dropout or shifts),
    on ``(batch, 8, 8, 1)`` images (channels last). Batch norm uses PyTorch's settings: with Keras'
    momentum 0.99 the running statistics would lag far behind the weights in a run of a few hundred
    steps, and test accuracy would suffer. Initial weights come from Keras' global generator: call
    ``lib.device.seed_everything`` first."""
    from lib.cnn import keras_lenet

    return keras_lenet(num_classes, channels, hidden, dropout=0.0, max_shift=0, bn_momentum=0.9, bn_epsilon=1e-5,
                       name="student")


def keras_distiller(student, T: float = 4.0, alpha: float = 0.1):
    """A Keras ``Distiller``: ``fit(x, (y, teacher_logits))`` trains ``student`` on the distillation loss.

    The teacher's logits are computed once beforehand (here by the PyTorch teacher) and passed as part
    of the targets, so any teacher works. ``train_step`` computes ``alpha * CE + (1 - alpha) * T^2 * KL``
    under a ``GradientTape``; ``test_step`` reports the student's accuracy. ``distiller(x)`` returns
    the student's logits.
    """
    from lib.keras_models import load_keras

    _check_temperature(T)
    _check_alpha(alpha)
    keras = load_keras()
    import tensorflow as tf  # already imported by load_keras; train_step needs its GradientTape

    class Distiller(keras.Model):
        def __init__(self):
            super().__init__()
            self.student = student
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.acc_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

        @property
        def metrics(self):
            return [self.loss_tracker, self.acc_tracker]

        def call(self, x, training=False):
            return self.student(x, training=training)

        def train_step(self, data):
            x, (y, teacher_logits), _ = keras.utils.unpack_x_y_sample_weight(data)
            with tf.GradientTape() as tape:
                logits = self.student(x, training=True)
                hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
                p_teacher = tf.nn.softmax(teacher_logits / T)
                kl = tf.reduce_sum(p_teacher * (tf.nn.log_softmax(teacher_logits / T)
                                                - tf.nn.log_softmax(logits / T)), axis=1)
                loss = alpha * hard + (1.0 - alpha) * T * T * tf.reduce_mean(kl)
            grads = tape.gradient(loss, self.student.trainable_weights)
            self.optimizer.apply(grads, self.student.trainable_weights)
            self.loss_tracker.update_state(loss)
            self.acc_tracker.update_state(y, logits)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data):
            x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
            self.acc_tracker.update_state(y, self.student(x, training=False))
            return {"accuracy": self.acc_tracker.result()}

    return Distiller()

"""Knowledge distillation (chapter 09): a small student learns from a large teacher's soft targets.

- ``soften(logits, T)``: the temperature softmax ``softmax(logits / T)``.
- ``distillation_loss``: ``alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(p_T^teacher || p_T^student)``
  (Hinton, Vinyals & Dean 2015). The ``T^2`` keeps the soft term's gradients the same size at every
  temperature: the gradient of the KL term shrinks like ``1/T^2`` once ``T`` is large.
- ``train_classifier``: one short training loop for the teacher (hard labels, optional augmentation)
  and for students (hard labels, or distillation when the teacher's logits are given).
- ``count_parameters``, ``state_dict_bytes``, ``cpu_latency``, ``gap_recovered``: the compression table.
- ``keras_student`` / ``keras_distiller``: the Keras version, a ``Distiller`` with its own ``train_step``.
"""
from __future__ import annotations

import io
import statistics
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.validate import (check_loss, describe, require_int, require_module, require_number, require_positive_int,
                          require_positive_number, require_tensor)


def _check_logits(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != 2 or not t.is_floating_point():
        raise ValueError(f"{name} must be floating logits of shape (batch, classes); "
                         f"got {t.dtype} of shape {tuple(t.shape)}")


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
    if not isinstance(target, torch.Tensor) or target.shape != student_logits.shape[:1] or target.is_floating_point():
        raise ValueError(f"target must be class indices of shape ({student_logits.shape[0]},); "
                         f"got {target.dtype} of shape {tuple(target.shape)}")
    _check_temperature(T)
    _check_alpha(alpha)
    hard = F.cross_entropy(student_logits, target)
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / T, dim=1)
    soft = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return alpha * hard + (1.0 - alpha) * T * T * soft


# --------------------------------------------------------------------------- training
def train_classifier(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 60,
                     lr: float = 5e-3, batch_size: int = 128, weight_decay: float = 0.0, seed: int = 0,
                     teacher_logits: torch.Tensor | None = None, T: float = 4.0, alpha: float = 0.1,
                     augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
                     ) -> list[float]:
    """Train ``model`` on ``X: (n, ...)``, ``y: (n,)`` with AdamW and a one-cycle learning rate.

    Without ``teacher_logits`` the loss is cross-entropy on ``y`` (a teacher, or a student from
    scratch). With ``teacher_logits: (n, classes)`` (the teacher's outputs on the same ``X``, computed
    once) the loss is ``distillation_loss`` with ``T`` and ``alpha``. ``augment(x_batch, generator)``
    transforms each batch (hard-label training only: stored teacher logits belong to the unaugmented
    images). ``seed`` fixes the batch order and augmentation; seed the initial weights yourself.
    Returns the mean training loss of each epoch. This loop rather than ``lib.train.fit``: the
    distillation loss needs the teacher's logits of exactly the images in each batch.
    """
    require_module("model", model)
    require_positive_int("epochs", epochs)
    require_tensor("X", X, kind="float")
    require_tensor("y", y, "n", (len(X),), kind="int")
    if len(X) == 0:
        raise ValueError("X is empty: there is nothing to train on")
    require_positive_int("batch_size", batch_size)
    require_positive_number("lr", lr)
    require_number("weight_decay", weight_decay, low=0)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be a function augment(x_batch, generator) or None, got {describe(augment)}")
    if teacher_logits is not None:
        require_tensor("teacher_logits", teacher_logits, kind="float")
        _check_temperature(T)
        _check_alpha(alpha)
        if teacher_logits.ndim != 2 or len(teacher_logits) != len(X):
            raise ValueError(f"teacher_logits must have shape ({len(X)}, classes); "
                             f"got {tuple(teacher_logits.shape)}")
        if augment is not None:
            raise ValueError("augment cannot be combined with stored teacher_logits (they were "
                             "computed on the unaugmented images)")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(X) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch)
    losses = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for i, idx in enumerate(torch.randperm(len(X), generator=g).split(batch_size)):
            idx = idx.to(X.device)
            xb = X[idx] if augment is None else augment(X[idx], g)
            out = model(xb)
            if teacher_logits is None:
                loss = F.cross_entropy(out, y[idx])
            else:
                loss = distillation_loss(out, teacher_logits[idx], y[idx], T=T, alpha=alpha)
            check_loss(loss, f"epoch {epoch + 1}/{epochs}, batch {i + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(X))
    model.eval()
    return losses


@torch.no_grad()
def logits_of(model: nn.Module, X: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``model``'s logits on ``X`` in evaluation mode, batch by batch: ``(n, classes)``."""
    require_module("model", model)
    require_tensor("X", X)
    require_positive_int("batch_size", batch_size)
    if len(X) == 0:
        raise ValueError("X is empty")
    model.eval()
    return torch.cat([model(xb) for xb in X.split(batch_size)])


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``X`` classified as ``y`` (a float in [0, 1])."""
    require_tensor("X", X)
    # a y of shape (n, 1) would broadcast against the (n,) predictions into an (n, n) comparison
    if tuple(np.shape(y)) != (len(X),):
        raise ValueError(f"y must have shape (n,) = ({len(X)},), got {tuple(np.shape(y))}")
    return float((logits_of(model, X).argmax(1) == y).float().mean())


# --------------------------------------------------------------------------- compression table
def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    require_module("model", model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def state_dict_bytes(model: nn.Module) -> int:
    """Size in bytes of ``torch.save(model.state_dict())``: what the model costs on disk."""
    require_module("model", model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.inference_mode()
def cpu_latency(model: nn.Module, x: torch.Tensor, repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time in seconds of one forward pass of ``model`` on ``x`` (a batch), on the CPU.

    Machine- and load-dependent: report it, never compare it in a test.
    """
    require_module("model", model)
    require_tensor("x", x)
    require_int("repeats", repeats, 1)
    require_int("warmup", warmup, 0)
    model = model.to("cpu").eval()
    x = x.to("cpu")
    for _ in range(warmup):
        model(x)
    times = []
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


# --------------------------------------------------------------------------- Keras
def keras_student(channels: tuple[int, int] = (8, 16), hidden: int = 32, num_classes: int = 10, seed: int = 0):
    """The student in Keras: the same small LeNet, on ``(batch, 8, 8, 1)`` images (channels last)."""
    from lib.keras_models import load_keras

    keras = load_keras(seed)
    L = keras.layers
    layers = [keras.Input((8, 8, 1))]
    for c in channels:
        # PyTorch's BatchNorm2d defaults: Keras' momentum 0.99 would let the running statistics lag
        # far behind the weights in a run of a few hundred steps, and test accuracy would suffer
        layers += [L.Conv2D(c, 3, padding="same", use_bias=False),
                   L.BatchNormalization(momentum=0.9, epsilon=1e-5), L.ReLU(), L.MaxPooling2D(2)]
    layers += [L.Flatten(), L.Dense(hidden, activation="relu"), L.Dense(num_classes)]
    return keras.Sequential(layers, name="student")


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
    keras = load_keras(seed=None)
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

"""Autoencoders and variational autoencoders (chapter 08), for flat images such as the 8x8 digits.

- ``pca_fit`` / ``pca_reconstruct``: the linear baseline an autoencoder must beat at equal code size.
- ``Autoencoder``: a deterministic MLP encoder ``x -> code`` and decoder ``code -> x_hat``.
- ``gaussian_kl``, ``reparameterize``, ``bernoulli_nll``, ``elbo_terms``, ``vae_loss``: the pieces
  of the ELBO. With an encoder ``q(z|x) = N(mu, diag(exp(logvar)))``, a prior ``p(z) = N(0, I)`` and a
  Bernoulli decoder, ``-ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z))``, in nats.
- ``log_normal_diag``, ``importance_weighted_bound``: the bound ``L_k`` on ``log p(x)`` (Burda et al.,
  2016), tighter than the ELBO and tighter as ``k`` grows.
- ``VAE``: the MLP encoder/decoder pair; ``forward`` returns ``(logits, mu, logvar)``.
- ``reconstruction_step`` / ``vae_step``: the steps with which ``train_autoencoder`` / ``train_vae``
  train through ``lib.train.fit``; ``vae_step`` minimises ``vae_loss`` itself.
- ``keras_vae``: the same VAE in Keras, with its own ``train_step``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.device import model_device
from lib.mlp import MLP
from lib.train import History, eval_mode, fit
from lib.validate import (describe, require_tensor, require_array, require_finite, require_in_unit_interval, require_int,
                          require_number, require_positive_int, require_positive_number)


def _check_2d(name: str, t: torch.Tensor, width: int | None = None) -> None:
    require_tensor(name, t, "batch, dim", (None, width), kind="float")


def _check_training_args(X: torch.Tensor, epochs: int, batch_size: int, lr: float) -> None:
    require_positive_int("epochs", epochs)
    require_positive_int("batch_size", batch_size)
    require_positive_number("lr", lr)
    if not len(X):
        raise ValueError("X is empty: there is nothing to train on")
    require_finite("X", X)


# --------------------------------------------------------------------------- PCA baseline
def pca_fit(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of ``X: (n, d)`` by SVD of the centred data.

    Returns ``mean: (d,)`` and ``components: (k, d)`` (orthonormal rows, largest variance first).
    """
    X = np.asarray(require_array("X", X, ndim=2), dtype=np.float64)
    require_finite("X", X)
    if not isinstance(k, (int, np.integer)) or isinstance(k, (bool, np.bool_)) or not 1 <= k <= min(X.shape):
        raise ValueError(f"k must be an int in 1..{min(X.shape)}; got {k!r}")
    mean = X.mean(axis=0)
    _, _, Vt = np.linalg.svd(X - mean, full_matrices=False)
    return mean, Vt[:k]


def pca_reconstruct(X: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Project ``X: (n, d)`` onto the ``components: (k, d)`` and map back: ``(n, d)``."""
    components = require_array("components", components, ndim=2)
    mean = require_array("mean", mean)
    if mean.shape != (components.shape[1],):
        raise ValueError(f"mean must have shape ({components.shape[1]},) like a component; got {mean.shape}")
    X = np.asarray(require_array("X", X), dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != components.shape[1]:
        raise ValueError(f"X must have shape (n, {components.shape[1]}); got {X.shape}")
    return (X - mean) @ components.T @ components + mean


# --------------------------------------------------------------------------- models
class Autoencoder(nn.Module):
    """``x: (batch, n_in)`` in [0, 1] -> ``code: (batch, code_size)`` -> ``x_hat: (batch, n_in)`` in (0, 1)."""

    def __init__(self, code_size: int, n_in: int = 64, hidden: int = 128):
        super().__init__()
        for name, value in (("code_size", code_size), ("n_in", n_in), ("hidden", hidden)):
            require_int(name, value)
        if code_size < 1 or hidden < 1 or n_in < 1:
            raise ValueError(f"code_size, n_in and hidden must be positive; got {code_size}, {n_in}, {hidden}")
        self.n_in = n_in
        self.encoder = MLP((n_in, hidden, code_size))          # lib.mlp.MLP: Linear -> ReLU -> Linear
        self.decoder = nn.Sequential(MLP((code_size, hidden, n_in)), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_2d("x", x, self.n_in)
        return self.decoder(self.encoder(x))


class VAE(nn.Module):
    """A Gaussian-encoder, Bernoulli-decoder VAE for flat images ``x: (batch, n_in)`` in [0, 1].

    ``encode(x) -> (mu, logvar)``, each ``(batch, latent)``; ``decode(z) -> logits (batch, n_in)``;
    ``forward(x) -> (logits, mu, logvar)`` with one reparameterised sample per example.
    """

    def __init__(self, latent: int = 2, n_in: int = 64, hidden: int = 128):
        super().__init__()
        for name, value in (("latent", latent), ("n_in", n_in), ("hidden", hidden)):
            require_int(name, value)
        if latent < 1 or hidden < 1 or n_in < 1:
            raise ValueError(f"latent and hidden (and n_in) must be positive; got {latent}, {hidden}, {n_in}")
        self.latent, self.n_in = latent, n_in
        self.encoder = MLP((n_in, hidden, 2 * latent))  # one head, split into mu and logvar
        self.decoder = MLP((latent, hidden, n_in))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_2d("x", x, self.n_in)
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        _check_2d("z", z, self.latent)
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator=generator)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images drawn from the prior: ``z ~ N(0, I)``, pixels = sigmoid(decoder(z)): ``(n, n_in)``."""
        require_positive_int("n", n)
        device = model_device(self)
        z = torch.randn(n, self.latent, generator=generator).to(device)  # drawn on the CPU: the same on any device
        return torch.sigmoid(self.decode(z))


# --------------------------------------------------------------------------- ELBO pieces
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` in closed form, summed over latent dims: ``(batch,)``.

    Per dimension: ``0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)``.
    """
    _check_2d("mu", mu)
    require_tensor("logvar", logvar, shape=tuple(mu.shape))
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``z = mu + sigma * eps`` with ``eps ~ N(0, I)``: a sample that gradients can flow through.

    The randomness sits in ``eps`` (drawn here unless given), so ``dz/dmu = 1`` and
    ``dz/dlogvar = 0.5 * sigma * eps`` are ordinary derivatives. Shapes: all ``(batch, latent)``.
    """
    _check_2d("mu", mu)
    require_tensor("logvar", logvar, shape=tuple(mu.shape))
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)  # drawn on the CPU
    else:
        require_tensor("eps", eps, shape=tuple(mu.shape))
    return mu + torch.exp(0.5 * logvar) * eps


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log p(x|z)`` of a Bernoulli decoder, summed over pixels, in nats: ``(batch,)``.

    ``logits, x: (batch, n_in)``; ``x`` in [0, 1]. For grey pixels this is the expected negative
    log-likelihood of an image binarised at random with ``P(pixel on) = x``.
    """
    _check_2d("logits", logits)
    require_tensor("x", x, shape=tuple(logits.shape))
    _check_2d("x", x)
    require_in_unit_interval("x", x)
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)


def elbo_terms(model: VAE, x: torch.Tensor, samples: int = 1,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """Mean reconstruction term, KL term and ``-ELBO`` (nats per image) of ``model`` on ``x: (n, n_in)``.

    The reconstruction expectation is estimated with ``samples`` draws of ``z`` per image; the KL
    is exact. Returns floats ``{"recon", "kl", "neg_elbo"}`` (``neg_elbo = recon + kl``).
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a lib.vae.VAE, got {describe(model)}")
    require_positive_int("samples", samples)
    with eval_mode(model):
        with torch.no_grad():
            mu, logvar = model.encode(x)
            recon = torch.stack([bernoulli_nll(model.decode(reparameterize(mu, logvar, generator=generator)), x)
                                 for _ in range(samples)]).mean(0)
            kl = gaussian_kl(mu, logvar)
    r, k = float(recon.mean()), float(kl.mean())
    return {"recon": r, "kl": k, "neg_elbo": r + k}


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, diag(exp(logvar)))`` summed over the last dimension (nats). ``z``, ``mu`` and
    ``logvar`` broadcast against each other, e.g. ``z: (k, batch, latent)`` with ``mu: (batch, latent)``."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


@torch.no_grad()
def importance_weighted_bound(model: VAE, x: torch.Tensor, k: int = 100, *, generator: torch.Generator | None = None,
                              eps: torch.Tensor | None = None, chunk: int = 100) -> torch.Tensor:
    r"""The importance-weighted bound $L_k(x)$ of Burda et al. (2016), per image, in nats: ``(batch,)``.

    $L_k = \log \frac1k \sum_{j=1}^k w_j$ with $w_j = p(x \mid z_j)\,p(z_j) / q(z_j \mid x)$ and
    $z_1, \dots, z_k$ drawn from the encoder $q(z \mid x)$. It is a lower bound on $\log p(x)$ that
    grows (on average) with ``k`` and reaches $\log p(x)$ as $k \to \infty$; $E[L_1]$ is the ELBO.
    The noise ``eps: (k, batch, latent)`` is drawn on the CPU from ``generator`` unless given;
    ``chunk`` samples are decoded at a time (memory only, not the result).
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a lib.vae.VAE, got {describe(model)}")
    k, chunk = require_positive_int("k", k), require_positive_int("chunk", chunk)
    _check_2d("x", x, model.n_in)
    require_in_unit_interval("x", x)
    with eval_mode(model):
        mu, logvar = model.encode(x)
        if eps is None:
            eps = torch.randn((k, *mu.shape), generator=generator, dtype=mu.dtype)
        else:
            require_tensor("eps", eps, "k, batch, latent", (k, *mu.shape), kind="float")
        eps = eps.to(mu.device)
        log_w = []
        for start in range(0, k, chunk):
            z = mu + torch.exp(0.5 * logvar) * eps[start:start + chunk]          # (c, batch, latent)
            logits = model.decode(z.reshape(-1, model.latent)).reshape(*z.shape[:2], -1)
            log_px_z = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
            log_pz = log_normal_diag(z, torch.zeros_like(mu), torch.zeros_like(logvar))
            log_w.append(log_px_z + log_pz - log_normal_diag(z, mu, logvar))
        return torch.logsumexp(torch.cat(log_w).double(), dim=0) - math.log(k)


def vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0) -> torch.Tensor:
    """The training loss ``mean_batch[recon + beta * KL]`` (a scalar); ``beta = 1`` is ``-ELBO``."""
    require_number("beta", beta, low=0)
    return (bernoulli_nll(logits, x) + beta * gaussian_kl(mu, logvar)).mean()


# --------------------------------------------------------------------------- training
def reconstruction_step(model: nn.Module, batch) -> dict:
    """The ``lib.train.fit`` step of an autoencoder: mean squared error between ``model(x)`` and ``x``
    on a batch ``(x,)``."""
    x, = batch
    return {"loss": F.mse_loss(model(x), x)}


def vae_step(beta: float = 1.0, generator: torch.Generator | None = None, warmup_steps: int = 0):
    """The ``lib.train.fit`` step of a VAE: ``vae_loss`` (``recon + beta * KL``, the very loss checked
    against its definition in chapter 08) on a batch ``(x,)``, logging both terms (nats per image).
    The reparameterisation noise comes from ``generator``. With ``warmup_steps > 0`` the KL weight
    rises linearly from ``beta / warmup_steps`` to ``beta`` over the first ``warmup_steps`` training
    steps (KL warm-up); it is logged as ``beta``."""
    require_number("beta", beta, low=0)
    warmup_steps = require_int("warmup_steps", warmup_steps, low=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    done = [0]  # training steps taken so far (validation steps do not advance the warm-up)

    def step(model: VAE, batch) -> dict:
        x, = batch
        if model.training:
            done[0] += 1
        weight = beta * min(1.0, done[0] / warmup_steps) if warmup_steps else beta
        logits, mu, logvar = model(x, generator=generator)
        with torch.no_grad():
            recon, kl = bernoulli_nll(logits, x).mean(), gaussian_kl(mu, logvar).mean()
        logs = {"loss": vae_loss(logits, x, mu, logvar, weight), "recon": recon, "kl": kl}
        return {**logs, "beta": torch.tensor(weight)} if warmup_steps else logs

    return step


def _fit_on(model: nn.Module, X: torch.Tensor, step, *, epochs: int, batch_size: int, lr: float, seed: int,
            progress: bool) -> History:
    from lib.data import make_loader
    from lib.device import seeded

    loader = make_loader(X, batch_size=batch_size, shuffle=True, seed=seed)
    with seeded(seed):
        return fit(model, loader, epochs=epochs, step=step, lr=lr, device=X.device, progress=progress)


def train_autoencoder(model: Autoencoder, X: torch.Tensor, epochs: int = 60, batch_size: int = 64,
                      lr: float = 3e-3, seed: int = 0, progress: bool = False) -> History:
    """Minimise the mean squared reconstruction error on ``X: (n, n_in)`` with ``lib.train.fit`` (Adam,
    constant learning rate) and ``reconstruction_step``; returns the ``History`` (``train_loss`` per epoch).
    ``seed`` fixes the batch order."""
    _check_2d("X", X, model.n_in)
    _check_training_args(X, epochs, batch_size, lr)
    return _fit_on(model, X, reconstruction_step, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                   progress=progress)


def train_vae(model: VAE, X: torch.Tensor, epochs: int = 100, batch_size: int = 64, lr: float = 3e-3,
              beta: float = 1.0, seed: int = 0, warmup_epochs: int = 0, progress: bool = False) -> History:
    """Minimise ``recon + beta * KL`` on ``X: (n, n_in)`` with ``lib.train.fit`` (Adam, constant learning
    rate) and ``vae_step``; returns the ``History``: per epoch ``train_loss``, ``train_recon`` and
    ``train_kl`` (nats per image). ``seed`` fixes the batch order and the noise. ``warmup_epochs > 0``
    raises the KL weight linearly from near 0 to ``beta`` over that many epochs (KL warm-up, logged
    as ``train_beta``)."""
    _check_2d("X", X, model.n_in)
    _check_training_args(X, epochs, batch_size, lr)
    require_in_unit_interval("X", X)
    warmup_epochs = require_int("warmup_epochs", warmup_epochs, low=0)
    noise = torch.Generator().manual_seed(seed + 1)
    warmup_steps = warmup_epochs * math.ceil(len(X) / batch_size)
    return _fit_on(model, X, vae_step(beta, noise, warmup_steps), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                   progress=progress)


# --------------------------------------------------------------------------- Keras
def keras_vae(latent: int = 2, n_in: int = 64, hidden: int = 128, beta: float = 1.0, noise_seed: int = 0):
    """The same VAE in Keras: a ``keras.Model`` subclass whose ``train_step`` minimises ``recon + beta*KL``.

    ``model(x)`` returns ``(logits, mu, logvar)``; ``fit`` reports the mean ``recon`` and ``kl`` (nats).
    The sampling noise has its own ``keras.random.SeedGenerator(noise_seed)``; initial weights come
    from Keras' global generator (call ``lib.device.seed_everything`` first).
    """
    from lib.keras_models import load_keras

    keras = load_keras()
    import tensorflow as tf  # already imported by load_keras; train_step needs its GradientTape

    class KerasVAE(keras.Model):
        def __init__(self):
            super().__init__()
            self.latent = latent
            self.encoder = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(hidden, "relu"),
                                             keras.layers.Dense(2 * latent)])
            self.decoder = keras.Sequential([keras.Input((latent,)), keras.layers.Dense(hidden, "relu"),
                                             keras.layers.Dense(n_in)])
            self.noise = keras.random.SeedGenerator(noise_seed)
            self.recon_tracker = keras.metrics.Mean(name="recon")
            self.kl_tracker = keras.metrics.Mean(name="kl")

        @property
        def metrics(self):
            return [self.recon_tracker, self.kl_tracker]

        def call(self, x):
            mu, logvar = tf.split(self.encoder(x), 2, axis=1)
            eps = keras.random.normal(tf.shape(mu), seed=self.noise)
            z = mu + tf.exp(0.5 * logvar) * eps  # the reparameterisation trick
            return self.decoder(z), mu, logvar

        def terms(self, x):
            logits, mu, logvar = self(x)
            recon = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=1)
            kl = 0.5 * tf.reduce_sum(tf.square(mu) + tf.exp(logvar) - 1.0 - logvar, axis=1)
            return recon, kl

        def train_step(self, data):
            x = data[0] if isinstance(data, tuple) else data
            with tf.GradientTape() as tape:
                recon, kl = self.terms(x)
                loss = tf.reduce_mean(recon + beta * kl)
            grads = tape.gradient(loss, self.trainable_weights)
            self.optimizer.apply(grads, self.trainable_weights)
            self.recon_tracker.update_state(recon)
            self.kl_tracker.update_state(kl)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data):
            x = data[0] if isinstance(data, tuple) else data
            recon, kl = self.terms(x)
            self.recon_tracker.update_state(recon)
            self.kl_tracker.update_state(kl)
            return {m.name: m.result() for m in self.metrics}

    model = KerasVAE()
    model.build((None, n_in))
    return model


def latent_grid(model: VAE, n: int = 10, limit: float = 2.5) -> np.ndarray:
    """Decode an ``n x n`` grid of 2-D latent points in ``[-limit, limit]^2``: ``(n, n, 8, 8)`` pixels.

    Row ``i`` runs from ``z2 = +limit`` (top) to ``-limit``; column ``j`` from ``z1 = -limit`` to ``+limit``.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a lib.vae.VAE, got {describe(model)}")
    if model.latent != 2:
        raise ValueError(f"latent_grid needs a 2-D latent space; the model has {model.latent}")
    require_positive_int("n", n)
    require_positive_number("limit", limit)
    side = int(math.isqrt(model.n_in))
    if side * side != model.n_in:
        raise ValueError(f"latent_grid draws square images; the model's n_in={model.n_in} is not a square")
    ticks = torch.linspace(-limit, limit, n)
    z = torch.stack(torch.meshgrid(ticks.flip(0), ticks, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
    device = model_device(model)
    with torch.no_grad():
        pix = torch.sigmoid(model.decode(z.to(device))).cpu().numpy()
    return pix.reshape(n, n, side, side)

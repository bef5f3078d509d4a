"""Tests of lib.vae: the ELBO pieces against references, shapes, errors, determinism, Keras twin."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib import vae


def test_gaussian_kl_matches_torch_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    closed = vae.gaussian_kl(mu, logvar)
    assert closed.shape == (4,)
    torch.testing.assert_close(closed, torch.distributions.kl_divergence(q, p).sum(1))
    torch.manual_seed(1)
    z = q.sample((400_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(2).mean(0)
    torch.testing.assert_close(mc, closed, rtol=0.01, atol=0.01)


def test_gaussian_kl_is_zero_at_the_prior():
    zeros = torch.zeros(2, 5)
    assert torch.equal(vae.gaussian_kl(zeros, zeros), torch.zeros(2))


def test_reparameterized_sample_gradient():
    mu = torch.tensor([[0.3, -1.0]], requires_grad=True)
    logvar = torch.tensor([[0.4, -0.6]], requires_grad=True)
    eps = torch.tensor([[1.5, -0.2]])
    z = vae.reparameterize(mu, logvar, eps=eps)
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)


def test_reparameterized_monte_carlo_gradient_of_expectation():
    # E[z^2] = mu^2 + sigma^2, so d/dmu = 2 mu and d/dlogvar = sigma^2
    mu = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([[-0.5]], dtype=torch.float64, requires_grad=True)
    n = 200_000
    z = vae.reparameterize(mu.expand(n, 1), logvar.expand(n, 1),
                           generator=torch.Generator().manual_seed(0))
    (z**2).mean().backward()
    assert abs(mu.grad.item() - 1.4) < 0.02
    assert abs(logvar.grad.item() - math.exp(-0.5)) < 0.02


def test_reparameterize_draws_are_reproducible_and_distributed():
    mu, logvar = torch.full((50_000, 1), 2.0), torch.full((50_000, 1), math.log(0.25))
    a = vae.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3))
    b = vae.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert abs(a.mean().item() - 2.0) < 0.01 and abs(a.std().item() - 0.5) < 0.01


def test_bernoulli_nll_and_vae_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    logits, x = torch.randn(3, 6, generator=g), torch.rand(3, 6, generator=g)
    p = torch.sigmoid(logits)
    by_hand = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(1)
    torch.testing.assert_close(vae.bernoulli_nll(logits, x), by_hand, rtol=1e-5, atol=1e-5)
    mu, logvar = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    expected = (by_hand + 2.0 * vae.gaussian_kl(mu, logvar)).mean()
    torch.testing.assert_close(vae.vae_loss(logits, x, mu, logvar, beta=2.0), expected, rtol=1e-5, atol=1e-5)


def test_pca_matches_sklearn():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(0).normal(size=(50, 6))
    mean, comps = vae.pca_fit(X, 3)
    assert comps.shape == (3, 6)
    ref = PCA(3).fit(X)
    np.testing.assert_allclose(vae.pca_reconstruct(X, mean, comps), ref.inverse_transform(ref.transform(X)),
                               atol=1e-10)


def test_shapes():
    torch.manual_seed(0)
    x = torch.rand(5, 64)
    ae = vae.Autoencoder(code_size=3)
    assert ae(x).shape == (5, 64) and ae.encoder(x).shape == (5, 3)
    model = vae.VAE(latent=4)
    logits, mu, logvar = model(x)
    assert logits.shape == (5, 64) and mu.shape == logvar.shape == (5, 4)
    assert model.sample(7).shape == (7, 64)
    assert vae.latent_grid(vae.VAE(latent=2), n=3).shape == (3, 3, 8, 8)
    # elbo_terms (eval mode, no gradient) agrees with vae_loss at beta = 1 for the same noise
    terms = vae.elbo_terms(model, x, samples=1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        z = vae.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
        assert terms["neg_elbo"] == pytest.approx(float(vae.vae_loss(model.decode(z), x, mu, logvar)), rel=1e-6)
        assert terms["kl"] == pytest.approx(float(vae.gaussian_kl(mu, logvar).mean()), rel=1e-6)


def test_latent_grid_orientation():
    model = vae.VAE(latent=2)
    seen = []
    model.decode = lambda z: (seen.append(z.clone()), torch.zeros(len(z), 64))[1]
    vae.latent_grid(model, n=3, limit=1.0)
    z = seen[0].reshape(3, 3, 2)
    assert z[0, 0].tolist() == [-1.0, 1.0]   # top-left: smallest z1, largest z2
    assert z[2, 2].tolist() == [1.0, -1.0]


def test_bad_inputs():
    model = vae.VAE(latent=2)
    with pytest.raises(ValueError, match=r"\(batch, dim\) = \(\*, 64\)"):
        model(torch.rand(5, 63))
    with pytest.raises(TypeError, match="torch.Tensor"):
        vae.gaussian_kl(np.zeros((2, 2)), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"logvar must have shape \(2, 2\), got \(2, 3\)"):
        vae.gaussian_kl(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="eps"):
        vae.reparameterize(torch.zeros(2, 2), torch.zeros(2, 2), eps=torch.zeros(3, 2))
    with pytest.raises(TypeError, match="floating"):
        vae.bernoulli_nll(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="beta"):
        vae.vae_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 1), torch.zeros(1, 1), beta=-1)
    with pytest.raises(ValueError, match="2-D latent"):
        vae.latent_grid(vae.VAE(latent=3))
    with pytest.raises(ValueError, match="k must be"):
        vae.pca_fit(np.zeros((10, 4)), 5)
    with pytest.raises(ValueError, match="latent and hidden"):
        vae.VAE(latent=0)


def test_training_is_deterministic_and_learns():
    X = torch.rand(128, 64, generator=torch.Generator().manual_seed(0)).round()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = vae.VAE(latent=2, hidden=16)
        hist = vae.train_vae(model, X, epochs=5, batch_size=32, seed=1)
        runs.append((model, hist))
    assert hist["train_recon"][-1] < hist["train_recon"][0]
    # the step minimises vae_loss itself: with beta = 1 its value is recon + KL, batch by batch
    np.testing.assert_allclose(hist.steps["train_loss"],
                               np.add(hist.steps["train_recon"], hist.steps["train_kl"]), rtol=1e-5)
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    ae = vae.Autoencoder(code_size=2, hidden=16)
    losses = vae.train_autoencoder(ae, X, epochs=5, batch_size=32)["train_loss"]
    assert losses[-1] < losses[0]


def test_keras_vae_matches_pytorch_terms():
    torch.manual_seed(0)
    tv = vae.VAE(latent=2, hidden=16)
    kv = vae.keras_vae(latent=2, hidden=16)
    # copy the PyTorch weights (Linear stores (out, in); Dense stores (in, out))
    torch_linears = [m for m in list(tv.encoder.modules()) + list(tv.decoder.modules()) if isinstance(m, torch.nn.Linear)]
    keras_denses = [l for l in kv.encoder.layers + kv.decoder.layers if l.get_weights()]
    for lin, dense in zip(torch_linears, keras_denses):
        dense.set_weights([lin.weight.detach().numpy().T, lin.bias.detach().numpy()])
    x = np.random.default_rng(0).random((6, 64)).astype(np.float32)
    _, k_mu, k_logvar = kv(x)
    t_mu, t_logvar = tv.encode(torch.tensor(x))
    np.testing.assert_allclose(np.asarray(k_mu), t_mu.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(k_logvar), t_logvar.detach().numpy(), atol=1e-5)
    _, k_kl = kv.terms(x)
    np.testing.assert_allclose(np.asarray(k_kl), vae.gaussian_kl(t_mu, t_logvar).detach().numpy(), atol=1e-5)
    keras = __import__("keras")
    kv.compile(optimizer=keras.optimizers.Adam(1e-3))
    hist = kv.fit(x, epochs=2, batch_size=3, verbose=0)
    assert set(hist.history) == {"recon", "kl"} and np.isfinite(hist.history["recon"]).all()


def test_bernoulli_targets_must_be_probabilities():
    logits = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\].*\[0, 255\]"):
        vae.bernoulli_nll(logits, torch.tensor([[0.0, 255.0, 3.0, 1.0]] * 2))  # used to give negative nats
    with pytest.raises(ValueError, match="NaN"):
        vae.bernoulli_nll(logits, torch.full((2, 4), float("nan")))
    X = torch.rand(16, 64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"X must lie in \[0, 1\]"):
        vae.train_vae(vae.VAE(), 16 * X, epochs=1)


def test_training_loops_and_helpers_check_their_arguments():
    X = torch.rand(16, 64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        vae.train_autoencoder(vae.Autoencoder(4), X, epochs=1, batch_size=-5)  # used to return [0.0]
    with pytest.raises(ValueError, match="NaN"):
        vae.train_autoencoder(vae.Autoencoder(4), X.masked_fill(X > 0.9, float("nan")), epochs=1)
    with pytest.raises(ValueError, match="empty"):
        vae.train_vae(vae.VAE(), X[:0], epochs=1)
    with pytest.raises(ValueError, match="not a square"):
        vae.latent_grid(vae.VAE(latent=2, n_in=10))
    with pytest.raises(ValueError, match="n must be a positive int"):
        vae.VAE().sample(0)
    with pytest.raises(TypeError, match="samples must be a positive int"):
        vae.elbo_terms(vae.VAE(), X, samples=2.5)
    with pytest.raises(ValueError, match="NaN"):
        vae.pca_fit(np.full((5, 3), np.nan), 1)
    mean, W = vae.pca_fit(np.eye(4), 2)
    with pytest.raises(ValueError, match=r"mean must have shape \(4,\)"):
        vae.pca_reconstruct(np.eye(4), mean[:3], W)


def test_train_vae_minimises_vae_loss_itself(monkeypatch):
    calls = []
    real = vae.vae_loss

    def counting(*args, **kwargs):
        calls.append(kwargs.get("beta", args[4] if len(args) > 4 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(vae, "vae_loss", counting)
    X = torch.rand(64, 64, generator=torch.Generator().manual_seed(0)).round()
    vae.train_vae(vae.VAE(latent=2, hidden=8), X, epochs=2, batch_size=32, beta=0.5)
    assert calls == [0.5] * 4   # 2 epochs x 2 batches, each through vae_loss with the given beta


def _tiny_vae(seed: int = 0) -> vae.VAE:
    """A VAE with one latent number and three pixels: log p(x) is a 1-D integral, computable by quadrature."""
    torch.manual_seed(seed)
    model = vae.VAE(latent=1, n_in=3, hidden=4).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)   # a decoder that depends strongly on z, so the ELBO is clearly below log p(x)
    return model


def _log_px_by_quadrature(model: vae.VAE, x: torch.Tensor) -> torch.Tensor:
    z = torch.linspace(-12, 12, 48_001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        logits = model.decode(z)                                                          # (grid, 3)
    log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, None, :].expand(-1, len(x), -1), x.expand(len(z), -1, -1), reduction="none").sum(-1)
    log_joint = log_px_z + torch.distributions.Normal(0.0, 1.0).log_prob(z)              # (grid, n)
    dz = float(z[1] - z[0])
    return torch.logsumexp(log_joint, dim=0) + math.log(dz)


def test_log_normal_diag_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    z, mu, logvar = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(vae.log_normal_diag(z, mu, logvar), expected)


def test_importance_weighted_bound_with_one_sample_is_the_single_sample_elbo():
    model = _tiny_vae()
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    eps = torch.randn(1, 2, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        z = mu + (0.5 * logvar).exp() * eps[0]
        q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
        prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
        elbo = -vae.bernoulli_nll(model.decode(z), x) + (prior.log_prob(z) - q.log_prob(z)).sum(1)
    torch.testing.assert_close(vae.importance_weighted_bound(model, x, 1, eps=eps), elbo)
    # the same draws through `generator` as through `eps`, and chunking changes nothing
    eps5 = torch.randn(5, 2, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    drawn = vae.importance_weighted_bound(model, x, 5, generator=torch.Generator().manual_seed(2), chunk=2)
    torch.testing.assert_close(drawn, vae.importance_weighted_bound(model, x, 5, eps=eps5))


def test_importance_weighted_bound_tightens_with_k_and_reaches_log_px():
    model = _tiny_vae()
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    log_px = _log_px_by_quadrature(model, x)
    # the bound's expectation over 1,000 independent draws (the images repeated): E[L_1] < E[L_10] < E[L_100] <= log p(x)
    reps = 1000
    means, ses = {}, {}
    for k in (1, 10, 100):
        bounds = vae.importance_weighted_bound(model, x.repeat(reps, 1), k, generator=torch.Generator().manual_seed(k))
        bounds = bounds.reshape(reps, len(x))
        means[k], ses[k] = bounds.mean(0), bounds.std(0) / math.sqrt(reps)
    assert (means[1] < means[10] - 3 * ses[1]).all(), means
    # from 10 to 100 samples the bound rises over the three images together (for one it is nearly tight already)
    assert means[10].sum() < means[100].sum() - 3 * float((ses[10] ** 2 + ses[100] ** 2).sum().sqrt()), means
    assert (means[100] <= log_px + 3 * ses[100]).all(), (means[100], log_px)
    gap_elbo = log_px - means[1]
    assert (gap_elbo > 0.05).all(), f"the test needs a model whose ELBO is clearly loose: gaps {gap_elbo}"
    big = vae.importance_weighted_bound(model, x, 200_000, generator=torch.Generator().manual_seed(0), chunk=50_000)
    torch.testing.assert_close(big, log_px, atol=5e-3, rtol=0)


def test_importance_weighted_bound_checks_its_arguments():
    model = vae.VAE(latent=2)
    x = torch.rand(3, 64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="k must be a positive int"):
        vae.importance_weighted_bound(model, x, 0)
    with pytest.raises(ValueError, match=r"eps must have shape \(k, batch, latent\) = \(4, 3, 2\)"):
        vae.importance_weighted_bound(model, x, 4, eps=torch.zeros(4, 3, 3))
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        vae.importance_weighted_bound(model, 2 * x + 1, 4)
    with pytest.raises(TypeError, match="lib.vae.VAE"):
        vae.importance_weighted_bound(vae.Autoencoder(2), x, 4)


def test_kl_warmup_raises_the_weight_linearly_then_holds_it():
    X = torch.rand(64, 64, generator=torch.Generator().manual_seed(0)).round()
    torch.manual_seed(0)
    hist = vae.train_vae(vae.VAE(latent=2, hidden=8), X, epochs=4, batch_size=32, beta=2.0, warmup_epochs=2)
    # 2 batches per epoch: the weight is 2 * (1/4, 2/4, 3/4, 1, 1, ...) of the steps taken
    np.testing.assert_allclose(hist.steps["train_beta"], [0.5, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0])
    np.testing.assert_allclose(hist.steps["train_loss"], np.add(hist.steps["train_recon"],
                               np.multiply(hist.steps["train_beta"], hist.steps["train_kl"])), rtol=1e-5)
    with pytest.raises(ValueError, match="warmup_epochs"):
        vae.train_vae(vae.VAE(), X, epochs=1, warmup_epochs=-1)

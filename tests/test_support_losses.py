"""Known-answer tests of the behaviour-model pieces of BCQ and BEAR: the conditional VAE, its loss and the MMD.

References are numpy double loops written from the equations (Fujimoto et al. 2019; Kumar et al. 2019).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.losses import MMD_KERNELS, mmd_squared, vae_loss
from offrl.nets import ActionVAE, vae_sample


# ----------------------------------------------------------------------------- VAE loss


def _vae_loss_reference(recon, actions, mean, log_std, kl_weight):
    recon_err = np.mean((recon - actions) ** 2)
    kl = np.mean(-0.5 * (1.0 + 2.0 * log_std - mean**2 - np.exp(2.0 * log_std)))
    return recon_err + kl_weight * kl, recon_err, kl


def test_vae_loss_matches_numpy_reference():
    rng = np.random.default_rng(0)
    recon, actions = rng.uniform(-1, 1, (16, 3)), rng.uniform(-1, 1, (16, 3))
    mean, log_std = rng.normal(size=(16, 6)), rng.normal(scale=0.5, size=(16, 6))
    for kl_weight in (0.5, 0.0, 2.0):
        loss, info = vae_loss(*(jnp.asarray(x, jnp.float32) for x in (recon, actions, mean, log_std)), kl_weight)
        ref, ref_recon, ref_kl = _vae_loss_reference(recon, actions, mean, log_std, kl_weight)
        np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
        np.testing.assert_allclose(float(info["recon_loss"]), ref_recon, rtol=1e-5)
        np.testing.assert_allclose(float(info["kl_loss"]), ref_kl, rtol=1e-5)
        assert float(info["vae_loss"]) == float(loss)


def test_vae_loss_exact_answers():
    """Perfect reconstruction with the prior as posterior costs 0; a unit mean shift costs KL 1/2 per latent."""
    a = jnp.linspace(-1, 1, 8).reshape(4, 2)
    loss, _ = vae_loss(a, a, jnp.zeros((4, 4)), jnp.zeros((4, 4)))
    assert float(loss) == 0.0
    loss, info = vae_loss(a, a, jnp.ones((4, 4)), jnp.zeros((4, 4)), kl_weight=0.5)
    assert float(info["kl_loss"]) == pytest.approx(0.5) and float(loss) == pytest.approx(0.25)


# ----------------------------------------------------------------------------- VAE network


def test_vae_samples_follow_their_state_and_clip_the_latent():
    """Sample j of state i decodes state i (flattening order); clipped latents give the decoder's z = 0 action."""
    vae = ActionVAE((16, 16), action_dim=2, latent_dim=4)
    obs = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)), jnp.float32)
    params = vae.init(jax.random.PRNGKey(0), obs, jnp.zeros((5, 2)), jax.random.PRNGKey(1))
    actions, raw = vae_sample(vae, params, obs, jax.random.PRNGKey(2), num_samples=7, latent_clip=1e-7)
    assert actions.shape == raw.shape == (5, 7, 2)
    at_zero = vae.apply(params, obs, jnp.zeros((5, 4)), method=ActionVAE.decode)
    np.testing.assert_allclose(actions, np.broadcast_to(np.asarray(at_zero)[:, None], (5, 7, 2)), atol=1e-5)
    np.testing.assert_allclose(actions, np.tanh(raw), atol=1e-6)
    assert np.abs(np.diff(np.asarray(at_zero), axis=0)).max() > 1e-3, "different states must decode differently"
    wide, _ = vae_sample(vae, params, obs, jax.random.PRNGKey(2), num_samples=7, latent_clip=0.5)
    assert np.abs(np.asarray(wide) - np.asarray(at_zero)[:, None]).max() > 1e-4, "latents must vary between samples"
    assert np.all(np.abs(np.asarray(wide)) < 1.0)


def test_vae_encoder_log_std_is_clipped():
    vae = ActionVAE((8,), action_dim=2, latent_dim=3)
    params = vae.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros((1, 2)), jax.random.PRNGKey(1))
    huge = jax.tree.map(lambda x: 1e4 * x + 1e3 * jnp.sign(x), params)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(64, 2)), jnp.float32)
    _, log_std = vae.apply(huge, obs, jnp.ones((64, 2)), method=ActionVAE.encode)
    assert float(log_std.min()) >= -4.0 and float(log_std.max()) <= 15.0
    assert float(log_std.min()) == -4.0 or float(log_std.max()) == 15.0


# ----------------------------------------------------------------------------- MMD


def _kernel(u, v, kernel, sigma):
    if kernel == "laplacian":
        return np.exp(-np.abs(u - v).sum() / (2.0 * sigma))
    return np.exp(-((u - v) ** 2).sum() / (2.0 * sigma))


def _mmd_reference(x, y, kernel, sigma):
    """Biased MMD^2 per state from the definition, one kernel evaluation at a time."""
    out = []
    for xs, ys in zip(x, y):
        kxx = np.mean([_kernel(a, b, kernel, sigma) for a in xs for b in xs])
        kyy = np.mean([_kernel(a, b, kernel, sigma) for a in ys for b in ys])
        kxy = np.mean([_kernel(a, b, kernel, sigma) for a in xs for b in ys])
        out.append(kxx + kyy - 2.0 * kxy)
    return np.array(out)


@pytest.mark.parametrize("kernel", MMD_KERNELS)
@pytest.mark.parametrize("sigma", [0.3, 1.0, 10.0])
def test_mmd_matches_numpy_double_loop(kernel, sigma):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 5, 3))
    y = rng.normal(loc=0.5, size=(6, 4, 3))  # different sample counts per set are allowed
    got = np.asarray(mmd_squared(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), kernel, sigma))
    np.testing.assert_allclose(got, _mmd_reference(x, y, kernel, sigma), rtol=1e-4, atol=1e-6)


def test_mmd_closed_form_for_single_samples():
    """One sample per set: MMD^2 = 2 - 2 k(x, y)."""
    x, y = jnp.zeros((1, 1, 2)), jnp.ones((1, 1, 2))
    assert float(mmd_squared(x, y, "laplacian", 1.0)[0]) == pytest.approx(2.0 - 2.0 * np.exp(-1.0), rel=1e-6)
    assert float(mmd_squared(x, y, "gaussian", 2.0)[0]) == pytest.approx(2.0 - 2.0 * np.exp(-0.5), rel=1e-6)


@pytest.mark.parametrize("kernel", MMD_KERNELS)
def test_mmd_is_zero_for_identical_sets_and_positive_for_different_distributions(kernel):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(scale=0.3, size=(32, 10, 2)), jnp.float32)
    assert np.all(np.asarray(mmd_squared(x, x, kernel, 1.0)) == 0.0)
    same = np.asarray(mmd_squared(x, jnp.asarray(rng.normal(scale=0.3, size=(32, 10, 2)), jnp.float32), kernel, 1.0))
    far = np.asarray(mmd_squared(x, jnp.asarray(rng.normal(loc=1.0, scale=0.3, size=(32, 10, 2)), jnp.float32), kernel, 1.0))
    assert np.all(far > 0) and np.all(same > 0)
    assert far.mean() > 5 * same.mean(), (far.mean(), same.mean())


def test_mmd_rejects_unknown_kernel():
    with pytest.raises(ValueError, match="laplacian, gaussian"):
        mmd_squared(jnp.zeros((1, 2, 1)), jnp.zeros((1, 2, 1)), "cosine", 1.0)

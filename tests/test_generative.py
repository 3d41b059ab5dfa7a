"""Known answers of the shared generative pieces (offrl.generative, offrl.nets.Denoiser).

Analytic models first (no training): a flow towards one point, DDPM/DDIM with the closed-form optimal
denoiser of Gaussian data, classifier-free guidance between two closed-form denoisers. Then a learned
1-D two-mode mixture that the diffusion and flow samplers reproduce and a Gaussian fit cannot.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from offrl.generative import (
    ddim_sample, ddim_timesteps, ddpm_sample, diffusion_inputs, epsilon_loss, euler_sample, flow_inputs,
    guided_epsilon, make_schedule, velocity_loss,
)
from offrl.nets import Denoiser


def mixture_epsilon(schedule, means, stds, weights):
    """E[eps | x_k] of 1-D data sum_j w_j N(mu_j, s_j^2): the optimal noise predictor, in closed form."""
    means, stds, weights = (jnp.asarray(v, jnp.float32) for v in (means, stds, weights))
    k_total = schedule.steps

    def model(x, t):  # x [B, 1], t [B] = (k + 1) / K
        k = jnp.round(t * k_total).astype(jnp.int32) - 1
        abar = schedule.alpha_bars[k][:, None]
        var = abar * stds**2 + 1.0 - abar  # [B, J]
        centred = x - jnp.sqrt(abar) * means  # [B, J]
        log_r = jnp.log(weights) - 0.5 * centred**2 / var - 0.5 * jnp.log(var)
        r = jax.nn.softmax(log_r, axis=-1)
        return jnp.sum(r * jnp.sqrt(1.0 - abar) * centred / var, axis=-1, keepdims=True)

    return model


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 50])
def test_a_flow_towards_one_point_reaches_it_for_any_number_of_euler_steps(steps):
    """The optimal velocity of the linear path towards the point p is (p - x) / (1 - t): Euler lands on p."""
    p = jnp.asarray([[1.5, -0.25, 3.0]])
    x0 = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
    out = euler_sample(lambda x, t: (p - x) / (1.0 - t[:, None]), x0, steps)
    np.testing.assert_allclose(np.asarray(out), np.broadcast_to(np.asarray(p), (64, 3)), atol=2e-5)


@jax.jit
def _gaussian_samplers(schedule, mean, x):
    """Ancestral and DDIM samples with the optimal denoiser of N(mean, 0.5^2); the schedule is an argument, so
    the three schedules of 200 steps share one compiled program."""
    model = mixture_epsilon(schedule, mean[None, None], [[0.5]], [[1.0]])
    return ddpm_sample(model, schedule, x, jax.random.PRNGKey(2)), ddim_sample(model, schedule, x, 50)


@pytest.mark.parametrize("schedule_name, mean", [("linear", 1.5), ("cosine", 1.5), ("vp", 0.0)])
def test_ddpm_and_ddim_with_the_optimal_denoiser_reproduce_gaussian_data(schedule_name, mean):
    """Data N(mean, 0.5^2): the closed-form eps predictor driven by the ancestral and DDIM samplers
    gives samples with the data's mean and standard deviation. (The VP schedule ends at abar_K = e^-5.05,
    not at pure noise, so x_K ~ N(0, I) misses sqrt(abar_K) * mean: it is checked on centred data.)"""
    schedule = make_schedule(schedule_name, 200)
    x = jax.random.normal(jax.random.PRNGKey(1), (20000, 1))
    for samples in map(np.asarray, _gaussian_samplers(schedule, jnp.float32(mean), x)):
        assert abs(samples.mean() - mean) < 0.03, samples.mean()
        assert abs(samples.std() - 0.5) < 0.03, samples.std()


def test_schedules_are_valid_and_bad_names_are_refused():
    for name in ("vp", "linear", "cosine"):
        for k in (1, 5, 100):
            s = make_schedule(name, k)
            betas, abar = np.asarray(s.betas), np.asarray(s.alpha_bars)
            assert betas.shape == (k,) and np.all((betas > 0) & (betas < 1)) and np.all(np.diff(abar) < 0)
    # the VP schedule ends at the same noise level whatever the number of steps: abar_K = exp(-(0.1 + 9.9 / 2))
    np.testing.assert_allclose(float(make_schedule("vp", 5).alpha_bars[-1]), np.exp(-5.05), rtol=1e-5)
    with pytest.raises(ValueError, match="valid schedules: vp, linear, cosine"):
        make_schedule("sigmoid", 5)
    ks, prev = ddim_timesteps(100, 5)
    assert list(ks) == [99, 74, 50, 25, 0] and list(prev) == [74, 50, 25, 0, -1]
    with pytest.raises(ValueError, match="DDIM steps"):
        ddim_timesteps(5, 6)


def test_guidance_weight_zero_is_unconditional_and_larger_weights_move_towards_the_condition():
    """Unconditional model: modes -2 (0.3) and +2 (0.7); conditional model: the minority mode -2 alone.
    w = 0 samples the unconditional model exactly, and the share at -2 grows with w up to (almost) all."""
    schedule = make_schedule("cosine", 50)
    uncond = mixture_epsilon(schedule, [[-2.0, 2.0]], [[0.2, 0.2]], [[0.3, 0.7]])
    cond = mixture_epsilon(schedule, [[-2.0]], [[0.2]], [[1.0]])
    x = jax.random.normal(jax.random.PRNGKey(3), (4000, 1))

    @jax.jit
    def sample(x, w):
        return ddim_sample(lambda x, t: guided_epsilon(uncond(x, t), cond(x, t), w), schedule, x, 25)

    np.testing.assert_array_equal(np.asarray(sample(x, 0.0)), np.asarray(jax.jit(lambda x: ddim_sample(uncond, schedule, x, 25))(x)))
    shares = [float((np.asarray(sample(x, w)) < 0).mean()) for w in (0.0, 0.1, 0.3, 1.0, 2.0)]
    assert abs(shares[0] - 0.3) < 0.05, shares
    assert all(b >= a for a, b in zip(shares, shares[1:])) and shares[1] > shares[0], shares
    assert shares[-1] > 0.98, shares


def _mixture(key, n):
    """Modes -2 (weight 0.3) and +2 (weight 0.7), each N(., 0.1^2): [n, 1]."""
    k1, k2 = jax.random.split(key)
    sign = jnp.where(jax.random.uniform(k1, (n, 1)) < 0.3, -1.0, 1.0)
    return 2.0 * sign + 0.1 * jax.random.normal(k2, (n, 1))


def _fit_both(schedule, steps=1500, batch=256):
    """A diffusion (eps) and a flow (velocity) model of the mixture, trained side by side in one compiled scan."""
    net = Denoiser((32, 32), 1)
    init = lambda seed: net.init(jax.random.PRNGKey(seed), jnp.zeros((1, 1)), jnp.zeros((1,)))
    tx = optax.adam(optax.cosine_decay_schedule(3e-3, steps))

    def loss(params, key):
        k1, k2, k3 = jax.random.split(key, 3)
        x0 = _mixture(k1, batch)
        xk, t, eps = diffusion_inputs(schedule, x0, k2)
        xt, s, v = flow_inputs(x0, k3)
        return epsilon_loss(net.apply(params[0], xk, t), eps) + velocity_loss(net.apply(params[1], xt, s), v)

    def body(carry, key):
        params, opt = carry
        updates, opt = tx.update(jax.grad(loss)(params, key), opt, params)
        return (optax.apply_updates(params, updates), opt), None

    params = (init(0), init(1))
    run = jax.jit(lambda c, keys: jax.lax.scan(body, c, keys)[0][0])
    eps_params, v_params = run((params, tx.init(params)), jax.random.split(jax.random.PRNGKey(1), steps))
    return (lambda x, t: net.apply(eps_params, x, t)), (lambda x, t: net.apply(v_params, x, t))


def _assert_two_modes(samples):
    samples = np.asarray(samples)[:, 0]
    negative, positive = (samples < -1).mean(), (samples > 1).mean()
    assert abs(negative - 0.3) < 0.05 and abs(positive - 0.7) < 0.05, (negative, positive)
    assert (np.abs(samples) < 1).mean() < 0.05, (np.abs(samples) < 1).mean()


def test_learned_diffusion_and_flow_recover_a_two_mode_mixture_that_a_gaussian_cannot():
    schedule = make_schedule("vp", 20)
    eps_model, velocity_model = _fit_both(schedule)
    noise = jax.random.normal(jax.random.PRNGKey(2), (4000, 1))
    samplers = jax.jit(lambda x: (ddpm_sample(eps_model, schedule, x, jax.random.PRNGKey(3)),
                                  ddim_sample(eps_model, schedule, x, 10), euler_sample(velocity_model, x, 10)))
    for samples in samplers(noise):
        _assert_two_modes(samples)
    # the maximum-likelihood Gaussian of the same data fails the same test
    data = np.asarray(_mixture(jax.random.PRNGKey(4), 4000))
    gaussian = data.mean() + data.std() * np.asarray(noise)
    with pytest.raises(AssertionError):
        _assert_two_modes(gaussian)

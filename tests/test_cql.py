"""CQL(H) for continuous actions: known answers for the importance-sampled log-sum-exp, the critic
loss, the Lagrange dual step, the max backup and the BC warm-up, and the OOD trap.

The references are numpy in float64 written from Kumar et al. (2020): the networks are applied
directly (``Module.apply``) only to obtain their outputs, and on a 3-D [B, M, ...] layout, so they
also check the flat [B * M, ...] layout of the algorithm's single critic call.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import offrl
from offrl.algos import DataSpec, cql
from offrl.data.sampling import Batch
from offrl.losses import cql_logsumexp, uniform_log_density
from offrl.nets import tanh_gaussian_sample_and_log_prob

from ood_trap import FIT, MARGIN, SUPPORT_HIGH, trap_dataset, true_reward

OBS_DIM, ACT_DIM, B = 3, 2, 16


def np64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def np_logsumexp(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def make_state(config, seed=0):
    return cql.init(config, DataSpec(OBS_DIM, ACT_DIM), jax.random.PRNGKey(seed), 100)


def make_batch(seed=0, terminal_every=4):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s).astype(np.float32))
    terminals = np.zeros(B, np.float32)
    terminals[::terminal_every] = 1.0
    return Batch(observations=f(B, OBS_DIM), actions=jnp.asarray(rng.uniform(-0.99, 0.99, (B, ACT_DIM)).astype(np.float32)),
                 rewards=f(B), next_observations=f(B, OBS_DIM), terminals=jnp.asarray(terminals),
                 discounts=jnp.full((B,), 0.99, jnp.float32), extras={})


def small(**kw):
    return cql.Config(**{**dict(hidden_dims=(32, 32), batch_size=B, num_samples=4), **kw})


def np_tanh_gaussian_log_prob(mean, log_std, actions):
    """log N(atanh a; mean, std^2) - sum log(1 - a^2), in float64."""
    mean, log_std, actions = np64(mean), np64(log_std), np64(actions)
    u = np.arctanh(actions)
    z = (u - mean) / np.exp(log_std)
    return np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - actions**2), axis=-1)


# ----------------------------------------------------------------------------- the log-sum-exp estimate


def test_cql_logsumexp_matches_numpy_reference():
    rng = np.random.default_rng(0)
    q = rng.normal(scale=3.0, size=(5, 7, 30)).astype(np.float32)
    log_p = rng.normal(scale=2.0, size=(5, 7, 30)).astype(np.float32)
    ref = np.log(np.mean(np.exp(np64(q) - np64(log_p)), axis=-1))  # log of the average importance weight
    np.testing.assert_allclose(np64(cql_logsumexp(jnp.asarray(q), jnp.asarray(log_p))), ref, rtol=1e-5, atol=1e-5)
    # broadcasting a per-sample density over the batch, and another axis
    np.testing.assert_allclose(np64(cql_logsumexp(jnp.asarray(q), jnp.asarray(log_p[0, 0]))),
                               np.log(np.mean(np.exp(np64(q) - np64(log_p[0, 0])), axis=-1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np64(cql_logsumexp(jnp.asarray(q), jnp.asarray(log_p), axis=1)),
                               np.log(np.mean(np.exp(np64(q) - np64(log_p)), axis=1)), rtol=1e-5, atol=1e-5)
    # large Q: a naive exp overflows in float32, logsumexp does not
    big = cql_logsumexp(jnp.full((3, 4), 200.0), jnp.zeros((3, 4)))
    np.testing.assert_allclose(np64(big), 200.0, rtol=1e-6)


@pytest.mark.parametrize("action_dim", [1, 2, 6])
def test_cql_logsumexp_closed_forms(action_dim):
    """log \\int_{[-1,1]^d} exp Q(a) da for Q with a known integral.

    (a) Q = c: the integral is e^c 2^d, so the estimate from uniform actions is c + d log 2 for every sample.
    (b) Q = c + log pi(a) for a tanh-Gaussian pi: the integral is e^c, and each policy sample's weight
        exp(Q)/pi is exactly e^c, so the estimate from policy actions is c.
    (c) the same Q with the mix of uniform and policy actions: e^c only on average (Monte Carlo).
    (d) Q = c + w . a with uniform actions: prod_i 2 sinh(w_i) / w_i, by Monte Carlo.
    """
    c, n = 0.7, 200_000
    key_u, key_pi = jax.random.split(jax.random.PRNGKey(action_dim))
    uniform = jax.random.uniform(key_u, (n, action_dim), minval=-1.0, maxval=1.0)
    log_unif = uniform_log_density(action_dim)
    assert log_unif == pytest.approx(action_dim * math.log(0.5))
    est = cql_logsumexp(jnp.full((n,), c), jnp.full((n,), log_unif))
    assert float(est) == pytest.approx(c + action_dim * math.log(2.0), abs=1e-5)

    mean, log_std = jnp.full((n, action_dim), 0.3), jnp.full((n, action_dim), math.log(0.5))
    pi_actions, pi_log_probs = tanh_gaussian_sample_and_log_prob(mean, log_std, key_pi)
    assert float(cql_logsumexp(c + pi_log_probs, pi_log_probs)) == pytest.approx(c, abs=1e-5)

    log_pi_at_uniform = np_tanh_gaussian_log_prob(mean, log_std, np.clip(np64(uniform), -1 + 1e-9, 1 - 1e-9))
    q_mix = np.concatenate([c + log_pi_at_uniform, c + np64(pi_log_probs)])
    p_mix = np.concatenate([np.full(n, log_unif), np64(pi_log_probs)])
    mix = float(cql_logsumexp(jnp.asarray(q_mix, jnp.float32), jnp.asarray(p_mix, jnp.float32)))
    assert mix == pytest.approx(c, abs=0.02 * action_dim)
    no_correction = float(jax.scipy.special.logsumexp(jnp.asarray(q_mix)) - math.log(2 * n))
    assert abs(no_correction - c) > 5 * abs(mix - c)  # without the importance weights the estimate is wrong

    w = np.linspace(0.5, 2.0, action_dim)
    q_lin = c + np64(uniform) @ w
    exact = c + np.sum(np.log(2 * np.sinh(w) / w))
    assert float(cql_logsumexp(jnp.asarray(q_lin, jnp.float32), log_unif)) == pytest.approx(exact, abs=0.02)


# ----------------------------------------------------------------------------- the critic loss


def q_3d(critic, params, obs, actions):
    """Critic outputs on a 3-D layout: obs [B, D], actions [B, M, A] -> [num_qs, B, M]."""
    obs = jnp.broadcast_to(obs[:, None], actions.shape[:2] + obs.shape[-1:])
    return np64(critic.apply_fn(params, obs, actions))


def test_sample_actions_layout_and_densities():
    config = small()
    state, batch = make_state(config), make_batch()
    s = cql.sample_actions(config, state, batch, jax.random.PRNGKey(3))
    n = config.num_samples
    assert s["actions"].shape == (B, 3 * n, ACT_DIM) and s["log_densities"].shape == (B, 3 * n)
    uniform, cur, nxt = (np64(s["actions"][:, i * n:(i + 1) * n]) for i in range(3))
    assert np.all(np.abs(uniform) <= 1.0) and uniform.std() > 0.4
    np.testing.assert_allclose(np64(s["log_densities"][:, :n]), -ACT_DIM * math.log(2.0), rtol=1e-6)
    np.testing.assert_array_equal(np64(s["next_actions"]), nxt)
    for obs, actions, log_d in ((batch.observations, cur, s["log_densities"][:, n:2 * n]),
                                (batch.next_observations, nxt, s["log_densities"][:, 2 * n:])):
        mean, log_std = state.actor.apply_fn(state.actor.params, obs)
        ref = np_tanh_gaussian_log_prob(np64(mean)[:, None], np64(log_std)[:, None], actions)
        keep = np.all(np.abs(actions) < 0.999, axis=-1)  # atanh of a float32 action is inaccurate next to +-1
        assert keep.mean() > 0.9
        np.testing.assert_allclose(np64(log_d)[keep], ref[keep], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("backup_entropy", [False, True])
def test_critic_loss_matches_numpy_reference(backup_entropy):
    """L = sum_i mean (Q_i - y)^2 + alpha sum_i mean_s [logmeanexp_j(Q_i(s, a_j) - log p_j) - Q_i(s, a)]."""
    config = small(alpha=2.0, backup_entropy=backup_entropy, init_temperature=0.3)
    state, batch = make_state(config), make_batch()
    samples = cql.sample_actions(config, state, batch, jax.random.PRNGKey(5))
    loss, info = cql.critic_loss(config, state, state.critic.params, batch, samples)

    critic, temperature = state.critic, 0.3
    q_data = np64(critic.apply_fn(critic.params, batch.observations, batch.actions))  # [2, B]
    next_q = q_3d(critic, state.target_critic_params, batch.next_observations, samples["next_actions"][:, :1])[..., 0].min(axis=0)
    if backup_entropy:
        next_q = next_q - temperature * np64(samples["next_log_probs"][:, 0])
    y = np64(batch.rewards) + np64(batch.discounts) * (1 - np64(batch.terminals)) * next_q
    td = ((q_data - y) ** 2).mean(axis=1).sum()
    q_samples = q_3d(critic, critic.params, batch.observations, samples["actions"])  # [2, B, 3N]
    lse = np_logsumexp(q_samples - np64(samples["log_densities"])) - math.log(3 * config.num_samples)
    gap = (lse - q_data).mean(axis=1)
    np.testing.assert_allclose(float(info["td_loss"]), td, rtol=1e-4)
    np.testing.assert_allclose(float(info["logsumexp_mean"]), lse.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(info["action_gap_mean"]), gap.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(loss), td + 2.0 * gap.sum(), rtol=1e-4)
    np.testing.assert_allclose(float(info["q_mean"]), q_data.mean(), rtol=1e-4, atol=1e-6)


def test_alpha_zero_is_the_sac_critic_loss():
    """alpha = 0: the conservative term contributes exactly nothing, to the loss and to its gradient."""
    config = small(alpha=0.0, backup_entropy=True)
    state, batch = make_state(config), make_batch()
    samples = cql.sample_actions(config, state, batch, jax.random.PRNGKey(1))
    (loss, info), grads = jax.value_and_grad(lambda p: cql.critic_loss(config, state, p, batch, samples), has_aux=True)(state.critic.params)
    assert float(info["action_gap_mean"]) != 0.0  # the term is there, with weight 0
    assert float(loss) == float(info["td_loss"])

    def sac_td_loss(params):  # SAC's critic loss (Haarnoja et al. 2018) on the same next action a'
        temperature = state.temperature.apply_fn(state.temperature.params)
        next_a, next_logp = samples["next_actions"][:, 0], samples["next_log_probs"][:, 0]
        next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations, next_a).min(axis=0)
        y = batch.rewards + batch.discounts * (1 - batch.terminals) * (next_q - temperature * next_logp)
        return ((state.critic.apply_fn(params, batch.observations, batch.actions) - y) ** 2).mean(axis=1).sum()

    ref_loss, ref_grads = jax.value_and_grad(sac_td_loss)(state.critic.params)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(np64(g), np64(r), rtol=1e-4, atol=1e-6)
    with_term = small(alpha=1.0, backup_entropy=True)
    loss_1, _ = cql.critic_loss(with_term, state, state.critic.params, batch, samples)
    np.testing.assert_allclose(float(loss_1) - float(loss), 2 * float(info["action_gap_mean"]), rtol=1e-4)


def test_one_flat_critic_call_for_all_sampled_actions():
    """The data action and all 3N sampled actions of all B states: one critic call on [B * (3N + 1), .]."""
    config = small()
    state, batch = make_state(config), make_batch()
    samples = cql.sample_actions(config, state, batch, jax.random.PRNGKey(0))
    calls = []

    def recording(params, obs, actions):
        calls.append((params is state.target_critic_params, obs.shape, actions.shape))
        return state.critic.apply_fn(params, obs, actions)

    spy = state.replace(critic=state.critic.replace(apply_fn=recording))
    jax.make_jaxpr(lambda p: cql.critic_loss(config, spy, p, batch, samples)[0])(state.critic.params)
    online = [c for c in calls if not c[0]]
    rows = B * (3 * config.num_samples + 1)
    assert online == [(False, (rows, OBS_DIM), (rows, ACT_DIM))]


# ----------------------------------------------------------------------------- Lagrange, max backup, BC warm-up


def test_lagrange_dual_step_direction_and_loss():
    """L(alpha) = -alpha (gap - tau): a trained alpha grows while the gap exceeds tau, shrinks otherwise."""
    batch = make_batch()
    for tau, grows in ((-50.0, True), (50.0, False)):
        config = small(alpha=2.0, target_action_gap=tau)
        state = make_state(config)
        before = float(cql.cql_weight(config, state))
        assert before == pytest.approx(2.0)
        new_state, metrics = cql.update(config, state, batch, jax.random.PRNGKey(0))
        after = float(cql.cql_weight(config, new_state))
        gap = float(metrics["action_gap_mean"])
        assert (gap > tau) == grows and (after > before) == grows, (tau, gap, before, after)
        np.testing.assert_allclose(float(metrics["alpha_loss"]), -before * (gap - tau), rtol=1e-5)
        # the critic's penalty is alpha (gap_i - tau) summed over both critics, alpha held constant
        samples = cql.sample_actions(config, state, batch, jax.random.split(jax.random.PRNGKey(0))[0])
        loss, info = cql.critic_loss(config, state, state.critic.params, batch, samples)
        np.testing.assert_allclose(float(loss), float(info["td_loss"]) + before * 2 * (float(info["action_gap_mean"]) - tau), rtol=1e-4)
    # the gradient with respect to log alpha: d/dlog a [-a (gap - tau)] = -a (gap - tau)
    config = small(alpha=3.0, target_action_gap=1.0)
    state = make_state(config)
    grad = jax.grad(lambda p: cql.alpha_loss(config, state, p, jnp.asarray(1.5))[0])(state.alpha.params)
    np.testing.assert_allclose(float(jax.tree.leaves(grad)[0]), -3.0 * 0.5, rtol=1e-5)
    # without a target, alpha is the fixed config value and its parameter never moves
    fixed = small(alpha=2.0)
    state = make_state(fixed)
    new_state, metrics = cql.update(fixed, state, batch, jax.random.PRNGKey(0))
    assert "alpha_loss" not in metrics and float(metrics["alpha"]) == 2.0
    np.testing.assert_array_equal(np64(jax.tree.leaves(new_state.alpha.params)[0]), np64(jax.tree.leaves(state.alpha.params)[0]))


def test_max_backup_target():
    """y uses min_i max_j Q'_i(s', a'_j) over the N policy samples at s', with no entropy term."""
    config = small(max_backup=True, backup_entropy=True)
    state, batch = make_state(config), make_batch()
    samples = cql.sample_actions(config, state, batch, jax.random.PRNGKey(2))
    value = cql.next_value(config, state, batch, samples)
    q = q_3d(state.critic, state.target_critic_params, batch.next_observations, samples["next_actions"])  # [2, B, N]
    np.testing.assert_allclose(np64(value), q.max(axis=2).min(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(q.max(axis=2).min(axis=0), q.min(axis=0).max(axis=1))  # the order of min and max matters
    plain = cql.next_value(small(), state, batch, samples)
    np.testing.assert_allclose(np64(plain), q[:, :, 0].min(axis=0), rtol=1e-5, atol=1e-6)


def test_actor_loss_bc_warm_up_then_sac():
    config = small(bc_steps=5, init_temperature=0.2)
    state, batch, key = make_state(config), make_batch(), jax.random.PRNGKey(4)
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)
    a, logp = tanh_gaussian_sample_and_log_prob(mean, log_std, key)
    data_logp = np_tanh_gaussian_log_prob(mean, log_std, batch.actions)
    q = np64(state.critic.apply_fn(state.critic.params, batch.observations, a)).min(axis=0)
    bc, _ = cql.actor_loss(config, state, state.actor.params, batch, key)
    np.testing.assert_allclose(float(bc), np.mean(0.2 * np64(logp) - data_logp), rtol=1e-4)
    sac, _ = cql.actor_loss(config, state.replace(step=jnp.asarray(5)), state.actor.params, batch, key)
    np.testing.assert_allclose(float(sac), np.mean(0.2 * np64(logp) - q), rtol=1e-4)


# ----------------------------------------------------------------------------- presets and config checks


def test_presets_and_bad_configs():
    assert cql.Config.preset("locomotion") == cql.Config()
    assert cql.Config() == offrl.algos.get_algo("cql").config_cls()
    maze = cql.Config.preset("maze")
    assert maze.max_backup and maze.alpha == 1.0
    assert maze.target_action_gap == pytest.approx(5.0 - math.log(30.0))  # the authors' 5.0 without their + log 3N
    assert cql.Config.preset("maze", num_samples=4).target_action_gap == pytest.approx(5.0 - math.log(12.0))
    assert cql.Config.preset("maze", target_action_gap=2.0).target_action_gap == 2.0
    with pytest.raises(ValueError, match="unknown preset 'gym'"):
        cql.Config.preset("gym")
    for bad, match in ((dict(alpha=-1.0), "alpha = -1.0 is out of range: must be >= 0"), (dict(num_samples=0), "num_samples = 0 is out of range: must be an int >= 1"),
                       (dict(target_action_gap=1.0, alpha=0.0), "initial Lagrange multiplier"), (dict(bc_steps=-1), "bc_steps = -1 is out of range: must be an int >= 0")):
        with pytest.raises(ValueError, match=match):
            make_state(small(**bad))


# ----------------------------------------------------------------------------- the OOD trap


def test_cql_stays_in_the_support_of_the_ood_trap(tmp_path):
    """Same setting as the naive SAC test (which leaves the support): CQL picks an in-support action.

    The trap's rewards are O(1), about 100x smaller than locomotion Q-values, so ``alpha`` and the
    entropy temperature are scaled down with them (alpha 0.1, temperature 0.01; with temperature 1 the
    entropy bonus alone keeps the policy wide and at the data's centre). Seeds 0-3 gave true rewards
    0.82-0.88 with max coordinates -0.07 to -0.12; the test asks for >= 0.75 (behaviour mean 0.5).
    """
    config = cql.Config(hidden_dims=(64, 64), batch_size=64, actor_lr=1e-2, critic_lr=1e-3, alpha=0.1,
                        init_temperature=0.01, bc_steps=0)
    result = offrl.fit(config, trap_dataset(), steps=3000, chunk=3000, seed=0, run_dir=tmp_path / "cql", **FIT)
    action = offrl.load_agent(result.run_dir).act(np.zeros((1, 1), np.float32))[0]
    assert action.max() <= SUPPORT_HIGH + MARGIN, f"CQL left the support: a = {action}"
    assert true_reward(action) >= 0.75, f"CQL's action {action} earns {true_reward(action)}"

    state = jax.tree.map(lambda x: x[0], result.states)
    xs = np.linspace(-1.0, 1.0, 41)
    grid = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2).astype(np.float32)
    q = np64(cql.q_value(config, state, jnp.zeros((len(grid), 1)), jnp.asarray(grid)))
    inside, outside = grid.max(axis=1) <= SUPPORT_HIGH, grid.max(axis=1) > SUPPORT_HIGH + MARGIN
    assert q[outside].max() < q[inside].max(), "an out-of-support action has a higher Q than every in-support action"
    # the lower-bound picture: the learned policy's Q does not exceed its true reward
    q_action = float(cql.q_value(config, state, jnp.zeros((1, 1)), jnp.asarray(action[None]))[0])
    assert q_action <= true_reward(action) + 0.05, (q_action, true_reward(action))


# ----------------------------------------------------------------------------- Cal-QL


def test_calibrated_q_floors_only_the_policy_samples():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 5, 6)).astype(np.float32)  # [num_qs, B, M]
    ref = np.array([0.5, -np.inf, 3.0, -1.0, 0.0])
    floored = np.array([False, False, True, True, True, True])
    got = np64(offrl.losses.calibrated_q(jnp.asarray(q), jnp.asarray(ref), jnp.asarray(floored)))
    want = q.copy()
    want[..., 2:] = np.maximum(q[..., 2:], ref[None, :, None])
    np.testing.assert_array_equal(got, want)
    assert np.all(got[..., 2:] >= ref[None, :, None])  # never below the reference
    np.testing.assert_array_equal(got[:, 1], q[:, 1])  # -inf: no floor


def test_calql_push_down_never_goes_below_the_reference():
    """With a reference far above every Q, the log-sum-exp of Cal-QL is at least the reference's
    importance-weighted share (the 2N floored policy samples), while CQL's stays near Q; with a
    reference of -inf Cal-QL's loss equals CQL's."""
    calql = offrl.algos.get_algo("calql")
    base = dict(hidden_dims=(32, 32), batch_size=B, num_samples=4)
    config_cal, config_cql = calql.config_cls(**base), cql.Config(**base)
    state = make_state(config_cql)
    batch = make_batch()
    samples = cql.sample_actions(config_cql, state, batch, jax.random.PRNGKey(1))
    ref = 100.0
    high = batch.replace(extras={"mc_return": jnp.full((B,), ref)})
    _, info_cal = cql.critic_loss(config_cal, state, state.critic.params, high, samples)
    _, info_cql = cql.critic_loss(config_cql, state, state.critic.params, batch, samples)
    m = 3 * 4
    # LSE >= log( (1/M) sum over the 2N policy samples of exp(ref - log p) ) >= ref - max log p - log(M / 2N)
    lower = ref - np64(samples["log_densities"][:, 4:]).max(axis=1) - math.log(m / 8)
    assert float(info_cal["logsumexp_mean"]) >= lower.mean() - 1e-3
    assert float(info_cql["logsumexp_mean"]) < 50.0
    none = batch.replace(extras={"mc_return": jnp.full((B,), -jnp.inf)})
    loss_none, _ = cql.critic_loss(config_cal, state, state.critic.params, none, samples)
    loss_cql, _ = cql.critic_loss(config_cql, state, state.critic.params, batch, samples)
    np.testing.assert_allclose(float(loss_none), float(loss_cql), rtol=1e-6)


def test_calql_monte_carlo_returns_of_episodes():
    """G_t per episode (no bootstrap at a time limit), offline and for one online episode."""
    from conftest import make_dataset

    calql = offrl.algos.get_algo("calql")
    config = calql.config_cls(discount=0.9)
    ds = make_dataset(n=120, episode_len=50)
    arrays = {"rewards": np.asarray(ds.rewards, np.float32), "terminals": np.asarray(ds.terminals, np.float32)}
    got = calql.device_extras(config, arrays, ds)["mc_return"]
    ends = (ds.terminals > 0) | (ds.timeouts > 0)
    want, g = np.zeros(120), 0.0
    for t in reversed(range(120)):
        g = ds.rewards[t] + (0.0 if ends[t] else 0.9 * g)
        want[t] = g
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    online = calql.episode_extras(config, np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 0.0]))["mc_return"]
    np.testing.assert_allclose(online, [1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0], rtol=1e-6)
    with pytest.raises(ValueError, match="calql"):
        cql.init(cql.Config(calibrated=True), DataSpec(OBS_DIM, ACT_DIM), jax.random.PRNGKey(0), 10)

"""Off-policy evaluation's known answers: exact enumeration on a tiny MDP, pi = pi_beta, DR with the true Q,
tabular FQE against the data's empirical MDP, the benchmark's metrics, and the input checks."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from offrl.data import Dataset, DatasetInfo
from offrl.ope import (OPEError, Policy, doubly_robust, episodes_of, importance_sampling, importance_weights, log_ratios,
                       normalised_absolute_error, regret_at_k, spearman)
from offrl.ope.doubly_robust import per_episode_dr
from offrl.ope.fqe import FQEConfig, fit_fqe, fqe_estimate
from offrl.ope.policy import batched_log_prob

from conftest import make_discrete_dataset

H, GAMMA = 3, 0.9
# the tiny MDP: 2 states, 2 actions; probabilities in quarters so that every trajectory's behaviour probability
# is a whole multiple of 4^-7 and a dataset holding each trajectory that many times is the exact expectation
D0 = np.array([0.5, 0.5])
P = np.array([[[0.75, 0.25], [0.25, 0.75]], [[0.5, 0.5], [1.0, 0.0]]])  # P[s, a, s']
R = np.array([[1.0, 0.0], [-0.5, 2.0]])  # R[s, a]
PI_B = np.array([[0.5, 0.5], [0.25, 0.75]])
PI_E = np.array([[0.9, 0.1], [0.3, 0.7]])


def tabular_policy(probs: np.ndarray, kind: str = "categorical") -> Policy:
    """pi(.|s) of one-hot observations: logits = log probs[s]."""
    logits = jnp.log(jnp.asarray(probs, jnp.float32))
    return Policy(kind, lambda obs: obs @ logits, probs.shape[0], num_actions=probs.shape[1], name="tabular")


def enumerate_trajectories(p, r, d0, pi, horizon):
    """Every (s_0, a_0, ..., s_H) with its probability under ``pi``."""
    out = []
    for steps in itertools.product(range(2), repeat=2 * horizon + 1):
        states, actions = steps[0::2], steps[1::2]
        prob = d0[states[0]]
        for t in range(horizon):
            prob *= pi[states[t], actions[t]] * p[states[t], actions[t], states[t + 1]]
        if prob > 0:
            out.append((states, actions, prob))
    return out


def population_dataset(trajectories, horizon, unit: float):
    """Each trajectory repeated prob / unit times (an integer), as one episode each; behaviour log-probs exact."""
    eye = np.eye(2, dtype=np.float32)
    obs, acts, rews, nxt, touts, lpb = [], [], [], [], [], []
    for states, actions, prob in trajectories:
        copies = int(round(prob / unit))
        assert abs(copies * unit - prob) < 1e-12
        for _ in range(copies):
            for t in range(horizon):
                s, a = states[t], actions[t]
                obs.append(eye[s]), acts.append(a), rews.append(R[s, a]), nxt.append(eye[states[t + 1]])
                touts.append(float(t == horizon - 1)), lpb.append(np.log(PI_B[s, a]))
    return Dataset.from_arrays(observations=np.array(obs), actions=np.array(acts), rewards=np.array(rews),
                               next_observations=np.array(nxt), terminals=np.zeros(len(obs)), timeouts=np.array(touts),
                               behaviour_log_probs=np.array(lpb), info=DatasetInfo(name="tiny-mdp", num_actions=2))


def true_q(p, r, pi, horizon, gamma):
    """Q_t(s, a) and V_t(s) of the finite-horizon MDP, t = 0..H-1 (backward recursion)."""
    q, v = np.zeros((horizon, 2, 2)), np.zeros((horizon + 1, 2))
    for t in reversed(range(horizon)):
        q[t] = r + gamma * p @ v[t + 1]
        v[t] = (pi * q[t]).sum(axis=1)
    return q, v[:horizon]


@pytest.fixture(scope="module")
def tiny():
    trajectories = enumerate_trajectories(P, R, D0, PI_B, H)
    data = population_dataset(trajectories, H, 0.25**7 / 2)
    episodes = episodes_of(data)
    policy = tabular_policy(PI_E)
    obs, actions = np.asarray(data.observations), np.asarray(data.actions)
    lr = log_ratios(batched_log_prob(policy, obs, actions), data.behaviour_log_probs)
    true_value = sum(prob * sum(GAMMA**t * R[s[t], a[t]] for t in range(H))
                     for s, a, prob in enumerate_trajectories(P, R, D0, PI_E, H))
    return data, episodes, importance_weights(episodes, lr), true_value


def test_expectations_of_is_pdis_and_dr_over_all_trajectories_equal_the_true_value(tiny):
    data, episodes, weights, true_value = tiny
    for est in ("is", "pdis"):
        assert importance_sampling(episodes, weights, GAMMA, est, num_bootstrap=0).value == pytest.approx(true_value, abs=1e-6)
    # DR is unbiased for any Q-hat: an arbitrary time-dependent one
    q_hat = np.random.default_rng(0).normal(size=(H, 2, 2))
    v_hat = (PI_E[None] * q_hat).sum(axis=-1)
    s = np.asarray(data.observations).argmax(axis=1)
    a, t = np.asarray(data.actions), np.arange(len(s)) % H
    layout = lambda x: episodes.pad(x)
    dr = doubly_robust(episodes, weights, layout(q_hat[t, s, a]), layout(v_hat[t, s]), GAMMA, "dr", num_bootstrap=0)
    assert dr.value == pytest.approx(true_value, abs=1e-6)
    assert weights.diagnostics["weights_clipped"] == 0 and 0 < weights.diagnostics["ess"] <= episodes.num_episodes


def test_pi_equal_pi_beta_is_and_wis_are_the_on_policy_mean_return():
    data = _chain_data(seed=3)
    episodes = episodes_of(data)
    weights = importance_weights(episodes, np.zeros(len(data)))
    mean_return = episodes.returns(0.95).mean()
    for est in ("is", "wis", "pdis", "wpdis"):
        got = importance_sampling(episodes, weights, 0.95, est, num_bootstrap=50)
        assert got.value == pytest.approx(mean_return, rel=1e-9)
        assert got.ci_low <= got.value <= got.ci_high
    assert weights.diagnostics["ess"] == pytest.approx(episodes.num_episodes)


def test_dr_with_the_true_q_is_exact_on_every_trajectory_of_a_deterministic_mdp_and_with_q_zero_is_pdis():
    p_det = np.array([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])
    trajectories = enumerate_trajectories(p_det, R, D0, PI_B, H)
    data = population_dataset(trajectories, H, 0.25**3 / 2)
    episodes = episodes_of(data)
    policy = tabular_policy(PI_E)
    obs, a = np.asarray(data.observations), np.asarray(data.actions)
    weights = importance_weights(episodes, log_ratios(batched_log_prob(policy, obs, a), data.behaviour_log_probs))
    q, v = true_q(p_det, R, PI_E, H, GAMMA)
    s, t = obs.argmax(axis=1), np.arange(len(a)) % H
    terms = per_episode_dr(episodes, weights, episodes.pad(q[t, s, a]), episodes.pad(v[t, s]), GAMMA)
    np.testing.assert_allclose(terms, v[0][s[episodes.start_index]], atol=1e-9)
    zero = np.zeros(len(a))
    for dr, pdis in (("dr", "pdis"), ("wdr", "wpdis")):
        got = doubly_robust(episodes, weights, zero, zero, GAMMA, dr, num_bootstrap=20).value
        assert got == pytest.approx(importance_sampling(episodes, weights, GAMMA, pdis, num_bootstrap=0).value, abs=1e-12)


def _chain_data(seed=0, episodes=60, length=6):
    """A 3-state, 2-action continuing MDP logged by a uniform policy in episodes cut by timeouts."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(3), size=(3, 2))
    r = rng.normal(size=(3, 2))
    eye = np.eye(3, dtype=np.float32)
    obs, acts, rews, nxt, touts = [], [], [], [], []
    for _ in range(episodes):
        s = rng.integers(3)
        for t in range(length):
            a = rng.integers(2)
            s2 = rng.choice(3, p=p[s, a])
            obs.append(eye[s]), acts.append(a), rews.append(r[s, a] + 0.1 * rng.normal()), nxt.append(eye[s2])
            touts.append(float(t == length - 1))
            s = s2
    return Dataset.from_arrays(observations=np.array(obs), actions=np.array(acts), rewards=np.array(rews),
                               next_observations=np.array(nxt), terminals=np.zeros(len(obs)), timeouts=np.array(touts),
                               info=DatasetInfo(name="chain", num_actions=2))


def _empirical_q(data, pi, gamma, successor):
    """Q of the data's empirical MDP: R-hat + gamma P-hat V, P-hat from (s, a) -> ``successor`` rows."""
    s = np.asarray(data.observations).argmax(axis=1)
    s2 = np.asarray(successor).argmax(axis=1)
    a = np.asarray(data.actions)
    n = np.zeros((3, 2)); rsum = np.zeros((3, 2)); p = np.zeros((3, 2, 3))
    np.add.at(n, (s, a), 1.0); np.add.at(rsum, (s, a), data.rewards); np.add.at(p, (s, a, s2), 1.0)
    r_hat, p_hat = rsum / n, p / n[..., None]
    # Q = R + gamma P (pi . Q): a linear system in the 6 values
    m = np.einsum("sat,tb->satb", p_hat, pi).reshape(6, 6)
    return np.linalg.solve(np.eye(6) - gamma * m, r_hat.reshape(6)).reshape(3, 2)


def test_tabular_fqe_is_the_value_of_the_empirical_mdp_and_uses_next_observations():
    data = _chain_data()
    pi = np.array([[0.8, 0.2], [0.1, 0.9], [0.5, 0.5]])
    gamma = 0.8
    q_emp = _empirical_q(data, pi, gamma, data.next_observations)
    config = FQEConfig(discount=gamma, hidden_dims=(), learning_rate=0.05, batch_size=None, steps=800, tau=0.5,
                       normalize_observations=False, chunk=800)
    model = fit_fqe(data, tabular_policy(pi), config)
    eye = np.eye(3, dtype=np.float32)
    q_fit = np.stack([model.q(eye, np.full(3, a)) for a in range(2)], axis=1)
    np.testing.assert_allclose(q_fit, q_emp, atol=2e-3)
    episodes = episodes_of(data)
    v_emp = (pi * q_emp).sum(axis=1)
    starts = np.asarray(data.observations)[episodes.start_index].argmax(axis=1)
    assert fqe_estimate(episodes, model, data, num_bootstrap=0).value == pytest.approx(v_emp[starts].mean(), abs=2e-3)
    # bootstrapping from the current observation instead of the next one gives another answer, far outside the tolerance
    q_wrong = _empirical_q(data, pi, gamma, data.observations)
    assert np.abs(q_wrong - q_fit).max() > 0.1


def test_benchmark_metrics_on_hand_computed_cases():
    values, estimates = [1.0, 2.0, 3.0, 5.0], [2.0, 1.0, 3.0, 4.0]
    assert normalised_absolute_error(estimates, values) == pytest.approx((1 + 1 + 0 + 1) / 4 / 4)
    # ranks of the estimates (1, 0, 2, 3) against (0, 1, 2, 3): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman(estimates, values) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert regret_at_k(estimates, values, 1) == 0.0  # the top estimate is the best policy
    assert regret_at_k([9.0, 0.0, 0.0, 0.0], values, 1) == pytest.approx((5 - 1) / 4)
    assert regret_at_k([9.0, 8.0, 0.0, 1.0], values, 2) == pytest.approx((5 - 2) / 4)
    assert regret_at_k([9.0, 8.0, 0.0, 1.0], values, 5) == 0.0


def test_bad_inputs_name_the_fix():
    one_episode = Dataset.from_arrays(observations=np.zeros((5, 2)), actions=np.zeros(5, int), rewards=np.ones(5),
                                      next_observations=np.zeros((5, 2)), terminals=np.zeros(5),
                                      timeouts=np.eye(5)[4], info=DatasetInfo(name="flat", num_actions=2))
    with pytest.raises(OPEError, match="needs episode boundaries"):
        episodes_of(one_episode)
    shuffled = make_discrete_dataset(n=100, episode_len=20)  # next_observations are not the next rows
    with pytest.raises(OPEError, match="not trajectories from start states"):
        episodes_of(shuffled)
    with pytest.raises(OPEError, match="probability zero .* 1 logged"):
        log_ratios(np.zeros(3), np.array([0.0, -np.inf, -1.0]))
    with pytest.raises(OPEError, match="another observation space"):
        batched_log_prob(tabular_policy(PI_E), np.zeros((4, 3), np.float32), np.zeros(4, int))
    det = Policy("deterministic", lambda o: o[:, :1], 2, name="td3bc run", note="deterministic actor")
    with pytest.raises(OPEError, match="--smoothing SIGMA"):
        batched_log_prob(det, np.zeros((2, 2), np.float32), np.zeros((2, 1), np.float32))


def test_offrl_ope_end_to_end_on_a_small_builtin_dataset_and_a_tiny_run(tmp_path, monkeypatch, capsys):
    """Two tiny runs on 600 transitions of cartpole-mixed (exact behaviour log-probs): the table, ope.json/.csv, select."""
    import json

    from offrl import cli
    from offrl.algos import get_algo
    from offrl.datasets import discrete
    from offrl.train import fit

    from conftest import small_config

    monkeypatch.setenv("OFFRL_HOME", str(tmp_path / "home"))
    # the reference scores (200 env episodes) only normalise scores, which off-policy evaluation does not use
    monkeypatch.setattr(discrete, "discrete_reference_scores", lambda task: dict.fromkeys(
        ("ref_min_score", "ref_max_score", "ref_min_score_std", "ref_max_score_std"), 1.0))
    data = discrete.generate_discrete("cartpole", "mixed", size=600)
    # exact: (1 - eps) + eps / 2 where the logged action is the controller's, eps / 2 where it is not, with the
    # epsilon of the episode's behaviour: 1 (random), 0.4 (medium), 0.05 (expert)
    greedy = discrete.TASKS["cartpole"].controller(np.asarray(data.observations)) == np.asarray(data.actions)
    probs = np.exp(data.behaviour_log_probs.astype(np.float64))
    np.testing.assert_allclose(np.sort(np.unique(probs[greedy].round(6))), [0.5, 0.8, 0.975], atol=1e-6)
    np.testing.assert_allclose(np.sort(np.unique(probs[~greedy].round(6))), [0.025, 0.2, 0.5], atol=1e-6)
    path = tmp_path / "cartpole.npz"
    data.save_npz(path)
    runs = []
    for steps in (2, 40):
        runs.append(str(tmp_path / f"run{steps}"))
        fit(small_config(get_algo("bc_discrete"), hidden_dims=(16,)), str(path), steps=steps, chunk=2, run_dir=runs[-1],
            progress=False, plot=False, evaluate_at_end=False)
    common = ["--dataset", str(path), "--fqe-steps", "200", "--fqe-hidden-dims", "16", "--bootstrap", "20", "--no-progress"]
    assert cli.main(["ope", runs[1], *common, "--out", str(tmp_path / "out"), "--stochastic"]) == 0
    out = json.loads((tmp_path / "out" / "ope.json").read_text())
    assert out["behaviour"] == "data" and out["episodes"] == data.num_episodes
    rows = out["rows"]
    assert {r["estimator"] for r in rows} == {"is", "wis", "pdis", "wpdis", "dr", "wdr", "fqe"} and len(rows) == 7
    assert all(np.isfinite(r["value"]) and r["ci_low"] <= r["ci_high"] for r in rows)
    csv_lines = (tmp_path / "out" / "ope.csv").read_text().splitlines()
    assert csv_lines[0].startswith("run,algo,policy,estimator,value") and len(csv_lines) == 8
    assert "off-policy estimates on cartpole-mixed" in capsys.readouterr().out
    assert cli.main(["ope", "select", *runs, *common, "--out", str(tmp_path / "sel"), "--by", "wis"]) == 0
    ranked = json.loads((tmp_path / "sel" / "select.json").read_text())["rows"]
    assert [r["rank"] for r in ranked] == [1, 2] and ranked[0]["value"] >= ranked[1]["value"]
    assert (tmp_path / "sel" / "select.csv").read_text().startswith("rank,run,algo,policy,estimator,value")


def test_behaviour_log_probs_travel_in_files_and_a_dataset_without_them_keeps_its_checksum(tmp_path):
    from offrl.data import DatasetError
    from offrl.data.integrity import array_checksum, read_checksum

    from conftest import make_trajectory_dataset

    with_lp, without = make_trajectory_dataset(), make_trajectory_dataset(log_probs=False)
    assert without.behaviour_log_probs is None and "behaviour_log_probs" not in without.stored_arrays()
    assert array_checksum(without) == array_checksum(without.arrays())  # the six arrays only, as before the field
    assert array_checksum(with_lp) != array_checksum(without)
    for suffix in ("npz", "hdf5"):
        for ds in (with_lp, without):
            path = tmp_path / f"{ds.behaviour_log_probs is None}.{suffix}"
            getattr(ds, f"save_{suffix}")(path)
            back = Dataset.load(path)
            assert read_checksum(path) == array_checksum(back) == array_checksum(ds)
            if ds.behaviour_log_probs is None:
                assert back.behaviour_log_probs is None
            else:
                np.testing.assert_array_equal(back.behaviour_log_probs, ds.behaviour_log_probs)
    arrays = with_lp.stored_arrays()
    varied = Dataset.from_arrays(**{**arrays, "behaviour_log_probs": -np.arange(len(with_lp)) / 7.0}, info=with_lp.info)
    np.testing.assert_array_equal(varied.select_episodes([1, 3]).behaviour_log_probs,
                                  varied.behaviour_log_probs[np.isin(varied.episode_id, [1, 3])])
    bad = arrays["behaviour_log_probs"].copy()
    bad[4] = np.nan
    with pytest.raises(DatasetError, match="behaviour_log_probs.*NaN or \\+inf"):
        Dataset.from_arrays(**{**arrays, "behaviour_log_probs": bad}, info=with_lp.info)


def test_continuous_actions_importance_weights_in_env_units_and_fqe_on_a_one_step_problem():
    """One-step episodes, a ~ U[-2, 2] (density 1/4, stored), r = -(a - 1)^2; pi = N(1, 0.2^2) in env units
    (N(0.5, 0.1^2) in the unit box): V = -E[(a - 1)^2] = -0.04. IS needs the unit-box density divided by 2."""
    from offrl.ope.policy import log_prob, smoothed

    rng = np.random.default_rng(0)
    n = 2000
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    actions = rng.uniform(-2.0, 2.0, size=(n, 1)).astype(np.float32)
    data = Dataset.from_arrays(observations=obs, actions=actions, rewards=-(actions[:, 0] - 1.0) ** 2, next_observations=obs,
                               terminals=np.ones(n), behaviour_log_probs=np.full(n, np.log(0.25)),
                               info=DatasetInfo(name="one-step", action_low=(-2.0,), action_high=(2.0,)))
    det = Policy("deterministic", lambda o: jnp.full((o.shape[0], 1), 0.5), 2, action_scale=np.array([2.0], np.float32),
                 action_offset=np.zeros(1, np.float32), name="constant")
    policy = smoothed(det, 0.1)
    lp = np.asarray(log_prob(policy, jnp.asarray(obs[:3]), jnp.asarray([[1.0], [1.2], [0.0]])))
    sd = 0.2  # env units
    np.testing.assert_allclose(lp, -0.5 * (np.array([0.0, 0.2, -1.0]) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi)), rtol=1e-5)
    episodes = episodes_of(data)
    weights = importance_weights(episodes, log_ratios(batched_log_prob(policy, obs, actions), data.behaviour_log_probs))
    assert importance_sampling(episodes, weights, 0.99, "wis", num_bootstrap=0).value == pytest.approx(-0.04, abs=0.01)
    assert importance_sampling(episodes, weights, 0.99, "is", num_bootstrap=0).value == pytest.approx(-0.04, abs=0.02)
    model = fit_fqe(data, det, FQEConfig(hidden_dims=(32, 32), steps=1500, chunk=1500, learning_rate=3e-3))
    # the deterministic action 1.0 has Q = 0; the terminal transitions make Q = r exactly
    assert fqe_estimate(episodes, model, data, num_bootstrap=0).value == pytest.approx(0.0, abs=0.1)
    assert model.q(obs[:1], np.array([[-1.0]]))[0] == pytest.approx(-4.0, abs=0.3)


def test_model_based_estimate_on_a_linear_gaussian_system_matches_the_true_value(tmp_path):
    """s' = A s + B a + noise, r = C s + noise, 60 episodes of 50 steps under uniform actions: with a constant action a = 0.5 the expected
    return from s0 is sum_t gamma^t C s_t with s_{t+1} = A s_t + B a (the noise has mean zero and r is linear in s),
    computed here in numpy. The ensemble learned from uniform actions, given as a file, must estimate it per start
    state, and a policy that pushes the other way must get the other value."""
    from offrl.data.integrity import array_checksum
    from offrl.dynamics import DynamicsConfig, save_dynamics, train_dynamics
    from offrl.ope.episodes import episodes_of
    from offrl.ope.model_based import ModelBasedConfig, model_rollout_returns

    A = np.array([[0.9, 0.2], [-0.1, 0.8]], np.float32)
    B, C = np.array([[0.5], [-0.3]], np.float32), np.array([1.0, -0.5], np.float32)
    rng, episodes_n, length, noise = np.random.default_rng(0), 60, 50, 0.05
    a = rng.uniform(-1, 1, size=(episodes_n, length, 1)).astype(np.float32)
    s = np.zeros((episodes_n, length + 1, 2), np.float32)
    s[:, 0] = 1.5 * rng.normal(size=(episodes_n, 2))
    for t in range(length):
        s[:, t + 1] = s[:, t] @ A.T + a[:, t] @ B.T + noise * rng.normal(size=(episodes_n, 2))
    r = (s[:, :-1] @ C + noise * rng.normal(size=(episodes_n, length))).astype(np.float32).ravel()
    s, s2, a, n = s[:, :-1].reshape(-1, 2), s[:, 1:].reshape(-1, 2), a.reshape(-1, 1), episodes_n * length
    timeouts = np.zeros(n, np.float32)
    timeouts[length - 1::length] = 1
    data = Dataset.from_arrays(observations=s, actions=a, rewards=r, next_observations=s2, terminals=np.zeros(n, np.float32),
                               timeouts=timeouts, info=DatasetInfo(name="linear", action_low=(-1.0,), action_high=(1.0,)))
    config = DynamicsConfig(hidden_dims=(32, 32), num_members=3, num_elites=2, batch_size=100, learning_rate=5e-3,
                            max_epochs=40, epochs_per_call=20, patience=1000)
    path = save_dynamics(tmp_path / "linear", *train_dynamics(data, config), array_checksum(data))
    episodes = episodes_of(data)
    horizon, gamma = 10, 0.9
    mb = ModelBasedConfig(discount=gamma, horizon=horizon, rollouts=8, dynamics=str(path))
    starts, values = s[episodes.start_index].astype(np.float64), {}
    for action in (0.5, -0.5):
        policy = Policy("deterministic", lambda o, u=action: jnp.full((o.shape[0], 1), u), 2, name=f"a={action}")
        x, truth = starts.copy(), np.zeros(len(starts))
        for t in range(horizon):
            truth += gamma ** t * x @ C
            x = x @ A.T + action * B[:, 0]
        got = model_rollout_returns(data, episodes, policy, mb)
        # the true returns span about -13..13; a start state at the edge of the data may be off (the model extrapolates)
        assert np.mean(np.abs(got - truth) <= 0.6 + 0.1 * np.abs(truth)) >= 0.9, np.c_[got, truth]
        assert np.corrcoef(got, truth)[0, 1] > 0.99
        assert abs(got.mean() - truth.mean()) < 0.4
        values[action] = got.mean(), truth.mean()
    # the estimate follows the action: the two policies' difference (about 1.1) within 25 %
    (got_up, true_up), (got_down, true_down) = values[0.5], values[-0.5]
    assert abs((got_up - got_down) - (true_up - true_down)) < 0.25 * abs(true_up - true_down)

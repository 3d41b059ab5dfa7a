"""The over-estimation diagnostic: Q(s0, pi(s0)) against the discounted return actually obtained."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import offrl
from offrl.algos import iql
from offrl.cli import main
from offrl.envs import make_env
from offrl.evaluate import evaluate
from offrl.logger import read_jsonl

from conftest import small_config


def test_discounted_return_matches_a_manual_rollout():
    """evaluate(discount=...) sums discount**t * reward_transform(r_t) per episode, from the logged start state."""
    def policy(obs):
        return np.clip(obs[..., 2:3] * 0.5, -2, 2)  # a fixed feedback law, (P, E, 1)

    res = evaluate(policy, "Pendulum-v1", episodes=3, seed=5, discount=0.9, reward_transform=lambda r: 2 * r + 1)[0]
    for j in range(3):
        env = make_env("Pendulum-v1")
        obs, _ = env.reset(seed=5 + j)
        np.testing.assert_allclose(res["initial_observations"][j], obs, rtol=1e-6)
        total, w, done = 0.0, 1.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs[None, None].astype(np.float32))[0, 0])
            total += w * (2 * r + 1)
            w *= 0.9
            done = term or trunc
        assert res["discounted_returns"][j] == pytest.approx(total, rel=1e-9)
    assert "discounted_returns" not in evaluate(policy, "Pendulum-v1", episodes=1)[0]


def test_fit_logs_q_estimate_and_realised_return(tmp_path):
    """Every evaluation of a Q-based algorithm logs the critic's start-state value; it equals q_value recomputed."""
    ds = offrl.load_dataset("pendulum-random")
    config = small_config(offrl.algos.get_algo("iql"))
    result = offrl.fit(config, ds, steps=400, chunk=200, eval_interval=200, eval_episodes=2, seeds=2,
                       run_dir=tmp_path / "iql", progress=False, plot=False)
    rows = read_jsonl(tmp_path / "iql" / "eval.jsonl")
    assert [r["step"] for r in rows] == [200, 400]
    last = rows[-1]
    assert last["q_ratio"] == pytest.approx(last["q_estimate"] / last["discounted_return"])
    # recompute: the critic at the evaluation's start states (reset seeds 10000 + j) and the deterministic action
    starts = np.stack([make_env("Pendulum-v1").reset(seed=10_000 + j)[0] for j in range(2)]).astype(np.float32)
    agent = offrl.load_agent(result.run_dir)
    per_seed = []
    for i in range(2):
        state = jax.tree.map(lambda x: x[i], agent.states)
        obs = agent.transforms.normalize_obs(starts)
        actions = iql.act(agent.config, state, obs, jax.random.PRNGKey(0), True)
        per_seed.append(float(np.mean(iql.q_value(agent.config, state, obs, actions))))
    np.testing.assert_allclose(last["per_seed_q_estimate"], per_seed, rtol=1e-4, atol=1e-4)
    assert last["q_estimate"] == pytest.approx(np.mean(per_seed), rel=1e-4, abs=1e-4)
    # the realised return is in the algorithm's reward units
    assert last["per_seed_discounted_return"][0] < 0  # Pendulum's rewards are negative


def test_report_draws_one_figure_for_several_runs(tmp_path, capsys):
    ds = offrl.load_dataset("pendulum-random")
    runs = []
    for algo in ("sac_offline", "bc"):
        config = small_config(offrl.algos.get_algo(algo))
        runs.append(offrl.fit(config, ds, steps=200, chunk=100, eval_interval=100, eval_episodes=1,
                              run_dir=tmp_path / algo, progress=False, plot=False).run_dir)
    assert "q_estimate" in read_jsonl(runs[0] / "eval.jsonl")[0]
    assert "q_estimate" not in read_jsonl(runs[1] / "eval.jsonl")[0]  # BC has no critic
    out = tmp_path / "fig.png"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "has no eval.jsonl" in capsys.readouterr().err

"""Offline-to-online fine-tuning: the mixed batch, online extras, and a smoke run that improves.

The mixed sampler's offline share is checked against the binomial distribution; the smoke run
fine-tunes IQL trained on uniform-random Pendulum data, whose offline policy is clearly
sub-optimal, and asserts the online phase raises the normalised score.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import iql
from offrl.data.sampling import to_device
from offrl.datasets.builtin import generate_pendulum
from offrl.finetune import finetune, regret_of
from offrl.online import buffer_add, buffer_init, sample_mixed, _set_agent_extras
from offrl.train import fit
from conftest import make_dataset

BATCH, DRAWS = 256, 40


def _mixed_setup(online_rows: int):
    """Offline rows carry reward 1, online rows reward 0: a batch's mean reward is its offline share."""
    ds = make_dataset(n=600, obs_dim=3, act_dim=2)
    arrays = {k: np.asarray(v) for k, v in {"observations": ds.observations, "actions": ds.actions,
                                           "rewards": np.ones(600, np.float32), "next_observations": ds.next_observations,
                                           "terminals": ds.terminals}.items()}
    offline = to_device(arrays, ds)
    buf = buffer_init(1000, 3, 2)
    if online_rows:
        z = np.zeros((online_rows, 3), np.float32)
        buf = buffer_add(buf, z, np.zeros((online_rows, 2), np.float32), np.zeros(online_rows, np.float32), z,
                         np.zeros(online_rows, np.float32))
    return offline, buf


def _offline_share(offline, buf, ratio) -> tuple[float, float]:
    draw = jax.jit(lambda k: sample_mixed(buf, offline, k, BATCH, 0.99, ratio))
    shares, reported = [], []
    for key in jax.random.split(jax.random.PRNGKey(0), DRAWS):
        batch, frac = draw(key)
        shares.append(float(batch.rewards.mean()))
        reported.append(float(frac))
    np.testing.assert_allclose(shares, reported, atol=1e-6)  # the logged fraction is the batch's
    return float(np.mean(shares)), DRAWS * BATCH


@pytest.mark.parametrize("ratio, online_rows, expected", [(0.3, 200, 0.3), (0.5, 200, 0.5), (None, 200, 600 / 800),
                                                          (None, 600, 0.5), (0.3, 0, 1.0), (0.0, 50, 0.0)])
def test_mixed_batches_match_the_ratio_within_a_binomial_bound(ratio, online_rows, expected):
    offline, buf = _mixed_setup(online_rows)
    share, n = _offline_share(offline, buf, ratio)
    bound = 4.0 * np.sqrt(expected * (1 - expected) / n) + 1e-9  # 4 standard deviations of the binomial share
    assert abs(share - expected) <= bound, (share, expected, bound)


def test_online_extras_fill_the_rows_of_a_finished_episode():
    bufs = jax.vmap(lambda _: buffer_init(8, 1, 1, {"mc_return": ()}))(jnp.arange(2))
    assert np.all(np.isneginf(np.asarray(bufs.extras["mc_return"])))
    bufs = _set_agent_extras(bufs, 1, [6, 7, 0], {"mc_return": np.array([3.0, 2.0, 1.0])}, capacity=8)
    got = np.asarray(bufs.extras["mc_return"])
    assert np.all(np.isneginf(got[0]))  # the other agent is untouched
    np.testing.assert_array_equal(got[1, [6, 7, 0]], [3.0, 2.0, 1.0])
    assert np.all(np.isneginf(got[1, 1:6]))
    # adding transitions over a row resets its extras (a new transition has no return yet)
    one = jax.tree.map(lambda x: x[1], bufs).replace(pointer=jnp.int32(7))
    one = buffer_add(one, np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), np.zeros(1))
    assert np.isneginf(float(one.extras["mc_return"][7])) and float(one.extras["mc_return"][6]) == 3.0


def test_regret_averages_the_online_shortfall():
    rows = [{"step": 0, "normalized_score": 10.0}, {"step": 5, "normalized_score": 60.0}, {"step": 10, "normalized_score": 100.0}]
    assert regret_of(rows) == pytest.approx(((1 - 0.6) + (1 - 1.0)) / 2)
    assert regret_of([{"step": 0, "normalized_score": 5.0}]) is None


def test_finetuning_improves_a_policy_trained_on_random_data(tmp_path):
    """IQL trained on 20 episodes of uniform-random Pendulum scores far below expert (about -7 when
    measured); 1000 online steps with symmetric sampling raise its normalised score by 30+ points
    (to 40-60 when measured), for both seeds."""
    data = generate_pendulum("pendulum-random-small", {"random": 1.0}, seed=0, size=4000, description="test")
    path = data.save_hdf5(tmp_path / "pendulum-random-small.hdf5")
    config = iql.Config(hidden_dims=(128, 128))
    fit(config, str(path), steps=2000, seeds=2, run_dir=tmp_path / "offline", progress=False, plot=False, eval_episodes=0)
    results = finetune(tmp_path / "offline", steps=1000, eval_every=1000, eval_episodes=5, offline_ratio=0.5,
                       run_dir=tmp_path / "online", progress=False, plot=False)
    assert [r.run_dir.name for r in results] == ["seed-0", "seed-1"]
    for res in results:
        summary = json.loads((res.run_dir / "finetune.json").read_text())
        rows = [json.loads(line) for line in (res.run_dir / "eval.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [0, 1000]
        assert summary["offline_score"] == rows[0]["normalized_score"] < 50
        assert summary["final_score"] > summary["offline_score"] + 30, summary
        assert summary["regret"] == pytest.approx(1 - summary["final_score"] / 100)
        train = [json.loads(line) for line in (res.run_dir / "train.jsonl").read_text().splitlines()]
        assert 0.4 < train[-1]["offline_fraction"] < 0.6  # symmetric sampling
        assert json.loads((res.run_dir / "config.json").read_text())["finetune"]["offline_step"] == 2000


def test_calql_finetuning_gives_online_rows_their_monte_carlo_returns(tmp_path):
    """Pendulum episodes last 200 steps: after 500 online steps, rows 0-399 (two finished episodes)
    hold G_t of their episode's stored (scaled) rewards, rows 400-499 (running episode) -inf."""
    from offrl.algos import get_algo

    data = generate_pendulum("pendulum-random-tiny", {"random": 1.0}, seed=1, size=1000, description="test")
    path = data.save_hdf5(tmp_path / "tiny.hdf5")
    config = get_algo("calql").config_cls(hidden_dims=(32, 32), batch_size=32, num_samples=2, discount=0.9)
    fit(config, str(path), steps=20, run_dir=tmp_path / "offline", progress=False, plot=False, eval_episodes=0)
    (res,) = finetune(tmp_path / "offline", steps=500, eval_every=500, eval_episodes=1, run_dir=tmp_path / "online",
                      progress=False, plot=False)
    g_buf, rewards = np.asarray(res.buffer.extras["mc_return"], np.float64), np.asarray(res.buffer.rewards, np.float64)
    assert np.all(np.isneginf(g_buf[400:500]))
    for start in (0, 200):
        want, g = np.zeros(200), 0.0
        for t in reversed(range(200)):
            g = rewards[start + t] + 0.9 * g
            want[t] = g
        np.testing.assert_allclose(g_buf[start:start + 200], want, rtol=1e-4, atol=1e-3)

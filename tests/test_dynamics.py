"""The dynamics ensemble (offrl.dynamics): known answers on a linear-Gaussian system, files, bad input."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.data import Dataset, DatasetInfo
from offrl.dynamics import DynamicsConfig, DynamicsError, load_dynamics, predict, save_dynamics, train_dynamics, uncertainty

A = np.array([[0.9, 0.2], [-0.1, 0.8]], np.float32)
B = np.array([[0.5], [-0.3]], np.float32)
C = np.array([1.0, -0.5], np.float32)  # r = C s + noise


def linear_dataset(n=3000, noise=0.1, seed=0, name="linear"):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 2)).astype(np.float32)
    a = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    s2 = s @ A.T + a @ B.T + noise * rng.normal(size=(n, 2)).astype(np.float32)
    r = s @ C + noise * rng.normal(size=n).astype(np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[99::100] = 1
    timeouts[-1] = 1
    return Dataset.from_arrays(observations=s, actions=a, rewards=r, next_observations=s2, terminals=np.zeros(n, np.float32),
                               timeouts=timeouts, info=DatasetInfo(name=name))


# 40 epochs without the early stop: it ends on the mean's error, before the variance has settled
SMALL = DynamicsConfig(hidden_dims=(32, 32), num_members=3, num_elites=2, batch_size=100, learning_rate=5e-3, max_epochs=40,
                       epochs_per_call=20, patience=1000)


@pytest.fixture(scope="module")
def noisy_model():
    return train_dynamics(linear_dataset(n=1500), SMALL)


def test_linear_gaussian_recovers_A_B_and_the_noise(noisy_model):
    model, card = noisy_model
    rng = np.random.default_rng(1)
    s = rng.normal(size=(500, 2)).astype(np.float32) * 0.8
    a = rng.uniform(-0.9, 0.9, size=(500, 1)).astype(np.float32)
    mean, logvar = (np.asarray(v) for v in predict(model, jnp.asarray(s), jnp.asarray(a)))
    elites = np.asarray(model.elites)
    mu = mean[elites].mean(axis=0)
    features = np.concatenate([s, a, np.ones((500, 1), np.float32)], axis=1)
    coef, *_ = np.linalg.lstsq(features, mu, rcond=None)  # mu = [s, a, 1] @ coef
    np.testing.assert_allclose(coef[:2, :2].T, A - np.eye(2), atol=0.05)  # the mean predicts s' - s
    np.testing.assert_allclose(coef[2, :2], B[:, 0], atol=0.05)
    np.testing.assert_allclose(coef[:2, 2], C, atol=0.05)
    sigma = np.exp(0.5 * logvar[elites]).mean(axis=(0, 1))
    np.testing.assert_allclose(sigma, 0.1, rtol=0.10)
    # log-variances stay inside their learned bounds, on the data and far from it
    members = model.params["params"]["members"]
    far = jnp.asarray(rng.normal(size=(200, 2)).astype(np.float32) * 50)
    for obs, act in ((jnp.asarray(s), jnp.asarray(a)), (far, jnp.full((200, 1), 30.0))):
        lv = np.asarray(predict(model, obs, act)[1])
        assert (lv <= np.asarray(members["max_logvar"])[:, None, :] + 1e-3).all()
        assert (lv >= np.asarray(members["min_logvar"])[:, None, :] - 1e-6).all()
    assert len(card["holdout_mse"]) == 3 and len(card["holdout_nll"]) == 3 and card["elites"] == elites.tolist()
    assert sorted(card["holdout_mse"])[:2] == sorted(np.asarray(card["holdout_mse"])[elites].tolist())


def test_disagreement_small_on_support_and_growing_away():
    model, _ = train_dynamics(linear_dataset(n=1500, noise=0.0, name="noise-free"), SMALL)
    rng = np.random.default_rng(2)
    s = rng.normal(size=(300, 2)).astype(np.float32)
    a = rng.uniform(-1, 1, size=(300, 1)).astype(np.float32)
    d = []
    for scale in (1.0, 4.0, 16.0):
        mean, logvar = predict(model, jnp.asarray(s * scale), jnp.asarray(a * min(scale, 1.0)))
        d.append(float(uncertainty(mean, logvar, "ensemble_disagreement").mean()))
    assert d[0] < 0.05, d
    assert d[1] > 3 * d[0] and d[2] > 2 * d[1], d


def test_early_stop_budget_and_round_trip(noisy_model, tmp_path):
    model, card = noisy_model
    assert card["epochs"] == 40 and card["stopped_by"] == "max_epochs"
    path = save_dynamics(tmp_path / "m", model, card, "abc123")
    loaded, card2 = load_dynamics(path, "abc123")
    assert card2["elites"] == card["elites"]
    for x, y in zip(jax.tree.leaves(model), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(DynamicsError, match="trained on another dataset"):
        load_dynamics(path, "other")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DynamicsError, match="checksum mismatch"):
        load_dynamics(path)
    assert json.loads((tmp_path / "m.json").read_text())["dataset_sha256"] == "abc123"
    tiny = DynamicsConfig(hidden_dims=(8,), num_members=2, num_elites=1, learning_rate=3e-2, max_epochs=4, epochs_per_call=4,
                          patience=2)
    short, short_card = train_dynamics(linear_dataset(n=300, name="short"), tiny)
    assert short_card["epochs"] == 4 and short_card["stopped_by"] == "max_epochs"
    # early stop: no member improved by > 1 % for `patience` epochs; each member keeps its best epoch
    _, early = train_dynamics(linear_dataset(n=300, name="short"), dataclasses.replace(tiny, max_epochs=200))
    assert early["stopped_by"] == "early_stop" and early["epochs"] < 200
    mse = np.array([h["holdout_mse"] for h in early["history"]])
    assert len(mse) == early["epochs"]
    best = np.minimum.accumulate(mse, axis=0)
    assert not (best[-3] * 0.99 > mse[-2:]).any()  # the last `patience` epochs improved no member by > 1 %
    np.testing.assert_allclose(early["holdout_mse"], mse.min(axis=0), rtol=0.02)


def test_too_small_for_a_validation_split():
    with pytest.raises(DynamicsError, match="too few to hold out a validation split"):
        train_dynamics(linear_dataset(n=4, name="tiny"), SMALL)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Pendulum-v1"])
def test_termination_rules_agree_with_the_environment(env_id):
    """The exact rule on every transition of short random-action episodes (Hopper/Walker fall within ~20-100 steps)."""
    import gymnasium as gym

    from offrl.dynamics import builtin_rule

    rule, env = builtin_rule(env_id), gym.make(env_id)
    rng = np.random.default_rng(0)
    obs_list, next_list, flags = [], [], []
    obs, _ = env.reset(seed=0)
    for _ in range(400):
        scale = rng.choice([0.3, 1.0])
        nxt, _, terminated, truncated, _ = env.step((scale * env.action_space.sample()).astype(np.float32))
        obs_list.append(obs), next_list.append(nxt), flags.append(terminated)
        obs = env.reset(seed=int(rng.integers(1 << 30)))[0] if terminated or truncated else nxt
    env.close()
    obs_a, next_a = np.asarray(obs_list, np.float32), np.asarray(next_list, np.float32)
    predicted = np.asarray(rule(jnp.asarray(obs_a), None, jnp.asarray(next_a)))
    np.testing.assert_array_equal(predicted, np.asarray(flags))
    if env_id in ("Hopper-v5", "Walker2d-v5"):
        assert sum(flags) >= 3  # the check saw terminations, not only healthy steps
    # the lower bounds matter: a Hopper that sank below z = 0.7 with an upright body is terminal
    if env_id == "Hopper-v5":
        low = next_a[:1].copy()
        low[0, 0], low[0, 1:] = 0.6, 0.0
        assert bool(rule(None, None, jnp.asarray(low))[0])

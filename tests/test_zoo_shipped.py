"""The behaviour-policy zoo shipped in the package: cards, references, and the policies' recorded returns.

Re-evaluating a few of the 100 recorded episodes of each shipped expert and medium policy checks the
whole chain (array file, numpy forward pass, evaluation) against what ``offrl zoo export`` measured.
"""

from __future__ import annotations

import numpy as np
import pytest

from offrl.envs import policies as zoo
from offrl.zoo import _evaluate_policy

ACCEPTANCE = {"Pendulum-v1": -200.0, "Hopper-v5": 2500.0, "HalfCheetah-v5": 6000.0, "Walker2d-v5": 3500.0}
SHIPPED = zoo.zoo_envs()


def test_the_zoo_ships_policies():
    assert "Pendulum-v1" in SHIPPED


@pytest.mark.parametrize("env_id", SHIPPED)
def test_cards_and_references(env_id):
    refs = zoo.zoo_references(env_id)
    assert refs["random"]["eval_episodes"] == 100 and refs["expert"]["eval_episodes"] == 100
    roles = ["expert", "medium"] + zoo.zoo_series(env_id)
    assert len(roles) >= 3
    for role in roles:
        policy = zoo.load_zoo_policy(env_id, role)
        card = policy.card
        assert card["env"] == env_id and card["role"] == role and card["eval_episodes"] == 100
        assert len(card["returns"]) == 100 and card["return_mean"] == pytest.approx(np.mean(card["returns"]), abs=1e-3)
        for key in ("env_steps", "seed", "offrl_version", "normalized_score"):
            assert key in card
        n_params = sum(k.size + b.size for k, b in policy.layers)
        assert n_params < 200_000, f"{role}: {n_params} parameters"
    expert, medium = zoo.load_zoo_policy(env_id, "expert").card, zoo.load_zoo_policy(env_id, "medium").card
    assert refs["expert"]["return_mean"] == expert["return_mean"]
    assert expert["return_mean"] >= ACCEPTANCE[env_id]
    assert 25.0 <= medium["normalized_score"] <= 45.0
    assert medium["env_steps"] < expert["env_steps"]
    series_steps = [zoo.load_zoo_policy(env_id, r).card["env_steps"] for r in zoo.zoo_series(env_id)]
    assert series_steps == sorted(series_steps) and series_steps[-1] < medium["env_steps"]


@pytest.mark.parametrize("env_id", SHIPPED)
@pytest.mark.parametrize("role", ["expert", "medium"])
def test_recorded_returns_are_reproduced(env_id, role):
    policy = zoo.load_zoo_policy(env_id, role)
    again = _evaluate_policy(env_id, policy.act, episodes=3)
    np.testing.assert_allclose(again["returns"], policy.card["returns"][:3], atol=2e-3)

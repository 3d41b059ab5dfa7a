"""Populations: members x seeds in one compiled call train the agents separate runs train."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from conftest import make_dataset
from offrl.algos import iql
from offrl.config import ConfigError
from offrl.population import Population, parse_grid
from offrl.train import fit

SMALL = dict(hidden_dims=(8,), batch_size=16)
# beta and the actor's cosine-scheduled learning rate: a loss weight and an optimiser setting
MEMBERS = {"beta": [1.0, 10.0], "actor_lr": [3e-4, 1e-3]}


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(n=400)


def _agent(states, i):
    return [np.asarray(x) for x in jax.tree.leaves(jax.tree.map(lambda x: x[i], states))]


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def separate_runs(dataset, tmp_path_factory):
    """Each member's config trained alone with 2 seeds: the reference."""
    root = tmp_path_factory.mktemp("separate")
    runs = []
    for m in range(2):
        config = iql.Config(**SMALL, beta=MEMBERS["beta"][m], actor_lr=MEMBERS["actor_lr"][m])
        runs.append(fit(config, dataset, steps=20, chunk=10, seeds=2, progress=False, plot=False, run_dir=root / str(m),
                        seed_strategy="map"))
    return runs


def _population(dataset, run_dir, strategy, **kwargs):
    return fit(iql.Config(**SMALL), dataset, steps=20, chunk=10, seeds=2, progress=False, plot=False, run_dir=run_dir,
               population=MEMBERS, seed_strategy=strategy, **kwargs)


def _assert_same_agents(states, separate_runs, **tolerance):
    for m in range(2):
        for i in range(2):
            for x, y in zip(_agent(states, 2 * m + i), _agent(separate_runs[m].states, i)):
                np.testing.assert_allclose(x, y, **tolerance, err_msg=f"member {m} seed {i}")


def test_a_population_trains_the_agents_of_separate_runs_and_resumes(dataset, separate_runs, tmp_path):
    """Under ``map`` (the CPU default) every agent is bit for bit the one its separate run trains; a population
    resumed from its checkpoint at update 10 ends with the same bits again."""
    result = _population(dataset, tmp_path, "map", checkpoint_interval=10)
    assert jax.tree.leaves(result.states)[0].shape[0] == 4
    _assert_same_agents(result.states, separate_runs, rtol=0, atol=0)
    # the two members differ (beta and the learning rate reached the compiled update)
    assert _max_diff(_agent(result.states, 0), _agent(result.states, 2)) > 1e-4
    rows = [json.loads(line) for line in (tmp_path / "population.jsonl").read_text().splitlines()]
    assert [(r["member"], r["beta"], r["actor_lr"], r["seeds"]) for r in rows] == [(0, 1.0, 3e-4, 2), (1, 10.0, 1e-3, 2)]
    assert rows[0]["adv_weight_mean"] != rows[1]["adv_weight_mean"]
    train = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    for m, run in enumerate(separate_runs):  # each member's curve is its separate run's (mean over its 2 seeds)
        alone = [json.loads(line) for line in (run.run_dir / "train.jsonl").read_text().splitlines()]
        assert [r["step"] for r in train] == [r["step"] for r in alone] == [10, 20]
        for key in ("actor_loss", "critic_loss", "adv_weight_mean"):
            np.testing.assert_allclose([r[f"per_member_{key}"][m] for r in train], [r[key] for r in alone], rtol=1e-6)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["population"] == {"names": ["beta", "actor_lr"], "values": [[1.0, 3e-4], [10.0, 1e-3]]}

    shutil.copy(tmp_path / "checkpoint.prev.msgpack", tmp_path / "checkpoint.msgpack")  # back to update 10
    (tmp_path / "population.jsonl").unlink()
    resumed = fit(None, dataset, resume=tmp_path, progress=False, plot=False)
    assert resumed.population == result.population and resumed.step == 20
    _assert_same_agents(resumed.states, separate_runs, rtol=0, atol=0)
    assert (tmp_path / "population.jsonl").exists()


def test_a_vmapped_population_trains_the_agents_of_separate_runs(dataset, separate_runs, tmp_path):
    """vmap batches the members' matmuls, which reorders float32 sums: equal within 1e-4 relative after 20 updates."""
    result = _population(dataset, tmp_path, "vmap")
    _assert_same_agents(result.states, separate_runs, rtol=1e-4, atol=1e-6)


def test_the_grid_is_the_product_of_its_axes():
    pop = parse_grid(iql.Config, ["algo.beta=1,3,10", "algo.expectile=0.7,0.9"])
    assert pop.names == ("beta", "expectile") and pop.size == 6
    assert pop.values[:2] == ((1.0, 0.7), (1.0, 0.9))
    values = pop.agent_values(iql.Config, seeds=2)
    assert values["beta"].tolist() == [1, 1, 1, 1, 3, 3, 3, 3, 10, 10, 10, 10] and values["beta"].dtype == np.float32


@pytest.mark.parametrize("members, expected", [
    ({"beta": [1.0], "expectile": [0.7, 0.9]}, "different numbers of member values"),
    ({"beta": []}, "the population is empty"),
    ({"expectile": [0.5, 1.0]}, "iql.Config.expectile = 1.0 is out of range"),
    ({"beta": ["high"]}, "value 'high' is not a number"),
    ({"log_std_bound": ["clip"]}, "cannot take one value per population member"),
])
def test_bad_members_fail_before_anything_loads(members, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        Population.of(iql.Config, members)

"""`offrl sweep`: specs become population groups; a local Ray Tune sweep completes and a restarted one skips
finished groups; the tuning-budget bandit against hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_dataset
from offrl.config import ConfigError
from offrl.sweep import SweepArgs, SweepError, expand, make_groups, sweep
from offrl.tuning import tuning_curve


def _spec(tmp_path, spec: dict):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_float_fields_share_a_group_and_shape_fields_split_them():
    spec = {"algos": ["iql", "td3bc"], "datasets": ["d1"], "seeds": 3, "steps": 100,
            "fixed": {"algo.discount": 0.98},  # one value: a fixed field, not a population field
            "grid": {"algo.batch_size": [16, 32], "iql.beta": [1, 3, 10], "td3bc.alpha": [1.0, 2.5]}}
    trials, settings = expand(spec)
    assert len(trials) == 2 * 3 + 2 * 2 and settings == {"seeds": 3, "steps": 100}
    groups = make_groups(trials, settings)
    assert sorted((g["algo"], g["fixed"]["batch_size"], len(g["members"])) for g in groups) == [
        ("iql", 16, 3), ("iql", 32, 3), ("td3bc", 16, 2), ("td3bc", 32, 2)]
    iql16 = next(g for g in groups if g["algo"] == "iql" and g["fixed"]["batch_size"] == 16)
    assert iql16["members"] == [{"beta": 1.0}, {"beta": 3.0}, {"beta": 10.0}] and iql16["fixed"]["discount"] == 0.98
    # the same spec gives the same group ids (a restarted sweep finds its folders)
    assert [g["id"] for g in make_groups(*expand(spec))] == [g["id"] for g in groups]


def test_random_draws_are_reproducible_and_in_range():
    spec = {"algos": ["iql"], "datasets": ["d"], "random": {"samples": 5, "seed": 1,
                                                           "algo.actor_lr": {"low": 1e-4, "high": 1e-3, "log": True},
                                                           "algo.hidden_dims": {"values": [[8], [16, 16]]}}}
    trials = expand(spec)[0]
    assert trials == expand(spec)[0] and len(trials) == 5
    assert all(1e-4 <= t["overrides"]["actor_lr"] <= 1e-3 for t in trials)
    assert {t["overrides"]["hidden_dims"] for t in trials} <= {(8,), (16, 16)}


@pytest.mark.parametrize("spec, error, expected", [
    ({"algos": ["iql"], "datasets": ["d"], "grid": {"algo.nosuch": [1]}}, SweepError, "iql's config has no field 'nosuch'"),
    ({"algos": ["iql"], "datasets": ["d"], "grid": {"algo.beta": []}}, SweepError, "the grid is empty"),
    ({"algos": ["iql"], "datasets": ["d"], "grid": {}}, SweepError, "the spec's [grid] is empty"),
    ({"algos": ["iql"], "datasets": ["d"], "grid": {"algo.beta": ["high"]}}, ConfigError, "value 'high' is not a number"),
    ({"algos": ["iql"], "datasets": ["d"], "grid": {"algo.hidden_dims": [[0]]}}, ConfigError, "hidden_dims = (0,)"),
    ({"algos": ["iql"], "datasets": ["d"], "grid": {"algo.expectile": [0.5, 1.5]}}, ConfigError, "expectile = 1.5 is out of range"),
    ({"algos": ["iql"], "datasets": ["d"], "grid": {"cql.alpha": [1]}}, SweepError, "'cql' is neither 'algo'"),
    ({"algos": ["iql"], "datasets": ["d"], "sweeps": 3}, SweepError, "unknown spec key 'sweeps'"),
    ({"algos": ["iql"], "datasets": [], "seeds": 2}, SweepError, "'datasets' must be a non-empty list"),
    ({"algos": ["iql"], "datasets": ["d"], "seeds": 0}, ConfigError, "fit.seeds = 0 is out of range"),
])
def test_a_bad_spec_fails_before_anything_trains(tmp_path, spec, error, expected):
    with pytest.raises(error) as info:
        sweep(SweepArgs(spec=str(_spec(tmp_path, spec)), out=str(tmp_path / "out")))
    assert expected in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_local_ray_sweep_completes_and_a_restarted_one_skips_finished_groups(tmp_path):
    pytest.importorskip("ray.tune")
    data = tmp_path / "tiny.npz"
    make_dataset(n=200, act_dim=1).save_npz(data)
    # two values of a shape field (two groups: two Ray trials at once on num_cpus=2) x two seeds
    spec = _spec(tmp_path, {"algos": ["bc"], "datasets": [str(data)], "seeds": 2, "steps": 10, "loop": {"chunk": 10},
                            "fixed": {"algo.hidden_dims": [8]}, "grid": {"algo.batch_size": [8, 16]}})
    out = tmp_path / "out"
    args = SweepArgs(spec=str(spec), out=str(out), backend="ray", num_cpus=2)
    sweep(args)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["fields"]["batch_size"], r["seeds"], r["steps"], r["status"]) for r in rows) == [
        (8, 2, 10, "done"), (16, 2, 10, "done")]
    done = sorted(out.glob("groups/*/done.json"))
    assert len(done) == 2
    stamps = [p.stat().st_mtime_ns for p in done]
    log = []
    sweep(SweepArgs(spec=str(spec), out=str(out), backend="ray", num_cpus=2), log=log.append)
    assert "skipping 2 finished group(s)" in log and not any(line.startswith("ray:") for line in log)
    assert [p.stat().st_mtime_ns for p in done] == stamps  # nothing trained again
    assert (out / "table.md").read_text().count("| done |") == 2


def test_the_tuning_budget_bandit_against_hand_computed_cases():
    # deterministic arms 0, 1, 0.5: after k pulls UCB has tried k distinct arms in a random order
    arms = [[0.0], [1.0], [0.5]]
    curve = {r["k"]: r for r in tuning_curve(arms, [1, 2, 3, 6], reps=3000, seed=0)}
    assert curve[1]["expected"] == pytest.approx(0.5, abs=0.03)  # a random arm: (0 + 1 + 0.5) / 3
    assert curve[2]["expected"] == pytest.approx((1 + 0.5 + 1) / 3, abs=0.03)  # best of a random pair
    assert curve[3]["expected"] == curve[6]["expected"] == 1.0  # every arm seen: the best
    assert curve[1]["best"] == 1.0 and curve[1]["mean"] == pytest.approx(0.5)
    # a noisy arm (0 or 1, mean 0.5) against a sure 0.6: one pull each leaves a coin flip on the noisy one's draw
    # (draw 0: 0 < 0.6 picks the sure arm; draw 1: 1 > 0.6 picks the noisy one, worth 0.5)
    curve = {r["k"]: r for r in tuning_curve([[0.0, 1.0], [0.6]], [2, 60], reps=1000, seed=1)}
    assert curve[2]["expected"] == pytest.approx(0.5 * 0.6 + 0.5 * 0.5, abs=0.02)
    assert curve[60]["expected"] > 0.58  # enough pulls find the sure arm

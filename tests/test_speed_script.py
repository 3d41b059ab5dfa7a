"""benchmarks/speed.py times exactly what offrl.fit trains: every registered name parses, and an
algorithm with device extras (AWR's Monte-Carlo returns) or a dataset filter (%BC) runs there."""

from __future__ import annotations

import pytest

from conftest import load_benchmark_script, make_dataset


@pytest.fixture(scope="module")
def speed():
    return load_benchmark_script("speed")


def test_algo_names_keep_underscores(speed):
    args = speed.parse_args(["--algos", "sac_offline, TD3+BC,brac-p,iql", "--out", "/dev/null"])
    assert args.algos == ["sac_offline", "td3bc", "brac_p", "iql"]


@pytest.mark.parametrize("name", ["awr", "percent_bc"])
def test_bench_offrl_builds_the_data_as_fit_does(speed, name, monkeypatch):
    import dataclasses

    from offrl.algos import registry

    algo = registry.get_algo(name)
    seen = []
    if algo.prepare_dataset is not None:  # %BC's episode filter must run, as in offrl.fit
        def spy(config, dataset):
            seen.append(len(dataset))
            return algo.prepare_dataset(config, dataset)

        monkeypatch.setitem(registry._REGISTRY, name, dataclasses.replace(algo, prepare_dataset=spy))
    out = speed.bench_offrl(name, make_dataset(n=400, episode_len=40), seeds=1, updates=4, chunk=2)
    assert out["algo"] == name and out["timed_updates_per_seed"] == 4
    assert out["updates_per_s_per_seed"] > 0
    assert seen == ([400] if algo.prepare_dataset is not None else [])

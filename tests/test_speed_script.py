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
def test_bench_offrl_builds_the_data_as_fit_does(speed, name):
    out = speed.bench_offrl(name, make_dataset(n=400, episode_len=40), seeds=1, updates=4, chunk=2)
    assert out["algo"] == name and out["timed_updates_per_seed"] == 4
    assert out["updates_per_s_per_seed"] > 0

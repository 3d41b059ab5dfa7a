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


def test_map_strategy_runs(speed):
    """--seed-strategies map (the one-seed program called per seed) is a Python loop, not a jitted callable."""
    out = speed.bench_offrl("bc", make_dataset(n=400, episode_len=40), seeds=2, updates=4, chunk=2, strategy="map")
    assert out["strategy"] == "map" and out["updates_per_s_total"] > 0


def test_flop_count_matches_the_networks_arithmetic(speed):
    """BC's deterministic MLP: forward 2·B·sum(in·out) FLOPs, backward about twice that (no input
    gradient at the first layer), plus Adam's elementwise work: XLA's count must land in between."""
    hidden, batch, obs_dim, act_dim = 64, 32, 3, 2
    out = speed.bench_offrl("bc", make_dataset(n=400, obs_dim=obs_dim, act_dim=act_dim, episode_len=40), seeds=1,
                            updates=2, chunk=2, overrides=(f"hidden_dims={hidden},{hidden}", f"batch_size={batch}"))
    macs = obs_dim * hidden + hidden * hidden + hidden * act_dim
    forward = 2 * batch * macs
    params = macs + 2 * hidden + act_dim
    low, high = forward * 3 - 2 * batch * obs_dim * hidden, forward * 3 + 40 * params + 200 * batch
    assert low <= out["gflop_per_update"] * 1e9 <= high
    assert out["gflop_upper_bound"] is False  # no conditional in BC's update
    assert out["gflops"] == pytest.approx(out["gflop_per_update"] * out["updates_per_s_total"])


def test_td3bc_flop_count_is_marked_an_upper_bound(speed):
    """TD3+BC's delayed actor step is a conditional, which XLA counts at its larger branch."""
    out = speed.bench_offrl("td3bc", make_dataset(n=400, episode_len=40), seeds=1, updates=2, chunk=2,
                            overrides=("hidden_dims=16,16", "batch_size=8"))
    assert out["gflop_upper_bound"] is True


def test_matmul_reference_rate(speed):
    rates = speed.matmul_gflops(seconds=0.02)
    assert set(rates) == {"256x256x256", "2048x2048x2048", "peak"}
    assert rates["peak"] == max(rates["256x256x256"], rates["2048x2048x2048"]) > 0

"""``offrl bench``: rows per (dataset, algorithm, library, budget), reuse of stored rows, peers, tables."""

from __future__ import annotations

import base64
import json
import os
import sys

import numpy as np
import pytest

from offrl.bench import SUITES, pool_seed_extensions, read_rows, write_table
from offrl.cli import main

import browser

TINY = ["--datasets", "pendulum-random", "--steps", "200", "--seeds", "2", "--episodes", "2", "--no-progress"]

FAKE_PEER = '''
import argparse, json
p = argparse.ArgumentParser(); p.add_argument("--job"); p.add_argument("--out"); a = p.parse_args()
job = json.load(open(a.job))
assert open(job["dataset_file"], "rb").read(8) == b"\\x89HDF\\r\\n\\x1a\\n"  # the same cached file as ours
json.dump({"per_seed": [10.0 * (s + 1) for s in job["seeds"]], "library_version": "0.0-fake",
           "echo": [job["algo"], job["steps"], job["episodes"], job["env_id"], job["threads"]],
           "overrides": job.get("overrides")}, open(a.out, "w"))
'''


def _fake_peer_project(tmp_path, monkeypatch):
    """A project folder (the working directory) with peer ``fake`` in benchmarks/peers; returns the results folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks" / "peers").mkdir(parents=True)
    (tmp_path / "benchmarks" / "peers" / "fake.py").write_text(FAKE_PEER)
    return tmp_path / "res"


def test_bench_rows_tables_reuse_and_peer(tmp_path, offrl_home, monkeypatch, capsys):
    results = _fake_peer_project(tmp_path, monkeypatch)
    argv = ["bench", "locomotion-cpu", "--algos", "bc", *TINY, "--results", str(results),
            "--peer", "fake", "--peer-python", sys.executable, "--peer-seeds", "2"]
    assert main(argv) == 0
    rows = read_rows(results / "locomotion-cpu")
    assert [(r["algo"], r["library"]) for r in rows] == [("bc", "offrl"), ("bc", "fake")]
    ours, peer = rows
    assert ours["seeds"] == 2 and ours["steps"] == 200 and ours["episodes"] == 2 and len(ours["per_seed"]) == 2
    assert ours["score_mean"] == pytest.approx(np.mean(ours["per_seed"]))
    assert ours["command"].startswith("offrl bench locomotion-cpu") and ours["commit"]
    assert ours["config"]["policy"] == "deterministic" and ours["config"]["batch_size"] == 256  # the defaults it ran with
    assert ours["device"] == f"cpu: cpu, {len(os.sched_getaffinity(0))} cores"  # what its seconds were measured on
    assert "config" not in peer
    assert peer["per_seed"] == [10.0, 20.0] and peer["score_mean"] == 15.0 and peer["score_std"] == 5.0
    assert peer["library_version"] == "0.0-fake"
    assert peer["device"] == "cpu:0, 1 torch thread"  # the peer's threads: --peer-threads, default 1
    assert json.loads((tmp_path / peer["run_dir"] / "result.json").read_text())["echo"][-1] == 1
    from offrl.data import dataset_path
    from offrl.data.integrity import read_checksum

    sha = read_checksum(dataset_path("pendulum-random"))
    assert len(sha) == 64 and ours["dataset_sha256"] == peer["dataset_sha256"] == sha  # the file both trained on
    table = (results / "locomotion-cpu" / "table.md").read_text()
    assert "| pendulum-random |" in table and "15.0 ± 5.0 (2×200)" in table and "bc (fake)" in table
    assert (results / "locomotion-cpu" / "table.png").stat().st_size > 0
    csv_lines = (results / "locomotion-cpu" / "table.csv").read_text().splitlines()
    assert len(csv_lines) == 3

    capsys.readouterr()
    assert main(argv) == 0  # same budget: both rows are reused, nothing is trained again
    assert "stored row reused" in capsys.readouterr().err
    assert len(read_rows(results / "locomotion-cpu")) == 2
    assert main(argv[:6] + ["--steps", "300"] + argv[8:]) == 0  # another budget: a new row beside the old one
    rows = read_rows(results / "locomotion-cpu")
    assert sorted((r["library"], r["steps"]) for r in rows) == [("fake", 200), ("fake", 300), ("offrl", 200), ("offrl", 300)]
    assert main(argv[:6] + ["--steps", "400"] + argv[8:] + ["--peer-threads", "2"]) == 0
    peer = [r for r in read_rows(results / "locomotion-cpu") if r["library"] == "fake" and r["steps"] == 400][0]
    assert peer["device"] == "cpu:0, 2 torch threads"
    assert json.loads((tmp_path / peer["run_dir"] / "result.json").read_text())["echo"][-1] == 2  # the job told the peer


def test_every_row_records_the_commit_read_before_training(tmp_path, offrl_home, monkeypatch):
    import offrl.bench as B

    calls = iter(["abc1234", "def5678", "0000000"])  # a commit made while the first row trains must not label the second
    monkeypatch.setattr(B, "git_commit", lambda: next(calls))
    results = tmp_path / "res"
    assert main(["bench", "locomotion-cpu", "--algos", "bc,percent_bc", "--datasets", "pendulum-random", "--steps", "100",
                 "--seeds", "1", "--episodes", "1", "--no-progress", "--results", str(results)]) == 0
    assert [(r["algo"], r["commit"]) for r in read_rows(results / "locomotion-cpu")] == [("bc", "abc1234"), ("percent_bc", "abc1234")]


def test_bench_rejects_unknown_names(tmp_path, offrl_home, capsys):
    assert main(["bench", "atari", "--results", str(tmp_path)]) == 2
    assert "valid suites: " + ", ".join(SUITES) in capsys.readouterr().err
    assert main(["bench", "locomotion-cpu", "--algos", "iqll", *TINY, "--results", str(tmp_path)]) == 2
    assert "unknown algorithm 'iqll'" in capsys.readouterr().err
    assert main(["bench", "maze-cpu", "--datasets", "maze-nowhere", "--results", str(tmp_path)]) == 2
    assert "unknown datasets ['maze-nowhere']" in capsys.readouterr().err
    assert main(["bench", "locomotion-cpu", "--algos", "bc", *TINY, "--first-seed", "-1", "--results", str(tmp_path)]) == 2
    assert "first_seed = -1 is out of range: must be an int >= 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_first_seed_rows_extend_a_stored_row_and_the_table_pools_them(tmp_path, offrl_home, monkeypatch):
    results = _fake_peer_project(tmp_path, monkeypatch)
    common = ["bench", "locomotion-cpu", "--algos", "bc", "--datasets", "pendulum-random", "--steps", "200",
              "--episodes", "2", "--no-progress", "--results", str(results), "--peer", "fake", "--peer-python", sys.executable]
    assert main(common + ["--seeds", "2", "--peer-seeds", "2"]) == 0
    assert main(common + ["--seeds", "1", "--peer-seeds", "1", "--first-seed", "1"]) == 0  # seed 1 again, alone
    assert main(common + ["--seeds", "1", "--peer-seeds", "1", "--first-seed", "2"]) == 0  # extends seeds 0-1
    rows = read_rows(results / "locomotion-cpu")
    ours = {r["first_seed"]: r for r in rows if r["library"] == "offrl"}
    peer = {r["first_seed"]: r for r in rows if r["library"] == "fake"}
    # Agent i of a run from seed s is the agent of seed s + i: the lone seed-1 run reproduces the pair's second agent.
    assert ours[1]["per_seed"] == [ours[0]["per_seed"][1]]
    assert peer[1]["per_seed"] == [20.0] and peer[2]["per_seed"] == [30.0]  # the peer was given seeds [1] and [2]
    table = (results / "locomotion-cpu" / "table.md").read_text()
    assert "**20.0 ± 8.2** (3×200, pooled)" in table  # 10, 20, 30: seeds 0-1 and seed 2 in one cell, the headline
    assert "20.0 ± 0.0 (1×200, seed 1)" in table  # the overlapping row stays apart
    pooled = ours[0]["per_seed"] + ours[2]["per_seed"]
    assert f"**{np.mean(pooled):.1f} ± {np.std(pooled):.1f}** (3×200, pooled)" in table
    # Rows run with another algorithm config are not pooled.
    other = {**ours[2], "config": {**ours[2]["config"], "batch_size": 64}}
    assert [r["seeds"] for r in pool_seed_extensions([ours[0], other])] == [2, 1]
    assert [r["seeds"] for r in pool_seed_extensions([ours[0], ours[2]])] == [3]
    # Rows trained on other arrays under the same dataset name are not pooled; a row without a checksum may be.
    remade = {**ours[2], "dataset_sha256": "0" * 64}
    assert [r["seeds"] for r in pool_seed_extensions([ours[0], remade])] == [2, 1]
    unknown = {k: v for k, v in ours[2].items() if k != "dataset_sha256"}
    assert [r["seeds"] for r in pool_seed_extensions([ours[0], unknown])] == [3]


def test_mean_row_and_chart_use_each_cells_row_with_most_seeds(tmp_path):
    def row(dataset, seeds, steps, score):
        return {"suite": "x", "dataset": dataset, "algo": "iql", "library": "offrl", "seeds": seeds, "steps": steps,
                "episodes": 10, "score_mean": score, "score_std": 0.0, "per_seed": [score] * seeds, "commit": "c"}

    folder = tmp_path / "x"
    folder.mkdir()
    rows = [row("a", 3, 50, 10.0), row("a", 1, 100, 99.0), row("b", 3, 100, 30.0), row("b", 3, 50, 99.0)]
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = write_table(folder, "x").read_text()
    assert table.splitlines()[-1].endswith("| 20.0 |")  # a: 3 seeds beat 1 seed at more updates; b: 100 beats 50


def test_set_overrides_are_part_of_a_rows_identity(tmp_path, offrl_home, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "res"
    argv = ["bench", "locomotion-cpu", "--algos", "bc", "--datasets", "pendulum-random", "--steps", "100", "--seeds", "1",
            "--episodes", "1", "--no-progress", "--results", str(results)]
    assert main(argv) == 0
    assert main(argv + ["--set", "batch_size=64", "hidden_dims=32,32"]) == 0  # another config: not the stored row
    capsys.readouterr()
    assert main(argv + ["--set", "batch_size=64", "hidden_dims=32,32"]) == 0  # the same config again: reused
    assert "stored row reused" in capsys.readouterr().err
    rows = read_rows(results / "locomotion-cpu")
    assert len(rows) == 2
    default, changed = rows
    assert default["config"]["batch_size"] == 256 and changed["config"]["batch_size"] == 64
    assert changed["config"]["hidden_dims"] == [32, 32]
    assert default["run_dir"] != changed["run_dir"]  # each config keeps its own run folder
    table = (results / "locomotion-cpu" / "table.md").read_text()
    assert "(1×100, batch_size=64, hidden_dims=[32, 32])" in table  # the fields that differ from the defaults
    assert f"**{default['score_mean']:.1f} ± 0.0** (1×100)" in table  # the headline: today's defaults
    # A row stored without its config (older rows) is never taken for today's defaults.
    legacy = {k: v for k, v in default.items() if k != "config"}
    (results / "locomotion-cpu" / "rows.jsonl").write_text(json.dumps(legacy) + "\n")
    capsys.readouterr()
    assert main(argv) == 0
    assert "stored row reused" not in capsys.readouterr().err and len(read_rows(results / "locomotion-cpu")) == 2
    # Bad overrides are clear errors before any training.
    # A flag takes true/false like any other field (tyro's --x / --no-x underneath).
    from offrl.bench import algo_config
    assert algo_config("rebrac", ("layer_norm_after_activation=true", "critic_layer_norm=False")).layer_norm_after_activation
    assert not algo_config("rebrac", ("critic_layer_norm=false",)).critic_layer_norm
    assert algo_config("rebrac", ("critic_layer_norm=1",)).critic_layer_norm
    with pytest.raises(ValueError, match="critic_layer_norm is true or false"):
        algo_config("rebrac", ("critic_layer_norm=maybe",))
    for bad, message in [(["beta=3"], "bc has no field 'beta'"), (["batch_size"], "expected FIELD=VALUE"),
                         (["batch_size=many"], "--set batch_size=many: --batch-size: invalid literal for int()"),
                         (["batch_size=0"], "bc.Config.batch_size = 0 is out of range: must be an int >= 1")]:
        assert main(argv + ["--set", *bad]) == 2
        assert message in capsys.readouterr().err
    assert len(read_rows(results / "locomotion-cpu")) == 2


def test_headline_prefers_rows_run_with_todays_defaults(tmp_path):
    from offrl.bench import _defaults

    defaults = _defaults("iql")

    def row(seeds, score, config):
        return {"suite": "x", "dataset": "a", "algo": "iql", "library": "offrl", "seeds": seeds, "steps": 100,
                "episodes": 10, "score_mean": score, "score_std": 0.0, "per_seed": [score] * seeds, "commit": "c",
                **({} if config is None else {"config": config})}

    folder = tmp_path / "x"
    folder.mkdir()
    other = {**defaults, "beta": 10.0}
    rows = [row(5, 1.0, other), row(3, 2.0, None), row(2, 3.0, defaults)]
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_table(folder, "x")
    assert len((folder / "table.csv").read_text().splitlines()) == 4
    table = (folder / "table.md").read_text()
    assert "1.0 ± 0.0 (5×100, beta=10.0)" in table and "2.0 ± 0.0 (3×100)" in table and "**3.0 ± 0.0** (2×100)" in table
    from offrl.bench import _headline
    assert _headline(rows)["score_mean"] == 3.0  # today's defaults beat more seeds of another config
    assert _headline(rows[:2])["score_mean"] == 2.0  # an unrecorded config beats a known different one


def test_discrete_suite_runs_its_own_algorithms_by_default(tmp_path, offrl_home):
    """``offrl bench discrete-cpu`` with no ``--algos`` runs the discrete-action algorithms on CartPole data."""
    results = tmp_path / "res"
    argv = ["bench", "discrete-cpu", "--datasets", "cartpole-medium", "--steps", "20", "--seeds", "1", "--episodes", "1",
            "--no-progress", "--results", str(results)]
    assert main(argv) == 0
    rows = read_rows(results / "discrete-cpu")
    assert [r["algo"] for r in rows] == list(SUITES["discrete-cpu"].algos)
    assert {"bc_discrete", "dqn_offline", "cql_discrete", "iql_discrete"} == set(SUITES["discrete-cpu"].algos)
    assert all(r["dataset"] == "cartpole-medium" and len(r["per_seed"]) == 1 and np.isfinite(r["score_mean"]) for r in rows)


def test_merge_adds_the_rows_this_store_lacks_once(tmp_path, capsys):
    """Rows written on another machine (``--results`` there) join the store; merging again adds nothing."""
    def row(dataset, algo, score, suite="locomotion-cpu"):
        return {"suite": suite, "dataset": dataset, "algo": algo, "library": "offrl", "seeds": 2, "steps": 100,
                "episodes": 10, "first_seed": 0, "score_mean": score, "score_std": 0.0, "per_seed": [score, score],
                "commit": "c", "date": "2026-11-27 10:00", "device": "gpu: H100"}

    results = tmp_path / "res"
    store = results / "locomotion-cpu"
    store.mkdir(parents=True)
    (store / "rows.jsonl").write_text(json.dumps(row("a", "bcq", 10.0)) + "\n")
    other = tmp_path / "device_rows.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in [row("a", "bcq", 10.0), row("a", "bear", 20.0), row("b", "bcq", 30.0)]))
    argv = ["bench", "locomotion-cpu", "--results", str(results), "--merge", str(other)]
    assert main(argv) == 0
    assert "merged 2 new row(s)" in capsys.readouterr().err
    assert [(r["dataset"], r["algo"]) for r in read_rows(store)] == [("a", "bcq"), ("a", "bear"), ("b", "bcq")]
    assert "20.0 ± 0.0 (2×100)" in (store / "table.md").read_text()
    assert main(argv) == 0 and "merged 0 new row(s)" in capsys.readouterr().err
    assert len(read_rows(store)) == 3

    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps(row("a", "iql", 1.0)) + "\n" + json.dumps(row("a", "bc", 1.0, suite="maze-cpu")) + "\n")
    assert main(["bench", "locomotion-cpu", "--results", str(results), "--merge", str(wrong)]) == 2
    assert "line 2: a row of suite 'maze-cpu'" in capsys.readouterr().err
    truncated = tmp_path / "cut.jsonl"
    truncated.write_text(json.dumps(row("c", "iql", 1.0))[:40])
    assert main(["bench", "locomotion-cpu", "--results", str(results), "--merge", str(truncated)]) == 2
    assert "line 1: not JSON" in capsys.readouterr().err
    assert main(["bench", "locomotion-cpu", "--results", str(results), "--merge", str(tmp_path / "nope.jsonl")]) == 2
    assert len(read_rows(store)) == 3  # nothing added by the bad files


def test_peer_set_reaches_the_peer_and_is_part_of_its_rows_identity(tmp_path, offrl_home, monkeypatch, capsys):
    results = _fake_peer_project(tmp_path, monkeypatch)
    argv = ["bench", "locomotion-cpu", "--algos", "bc", "--datasets", "pendulum-random", "--steps", "100", "--seeds", "1",
            "--episodes", "1", "--no-progress", "--results", str(results), "--peer", "fake", "--peer-python", sys.executable]
    assert main(argv) == 0
    assert main(argv + ["--peer-set", "n_action_samples=10", "kernel=gaussian"]) == 0  # another peer config: a new row
    rows = read_rows(results / "locomotion-cpu")
    peers = [r for r in rows if r["library"] == "fake"]
    assert len(rows) == 3 and len(peers) == 2  # ours ran once: --peer-set does not change our row
    assert "peer_overrides" not in peers[0]
    assert peers[1]["peer_overrides"] == {"n_action_samples": 10, "kernel": "gaussian"}  # JSON values, else strings
    sent = json.loads((tmp_path / peers[1]["run_dir"] / "result.json").read_text())["overrides"]
    assert sent == {"n_action_samples": 10, "kernel": "gaussian"}  # the job told the peer
    assert peers[0]["run_dir"] != peers[1]["run_dir"]
    table = (results / "locomotion-cpu" / "table.md").read_text()
    assert "(1×100, kernel=gaussian, n_action_samples=10)" in table
    capsys.readouterr()
    assert main(argv + ["--peer-set", "n_action_samples=10", "kernel=gaussian"]) == 0  # the same again: reused
    assert "stored row reused" in capsys.readouterr().err
    assert len(read_rows(results / "locomotion-cpu")) == 3
    assert main(argv[:-4] + ["--peer-set", "n_action_samples=10"]) == 2  # no --peer: nothing to change
    assert "--peer-set changes a peer's config: name the peer with --peer NAME" in capsys.readouterr().err
    assert main(argv + ["--peer-set", "n_action_samples"]) == 2
    assert "expected FIELD=VALUE" in capsys.readouterr().err


def test_peer_only_runs_the_peers_rows_and_not_ours(tmp_path, offrl_home, monkeypatch, capsys):
    results = _fake_peer_project(tmp_path, monkeypatch)
    argv = ["bench", "locomotion-cpu", "--algos", "bc", "--datasets", "pendulum-random", "--steps", "100", "--seeds", "1",
            "--episodes", "1", "--no-progress", "--results", str(results)]
    assert main(argv + ["--peer-only"]) == 2  # nothing to run
    assert "--peer-only runs only a peer's rows: name the peer with --peer NAME" in capsys.readouterr().err
    peer = ["--peer", "fake", "--peer-python", sys.executable, "--peer-only"]
    assert main(argv + peer) == 0
    assert [(r["algo"], r["library"]) for r in read_rows(results / "locomotion-cpu")] == [("bc", "fake")]
    assert main(argv) == 0  # ours later, in the same store: the peer row stays, ours is added
    assert sorted(r["library"] for r in read_rows(results / "locomotion-cpu")) == ["fake", "offrl"]
    capsys.readouterr()
    assert main(argv + peer) == 0  # the peer's row is stored: reused, and ours is not trained again
    assert "stored row reused" in capsys.readouterr().err
    assert len(read_rows(results / "locomotion-cpu")) == 2


def _synthetic_rows(folder):
    """Rows of two datasets: iql with two budgets on `a` and a peer's iql, bc only on `a`, td3bc on both."""
    def row(dataset, algo, score, seeds=3, steps=100, library="offrl"):
        return {"suite": "x", "dataset": dataset, "algo": algo, "library": library, "seeds": seeds, "steps": steps,
                "episodes": 10, "first_seed": 0, "score_mean": score, "score_std": 1.5, "per_seed": [score] * seeds,
                "commit": "c", "date": "2026-12-01 10:00", "device": "cpu"}

    rows = [row("a", "iql", 60.0), row("a", "iql", 90.0, seeds=1, steps=200), row("b", "iql", 70.0),
            row("a", "iql", 55.0, seeds=1, library="d3rlpy"), row("b", "iql", 65.0, seeds=1, library="d3rlpy"),
            row("a", "bc", 30.0), row("a", "td3bc", 50.0), row("b", "td3bc", -4.0)]
    folder.mkdir(parents=True)
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_bench_chart_has_a_panel_per_dataset_and_a_colour_per_algorithm(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    from offrl.bench import _lighter, algo_colours, draw_chart

    many = [f"algo{i}" for i in range(30)]
    for n in (3, 13, 20, 30):
        assert len(set(algo_colours(many[:n]).values())) == n  # never the same colour twice
    folder = tmp_path / "x"
    _synthetic_rows(folder)
    write_table(folder, "x")
    fig = draw_chart(pool_seed_extensions(read_rows(folder)), "x")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["a", "b"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["bc", "iql", "iql (d3rlpy)", "td3bc"]  # peer beside
    plt.close(fig)
    # In the PNG each algorithm's bars are its own colour, its peer's bars the lighter shade of it.
    from PIL import Image

    png = np.asarray(Image.open(folder / "table.png").convert("RGB")).astype(int)
    assert png.shape[1] <= 1600
    colours = algo_colours(["bc", "iql", "td3bc"])

    def pixels(rgb):
        return int(np.all(np.abs(png - np.round(np.array(rgb) * 255)) <= 1, axis=-1).sum())

    for algo in ("bc", "iql", "td3bc"):
        assert pixels(to_rgb(colours[algo])) > 500, algo
    assert pixels(_lighter(colours["iql"])) > 100  # hatched: part of the bar is the hatch lines


def test_bench_html_page_in_a_headless_browser(tmp_path):
    """``table.html``: self-contained, one cell per (algorithm, dataset) with the mean row's choice of row, every
    row in a details section; a browser renders it without console errors and shows the chart and the table."""
    folder = tmp_path / "x"
    rows = _synthetic_rows(folder)
    write_table(folder, "x", html=True)
    source = (folder / "table.html").read_text()
    parts = browser.assert_self_contained(source)
    assert len(parts.images) == 1
    assert parts.images[0] == "data:image/png;base64," + base64.b64encode((folder / "table.png").read_bytes()).decode()
    chart = browser.png_image(parts.images[0])
    assert chart.shape[1] <= 1600
    scores, every = parts.tables
    assert scores == [["algorithm", "a", "b", "mean"],
                      ["bc", "30.0 ± 1.5", "–", "–"],
                      ["iql", "60.0 ± 1.5 (+1)", "70.0 ± 1.5", "65.0"],  # a: 3 seeds beat 1 seed at more updates
                      ["iql (d3rlpy)", "55.0 ± 1.5", "65.0 ± 1.5", "60.0"],
                      ["td3bc", "50.0 ± 1.5", "-4.0 ± 1.5", "23.0"]]
    md_mean = (folder / "table.md").read_text().splitlines()[-1]
    assert md_mean.endswith("| – | 65.0 | 23.0 | 60.0 |")  # the Markdown's mean row agrees (bc, iql, td3bc, iql (d3rlpy))
    assert len(every) == 1 + len(rows) and every[0][:4] == ["algorithm", "dataset", "score", "budget (seeds × updates, …)"]
    assert ["iql", "a", "90.0 ± 1.5", "1×200"] in [r[:4] for r in every]  # the other budget, in the details

    shown = browser.render(folder / "table.html", tmp_path / "browser", width=1400, height=1400)
    assert shown.console == []
    rendered = browser.parse(shown.dom)
    assert rendered.tables == parts.tables and rendered.images == parts.images
    where = browser.locate(shown.screenshot, chart)  # the chart, pixel for pixel at its own size
    assert where is not None, "the chart is not on the screenshot"
    below = shown.screenshot[where[0] + chart.shape[0]:where[0] + chart.shape[0] + 250]
    assert browser.ink_share(below) > 0.03  # the table under it


def test_redraw_trains_nothing_and_writes_the_page(tmp_path, capsys):
    rows = _synthetic_rows(tmp_path / "res" / "locomotion-cpu")
    argv = ["bench", "locomotion-cpu", "--redraw", "--html", "--results", str(tmp_path / "res")]
    assert main(argv) == 0
    folder = tmp_path / "res" / "locomotion-cpu"
    assert sorted(p.name for p in folder.iterdir()) == ["rows.jsonl", "table.csv", "table.html", "table.md", "table.png"]
    assert read_rows(folder) == rows and "| a | 30.0 ± 1.5 (3×100) |" in capsys.readouterr().out
    assert main(["bench", "maze-cpu", "--redraw", "--results", str(tmp_path / "res")]) == 2
    assert "--redraw: " in capsys.readouterr().err and not (tmp_path / "res" / "maze-cpu").exists()

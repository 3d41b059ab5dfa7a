"""End-to-end runs of the `offrl` command line, as a user types it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from offrl.algos import list_algos


def run_cli(*args, env_home, timeout=300):
    env = {**os.environ, "OFFRL_HOME": str(env_home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "offrl", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("offrl_home")


@pytest.fixture(scope="module")
def trained_run(home, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "bc-run"
    proc = run_cli("train", "bc", "--dataset", "pendulum-mixed", "--steps", "200", "--chunk", "100",
                   "--eval-interval", "100", "--eval-episodes", "2", "--seeds", "2", "--run-dir", str(run_dir),
                   env_home=home)  # progress on: stderr is a pipe, so it comes as plain lines
    assert proc.returncode == 0, proc.stderr
    return run_dir, proc


def test_train_writes_metrics_plot_checkpoint_and_score(trained_run):
    run_dir, proc = trained_run
    for name in ("train.jsonl", "train.csv", "eval.jsonl", "eval.csv", "curves.png", "checkpoint.msgpack", "config.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert "normalised score" in proc.stdout
    assert "bc on pendulum-mixed: 200/200 updates (100%)" in proc.stderr, proc.stderr  # the closing progress line
    with (run_dir / "eval.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [100, 200]
    assert all(-50.0 < float(r["normalized_score"]) < 150.0 for r in rows)
    last = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])
    assert len(last["per_seed_scores"]) == 2
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_checkpoint(trained_run, home):
    run_dir, _ = trained_run
    proc = run_cli("eval", str(run_dir), "--episodes", "2", env_home=home)
    assert proc.returncode == 0, proc.stderr
    assert "normalised score" in proc.stdout and "Pendulum-v1" in proc.stdout


def test_resume_of_a_finished_run_changes_nothing(trained_run, home):
    run_dir, _ = trained_run
    before = (run_dir / "checkpoint.msgpack").read_bytes()
    evals_before = (run_dir / "eval.jsonl").read_text()
    proc = run_cli("train", "--resume", str(run_dir), "--no-progress", env_home=home)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "checkpoint.msgpack").read_bytes() == before
    assert (run_dir / "eval.jsonl").read_text() == evals_before  # no second final evaluation


def test_algos_lists_each_with_description(home):
    proc = run_cli("algos", env_home=home)
    assert proc.returncode == 0
    for name in ("bc", "td3bc", "iql"):
        assert name in proc.stdout
    assert "Implicit Q-Learning" in proc.stdout


def test_data_help_lists_its_subcommands(home):
    proc = run_cli("data", "--help", env_home=home)
    assert proc.returncode == 0, proc.stderr
    for sub in ("list", "make NAME", "info NAME", "plot NAME"):
        assert sub in proc.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "nosuch"], "valid algorithms: " + ", ".join(list_algos())),
        (["train", "bc", "--dataset", "nosuch-data"], "pendulum-mixed"),
        (["train", "iql", "--algo.expectil", "0.9"], "did you mean --algo.expectile"),
        (["train", "iql", "--stepz", "3"], "valid options: --dataset, --steps"),
        (["eval", "/nonexistent/run"], "no checkpoint"),
        (["frobnicate"], "valid commands: train, eval, algos, data, zoo, bench, sweep, report, finetune, export, dynamics, ope"),
    ],
)
def test_bad_input_gets_a_clear_message_not_a_traceback(args, expected, home):
    proc = run_cli(*args, env_home=home)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_data_make_is_byte_identical_and_info_plot_read_it(home, tmp_path):
    a, b = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    for path in (a, b):
        proc = run_cli("data", "make", "pendulum-random", "--size", "1000", "--seed", "3", "--out", str(path), env_home=home)
        assert proc.returncode == 0, proc.stderr
    assert a.read_bytes() == b.read_bytes()
    other = tmp_path / "c.hdf5"
    assert run_cli("data", "make", "pendulum-random", "--size", "1000", "--seed", "4", "--out", str(other), env_home=home).returncode == 0
    assert other.read_bytes() != a.read_bytes()
    info = run_cli("data", "info", str(a), env_home=home)
    assert info.returncode == 0, info.stderr
    assert "1000" in info.stdout and "Pendulum-v1" in info.stdout
    png = tmp_path / "returns.png"
    plot = run_cli("data", "plot", str(a), "--out", str(png), env_home=home)
    assert plot.returncode == 0, plot.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

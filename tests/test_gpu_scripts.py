"""benchmarks/gpu/rows.sh (the bench rows run on a GPU machine) checked on the CPU with its smoke job
set, and its rows merged into a store as they would be after a device call."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from offrl.bench import read_rows
from offrl.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_rows_script_smoke_set_writes_rows_that_merge(tmp_path, capsys):
    out, results = tmp_path / "out", tmp_path / "device-rows"
    env = {**os.environ, "OUT": str(out), "RESULTS": str(results), "OFFRL_HOME": str(tmp_path / "home"),
           "PYTHON": sys.executable, "WHL": "none"}
    done = subprocess.run(["bash", "benchmarks/gpu/rows.sh", "smoke"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exit 0" in done.stdout
    rows = [json.loads(line) for line in (out / "rows-locomotion-cpu.jsonl").read_text().splitlines()]
    assert [(r["algo"], r["dataset"], r["seeds"], r["steps"]) for r in rows] == [("bc", "pendulum-random", 1, 300)]
    assert rows[0]["device"].startswith("cpu") and len(rows[0]["dataset_sha256"]) == 64
    assert (out / "smoke.log").is_file() and (out / "data-pendulum-random.log").is_file()

    store = tmp_path / "store"
    assert main(["bench", "locomotion-cpu", "--results", str(store), "--merge", str(out / "rows-locomotion-cpu.jsonl")]) == 0
    assert read_rows(store / "locomotion-cpu") == rows
    assert "| pendulum-random |" in (store / "locomotion-cpu" / "table.md").read_text()

    bad = subprocess.run(["bash", "benchmarks/gpu/rows.sh", "nonsense"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "unknown job set nonsense" in bad.stdout


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash and tar")
def test_lanes_script_runs_lanes_and_packs_rows_that_merge(tmp_path):
    import tarfile

    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "ROOT": str(tmp_path / "lanes"), "OFFRL_HOME": str(tmp_path / "home"),
           "PYTHON": sys.executable, "WHL": "none", "LIMIT_S": "300"}
    done = subprocess.run(["bash", "benchmarks/gpu/lanes.sh", "smoke"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke exit 0" in done.stdout and "dataset pendulum-random made" in done.stdout
    with tarfile.open(out / "lanes.tgz") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "back", filter="data")
    assert "res/smoke/locomotion-cpu/rows.jsonl" in names and "logs/smoke.log" in names
    assert not [n for n in names if n.endswith(".msgpack")]  # no checkpoints travel back
    rows = read_rows(tmp_path / "back" / "res" / "smoke" / "locomotion-cpu")
    assert [(r["algo"], r["dataset"], r["seeds"], r["steps"]) for r in rows] == [("bc", "pendulum-random", 1, 300)]
    store = tmp_path / "store"
    assert main(["bench", "locomotion-cpu", "--results", str(store), "--merge",
                 str(tmp_path / "back" / "res" / "smoke" / "locomotion-cpu" / "rows.jsonl")]) == 0
    assert read_rows(store / "locomotion-cpu") == rows

    bad = subprocess.run(["bash", "benchmarks/gpu/lanes.sh", "smoke,nonsense"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "unknown job nonsense" in bad.stdout
    assert not (tmp_path / "lanes" / "res" / "nonsense").exists()

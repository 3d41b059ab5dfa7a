"""Run outputs a user can open: JSONL/CSV metrics, the learning-curve PNG, TensorBoard events."""

from __future__ import annotations

import csv
import json

import numpy as np

import offrl
from offrl.logger import RunLogger, read_jsonl

from conftest import small_config


def test_train_metrics_are_chunk_averages_in_jsonl_and_csv(dataset, tmp_path):
    algo = offrl.algos.get_algo("td3bc")
    result = offrl.fit(small_config(algo), dataset, steps=30, chunk=10, run_dir=tmp_path / "r",
                       progress=False, evaluate_at_end=False, tensorboard=True)
    rows = read_jsonl(result.run_dir / "train.jsonl")
    assert [r["step"] for r in rows] == [10, 20, 30]
    for row in rows:
        # the actor is updated every 2nd step only: its NaN placeholders must not leak into the average
        assert np.isfinite(row["actor_loss"]) and np.isfinite(row["critic_loss"]) and row["updates_per_s"] > 0
    with (result.run_dir / "train.csv").open() as f:
        csv_rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in csv_rows] == [10, 20, 30]
    assert float(csv_rows[-1]["critic_loss"]) == rows[-1]["critic_loss"]
    assert (result.run_dir / "curves.png").stat().st_size > 1000
    events = list((result.run_dir / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_logger_resume_drops_rows_after_the_checkpoint(tmp_path):
    log = RunLogger(tmp_path)
    for step in (10, 20, 30):
        log.log("train", {"step": step, "loss": float(step)})
    log.log("eval", {"step": 30, "return_mean": 1.0, "per_seed_returns": [1.0]})
    log.close()
    with (tmp_path / "train.jsonl").open("a") as f:
        f.write('{"step": 40, "lo')  # a line cut by a kill
    RunLogger(tmp_path, resume_step=20).close()
    assert [r["step"] for r in read_jsonl(tmp_path / "train.jsonl")] == [10, 20]
    assert read_jsonl(tmp_path / "eval.jsonl") == []
    with (tmp_path / "train.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [10, 20]


def test_non_finite_values_are_written_as_null(tmp_path):
    log = RunLogger(tmp_path)
    log.log("train", {"step": 1, "loss": float("nan")})
    assert json.loads((tmp_path / "train.jsonl").read_text())["loss"] is None

"""A killed run resumed from its last checkpoint ends with exactly the parameters of an uninterrupted one."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import offrl
import offrl.train as train_module
from offrl.checkpoint import CheckpointError, load_checkpoint

from conftest import small_config


class Killed(Exception):
    pass


@pytest.mark.parametrize("name", ["iql", "td3bc"])
def test_kill_and_resume_equals_uninterrupted(name, dataset, tmp_path, monkeypatch):
    algo = offrl.algos.get_algo(name)
    config = small_config(algo)
    kwargs = dict(steps=60, seeds=2, chunk=10, checkpoint_interval=20, progress=False, plot=False, evaluate_at_end=False)
    full = offrl.fit(config, dataset, run_dir=tmp_path / "full", **kwargs)

    real_save = train_module.save_checkpoint

    def save_then_die(path, state_dict, keys, meta):
        real_save(path, state_dict, keys, meta)
        if meta["step"] == 40:
            raise Killed  # the process dies right after the step-40 checkpoint

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        offrl.fit(config, dataset, run_dir=tmp_path / "killed", **kwargs)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "killed")[2]["step"] == 40

    resumed = offrl.fit(None, dataset, resume=tmp_path / "killed", progress=False, plot=False, evaluate_at_end=False)
    assert resumed.step == 60
    for a, b in zip(jax.tree.leaves(full.states), jax.tree.leaves(resumed.states)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the logs hold each chunk once, as if never interrupted
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "train.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 61, 10))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    bad = tmp_path / "checkpoint.msgpack"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(bad)
    bad.write_bytes(b"\x85\xa6format\xb0offrl-checkpoint\xaemeta")  # truncated payload
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)
    bad.write_bytes(b"\x81\xa1a\x01")  # valid msgpack, not ours
    with pytest.raises(CheckpointError, match="not an offrl checkpoint"):
        load_checkpoint(bad)


def test_checkpoint_is_written_atomically(dataset, tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous checkpoint intact and no partial file."""
    algo = offrl.algos.get_algo("bc")
    result = offrl.fit(small_config(algo), dataset, steps=20, chunk=10, run_dir=tmp_path / "r",
                       progress=False, plot=False, evaluate_at_end=False)
    before = (result.run_dir / "checkpoint.msgpack").read_bytes()

    import offrl.checkpoint as ckpt

    def exploding_fsync(fd):
        raise OSError("disk died")

    monkeypatch.setattr(ckpt.os, "fsync", exploding_fsync)
    with pytest.raises(OSError, match="disk died"):
        ckpt.save_checkpoint(result.run_dir / "checkpoint.msgpack", {"x": np.zeros(3)}, np.zeros(2), {"step": 99})
    assert (result.run_dir / "checkpoint.msgpack").read_bytes() == before
    assert [p.name for p in result.run_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_diverged_training_stops_with_a_clear_error_before_checkpointing_it(dataset, tmp_path, capsys):
    """Adam with lr 1e30 sends BC's weights to ~1e30 in one update and its loss to Inf then NaN. The
    run stops at the first chunk whose state is not finite, naming the seeds, before writing a
    checkpoint from it; the same loop with a sane learning rate runs through."""
    from offrl.algos import bc
    from offrl.cli import main
    from offrl.train import TrainingDivergedError

    good = dict(steps=60, chunk=20, checkpoint_interval=20, progress=False, plot=False, evaluate_at_end=False)
    result = offrl.fit(bc.Config(), dataset, run_dir=tmp_path / "ok", **good)  # the same loop, finite: no error
    assert result.step == 60
    with pytest.raises(TrainingDivergedError, match=r"seed index \[0, 1\] \(of 2\) holds NaN or Inf after update 20"):
        offrl.fit(bc.Config(actor_lr=1e30), dataset, seeds=2, run_dir=tmp_path / "bad", **good)
    assert not (tmp_path / "bad" / "checkpoint.msgpack").exists()  # nothing written from a NaN state

    # the CLI reports it as an error (exit 2), not a traceback
    dataset.save_hdf5(tmp_path / "d.hdf5")
    code = main(["train", "bc", "--dataset", str(tmp_path / "d.hdf5"), "--steps", "60", "--chunk", "20",
                 "--checkpoint-interval", "20", "--run-dir", str(tmp_path / "cli"), "--algo.actor-lr", "1e30", "--no-progress"])
    assert code == 2 and "training diverged" in capsys.readouterr().err

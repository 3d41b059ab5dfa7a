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

    def save_then_die(path, state_dict, keys, meta, **kwargs):
        real_save(path, state_dict, keys, meta, **kwargs)
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


def _flip_middle(path, n=64):
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + n] = bytes(b ^ 0xFF for b in raw[mid:mid + n])
    path.write_bytes(bytes(raw))


def _small_checkpoint(path, step=7):
    from offrl.checkpoint import save_checkpoint

    rng = np.random.default_rng(0)
    state = {"actor": {"w": rng.normal(size=(64, 64)).astype(np.float32), "b": np.zeros(64, np.float32)}}
    return save_checkpoint(path, state, np.arange(4, dtype=np.uint32).reshape(2, 2), {"step": step}), state


def test_checkpoint_with_flipped_bytes_is_refused(tmp_path):
    from offrl.checkpoint import CheckpointCorruptError

    path, state = _small_checkpoint(tmp_path / "checkpoint.msgpack")
    loaded, keys, meta = load_checkpoint(path)  # intact: loads as written
    np.testing.assert_array_equal(loaded["actor"]["w"], state["actor"]["w"])
    assert meta == {"step": 7} and keys.tolist() == [[0, 1], [2, 3]]
    _flip_middle(path)
    with pytest.raises(CheckpointCorruptError, match=r"do not match the sha256") as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "restore it from a copy or retrain" in message and "\n" not in message
    assert isinstance(err.value, ValueError)  # a user error: the CLI reports it in one line


@pytest.mark.parametrize("keep", [0.5, 0.99, 10])
def test_truncated_checkpoint_is_refused(tmp_path, keep):
    from offrl.checkpoint import CheckpointCorruptError

    path, _ = _small_checkpoint(tmp_path / "checkpoint.msgpack")
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep) if keep < 1 else keep])
    with pytest.raises(CheckpointCorruptError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_version_1_checkpoint_without_checksum_still_loads(tmp_path):
    """Files written before the checksum (format_version 1, arrays at the top level) load unverified."""
    from flax import serialization

    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    payload = {"format": "offrl-checkpoint", "format_version": 1, "meta": json.dumps({"step": 3}),
               "state": {"w": w}, "keys": np.zeros((1, 2), np.uint32)}
    (tmp_path / "checkpoint.msgpack").write_bytes(serialization.msgpack_serialize(payload))
    state, keys, meta = load_checkpoint(tmp_path)
    np.testing.assert_array_equal(state["w"], w)
    assert meta == {"step": 3} and keys.shape == (1, 2)


def test_eval_of_a_corrupt_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    from offrl.cli import main

    path, _ = _small_checkpoint(tmp_path / "checkpoint.msgpack")
    _flip_middle(path)
    assert main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and str(path) in err and "Traceback" not in err and err.count("\n") == 1


def test_resume_falls_back_to_the_previous_checkpoint_when_the_latest_is_corrupt(dataset, tmp_path, monkeypatch, caplog):
    """Each checkpoint keeps the one it replaces; a run killed after its step-40 checkpoint, whose
    checkpoint is then damaged, resumes from step 20 (with a warning) and still ends with the
    parameters of an uninterrupted run."""
    algo = offrl.algos.get_algo("iql")
    config = small_config(algo)
    kwargs = dict(steps=60, seeds=2, chunk=10, checkpoint_interval=20, progress=False, plot=False, evaluate_at_end=False)
    full = offrl.fit(config, dataset, run_dir=tmp_path / "full", **kwargs)
    assert load_checkpoint(tmp_path / "full" / "checkpoint.prev.msgpack")[2]["step"] == 40

    real_save = train_module.save_checkpoint

    def save_then_die(path, state_dict, keys, meta, **kw):
        real_save(path, state_dict, keys, meta, **kw)
        if meta["step"] == 40:
            raise Killed

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        offrl.fit(config, dataset, run_dir=tmp_path / "killed", **kwargs)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    run = tmp_path / "killed"
    assert load_checkpoint(run / "checkpoint.prev.msgpack")[2]["step"] == 20
    _flip_middle(run / "checkpoint.msgpack")

    with caplog.at_level("WARNING", logger="offrl"):
        resumed = offrl.fit(None, dataset, resume=run, progress=False, plot=False, evaluate_at_end=False)
    assert "resuming from the previous checkpoint" in caplog.text and "step 20" in caplog.text
    assert resumed.step == 60
    for a, b in zip(jax.tree.leaves(full.states), jax.tree.leaves(resumed.states)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the damaged file was not kept as the previous one: the run ends with good step-60 and step-40 files
    assert load_checkpoint(run)[2]["step"] == 60
    assert load_checkpoint(run / "checkpoint.prev.msgpack")[2]["step"] == 40
    steps = [json.loads(line)["step"] for line in (run / "train.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 61, 10))


def test_resume_without_a_good_checkpoint_names_the_damaged_file(tmp_path):
    from offrl.checkpoint import CheckpointCorruptError, load_checkpoint_or_previous

    path, _ = _small_checkpoint(tmp_path / "checkpoint.msgpack")
    _flip_middle(path)
    with pytest.raises(CheckpointCorruptError, match="checkpoint.msgpack is corrupt"):
        load_checkpoint_or_previous(tmp_path)
    _small_checkpoint(tmp_path / "checkpoint.prev.msgpack", step=5)
    _flip_middle(tmp_path / "checkpoint.prev.msgpack")  # both damaged: the latest file's error
    with pytest.raises(CheckpointCorruptError, match=r"checkpoint.msgpack is corrupt.*falls back to checkpoint.prev.msgpack"):
        load_checkpoint_or_previous(tmp_path)

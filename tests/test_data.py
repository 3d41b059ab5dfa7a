"""Dataset validation, derived episode quantities, loaders and atomic writers."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from offrl.data import Dataset, DatasetError, DatasetInfo
from offrl.data import dataset as dataset_module


def make_arrays(n: int = 10, obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> dict:
    """Two full episodes (terminal at 3, timeout at the end) with explicit next observations."""
    rng = np.random.default_rng(seed)
    terminals = np.zeros(n)
    timeouts = np.zeros(n)
    terminals[3] = 1
    timeouts[-1] = 1
    return {
        "observations": rng.normal(size=(n, obs_dim)),
        "actions": rng.uniform(-1, 1, size=(n, act_dim)),
        "rewards": rng.normal(size=n),
        "terminals": terminals,
        "timeouts": timeouts,
        "next_observations": rng.normal(size=(n, obs_dim)),
    }


def assert_same(a: Dataset, b: Dataset) -> None:
    for key, arr in a.arrays().items():
        np.testing.assert_array_equal(arr, getattr(b, key), err_msg=key)
    assert a.info == b.info


# -- construction & derived quantities ---------------------------------------------------------


def test_from_arrays_converts_to_read_only_float32():
    arrays = make_arrays()
    arrays["rewards"] = arrays["rewards"][:, None]  # (N, 1) accepted
    arrays["terminals"] = arrays["terminals"].astype(bool)
    ds = Dataset.from_arrays(**arrays)
    for key, arr in ds.arrays().items():
        assert arr.dtype == np.float32, key
        assert not arr.flags.writeable, key
    assert ds.rewards.shape == (10,)
    assert (ds.num_transitions, ds.obs_dim, ds.act_dim) == (10, 3, 2)
    np.testing.assert_allclose(ds.observations, arrays["observations"].astype(np.float32))


def test_from_arrays_copies_its_inputs():
    arrays = {k: np.asarray(v, np.float32) for k, v in make_arrays().items()}
    ds = Dataset.from_arrays(**arrays)
    for key, arr in arrays.items():
        assert arr.flags.writeable, key
        assert not np.shares_memory(arr, getattr(ds, key)), key


def test_episode_quantities():
    arrays = make_arrays(n=9)
    arrays["terminals"] = np.array([0, 1, 0, 0, 0, 0, 1, 0, 0])
    arrays["timeouts"] = np.array([0, 0, 0, 0, 1, 0, 0, 0, 1])
    ds = Dataset.from_arrays(**arrays)
    np.testing.assert_array_equal(ds.episode_ends, [0, 1, 0, 0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(ds.episode_starts, [1, 0, 1, 0, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(ds.episode_id, [0, 0, 1, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(ds.episode_end_index, [1, 1, 4, 4, 4, 6, 6, 8, 8])
    np.testing.assert_array_equal(ds.episode_start_index, [0, 0, 2, 2, 2, 5, 5, 7, 7])
    assert ds.num_episodes == 4
    np.testing.assert_array_equal(ds.episode_lengths(), [2, 3, 2, 2])
    r = ds.rewards.astype(np.float64)
    np.testing.assert_allclose(ds.episode_returns(),
                               [r[0:2].sum(), r[2:5].sum(), r[5:7].sum(), r[7:9].sum()])


def test_arrays_ending_mid_episode_get_a_final_timeout():
    arrays = make_arrays()
    arrays["timeouts"][-1] = 0  # terminal at 3 only; the arrays stop mid-episode
    ds = Dataset.from_arrays(**arrays)
    assert ds.timeouts[-1] == 1 and ds.terminals[-1] == 0
    assert ds.num_episodes == 2
    assert ds.timeouts.sum() == 1


def test_derived_next_observations_drop_timed_out_last_steps():
    obs = np.arange(12, dtype=np.float64)[:, None] * np.ones((1, 2))
    # Episodes: [0,1,2] terminal | [3,4,5] timeout | [6] one-step timeout | [7,8] terminal
    #           | [9,10,11] arrays end mid-episode.
    terminals = np.zeros(12)
    timeouts = np.zeros(12)
    terminals[[2, 8]] = 1
    timeouts[[5, 6]] = 1
    ds = Dataset.from_arrays(obs, np.zeros((12, 1)), np.arange(12.0), terminals, timeouts)
    kept = [0, 1, 2, 3, 4, 7, 8, 9, 10]
    np.testing.assert_array_equal(ds.observations[:, 0], kept)
    np.testing.assert_array_equal(ds.rewards, kept)
    np.testing.assert_array_equal(ds.next_observations[:, 0], [1, 2, 2, 4, 5, 8, 8, 10, 11])
    np.testing.assert_array_equal(ds.terminals, [0, 0, 1, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(ds.timeouts, [0, 0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(ds.episode_id, [0, 0, 0, 1, 1, 2, 2, 3, 3])
    # Never leak across an episode: next obs is obs[t+1] of the same episode or obs[t].
    same = ds.episode_id[:-1] == ds.episode_id[1:]
    np.testing.assert_array_equal(ds.next_observations[:-1][same], ds.observations[1:][same])


def test_actions_slightly_outside_bounds_are_clipped():
    arrays = make_arrays()
    arrays["actions"][0, 0] = 1.00005
    arrays["actions"][1, 1] = -1.00005
    info = DatasetInfo(action_low=(-1.0, -1.0), action_high=(1.0, 1.0))
    ds = Dataset.from_arrays(**arrays, info=info)
    assert ds.actions.max() <= 1.0 and ds.actions.min() >= -1.0
    assert ds.actions[0, 0] == 1.0 and ds.actions[1, 1] == -1.0


# -- validation messages -----------------------------------------------------------------------


def check_error(match: list[str], **overrides):
    arrays = make_arrays()
    info = overrides.pop("info", None)
    arrays.update(overrides)
    with pytest.raises(DatasetError) as err:
        Dataset.from_arrays(**arrays, info=info)
    message = str(err.value)
    for part in match:
        assert part in message, f"{part!r} not in {message!r}"
    assert "Fix:" in message
    return message


def test_error_missing_array():
    check_error(["'rewards'", "missing"], rewards=None)


def test_error_length_mismatch_lists_each_length():
    check_error(["'rewards'", "length mismatch", "observations=10", "rewards=9", "actions=10"],
                rewards=np.zeros(9))
    obs = make_arrays()["observations"][:8]
    check_error(["field 'observations'", "observations=8", "rewards=10"], observations=obs,
                next_observations=obs)


def test_error_nothing_left_after_dropping_timed_out_steps():
    check_error(["'next_observations'", "supply next_observations"],
                observations=np.zeros((1, 3)), actions=np.zeros((1, 2)), rewards=np.zeros(1),
                terminals=np.zeros(1), timeouts=np.ones(1), next_observations=None)


@pytest.mark.parametrize("field,value,expect", [
    ("observations", np.zeros(10), ["'observations'", "2-D", "(10,)", "reshape"]),
    ("actions", np.zeros((10, 2, 1)), ["'actions'", "2-D", "(10, 2, 1)", "reshape"]),
    ("rewards", np.zeros((10, 2)), ["'rewards'", "(N,) or (N, 1)", "(10, 2)"]),
    ("terminals", np.zeros((10, 3)), ["'terminals'", "(N,) or (N, 1)"]),
    ("next_observations", np.zeros((10, 4)), ["'next_observations'", "same shape"]),
])
def test_error_wrong_rank_or_shape(field, value, expect):
    check_error(expect, **{field: value})


@pytest.mark.parametrize("field", ["observations", "actions", "rewards", "next_observations"])
def test_error_nan_inf_reports_count_and_first_index(field):
    arr = make_arrays()[field].copy()
    arr[4] = np.nan
    arr[7] = np.inf
    count = 2 if arr.ndim == 1 else 2 * arr.shape[1]
    check_error([f"'{field}'", f"{count} NaN/Inf", "first in row 4", "remove or repair"],
                **{field: arr})


def test_error_float64_overflowing_float32():
    obs = make_arrays()["observations"]
    obs[6, 1] = 1e300
    check_error(["'observations'", "float32 range", "row 6"], observations=obs)


def test_error_flags_not_binary():
    terminals = np.zeros(10)
    terminals[5] = 0.5
    check_error(["'terminals'", "0/1", "index 5", "0.5"], terminals=terminals)
    timeouts = np.zeros(10)
    timeouts[2] = 2
    check_error(["'timeouts'", "0/1", "index 2"], timeouts=timeouts)


def test_error_no_episode_end_at_all():
    check_error(["terminals", "timeouts", "no episode end at all", "supply timeouts"],
                terminals=np.zeros(10), timeouts=np.zeros(10))
    check_error(["no episode end at all"], terminals=np.zeros(10), timeouts=None)


def test_error_empty_dataset():
    check_error(["empty", "0 transitions"], observations=np.zeros((0, 3)), actions=np.zeros((0, 2)),
                rewards=np.zeros(0), terminals=np.zeros(0), timeouts=np.zeros(0),
                next_observations=np.zeros((0, 3)))


def test_error_non_numeric():
    check_error(["'rewards'", "non-numeric"], rewards=np.array(["a"] * 10))


def test_error_actions_out_of_bounds_reports_count_worst_and_bounds():
    actions = make_arrays()["actions"]
    actions[2, 1] = 1.5
    actions[5, 0] = -3.0
    info = DatasetInfo(action_low=(-1, -1), action_high=(1, 1))
    message = check_error(["'actions'", "2 values", "worst: -3", "row 5", "dimension 0",
                           "low=[-1.0, -1.0]", "high=[1.0, 1.0]", "clip"],
                          actions=actions, info=info)
    assert "1e-04" in message or "0.0001" in message


def test_error_action_bounds_wrong_size():
    check_error(["'info.action_low'", "act_dim=2"],
                info=DatasetInfo(action_low=(-1,), action_high=(1,)))


def test_dataset_info_round_trip_and_json_check():
    info = DatasetInfo(name="x", env_id="Hopper-v5", env_kwargs={"a": 1}, action_low=[-1, -2],
                       action_high=np.array([1, 2]), ref_min_score=-3, ref_max_score=5,
                       metadata={"seed": 1, "tags": ["a"]})
    assert info.action_low == (-1.0, -2.0) and info.action_high == (1.0, 2.0)
    encoded = json.loads(json.dumps(info.to_dict()))
    assert DatasetInfo.from_dict(encoded) == info
    with pytest.raises(DatasetError, match="info.metadata"):
        DatasetInfo(metadata={"bad": object()})


# -- files -------------------------------------------------------------------------------------


INFO = DatasetInfo(name="toy", env_id="Pendulum-v1", env_kwargs={"g": 9.81},
                   action_low=(-2.0, -2.0), action_high=(2.0, 2.0), ref_min_score=-1500.0,
                   ref_max_score=-150.0, metadata={"source": "test"})


@pytest.mark.parametrize("suffix,save", [(".hdf5", "save_hdf5"), (".npz", "save_npz")])
def test_round_trip(tmp_path, suffix, save):
    ds = Dataset.from_arrays(**make_arrays(), info=INFO)
    path = tmp_path / f"data{suffix}"
    getattr(ds, save)(path)
    assert_same(ds, Dataset.load(path))
    loader = Dataset.from_hdf5 if suffix == ".hdf5" else Dataset.from_npz
    assert_same(ds, loader(path))
    # Content, not suffix, decides the format.
    odd = tmp_path / "data.bin"
    os.replace(path, odd)
    assert_same(ds, Dataset.load(odd))
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]  # no temp files left


def test_hdf5_has_readable_attrs(tmp_path):
    path = tmp_path / "d.hdf5"
    Dataset.from_arrays(**make_arrays(), info=INFO).save_hdf5(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["env_id"] == "Pendulum-v1"
        assert f.attrs["name"] == "toy"
        assert json.loads(f.attrs["offrl_info"])["env_kwargs"] == {"g": 9.81}
        assert f["terminals"].dtype == np.bool_


def test_d4rl_layout_without_next_observations(tmp_path):
    path = tmp_path / "hopper-medium-v2.hdf5"
    obs = np.arange(7, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = np.zeros((7, 2), np.float32)
        f["rewards"] = np.arange(7, dtype=np.float32)
        f["terminals"] = np.array([0, 1, 0, 0, 0, 0, 0], bool)  # episode [0, 1] terminal
        f["timeouts"] = np.array([0, 0, 0, 0, 1, 0, 1], bool)  # [2, 3, 4] and [5, 6] time out
        f["infos/qpos"] = np.zeros((7, 2))
        f["metadata/algorithm"] = "SAC"
    ds = Dataset.from_hdf5(path)
    np.testing.assert_array_equal(ds.observations[:, 0], [0, 1, 2, 3, 5])
    np.testing.assert_array_equal(ds.next_observations[:, 0], [1, 1, 3, 4, 6])
    np.testing.assert_array_equal(ds.terminals, [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(ds.timeouts, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ds.rewards, [0, 1, 2, 3, 5])
    assert ds.info.name == "hopper-medium-v2" and ds.info.env_id is None


def test_hdf5_missing_keys_lists_found_and_required(tmp_path):
    path = tmp_path / "d.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((3, 2))
        f["actions"] = np.zeros((3, 1))
        f["infos/x"] = np.zeros(3)
    with pytest.raises(DatasetError) as err:
        Dataset.from_hdf5(path)
    message = str(err.value)
    for part in [str(path), "'rewards'", "'terminals'", "found ['actions', 'infos',",
                 "required ['observations', 'actions', 'rewards', 'terminals']", "Fix:"]:
        assert part in message, part


def test_npz_missing_keys(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, observations=np.zeros((3, 2)))
    expected = r"missing key\(s\) \['actions', 'rewards', 'terminals'\]"
    with pytest.raises(DatasetError, match=expected):
        Dataset.load(path)


def test_file_validation_error_names_the_file(tmp_path):
    arrays = make_arrays()
    arrays["rewards"][3] = np.nan
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError) as err:
        Dataset.load(path)
    assert str(path) in str(err.value) and "'rewards'" in str(err.value)


@pytest.mark.parametrize("loader", ["load", "from_hdf5", "from_npz"])
def test_missing_file(tmp_path, loader):
    path = tmp_path / "nope.hdf5"
    with pytest.raises(DatasetError, match="file not found") as err:
        getattr(Dataset, loader)(path)
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


@pytest.mark.parametrize("loader", ["load", "from_hdf5", "from_npz"])
def test_empty_file(tmp_path, loader):
    path = tmp_path / "empty.hdf5"
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.*re-download or remake"):
        getattr(Dataset, loader)(path)


@pytest.mark.parametrize("suffix,save", [(".hdf5", "save_hdf5"), (".npz", "save_npz")])
def test_truncated_file(tmp_path, suffix, save):
    path = tmp_path / f"data{suffix}"
    getattr(Dataset.from_arrays(**make_arrays(n=200), info=INFO), save)(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as err:
        Dataset.load(path)
    message = str(err.value)
    assert str(path) in message
    assert "truncated" in message and "re-download or remake" in message


def test_not_hdf5_file(tmp_path):
    path = tmp_path / "data.hdf5"
    path.write_text("this is not an HDF5 file\n" * 20)
    for loader in (Dataset.load, Dataset.from_hdf5):
        with pytest.raises(DatasetError, match="truncated or not HDF5. Fix: re-download or remake"):
            loader(path)
    other = tmp_path / "data.txt"
    other.write_text("hello")
    with pytest.raises(DatasetError, match="unknown file format"):
        Dataset.load(other)


def _fail_mid_write(monkeypatch, tmp_path, save):
    """Make the writer raise after part of the file has been written to the temp file."""
    seen = []

    def fail(*args, **kwargs):
        seen.extend(p for p in tmp_path.iterdir()
                    if p.name.endswith(".tmp") and p.stat().st_size > 0)
        raise RuntimeError("killed mid-write")

    if save == "save_hdf5":
        # json.dumps of the info runs after every array has been written.
        monkeypatch.setattr(dataset_module.json, "dumps", fail)
    else:
        def partial_savez(f, **arrays):
            f.write(b"PK\x03\x04 partial zip")
            f.flush()
            fail()

        monkeypatch.setattr(dataset_module.np, "savez", partial_savez)
    return seen


@pytest.mark.parametrize("save", ["save_hdf5", "save_npz"])
def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch, save):
    ds = Dataset.from_arrays(**make_arrays(), info=INFO)
    target = tmp_path / "out.data"
    with monkeypatch.context() as m:
        seen = _fail_mid_write(m, tmp_path, save)
        with pytest.raises(RuntimeError, match="killed mid-write"):
            getattr(ds, save)(target)
    assert seen, "the failure should happen after bytes reached the temp file"
    assert list(tmp_path.iterdir()) == []

    # An existing file is left untouched by a failed overwrite.
    getattr(ds, save)(target)
    before = target.read_bytes()
    with monkeypatch.context() as m:
        _fail_mid_write(m, tmp_path, save)
        with pytest.raises(RuntimeError):
            getattr(ds, save)(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.data"]
    assert_same(ds, Dataset.load(target))


def test_atomic_write_partial_bytes_never_reach_target(tmp_path):
    target = tmp_path / "x.bin"

    def write(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dataset_module._atomic_write(target, write)
    assert list(tmp_path.iterdir()) == []

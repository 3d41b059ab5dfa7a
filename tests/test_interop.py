"""Minari interop, storage integrity (checksums, verify) and dataset inspection."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
from conftest import make_dataset

from offrl.data import Dataset, DatasetError, DatasetInfo
from offrl.data.inspect import cli_info, cli_plot, dataset_summary, plot_returns
from offrl.data.integrity import CHECKSUM_KEY, array_checksum, verify


@pytest.fixture
def minari_store(tmp_path, monkeypatch):
    """A private, offline Minari store."""
    minari = pytest.importorskip("minari")
    store = tmp_path / "minari"
    store.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return minari


def chained_dataset(n_episodes: int = 4, seed: int = 0, **info_kwargs) -> Dataset:
    """Episodes whose next_observations are the following observations (Minari's layout)."""
    rng = np.random.default_rng(seed)
    parts = {k: [] for k in ("observations", "next_observations", "actions", "rewards",
                             "terminals", "timeouts")}
    for ep in range(n_episodes):
        t = 5 + 3 * ep
        obs = rng.normal(size=(t + 1, 3)).astype(np.float32)
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(rng.uniform(-2, 2, size=(t, 1)))
        parts["rewards"].append(rng.normal(size=t))
        term, tout = np.zeros(t), np.zeros(t)
        (term if ep % 2 else tout)[-1] = 1  # odd episodes terminate, even ones time out
        parts["terminals"].append(term)
        parts["timeouts"].append(tout)
    info = DatasetInfo(name="chained", action_low=[-2.0], action_high=[2.0], **info_kwargs)
    return Dataset.from_arrays(**{k: np.concatenate(v) for k, v in parts.items()}, info=info)


def assert_same_arrays(a: Dataset, b: Dataset) -> None:
    for name, arr in a.arrays().items():
        np.testing.assert_array_equal(arr, b.arrays()[name], err_msg=name)
    np.testing.assert_array_equal(a.episode_ends, b.episode_ends)


# ---------------------------------------------------------------------------------------------
# Minari
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_offrl_minari_offrl_round_trip(minari_store, data_format):
    from offrl.data.minari_io import from_minari, to_minari

    ds = chained_dataset(env_id="Pendulum-v1", ref_min_score=-1200.0, ref_max_score=-150.0)
    mds = to_minari(ds, f"offrl/chained-{data_format}-v0", author="tests",
                    data_format=data_format)
    assert mds.total_episodes == ds.num_episodes and mds.total_steps == len(ds)
    ep = mds[0]
    assert len(ep.observations) == len(ep.rewards) + 1  # Minari's N + 1 observations
    assert mds.env_spec is not None and mds.env_spec.id == "Pendulum-v1"
    assert minari_store.get_normalized_score(mds, np.array([-150.0])) == pytest.approx(1.0)

    back = from_minari(f"offrl/chained-{data_format}-v0")
    assert_same_arrays(ds, back)
    assert back.terminals.sum() == 2 and back.timeouts.sum() == 2
    assert back.info == ds.info
    assert array_checksum(back) == array_checksum(ds)
    # The same through offrl's name syntax and through the folder path.
    from offrl.data.minari_io import load_minari_name

    assert_same_arrays(ds, load_minari_name(f"minari:offrl/chained-{data_format}-v0"))
    assert_same_arrays(ds, from_minari(mds.storage.data_path.parent))


def test_round_trip_keeps_unchained_next_observations(minari_store):
    """next_observations that are not observations[t + 1] survive (stored in infos)."""
    from offrl.data.minari_io import from_minari, to_minari

    ds = make_dataset(n=120, episode_len=30)  # next_obs = obs + noise, one terminal mid-way
    to_minari(ds, "offrl/unchained-v1")
    back = from_minari("offrl/unchained-v1")
    assert_same_arrays(ds, back)
    assert back.info == ds.info


def test_to_minari_refuses_existing_id_and_bad_id(minari_store):
    from offrl.data.minari_io import to_minari

    ds = chained_dataset(n_episodes=2)
    to_minari(ds, "offrl/twice-v0")
    with pytest.raises(DatasetError, match="already exists"):
        to_minari(ds, "offrl/twice-v0")
    to_minari(ds, "offrl/twice-v0", overwrite=True)
    with pytest.raises(DatasetError, match="malformed"):
        to_minari(ds, "no-version")


def test_from_minari_missing_dataset_is_a_clear_error(minari_store):
    from offrl.data.minari_io import from_minari

    with pytest.raises(DatasetError, match="not in the local store.*minari download"):
        from_minari("offrl/absent-v0")


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_from_minari_reads_a_data_collector_dataset(minari_store, data_format):
    import gymnasium as gym

    from offrl.data.minari_io import from_minari

    minari = minari_store
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=6),
                               data_format=data_format)
    env.action_space.seed(0)
    lengths = [6, 6, 4]  # two time-limit cuts; create_dataset marks the cut last one truncated
    for ep, length in enumerate(lengths):
        env.reset(seed=ep)
        for _ in range(length):
            env.step(env.action_space.sample())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mds = env.create_dataset(f"tests/pendulum-{data_format}-v0", algorithm_name="random")
    env.close()

    ds = from_minari(f"tests/pendulum-{data_format}-v0")
    assert len(ds) == sum(lengths) and ds.num_episodes == len(lengths)
    np.testing.assert_array_equal(ds.episode_lengths(), lengths)
    firsts = np.flatnonzero(ds.episode_starts)
    inner = np.flatnonzero(~ds.episode_ends)
    np.testing.assert_array_equal(ds.next_observations[inner], ds.observations[inner + 1])
    for i, ep in enumerate(mds.iterate_episodes()):
        first = firsts[i]
        np.testing.assert_array_equal(ds.observations[first:first + len(ep.rewards)],
                                      ep.observations[:-1])
        np.testing.assert_array_equal(ds.next_observations[first + len(ep.rewards) - 1],
                                      ep.observations[-1])
    assert ds.terminals.sum() == 0 and ds.timeouts.sum() == len(lengths)
    assert ds.info.env_id == "Pendulum-v1"
    assert ds.info.env_kwargs == {"max_episode_steps": 6}
    assert ds.info.action_low == (-2.0,) and ds.info.action_high == (2.0,)
    assert ds.info.metadata["source"] == "minari"
    assert ds.info.metadata["minari_dataset_id"] == f"tests/pendulum-{data_format}-v0"


def test_dict_observations_are_flattened_like_gymnasium(minari_store):
    from gymnasium import spaces
    from minari.data_collector.episode_buffer import EpisodeBuffer

    from offrl.data.minari_io import from_minari

    obs_space = spaces.Dict({"pos": spaces.Box(-1, 1, (2,), np.float32),
                             "mode": spaces.Discrete(3),
                             "grid": spaces.Box(0, 1, (2, 2), np.float32)})
    obs_space.seed(1)
    samples = [obs_space.sample() for _ in range(5)]
    buffer = EpisodeBuffer(
        observations={k: np.stack([s[k] for s in samples]) for k in obs_space.spaces},
        actions=np.zeros((4, 1), np.float32), rewards=np.ones(4),
        terminations=np.array([0, 0, 0, 1], bool), truncations=np.zeros(4, bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari_store.create_dataset_from_buffers(
            "tests/dict-obs-v0", [buffer], observation_space=obs_space,
            action_space=spaces.Box(-1, 1, (1,), np.float32))
    ds = from_minari("tests/dict-obs-v0")
    expected = np.stack([spaces.flatten(obs_space, s) for s in samples]).astype(np.float32)
    np.testing.assert_array_equal(ds.observations, expected[:-1])
    np.testing.assert_array_equal(ds.next_observations, expected[1:])
    assert ds.obs_dim == 2 + 3 + 4 and ds.terminals[-1] == 1
    assert ds.info.metadata["observations_flattened"] is True


def test_minari_missing_gives_install_hint(monkeypatch):
    import builtins

    from offrl.data import minari_io

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "minari" or name.startswith("minari."):
            raise ImportError("No module named 'minari'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'offrl\[minari\]'"):
        minari_io.from_minari("offrl/anything-v0")


# ---------------------------------------------------------------------------------------------
# Integrity
# ---------------------------------------------------------------------------------------------


def test_checksum_is_stable_and_detects_one_changed_value():
    ds = make_dataset(n=200)
    first = array_checksum(ds)
    assert first == array_checksum(ds) == array_checksum(make_dataset(n=200))
    assert len(first) == 64
    arrays = {k: v.copy() for k, v in ds.arrays().items()}
    arrays["rewards"][17] = np.nextafter(arrays["rewards"][17], np.float32(np.inf))
    assert array_checksum(arrays) != first
    changed = Dataset.from_arrays(**arrays, info=ds.info)
    assert array_checksum(changed) != first
    # Metadata is not part of the checksum; a changed shape is.
    relabelled = Dataset.from_arrays(**ds.arrays(), info=DatasetInfo(name="other"))
    assert array_checksum(relabelled) == first
    reshaped = dict(ds.arrays(), observations=ds.observations.reshape(len(ds), -1, 1))
    assert array_checksum(reshaped) != first


def test_checksum_survives_hdf5_and_npz_files(tmp_path):
    ds = make_dataset(n=100)
    for path in (ds.save_hdf5(tmp_path / "d.hdf5"), ds.save_npz(tmp_path / "d.npz")):
        assert array_checksum(Dataset.load(path)) == array_checksum(ds)


def _write_with_checksum(ds: Dataset, path):
    ds.save_hdf5(path)
    with h5py.File(path, "a") as f:  # what save_hdf5 does once it stores checksums itself
        f.attrs[CHECKSUM_KEY] = array_checksum(ds)
    return path


def test_verify_passes_intact_and_rejects_modified_files(tmp_path):
    ds = make_dataset(n=100, name="pendulum-random")
    path = _write_with_checksum(ds, tmp_path / "pendulum-random.hdf5")
    verify(path)
    with h5py.File(path, "a") as f:
        f["rewards"][5] = f["rewards"][5] + 1.0
    with pytest.raises(DatasetError, match="checksum mismatch.*regenerate=True"):
        verify(path)

    plain = make_dataset(n=50).save_hdf5(tmp_path / "plain.hdf5")
    with h5py.File(plain, "a") as f:  # a file written before checksums existed
        f.attrs.pop(CHECKSUM_KEY, None)
    verify(plain)  # no checksum stored: passes unless required
    with pytest.raises(DatasetError, match="stores no checksum"):
        verify(plain, require=True)
    with pytest.raises(DatasetError, match="does not exist"):
        verify(tmp_path / "absent.hdf5")
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DatasetError, match="remake it"):
        verify(truncated)


# ---------------------------------------------------------------------------------------------
# Inspection
# ---------------------------------------------------------------------------------------------


def test_dataset_summary_matches_numpy():
    ds = make_dataset(n=300, episode_len=40, ref_min_score=-20.0, ref_max_score=30.0)
    s = dataset_summary(ds)
    json.dumps(s)  # JSON-able
    ends = np.flatnonzero((ds.terminals + ds.timeouts) > 0)
    returns = np.add.reduceat(ds.rewards.astype(np.float64), np.r_[0, ends[:-1] + 1])
    lengths = np.diff(np.r_[-1, ends])
    assert s["transitions"] == 300 and s["episodes"] == len(ends)
    assert (s["obs_dim"], s["act_dim"]) == (3, 2)
    r = s["episode_return"]
    np.testing.assert_allclose([r["mean"], r["std"], r["min"], r["max"]],
                               [returns.mean(), returns.std(), returns.min(), returns.max()])
    np.testing.assert_allclose([r["q05"], r["q25"], r["q50"], r["q75"], r["q95"]],
                               np.quantile(returns, [0.05, 0.25, 0.5, 0.75, 0.95]))
    assert s["episode_length"]["mean"] == pytest.approx(lengths.mean())
    assert s["episode_length"]["max"] == lengths.max()
    assert s["terminals"] == int(ds.terminals.sum()) == 1
    assert s["timeouts"] == int(ds.timeouts.sum())
    ns = 100 * (returns - -20.0) / (30.0 - -20.0)
    assert s["normalized_score"]["mean"] == pytest.approx(ns.mean())
    assert dataset_summary(make_dataset(n=100))["normalized_score"] is None


def test_plot_returns_and_cli_commands(tmp_path, monkeypatch, capsys):
    ds = make_dataset(n=200, ref_min_score=-20.0, ref_max_score=30.0, name="plotme")
    out = plot_returns(ds, tmp_path / "sub" / "returns.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    path = ds.save_hdf5(tmp_path / "plotme.hdf5")
    assert cli_info([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["transitions"] == 200
    assert cli_info([str(path)]) == 0
    assert "episode return" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert cli_plot([str(path)]) == 0
    assert (tmp_path / "plotme-returns.png").stat().st_size > 1000
    assert cli_plot([str(path), "--out", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").exists()

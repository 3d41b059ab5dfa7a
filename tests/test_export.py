"""Policy export: every registered algorithm's exported ONNX and StableHLO policies act as ``Agent.act``.

Each algorithm's run folder holds an init-only checkpoint (weights perturbed so that no layer is
trivially zero) written in the training loop's format, with observation normalisation on and
asymmetric action bounds, so the exported files must carry the normalisation, the algorithm's own
``act`` (argmax over sampled candidates for BCQ and BEAR, Q argmax for the discrete algorithms, the
diffusion policies' sampling chains, unrolled from their ``lax.scan``) and
the action scaling. Two seeds are stored and the second is exported.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import onnxruntime  # the `test` extra installs it: this test runs in CI, never skipped
import pytest
from flax import serialization

import offrl
from offrl.algos import DataSpec, list_algos
from offrl.checkpoint import FILENAME, save_checkpoint
from offrl.data import fit_transforms
from offrl.train import config_to_dict, init_agents

from conftest import make_dataset, make_discrete_dataset, small_config


ALGOS = sorted(n for n, a in list_algos().items() if not a.stateful)  # sequence policies are refused (below)
LOW, HIGH = (-2.0, 0.0), (2.0, 0.5)


def grouped(names):
    """The contract tests' xdist groups: an algorithm's tests share a worker and its compiled init."""
    return [pytest.param(n, marks=pytest.mark.xdist_group(n)) for n in names]


def init_run(name, run_dir, seeds=2):
    """A run folder holding an init-only checkpoint of ``name``, as ``offrl.fit`` writes it."""
    algo = offrl.algos.get_algo(name)
    config = small_config(algo)
    dataset = make_discrete_dataset() if algo.discrete else make_dataset(act_dim=2, action_low=LOW, action_high=HIGH)
    transforms = fit_transforms(dataset, normalize_observations=True, reward_scaling=algo.reward_scaling)
    spec = DataSpec.from_dataset(dataset)
    states, keys = init_agents(algo, config, spec, 0, seeds, 40)
    leaves, treedef = jax.tree.flatten(jax.device_get(states))
    rng = np.random.default_rng(0)
    leaves = [x + 0.3 * rng.normal(size=x.shape).astype(x.dtype) if np.issubdtype(x.dtype, np.floating) and x.ndim > 2
              else x for x in map(np.asarray, leaves)]  # kernels (seeds, in, out, ...): the actions vary with the input
    states = jax.tree.unflatten(treedef, leaves)
    loop = dict(steps=40, seed=0, seeds=seeds, chunk=20, eval_interval=None, eval_episodes=0, checkpoint_interval=20,
                seed_strategy="map")
    meta = dict(offrl_version=offrl.__version__, algo=algo.name, algo_config=config_to_dict(config),
                transforms=transforms.to_dict(), dataset_info=dataset.info.to_dict(), dataset_source="synthetic",
                spec=dataclasses.asdict(spec), loop=loop, step=0)
    save_checkpoint(run_dir / FILENAME, serialization.to_state_dict(states), np.asarray(keys), meta)
    return dataset


def observations(dataset, n, seed=1):
    rng = np.random.default_rng(seed)
    return (dataset.observations.mean(0) + 3 * dataset.observations.std(0) * rng.normal(size=(n, dataset.obs_dim))).astype(np.float32)


# Policies that run a diffusion sampler: each reverse step divides by sqrt(abar_k) (down to e^-2.5 with 5 VP
# steps), so float32 rounding that differs between XLA and onnxruntime grows along the chain.
SAMPLING_CHAINS = {"idql": 1e-4, "diffusion_ql": 1e-4, "decision_diffuser": 1e-4}


def assert_acts_like(got, want, discrete, tolerance=1e-5):
    if discrete:
        assert got.dtype == np.int64 and want.dtype == np.int64
        np.testing.assert_array_equal(got, want)
    else:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)
        assert np.all(got >= LOW) and np.all(got <= HIGH)


@pytest.mark.parametrize("name", grouped(ALGOS))
def test_exported_policies_act_like_the_agent(name, tmp_path):
    """ONNX (onnxruntime) and StableHLO (jax.export) files match Agent.act on a batch of observations.

    The files are checked here, not by export_policy's own check (``verify=False``), so each compiles
    Agent.act once (one batch size: a single observation's action is the batch's first row)."""
    from jax import export as jax_export

    from offrl.export import export_policy

    dataset = init_run(name, tmp_path)
    agent = offrl.load_agent(tmp_path)
    discrete = agent.algo.discrete
    obs = observations(dataset, 64)
    want = agent.act(obs, seed_index=1)
    assert len(np.unique(want if discrete else want.round(3), axis=0)) > 1  # a policy that varies with the input

    path = export_policy(tmp_path, "onnx", seed_index=1, agent=agent, verify=False)
    assert path == tmp_path / "policy.onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["observation"]
    assert [o.name for o in session.get_outputs()] == ["action"]
    tolerance = SAMPLING_CHAINS.get(name, 1e-5)
    assert_acts_like(session.run(["action"], {"observation": obs})[0], want, discrete, tolerance)
    assert_acts_like(session.run(["action"], {"observation": obs[:1]})[0], want[:1], discrete, tolerance)

    card = json.loads((tmp_path / "policy.onnx.json").read_text())
    assert card["algorithm"] == name and card["format"] == "onnx" and card["seed_index"] == 1
    assert card["input"] == {"name": "observation", "shape": ["batch", dataset.obs_dim], "dtype": "float32",
                             "space": {"type": "Box", "shape": [dataset.obs_dim]}}
    if discrete:
        assert card["output"]["space"] == {"type": "Discrete", "n": dataset.num_actions}
    else:
        assert card["output"]["space"] == {"type": "Box", "shape": [2], "low": list(LOW), "high": list(HIGH)}
    assert card["step"] == 0 and card["verified"] is None

    path = export_policy(tmp_path, "stablehlo", seed_index=1, agent=agent, verify=False)
    exported = jax_export.deserialize(bytearray(path.read_bytes()))
    got = np.asarray(exported.call(obs))
    assert_acts_like(got.astype(np.int64) if discrete else got, want, discrete, tolerance)
    assert json.loads((tmp_path / "policy.stablehlo.json").read_text())["format"] == "stablehlo"


@pytest.mark.xdist_group("bc")
def test_export_command_writes_the_policy_and_its_card(tmp_path, capsys):
    from offrl.cli import main

    init_run("bc", tmp_path, seeds=1)
    assert main(["export", str(tmp_path), "--format", "onnx", "--out", str(tmp_path / "out" / "bc.onnx")]) == 0
    assert "matches Agent.act" in capsys.readouterr().out
    card = json.loads((tmp_path / "out" / "bc.onnx.json").read_text())
    assert card["file"] == "bc.onnx" and card["dataset"] == "synthetic" and card["max_batch"] is None
    assert card["verified"]["max_difference"] <= 1e-5
    # user errors: one line, exit 2
    for argv, message in ((["export", str(tmp_path / "nowhere")], "no checkpoint"),
                          (["export", str(tmp_path), "--seed-index", "3"], "seed index 3 out of range")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.mark.xdist_group("bcq")
def test_batch_limited_onnx_policy_says_so(tmp_path):
    """BCQ's fixed sampling noise is a table of max_batch rows: the card says how many observations a call takes."""
    from offrl.export import export_policy

    dataset = init_run("bcq", tmp_path, seeds=1)
    path = export_policy(tmp_path, "onnx", max_batch=16)
    assert json.loads((tmp_path / "policy.onnx.json").read_text())["max_batch"] == 16
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    agent = offrl.load_agent(tmp_path)
    obs = observations(dataset, 16)
    np.testing.assert_allclose(session.run(["action"], {"observation": obs})[0], agent.act(obs), atol=1e-5, rtol=0)


@pytest.mark.xdist_group("bc")
def test_an_export_that_does_not_act_like_the_agent_is_refused(tmp_path, monkeypatch):
    """The check after writing compares the file with Agent.act: a wrong policy never replaces the file."""
    import offrl.export as export

    init_run("bc", tmp_path, seeds=1)
    (tmp_path / "policy.onnx").write_bytes(b"previous")
    right = export.policy_function
    monkeypatch.setattr(export, "policy_function", lambda agent, i: (lambda obs: right(agent, i)(obs) * 0.999))
    with pytest.raises(export.ExportError, match="does not reproduce Agent.act"):
        export.export_policy(tmp_path, "onnx")
    assert (tmp_path / "policy.onnx").read_bytes() == b"previous" and not (tmp_path / "policy.onnx.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_onnx_translation_of_more_primitives_matches_jax():
    """Known answers beyond the current policies: batched dot_general, softplus (log1p, abs, select_n),
    reductions, slices, splits, transposes and powers, at two batch sizes; unknown primitives are named."""
    import jax.numpy as jnp

    from offrl.export import ExportError, to_onnx

    w = np.random.default_rng(0).normal(size=(2, 4, 5)).astype(np.float32)

    def f(obs):  # obs [B, 4]
        h = jnp.einsum("bi,kio->kbo", obs, w)  # dot_general with a free ensemble axis
        h = jax.nn.softplus(h) - jnp.square(h) ** 2 / 10
        a, b = jnp.split(h.transpose(1, 0, 2), [1], axis=1)  # [B, 1, 5], [B, 1, 5]
        m = jnp.concatenate([a[:, 0, 1:4], b[:, 0, :2]], axis=1).max(axis=1, keepdims=True)
        return jnp.tanh(m + h.sum(axis=(0, 2))[:, None] / 7 - jnp.abs(obs[:, 2:3]))

    model, limited = to_onnx(f, 4, discrete=False, max_batch=8)
    assert not limited
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (5, 1):
        obs = np.random.default_rng(batch).normal(size=(batch, 4)).astype(np.float32)
        np.testing.assert_allclose(session.run(["action"], {"observation": obs})[0], np.asarray(f(obs)), atol=1e-5, rtol=1e-5)
    with pytest.raises(ExportError, match="'cumsum'"):
        to_onnx(lambda obs: jnp.cumsum(obs, axis=1), 4, discrete=False, max_batch=8)


@pytest.mark.xdist_group("rvs")
def test_sequence_policies_are_refused_with_a_clear_message(tmp_path, capsys):
    """A policy that carries a history between steps has no one-observation policy file: one line, exit 2."""
    from offrl.cli import main

    init_run("rvs", tmp_path, seeds=1)
    assert main(["export", str(tmp_path), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "rvs is a sequence policy" in err and "agent.reset()" in err and err.count("\n") == 1, err
    assert not (tmp_path / "policy.onnx").exists()

def test_onnx_unrolls_a_scan_and_refuses_stacked_outputs():
    """A sampler's ``lax.scan`` (carry only; per-step inputs that do not depend on the observations, e.g. the
    step index and fixed noise) becomes one copy of its body per step; a scan that stacks outputs is refused."""
    import jax.numpy as jnp

    from offrl.export import ExportError, to_onnx

    noise = np.random.default_rng(0).normal(size=(4, 1, 3)).astype(np.float32)

    def f(obs):  # obs [B, 3]
        def step(x, inputs):
            k, z = inputs
            return jnp.tanh(0.9 * x + 0.1 * k) + 0.05 * z, None

        return jax.lax.scan(step, obs, (jnp.arange(4, dtype=jnp.float32), jnp.asarray(noise)), reverse=True)[0]

    model, _ = to_onnx(f, 3, discrete=False, max_batch=8)
    assert "Scan" not in {n.op_type for n in model.graph.node}
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    obs = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(session.run(["action"], {"observation": obs})[0], np.asarray(f(obs)), atol=1e-6)
    with pytest.raises(ExportError, match="stacks per-step outputs"):
        to_onnx(lambda obs: jax.lax.scan(lambda c, x: (c + x, c), obs, jnp.ones((2, 1, 3)))[1].sum(0), 3, discrete=False, max_batch=8)

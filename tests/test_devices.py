"""Seeds spread over several local devices (``map`` with ``JAX_NUM_CPU_DEVICES=N``): the same agents,
bit for bit, as on one device, and every device gets seeds. The device count is fixed when JAX
starts, so each count runs in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from conftest import make_dataset

from offrl.train import seed_devices

SCRIPT = r"""
import hashlib, json, sys
import jax, numpy as np
import offrl.train as train
from offrl.algos import iql

seen = []
original = train.seed_devices
def recording(seeds, devices):
    chosen = original(seeds, devices)
    seen.append([d.id for d in chosen])
    return chosen
train.seed_devices = recording

result = train.fit(iql.Config(hidden_dims=(16, 16), batch_size=32), sys.argv[1], steps=60, seeds=3, chunk=20,
                   eval_interval=None, eval_episodes=0, run_dir=sys.argv[2], progress=False, plot=False,
                   seed_strategy="map")
leaves = jax.tree.leaves(jax.device_get(result.states))
print(json.dumps({"devices": len(jax.local_devices()), "seen": seen,
                  "state_devices": sorted({d.id for x in jax.tree.leaves(result.states) for d in x.devices()}),
                  "sha": hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in leaves)).hexdigest()}))
"""


def test_seed_devices_round_robin():
    assert seed_devices(3, ["a", "b"]) == ["a", "b", "a"]
    assert seed_devices(2, ["a"]) == ["a", "a"]


def test_seeds_mapped_over_two_cpu_devices_train_the_same_agents(tmp_path):
    path = tmp_path / "data.npz"
    make_dataset().save_npz(path)
    runs = {}
    for n in (1, 2):
        env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(n), "JAX_PLATFORMS": "cpu"}
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(path), str(tmp_path / f"run{n}")], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[n] = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = runs[1], runs[2]
    assert one["devices"] == 1 and two["devices"] == 2
    assert one["seen"] == []  # one device: the plain loop, no replicas
    assert two["seen"] and all(ids == [0, 1, 0] for ids in two["seen"])  # seeds 0, 2 on device 0, seed 1 on 1
    assert two["state_devices"] == [0]  # states come back to the first device (eval, checkpoints)
    assert one["sha"] == two["sha"]  # the same one-seed program on either device: the same bits


ONLINE_SCRIPT = r"""
import hashlib, json, sys
import jax, numpy as np
from offrl.algos import get_algo, sac
from offrl.datasets.builtin import generate_pendulum
from offrl.finetune import finetune
from offrl.online import train_online
from offrl.train import fit

def sha(tree):
    return hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in jax.tree.leaves(jax.device_get(tree)))).hexdigest()

out, work = {"devices": len(jax.local_devices())}, sys.argv[1]
config = sac.Config(hidden_dims=(16, 16), batch_size=16)
kw = dict(env_steps=200, start_steps=100, update_every=25, eval_episodes=0, progress=False, plot=False)
both = train_online(config, "Pendulum-v1", seeds=2, seed=0, seed_strategy="map", run_dir=work + "/sac", **kw)
out["sac"] = [[sha(r.state), sha(r.buffer)] for r in both]
out["sac_buffer_devices"] = [sorted(d.id for x in jax.tree.leaves(r.buffer) for d in x.devices()) for r in both]
alone = train_online(config, "Pendulum-v1", seeds=1, seed=1, run_dir=work + "/sac1", **kw)
out["sac_seed1_alone"] = [sha(alone.state), sha(alone.buffer)]
data = generate_pendulum("pendulum-random-tiny", {"random": 1.0}, seed=1, size=1000, description="test")
path = data.save_hdf5(work + "/tiny.hdf5")
calql = get_algo("calql").config_cls(hidden_dims=(16, 16), batch_size=16, num_samples=2)
fit(calql, str(path), steps=20, seeds=2, run_dir=work + "/offline", progress=False, plot=False, eval_episodes=0)
tuned = finetune(work + "/offline", steps=450, eval_every=450, eval_episodes=0, run_dir=work + "/online",
                 progress=False, plot=False)
out["calql_evaluations"] = [json.load(open(r.run_dir / "finetune.json"))["evaluations"] for r in tuned]  # none asked
out["calql_mc_return"] = [np.asarray(r.buffer.extras["mc_return"]).tolist() for r in tuned]
out["calql_params"] = [np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(r.state))]).astype(float).tolist()[:4000:7]
                       for r in tuned]
print(json.dumps(out))
"""


def test_online_agents_spread_over_two_cpu_devices_train_as_on_one(tmp_path):
    """train_online under map with two CPU devices: agent k's buffer lives on device k and each
    agent is the one-agent program's run (bit for bit a run of that seed alone); Cal-QL fine-tuning
    (offline data on each device, Monte-Carlo extras filled per agent) gives the same agents as on
    one device."""
    runs = {}
    for n in (1, 2):
        env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(n), "JAX_PLATFORMS": "cpu"}
        (tmp_path / f"w{n}").mkdir()
        done = subprocess.run([sys.executable, "-c", ONLINE_SCRIPT, str(tmp_path / f"w{n}")], env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[n] = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = runs[1], runs[2]
    assert one["devices"] == 1 and two["devices"] == 2
    assert all(set(d) == {0} for d in one["sac_buffer_devices"])
    assert set(two["sac_buffer_devices"][0]) == {0} and set(two["sac_buffer_devices"][1]) == {1}  # spread
    assert two["sac"][1] == two["sac_seed1_alone"] == one["sac_seed1_alone"]  # agent 1 = seed 1 alone, bit for bit
    assert two["sac"][0] != two["sac"][1]
    assert one["calql_evaluations"] == two["calql_evaluations"] == [0, 0]  # eval_episodes=0: a summary, no scores
    for k in range(2):
        assert two["sac"][k] == one["sac"][k]  # lax.map of the one-agent program on one device: the same bits
        np.testing.assert_array_equal(two["calql_mc_return"][k], one["calql_mc_return"][k])
        np.testing.assert_allclose(two["calql_params"][k], one["calql_params"][k], rtol=1e-5, atol=1e-6)
    assert np.isfinite(two["calql_mc_return"][0][:400]).all() and np.isneginf(two["calql_mc_return"][0][400:450]).all()

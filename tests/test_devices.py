"""Seeds spread over several local devices (``map`` with ``JAX_NUM_CPU_DEVICES=N``): the same agents,
bit for bit, as on one device, and every device gets seeds. The device count is fixed when JAX
starts, so each count runs in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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

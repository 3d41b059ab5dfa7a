"""Bit-exact fingerprints of every registered algorithm, to check that a refactor changes no number.

For each algorithm (and a few non-default variants) it trains 40 updates from seed 0 on the test
suite's small synthetic dataset, then hashes the parameters, the deterministic and the stochastic
actions of 7 fixed observations, and Q of those actions. Run it before and after a change on the
same machine and compare:

    .venv/bin/python scripts/fingerprints.py /tmp/before.json      # on the old commit
    .venv/bin/python scripts/fingerprints.py /tmp/after.json       # on the new one
    .venv/bin/python scripts/fingerprints.py --compare /tmp/before.json /tmp/after.json

XLA's float results depend on the CPU and the library versions, so fingerprints compare only runs
on one machine and one environment; they are a development check, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

VARIANTS = {  # non-default paths worth covering: {algorithm: [config overrides, ...]}
    "bc": [{"policy": "gaussian"}],
    "percent_bc": [{"policy": "gaussian"}],
    "awac": [{"normalize_weights": False, "num_samples": 3}],
    "crr": [{"filter": "binary", "advantage": "max"}],
    "cql": [{"max_backup": True, "target_action_gap": 5.0}],
    "bear": [{"mmd_threshold": None, "clip_all_samples": False}],
    "sac_offline": [{"learn_temperature": False, "backup_entropy": False}],
    "dqn_offline": [{"double_q": False}],
    "cql_discrete": [{"double_q": False}],
    "sac_n": [{"backup_entropy": False}],
    "mopo": [{"uncertainty": "ensemble_disagreement", "learn_temperature": False, "backup_entropy": False}],
    "combo": [{"push_down_states": "mixed"}, {"real_ratio": 1.0}],
    "mobile": [{"target_min": None, "backup_entropy": True}],
}


def _hash(tree) -> str:
    import jax
    import numpy as np

    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return digest.hexdigest()[:16]


def fingerprints(names: list[str]) -> dict[str, dict[str, str]]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import offrl
    from conftest import make_dataset, make_discrete_dataset, small_config

    out = {}
    for name in names:
        algo = offrl.algos.get_algo(name)
        for overrides in [{}] + VARIANTS.get(name, []):
            config = small_config(algo, **overrides)
            dataset = make_discrete_dataset() if algo.discrete else make_dataset(chained=algo.stateful)
            with tempfile.TemporaryDirectory() as tmp:
                result = offrl.fit(config, dataset, steps=40, seeds=1, seed=0, chunk=20, run_dir=Path(tmp) / "run",
                                   progress=False, plot=False, evaluate_at_end=False)
            state = jax.tree.map(lambda x: x[0], result.states)
            obs = jnp.asarray(np.random.default_rng(1).normal(size=(7, dataset.observations.shape[1])), jnp.float32)
            key = jax.random.PRNGKey(3)
            if algo.stateful:  # a sequence policy: the first step of 7 episodes asking for return 1
                from offrl.algos import DataSpec

                carry = algo.init_carry(config, DataSpec.from_dataset(dataset), jnp.ones(7))
                starts, rewards = jnp.ones(7, bool), jnp.zeros(7)
                act = lambda det: algo.act_carry(config, state, carry, obs, rewards, starts, key, det)[0]
            else:
                act = lambda det: algo.act(config, state, obs, key, det)
            row = {"params": _hash(state), "act_deterministic": _hash(act(True)), "act_stochastic": _hash(act(False))}
            if algo.q_value is not None:
                row["q"] = _hash(algo.q_value(config, state, obs, algo.act(config, state, obs, key, True)))
            label = name + (json.dumps(overrides, sort_keys=True) if overrides else "")
            out[label] = row
            print(label, row, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="JSON file to write the fingerprints to")
    parser.add_argument("--algos", default=None, help="comma-separated algorithms (default: all registered)")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two fingerprint files")
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(Path(p).read_text()) for p in args.compare)
        changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
        missing = sorted(before.keys() ^ after.keys())
        for label in changed:
            print(f"changed: {label}: {before[label]} -> {after[label]}")
        print(f"{len(before.keys() & after.keys()) - len(changed)} identical, {len(changed)} changed, "
              f"{len(missing)} in one file only (not compared)")
        return 1 if changed else 0
    if not args.out:
        parser.error("give an output file, or --compare BEFORE AFTER")
    import offrl

    names = args.algos.split(",") if args.algos else sorted(offrl.algos.list_algos())
    Path(args.out).write_text(json.dumps(fingerprints(names), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""d3rlpy 2.8.1's fitted Q evaluation as a peer row of ``benchmarks/ope.py``.

Called by ``benchmarks/ope.py --peer-fqe PYTHON`` with the peer venv's python::

    .venv-d3rlpy/bin/python benchmarks/peers/d3rlpy_fqe.py --job JOB.json --out RESULT.json [--threads 1]

The job (written by ``benchmarks/ope.py``) names an ``.npz`` of the logged transitions (the same rows offrl's
estimators read) and, per evaluation policy, the policy at every next observation and at every episode's start
state, drawn by offrl: action probabilities ``[N, K]`` (discrete) or ``M`` sampled actions ``[N, M, A]`` in env
units (continuous). The peer fits only the Q function, so both libraries evaluate exactly the same policies.

d3rlpy's FQE takes the policy as a d3rlpy algorithm whose ``impl.predict_best_action(next_observations)`` gives
one action per next state. ``TablePolicy`` stands in for it: it finds each next observation's row in the table
(by its float32 bytes, after the FQE's observation scaler when there is one) and returns one draw from that
row — a sampled action, as the stochastic policy would take. Unknown rows (only the zero successors d3rlpy gives
terminal steps, whose target is masked) get action 0; any other miss is an error. The time spent in the lookup
is reported (``table_lookup_seconds``): it is part of ``fit_seconds`` but not of d3rlpy's own cost.
The estimate is the mean over start states of E_{a~pi} Q-hat(s0, a): the exact sum over actions (discrete) or the
mean over the M draws (continuous).

Configs (``--configs``): ``default`` = ``d3rlpy.ope.FQEConfig()`` as shipped (lr 1e-4, batch 100, hard target
copy every 100 updates, 256x256 ReLU encoder, no observation scaler); ``matched`` = offrl's FQE settings in
d3rlpy's terms (lr 1e-3, batch 256, 128x128 encoder, a hard copy every 20 updates for offrl's Polyak rate 0.05,
standardised observations); ``matched-mse`` = ``matched`` with the discrete Q function's Huber loss replaced by
the squared error offrl's FQE uses (a diagnostic, not d3rlpy as shipped: its discrete FQE regresses single sampled
targets r + gamma Q(s', a'), a' ~ pi, with a Huber loss of threshold 1, which for a stochastic policy pulls the fit
towards the median of the targets rather than their mean; its continuous FQE already uses the squared error). All
take the job's ``steps`` and ``gamma``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def fail(message: str) -> None:
    print(f"d3rlpy FQE peer: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def key(rows: np.ndarray) -> list[bytes]:
    return [r.tobytes() for r in np.ascontiguousarray(rows, np.float32)]


class TablePolicy:
    """d3rlpy's view of an algorithm (``.impl.predict_best_action``) backed by offrl's table of the policy."""

    def __init__(self, next_obs: np.ndarray, table: np.ndarray, discrete: bool, seed: int):
        import torch

        self.torch = torch
        self.next_obs = np.asarray(next_obs, np.float32)
        self.index = {k: i for i, k in enumerate(key(self.next_obs))}
        self.table, self.discrete = table, discrete
        self.rng = np.random.default_rng(seed)
        self.zero_key = key(np.zeros((1, self.next_obs.shape[1]), np.float32))[0]
        self.misses = 0
        self.lookup_seconds = 0.0
        self.impl = self

    def use_scaler(self, scaler) -> None:
        """Key the table by the scaled next observations: the FQE hands its batches over scaled."""
        if scaler is not None:
            scaled = scaler.transform(self.torch.as_tensor(self.next_obs)).numpy()
            self.index = {k: i for i, k in enumerate(key(scaled))}
            zero = np.zeros((1, self.next_obs.shape[1]), np.float32)
            self.zero_key = key(scaler.transform(self.torch.as_tensor(zero)).numpy())[0]

    def predict_best_action(self, x):
        torch = self.torch
        t0 = time.perf_counter()
        keys = key(x.detach().cpu().numpy())
        rows = np.array([self.index.get(k, -1) for k in keys])
        self.misses += sum(r < 0 and k != self.zero_key for r, k in zip(rows, keys))
        rows = np.where(rows < 0, 0, rows)
        self.lookup_seconds += time.perf_counter() - t0
        if self.discrete:
            probs = self.table[rows]
            u = self.rng.random(len(rows))[:, None]
            acts = (u > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, probs.shape[1] - 1)
            return torch.as_tensor(acts, dtype=torch.long, device=x.device)
        draw = self.rng.integers(0, self.table.shape[1], len(rows))
        acts = self.table[rows, draw]
        return torch.as_tensor(acts, dtype=torch.float32, device=x.device)


HUBER = None  # d3rlpy's own loss function, kept by main()


def make_config(d3rlpy, name: str, gamma: float):
    import d3rlpy.models.torch.q_functions.mean_q_function as mean_q

    # the discrete forwarder's loss: d3rlpy's Huber loss for every config but matched-mse
    mean_q.compute_huber_loss = (lambda y, target: 0.5 * (target - y) ** 2) if name == "matched-mse" else HUBER
    if name == "default":
        return d3rlpy.ope.FQEConfig(gamma=gamma)
    if name in ("matched", "matched-mse"):
        return d3rlpy.ope.FQEConfig(
            gamma=gamma, learning_rate=1e-3, batch_size=256, target_update_interval=20,
            encoder_factory=d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=[128, 128]),
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler())
    fail(f"unknown config {name!r}: use default, matched or matched-mse")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", default="default,matched")
    args = ap.parse_args()
    try:
        job = json.loads(Path(args.job).read_text())
    except (OSError, ValueError) as e:
        fail(f"cannot read the job {args.job}: {e}")
    import logging

    import d3rlpy
    import structlog
    import torch
    from d3rlpy.algos.utility import build_scalers_with_transition_picker
    from d3rlpy.logging import NoopAdapterFactory

    global HUBER
    import d3rlpy.models.torch.q_functions.mean_q_function as mean_q

    HUBER = mean_q.compute_huber_loss
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # d3rlpy's info lines

    from d3rlpy_mdp import read_npz, to_mdp_dataset

    torch.set_num_threads(args.threads)
    discrete = bool(job["discrete"])
    arrays = read_npz(job["arrays"])
    dataset, info = to_mdp_dataset(arrays, source=job["arrays"], discrete=discrete, num_actions=job.get("num_actions"))
    if info["next_obs_mismatch_rows"]:
        fail(f"{info['next_obs_mismatch_rows']} rows have a stored next observation that is not the next row: "
             "d3rlpy would evaluate other successors than offrl")
    tables = np.load(job["tables"], allow_pickle=False)
    start_obs = tables["start_obs"].astype(np.float32)
    next_obs = arrays["next_observations"]
    print(f"d3rlpy {d3rlpy.__version__} torch {torch.__version__} threads {torch.get_num_threads()}; {info}", flush=True)
    results = []
    for i, pname in enumerate(job["policies"]):
        row = {"policy": pname}
        for cname in args.configs.split(","):
            d3rlpy.seed(int(job.get("seed", 0)))
            policy = TablePolicy(next_obs, tables[f"next_{i}"], discrete, seed=int(job.get("seed", 0)))
            config = make_config(d3rlpy, cname, float(job["gamma"]))
            fqe = (d3rlpy.ope.DiscreteFQE if discrete else d3rlpy.ope.FQE)(algo=policy, config=config)
            fqe.build_with_dataset(dataset)
            build_scalers_with_transition_picker(fqe, dataset)  # what fit() does first; the table needs the scaler
            policy.use_scaler(config.observation_scaler)
            t0 = time.perf_counter()
            steps = int(job["steps"])
            fqe.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, experiment_name=f"fqe_{i}_{cname}",
                    with_timestamp=False, logger_adapter=NoopAdapterFactory(), show_progress=False, save_interval=10**9)
            fit_s = time.perf_counter() - t0
            start = tables[f"start_{i}"]
            if discrete:
                k = start.shape[1]
                q = np.stack([fqe.predict_value(start_obs, np.full(len(start_obs), a, np.int64)) for a in range(k)], 1)
                v0 = (q * start).sum(axis=1)
            else:
                m = start.shape[1]
                obs_m = np.repeat(start_obs, m, axis=0)
                q = fqe.predict_value(obs_m, start.reshape(len(start_obs) * m, -1).astype(np.float32))
                v0 = q.reshape(len(start_obs), m).mean(axis=1)
            row[cname] = {"value": float(np.mean(v0)), "fit_seconds": round(fit_s, 2), "updates_per_s": round(steps / fit_s, 1),
                          "table_lookup_seconds": round(policy.lookup_seconds, 2), "missed_rows": int(policy.misses)}
            if policy.misses:
                fail(f"{pname}: {policy.misses} next observations of the batches are not in offrl's table")
            print(f"{pname} [{cname}]: {row[cname]['value']:.2f} ({fit_s:.0f} s, {steps / fit_s:.0f} updates/s, of which "
                  f"{policy.lookup_seconds:.1f} s in the table lookup)", flush=True)
        results.append(row)
    out = {"library_version": d3rlpy.__version__, "torch_version": torch.__version__, "threads": torch.get_num_threads(),
           "dataset": info, "steps": int(job["steps"]), "gamma": float(job["gamma"]), "configs": args.configs.split(","),
           "policies": results}
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

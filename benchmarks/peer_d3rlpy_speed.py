"""Peer side of the speed benchmark: updates/s of d3rlpy's IQL and TD3+BC on CPU.

Run it with the peer venv's python (see benchmarks/README.md, "The d3rlpy environment"), not with
offrl's environment:

    .venv-d3rlpy/bin/python benchmarks/peer_d3rlpy_speed.py --make-data /tmp/hopper_like.npz
    .venv-d3rlpy/bin/python benchmarks/peer_d3rlpy_speed.py --data /tmp/hopper_like.npz \
        --algos iql,td3bc --updates 1000 --threads 1 --out peer.json

What is timed is exactly the inner loop of d3rlpy's own ``fit`` (d3rlpy 2.8.1,
``QLearningAlgoBase.fitter``)::

    batch = dataset.sample_transition_batch(batch_size)   # python-level sampling, included
    loss = algo.update(batch)                              # numpy -> torch + one gradient step

minus fit's logging/progress-bar bookkeeping. A warm-up of ``--warmup`` updates runs first.

Dataset semantics. The .npz holds flat transitions (observations, actions, rewards,
next_observations, terminals, timeouts); ``benchmarks/d3rlpy_mdp.py`` (shared with the
``offrl bench --peer d3rlpy`` runner) turns them into d3rlpy's ``MDPDataset``: episodes cut at
``terminals | timeouts``, successor = ``observations[t + 1]`` inside an episode, the last step of
a timed-out episode never sampled (see that module's docstring).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

OBS_DIM = 11  # Hopper
ACT_DIM = 3
ALIASES = {"iql": "iql", "cql": "cql", "td3bc": "td3bc", "td3+bc": "td3bc", "td3_plus_bc": "td3bc",
           "td3plusbc": "td3bc"}


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------


def make_data(path: str, n: int = 1_000_000, episode_len: int = 1000, seed: int = 0,
              obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM) -> dict[str, np.ndarray]:
    """Write a Hopper-sized synthetic dataset: episodes of `episode_len` steps, timeouts at ends.

    Observations follow a random walk inside each episode, so ``next_observations[t] ==
    observations[t + 1]`` within an episode; the last step's successor is a fresh state.
    Everything is float32; terminals are all 0 (every episode ends by timeout).
    """
    rng = np.random.default_rng(seed)
    n_ep = -(-n // episode_len)
    steps = rng.normal(0.0, 0.1, size=(n + n_ep, obs_dim)).astype(np.float32)
    obs_all = np.empty((n + n_ep, obs_dim), dtype=np.float32)
    # Each episode owns len+1 states (s_0 .. s_len); random walk from a random start.
    obs_parts, next_parts = [], []
    pos = 0
    for e in range(n_ep):
        length = min(episode_len, n - e * episode_len)
        seg = steps[pos:pos + length + 1]
        seg[0] = rng.normal(0.0, 1.0, size=obs_dim).astype(np.float32)
        np.cumsum(seg, axis=0, out=obs_all[pos:pos + length + 1])
        obs_parts.append(obs_all[pos:pos + length])
        next_parts.append(obs_all[pos + 1:pos + length + 1])
        pos += length + 1
    observations = np.concatenate(obs_parts)
    next_observations = np.concatenate(next_parts)
    actions = np.tanh(rng.normal(0.0, 1.0, size=(n, act_dim))).astype(np.float32)
    rewards = rng.normal(1.0, 0.5, size=n).astype(np.float32)
    terminals = np.zeros(n, dtype=np.float32)
    timeouts = np.zeros(n, dtype=np.float32)
    timeouts[np.minimum(np.arange(1, n_ep + 1) * episode_len, n) - 1] = 1.0
    arrays = {"observations": observations, "actions": actions, "rewards": rewards,
              "next_observations": next_observations, "terminals": terminals,
              "timeouts": timeouts}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    return arrays


# ---------------------------------------------------------------------------------------------
# d3rlpy side
# ---------------------------------------------------------------------------------------------


def load_mdp_dataset(path: str):
    """Load the .npz into a d3rlpy MDPDataset; returns (dataset, info dict)."""
    from d3rlpy_mdp import read_npz, to_mdp_dataset  # benchmarks/d3rlpy_mdp.py (this folder)

    return to_mdp_dataset(read_npz(path), source=path)


def build_algo(name: str, batch_size: int):
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory

    def enc():
        return VectorEncoderFactory(hidden_units=[256, 256], activation="relu")

    if name == "iql":
        # Kostrikov et al. 2021 locomotion settings (= d3rlpy's defaults).
        config = d3rlpy.algos.IQLConfig(
            batch_size=batch_size, gamma=0.99, tau=0.005, n_critics=2,
            actor_learning_rate=3e-4, critic_learning_rate=3e-4,
            expectile=0.7, weight_temp=3.0, max_weight=100.0,
            actor_encoder_factory=enc(), critic_encoder_factory=enc(),
            value_encoder_factory=enc(), compile_graph=False)
    elif name == "td3bc":
        # Fujimoto & Gu 2021 (= d3rlpy's defaults).
        config = d3rlpy.algos.TD3PlusBCConfig(
            batch_size=batch_size, gamma=0.99, tau=0.005, n_critics=2,
            actor_learning_rate=3e-4, critic_learning_rate=3e-4,
            target_smoothing_sigma=0.2, target_smoothing_clip=0.5, alpha=2.5,
            update_actor_interval=2,
            actor_encoder_factory=enc(), critic_encoder_factory=enc(), compile_graph=False)
    elif name == "cql":
        # The settings of d3rlpy's reproduction script (as benchmarks/peers/d3rlpy.py runs it: Lagrangian
        # alpha from e with threshold 10, 10 sampled actions), with offrl's default CQL networks
        # (3 x 256, the CQL authors') so both sides do the same arithmetic per update.
        config = d3rlpy.algos.CQLConfig(
            batch_size=batch_size, gamma=0.99, tau=0.005, n_critics=2,
            actor_learning_rate=1e-4, critic_learning_rate=3e-4, temp_learning_rate=1e-4,
            alpha_learning_rate=3e-4, initial_alpha=2.718281828459045, alpha_threshold=10.0,
            conservative_weight=5.0, n_action_samples=10,
            actor_encoder_factory=VectorEncoderFactory(hidden_units=[256, 256, 256], activation="relu"),
            critic_encoder_factory=VectorEncoderFactory(hidden_units=[256, 256, 256], activation="relu"),
            compile_graph=False)
    else:
        raise SystemExit(f"unknown algo {name!r}; choose from iql, td3bc, cql")
    # cpu:0 unless OFFRL_PEER_DEVICE names another torch device (cuda:0 on a GPU machine), as the peer runner
    return config.create(device=os.environ.get("OFFRL_PEER_DEVICE", "cpu:0"))


def linear_shapes(algo) -> dict[str, str]:
    """(in, out) of every nn.Linear in each module of the built algorithm (to prove 256x256)."""
    import torch

    shapes = {}
    for field_name in type(algo.impl.modules).__dataclass_fields__:
        mod = getattr(algo.impl.modules, field_name)
        if isinstance(mod, torch.nn.Module) and field_name.startswith(("policy", "q_funcs",
                                                                        "value_func")):
            shapes[field_name] = " ".join(f"{m.in_features}x{m.out_features}"
                                          for m in mod.modules()
                                          if isinstance(m, torch.nn.Linear))
    return shapes


def check_hidden_units(algo, expected: list[int]) -> None:
    """Every encoder of every trained network must be a VectorEncoder(WithAction) of `expected`."""
    import torch
    from d3rlpy.models.torch.encoders import (Encoder, EncoderWithAction, VectorEncoder,
                                              VectorEncoderWithAction)

    seen = 0
    for field_name in type(algo.impl.modules).__dataclass_fields__:
        mod = getattr(algo.impl.modules, field_name)
        if not isinstance(mod, torch.nn.Module):
            continue
        for sub in mod.modules():
            if isinstance(sub, (Encoder, EncoderWithAction)):
                assert isinstance(sub, (VectorEncoder, VectorEncoderWithAction)), type(sub)
                outs = [m.out_features for m in sub.modules() if isinstance(m, torch.nn.Linear)]
                assert outs == expected, f"{field_name}: hidden units {outs}, expected {expected}"
                seen += 1
    assert seen > 0, "no encoder found"


def bench(name: str, dataset, updates: int, warmup: int, batch_size: int, threads: int,
          seed: int) -> dict:
    import d3rlpy
    import torch
    from d3rlpy.algos.utility import build_scalers_with_transition_picker

    d3rlpy.seed(seed)
    algo = build_algo(name, batch_size)
    build_scalers_with_transition_picker(algo, dataset)  # as fit does (no-op: no scalers)
    algo.build_with_dataset(dataset)
    shapes = linear_shapes(algo)
    check_hidden_units(algo, [256, 256, 256] if name == "cql" else [256, 256])

    for _ in range(warmup):
        algo.update(dataset.sample_transition_batch(batch_size))

    t_sample = t_update = 0.0
    t0 = time.perf_counter()
    for _ in range(updates):
        a = time.perf_counter()
        batch = dataset.sample_transition_batch(batch_size)
        b = time.perf_counter()
        loss = algo.update(batch)
        c = time.perf_counter()
        t_sample += b - a
        t_update += c - b
    elapsed = time.perf_counter() - t0
    if not all(np.isfinite(v) for v in loss.values()):
        raise SystemExit(f"{name}: non-finite loss {loss}")
    return {
        "updates_per_s": updates / elapsed,
        "updates": updates,
        "threads": threads,
        "d3rlpy": d3rlpy.__version__,
        "torch": torch.__version__,
        "seconds": elapsed,
        "warmup": warmup,
        "batch_size": batch_size,
        "sample_s": t_sample,
        "update_s": t_update,
        "device": os.environ.get("OFFRL_PEER_DEVICE", "cpu:0"),
        "torch_num_threads": torch.get_num_threads(),
        "linear_layers": shapes,
        "last_loss": {k: float(v) for k, v in loss.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--make-data", metavar="FILE.npz",
                   help="write a synthetic Hopper-sized dataset and exit")
    p.add_argument("--n", type=int, default=1_000_000, help="transitions for --make-data")
    p.add_argument("--episode-len", type=int, default=1000, help="episode length for --make-data")
    p.add_argument("--data", metavar="FILE.npz", help="dataset to benchmark on")
    p.add_argument("--algos", default="iql,td3bc", help="comma list of iql, td3bc")
    p.add_argument("--updates", type=int, default=1000, help="timed updates per algorithm")
    p.add_argument("--warmup", type=int, default=50, help="untimed updates first")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="OUT.json", help="write the results here (also printed)")
    args = p.parse_args(argv)

    if args.make_data:
        t0 = time.perf_counter()
        make_data(args.make_data, n=args.n, episode_len=args.episode_len, seed=args.seed)
        print(f"wrote {args.make_data} ({args.n} transitions, episodes of {args.episode_len}) "
              f"in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        if not args.data:
            return 0
    if not args.data:
        p.error("--data FILE.npz is required (or --make-data FILE.npz)")

    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass
    import d3rlpy

    algos = []
    for raw in args.algos.split(","):
        key = raw.strip().lower()
        if key:
            if key not in ALIASES:
                p.error(f"unknown algo {raw!r}; choose from iql, td3bc, cql")
            algos.append(ALIASES[key])

    results = {}
    # d3rlpy logs (structlog) to stdout; keep stdout for the JSON only.
    with contextlib.redirect_stdout(sys.stderr):
        t0 = time.perf_counter()
        dataset, info = load_mdp_dataset(args.data)
        print(f"d3rlpy {d3rlpy.__version__} torch {torch.__version__} threads "
              f"{torch.get_num_threads()}; dataset {info} built in "
              f"{time.perf_counter() - t0:.1f}s")
        for name in algos:
            r = bench(name, dataset, args.updates, args.warmup, args.batch_size,
                      args.threads, args.seed)
            r["dataset"] = info
            results[name] = r
            print(f"{name}: {r['updates_per_s']:.1f} updates/s "
                  f"(sample {r['sample_s']:.2f}s + update {r['update_s']:.2f}s "
                  f"over {r['updates']} updates)")

    text = json.dumps(results, indent=2)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of an N-critic ensemble as ONE vmapped network against the same ensemble as N separate networks.

    python benchmarks/ensemble_speed.py                          # sac_n and edac, N = 10, one core
    python benchmarks/ensemble_speed.py --algos sac_n --num-qs 10 --updates 500 --chunk 250

Both variants run the registered algorithm's own ``update`` in the same jitted ``lax.scan`` over
``chunk`` updates (batches sampled on the device, as ``offrl.fit`` does); they differ only in the
critic module inside the state: ``offrl.nets.Critic`` (``nn.vmap`` of one MLP over a stacked
parameter axis: each layer is one batched matmul) or ``LoopedCritic`` below (N Flax MLPs with
parameters of their own, called one after another in Python while tracing: N matmuls per layer).
Same widths, same data, same keys. The chunk is compiled first (timed as the compile time), one
warm-up chunk runs, then ``ceil(updates / chunk)`` chunks are timed with ``jax.block_until_ready``.

One core: the process pins itself to the first core it may use (``sched_setaffinity``, as
``taskset -c 0``) and sets ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1`` before jax is imported. The data is a synthetic Hopper-sized
dataset (11-dim observations, 3-dim actions). Prints a table; writes no files.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", default="sac_n,edac", help="comma-separated: sac_n, edac")
    p.add_argument("--num-qs", type=int, default=10, help="critics N in the ensemble")
    p.add_argument("--updates", type=int, default=400, help="timed updates per variant")
    p.add_argument("--chunk", type=int, default=200, help="updates per compiled call (lax.scan)")
    p.add_argument("--size", type=int, default=20_000, help="transitions in the synthetic dataset")
    p.add_argument("--threads", type=int, default=1, help="cores (1: the single-core measurement)")
    args = p.parse_args(argv)
    args.algos = [a.strip().lower().replace("-", "_") for a in args.algos.split(",") if a.strip()]
    bad = [a for a in args.algos if a not in ("sac_n", "edac")]
    if bad:
        p.error(f"--algos: {', '.join(bad)} unknown; choose from sac_n, edac")
    return args


def pin_threads(threads: int) -> str:
    """One core (or ``threads``) for this process and XLA's CPU client; must run before jax is imported."""
    if "jax" in sys.modules:
        raise RuntimeError("jax was imported before XLA_FLAGS was set")
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(allowed[:threads]))
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    return f"cores {sorted(os.sched_getaffinity(0))}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"


def looped_critic_class():
    import flax.linen as nn
    import jax.numpy as jnp

    from offrl.nets import MLP

    class LoopedCritic(nn.Module):
        """``offrl.nets.Critic``'s interface with N separate MLPs (a Python loop unrolled at trace time)."""

        hidden_dims: tuple
        num_qs: int = 2

        @nn.compact
        def __call__(self, observations, actions, per_member: bool = False):
            x = jnp.concatenate([observations, actions], axis=-1)
            return jnp.stack([MLP(self.hidden_dims, 1, name=f"q_{i}")(x[i] if per_member else x)[..., 0]
                              for i in range(self.num_qs)])

    return LoopedCritic


def synthetic_dataset(size: int):
    import numpy as np

    from offrl.data import Dataset, DatasetInfo

    rng = np.random.default_rng(0)
    obs = rng.normal(size=(size, 11)).astype(np.float32)
    timeouts = np.zeros(size, np.float32)
    timeouts[999::1000] = 1.0
    timeouts[-1] = 1.0
    return Dataset.from_arrays(observations=obs, actions=rng.uniform(-1, 1, (size, 3)).astype(np.float32),
                               rewards=rng.normal(size=size).astype(np.float32),
                               next_observations=obs + 0.1 * rng.normal(size=obs.shape).astype(np.float32),
                               terminals=np.zeros(size, np.float32), timeouts=timeouts,
                               info=DatasetInfo(name="hopper-sized", action_low=[-1.0] * 3, action_high=[1.0] * 3))


def time_variant(algo, config, dataset, looped: bool, updates: int, chunk: int) -> dict:
    import jax
    import optax
    from flax.training.train_state import TrainState

    from offrl.algos import DataSpec
    from offrl.data import fit_transforms
    from offrl.train import device_data

    transforms = fit_transforms(dataset, algo.normalize_observations, algo.reward_scaling)
    data = device_data(algo, config, dataset, transforms)
    spec = DataSpec.from_dataset(dataset)
    state = algo.init(config, spec, jax.random.PRNGKey(0), updates)
    if looped:
        net = looped_critic_class()(tuple(config.hidden_dims), config.num_qs)
        params = net.init(jax.random.PRNGKey(1), data.observations[:1], data.actions[:1])
        state = state.replace(critic=TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(config.critic_lr)),
                              target_critic_params=params)

    def run(state, key, data):
        def body(carry, _):
            state, key = carry
            key, k_batch, k_update = jax.random.split(key, 3)
            state, metrics = algo.update(config, state, algo.make_batch(config, data, k_batch), k_update)
            return (state, key), metrics["critic_loss"]

        (state, key), losses = jax.lax.scan(body, (state, key), None, length=chunk)
        return state, key, losses.mean()

    key = jax.random.PRNGKey(2)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(state, key, data).compile()
    compile_s = time.perf_counter() - t0
    state, key, loss = jax.block_until_ready(compiled(state, key, data))  # warm-up chunk
    n_chunks = math.ceil(updates / chunk)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_chunks):
        state, key, loss = compiled(state, key, data)
    jax.block_until_ready(loss)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not math.isfinite(float(loss)):
        raise RuntimeError(f"{algo.name}: the critic loss is not finite ({loss})")
    return {"updates_per_s": n_chunks * chunk / wall, "compile_s": compile_s, "cpu_per_wall": cpu / wall,
            "critic_params": sum(x.size for x in jax.tree.leaves(state.critic.params))}


def main(argv=None) -> int:
    args = parse_args(argv)
    threading = pin_threads(args.threads)
    import jax  # noqa: F401  (after the XLA flags)

    from offrl.algos import get_algo

    dataset = synthetic_dataset(args.size)
    print(f"# ensemble speed: N = {args.num_qs}, {args.updates} timed updates in chunks of {args.chunk}; {threading}; "
          f"jax {jax.__version__}, {jax.devices()[0].platform}")
    print("| algorithm | critic | updates/s | compile (s) | CPU/wall | critic parameters |")
    print("|---|---|---|---|---|---|")
    for name in args.algos:
        algo = get_algo(name)
        config = algo.config_cls(num_qs=args.num_qs)
        rows = {}
        for looped in (False, True):
            rows[looped] = r = time_variant(algo, config, dataset, looped, args.updates, args.chunk)
            label = f"{args.num_qs} separate networks (loop)" if looped else "one vmapped ensemble"
            print(f"| {name} | {label} | {r['updates_per_s']:.1f} | {r['compile_s']:.1f} | {r['cpu_per_wall']:.2f} | "
                  f"{r['critic_params']} |", flush=True)
        print(f"| {name} | vmapped / loop | {rows[False]['updates_per_s'] / rows[True]['updates_per_s']:.2f}x | | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

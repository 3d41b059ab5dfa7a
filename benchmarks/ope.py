"""How good is each off-policy estimator on offrl's own data? (in the spirit of Fu et al. 2021, "Benchmarks for
Deep Off-Policy Evaluation")

    python benchmarks/ope.py DATASET [--size N] [--agent-steps N] [--fqe-steps N] [--mc-episodes N] [--max-weight C] [--out FILE.json]

A set of evaluation policies of known value is scored by every estimator of ``offrl.ope`` from the logged
DATASET, and each estimator is judged over the set against the policies' Monte-Carlo values (``--mc-episodes``
episodes each, discounted with the estimators' gamma, reset seeds 10_000 + i, never the data's):
normalised absolute error, Spearman rank correlation, regret@1 and regret@5 (``offrl.ope.metrics``).

Evaluation policies:

* discrete datasets (``cartpole-*``, ``acrobot-*``): the task's controller with epsilon-greedy noise,
  epsilon in 0.05, 0.2, 0.4, 0.6, 0.8, 1.0 (exact densities), and offrl agents trained on DATASET for
  ``--agent-steps`` updates (bc_discrete, dqn_offline, cql_discrete, iql_discrete), evaluated as their
  sampled (softmax) policy;
* continuous datasets of an env with a zoo (``pendulum-*``, ``hopper-*``, ...): the zoo's snapshot series,
  medium and expert (tanh-Gaussian SAC policies, sampled); the behaviour is the dataset's stored log-probs when
  it has them (pendulum-random), else the fitted proxy.

DATASET is a built-in name or a file; ``--episodes N`` keeps its first N episodes.

Peer row: ``--peer-fqe .venv-d3rlpy/bin/python`` also fits d3rlpy's FQE (``benchmarks/peers/d3rlpy_fqe.py``, its
shipped defaults and offrl's settings) on the same transitions for the same policies, handed over as tables of the
policy's probabilities / draws at every next observation and start state, with offrl's update count; its rows are
``d3rlpy-fqe`` and ``d3rlpy-fqe-matched`` (``--peer-configs``; ``matched-mse`` swaps the discrete FQE's Huber loss
for the squared error, a diagnostic). ``--mc-from PREVIOUS.json`` reuses the Monte-Carlo values of an earlier
run of the same policies (same names; the MC evaluation is deterministic given the policy) instead of re-running them.

Writes the JSON (every policy's MC value and estimates with intervals, the metrics) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from offrl.data import load_dataset
from offrl.evaluate import evaluate
from offrl.ope import (FQEConfig, ModelBasedConfig, OPEConfig, Policy, ProxyConfig, behaviour_log_probs, episodes_of,
                       evaluate_policy, normalised_absolute_error, regret_at_k, spearman)
from offrl.ope.run import WEIGHTED

EPSILONS = (0.05, 0.2, 0.4, 0.6, 0.8, 1.0)
AGENTS = ("bc_discrete", "dqn_offline", "cql_discrete", "iql_discrete")


def jax_controller(task_key: str):
    """The discrete task's scripted controller in jnp (checked against the numpy one on the data)."""
    from offrl.envs.discrete import ACROBOT_PUMP, CARTPOLE_GAINS

    if task_key == "cartpole":
        gains = jnp.asarray(CARTPOLE_GAINS, jnp.float32)
        return lambda o: (o @ gains > 0.0).astype(jnp.int32)
    if task_key == "acrobot":
        return lambda o: jnp.where(o[:, 5] - ACROBOT_PUMP * o[:, 4] > 0.0, 2, 0).astype(jnp.int32)
    raise SystemExit(f"no jnp controller for {task_key!r}: use cartpole-* or acrobot-*")


def discrete_policies(dataset, task_key: str, agent_steps: int, log) -> list[tuple[str, Policy, callable]]:
    """(name, Policy, numpy act(obs [B, d], rng) -> actions) of every evaluation policy."""
    from offrl.envs.discrete import TASKS

    task = TASKS[task_key]
    k = task.num_actions
    ctrl = jax_controller(task_key)
    obs = np.asarray(dataset.observations)
    assert (np.asarray(ctrl(jnp.asarray(obs))) == task.controller(obs)).all(), "jnp controller differs from numpy's"
    out = []
    for eps in EPSILONS:
        probs = lambda o, eps=eps: (1.0 - eps) * jax.nn.one_hot(ctrl(o), k) + eps / k
        policy = Policy("categorical", lambda o, probs=probs: jnp.log(probs(o)), obs.shape[1], num_actions=k,
                        name=f"eps-greedy {eps:g}")

        def act(o, rng, eps=eps):
            greedy = task.controller(o)
            return np.where(rng.random(len(o)) < eps, rng.integers(0, k, len(o)), greedy)

        out.append((policy.name, policy, act))
    if agent_steps:
        from offrl.agent import load_agent
        from offrl.algos import get_algo
        from offrl.offpolicy import agent_policy
        from offrl.train import fit

        for name in AGENTS:
            run = Path("runs/ope-bench") / f"{name}-{dataset.info.name}-{agent_steps}"
            if not (run / "checkpoint.msgpack").exists():
                log(f"training {name} for {agent_steps} updates")
                fit(get_algo(name).config_cls(), dataset, steps=agent_steps, run_dir=run, progress=False, plot=False,
                    evaluate_at_end=False)
            agent = load_agent(run)
            policy = agent_policy(agent, stochastic=True, name=f"{name} {agent_steps}")
            out.append((policy.name, policy, lambda o, rng, agent=agent: agent.act(o, deterministic=False)))
    return out


def zoo_policies(dataset) -> list[tuple[str, Policy, callable]]:
    from offrl.envs.policies import load_zoo_policy, zoo_series

    env_id = dataset.info.env_id
    low, high = np.asarray(dataset.info.action_low, np.float32), np.asarray(dataset.info.action_high, np.float32)
    scale, offset = (high - low) / 2.0, (high + low) / 2.0
    out = []
    for role in [*zoo_series(env_id), "medium", "expert"]:
        zp = load_zoo_policy(env_id, role)
        layers = [(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)) for w, b in zp.layers]

        def outputs(o, layers=layers):
            x = o
            for i, (w, b) in enumerate(layers):
                x = x @ w + b
                if i < len(layers) - 1:
                    x = jax.nn.relu(x)
            mean, log_std = jnp.split(x, 2, axis=-1)
            return mean, jnp.clip(log_std, -20.0, 2.0)

        # the zoo policies act in the unit box; the dataset's bounds map it to env units
        policy = Policy("tanh_gaussian", outputs, zp.obs_dim, action_scale=scale, action_offset=offset, name=role)
        out.append((role, policy, lambda o, rng, zp=zp: offset + scale * zp.act(o, rng)))
    return out


def monte_carlo(env_id: str, act, episodes: int, discount: float) -> float:
    rng = np.random.default_rng(12345)
    fn = lambda o: np.asarray(act(o[0], rng))[None]  # one policy: (1, E, d) -> (1, E[, A])
    return float(evaluate(fn, env_id, episodes=episodes, seed=10_000, discount=discount)[0]["discounted_return_mean"])


PEER_CONFIGS = {"default": "d3rlpy-fqe", "matched": "d3rlpy-fqe-matched", "matched-mse": "d3rlpy-fqe-matched-mse"}


def peer_fqe_rows(args, dataset, episodes, policies, rows, log) -> tuple[str, ...]:
    """Fit d3rlpy's FQE in its venv on the same transitions and policies; adds its estimates to ``rows``."""
    import tempfile

    from offrl.ope.policy import action_probs, in_blocks, sample

    work = Path(tempfile.mkdtemp(prefix="ope-peer-"))
    np.savez(work / "arrays.npz", observations=dataset.observations, actions=dataset.actions, rewards=dataset.rewards,
             next_observations=dataset.next_observations, terminals=dataset.terminals, timeouts=dataset.timeouts)
    start_obs = np.asarray(dataset.observations, np.float32)[episodes.start_index]
    tables = {"start_obs": start_obs}
    for i, (_, policy, _) in enumerate(policies):
        if policy.discrete:
            probs = jax.jit(lambda o, policy=policy: action_probs(policy, o))
            tables[f"next_{i}"] = in_blocks(probs, dataset.next_observations).astype(np.float32)
            tables[f"start_{i}"] = in_blocks(probs, start_obs).astype(np.float32)
        else:  # 10 draws per state in env units, as offrl's FQE averages over (FQEConfig.action_samples)
            draws = jax.jit(lambda o, k, policy=policy: jnp.swapaxes(
                jax.vmap(lambda kk: sample(policy, o, kk))(jax.random.split(k, 10)), 0, 1))
            tables[f"next_{i}"] = in_blocks(draws, dataset.next_observations, key=jax.random.PRNGKey(i)).astype(np.float32)
            tables[f"start_{i}"] = in_blocks(draws, start_obs, key=jax.random.PRNGKey(1000 + i)).astype(np.float32)
    np.savez(work / "tables.npz", **tables)
    job = {"arrays": str(work / "arrays.npz"), "tables": str(work / "tables.npz"), "discrete": bool(dataset.is_discrete),
           "num_actions": dataset.info.num_actions, "policies": [name for name, _, _ in policies],
           "steps": args.fqe_steps, "gamma": args.discount, "seed": 0}
    (work / "job.json").write_text(json.dumps(job))
    script = Path(__file__).resolve().parent / "peers" / "d3rlpy_fqe.py"
    log(f"d3rlpy FQE peer: {args.peer_fqe} {script} (job {work / 'job.json'})")
    configs = args.peer_configs.split(",")
    subprocess.run([args.peer_fqe, str(script), "--job", str(work / "job.json"), "--out", str(work / "result.json"),
                    "--threads", str(args.peer_threads), "--configs", ",".join(configs)], check=True)
    result = json.loads((work / "result.json").read_text())
    for row, peer in zip(rows, result["policies"]):
        assert row["policy"] == peer["policy"]
        for cname in configs:
            row["estimates"][PEER_CONFIGS[cname]] = {"estimator": PEER_CONFIGS[cname], **peer[cname]}
    return tuple(PEER_CONFIGS[c] for c in configs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--size", type=int, default=None, help="transitions (default: the built-in size)")
    ap.add_argument("--episodes", type=int, default=None, help="keep only the first N episodes of the data")
    ap.add_argument("--agent-steps", type=int, default=3000)
    ap.add_argument("--fqe-steps", type=int, default=4000)
    ap.add_argument("--fqe-hidden-dims", type=int, nargs="+", default=[128, 128])
    ap.add_argument("--proxy-steps", type=int, default=5000)
    ap.add_argument("--mc-episodes", type=int, default=100)
    ap.add_argument("--discount", type=float, default=0.99)
    ap.add_argument("--estimators", default="is,wis,pdis,wpdis,dr,wdr,fqe")
    ap.add_argument("--mb-max-epochs", type=int, default=20)
    ap.add_argument("--max-weight", type=float, default=None, help="clip the per-decision importance weights")
    ap.add_argument("--peer-fqe", default=None, metavar="PYTHON", help="the d3rlpy venv's python: add d3rlpy's FQE rows")
    ap.add_argument("--peer-threads", type=int, default=1)
    ap.add_argument("--peer-configs", default="default,matched", help=f"of {', '.join(PEER_CONFIGS)}")
    ap.add_argument("--mc-from", default=None, metavar="JSON", help="reuse the MC values of an earlier run of this script")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    unknown = sorted(set(args.peer_configs.split(",")) - set(PEER_CONFIGS))
    if unknown:
        ap.error(f"--peer-configs: unknown {', '.join(unknown)}; choose among {', '.join(PEER_CONFIGS)}")
    if args.peer_fqe and not Path(args.peer_fqe).is_file():
        ap.error(f"--peer-fqe {args.peer_fqe}: no such python; create the peer venv (benchmarks/README.md)")
    if args.mc_from and not Path(args.mc_from).is_file():
        ap.error(f"--mc-from {args.mc_from}: no such file; pass the JSON an earlier run wrote with --out")
    log = lambda m: print(m, file=sys.stderr, flush=True)
    t0 = time.time()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()  # at start
    if args.size:
        from offrl.data import Dataset
        from offrl.data.registry import make_dataset, offrl_home

        path = offrl_home() / "ope-bench" / f"{args.dataset}-{args.size}.npz"
        if not path.exists():
            make_dataset(args.dataset, size=args.size, out=path)
        dataset = Dataset.load(path)
    else:
        dataset = load_dataset(args.dataset)
    episodes = episodes_of(dataset)
    env_id = dataset.info.env_id
    task_key = Path(args.dataset).stem.split("-")[0]
    if args.episodes:
        dataset = dataset.select_episodes(np.arange(min(args.episodes, dataset.num_episodes)))
        episodes = episodes_of(dataset)
    policies = zoo_policies(dataset) if not dataset.is_discrete else discrete_policies(dataset, task_key, args.agent_steps, log)
    estimators = tuple(args.estimators.split(","))
    config = OPEConfig(discount=args.discount, max_weight=args.max_weight)
    fqe = FQEConfig(discount=args.discount, steps=args.fqe_steps, hidden_dims=tuple(args.fqe_hidden_dims), chunk=args.fqe_steps)
    model = ModelBasedConfig(discount=args.discount, max_epochs=args.mb_max_epochs)
    # Only the importance-weighted estimators need the behaviour's log-probs (a proxy fit when the data has none).
    behaviour = behaviour_log_probs(dataset, ProxyConfig(steps=args.proxy_steps), log) if set(estimators) & set(WEIGHTED) else None
    source = behaviour.source if behaviour else "not needed"
    log(f"{dataset.info.name}: {len(dataset)} transitions, {episodes.num_episodes} episodes, behaviour {source}")
    previous_mc = {}
    if args.mc_from:
        prev = json.loads(Path(args.mc_from).read_text())
        previous_mc = {r["policy"]: r["mc_value"] for r in prev["policies"]}
        missing = [name for name, _, _ in policies if name not in previous_mc]
        if missing or prev["discount"] != args.discount or prev["mc_episodes"] != args.mc_episodes:
            ap.error(f"--mc-from {args.mc_from}: it lacks {missing} or used another discount / --mc-episodes")
    rows = []
    for name, policy, act in policies:
        t = time.time()
        mc = previous_mc[name] if name in previous_mc else monte_carlo(env_id, act, args.mc_episodes, args.discount)
        estimates, skipped = evaluate_policy(dataset, policy, estimators, config=config, behaviour=behaviour, fqe=fqe,
                                             model=model, episodes=episodes, strict=False)
        rows.append({"policy": name, "mc_value": mc, "estimates": {e.estimator: e.to_dict() for e in estimates},
                     "skipped": skipped, "seconds": time.time() - t})
        log(f"{name}: MC {mc:.2f} | " + " ".join(f"{e.estimator} {e.value:.2f}" for e in estimates) + f" ({time.time() - t:.0f} s)")
    if args.peer_fqe:
        estimators += peer_fqe_rows(args, dataset, episodes, policies, rows, log)
    values = np.array([r["mc_value"] for r in rows])
    metrics = {}
    for est in estimators:
        got = [r["estimates"].get(est, {}).get("value") for r in rows]
        if any(g is None or not np.isfinite(g) for g in got):
            metrics[est] = None
            continue
        metrics[est] = {"nae": normalised_absolute_error(got, values), "spearman": spearman(got, values),
                        "regret@1": regret_at_k(got, values, 1), "regret@5": regret_at_k(got, values, 5),
                        "mean_ess_fraction": float(np.mean([r["estimates"][est].get("ess_fraction", np.nan) for r in rows])),
                        "coverage": float(np.mean([r["estimates"][est]["ci_low"] <= r["mc_value"] <= r["estimates"][est]["ci_high"]
                                                   for r in rows])) if "ci_low" in rows[0]["estimates"][est] else float("nan")}
    result = {"dataset": dataset.info.name, "transitions": len(dataset), "episodes": episodes.num_episodes,
              "behaviour": source, "behaviour_nll": behaviour.nll if behaviour else None, "discount": args.discount,
              "fqe_steps": args.fqe_steps, "fqe_hidden_dims": args.fqe_hidden_dims, "agent_steps": args.agent_steps, "mc_episodes": args.mc_episodes, "max_weight": args.max_weight,
              "mc_from": args.mc_from, "commit": commit, "seconds": time.time() - t0, "policies": rows, "metrics": metrics,
              "command": " ".join(sys.argv)}
    print(f"\n{dataset.info.name} ({len(dataset)} transitions, {episodes.num_episodes} episodes, behaviour "
          f"{source}), {len(rows)} policies, discount {args.discount}\n")
    print("| policy | MC value | " + " | ".join(estimators) + " |")
    print("|---|---:|" + "---:|" * len(estimators))
    for r in rows:
        cells = [f"{r['estimates'][e]['value']:.1f}" if e in r["estimates"] else "—" for e in estimators]
        print(f"| {r['policy']} | {r['mc_value']:.1f} | " + " | ".join(cells) + " |")
    print("\n| estimator | normalised abs. error | Spearman | regret@1 | regret@5 | mean ESS/n | MC value inside the 95% CI |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for est, m in metrics.items():
        if m is None:
            print(f"| {est} | — | — | — | — | — | — |")
        else:
            print(f"| {est} | {m['nae']:.3f} | {m['spearman']:.2f} | {m['regret@1']:.3f} | {m['regret@5']:.3f} | "
                  f"{m['mean_ess_fraction']:.3f} | " + ("—" if np.isnan(m["coverage"]) else f"{m['coverage']:.0%}") + " |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(f"\n{time.time() - t0:.0f} s, commit {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""D4RL-protocol locomotion datasets generated locally from the behaviour-policy zoo.

Names are ``ENV-KIND`` with ENV in ``hopper``, ``halfcheetah``, ``walker2d`` (Gymnasium
``Hopper-v5``, ``HalfCheetah-v5``, ``Walker2d-v5``) and KIND one of

* ``random``: uniform random actions (1M transitions);
* ``medium``: the zoo's medium snapshot, actions sampled from its tanh-Gaussian (1M);
* ``expert``: the zoo's expert, sampled likewise (1M);
* ``medium-replay``: the snapshot series up to medium (``series-*`` then ``medium``), equal shares,
  standing in for the replay buffer of the run up to medium (D4RL's sizes: 402k / 202k / 302k);
* ``medium-expert``: the ``medium`` dataset followed by the ``expert`` dataset, each of half the size
  (2M; the two halves are exactly the ``medium`` and ``expert`` datasets of that seed and half size).

Collection steps ``NUM_ENVS`` environments in lockstep with one batched policy call; when an episode
ends its environment is reset (reset seeds drawn from the dataset's seed) and the finished episode is
appended, in order of completion (ties: environment index). ``terminals`` marks a true termination
(e.g. the hopper fell), ``timeouts`` the time limit (1000 steps); the last kept episode is cut to the
requested size and ends with ``timeouts = 1``. Observations are the environment's raw observations;
``next_observations`` are the real successors. The reference scores are the zoo's 100-episode means
of the uniform random policy (``ref_min_score``) and of the expert (``ref_max_score``).

Same name, seed and size give identical arrays (tested); bump ``GENERATOR_VERSION`` when a change
alters them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from offrl.data.dataset import Dataset, DatasetInfo
from offrl.envs import make_env
from offrl.envs import policies as zoo

GENERATOR_VERSION = 1
NUM_ENVS = 64
LOCOMOTION_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")
DEFAULT_SIZES = {"random": 1_000_000, "medium": 1_000_000, "expert": 1_000_000, "medium-expert": 2_000_000}
MEDIUM_REPLAY_SIZES = {"hopper": 402_000, "halfcheetah": 202_000, "walker2d": 302_000}  # D4RL v2's sizes

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _rng(seed: int, *parts: str) -> np.random.Generator:
    words = [int(seed), GENERATOR_VERSION] + [b for p in parts for b in p.encode()]
    return np.random.default_rng(np.random.SeedSequence(words))


def collect(env_id: str, policy: Policy, size: int, seed: int, tag: str) -> dict[str, np.ndarray]:
    """``size`` transitions of ``env_id`` under ``policy(obs, rng) -> actions in [-1, 1]``."""
    plan_rng, act_rng = _rng(seed, tag, "plan"), _rng(seed, tag, "act")
    envs = [make_env(env_id) for _ in range(min(NUM_ENVS, max(1, size)))]
    low = np.asarray(envs[0].action_space.low, np.float64)
    high = np.asarray(envs[0].action_space.high, np.float64)
    keys = ("obs", "act", "rew", "next", "term", "tout")
    episodes: list[dict[str, np.ndarray]] = []
    total = 0
    try:
        obs = np.stack([e.reset(seed=int(plan_rng.integers(2**31 - 1)))[0] for e in envs]).astype(np.float32)
        current = [{k: [] for k in keys} for _ in envs]
        while total < size:
            unit = np.clip(policy(obs, act_rng), -1.0, 1.0).astype(np.float32)
            env_actions = low + (unit.astype(np.float64) + 1.0) * 0.5 * (high - low)
            for i, env in enumerate(envs):
                o2, r, term, trunc, _ = env.step(env_actions[i])
                o2 = np.asarray(o2, np.float32)
                rec = current[i]
                rec["obs"].append(obs[i].copy())
                rec["act"].append(env_actions[i].astype(np.float32))
                rec["rew"].append(float(r))
                rec["next"].append(o2)
                rec["term"].append(float(term))
                rec["tout"].append(float(trunc and not term))
                if term or trunc:
                    episodes.append({k: np.asarray(v) for k, v in rec.items()})
                    total += len(rec["rew"])
                    current[i] = {k: [] for k in keys}
                    o2 = np.asarray(env.reset(seed=int(plan_rng.integers(2**31 - 1)))[0], np.float32)
                obs[i] = o2
    finally:
        for env in envs:
            env.close()
    arrays = {k: np.concatenate([ep[k] for ep in episodes])[:size] for k in keys}
    if arrays["term"][-1] == 0.0:
        arrays["tout"][-1] = 1.0  # the episode cut by the size limit
    return arrays


DESCRIPTIONS = {
    "random": "uniform random actions",
    "medium": "the zoo's medium snapshot, actions sampled from its tanh-Gaussian",
    "expert": "the zoo's expert, actions sampled from its tanh-Gaussian",
    "medium-replay": "the zoo's snapshot series up to medium (series-* then medium), equal shares, sampled actions",
    "medium-expert": "the medium dataset followed by the expert dataset, half the size each",
}


def _random_policy(action_dim: int) -> Policy:
    return lambda obs, rng: rng.uniform(-1.0, 1.0, size=(obs.shape[0], action_dim))


def _zoo_policy(env_id: str, role: str) -> tuple[Policy, dict]:
    policy = zoo.load_zoo_policy(env_id, role)
    return (lambda obs, rng: policy.act(obs, rng)), policy.card


def _behaviour_parts(prefix: str, kind: str, size: int) -> list[tuple[str, int]]:
    """(role, transitions) pairs whose collections, concatenated, make the dataset."""
    env_id = LOCOMOTION_ENVS[prefix]
    if kind in ("random", "medium", "expert"):
        return [(kind, size)]
    if kind == "medium-expert":
        return [("medium", size // 2), ("expert", size - size // 2)]
    roles = zoo.zoo_series(env_id) + ["medium"]
    shares = [size // len(roles)] * len(roles)
    shares[-1] += size - sum(shares)
    return list(zip(roles, shares))


def generate_locomotion(name: str, seed: int = 0, size: int | None = None) -> Dataset:
    """Make the dataset ``name`` (e.g. ``hopper-medium-replay``) from the zoo's policies."""
    prefix, _, kind = name.partition("-")
    if prefix not in LOCOMOTION_ENVS or kind not in KINDS:
        raise ValueError(f"unknown locomotion dataset {name!r}; names are ENV-KIND with ENV in "
                         f"{sorted(LOCOMOTION_ENVS)} and KIND in {list(KINDS)}")
    env_id = LOCOMOTION_ENVS[prefix]
    size = int(size if size is not None else
               MEDIUM_REPLAY_SIZES[prefix] if kind == "medium-replay" else DEFAULT_SIZES[kind])
    if size < 2:
        raise ValueError(f"size must be at least 2 transitions, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    refs = zoo.zoo_references(env_id)
    probe = make_env(env_id)
    low, high = (np.asarray(b, np.float32) for b in (probe.action_space.low, probe.action_space.high))
    probe.close()
    parts, cards = [], {}
    for role, n in _behaviour_parts(prefix, kind, size):
        if role == "random":
            policy, card = _random_policy(len(low)), {"policy": "uniform random actions"}
        else:
            policy, card = _zoo_policy(env_id, role)
        # A part is the same collection whichever dataset it is part of (medium-expert = medium + expert).
        parts.append(collect(env_id, policy, n, seed, f"{prefix}-{role}"))
        cards[role] = {k: card.get(k) for k in ("policy_file", "policy", "env_steps", "return_mean", "return_std",
                                                 "eval_episodes", "seed", "offrl_version", "source_run")
                       if k in card}
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ends = np.flatnonzero(arrays["term"] + arrays["tout"])
    returns = np.add.reduceat(arrays["rew"].astype(np.float64), np.r_[0, ends[:-1] + 1])
    info = DatasetInfo(
        name=name, env_id=env_id, env_kwargs={}, action_low=low, action_high=high,
        ref_min_score=float(refs["random"]["return_mean"]), ref_max_score=float(refs["expert"]["return_mean"]),
        metadata={
            # the generator's module before it moved to offrl.datasets: kept so that files stay byte-identical
            "generator": "offrl.envs.locomotion", "generator_version": GENERATOR_VERSION, "seed": int(seed),
            "size": int(size), "episodes": int(len(ends)), "episode_return_mean": float(returns.mean()),
            "behaviour": DESCRIPTIONS[kind],
            "behaviour_policies": cards, "references": refs,
        },
    )
    return Dataset.from_arrays(
        observations=arrays["obs"], actions=arrays["act"], rewards=arrays["rew"].astype(np.float32),
        next_observations=arrays["next"], terminals=arrays["term"].astype(np.float32),
        timeouts=arrays["tout"].astype(np.float32), info=info,
    )


def register_locomotion_datasets(add: Callable[[str, Callable[..., Dataset], str], None]) -> None:
    """Register ``ENV-KIND`` for every environment whose zoo has an expert and a medium policy."""
    for prefix, env_id in LOCOMOTION_ENVS.items():
        folder = zoo.ZOO_DIR / env_id
        if not all((folder / f).is_file() for f in ("expert.msgpack", "medium.msgpack", "references.json")):
            continue
        for kind in KINDS:
            name = f"{prefix}-{kind}"
            size = MEDIUM_REPLAY_SIZES[prefix] if kind == "medium-replay" else DEFAULT_SIZES[kind]

            def make(seed: int = 0, size: int | None = None, _name: str = name) -> Dataset:
                return generate_locomotion(_name, seed=seed, size=size)

            add(name, make, f"{env_id}, D4RL-protocol {kind} data from the offrl zoo ({size:,} transitions).")

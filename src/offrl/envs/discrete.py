"""Built-in discrete-action datasets for CartPole-v1, Acrobot-v1 and LunarLander-v3 (no download).

Each maker is ``(seed: int, size: int | None) -> Dataset`` with integer actions
(``DatasetInfo.num_actions``). Names are ``TASK-LEVEL`` with TASK in ``cartpole``, ``acrobot``,
``lunarlander`` and LEVEL in:

* ``random``: uniformly random actions;
* ``medium``: the scripted controller, replaced by a uniformly random action with probability
  ``medium_epsilon`` per step (the task's table below; about half the expert's normalised score);
* ``expert``: the controller with ``expert_epsilon`` random actions;
* ``mixed``: 40% random / 40% medium / 20% expert transitions, episodes shuffled.

Scripted controllers (vectorised numpy, :func:`controller_actions`):

* CartPole: a linear rule on the state, push right when
  ``0.05 x + 0.2 x_dot + theta + theta_dot > 0`` (a PD law on the pole angle with small cart terms);
* Acrobot: energy pumping, torque +1 when ``theta2_dot - 0.4 theta1_dot > 0``, else -1;
* LunarLander: gymnasium's ``lunar_lander.heuristic`` (discrete branch), vectorised; the tests
  check that it gives the same action as gymnasium's function.

Episodes end as the env says: ``terminals`` where the env terminates (pole falls, goal reached,
crash or landing), ``timeouts`` at its time limit, and at the one episode per behaviour that the
size limit cuts. ``next_observations`` are the real successors.

Reference scores (``DatasetInfo``): ``ref_min_score`` is the mean return of the uniform random
policy and ``ref_max_score`` that of the noise-free controller, each over 100 episodes with reset
seeds 0..99 through :func:`offrl.evaluate.evaluate`, measured once per process.

Measured levels (seed 0, default sizes; mean return of complete episodes, normalised score):

    task          random          medium          expert          mixed          reference min / max
    cartpole      22.3 (0)        235.2 (44.5)    500.0 (100)     48.2 (5.4)     22.5 / 500.0
    acrobot       -499.2 (-0.5)   -261.7 (56.1)   -90.0 (97.1)    -218.8 (66.4)  -497.1 / -77.9
    lunarlander   -174.4 (1.8)    43.3 (51.9)     231.5 (95.1)    -79.7 (23.6)   -182.4 / 252.8

Generation is deterministic: the same name, seed and size give identical arrays (and byte-identical
files). Envs run in lockstep, NUM_ENVS at a time, with one batched controller call per step
(50k Acrobot transitions take about 10 s on one loaded CPU core, the Acrobot dynamics dominating).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset, DatasetInfo
from offrl.envs import make_env

__all__ = [
    "DISCRETE_DATASETS",
    "GENERATOR_VERSION",
    "LEVELS",
    "TASKS",
    "acrobot_controller",
    "cartpole_controller",
    "controller_actions",
    "discrete_reference_scores",
    "generate_discrete",
    "lunar_lander_controller",
    "register_discrete_datasets",
]

#: Bump when generation changes in a way that changes the arrays (cached files are then stale).
GENERATOR_VERSION = 1
#: Environments stepped in lockstep with one batched policy call.
NUM_ENVS = 16
REFERENCE_EPISODES = 100
REFERENCE_SEED = 0


# ---------------------------------------------------------------------------------------------
# Scripted controllers: observations (B, obs_dim) -> int64 actions (B,)
# ---------------------------------------------------------------------------------------------


def _batch(obs: Any, dim: int, env: str) -> np.ndarray:
    obs = np.asarray(obs, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[1] != dim:
        raise ValueError(f"{env} observations must have shape (batch, {dim}), got {obs.shape}")
    return obs


#: CartPole gains on [x, x_dot, theta, theta_dot].
CARTPOLE_GAINS = (0.05, 0.2, 1.0, 1.0)


def cartpole_controller(obs: Any) -> np.ndarray:
    """CartPole-v1: push right (1) when ``k . [x, x_dot, theta, theta_dot] > 0``, else left (0).

    The pole term (angle + angular velocity) is a PD law that keeps the pole up; the small cart
    terms keep the cart near the centre so that the episode reaches the 500-step limit.
    """
    obs = _batch(obs, 4, "CartPole")
    return (obs @ np.asarray(CARTPOLE_GAINS) > 0.0).astype(np.int64)


#: Weight of theta1_dot in the Acrobot pumping rule.
ACROBOT_PUMP = 0.4


def acrobot_controller(obs: Any) -> np.ndarray:
    """Acrobot-v1: torque +1 (action 2) when ``theta2_dot - 0.4 theta1_dot > 0``, else -1 (action 0).

    Pushing the second joint along its own motion, relative to the first link's swing, feeds
    energy into the swing until the tip crosses the goal height (about 80 steps from rest).
    """
    obs = _batch(obs, 6, "Acrobot")
    return np.where(obs[:, 5] - ACROBOT_PUMP * obs[:, 4] > 0.0, 2, 0).astype(np.int64)


def lunar_lander_controller(obs: Any) -> np.ndarray:
    """LunarLander-v3 (discrete): gymnasium's ``heuristic`` for a batch of states.

    Actions: 0 noop, 1 fire left engine, 2 main engine, 3 fire right engine. Same thresholds and
    precedence as ``gymnasium.envs.box2d.lunar_lander.heuristic`` with ``continuous=False``.
    """
    s = _batch(obs, 8, "LunarLander")
    angle_targ = np.clip(s[:, 0] * 0.5 + s[:, 2] * 1.0, -0.4, 0.4)  # point towards the centre
    hover_targ = 0.55 * np.abs(s[:, 0])  # target height grows with the horizontal offset
    angle_todo = (angle_targ - s[:, 4]) * 0.5 - s[:, 5] * 1.0
    hover_todo = (hover_targ - s[:, 1]) * 0.5 - s[:, 3] * 0.5
    contact = (s[:, 6] != 0) | (s[:, 7] != 0)
    angle_todo = np.where(contact, 0.0, angle_todo)
    hover_todo = np.where(contact, -s[:, 3] * 0.5, hover_todo)
    a = np.zeros(len(s), dtype=np.int64)
    a = np.where(angle_todo > 0.05, 1, a)
    a = np.where(angle_todo < -0.05, 3, a)
    return np.where((hover_todo > np.abs(angle_todo)) & (hover_todo > 0.05), 2, a).astype(np.int64)


@dataclass(frozen=True)
class Task:
    """One environment's generation settings."""

    key: str
    env_id: str
    num_actions: int
    controller: Callable[[Any], np.ndarray]
    medium_epsilon: float
    expert_epsilon: float
    default_size: int
    controller_description: str


TASKS: dict[str, Task] = {
    "cartpole": Task("cartpole", "CartPole-v1", 2, cartpole_controller, 0.4, 0.05, 50_000,
                     "PD rule 0.05 x + 0.2 x_dot + theta + theta_dot > 0 -> push right"),
    "acrobot": Task("acrobot", "Acrobot-v1", 3, acrobot_controller, 0.75, 0.05, 50_000,
                    "energy pumping: torque sign(theta2_dot - 0.4 theta1_dot)"),
    "lunarlander": Task("lunarlander", "LunarLander-v3", 4, lunar_lander_controller, 0.25, 0.02, 100_000,
                        "gymnasium's lunar_lander.heuristic, vectorised"),
}

#: Level name -> fraction of the transitions from each behaviour.
LEVELS: dict[str, dict[str, float]] = {
    "random": {"random": 1.0},
    "medium": {"medium": 1.0},
    "expert": {"expert": 1.0},
    "mixed": {"random": 0.4, "medium": 0.4, "expert": 0.2},
}


def _task(key: str) -> Task:
    if key not in TASKS:
        raise ValueError(f"unknown discrete task {key!r}; known: {', '.join(TASKS)}")
    return TASKS[key]


def behaviour_epsilon(task: Task, behaviour: str) -> float:
    """Probability of a uniformly random action per step for ``random``/``medium``/``expert``."""
    table = {"random": 1.0, "medium": task.medium_epsilon, "expert": task.expert_epsilon}
    if behaviour not in table:
        raise ValueError(f"unknown behaviour {behaviour!r}; known: {', '.join(table)}")
    return table[behaviour]


def controller_actions(task: str | Task, obs: Any, epsilon: float = 0.0,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """The task's controller for a batch, each action replaced by a uniform one with prob ``epsilon``.

    Random numbers are always drawn in the same order (B uniforms, then B actions), whatever
    ``epsilon``, so a given ``rng`` state gives reproducible actions.
    """
    task = _task(task) if isinstance(task, str) else task
    actions = task.controller(obs)
    if rng is None:
        if epsilon > 0.0:
            raise ValueError("epsilon > 0 needs an rng")
        return actions
    replace = rng.random(len(actions)) < epsilon
    uniform = rng.integers(0, task.num_actions, size=len(actions))
    return np.where(replace, uniform, actions).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Reference scores
# ---------------------------------------------------------------------------------------------


@functools.cache
def discrete_reference_scores(task_key: str) -> dict[str, float]:
    """Mean/std return of the uniform random policy (min) and the noise-free controller (max).

    Measured once per process with :func:`offrl.evaluate.evaluate` on 100 episodes (reset seeds
    0..99; the random policy draws from ``numpy.random.default_rng(0)``).
    """
    from offrl.evaluate import evaluate

    task = _task(task_key)
    rng = np.random.default_rng(REFERENCE_SEED)

    def random_policy(o: np.ndarray) -> np.ndarray:
        return rng.integers(0, task.num_actions, size=o.shape[:2])

    def controller(o: np.ndarray) -> np.ndarray:
        return task.controller(o.reshape(-1, o.shape[-1])).reshape(o.shape[:2])

    rand = evaluate(random_policy, task.env_id, episodes=REFERENCE_EPISODES, seed=REFERENCE_SEED)[0]
    ctrl = evaluate(controller, task.env_id, episodes=REFERENCE_EPISODES, seed=REFERENCE_SEED)[0]
    return {
        "ref_min_score": rand["return_mean"],
        "ref_min_score_std": rand["return_std"],
        "ref_max_score": ctrl["return_mean"],
        "ref_max_score_std": ctrl["return_std"],
    }


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

_KEYS = ("obs", "act", "rew", "next", "term", "tout")


def _collect(task: Task, epsilon: float, size: int, words: list[int]) -> list[dict[str, np.ndarray]]:
    """At least ``size`` transitions of one behaviour as a list of episodes (in finishing order).

    NUM_ENVS envs run episodes back to back in lockstep; an env that finishes an episode is reset
    at once with the next seed of a seeded stream. Collection stops at the step where the finished
    episodes hold ``size`` transitions; the last one is cut to the size (``timeouts = 1``) and the
    unfinished episodes are dropped.
    """
    act_ss, reset_ss = np.random.SeedSequence(words).spawn(2)
    act_rng, reset_rng = np.random.default_rng(act_ss), np.random.default_rng(reset_ss)
    envs = [make_env(task.env_id) for _ in range(NUM_ENVS)]
    try:
        obs = np.stack([np.asarray(env.reset(seed=int(reset_rng.integers(2**31 - 1)))[0], np.float32)
                        for env in envs])
        recs = [{k: [] for k in _KEYS} for _ in envs]
        episodes: list[dict[str, np.ndarray]] = []
        total = 0
        while total < size:
            actions = controller_actions(task, obs, epsilon, act_rng)
            for i, env in enumerate(envs):
                o2, r, term, trunc, _ = env.step(int(actions[i]))
                o2 = np.asarray(o2, dtype=np.float32)
                rec = recs[i]
                rec["obs"].append(obs[i].copy())
                rec["act"].append(actions[i])
                rec["rew"].append(r)
                rec["next"].append(o2)
                rec["term"].append(float(term))
                rec["tout"].append(float(trunc and not term))
                if term or trunc:
                    episodes.append({k: np.asarray(v) for k, v in rec.items()})
                    total += len(rec["rew"])
                    recs[i] = {k: [] for k in _KEYS}
                    o2 = np.asarray(env.reset(seed=int(reset_rng.integers(2**31 - 1)))[0], np.float32)
                obs[i] = o2
    finally:
        for env in envs:
            env.close()
    kept, count = [], 0
    for ep in episodes:
        if count >= size:
            break
        n = min(len(ep["rew"]), size - count)
        if n < len(ep["rew"]):
            ep = {k: v[:n] for k, v in ep.items()}
            if ep["term"][-1] == 0.0:
                ep["tout"][-1] = 1.0  # cut by the size limit: a time-limit style end
            ep["cut"] = True
        kept.append(ep)
        count += n
    return kept


def generate_discrete(task_key: str, level: str, seed: int = 0, size: int | None = None) -> Dataset:
    """Generate ``TASK-LEVEL`` (e.g. ``generate_discrete("cartpole", "medium")``); see the module doc."""
    task = _task(task_key)
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; known: {', '.join(LEVELS)}")
    seed = int(seed)
    size = task.default_size if size is None else int(size)
    if size < 1:
        raise ValueError(f"size must be a positive number of transitions, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    name = f"{task.key}-{level}"
    mix = LEVELS[level]
    kinds = sorted(mix)
    shares = {k: int(round(size * mix[k])) for k in kinds[:-1]}
    shares[kinds[-1]] = size - sum(shares.values())

    words = [seed, GENERATOR_VERSION, *name.encode()]
    episodes, origin = [], []
    for kind in kinds:
        if shares[kind] <= 0:
            continue
        part = _collect(task, behaviour_epsilon(task, kind), shares[kind], words + [*kind.encode()])
        episodes += part
        origin += [kind] * len(part)
    order = np.random.default_rng(np.random.SeedSequence(words + [0])).permutation(len(episodes))
    episodes = [episodes[i] for i in order]
    arrays = {k: np.concatenate([ep[k] for ep in episodes]) for k in _KEYS}
    full = [float(ep["rew"].sum()) for ep in episodes if not ep.get("cut")]
    ref = discrete_reference_scores(task.key)
    info = DatasetInfo(
        name=name,
        env_id=task.env_id,
        env_kwargs={},
        num_actions=task.num_actions,
        ref_min_score=float(ref["ref_min_score"]),
        ref_max_score=float(ref["ref_max_score"]),
        metadata={
            "generator": "offrl.envs.discrete",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "size": int(len(arrays["rew"])),
            "episodes": len(episodes),
            "behaviour": ", ".join(f"{int(round(100 * mix[k]))}% {k}" for k in kinds),
            "behaviour_transitions": {k: int(shares[k]) for k in kinds},
            "behaviour_epsilon": {k: behaviour_epsilon(task, k) for k in kinds},
            "controller": task.controller_description,
            "episode_return_mean": float(np.mean(full)) if full else None,
            "ref_min_score_std": float(ref["ref_min_score_std"]),
            "ref_max_score_std": float(ref["ref_max_score_std"]),
            "reference": (
                f"{REFERENCE_EPISODES} episodes, reset seeds "
                f"{REFERENCE_SEED}..{REFERENCE_SEED + REFERENCE_EPISODES - 1}; "
                "min: uniform random policy, max: noise-free scripted controller"
            ),
        },
    )
    return Dataset.from_arrays(
        observations=arrays["obs"].astype(np.float32),
        actions=arrays["act"].astype(np.int64),
        rewards=arrays["rew"].astype(np.float32),
        next_observations=arrays["next"].astype(np.float32),
        terminals=arrays["term"].astype(np.float32),
        timeouts=arrays["tout"].astype(np.float32),
        info=info,
    )


def _maker(task_key: str, level: str) -> Callable[..., Dataset]:
    task = TASKS[task_key]

    def make(seed: int = 0, size: int | None = None) -> Dataset:
        return generate_discrete(task_key, level, seed=seed, size=size)

    name = f"{task_key}-{level}"
    make.__name__ = name.replace("-", "_")
    what = {
        "random": "uniformly random actions",
        "medium": f"scripted controller with {task.medium_epsilon:g} random actions",
        "expert": f"scripted controller with {task.expert_epsilon:g} random actions",
        "mixed": "40% random / 40% medium / 20% expert transitions",
    }[level]
    make.__doc__ = (f"{task.env_id} ({task.num_actions} discrete actions), {what}. "
                    f"Default size {task.default_size} transitions.")
    return make


#: name -> (maker, description)
DISCRETE_DATASETS: dict[str, tuple[Callable[..., Dataset], str]] = {}
for _t in TASKS:
    for _l in LEVELS:
        _f = _maker(_t, _l)
        DISCRETE_DATASETS[f"{_t}-{_l}"] = (_f, _f.__doc__ or "")


def register_discrete_datasets(register: Callable[[str, Callable[..., Dataset], str], Any]) -> None:
    """Call ``register(name, maker, description)`` for every discrete-action dataset."""
    for name, (maker, description) in DISCRETE_DATASETS.items():
        register(name, maker, description)

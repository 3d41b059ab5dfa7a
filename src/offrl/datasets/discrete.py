"""Built-in discrete-action datasets for CartPole-v1, Acrobot-v1 and LunarLander-v3 (no download).

Each maker is ``(seed: int, size: int | None) -> Dataset`` with integer actions
(``DatasetInfo.num_actions``). Names are ``TASK-LEVEL`` with TASK in ``cartpole``, ``acrobot``,
``lunarlander`` and LEVEL in:

* ``random``: uniformly random actions;
* ``medium``: the scripted controller, replaced by a uniformly random action with probability
  ``medium_epsilon`` per step (the task's table below; about half the expert's normalised score);
* ``expert``: the controller with ``expert_epsilon`` random actions;
* ``mixed``: 40% random / 40% medium / 20% expert transitions, episodes shuffled.

Scripted controllers (vectorised numpy, :func:`offrl.envs.discrete.controller_actions`):

* CartPole: a linear rule on the state, push right when
  ``0.05 x + 0.2 x_dot + theta + theta_dot > 0`` (a PD law on the pole angle with small cart terms);
* Acrobot: energy pumping, torque +1 when ``theta2_dot - 0.4 theta1_dot > 0``, else -1;
* LunarLander: gymnasium's ``lunar_lander.heuristic`` (discrete branch), vectorised; the tests
  check that it gives the same action as gymnasium's function.

Each transition stores the exact log-probability of its action under the behaviour that chose it
(``behaviour_log_probs``: ``log((1 - eps) 1[a = controller(s)] + eps / K)`` with the epsilon of the
episode's behaviour), for off-policy evaluation.

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
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset, DatasetInfo
from offrl.envs import make_env
from offrl.envs.discrete import TASKS, Task, _task, behaviour_epsilon, controller_actions

__all__ = [
    "DISCRETE_DATASETS",
    "GENERATOR_VERSION",
    "LEVELS",
    "discrete_reference_scores",
    "generate_discrete",
    "register_discrete_datasets",
]

#: Bump when generation changes in a way that changes the arrays (cached files are then stale).
GENERATOR_VERSION = 1
#: Environments stepped in lockstep with one batched policy call.
NUM_ENVS = 16
REFERENCE_EPISODES = 100
REFERENCE_SEED = 0

#: Level name -> fraction of the transitions from each behaviour.
LEVELS: dict[str, dict[str, float]] = {
    "random": {"random": 1.0},
    "medium": {"medium": 1.0},
    "expert": {"expert": 1.0},
    "mixed": {"random": 0.4, "medium": 0.4, "expert": 0.2},
}


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

_KEYS = ("obs", "act", "rew", "next", "term", "tout", "logp")


def behaviour_log_probs(task: Task, obs: np.ndarray, actions: np.ndarray, epsilon: float) -> np.ndarray:
    """log pi_beta(a|s) of the epsilon-greedy controller: (1 - eps) 1[a = controller(s)] + eps / K."""
    greedy = np.asarray(task.controller(obs)) == np.asarray(actions)
    with np.errstate(divide="ignore"):  # eps = 0 and a non-greedy action: probability zero, -inf
        return np.log(np.where(greedy, 1.0 - epsilon, 0.0) + epsilon / task.num_actions)


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
            log_probs = behaviour_log_probs(task, obs, actions, epsilon)
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
                rec["logp"].append(log_probs[i])
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
            # the generator's module before it moved to offrl.datasets: kept so that files stay byte-identical
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
        behaviour_log_probs=arrays["logp"].astype(np.float32),
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

"""Built-in datasets generated locally (no download) for gymnasium ``Pendulum-v1``.

Each maker is ``(seed: int, size: int | None) -> Dataset``: ``size`` is the number of
transitions (``None``: the dataset's default). Episodes are 200 steps and end by the time limit,
so ``timeouts`` is 1 on the last step of each episode and ``terminals`` is all 0;
``next_observations`` are the real successor observations. A dataset whose size is not a multiple
of 200 ends with a cut episode (``timeouts[-1] = 1``).

Behaviours (see :mod:`offrl.envs.pendulum`):

* ``random``: uniform random torques in [-2, 2];
* ``medium``: the swing-up controller with Gaussian action noise (std 1.0) and, with probability
  0.65 per step, a uniform random torque instead (about 40 normalised score);
* ``expert``: the controller with Gaussian action noise std 0.1 (about 100 normalised score).

Reference scores (stored in ``DatasetInfo``) are measured once per process with fixed seeds,
independent of the dataset seed, through :func:`offrl.evaluate.evaluate`: ``ref_min_score`` is
the mean return of the uniform-random policy and ``ref_max_score`` that of the noise-free
controller, each over 100 episodes with reset seeds 0..99.

``pendulum-random`` stores the exact ``behaviour_log_probs`` (the uniform density, log 1/4 per step)
for off-policy evaluation; the controller-based behaviours clip their Gaussian noise at the bounds, so
their actions have no plain density and off-policy evaluation fits a behaviour proxy instead.

Generation is deterministic: the same name, seed and size give identical arrays.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from offrl.data.dataset import Dataset, DatasetInfo
from offrl.envs import make_env
from offrl.envs import pendulum as _pend

__all__ = [
    "BUILTIN_DATASETS",
    "GENERATOR_VERSION",
    "pendulum_random",
    "pendulum_medium",
    "pendulum_expert",
    "pendulum_mixed",
    "pendulum_reference_scores",
    "generate_pendulum",
]

#: Bump when generation changes in a way that changes the arrays (cached files are then stale).
GENERATOR_VERSION = 1

ENV_ID = "Pendulum-v1"
EPISODE_LENGTH = 200
NUM_ENVS = 50  # environments stepped in lockstep with one batched policy call
REFERENCE_EPISODES = 100
REFERENCE_SEED = 0  # reference episodes use reset seeds REFERENCE_SEED + j, j < 100


@dataclass(frozen=True)
class Behaviour:
    name: str
    noise_std: float
    random_action_prob: float
    description: str


BEHAVIOURS = {
    "random": Behaviour("random", 0.0, 1.0, "uniform random torques in [-2, 2]"),
    "medium": Behaviour(
        "medium",
        1.0,
        0.65,
        "swing-up/LQR controller + N(0, 1.0^2) action noise; uniform random torque with prob 0.65 per step",
    ),
    "expert": Behaviour("expert", 0.1, 0.0, "swing-up/LQR controller + N(0, 0.1^2) action noise"),
}


def _behaviour_actions(obs: np.ndarray, kinds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Actions (B, 1) for a batch where env ``i`` follows behaviour ``kinds[i]``."""
    actions = np.zeros((obs.shape[0], 1), dtype=np.float32)
    for name in sorted(set(kinds.tolist())):  # fixed order -> deterministic random draws
        b = BEHAVIOURS[name]
        mask = kinds == name
        if b.random_action_prob >= 1.0:
            actions[mask] = _pend.random_action(int(mask.sum()), rng)
        else:
            actions[mask] = _pend.noisy_controller_action(obs[mask], rng, b.noise_std, b.random_action_prob)
    return actions


def _rollout(kinds: list[str], reset_seeds: list[int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One episode per entry of ``kinds``, in waves of NUM_ENVS envs stepped in lockstep."""
    envs = [make_env(ENV_ID) for _ in range(min(NUM_ENVS, len(kinds)))]
    parts: list[dict[str, np.ndarray]] = []
    try:
        for start in range(0, len(kinds), NUM_ENVS):
            wave_kinds = np.array(kinds[start : start + NUM_ENVS])
            wave_seeds = reset_seeds[start : start + NUM_ENVS]
            b = len(wave_kinds)
            obs = np.stack([envs[i].reset(seed=int(s))[0] for i, s in enumerate(wave_seeds)]).astype(np.float32)
            done = np.zeros(b, dtype=bool)
            rec = {k: [[] for _ in range(b)] for k in ("obs", "act", "rew", "next", "term", "tout")}
            while not done.all():
                act = _behaviour_actions(obs, wave_kinds, rng)
                for i in np.flatnonzero(~done):
                    o2, r, term, trunc, _ = envs[i].step(act[i])
                    o2 = np.asarray(o2, dtype=np.float32)
                    rec["obs"][i].append(obs[i].copy())
                    rec["act"][i].append(act[i])
                    rec["rew"][i].append(r)
                    rec["next"][i].append(o2)
                    rec["term"][i].append(float(term))
                    rec["tout"][i].append(float(trunc and not term))
                    obs[i] = o2
                    done[i] = term or trunc
            for i in range(b):  # keep episodes contiguous, in plan order
                parts.append({k: np.asarray(v[i]) for k, v in rec.items()})
    finally:
        for env in envs:
            env.close()
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@functools.cache
def pendulum_reference_scores() -> dict[str, float]:
    """Mean/std return of the uniform-random policy and of the noise-free controller.

    Measured once per process with :func:`offrl.evaluate.evaluate` on 100 episodes (reset seeds
    0..99; the random policy draws from ``numpy.random.default_rng(0)``).
    """
    from offrl.evaluate import evaluate

    rng = np.random.default_rng(REFERENCE_SEED)

    def random_policy(o: np.ndarray) -> np.ndarray:
        return _pend.random_action(o.shape[0] * o.shape[1], rng).reshape(o.shape[0], o.shape[1], 1)

    def controller(o: np.ndarray) -> np.ndarray:
        return _pend.controller_action(o.reshape(-1, o.shape[-1])).reshape(o.shape[0], o.shape[1], 1)

    rand = evaluate(random_policy, ENV_ID, episodes=REFERENCE_EPISODES, seed=REFERENCE_SEED)[0]
    ctrl = evaluate(controller, ENV_ID, episodes=REFERENCE_EPISODES, seed=REFERENCE_SEED)[0]
    return {
        "ref_min_score": rand["return_mean"],
        "ref_min_score_std": rand["return_std"],
        "ref_max_score": ctrl["return_mean"],
        "ref_max_score_std": ctrl["return_std"],
    }


def generate_pendulum(
    name: str, mix: dict[str, float], seed: int, size: int, description: str
) -> Dataset:
    """Generate ``size`` transitions of Pendulum-v1 with episodes split between behaviours.

    ``mix`` maps behaviour names (``random``/``medium``/``expert``) to fractions of the episodes;
    episode counts are rounded and the episode order is shuffled with the seed, so a dataset cut
    to ``size`` keeps the mix.
    """
    seed = int(seed)
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be a positive number of transitions, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    unknown = set(mix) - set(BEHAVIOURS)
    if unknown:
        raise ValueError(f"unknown behaviours {sorted(unknown)}; known: {sorted(BEHAVIOURS)}")

    n_episodes = math.ceil(size / EPISODE_LENGTH)
    names = sorted(mix)
    total = sum(mix.values())
    counts = {k: int(round(n_episodes * mix[k] / total)) for k in names[:-1]}
    counts[names[-1]] = n_episodes - sum(counts.values())
    if counts[names[-1]] < 0:  # rounding overshoot on tiny datasets
        counts[names[-1]] = 0
        counts[names[0]] = n_episodes - sum(counts[k] for k in names[1:])

    ss = np.random.SeedSequence([seed, GENERATOR_VERSION, *name.encode()])
    plan_rng, act_rng = (np.random.default_rng(s) for s in ss.spawn(2))
    kinds = [k for k in names for _ in range(counts[k])]
    kinds = [kinds[i] for i in plan_rng.permutation(len(kinds))]
    reset_seeds = plan_rng.integers(0, 2**31 - 1, size=len(kinds)).tolist()

    arrays = _rollout(kinds, reset_seeds, act_rng)
    arrays = {k: v[:size] for k, v in arrays.items()}
    if arrays["term"][-1] == 0.0:
        arrays["tout"][-1] = 1.0  # an episode cut by the size limit

    ends = np.flatnonzero((arrays["term"] + arrays["tout"]) > 0)
    ep_returns = np.add.reduceat(arrays["rew"].astype(np.float64), np.r_[0, ends[:-1] + 1])
    ref = pendulum_reference_scores()
    probe = make_env(ENV_ID)
    low = np.asarray(probe.action_space.low, dtype=np.float32)
    high = np.asarray(probe.action_space.high, dtype=np.float32)
    probe.close()

    info = DatasetInfo(
        name=name,
        env_id=ENV_ID,
        env_kwargs={},
        action_low=low,
        action_high=high,
        ref_min_score=float(ref["ref_min_score"]),
        ref_max_score=float(ref["ref_max_score"]),
        metadata={
            # the generator's module before it moved to offrl.datasets: kept so that files stay byte-identical
            "generator": "offrl.envs.builtin",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "size": int(len(arrays["rew"])),
            "episodes": int(len(ends)),
            "behaviour": description,
            "behaviour_episodes": {k: int(counts[k]) for k in names},
            "behaviours": {k: BEHAVIOURS[k].description for k in names},
            "episode_return_mean": float(ep_returns.mean()),
            "ref_min_score_std": float(ref["ref_min_score_std"]),
            "ref_max_score_std": float(ref["ref_max_score_std"]),
            "reference": (
                f"{REFERENCE_EPISODES} episodes, reset seeds "
                f"{REFERENCE_SEED}..{REFERENCE_SEED + REFERENCE_EPISODES - 1}; "
                "min: uniform random policy, max: noise-free swing-up/LQR controller"
            ),
        },
    )
    return Dataset.from_arrays(
        observations=arrays["obs"].astype(np.float32),
        actions=arrays["act"].astype(np.float32).reshape(-1, 1),
        rewards=arrays["rew"].astype(np.float32),
        next_observations=arrays["next"].astype(np.float32),
        terminals=arrays["term"].astype(np.float32),
        timeouts=arrays["tout"].astype(np.float32),
        behaviour_log_probs=_behaviour_log_probs(kinds, len(arrays["rew"]), low, high),
        info=info,
    )


def _behaviour_log_probs(kinds: list[str], n: int, low: np.ndarray, high: np.ndarray) -> np.ndarray | None:
    """Exact log pi_beta(a|s) when every episode is uniform random (the density 1 / (high - low)); None otherwise,
    since the controller's Gaussian noise is clipped to the bounds (a point mass at each bound, no plain density)."""
    if set(kinds) != {"random"}:
        return None
    return np.full(n, -float(np.sum(np.log(high - low))), np.float32)


def _maker(name: str, mix: dict[str, float], default_size: int, description: str) -> Callable[..., Dataset]:
    def make(seed: int = 0, size: int | None = None) -> Dataset:
        return generate_pendulum(name, mix, seed, default_size if size is None else size, description)

    make.__name__ = name.replace("-", "_")
    make.__doc__ = f"{description} Default size {default_size} transitions."
    return make


pendulum_random = _maker(
    "pendulum-random", {"random": 1.0}, 20_000, "Pendulum-v1, uniform random torques."
)
pendulum_medium = _maker(
    "pendulum-medium",
    {"medium": 1.0},
    20_000,
    "Pendulum-v1, noisy swing-up controller (noise std 1.0, random torque w.p. 0.65; ~40 normalised score).",
)
pendulum_expert = _maker(
    "pendulum-expert", {"expert": 1.0}, 20_000, "Pendulum-v1, swing-up/LQR controller with noise std 0.1."
)
pendulum_mixed = _maker(
    "pendulum-mixed",
    {"random": 0.4, "medium": 0.4, "expert": 0.2},
    50_000,
    "Pendulum-v1, 40% random / 40% medium / 20% expert episodes (the default demo dataset).",
)

#: name -> (maker, description), registered lazily by offrl.data.registry (offrl.datasets.register_builtin_datasets)
BUILTIN_DATASETS: dict[str, tuple[Callable[..., Dataset], str]] = {
    f.__name__.replace("_", "-"): (f, f.__doc__ or "")
    for f in (pendulum_random, pendulum_medium, pendulum_expert, pendulum_mixed)
}

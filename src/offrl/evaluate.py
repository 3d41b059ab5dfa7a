"""The one evaluation loop: ``num_policies * episodes`` environments stepped with a batched policy.

Environment ``j`` of every policy is reset with seed ``seed + j`` (common random numbers across
policies, so differences between policies are not differences between start states). Each
environment runs exactly one episode; environments that have finished are skipped while the others
keep stepping in lockstep.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from offrl.data.spaces import flatten_observations, space_layout
from offrl.envs import make_env, normalized_score

__all__ = ["evaluate", "Policy"]

#: ``policy(obs (num_policies, episodes, obs_dim)) -> actions (num_policies, episodes, act_dim)``,
#: or integer actions ``(num_policies, episodes)`` for a Discrete action space
Policy = Callable[[np.ndarray], Any]

_SUCCESS_KEYS = ("success", "is_success")


def evaluate(
    policy: Policy,
    env_id: str,
    *,
    episodes: int = 10,
    num_policies: int = 1,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    max_episode_steps: int | None = None,
    discount: float | None = None,
    reward_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    obs_layout: Mapping[str, Any] | None = None,
    stateful: bool = False,
) -> list[dict]:
    """Run ``episodes`` episodes for each of ``num_policies`` policies evaluated in one batch.

    ``policy`` receives float32 observations of shape ``(num_policies, episodes, obs_dim)``
    (finished environments keep showing their last observation; their actions are ignored) and
    returns actions of shape ``(num_policies, episodes, act_dim)`` in the env's action units.
    Box actions are clipped to the action-space bounds. For a Discrete action space the output
    (shape ``(P, E)`` or ``(P, E, 1)``) holds action indices (the policy does any argmax itself,
    as a discrete agent's ``act`` does): integers, or floats with whole values, inside the space
    (``start .. start + n - 1``); anything else is an error naming the bad value, never silently
    rounded or clipped, and each env receives a Python ``int``.

    Returns one dict per policy with ``return_mean``, ``return_std``, ``length_mean``,
    ``returns`` (list of floats, env order), ``lengths``; ``success_rate`` when the env reports
    ``success`` or ``is_success`` in ``info`` (an episode succeeds if the flag is truthy at any
    step), then also ``success_steps`` (per episode, the number of steps taken when the flag was first
    truthy, None if never) and ``success_step_mean`` (their mean over the episodes that succeeded, None if
    none did): the time to reach the goal; ``normalized_score`` and ``normalized_score_std`` when both reference scores are given;
    ``initial_observations`` (episodes, obs_dim), the observation each episode started from. With
    ``discount``: ``discounted_returns`` (per episode) and ``discounted_return_mean``, the sum of
    ``discount**t * reward_transform(r_t)`` (``reward_transform`` defaults to the identity; pass an
    algorithm's reward scaling to compare with its critic).

    An env whose observations are not flat vectors (a ``Dict`` space, say) is flattened with
    ``obs_layout`` (the dataset's ``DatasetInfo.obs_layout``, so the policy sees rows like the
    dataset's), or, without one, with the layout of the env's own observation space (the
    flattening the Minari loader applies to a ``Dict``/``Tuple`` space).

    ``stateful=True``: a policy that carries each env's history (a sequence policy) is called as
    ``policy(obs, rewards, starts)``, with ``rewards`` (num_policies, episodes) the reward each env earned
    on its previous step (0 on the first) and ``starts`` (num_policies, episodes) bool, True on the first
    call (every env starts its episode then), in env units.
    """
    import gymnasium as gym

    episodes = int(episodes)
    num_policies = int(num_policies)
    if episodes < 1 or num_policies < 1:
        raise ValueError(f"episodes and num_policies must be >= 1, got {episodes}, {num_policies}")
    if (ref_min_score is None) != (ref_max_score is None):
        raise ValueError("give both ref_min_score and ref_max_score, or neither")

    n = num_policies * episodes
    envs = [make_env(env_id, env_kwargs, max_episode_steps=max_episode_steps) for _ in range(n)]
    try:
        space = envs[0].action_space
        discrete = isinstance(space, gym.spaces.Discrete)
        if not discrete and not isinstance(space, gym.spaces.Box):
            raise ValueError(f"unsupported action space {space} (need Box or Discrete)")

        layout = obs_layout
        obs_space = envs[0].observation_space
        if layout is None and isinstance(obs_space, (gym.spaces.Dict, gym.spaces.Tuple)):
            layout = space_layout(obs_space)  # other spaces: reshaped to a row, as always

        def flat(o) -> np.ndarray:
            return flatten_observations(layout, o)[0].reshape(-1)

        first = [env.reset(seed=int(seed) + (i % episodes))[0] for i, env in enumerate(envs)]
        obs = np.stack([flat(o) for o in first])
        initial = obs.copy()
        returns = np.zeros(n, dtype=np.float64)
        discounted = np.zeros(n, dtype=np.float64)
        weight = np.ones(n, dtype=np.float64)  # discount ** t of each env's next reward
        lengths = np.zeros(n, dtype=np.int64)
        success = np.zeros(n, dtype=bool)
        first_success = np.zeros(n, dtype=np.int64)  # steps taken when the success flag was first truthy
        reports_success = False
        done = np.zeros(n, dtype=bool)
        last_rewards = np.zeros(n, dtype=np.float64)  # what a stateful policy hears about its previous step
        starts = np.ones(n, dtype=bool)

        while not done.all():
            shaped = obs.reshape(num_policies, episodes, -1)
            raw = (policy(shaped, last_rewards.reshape(num_policies, episodes), starts.reshape(num_policies, episodes))
                   if stateful else policy(shaped))
            starts[:] = False
            actions = _prepare_actions(raw, space, discrete, num_policies, episodes)
            for i in np.flatnonzero(~done):
                o, r, terminated, truncated, info = envs[i].step(actions[i])
                obs[i] = flat(o)
                last_rewards[i] = float(r)
                returns[i] += float(r)
                if discount is not None:
                    discounted[i] += weight[i] * float(reward_transform(np.float64(r)) if reward_transform else r)
                    weight[i] *= discount
                lengths[i] += 1
                for key in _SUCCESS_KEYS:
                    if key in info:
                        reports_success = True
                        if info[key] and not success[i]:
                            success[i] = True
                            first_success[i] = lengths[i]
                if terminated or truncated:
                    done[i] = True
    finally:
        for env in envs:
            env.close()

    results = []
    for p in range(num_policies):
        sl = slice(p * episodes, (p + 1) * episodes)
        r = returns[sl]
        res: dict[str, Any] = {
            "return_mean": float(r.mean()),
            "return_std": float(r.std()),
            "length_mean": float(lengths[sl].mean()),
            "returns": [float(x) for x in r],
            "lengths": [int(x) for x in lengths[sl]],
            "initial_observations": initial[sl].copy(),
        }
        if discount is not None:
            res["discounted_returns"] = [float(x) for x in discounted[sl]]
            res["discounted_return_mean"] = float(discounted[sl].mean())
        if reports_success:
            res["success_rate"] = float(success[sl].mean())
            res["success_steps"] = [int(t) if ok else None for t, ok in zip(first_success[sl], success[sl])]
            res["success_step_mean"] = float(first_success[sl][success[sl]].mean()) if success[sl].any() else None
        if ref_min_score is not None:
            ns = normalized_score(r, ref_min_score, ref_max_score)
            res["normalized_score"] = float(ns.mean())
            res["normalized_score_std"] = float(ns.std())
        results.append(res)
    return results


def _prepare_actions(raw, space, discrete: bool, num_policies: int, episodes: int) -> list:
    """Validate the policy output, clip/cast it, and return one action per environment."""
    a = np.asarray(raw)
    n = num_policies * episodes
    if discrete:
        if a.shape not in {(num_policies, episodes), (num_policies, episodes, 1)}:
            raise ValueError(
                f"policy returned actions of shape {a.shape}; for a Discrete action space expected "
                f"({num_policies}, {episodes}) or ({num_policies}, {episodes}, 1) integer actions"
            )
        a = a.reshape(n)
        if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise ValueError(f"policy returned actions of dtype {a.dtype}; a Discrete action space needs integer indices")
        if np.issubdtype(a.dtype, np.floating):
            if not np.all(np.isfinite(a)):
                raise ValueError("policy returned non-finite actions")
            if np.any(a != np.round(a)):
                bad = a[np.flatnonzero(a != np.round(a))[0]]
                raise ValueError(f"policy returned the non-integer action {float(bad)!r} for a Discrete action space; "
                                 "return action indices (e.g. the argmax of Q-values or logits)")
        a = a.astype(np.int64)
        low, high = int(space.start), int(space.start) + int(space.n) - 1
        outside = (a < low) | (a > high)
        if outside.any():
            raise ValueError(f"policy returned the action {int(a[np.flatnonzero(outside)[0]])} outside {space} "
                             f"(valid: {low}..{high}); was the agent trained on another environment?")
        return [int(x) for x in a]
    shape = tuple(space.shape)
    if a.shape != (num_policies, episodes, *shape):
        raise ValueError(
            f"policy returned actions of shape {a.shape}, expected "
            f"{(num_policies, episodes, *shape)} = (num_policies, episodes, *action_shape)"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError("policy returned non-finite (NaN/inf) actions")
    a = np.clip(a.reshape(n, *shape), space.low, space.high).astype(space.dtype)
    return list(a)

"""Inference: ``offrl.load_agent(path).act(observations)``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from offrl.algos import DataSpec, get_algo
from offrl.algos.registry import Algo
from offrl.checkpoint import CheckpointError, load_checkpoint
from offrl.data import DatasetInfo, Transforms
from offrl.data.spaces import flatten_observations


@dataclass
class Agent:
    """A trained agent: the algorithm, its config, parameters of every seed, and the data transforms."""

    algo: Algo
    config: Any
    states: Any  # leading axis = seeds
    transforms: Transforms
    dataset_info: DatasetInfo
    step: int
    meta: dict

    @property
    def num_seeds(self) -> int:
        return int(jax.tree.leaves(self.states)[0].shape[0])

    def __post_init__(self):
        algo = self.algo
        self._key = jax.random.PRNGKey(0)
        if algo.stateful:  # a sequence policy: the history of each row of the batch is carried between calls
            config = self.config
            self._carry, self._carry_rows, self._carry_seed, self._target = None, None, None, None

            @jax.jit
            def _act_carry(state, carry, obs, rewards, starts, key, deterministic_flag):
                obs = self.transforms.normalize_obs(obs)
                return jax.lax.cond(
                    deterministic_flag,
                    lambda: algo.act_carry(config, state, carry, obs, rewards, starts, key, True),
                    lambda: algo.act_carry(config, state, carry, obs, rewards, starts, key, False),
                )

            self._act_carry = _act_carry
            return

        def _act(config, state, obs, key, deterministic_flag):
            obs = self.transforms.normalize_obs(obs)
            return jax.lax.cond(
                deterministic_flag,
                lambda: algo.act(config, state, obs, key, True),
                lambda: algo.act(config, state, obs, key, False),
            )

        self._act = jax.jit(_act, static_argnums=(0,))

    def config_of(self, seed_index: int) -> Any:
        """The config agent ``seed_index`` trained with: in a population run (``meta["population"]``), its member's."""
        population = self.meta.get("population")
        if not population:
            return self.config
        from offrl.population import Population

        return Population.from_dict(population).member_config(self.config, seed_index // self.meta["loop"]["seeds"])

    @property
    def num_actions(self) -> int | None:
        """Number of discrete actions, or None for a continuous-action agent."""
        return self.transforms.num_actions

    def act(self, observations, seed_index: int = 0, deterministic: bool = True, reward=None,
            episode_start=None) -> np.ndarray:
        """Actions in env units for one observation (obs_dim,) or a batch (B, obs_dim).

        A sequence policy (``agent.stateful``: ``dt``, ``rvs``) carries the history of each row between
        calls: after :meth:`reset` (or on the first call) every row starts an episode; later calls pass
        ``reward``, the reward each row earned on its previous step (a scalar or (B,)), and optionally
        ``episode_start`` (bool (B,)) for rows that begin a new episode.

        When the dataset's observations were flattened from a structured space (a ``Dict``, say:
        ``dataset_info.obs_layout``), the env's raw observation is accepted too (a dict, or a dict
        of arrays with a leading batch axis, or a list of dicts) and flattened as the dataset was.

        Continuous agents return float32 actions (act_dim,) or (B, act_dim) inside the env's
        bounds; discrete agents return int64 action indices in [0, num_actions): an ``np.int64``
        for one observation, an array (B,) for a batch.
        """
        if self.algo.stateful:
            return self._act_with_context(observations, seed_index, deterministic, reward, episode_start)
        if reward is not None or episode_start is not None:
            raise ValueError(f"{self.algo.name} keeps no history: act(observations) takes no reward or episode_start")
        obs, single = self._observations(observations, seed_index)
        state = jax.tree.map(lambda x: x[seed_index], self.states)
        self._key, key = jax.random.split(self._key)
        unit = np.asarray(self._act(self.config_of(seed_index), state, jnp.asarray(obs), key, deterministic))
        return self._env_actions(unit, single)

    @property
    def stateful(self) -> bool:
        """True for a sequence policy, whose ``act`` carries each row's recent history (see :meth:`reset`)."""
        return self.algo.stateful

    @property
    def return_range(self) -> tuple[float, float] | None:
        """(lowest, highest) episode return of the training data, for a return-conditioned agent (env units)."""
        r = self.meta.get("episode_returns")
        return (float(r["min"]), float(r["max"])) if r else None

    def reset(self, target_return: float | None = None) -> None:
        """Start new episodes: the next :meth:`act` of a sequence policy begins every row's history afresh, asking
        for ``target_return`` (env units; None: the config's ``target_return``, else the data's highest episode
        return). A request far outside the data's range warns (``offrl.targets.TargetReturnWarning``)."""
        if not self.algo.stateful:
            return
        from offrl.train import default_target_return, unit_target

        target = default_target_return(self.config, self.meta) if target_return is None else float(target_return)
        if target is None:
            target = 0.0
        if target_return is not None and self.return_range is not None:
            from offrl.targets import warn_far_outside

            warn_far_outside([target], *self.return_range)
        self._target = unit_target(self.transforms, target)
        self._carry, self._carry_rows = None, None

    def _act_with_context(self, observations, seed_index, deterministic, reward, episode_start) -> np.ndarray:
        obs, single = self._observations(observations, seed_index)
        rows = obs.shape[0]
        if self._carry is None:
            if self._target is None:
                self.reset()
            carry = self.algo.init_carry(self.config, DataSpec(**self.meta["spec"]), jnp.full((rows,), self._target, jnp.float32))
            starts = np.ones(rows, bool)
            rewards = np.zeros(rows, np.float32)
        else:
            if rows != self._carry_rows or seed_index != self._carry_seed:
                raise ValueError(f"this sequence policy carries the history of {self._carry_rows} observation(s) of seed "
                                 f"{self._carry_seed}; got {rows} of seed {seed_index}. Fix: call agent.reset() to start "
                                 "new episodes")
            if reward is None:
                raise ValueError(f"{self.algo.name} is a sequence policy: pass the reward of the previous step, "
                                 "agent.act(obs, reward=r), or call agent.reset() at the start of each episode")
            carry = self._carry
            starts = (np.zeros(rows, bool) if episode_start is None
                      else np.broadcast_to(np.asarray(episode_start, bool).reshape(-1), (rows,)))
            rewards = np.broadcast_to(np.asarray(reward, np.float32).reshape(-1), (rows,))
        state = jax.tree.map(lambda x: x[seed_index], self.states)
        self._key, key = jax.random.split(self._key)
        scaled = jnp.asarray(self.transforms.scale_rewards(rewards), jnp.float32)
        unit, self._carry = self._act_carry(state, carry, jnp.asarray(obs), scaled, jnp.asarray(starts), key, deterministic)
        self._carry_rows, self._carry_seed = rows, seed_index
        return self._env_actions(np.asarray(unit), single)

    def _observations(self, observations, seed_index: int):
        obs, single = flatten_observations(self.dataset_info.obs_layout, observations)
        obs_dim = self.meta["spec"]["obs_dim"]
        if obs.ndim != 2 or obs.shape[-1] != obs_dim:
            raise ValueError(
                f"observations must have shape ({obs_dim},) or (batch, {obs_dim}); got {np.shape(observations)}"
            )
        if not 0 <= seed_index < self.num_seeds:
            raise ValueError(f"seed_index {seed_index} out of range: this checkpoint holds {self.num_seeds} seeds")
        return obs, single

    def _env_actions(self, unit: np.ndarray, single: bool) -> np.ndarray:
        actions = self.transforms.action_from_unit(unit)
        if self.transforms.is_discrete:
            actions = np.asarray(actions, dtype=np.int64)
        return actions[0] if single else actions


def load_agent(path: str | os.PathLike) -> Agent:
    """Load an agent from a run folder or a ``checkpoint.msgpack`` file."""
    from offrl.train import config_from_dict, init_agents

    state_dict, _, meta = load_checkpoint(path)
    try:
        algo = get_algo(meta["algo"])
        config = config_from_dict(algo.config_cls, meta["algo_config"])
        spec = DataSpec(**meta["spec"])
        loop = meta["loop"]
    except KeyError as exc:
        raise CheckpointError(f"checkpoint {path} lacks the entry {exc}; it was not written by offrl's training loop") from None
    population = None
    if meta.get("population"):
        from offrl.population import Population

        population = Population.from_dict(meta["population"])
    template, _ = init_agents(algo, config, spec, loop["seed"], loop["seeds"], loop["steps"], population)
    states = serialization.from_state_dict(template, state_dict)
    return Agent(
        algo=algo, config=config, states=states, transforms=Transforms.from_dict(meta["transforms"]),
        dataset_info=DatasetInfo.from_dict(meta["dataset_info"]), step=int(meta["step"]), meta=meta,
    )

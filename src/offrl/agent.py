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

        def _act(config, state, obs, key, deterministic_flag):
            obs = self.transforms.normalize_obs(obs)
            return jax.lax.cond(
                deterministic_flag,
                lambda: algo.act(config, state, obs, key, True),
                lambda: algo.act(config, state, obs, key, False),
            )

        self._act = jax.jit(_act, static_argnums=(0,))
        self._key = jax.random.PRNGKey(0)

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

    def act(self, observations, seed_index: int = 0, deterministic: bool = True) -> np.ndarray:
        """Actions in env units for one observation (obs_dim,) or a batch (B, obs_dim).

        When the dataset's observations were flattened from a structured space (a ``Dict``, say:
        ``dataset_info.obs_layout``), the env's raw observation is accepted too (a dict, or a dict
        of arrays with a leading batch axis, or a list of dicts) and flattened as the dataset was.

        Continuous agents return float32 actions (act_dim,) or (B, act_dim) inside the env's
        bounds; discrete agents return int64 action indices in [0, num_actions): an ``np.int64``
        for one observation, an array (B,) for a batch.
        """
        obs, single = flatten_observations(self.dataset_info.obs_layout, observations)
        obs_dim = self.meta["spec"]["obs_dim"]
        if obs.ndim != 2 or obs.shape[-1] != obs_dim:
            raise ValueError(
                f"observations must have shape ({obs_dim},) or (batch, {obs_dim}); got {np.shape(observations)}"
            )
        if not 0 <= seed_index < self.num_seeds:
            raise ValueError(f"seed_index {seed_index} out of range: this checkpoint holds {self.num_seeds} seeds")
        state = jax.tree.map(lambda x: x[seed_index], self.states)
        self._key, key = jax.random.split(self._key)
        unit = np.asarray(self._act(self.config_of(seed_index), state, jnp.asarray(obs), key, deterministic))
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

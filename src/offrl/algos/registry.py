"""The algorithm registry: the only way the training loop, the CLI and the tests know an algorithm.

Adding an algorithm = one new file in ``offrl/algos`` that calls :func:`register`, one import line in
``offrl/algos/__init__.py``, and one docs page. The contract tests pick it up automatically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import jax

from offrl.config import ConfigError
from offrl.data.sampling import Batch, DeviceData, sample_uniform


@dataclass(frozen=True)
class DataSpec:
    """Shapes an algorithm needs to build its networks.

    ``num_actions`` is the number K of discrete actions (actions are then int32 indices and
    ``action_dim`` is 1), or None for continuous actions.
    """

    obs_dim: int
    action_dim: int
    num_actions: int | None = None

    @classmethod
    def from_dataset(cls, dataset: Any) -> "DataSpec":
        return cls(obs_dim=dataset.obs_dim, action_dim=dataset.act_dim, num_actions=dataset.num_actions)


def uniform_batches(config: Any, data: DeviceData, key: jax.Array) -> Batch:
    """Default batch maker: ``config.batch_size`` uniform transitions, one-step bootstrap."""
    return sample_uniform(data, key, config.batch_size, getattr(config, "discount", 1.0))


@dataclass(frozen=True)
class Algo:
    """One algorithm's registry record.

    ``init(config, spec, key, total_steps) -> state``;
    ``update(config, state, batch, key) -> (state, metrics)`` (pure; scalars in ``metrics``);
    ``act(config, state, observations, key, deterministic) -> actions`` in the unit box [-1, 1].
    ``normalize_observations`` and ``reward_scaling`` are the paper's preprocessing defaults.
    ``discrete=True``: the algorithm needs discrete actions (``spec.num_actions``; ``batch.actions``
    are int32 indices [B]) and ``act`` returns int32 indices [B]; the loop refuses to pair an
    algorithm with a dataset of the other action kind (:func:`check_action_kind`).

    Optional data hooks, both host-side numpy run once before training:
    ``prepare_dataset(config, dataset) -> dataset`` replaces the dataset before the transforms are
    fitted (e.g. keep only the best trajectories); ``device_extras(config, arrays, dataset) -> dict``
    returns per-transition arrays (computed from the transformed ``arrays``) that go on the device as
    ``DeviceData.extras`` and reach ``update`` as ``batch.extras`` (e.g. Monte-Carlo returns).
    ``episode_extras(config, rewards, terminals) -> dict`` computes the same arrays for one finished
    online episode (scaled rewards, terminal flags; the last step ends the episode), so that online
    fine-tuning (:mod:`offrl.finetune`) can give its new transitions their extras.

    Optional model-based hooks (all three or none): ``device_model(config, dataset, transforms) -> pytree``
    runs once on the host and its result goes on the device as ``DeviceData.model`` (data, never trained:
    e.g. a dynamics ensemble); ``rollout(config, state, data, key) -> (state, metrics)`` is pure and runs
    in the compiled chunk before every update whose ``state.step`` is a multiple of
    ``rollout_every(config)``: the loop scans over blocks of updates with one rollout call per block, so
    vmapped seeds never pay for a rollout on every update.

    Optional stateful policies (both or neither; a sequence policy needs its recent history):
    ``init_carry(config, spec, targets) -> carry`` gives E = ``len(targets)`` environments an empty
    history each, asking for the return ``targets`` [E] (in the training reward units);
    ``act_carry(config, state, carry, observations [E, obs_dim], rewards [E], starts [E], key,
    deterministic) -> (actions [E, act_dim], carry)`` acts and carries the history on: ``rewards``
    are the (transformed) rewards of each env's previous step and ``starts`` marks the first
    observation of a new episode (its history is reset). Such an algorithm may leave ``act`` None:
    evaluation, ``load_agent(...).act`` and ``offrl eval`` go through the carry; ``offrl export`` and
    ``offrl finetune`` refuse it. ``return_conditioned=True``: the policy is asked for a return (the
    end of a run and ``offrl eval --target-returns`` write achieved against requested return); a
    callable ``return_conditioned(config) -> bool`` decides per config (``rvs`` conditions on a return or
    on a goal): ask :meth:`conditioned_on_return`.
    """

    name: str
    description: str
    config_cls: type
    init: Callable
    update: Callable
    act: Callable
    make_batch: Callable = uniform_batches
    normalize_observations: bool = False
    reward_scaling: str = "none"
    q_value: Callable | None = None
    prepare_dataset: Callable | None = None
    device_extras: Callable | None = None
    episode_extras: Callable | None = None
    discrete: bool = False
    device_model: Callable | None = None
    rollout: Callable | None = None
    rollout_every: Callable | None = None
    init_carry: Callable | None = None
    act_carry: Callable | None = None
    return_conditioned: bool | Callable = False

    def conditioned_on_return(self, config: Any) -> bool:
        """Whether ``config``'s policy is asked for a return (``return_conditioned``, called on ``config`` if callable)."""
        flag = self.return_conditioned
        return bool(flag(config) if callable(flag) else flag)

    @property
    def stateful(self) -> bool:
        """True when the policy carries a history between steps (``init_carry`` / ``act_carry``)."""
        return self.act_carry is not None


_REGISTRY: dict[str, Algo] = {}


class UnknownAlgorithmError(KeyError):
    """Raised for a name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def register(algo: Algo) -> Algo:
    if algo.name in _REGISTRY:
        raise ValueError(f"algorithm {algo.name!r} is registered twice")
    if not dataclasses.is_dataclass(algo.config_cls):
        raise TypeError(f"{algo.name}: config_cls must be a dataclass")
    if (algo.init_carry is None) != (algo.act_carry is None) or (algo.act is None and algo.act_carry is None):
        raise TypeError(f"{algo.name}: give init_carry and act_carry together, and act unless both are given")
    _REGISTRY[algo.name] = algo
    return algo


def get_algo(name: str) -> Algo:
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        valid = ", ".join(sorted(_REGISTRY))
        raise UnknownAlgorithmError(f"unknown algorithm {name!r}; valid algorithms: {valid} (see `offrl algos`)")
    return _REGISTRY[key]


def algo_for_config(config: Any) -> Algo:
    for algo in _REGISTRY.values():
        if type(config) is algo.config_cls:
            return algo
    raise UnknownAlgorithmError(f"{type(config).__name__} is not the Config of a registered algorithm")


def check_action_kind(algo: Algo, spec: DataSpec) -> None:
    """Raise :class:`offrl.config.ConfigError` (a ``ValueError``) when a continuous algorithm meets
    discrete actions or vice versa."""
    data_discrete = spec.num_actions is not None
    if algo.discrete == data_discrete:
        return
    matching = ", ".join(n for n, a in sorted(_REGISTRY.items()) if a.discrete == data_discrete) or "(none)"
    if data_discrete:
        raise ConfigError(
            f"algorithm {algo.name!r} needs continuous (Box) actions but the dataset has discrete actions "
            f"(num_actions={spec.num_actions}). Fix: use a discrete-action algorithm: {matching}")
    raise ConfigError(
        f"algorithm {algo.name!r} needs discrete actions but the dataset has continuous actions "
        f"(act_dim={spec.action_dim}). Fix: use a continuous-action algorithm: {matching}; or, if the "
        "actions are action indices stored as floats, rebuild the dataset with DatasetInfo(num_actions=K)")


def list_algos() -> dict[str, Algo]:
    return dict(sorted(_REGISTRY.items()))

"""Model-based evaluation: roll the policy out in the learned dynamics ensemble from the data's start states.

    V-hat(pi) = 1/n sum_i 1/R sum_r sum_{t<H} gamma^t r-hat_t,   s_0 = s_{i,0},  a_t ~ pi(.|s_t),
    (s_{t+1} - s_t, r-hat_t) ~ N(mu_m(s_t, a_t), Sigma_m(s_t, a_t)),  m a random elite per step

with the probabilistic ensemble of :mod:`offrl.dynamics` (found in the cache by the dataset's checksum or
trained now) and its termination rule (the env's built-in rule, else the learned head when the data has
terminals). A rollout stops at a predicted terminal or a non-finite prediction. Continuous actions only
(the ensemble models Box actions). H defaults to the longest episode of the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from offrl.config import Checked, integer, number, text
from offrl.data import Dataset
from offrl.dynamics import DynamicsConfig, ModelData, find_or_train, resolve, rollout
from offrl.ope.episodes import Episodes, Estimate, OPEError, with_bootstrap
from offrl.ope.policy import Policy, check_observations, sample


@dataclass(frozen=True)
class ModelBasedConfig(Checked):
    """Settings of model-based evaluation."""

    discount: float = number(0.99, ge=0, le=1)
    """gamma of the evaluated value."""
    horizon: Optional[int] = integer(None, ge=1, optional=True)
    """Model steps per rollout; None: the longest episode of the data."""
    rollouts: int = integer(4, ge=1)
    """Rollouts per start state (averaged)."""
    dynamics: str = text("")
    """A dynamics file (``offrl dynamics train``); empty: the cached model of the dataset, trained if absent."""
    max_epochs: Optional[int] = integer(None, ge=1, optional=True)
    """Epoch budget when the ensemble has to be trained now."""
    seed: int = integer(0)
    """Seed of the rollouts."""


def model_rollout_returns(dataset: Dataset, episodes: Episodes, policy: Policy, config: ModelBasedConfig = ModelBasedConfig(),
                          log: Callable[[str], None] | None = None) -> np.ndarray:
    """The mean discounted model return from each episode's start state [E]."""
    if dataset.is_discrete:
        raise OPEError("model-based evaluation uses the dynamics ensemble, which models continuous (Box) actions; this dataset "
                       "has discrete actions. Fix: use --estimators fqe,dr,wdr,is,wis,pdis,wpdis")
    check_observations(policy, dataset.observations)
    dyn_config = DynamicsConfig(max_epochs=config.max_epochs,
                                termination_steps=2000 if config.max_epochs is None else min(2000, 50 * config.max_epochs))
    dynamics, _ = find_or_train(dataset, dyn_config, config.dynamics or None, log=log)
    low, high = dataset.info.action_low, dataset.info.action_high
    if low is None or high is None:
        raise OPEError(f"{dataset.info.name}: model-based evaluation needs the action bounds (info.action_low/high). "
                       "Fix: set them in the dataset's DatasetInfo")
    has_terminals = bool(np.any(np.asarray(dataset.terminals) > 0))
    rule = resolve("auto", dataset.info.env_id, has_terminals, dynamics.term_params is not None)
    obs_dim = dataset.obs_dim
    model = ModelData(dynamics=dynamics, obs_mean=jnp.zeros(obs_dim), obs_std=jnp.ones(obs_dim),
                      action_low=jnp.asarray(low, jnp.float32), action_high=jnp.asarray(high, jnp.float32),
                      reward_scale=1.0, reward_shift=0.0, rule=rule)
    horizon = config.horizon or episodes.horizon
    gammas = jnp.asarray(config.discount ** np.arange(horizon), jnp.float32)
    low_j, high_j = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)

    def policy_unit(obs, key):  # the rollout speaks unit-box actions
        a = sample(policy, obs, key)
        return 2.0 * (a - low_j) / (high_j - low_j) - 1.0

    @jax.jit
    def returns(start, key):
        (_, _, rewards, _, _, _), valid = rollout(model, policy_unit, start, key, horizon)
        return jnp.sum(gammas[:, None] * jnp.where(valid, rewards, 0.0), axis=0)

    starts = np.asarray(dataset.observations, np.float32)[episodes.start_index]
    key = jax.random.PRNGKey(config.seed)
    out = np.zeros(len(starts))
    for r in range(config.rollouts):
        key, k = jax.random.split(key)
        out += np.asarray(returns(jnp.asarray(starts), k), np.float64)
        if log is not None:
            log(f"model-based {policy.name}: rollout {r + 1}/{config.rollouts} from {len(starts)} start states")
    return out / config.rollouts


def model_based_estimate(dataset: Dataset, episodes: Episodes, policy: Policy, config: ModelBasedConfig = ModelBasedConfig(), *,
                         num_bootstrap: int = 200, confidence: float = 0.95, seed: int = 0, log=None) -> Estimate:
    values = model_rollout_returns(dataset, episodes, policy, config, log)
    return with_bootstrap("mb", lambda c: c @ values / c.sum(axis=1), episodes.num_episodes, num_bootstrap=num_bootstrap,
                          confidence=confidence, seed=seed, diagnostics={"horizon": config.horizon or episodes.horizon})

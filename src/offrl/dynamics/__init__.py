"""Model-based offline RL's shared pieces, below the algorithms: the probabilistic dynamics ensemble
(training, files), termination rules, and device rollouts into a ring buffer.

``model_data(dataset, transforms, config, path, termination)`` is what a model-based algorithm's
``device_model`` hook returns: the ensemble (loaded from ``path``, found by the dataset's checksum in
``$OFFRL_HOME/dynamics``, or trained now and saved there) with the unit conversions and the rule.
"""

from __future__ import annotations

from offrl.dynamics.model import (DynamicsConfig, DynamicsError, DynamicsModel, cache_path, find_or_train, load_dynamics,
                                  predict, save_dynamics, train_dynamics)
from offrl.dynamics.rollout import (UNCERTAINTIES, ModelBuffer, ModelData, add_to_buffer, init_buffer, make_model_data,
                                    model_rows_mean, real_batch_size, rollout, rollout_into_buffer, sample_buffer, uncertainty, with_model_rows)
from offrl.dynamics.settings import ModelRollouts
from offrl.dynamics.termination import TerminationError, builtin_rule, resolve

__all__ = ["algo_device_model", "algo_dynamics_config", "DynamicsConfig", "DynamicsError", "DynamicsModel", "ModelBuffer", "ModelData", "ModelRollouts", "TerminationError", "UNCERTAINTIES",
           "add_to_buffer", "builtin_rule", "cache_path", "find_or_train", "init_buffer", "load_dynamics", "make_model_data",
           "model_data", "model_rows_mean", "predict", "real_batch_size", "resolve", "rollout", "rollout_into_buffer", "sample_buffer",
           "save_dynamics", "train_dynamics", "uncertainty", "with_model_rows"]


def algo_dynamics_config(config) -> DynamicsConfig:
    """The ensemble settings of a model-based algorithm's config (fields ``dynamics_hidden_dims``,
    ``dynamics_members``, ``dynamics_elites``, ``dynamics_max_epochs``); an epoch budget also cuts the
    termination head's steps (50 per epoch, at most 2000)."""
    budget = config.dynamics_max_epochs
    return DynamicsConfig(hidden_dims=tuple(config.dynamics_hidden_dims), num_members=config.dynamics_members,
                          num_elites=config.dynamics_elites, max_epochs=budget,
                          termination_steps=2000 if budget is None else min(2000, 50 * budget))


def algo_device_model(config, dataset, transforms) -> ModelData:
    """A model-based algorithm's ``device_model`` hook: the ensemble of ``dataset`` (``config.dynamics``,
    the cache, or trained now) with the rule of ``config.termination``."""
    return model_data(dataset, transforms, algo_dynamics_config(config), config.dynamics, config.termination)


def model_data(dataset, transforms, config: DynamicsConfig, path: str = "", termination: str = "auto", log=None) -> ModelData:
    """The device model of ``dataset`` for an algorithm whose data were transformed by ``transforms``."""
    import numpy as np

    dynamics, card = find_or_train(dataset, config, path or None, log=log)
    if card.get("obs_dim") != dataset.obs_dim or card.get("act_dim") != dataset.act_dim:
        raise DynamicsError(f"dynamics model ({card.get('obs_dim')}, {card.get('act_dim')}) does not fit the dataset's "
                            f"(obs_dim, act_dim) = ({dataset.obs_dim}, {dataset.act_dim}). Fix: train one on this dataset")
    has_terminals = bool(np.any(np.asarray(dataset.terminals) > 0))
    rule = resolve(termination, dataset.info.env_id, has_terminals, dynamics.term_params is not None)
    if rule == "learned" and dynamics.term_params is None:
        raise TerminationError("termination 'learned' but the dynamics file has no termination head (its dataset had no "
                               "terminals). Fix: retrain the model with `offrl dynamics train DATASET`")
    return make_model_data(dynamics, transforms, rule)

"""MOPO: Model-based Offline Policy Optimization (Yu, Thomas, Yu, Ermon, Zou, Levine, Finn & Ma 2020).

Learn the dynamics T-hat(s', r | s, a) from the data (a probabilistic ensemble, :mod:`offrl.dynamics`),
and train SAC in the uncertainty-penalised model M~ whose reward is

  r~(s, a) = r-hat(s, a) - lambda u(s, a),   u(s, a) = max_i || sigma_i(s, a) ||           (Algorithm 2)

(``uncertainty="ensemble_disagreement"``: u = || std_i mu_i(s, a) ||). Since the model error is bounded
by u, eta_M(pi) >= E_{(s,a) ~ rho_pi^T-hat}[ r - lambda u ]: the policy maximises a lower bound of its
true return and keeps away from where the model is unsure.
  rollouts:  every ``rollout_every`` updates, ``rollout_batch_size`` data states are rolled ``horizon``
             steps with the current policy (a random elite per step) into a ring buffer of the last
             ``buffer_size`` model transitions (stopped at a terminal state)
  batches:   d_f = f d + (1 - f) d_model: round(f B) real transitions, the rest from the buffer with r~
  critic/actor/temperature: SAC's (docs/algorithms/sac_offline.md) on the mixed batch.
With lambda = 0 and f = 1 the updates are exactly ``sac_offline``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import choice, flag, integer, number, sizes
from offrl.data.sampling import Batch, DeviceData, sample_uniform
from offrl.dynamics import (UNCERTAINTIES, ModelBuffer, ModelRollouts, algo_device_model, init_buffer, model_rows_mean,
                            real_batch_size, rollout_into_buffer, with_model_rows)
from offrl.losses import ensemble_td_loss, entropy_target, polyak_update, sac_actor_loss, soft_next_value, td_target
from offrl.losses import temperature_loss as sac_temperature_loss
from offrl.nets import Critic, LogScalar, TanhGaussianActor, tanh_gaussian_action


@dataclass(frozen=True)
class Config(ModelRollouts):
    """MOPO; defaults from the authors' code (softlearning SAC, D4RL configs; per-dataset lambda and h in PRESETS)."""

    penalty: float = number(1.0, ge=0)
    """lambda: weight of the uncertainty penalty r~ = r - lambda u."""
    uncertainty: str = choice("max_aleatoric", UNCERTAINTIES)
    """u(s, a): ``max_aleatoric`` (max_i ||sigma_i||, the paper's) or ``ensemble_disagreement`` (||std_i mu_i||)."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the policy."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic."""
    temperature_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the log-temperature."""
    init_temperature: float = number(1.0, gt=0)
    """Initial entropy temperature."""
    learn_temperature: bool = flag(True)
    """Tune the temperature towards ``target_entropy`` (False: keep ``init_temperature``)."""
    target_entropy: Optional[float] = number(None, optional=True)
    """Entropy the temperature tuning aims at; None means -action_dim."""
    backup_entropy: bool = flag(True)
    """Subtract temperature * log pi(a'|s') in the critic target (the soft Bellman backup)."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of actor and critics."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step (real and model together)."""


PRESETS: dict[str, dict] = {
    # The authors' D4RL configs (tianheyu927/mopo, examples/config/d4rl/*.py): rollout_length, penalty_coeff.
    "halfcheetah-medium": dict(horizon=1, penalty=1.0),
    "halfcheetah-medium-replay": dict(horizon=5, penalty=1.0),
    "halfcheetah-medium-expert": dict(horizon=5, penalty=5.0),
    "halfcheetah-random": dict(horizon=5, penalty=0.5),
    "hopper-medium": dict(horizon=5, penalty=5.0),
    "hopper-medium-replay": dict(horizon=5, penalty=1.0),
    "hopper-medium-expert": dict(horizon=5, penalty=1.0),
    "hopper-random": dict(horizon=5, penalty=1.0),
    "walker2d-medium": dict(horizon=5, penalty=5.0),
    "walker2d-medium-replay": dict(horizon=1, penalty=1.0),
    "walker2d-medium-expert": dict(horizon=1, penalty=2.0),
    "walker2d-random": dict(horizon=1, penalty=1.0),
}


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    temperature: TrainState
    target_critic_params: dict
    buffer: ModelBuffer
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_critic = jax.random.split(key)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net, critic_net = TanhGaussianActor(config.hidden_dims, spec.action_dim), Critic(config.hidden_dims)
    temp_net = LogScalar(config.init_temperature, "log_temperature")
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    temperature = TrainState.create(apply_fn=temp_net.apply, params=temp_net.init(k_actor), tx=optax.adam(config.temperature_lr))
    buffer = init_buffer(config.buffer_size, spec.obs_dim, spec.action_dim)
    return State(actor, critic, temperature, critic.params, buffer, jnp.zeros((), jnp.int32))


def rollout(config: Config, state: State, data: DeviceData, key: jax.Array) -> tuple[State, dict]:
    """One rollout round of the current (stochastic) policy in the model, into the buffer."""
    policy = lambda obs, k: tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, obs), k, False)
    buffer, metrics = rollout_into_buffer(state.buffer, data, policy, key, config.rollout_batch_size, config.horizon,
                                          config.uncertainty)
    return state.replace(buffer=buffer), metrics


def make_batch(config: Config, data: DeviceData, key: jax.Array) -> Batch:
    """The real rows of the batch, round(f B) uniform transitions (``update`` adds the model rows)."""
    return sample_uniform(data, key, real_batch_size(config.batch_size, config.real_ratio), config.discount)


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """SAC's twin-critic TD error against the clipped double-Q soft target, on the mixed batch (model rewards penalised)."""
    temperature = state.temperature.apply_fn(state.temperature.params) if config.backup_entropy else None
    next_q = soft_next_value(state.actor.apply_fn, state.actor.params, state.critic.apply_fn, state.target_critic_params,
                             batch.next_observations, key, temperature)
    target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_q))
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """E[temperature log pi(a~|s) - min_i Q_i(s, a~)] over the mixed batch's states."""
    temperature = state.temperature.apply_fn(state.temperature.params)
    return sac_actor_loss(state.actor.apply_fn, params, state.critic.apply_fn, state.critic.params, batch.observations,
                          temperature, key)


def temperature_loss(config: Config, state: State, params, batch: Batch, entropy: jax.Array) -> tuple[jax.Array, dict]:
    temperature = state.temperature.apply_fn(params)
    loss = sac_temperature_loss(temperature, entropy, entropy_target(config.target_entropy, batch.actions.shape[-1]))
    return loss, {"temperature_loss": loss, "temperature": temperature}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    num_model = config.batch_size - real_batch_size(config.batch_size, config.real_ratio)
    batch = with_model_rows(batch, state.buffer, jax.random.fold_in(key, 7), num_model, config.discount, config.penalty)
    critic_key, actor_key = jax.random.split(key)
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch, critic_key), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, actor_key), has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    grads, t_info = jax.grad(
        lambda p: temperature_loss(config, state, p, batch, a_info["entropy"]), has_aux=True
    )(state.temperature.params)
    if config.learn_temperature:
        state = state.replace(temperature=state.temperature.apply_gradients(grads=grads))
    state = state.replace(
        target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    penalty_mean = config.penalty * model_rows_mean(batch, batch.extras["uncertainty"])
    return state, {**c_info, **a_info, **t_info, "model_penalty_mean": penalty_mean}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """Deterministic: tanh(mean); stochastic: a sample of the tanh-squashed Gaussian."""
    return tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="mopo",
    description="MOPO: SAC on real + model rollouts whose reward is penalised by the ensemble's uncertainty (model-based)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    make_batch=make_batch,
    q_value=q_value,
    device_model=algo_device_model,
    rollout=rollout,
    rollout_every=lambda config: config.rollout_every,
))

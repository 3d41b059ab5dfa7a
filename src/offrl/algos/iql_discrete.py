"""Implicit Q-Learning with a discrete (softmax) policy (Kostrikov, Nair & Levine 2021).

The IQL losses with one Q output per action; Q is only ever read at the data's actions:
  value:   L_V  = E_D[ L_tau( min_i Q'_i(s, a) - V(s) ) ],      L_tau(u) = |tau - 1(u<0)| u^2
  critic:  L_Q  = E_D[ (r + discount (1 - d) V(s') - Q_i(s, a))^2 ]  for both Q_i
  actor:   L_pi = -E_D[ min(exp(beta (min_i Q'_i(s, a) - V(s))), max_weight) log pi(a|s) ]
           pi(.|s) = softmax(MLP(s)): an advantage-weighted cross-entropy
  policy:  a = argmax_a pi(a|s)
Update order as in ``iql``: value, actor, critic, then the Polyak target.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, flag, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import (action_values, advantage_weights, categorical_log_prob, ensemble_td_loss, expectile_loss,
                          polyak_update, td_target)
from offrl.nets import MLP, DiscreteCritic, ValueNet
from offrl.nets.discrete import greedy_or_sampled


@dataclass(frozen=True)
class Config(Checked):
    """IQL with a softmax policy; the defaults are the paper's MuJoCo locomotion settings (Kostrikov et al.
    2021, App. B; the paper gives none for discrete actions) except ``beta``, measured on the discrete
    datasets (docs/algorithms/iql_discrete.md)."""

    expectile: float = number(0.7, gt=0, lt=1)
    """Expectile tau of the value loss (0.5 = mean; -> 1 approaches the in-sample max)."""
    beta: float = number(1.0, ge=0)
    """Inverse temperature of the advantage weights exp(beta * A). 1.0: on lunarlander-medium the locomotion
    value 3.0 scored 36 and 1.0 scored 94 (2 seeds each, 10k updates); CartPole and Acrobot reach 97-100 with either."""
    max_weight: float = number(100.0, gt=0)
    """Clip of the advantage weights."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the policy (cosine-decayed over the run when ``cosine_actor_lr``)."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic."""
    value_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the value network."""
    cosine_actor_lr: bool = flag(True)
    """Decay the actor learning rate to zero with a cosine schedule over the run's updates."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of actor, critics and value network."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    value: TrainState
    target_critic_params: dict
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    if spec.num_actions is None:
        raise ValueError("iql_discrete needs a dataset with discrete actions (DatasetInfo.num_actions)")
    k_actor, k_critic, k_value = jax.random.split(key, 3)
    obs = jnp.zeros((1, spec.obs_dim))
    actor_net = MLP(config.hidden_dims, spec.num_actions)
    critic_net, value_net = DiscreteCritic(config.hidden_dims, spec.num_actions), ValueNet(config.hidden_dims)
    actor_lr = optax.cosine_decay_schedule(config.actor_lr, max(total_steps, 1)) if config.cosine_actor_lr else config.actor_lr
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs), tx=optax.adam(config.critic_lr))
    value = TrainState.create(apply_fn=value_net.apply, params=value_net.init(k_value, obs), tx=optax.adam(config.value_lr))
    return State(actor, critic, value, critic.params, jnp.zeros((), jnp.int32))


def target_q(state: State, batch: Batch) -> jax.Array:
    """min_i Q'_i(s, a) of the target critics at the data's actions (shared by the value and actor losses)."""
    q_all = state.critic.apply_fn(state.target_critic_params, batch.observations)  # [num_qs, B, A]
    return action_values(q_all, batch.actions).min(axis=0)


def value_loss(config: Config, state: State, params, batch: Batch, q: jax.Array) -> tuple[jax.Array, dict]:
    """Expectile regression of V(s) on q = min_i Q'_i(s, a) over dataset actions."""
    v = state.value.apply_fn(params, batch.observations)
    loss = expectile_loss(q - v, config.expectile).mean()
    return loss, {"value_loss": loss, "v_mean": v.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, q: jax.Array) -> tuple[jax.Array, dict]:
    """Advantage-weighted cross-entropy: -E[min(exp(beta A), max_weight) log pi(a|s)], A = q - V(s)."""
    v = state.value.apply_fn(state.value.params, batch.observations)
    weights = advantage_weights(q - v, config.beta, config.max_weight)
    logits = state.actor.apply_fn(params, batch.observations)
    loss = -(weights * categorical_log_prob(logits, batch.actions)).mean()
    return loss, {"actor_loss": loss, "adv_weight_mean": weights.mean(), "adv_mean": (q - v).mean()}


def critic_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """TD regression of both Q_i(s, a) on r + discount (1 - d) V(s')."""
    next_v = state.value.apply_fn(state.value.params, batch.next_observations)
    target = td_target(batch.rewards, batch.terminals, batch.discounts, next_v)
    q = action_values(state.critic.apply_fn(params, batch.observations), batch.actions)  # [num_qs, B]
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    q = target_q(state, batch)
    grads, v_info = jax.grad(lambda p: value_loss(config, state, p, batch, q), has_aux=True)(state.value.params)
    state = state.replace(value=state.value.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, q), has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch), has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    state = state.replace(
        critic=critic,
        target_critic_params=polyak_update(critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    return state, {**v_info, **a_info, **c_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """argmax_a pi(a|s) (deterministic) or a ~ pi(.|s); int32 [B]."""
    return greedy_or_sampled(state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return action_values(state.critic.apply_fn(state.critic.params, observations), actions).min(axis=0)


register(Algo(
    name="iql_discrete",
    description="Implicit Q-Learning with a softmax policy for discrete actions (Kostrikov et al. 2021)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
    normalize_observations=True,
    discrete=True,
))

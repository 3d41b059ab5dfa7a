"""BRAC: Behavior Regularized Actor Critic (Wu, Tucker & Nachum 2019) with the KL divergence.

A SAC-style actor-critic that keeps the policy pi close to a learned behaviour proxy pi_b = pi_beta-hat:
  divergence:  D(s) = D_KL(pi(.|s) || pi_b(.|s)) ~= mean_j [log pi(a_j|s) - log pi_b(a_j|s)],  a_j ~ pi(.|s)
  critic:      y = r + discount (1 - d) [ min_i Q'_i(s', a') - temperature log pi(a'|s') - vp alpha D(s') ],  a' ~ pi(.|s')
               (vp = 1 for the value penalty, ``brac_v``: reward r - discount alpha D(s'); vp = 0 for ``brac_p``)
  actor:       L_pi = E_D[ alpha D(s) + temperature log pi(a~|s) - min_i Q_i(s, a~) ]
  alpha:       fixed, or the dual step L_alpha = -alpha (D - target_divergence)  (log-parameterised, alpha <= MAX_ALPHA)
  behaviour:   L_b = -E_D[ log pi_b(a|s) ]  (maximum likelihood, trained in the same update)
Update order: behaviour, critic, actor, alpha, then the Polyak target. For the first
``behaviour_warmup_steps`` updates only pi_b is trained (the paper pre-trains it separately).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, ConfigError, flag, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import behaviour_nll_loss, ensemble_td_loss, polyak_update, sampled_kl, td_target
from offrl.nets import BehaviourPolicy, Critic, LogScalar, TanhGaussianActor, tanh_gaussian_action, tanh_gaussian_sample_and_log_prob

MAX_ALPHA = 500.0
"""Upper bound of alpha, as the authors' clip: log alpha is clipped after each dual step, else a target KL
the actor cannot reach raises it without end (Adam moves it about alpha_lr per update) until the actor's loss overflows."""


@dataclass(frozen=True)
class Config(Checked):
    """BRAC with policy regularisation (``brac_p``); defaults from the authors' KL scripts (Wu et al. 2019)."""

    alpha: float = number(0.1, gt=0)
    """Weight of the divergence D_KL(pi || pi_b): in the actor loss (and, with ``value_penalty``, the critic target); larger = closer to the data. The initial value when ``target_divergence`` is set."""
    target_divergence: Optional[float] = number(None, optional=True)
    """None: alpha stays fixed. A number: alpha is a Lagrange multiplier trained so the estimated KL tracks this target."""
    value_penalty: bool = flag(False)
    """Also subtract discount * alpha * D(s') in the critic target (BRAC-v); False penalises only the actor (BRAC-p)."""
    num_samples: int = integer(4, ge=1)
    """Actions a ~ pi(.|s) per state in the sampled KL estimate."""
    temperature: float = number(0.0, ge=0)
    """Fixed SAC entropy temperature (weight of log pi in actor loss and target); the KL already contains -entropy."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critics."""
    num_qs: int = integer(2, ge=1)
    """Number of critics in the ensemble; targets and the actor use their minimum."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the policy."""
    critic_lr: float = number(1e-3, gt=0)
    """Adam learning rate of the critics."""
    alpha_lr: float = number(1e-3, gt=0)
    """Adam learning rate of log alpha (used only with ``target_divergence``)."""
    behaviour_lr: float = number(5e-4, gt=0)
    """Adam learning rate of the behaviour proxy pi_b."""
    behaviour_components: int = integer(1, ge=1)
    """Gaussian components of pi_b (1 = tanh-Gaussian; more = a tanh-Gaussian mixture)."""
    behaviour_warmup_steps: int = integer(0, ge=0)
    """Updates at the start during which only pi_b is trained (actor, critics and alpha wait)."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layer sizes of actor, critics and pi_b."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""


@dataclass(frozen=True)
class ValuePenaltyConfig(Config):
    """BRAC with the value penalty (``brac_v``): as ``brac_p``, and the critic target subtracts discount * alpha * D(s')."""

    value_penalty: bool = flag(True)
    """Also subtract discount * alpha * D(s') in the critic target (BRAC-v); False penalises only the actor (BRAC-p)."""


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    behaviour: TrainState
    alpha: TrainState
    target_critic_params: dict
    step: jax.Array


def _check(config: Config) -> None:
    """The rule between fields (each field's own range is declared in ``Config``)."""
    if config.target_divergence is not None and not config.alpha <= MAX_ALPHA:
        raise ConfigError(f"brac: alpha, the initial value of the trained alpha, must be <= {MAX_ALPHA:g} with "
                          f"target_divergence (got {config.alpha})")


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    _check(config)
    k_actor, k_critic, k_behaviour = jax.random.split(key, 3)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net = TanhGaussianActor(config.hidden_dims, spec.action_dim)
    critic_net = Critic(config.hidden_dims, num_qs=config.num_qs)
    behaviour_net = BehaviourPolicy(config.hidden_dims, spec.action_dim, config.behaviour_components)
    alpha_net = LogScalar(config.alpha, "log_alpha")

    def make(net, params, lr):
        return TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(lr))

    critic = make(critic_net, critic_net.init(k_critic, obs, acts), config.critic_lr)
    return State(
        actor=make(actor_net, actor_net.init(k_actor, obs), config.actor_lr),
        critic=critic,
        behaviour=make(behaviour_net, behaviour_net.init(k_behaviour, obs), config.behaviour_lr),
        alpha=make(alpha_net, alpha_net.init(k_actor), config.alpha_lr),
        target_critic_params=critic.params,
        step=jnp.zeros((), jnp.int32),
    )


def divergence(config: Config, state: State, mean: jax.Array, log_std: jax.Array, observations: jax.Array, key: jax.Array) -> jax.Array:
    """Sampled D_KL(pi(.|s) || pi_b(.|s)) per state (``offrl.losses.sampled_kl``); pi_b is held fixed."""
    behaviour_dist = jax.lax.stop_gradient(state.behaviour.apply_fn(state.behaviour.params, observations))
    return sampled_kl(key, mean, log_std, behaviour_dist, config.num_samples)


def behaviour_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """-E_D log pi_b(a|s): maximum likelihood of the data actions (``offrl.losses.behaviour_nll_loss``)."""
    return behaviour_nll_loss(state.behaviour.apply_fn, params, batch.observations, batch.actions)


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Ensemble TD error against min_i Q'_i(s', a') - temperature log pi(a'|s') [- alpha D(s') with the value penalty]."""
    k_action, k_kl = jax.random.split(key)
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.next_observations)
    next_actions, next_log_probs = tanh_gaussian_sample_and_log_prob(mean, log_std, k_action)
    next_v = state.critic.apply_fn(state.target_critic_params, batch.next_observations, next_actions).min(axis=0)
    next_v = next_v - config.temperature * next_log_probs
    if config.value_penalty:
        alpha = state.alpha.apply_fn(state.alpha.params)
        next_v = next_v - alpha * divergence(config, state, mean, log_std, batch.next_observations, k_kl)
    target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_v))
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """E[alpha D(s) + temperature log pi(a~|s) - min_i Q_i(s, a~)] with reparameterised a~ ~ pi(.|s)."""
    k_action, k_kl = jax.random.split(key)
    mean, log_std = state.actor.apply_fn(params, batch.observations)
    actions, log_probs = tanh_gaussian_sample_and_log_prob(mean, log_std, k_action)
    q = state.critic.apply_fn(state.critic.params, batch.observations, actions).min(axis=0)
    kl = divergence(config, state, mean, log_std, batch.observations, k_kl)
    alpha = state.alpha.apply_fn(state.alpha.params)
    loss = (alpha * kl + config.temperature * log_probs - q).mean()
    return loss, {"actor_loss": loss, "kl_mean": kl.mean(), "entropy": -log_probs.mean()}


def alpha_loss(config: Config, state: State, params, kl_mean: jax.Array) -> tuple[jax.Array, dict]:
    """-alpha (D - target_divergence): raises alpha while the KL is above the target, lowers it below."""
    alpha = state.alpha.apply_fn(params)
    target = 0.0 if config.target_divergence is None else config.target_divergence
    loss = -alpha * (jax.lax.stop_gradient(kl_mean) - target)
    return loss, {"alpha_loss": loss, "alpha": alpha}


def _select(condition: jax.Array, if_true, if_false):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), if_true, if_false)


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    critic_key, actor_key = jax.random.split(key)
    grads, b_info = jax.grad(lambda p: behaviour_loss(config, state, p, batch), has_aux=True)(state.behaviour.params)
    warm = state.replace(behaviour=state.behaviour.apply_gradients(grads=grads), step=state.step + 1)
    new = warm
    grads, c_info = jax.grad(lambda p: critic_loss(config, new, p, batch, critic_key), has_aux=True)(new.critic.params)
    new = new.replace(critic=new.critic.apply_gradients(grads=grads))
    grads, a_info = jax.grad(lambda p: actor_loss(config, new, p, batch, actor_key), has_aux=True)(new.actor.params)
    new = new.replace(actor=new.actor.apply_gradients(grads=grads))
    grads, t_info = jax.grad(lambda p: alpha_loss(config, new, p, a_info["kl_mean"]), has_aux=True)(new.alpha.params)
    if config.target_divergence is not None:
        alpha = new.alpha.apply_gradients(grads=grads)
        clipped = jax.tree.map(lambda x: jnp.minimum(x, math.log(MAX_ALPHA)), alpha.params)
        new = new.replace(alpha=alpha.replace(params=clipped))
    new = new.replace(target_critic_params=polyak_update(new.critic.params, new.target_critic_params, config.tau))
    if config.behaviour_warmup_steps == 0:
        return new, {**b_info, **c_info, **a_info, **t_info}
    warming = state.step < config.behaviour_warmup_steps
    rl_info = jax.tree.map(lambda x: jnp.where(warming, jnp.nan, x), {**c_info, **a_info, **t_info})
    return _select(warming, warm, new), {**b_info, **rl_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """Deterministic: tanh(mean); stochastic: a sample of the tanh-squashed Gaussian."""
    return tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="brac_p",
    description="BRAC with policy regularisation: SAC-style actor penalised by alpha * KL(pi || learned behaviour policy)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))

register(Algo(
    name="brac_v",
    description="BRAC with value penalty: the KL penalty also enters the critic target (reward r - discount * alpha * KL)",
    config_cls=ValuePenaltyConfig,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))

"""Conservative Q-Learning, CQL(H) for continuous actions (Kumar, Zhou, Tucker & Levine 2020).

SAC (twin critics, tanh-Gaussian actor, learned entropy temperature) whose critic loss adds the
conservative term of eq. 4, with log sum_a exp Q estimated by importance sampling (App. F):
  critic:  L_Q = sum_i E_D[ (Q_i(s, a) - y)^2 ] + alpha sum_i E_s[ LSE_i(s) - Q_i(s, a) ]
           LSE_i(s) = logsumexp_j( Q_i(s, a_j) - log p(a_j) ) - log 3N   over N actions from each of
           Unif[-1, 1]^d, pi(.|s) and pi(.|s')   (offrl.losses.cql_logsumexp)
  target:  y = r + discount (1 - d) min_i Q'_i(s', a'),  a' ~ pi(.|s')    (+ entropy if backup_entropy)
           or, with max_backup, y = r + discount (1 - d) min_i max_j Q'_i(s', a'_j) over N samples
  Lagrange (eq. 5, with ``target_action_gap``): L_Q has alpha (gap_i - target_action_gap) and
           alpha = exp(log alpha) follows the dual step on -alpha (mean_i gap_i - target_action_gap)
  actor:   SAC's E[temperature log pi(a~|s) - min_i Q_i(s, a~)]; during the first ``bc_steps``
           updates E[temperature log pi(a~|s) - log pi(a|s)] (behaviour-cloning warm-up)
  Cal-QL (Nakamoto et al. 2023; registered as ``calql``, ``calibrated=True``): in LSE_i the
           policy's actions count with max(Q_i(s, a_j), G(s)), G the discounted Monte-Carlo return
           of the data from s (``batch.extras["mc_return"]``; offrl.losses.calibrated_q), so the
           push-down stops at the behaviour's value: the fix for CQL's dip when fine-tuning online.
Update order: critic (+ alpha), actor, temperature, Polyak target. Every sampled action of a batch
goes through the critic in ONE call with a flat [B * (3N + 1), obs + act] layout.
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
from offrl.data.returns import discounted_returns
from offrl.losses import cql_proposals, cql_q_and_logsumexp, ensemble_td_loss, entropy_target, polyak_update, td_target
from offrl.losses import temperature_loss as sac_temperature_loss
from offrl.nets import (Critic, LogScalar, TanhGaussianActor, q_on_action_sets, tanh_gaussian_action, tanh_gaussian_log_prob,
                        tanh_gaussian_sample_and_log_prob)

MAX_ALPHA = 1e6
"""A trained alpha is clipped to [0, MAX_ALPHA], as in the authors' code."""


@dataclass(frozen=True)
class Config(Checked):
    """CQL(H); defaults: the authors' Gym-MuJoCo setting (``Config.preset("locomotion")``, see docs/algorithms/cql.md)."""

    alpha: float = number(5.0, ge=0)
    """Weight of the conservative term alpha (LSE - Q_data); larger is more conservative. Initial value when trained."""
    target_action_gap: Optional[float] = number(None, optional=True)
    """None: alpha stays fixed. A number tau: alpha is a Lagrange multiplier trained so E[LSE - Q_data] tracks tau (eq. 5)."""
    alpha_lr: float = number(3e-4, gt=0)
    """Adam learning rate of log alpha (used only with ``target_action_gap``; the authors use the critic's rate)."""
    num_samples: int = integer(10, ge=1)
    """Actions N drawn from each of the three proposals per state for the log-sum-exp (3N in total)."""
    max_backup: bool = flag(False)
    """Target min_i max_j Q'_i(s', a'_j) over ``num_samples`` policy actions a'_j, without the entropy term."""
    backup_entropy: bool = flag(False)
    """Subtract temperature * log pi(a'|s') in the target (the authors' default leaves it out)."""
    bc_steps: int = integer(40_000, ge=0)
    """Updates at the start whose actor loss clones the data (log pi(a|s)) instead of maximising Q."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critic."""
    actor_lr: float = number(1e-4, gt=0)
    """Adam learning rate of the policy."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the twin critic."""
    temperature_lr: float = number(1e-4, gt=0)
    """Adam learning rate of the log entropy temperature (the authors use the policy's rate)."""
    init_temperature: float = number(1.0, gt=0)
    """Initial entropy temperature."""
    target_entropy: Optional[float] = number(None, optional=True)
    """Entropy the temperature tuning aims at; None means -action_dim."""
    hidden_dims: tuple[int, ...] = sizes((256, 256, 256))
    """Hidden layer sizes of actor and critics."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""
    calibrated: bool = flag(False)
    """Cal-QL: floor the policy actions' Q in the log-sum-exp at the data's Monte-Carlo return (the ``calql`` entry sets it)."""

    @classmethod
    def preset(cls, domain: str, **overrides) -> "Config":
        """The defaults of one domain (``"locomotion"`` or ``"maze"``, see PRESETS), with ``overrides`` on top."""
        if domain not in PRESETS:
            raise ConfigError(f"cql: unknown preset {domain!r}; choose one of {sorted(PRESETS)}")
        values = {**PRESETS[domain], **overrides}
        if domain == "maze" and "target_action_gap" not in overrides:
            values["target_action_gap"] = reference_gap_to_ours(5.0, values.get("num_samples", cls.num_samples))
        return cls(**values)


def reference_gap_to_ours(reference_gap: float, num_samples: int) -> float:
    """The authors' code leaves out -log 3N from the log-sum-exp: their threshold (``lagrange_thresh``) is ours + log 3N."""
    return reference_gap - math.log(3 * num_samples)


PRESETS: dict[str, dict] = {
    # The authors' Gym-MuJoCo command (README) and examples/cql_mujoco_new.py: the class defaults.
    "locomotion": {},
    # The authors' AntMaze script examples/cql_antmaze_new.py: Lagrange with threshold 5.0 (their units,
    # converted in Config.preset) and min_q_weight 1.0; the max backup described for AntMaze (that
    # script's own default is off; see docs/algorithms/cql.md).
    "maze": dict(alpha=1.0, max_backup=True),
}


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    temperature: TrainState
    alpha: TrainState
    target_critic_params: dict
    step: jax.Array


def _check(config: Config) -> None:
    """The rules between fields (each field's own range is declared in ``Config``)."""
    if config.target_action_gap is not None and config.alpha <= 0:
        raise ConfigError(f"cql: with target_action_gap set, alpha is the initial Lagrange multiplier exp(log alpha) "
                          f"and must be > 0, got {config.alpha}")
    if config.calibrated and type(config) is Config:
        raise ConfigError("cql: calibrated=True needs the data's Monte-Carlo returns, which the calql algorithm "
                          "provides: train `calql` instead")


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    _check(config)
    k_actor, k_critic = jax.random.split(key)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net, critic_net = TanhGaussianActor(config.hidden_dims, spec.action_dim), Critic(config.hidden_dims)
    temp_net, alpha_net = LogScalar(config.init_temperature), LogScalar(max(config.alpha, 1e-8))
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    temperature = TrainState.create(apply_fn=temp_net.apply, params=temp_net.init(k_actor), tx=optax.adam(config.temperature_lr))
    alpha = TrainState.create(apply_fn=alpha_net.apply, params=alpha_net.init(k_actor), tx=optax.adam(config.alpha_lr))
    return State(actor, critic, temperature, alpha, critic.params, jnp.zeros((), jnp.int32))


def cql_weight(config: Config, state: State) -> jax.Array:
    """``config.alpha``, or the trained clip(exp(log alpha), 0, MAX_ALPHA) with ``target_action_gap``."""
    if config.target_action_gap is not None:
        return jnp.clip(state.alpha.apply_fn(state.alpha.params), 0.0, MAX_ALPHA)
    return jnp.asarray(config.alpha, jnp.float32)


def sample_actions(config: Config, state: State, batch: Batch, key: jax.Array) -> dict:
    """The 3N proposal actions per state (uniform, pi(.|s), pi(.|s')), their log-densities, and pi's actions at s'
    (``offrl.losses.cql_proposals``; no gradient reaches the actor: the critic loss does not differentiate it)."""
    return cql_proposals(state.actor.apply_fn, state.actor.params, batch.observations, batch.next_observations,
                         config.num_samples, key)


def next_value(config: Config, state: State, batch: Batch, samples: dict) -> jax.Array:
    """V(s') of the target: min_i Q'_i(s', a'_1) (- temperature log pi), or min_i max_j Q'_i(s', a'_j)."""
    next_obs, next_actions = batch.next_observations, samples["next_actions"]
    if config.max_backup:
        return q_on_action_sets(state.critic.apply_fn, state.target_critic_params, next_obs, next_actions).max(axis=2).min(axis=0)
    value = state.critic.apply_fn(state.target_critic_params, next_obs, next_actions[:, 0]).min(axis=0)
    if config.backup_entropy:
        value = value - state.temperature.apply_fn(state.temperature.params) * samples["next_log_probs"][:, 0]
    return value


def critic_loss(config: Config, state: State, params, batch: Batch, samples: dict) -> tuple[jax.Array, dict]:
    """TD error of both critics plus the conservative term, from one flat critic call on [B * (3N + 1)] pairs."""
    target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_value(config, state, batch, samples)))
    reference = batch.extras["mc_return"] if config.calibrated else None  # Cal-QL: the policy actions' floor
    q, lse = cql_q_and_logsumexp(state.critic.apply_fn, params, batch.observations, batch.actions, samples, reference)
    td_loss = ensemble_td_loss(q, target)
    gap = (lse - q).mean(axis=1)  # [num_qs]: E_s[LSE_i(s) - Q_i(s, a)]
    weight = jax.lax.stop_gradient(cql_weight(config, state))
    penalty = weight * (gap if config.target_action_gap is None else gap - config.target_action_gap).sum()
    loss = td_loss + penalty
    info = {"critic_loss": loss, "td_loss": td_loss, "cql_penalty": penalty, "q_mean": q.mean(), "logsumexp_mean": lse.mean(),
            "action_gap_mean": gap.mean(), "alpha": weight}
    return loss, info


def alpha_loss(config: Config, state: State, params, action_gap: jax.Array) -> tuple[jax.Array, dict]:
    """-alpha (gap - target_action_gap): its descent raises alpha while the gap exceeds the target, lowers it below."""
    alpha = jnp.clip(state.alpha.apply_fn(params), 0.0, MAX_ALPHA)
    loss = -alpha * (jax.lax.stop_gradient(action_gap) - config.target_action_gap)
    return loss, {"alpha_loss": loss}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """SAC's actor loss, or during the first ``bc_steps`` updates E[temperature log pi(a~|s) - log pi(a|s)]."""
    mean, log_std = state.actor.apply_fn(params, batch.observations)
    actions, log_probs = tanh_gaussian_sample_and_log_prob(mean, log_std, key)
    temperature = state.temperature.apply_fn(state.temperature.params)
    q = state.critic.apply_fn(state.critic.params, batch.observations, actions).min(axis=0)
    data_log_probs = tanh_gaussian_log_prob(mean, log_std, batch.actions)
    target = jnp.where(state.step < config.bc_steps, data_log_probs, q)
    loss = (temperature * log_probs - target).mean()
    return loss, {"actor_loss": loss, "entropy": -log_probs.mean()}


def temperature_loss(config: Config, state: State, params, entropy: jax.Array, action_dim: int) -> tuple[jax.Array, dict]:
    """temperature * (entropy - target_entropy), as SAC's (Haarnoja et al. 2018, eq. 18)."""
    temperature = state.temperature.apply_fn(params)
    loss = sac_temperature_loss(temperature, entropy, entropy_target(config.target_entropy, action_dim))
    return loss, {"temperature_loss": loss, "temperature": temperature}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    sample_key, actor_key = jax.random.split(key)
    samples = sample_actions(config, state, batch, sample_key)
    grads, info = jax.grad(lambda p: critic_loss(config, state, p, batch, samples), has_aux=True)(state.critic.params)
    new_state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    if config.target_action_gap is not None:  # the dual step uses the gap before the critic's step, as the critic loss did
        grads, l_info = jax.grad(lambda p: alpha_loss(config, state, p, info["action_gap_mean"]), has_aux=True)(state.alpha.params)
        new_state, info = new_state.replace(alpha=state.alpha.apply_gradients(grads=grads)), {**info, **l_info}
    state = new_state
    grads, a_info = jax.grad(lambda p: actor_loss(config, state, p, batch, actor_key), has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    grads, t_info = jax.grad(
        lambda p: temperature_loss(config, state, p, a_info["entropy"], batch.actions.shape[-1]), has_aux=True
    )(state.temperature.params)
    state = state.replace(
        temperature=state.temperature.apply_gradients(grads=grads),
        target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        step=state.step + 1,
    )
    return state, {**info, **a_info, **t_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """Deterministic: tanh(mean); stochastic: a sample of the tanh-squashed Gaussian."""
    return tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


def mc_returns(config: Config, arrays: dict, dataset) -> dict:
    """Cal-QL's reference: the discounted reward sum to the end of each episode, G_t (no bootstrap at time limits)."""
    ends = (dataset.terminals > 0) | (dataset.timeouts > 0)
    g = discounted_returns(arrays["rewards"], arrays["terminals"], ends, config.discount).returns
    return {"mc_return": g.astype("float32")}


def episode_mc_returns(config: Config, rewards, terminals) -> dict:
    """``mc_returns`` of one finished online episode."""
    ends = terminals > 0
    ends[-1:] = True
    return {"mc_return": discounted_returns(rewards, terminals, ends, config.discount).returns.astype("float32")}


@dataclass(frozen=True)
class CalQLConfig(Config):
    """Cal-QL: CQL with ``calibrated=True`` (the other defaults as CQL's)."""

    calibrated: bool = flag(True)
    """Floor the policy actions' Q in the log-sum-exp at the data's Monte-Carlo return (Cal-QL); False gives CQL."""


register(Algo(
    name="calql",
    description="Cal-QL: CQL whose pushed-down policy Q is floored at the data's Monte-Carlo return (for online fine-tuning)",
    config_cls=CalQLConfig,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
    device_extras=mc_returns,
    episode_extras=episode_mc_returns,
))


register(Algo(
    name="cql",
    description="Conservative Q-Learning, CQL(H): SAC whose critic pushes down an importance-sampled log-sum-exp of Q",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))

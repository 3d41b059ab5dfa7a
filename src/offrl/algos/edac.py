"""SAC-N and EDAC (An, Moon, Kim & Song 2021, "Uncertainty-Based Offline RL with Diversified Q-Ensemble").

SAC with N critics instead of two, all in ONE vmapped network (``offrl.nets.Critic`` with
``num_qs = N``); the minimum over the ensemble is the pessimistic estimate, in the target and in the
actor loss. Off the data the members disagree, and the more of them, the lower their minimum there:
  critic:      y = r + discount (1 - d) [ min_i Q'_i(s', a') - temperature log pi(a'|s') ],  a' ~ pi(.|s')
               L_Q = sum_i E_D[ (Q_i(s, a) - y)^2 ]  (+ eta ES(s, a) for EDAC)
  EDAC (eq. 6): ES = E_D[ 1/(N-1) sum_{i != j} cos(grad_a Q_i(s, a), grad_a Q_j(s, a)) ]   (offrl.losses.gradient_diversity)
               diversifies the members' action gradients at the data, so far fewer critics suffice
  actor:       L_pi = E_D[ temperature log pi(a~|s) - min_i Q_i(s, a~) ],  a~ ~ pi(.|s) (reparameterised)
  temperature: L_T = temperature (entropy - target_entropy), as SAC's (Haarnoja et al. 2018, eq. 18)
Registered as ``sac_n`` (eta = 0) and ``edac`` (eta = 1). Update order as offrl's SAC: critic, actor,
temperature, Polyak target (with N = 2 and the same widths, ``sac_n`` is ``sac_offline`` update for update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, ConfigError, choice, flag, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import (ensemble_td_loss, entropy_target, gradient_diversity, polyak_update, sac_actor_loss, soft_next_value,
                          td_target)
from offrl.losses import temperature_loss as sac_temperature_loss
from offrl.nets import Critic, LogScalar, TanhGaussianActor, ensemble_action_gradients, tanh_gaussian_action


@dataclass(frozen=True)
class Config(Checked):
    """SAC-N; defaults from An et al. (2021), App. C, and its re-implementation in the CORL library (sac_n.py)."""

    num_qs: int = integer(10, ge=1)
    """Critics N in the ensemble (one vmapped network). The paper's per-dataset N: halfcheetah 10, walker2d 20, hopper 200-500."""
    eta: float = number(0.0, ge=0)
    """Weight of EDAC's gradient-diversity penalty; 0 is SAC-N (train ``edac`` for eta > 0)."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target critics."""
    actor_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the policy."""
    critic_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the critic ensemble."""
    temperature_lr: float = number(3e-4, gt=0)
    """Adam learning rate of the log-temperature."""
    init_temperature: float = number(1.0, gt=0)
    """Initial entropy temperature (the weight of -log pi in the soft value)."""
    target_entropy: Optional[float] = number(None, optional=True)
    """Entropy the temperature tuning aims at; None means -action_dim (SAC's heuristic)."""
    backup_entropy: bool = flag(True)
    """Subtract temperature * log pi(a'|s') in the critic target (the soft Bellman backup, as the paper)."""
    log_std_min: float = number(-5.0)
    """Lower clip of the policy's pre-squash log-std (the paper's code: -5; offrl's SAC: -20)."""
    log_std_max: float = number(2.0)
    """Upper clip of the policy's pre-squash log-std."""
    hidden_dims: tuple[int, ...] = sizes((256, 256, 256))
    """Hidden layer sizes of the actor and of every critic (the paper: 3 layers of 256)."""
    batch_size: int = integer(256, ge=1)
    """Transitions per gradient step."""
    network_init: Literal["lecun_normal", "uniform_fan_in", "small_output"] = choice("lecun_normal")
    """Dense initialisation (``offrl.nets.NETWORK_INITS``). The paper's code uses ``small_output`` (PyTorch's uniform
    kernels, hidden biases 0.1, output layers within +-1e-3 actor / +-3e-3 critics: every member starts near Q = 0);
    offrl keeps Flax's default, with which SAC-N's 50 critics stay inside the OOD trap's support and with
    ``small_output`` leave it (a = 0.25 after 1,000 updates; EDAC's 10 stay with both)."""

    @classmethod
    def preset(cls, dataset: str, **overrides) -> "Config":
        """The paper's N (and eta) for a D4RL-style locomotion ``dataset`` (e.g. ``hopper-medium``), ``overrides`` on top."""
        name = "edac" if issubclass(cls, EDACConfig) else "sac_n"
        table = PRESETS[name]
        if dataset.removesuffix("-v2") not in table:
            raise ValueError(f"{name}: no preset for {dataset!r}; presets exist for {', '.join(sorted(table))}")
        return cls(**{**table[dataset.removesuffix("-v2")], **overrides})


@dataclass(frozen=True)
class EDACConfig(Config):
    """EDAC: SAC-N with the gradient-diversity penalty; eta = 1 is the paper's value for most MuJoCo datasets."""

    eta: float = number(1.0, ge=0)
    """Weight of the gradient-diversity penalty ES (An et al. 2021, eq. 6); 0 gives SAC-N. The paper: 1 (5 on the medium-expert data of halfcheetah and walker2d)."""


PRESETS: dict[str, dict] = {
    # The paper's per-dataset N (and eta) on the D4RL locomotion data (An et al. 2021, appendix), as CORL's configs re-run them.
    "sac_n": {
        "halfcheetah-medium": dict(num_qs=10), "halfcheetah-medium-replay": dict(num_qs=10),
        "halfcheetah-medium-expert": dict(num_qs=10),
        "hopper-medium": dict(num_qs=500), "hopper-medium-replay": dict(num_qs=200),
        "hopper-medium-expert": dict(num_qs=200),
        "walker2d-medium": dict(num_qs=20), "walker2d-medium-replay": dict(num_qs=20),
        "walker2d-medium-expert": dict(num_qs=20),
    },
    "edac": {
        "halfcheetah-medium": dict(num_qs=10, eta=1.0), "halfcheetah-medium-replay": dict(num_qs=10, eta=1.0),
        "halfcheetah-medium-expert": dict(num_qs=10, eta=5.0),
        "hopper-medium": dict(num_qs=50, eta=1.0), "hopper-medium-replay": dict(num_qs=50, eta=1.0),
        "hopper-medium-expert": dict(num_qs=50, eta=1.0),
        "walker2d-medium": dict(num_qs=10, eta=1.0), "walker2d-medium-replay": dict(num_qs=10, eta=1.0),
        "walker2d-medium-expert": dict(num_qs=10, eta=5.0),
    },
}


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    temperature: TrainState
    target_critic_params: dict
    step: jax.Array


def _check(config: Config) -> None:
    """The rules that tie fields together (each field's own range is declared on the Config)."""
    if config.eta > 0 and type(config) is Config:
        raise ConfigError("sac_n: eta > 0 adds EDAC's diversity penalty: train `edac` instead")
    if config.eta > 0 and config.num_qs < 2:
        raise ConfigError(f"edac: the diversity penalty needs num_qs >= 2 critics, got {config.num_qs}")
    if config.log_std_min >= config.log_std_max:
        raise ConfigError(f"sac_n/edac: log_std_min ({config.log_std_min}) must be below log_std_max ({config.log_std_max})")


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    _check(config)
    k_actor, k_critic = jax.random.split(key)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    actor_net = TanhGaussianActor(config.hidden_dims, spec.action_dim, config.log_std_min, config.log_std_max, config.network_init)
    critic_net = Critic(config.hidden_dims, num_qs=config.num_qs, initializer=config.network_init)
    temp_net = LogScalar(config.init_temperature, "log_temperature")
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    temperature = TrainState.create(apply_fn=temp_net.apply, params=temp_net.init(k_actor), tx=optax.adam(config.temperature_lr))
    return State(actor, critic, temperature, critic.params, jnp.zeros((), jnp.int32))


def critic_target(config: Config, state: State, batch: Batch, key: jax.Array) -> jax.Array:
    """y = r + discount (1 - d) [min_i Q'_i(s', a') - temperature log pi(a'|s')] with a' ~ pi(.|s') (no gradient)."""
    temperature = state.temperature.apply_fn(state.temperature.params) if config.backup_entropy else None
    next_q = soft_next_value(state.actor.apply_fn, state.actor.params, state.critic.apply_fn, state.target_critic_params,
                             batch.next_observations, key, temperature)
    return jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_q))


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Every member's TD error against the ensemble-minimum soft target, plus eta * ES (EDAC)."""
    target = critic_target(config, state, batch, key)
    if config.eta > 0:  # one forward pass gives Q and (through its backward pass) each member's action gradient
        q, grads = ensemble_action_gradients(state.critic.apply_fn, params, batch.observations, batch.actions, config.num_qs)
        diversity = gradient_diversity(grads)
    else:
        q, diversity = state.critic.apply_fn(params, batch.observations, batch.actions), jnp.zeros(())
    td_loss = ensemble_td_loss(q, target)
    loss = td_loss + config.eta * diversity
    return loss, {"critic_loss": loss, "td_loss": td_loss, "diversity": diversity, "q_mean": q.mean(),
                  "q_std_mean": q.std(axis=0).mean()}


def actor_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """E[temperature log pi(a~|s) - min_i Q_i(s, a~)] with reparameterised a~ ~ pi(.|s)."""
    temperature = state.temperature.apply_fn(state.temperature.params)
    return sac_actor_loss(state.actor.apply_fn, params, state.critic.apply_fn, state.critic.params, batch.observations,
                          temperature, key)


def temperature_loss(config: Config, state: State, params, entropy: jax.Array, action_dim: int) -> tuple[jax.Array, dict]:
    """temperature * (entropy - target_entropy), as SAC's (Haarnoja et al. 2018, eq. 18)."""
    temperature = state.temperature.apply_fn(params)
    loss = sac_temperature_loss(temperature, entropy, entropy_target(config.target_entropy, action_dim))
    return loss, {"temperature_loss": loss, "temperature": temperature}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    critic_key, actor_key = jax.random.split(key)
    grads, c_info = jax.grad(lambda p: critic_loss(config, state, p, batch, critic_key), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
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
    return state, {**c_info, **a_info, **t_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """Deterministic: tanh(mean); stochastic: a sample of the tanh-squashed Gaussian."""
    return tanh_gaussian_action(*state.actor.apply_fn(state.actor.params, observations), key, deterministic)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    """The ensemble's minimum min_i Q_i(s, a): the pessimistic estimate the actor maximises."""
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="sac_n",
    description="SAC-N: SAC with N critics in one vmapped ensemble, the minimum as the pessimistic value (An et al. 2021)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))


register(Algo(
    name="edac",
    description="EDAC: SAC-N whose critics' action gradients are diversified at the data, so fewer critics suffice (An et al. 2021)",
    config_cls=EDACConfig,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
))

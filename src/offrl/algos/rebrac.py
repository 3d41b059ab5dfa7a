"""ReBRAC (Tarasov, Kurenkov, Nikulin & Kolesnikov 2023, "Revisiting the Minimalist Approach to Offline RL").

TD3+BC with the behaviour-cloning penalty in both losses, each with its own weight, LayerNorm in the
critics, deeper networks, larger batches and larger learning rates:
  critic:  a~' = clip(pi'(s') + clip(eps, -c, c), -1, 1),  eps ~ N(0, sigma^2)
           y = r + discount (1 - d) [ min_i Q'_i(s', a~') - beta_critic ||a~' - a'||^2 ]
           with a' the dataset's NEXT action (``batch.extras["next_actions"]``)
           L_Q = sum_i E_D[ (Q_i(s, a) - y)^2 ]
  actor:   L_pi = E_D[ beta_actor ||pi(s) - a||^2 - lambda min_i Q_i(s, pi(s)) ],
           lambda = 1 / mean|min_i Q_i(s, pi(s))| (no gradient; ``normalize_q``), else 1
The squared distances are summed over the action dimensions. Update order as TD3+BC: critic every
update; actor and both targets every ``policy_freq`` updates. With both betas 0 and no LayerNorm the
losses are TD3's (critic as td3bc's; actor -lambda min_i Q_i).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from offrl.algos.registry import Algo, DataSpec, register
from offrl.config import Checked, choice, flag, integer, number, sizes
from offrl.data.sampling import Batch
from offrl.losses import ensemble_td_loss, polyak_update, td_target
from offrl.nets import Critic, DeterministicActor


@dataclass(frozen=True)
class Config(Checked):
    """ReBRAC; defaults from Tarasov et al. (2023) as the authors' configs in the CORL library set them (rebrac.py and
    configs/offline/rebrac/*): their D4RL locomotion settings; the two BC weights are tuned per dataset (``PRESETS``)."""

    actor_bc_coef: float = number(0.01, ge=0)
    """beta_actor: weight of ||pi(s) - a||^2 in the actor loss. The authors' locomotion values: 0.001-0.1 (see PRESETS)."""
    critic_bc_coef: float = number(0.01, ge=0)
    """beta_critic: weight of ||a~' - a'||^2 subtracted from the bootstrap value (a' = the data's next action). 0-0.5 per dataset."""
    normalize_q: bool = flag(True)
    """Divide the actor's Q term by mean|Q(s, pi(s))| over the batch (no gradient), as TD3+BC and the authors' code."""
    critic_layer_norm: bool = flag(True)
    """LayerNorm after every hidden Dense layer of the critics (the paper's main stabiliser)."""
    actor_layer_norm: bool = flag(False)
    """LayerNorm after every hidden Dense layer of the actor (the authors' locomotion configs: off)."""
    layer_norm_after_activation: bool = flag(False)
    """Put each LayerNorm after the ReLU (Dense -> ReLU -> LayerNorm, the authors' code) instead of before it."""
    network_init: Literal["lecun_normal", "uniform_fan_in", "small_output"] = choice("lecun_normal")
    """Dense initialisation (``offrl.nets.NETWORK_INITS``); the authors' code: ``small_output`` (hidden biases 0.1,
    output layers within +-1e-3 actor / +-3e-3 critic)."""
    discount: float = number(0.99, ge=0, le=1)
    """Discount factor gamma."""
    tau: float = number(0.005, gt=0, le=1)
    """Polyak averaging rate of the target actor and critics."""
    policy_noise: float = number(0.2, ge=0)
    """Std of the target policy smoothing noise (unit action box)."""
    noise_clip: float = number(0.5, ge=0)
    """Clip of the target policy smoothing noise."""
    policy_freq: int = integer(2, ge=1)
    """Actor and target updates happen every ``policy_freq`` critic updates."""
    actor_lr: float = number(1e-3, gt=0)
    """Adam learning rate of the actor."""
    critic_lr: float = number(1e-3, gt=0)
    """Adam learning rate of the twin critic."""
    num_qs: int = integer(2, ge=1)
    """Critics in the ensemble; the target and the actor use their minimum."""
    hidden_dims: tuple[int, ...] = sizes((256, 256, 256))
    """Hidden layer sizes of the actor and of every critic (the paper: 3 layers of 256)."""
    batch_size: int = integer(1024, ge=1)
    """Transitions per gradient step (the paper's locomotion setting; TD3+BC's was 256)."""

    @classmethod
    def preset(cls, dataset: str, **overrides) -> "Config":
        """The authors' BC weights for a D4RL-style locomotion ``dataset`` (e.g. ``hopper-medium-replay``), ``overrides`` on top."""
        key = dataset.removesuffix("-v2")
        if key not in PRESETS:
            raise ValueError(f"rebrac: no preset for {dataset!r}; presets exist for {', '.join(sorted(PRESETS))}")
        return cls(**{**PRESETS[key], **overrides})


PRESETS: dict[str, dict] = {
    # (actor_bc_coef, critic_bc_coef) of the authors' per-dataset configs (CORL configs/offline/rebrac/*/*_v2.yaml).
    f"{env}-{kind}": dict(actor_bc_coef=a, critic_bc_coef=c) for env, kind, a, c in (
        ("halfcheetah", "medium", 0.001, 0.01), ("halfcheetah", "medium-replay", 0.01, 0.001),
        ("halfcheetah", "medium-expert", 0.01, 0.1), ("hopper", "medium", 0.01, 0.01),
        ("hopper", "medium-replay", 0.05, 0.5), ("hopper", "medium-expert", 0.1, 0.01),
        ("walker2d", "medium", 0.05, 0.1), ("walker2d", "medium-replay", 0.05, 0.01),
        ("walker2d", "medium-expert", 0.01, 0.01),
    )
}


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    target_actor_params: dict
    target_critic_params: dict
    step: jax.Array


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    k_actor, k_critic = jax.random.split(key)
    obs, acts = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.action_dim))
    layout = dict(initializer=config.network_init, layer_norm_after_activation=config.layer_norm_after_activation)
    actor_net = DeterministicActor(config.hidden_dims, spec.action_dim, layer_norm=config.actor_layer_norm, **layout)
    critic_net = Critic(config.hidden_dims, num_qs=config.num_qs, layer_norm=config.critic_layer_norm, **layout)
    actor = TrainState.create(apply_fn=actor_net.apply, params=actor_net.init(k_actor, obs), tx=optax.adam(config.actor_lr))
    critic = TrainState.create(apply_fn=critic_net.apply, params=critic_net.init(k_critic, obs, acts), tx=optax.adam(config.critic_lr))
    return State(actor, critic, actor.params, critic.params, jnp.zeros((), jnp.int32))


def next_actions(config: Config, arrays: dict, dataset) -> dict:
    """The data's next action a_{t+1} of every transition (``next_actions`` [N, act]) and whether it is known
    (``next_action_known`` [N]): at an episode's last transition there is none (a terminal does not bootstrap;
    after a time limit the penalty is left out, 0, for that transition)."""
    actions = np.asarray(arrays["actions"], np.float32)
    ends = np.asarray(dataset.episode_ends, bool)
    following = np.concatenate([actions[1:], actions[-1:]])
    return {"next_actions": np.where(ends[:, None], actions, following).astype(np.float32),
            "next_action_known": (~ends).astype(np.float32)}


def critic_target(config: Config, state: State, batch: Batch, key: jax.Array) -> jax.Array:
    """y = r + discount (1 - d) [min_i Q'_i(s', a~') - beta_critic ||a~' - a'||^2] (no gradient)."""
    smoothed = state.actor.apply_fn(state.target_actor_params, batch.next_observations)
    noise = jnp.clip(config.policy_noise * jax.random.normal(key, smoothed.shape), -config.noise_clip, config.noise_clip)
    smoothed = jnp.clip(smoothed + noise, -1.0, 1.0)
    next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations, smoothed).min(axis=0)
    penalty = jnp.sum((smoothed - batch.extras["next_actions"]) ** 2, axis=-1) * batch.extras["next_action_known"]
    return jax.lax.stop_gradient(td_target(batch.rewards, batch.terminals, batch.discounts, next_q - config.critic_bc_coef * penalty))


def critic_loss(config: Config, state: State, params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
    """Every critic's TD error against the BC-penalised clipped double-Q target."""
    target = critic_target(config, state, batch, key)
    q = state.critic.apply_fn(params, batch.observations, batch.actions)
    loss = ensemble_td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, state: State, params, batch: Batch) -> tuple[jax.Array, dict]:
    """E[beta_actor ||pi(s) - a||^2 - lambda min_i Q_i(s, pi(s))]."""
    actions = state.actor.apply_fn(params, batch.observations)
    q = state.critic.apply_fn(state.critic.params, batch.observations, actions).min(axis=0)
    lmbda = jax.lax.stop_gradient(1.0 / jnp.abs(q).mean()) if config.normalize_q else jnp.ones(())
    bc = jnp.sum((actions - batch.actions) ** 2, axis=-1)
    loss = (config.actor_bc_coef * bc - lmbda * q).mean()
    return loss, {"actor_loss": loss, "lambda": lmbda, "action_mse": jnp.mean((actions - batch.actions) ** 2)}


def update(config: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: critic_loss(config, state, p, batch, key), has_aux=True)(state.critic.params)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads), step=state.step + 1)

    def actor_step(state: State) -> tuple[State, dict]:
        grads, actor_info = jax.grad(lambda p: actor_loss(config, state, p, batch), has_aux=True)(state.actor.params)
        actor = state.actor.apply_gradients(grads=grads)
        return state.replace(
            actor=actor,
            target_actor_params=polyak_update(actor.params, state.target_actor_params, config.tau),
            target_critic_params=polyak_update(state.critic.params, state.target_critic_params, config.tau),
        ), actor_info

    def skip(state: State) -> tuple[State, dict]:  # delayed policy update: no actor step; NaN metrics are skipped in averages
        return state, {"actor_loss": jnp.nan, "lambda": jnp.nan, "action_mse": jnp.nan}

    state, actor_info = jax.lax.cond(state.step % config.policy_freq == 0, actor_step, skip, state)
    return state, {**info, **actor_info}


def act(config: Config, state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return state.actor.apply_fn(state.actor.params, observations)


def q_value(config: Config, state: State, observations: jax.Array, actions: jax.Array) -> jax.Array:
    return state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)


register(Algo(
    name="rebrac",
    description="ReBRAC: TD3+BC with BC terms in actor and critic target, LayerNorm critics, larger nets and batches (Tarasov et al. 2023)",
    config_cls=Config,
    init=init,
    update=update,
    act=act,
    q_value=q_value,
    device_extras=next_actions,
))

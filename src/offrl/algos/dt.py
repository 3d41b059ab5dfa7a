"""Decision Transformer (Chen et al. 2021): return-conditioned imitation with a causal transformer.

Windows of K steps (R_t, s_t, a_t) of whole episodes (``offrl.data.sequences.sample_windows``:
R_t = sum_{k>=t} r_k, left-padded before an episode's start) train a causal transformer
(``offrl.nets.transformer.DecisionTransformer``) to predict each step's action from the tokens up to s_t:

  loss:  L = sum_{b,k} m_{b,k} ||pi(R_{<=k}, s_{<=k}, a_{<k})_k - a_k||^2 / (act_dim sum_{b,k} m_{b,k})   (`action_loss`)

At evaluation the policy carries each environment's last K steps (``offrl.data.sequences.Context``):
R_0 is the requested return, R_{t+1} = R_t - r_t, and the action is read at the newest step (`act_carry`).
Defaults: the paper's OpenAI-Gym settings (Chen et al. 2021, Table 8 and its ``gym/experiment.py``),
which d3rlpy's DecisionTransformerConfig also uses.
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
from offrl.config import Checked, ConfigError, choice, integer, number
from offrl.data.sequences import Context, Window, check_sequence_data, new_context, push, record_actions, sample_windows
from offrl.nets.transformer import DecisionTransformer


@dataclass(frozen=True)
class Config(Checked):
    """Decision Transformer; defaults from Chen et al. 2021 (gym experiments) and d3rlpy."""

    context_len: int = integer(20, ge=1)
    """K, the steps per window and per evaluation context (paper: 20 for gym)."""
    embed_dim: int = integer(128, ge=1)
    """Width of every token embedding (paper: 128)."""
    num_layers: int = integer(3, ge=1)
    """Transformer blocks (paper: 3)."""
    num_heads: int = integer(1, ge=1)
    """Attention heads; must divide ``embed_dim`` (paper: 1)."""
    dropout: float = number(0.1, ge=0, lt=1)
    """Dropout of embeddings, attention weights and residual branches (paper: 0.1)."""
    activation: Literal["relu", "gelu"] = choice("relu")
    """Activation of the blocks' MLPs (the paper's gym code sets GPT-2's to relu)."""
    max_timestep: int = integer(1000, ge=1)
    """Size of the learned timestep embedding; later steps share its last entry (paper/d3rlpy: 1000)."""
    return_scale: float = number(1e-3, gt=0)
    """Factor on the return-to-go before its embedding (paper: 1/1000 for gym)."""
    learning_rate: float = number(1e-4, gt=0)
    """AdamW peak learning rate (paper: 1e-4)."""
    weight_decay: float = number(1e-4, ge=0)
    """AdamW weight decay (paper: 1e-4)."""
    warmup_steps: int = integer(10_000, ge=1)
    """Linear warm-up: lr_n = learning_rate min((n + 1) / warmup_steps, 1) at update n (paper: 10,000)."""
    grad_clip: float = number(0.25, gt=0)
    """Global gradient-norm clip (paper: 0.25)."""
    batch_size: int = integer(64, ge=1)
    """Windows per gradient step (paper: 64)."""
    target_return: Optional[float] = number(None, optional=True)
    """Return asked for at evaluation, in the env's reward units; None: the highest episode return in the dataset."""


@struct.dataclass
class State:
    model: TrainState
    step: jax.Array


def _network(config: Config, spec: DataSpec) -> DecisionTransformer:
    return DecisionTransformer(act_dim=spec.action_dim, embed_dim=config.embed_dim, num_layers=config.num_layers,
                               num_heads=config.num_heads, dropout=config.dropout, max_timestep=config.max_timestep,
                               return_scale=config.return_scale, activation=config.activation)


def learning_rate(config: Config):
    """The warm-up schedule: learning_rate min((n + 1) / warmup_steps, 1)."""
    return lambda n: config.learning_rate * jnp.minimum((n + 1) / config.warmup_steps, 1.0)


def init(config: Config, spec: DataSpec, key: jax.Array, total_steps: int) -> State:
    if config.embed_dim % config.num_heads:
        raise ConfigError(f"dt.Config.num_heads = {config.num_heads} does not divide embed_dim = {config.embed_dim}; "
                          "Fix: pick num_heads among the divisors of embed_dim")
    window = new_context(1, config.context_len, spec.obs_dim, spec.action_dim, 0.0).window
    net = _network(config, spec)
    params = net.init(key, window.returns_to_go, window.observations, window.actions, window.timesteps, window.mask)
    # one flat parameter vector for the optimiser: the same element-wise AdamW and global-norm clip, a fraction
    # of the compiled operations of one update per parameter array
    tx = optax.flatten(optax.chain(optax.clip_by_global_norm(config.grad_clip),
                                   optax.adamw(learning_rate(config), weight_decay=config.weight_decay)))
    return State(model=TrainState.create(apply_fn=net.apply, params=params, tx=tx), step=jnp.zeros((), jnp.int32))


def predict(model: TrainState, params, window: Window, training: bool = False, key: jax.Array | None = None) -> jax.Array:
    """The predicted action of every step of ``window`` [B, K, act_dim]."""
    rngs = {"dropout": key} if training else None
    return model.apply_fn(params, window.returns_to_go, window.observations, window.actions, window.timesteps, window.mask,
                          training, rngs=rngs)


def action_loss(config: Config, model: TrainState, params, window: Window, key: jax.Array) -> tuple[jax.Array, dict]:
    """Squared error of the predicted actions over the real (unpadded) steps."""
    error = jnp.mean((predict(model, params, window, True, key) - window.actions) ** 2, axis=-1)
    loss = jnp.sum(error * window.mask) / jnp.maximum(jnp.sum(window.mask), 1.0)
    return loss, {"action_loss": loss}


def update(config: Config, state: State, window: Window, key: jax.Array) -> tuple[State, dict]:
    grads, info = jax.grad(lambda p: action_loss(config, state.model, p, window, key), has_aux=True)(state.model.params)
    info["learning_rate"] = learning_rate(config)(state.step)
    return State(model=state.model.apply_gradients(grads=grads), step=state.step + 1), info


def make_batch(config: Config, data, key: jax.Array) -> Window:
    return sample_windows(data, key, config.batch_size, config.context_len)


def init_carry(config: Config, spec: DataSpec, targets: jax.Array) -> Context:
    return new_context(jnp.shape(targets)[0], config.context_len, spec.obs_dim, spec.action_dim, targets)


def act_carry(config: Config, state: State, carry: Context, observations, rewards, starts, key: jax.Array,
              deterministic: bool = True) -> tuple[jax.Array, Context]:
    """Append the current step to each env's context and act at it (a deterministic policy: ``key`` is unused)."""
    carry = push(carry, observations, rewards, starts)
    actions = predict(state.model, state.model.params, carry.window)[:, -1]
    return actions, record_actions(carry, actions)


def prepare_dataset(config: Config, dataset):
    check_sequence_data(dataset, config.context_len, "dt")
    return dataset


register(Algo(
    name="dt",
    description="Decision Transformer: a causal transformer over (return-to-go, state, action) windows",
    config_cls=Config,
    init=init,
    update=update,
    act=None,
    make_batch=make_batch,
    normalize_observations=True,
    prepare_dataset=prepare_dataset,
    init_carry=init_carry,
    act_carry=act_carry,
    return_conditioned=True,
))

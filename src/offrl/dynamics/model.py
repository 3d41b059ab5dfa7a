"""Training, saving and loading the probabilistic dynamics ensemble (:mod:`offrl.nets.dynamics`).

The model predicts a Gaussian over the target y = (s' - s, r) from x = (s, a), in env units; inputs
are normalised with the training split's mean/std. Training (MBPO's recipe, as MOPO/COMBO/MOBILE use it):

    loss = sum_i E[ (mu_i(x) - y)^2 exp(-logvar_i(x)) + logvar_i(x) ]              (Gaussian NLL, per dimension)
           + sum_l decay_l |W_l|^2 / 2                                             (weight decay growing with depth)
           + bound_weight (sum max_logvar - sum min_logvar)                        (soft log-variance bounds)

Each member sees its own shuffle of the training split; a held-out split (``holdout_ratio``, at most
``max_holdout`` transitions) scores every member after every epoch by its MSE. A member's weights are
kept when its held-out MSE improves by more than ``improvement`` (1 %) on its best; training stops when
no member improved for ``patience`` epochs (or at ``max_epochs`` / ``max_minutes``). The elites are the
``num_elites`` members of lowest held-out MSE. Epochs run ``epochs_per_call`` at a time in one compiled
call (a ``lax.scan`` over epochs around a scan over minibatches).

Files: ``NAME.msgpack`` (the arrays, flax msgpack, no pickle) and ``NAME.json`` (the card: dataset
checksum, held-out errors, elites, config, the sha256 of the msgpack bytes), both written atomically;
:func:`load_dynamics` checks the arrays' checksum and, given a dataset, that the model was made from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from offrl.checkpoint import atomic_write_bytes
from offrl.compiled import cached
from offrl.config import Checked, integer, number, sizes
from offrl.nets import MLP
from offrl.nets.dynamics import DynamicsEnsemble, layer_weight_decays

FORMAT = "offrl-dynamics"
FORMAT_VERSION = 1


class DynamicsError(ValueError):
    """A dynamics model that cannot be trained, loaded or used; the message names the fix."""


@dataclass(frozen=True)
class DynamicsConfig(Checked):
    """The ensemble and its training (defaults: MBPO / MOPO's, as OfflineRL-Kit runs them)."""

    hidden_dims: tuple[int, ...] = sizes((200, 200, 200, 200))
    """Hidden layer sizes of every member (swish activations)."""
    num_members: int = integer(7, ge=1)
    """Members of the ensemble."""
    num_elites: int = integer(5, ge=1)
    """Members of lowest held-out error used for rollouts."""
    learning_rate: float = number(1e-3, gt=0)
    """Adam learning rate."""
    batch_size: int = integer(256, ge=1)
    """Transitions per member per gradient step."""
    holdout_ratio: float = number(0.2, gt=0, lt=1)
    """Share of the data held out to score the members (at most ``max_holdout`` transitions)."""
    max_holdout: int = integer(1000, ge=1)
    """Largest held-out split."""
    patience: int = integer(5, ge=1)
    """Stop after this many epochs in which no member improved its held-out MSE by more than ``improvement``."""
    improvement: float = number(0.01, ge=0)
    """Relative improvement of a member's held-out MSE that counts (and keeps its weights)."""
    max_epochs: Optional[int] = integer(None, ge=1, optional=True)
    """Budget: stop after this many epochs even without an early stop (None: no limit)."""
    max_minutes: Optional[float] = number(None, gt=0, optional=True)
    """Budget: stop after this many minutes of training (checked between compiled calls; None: no limit)."""
    epochs_per_call: int = integer(5, ge=1)
    """Epochs per compiled call."""
    bound_weight: float = number(0.01, ge=0)
    """Weight of the soft log-variance bound regulariser (sum max_logvar - sum min_logvar)."""
    termination_steps: int = integer(2000, ge=0)
    """Gradient steps of the learned termination head (trained only when the data has terminals)."""
    seed: int = integer(0)
    """Seed of the split, the initialisation and the shuffles."""

    def key(self) -> str:
        """A short hash of the settings that change the trained model (not the budget's minutes)."""
        values = {k: v for k, v in dataclasses.asdict(self).items() if k != "max_minutes"}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


@struct.dataclass
class DynamicsModel:
    """A trained ensemble as a pytree: it enters compiled code as data."""

    params: dict
    input_mean: jax.Array  # [obs_dim + act_dim]
    input_std: jax.Array  # [obs_dim + act_dim]
    elites: jax.Array  # [num_elites] int32
    term_params: Optional[dict]  # the learned termination head, or None
    hidden_dims: tuple = struct.field(pytree_node=False, default=(200, 200, 200, 200))
    obs_dim: int = struct.field(pytree_node=False, default=0)
    num_members: int = struct.field(pytree_node=False, default=7)


def ensemble_net(model_or_config, obs_dim: int, per_member: bool = False) -> DynamicsEnsemble:
    return DynamicsEnsemble(tuple(model_or_config.hidden_dims), obs_dim + 1, model_or_config.num_members, per_member)


TERM_HIDDEN = (64, 64)


def predict(model: DynamicsModel, obs: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Every member's Gaussian over (s' - s, r) at (s, a) in env units: (mean, logvar), each [M, B, obs_dim + 1]."""
    x = (jnp.concatenate([obs, actions], axis=-1) - model.input_mean) / model.input_std
    return ensemble_net(model, model.obs_dim).apply(model.params, x)


def termination_logits(model: DynamicsModel, obs, actions, next_obs) -> jax.Array:
    """The learned termination head's logit of P(s' is terminal | s, a, s') [B]."""
    x = (jnp.concatenate([obs, actions], axis=-1) - model.input_mean) / model.input_std
    xn = (next_obs - model.input_mean[: model.obs_dim]) / model.input_std[: model.obs_dim]
    return MLP(TERM_HIDDEN, 1).apply(model.term_params, jnp.concatenate([x, xn], axis=-1))[..., 0]


# ----------------------------------------------------------------------------- training


def gaussian_nll_loss(mean, logvar, target) -> jax.Array:
    """Per member [M]: E[(mean - y)^2 exp(-logvar) + logvar] over samples and dimensions (twice the NLL up to a constant)."""
    return ((mean - target) ** 2 * jnp.exp(-logvar)).mean(axis=(1, 2)) + logvar.mean(axis=(1, 2))


def ensemble_loss(params, net, x, y, decays, bound_weight) -> jax.Array:
    mean, logvar = net.apply(params, x)
    members = params["params"]["members"]
    decay = sum(d * 0.5 * jnp.sum(members[f"layer_{i}"]["kernel"] ** 2) for i, d in enumerate(decays))
    bounds = bound_weight * (members["max_logvar"].sum() - members["min_logvar"].sum())
    return gaussian_nll_loss(mean, logvar, y).sum() + decay + bounds


def holdout_errors(net, params, x, y) -> tuple[jax.Array, jax.Array]:
    """Held-out (MSE, Gaussian NLL) of every member [M], both averaged over samples and dimensions."""
    mean, logvar = net.apply(params, x)
    mse = ((mean - y) ** 2).mean(axis=(1, 2))
    nll = 0.5 * (((mean - y) ** 2) * jnp.exp(-logvar) + logvar + math.log(2 * math.pi)).mean(axis=(1, 2))
    return mse, nll


@cached(maxsize=16)
def _make_epochs(config: DynamicsConfig, obs_dim: int, n_train: int, batch_size: int):
    """A jitted (carry, keys[E]) -> (carry, per-epoch (mse [M], nll [M], improved)) running E epochs."""
    net = ensemble_net(config, obs_dim, per_member=True)
    shared = ensemble_net(config, obs_dim)
    decays = layer_weight_decays(len(config.hidden_dims) + 1)
    tx = optax.adam(config.learning_rate)
    m, steps = config.num_members, n_train // batch_size

    def epoch(carry, key, xs):
        params, opt_state, best, best_mse, since = carry
        x_train, y_train, x_hold, y_hold = xs

        def train(params, opt_state):
            perms = jax.vmap(lambda k: jax.random.permutation(k, n_train))(jax.random.split(key, m))
            batches = perms[:, : steps * batch_size].reshape(m, steps, batch_size).transpose(1, 0, 2)

            def step(c, idx):
                params, opt_state = c
                grads = jax.grad(ensemble_loss)(params, net, x_train[idx], y_train[idx], decays, config.bound_weight)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), None

            return jax.lax.scan(step, (params, opt_state), batches)[0]

        stopped = since >= config.patience  # a finished run stays as it is until the host reads it
        params, opt_state = jax.lax.cond(stopped, lambda p, o: (p, o), train, params, opt_state)
        mse, nll = holdout_errors(shared, params, x_hold, y_hold)
        better = jnp.isinf(best_mse) | ((best_mse - mse) / best_mse > config.improvement)
        better = better & ~stopped & jnp.isfinite(mse)
        pick = lambda new, old: jnp.where(better.reshape((m,) + (1,) * (new.ndim - 1)), new, old)
        best = jax.tree.map(pick, params, best)
        best_mse = jnp.where(better, mse, best_mse)
        since = jnp.where(stopped, since, jnp.where(better.any(), 0, since + 1))
        return (params, opt_state, best, best_mse, since), (mse, nll, ~stopped)

    @jax.jit
    def run(carry, keys, xs):
        return jax.lax.scan(lambda c, k: epoch(c, k, xs), carry, keys)

    return net, tx, run


def _split(n: int, config: DynamicsConfig, dataset_name: str) -> tuple[np.ndarray, np.ndarray]:
    holdout = min(int(n * config.holdout_ratio), config.max_holdout)
    if holdout < 1 or n - holdout < 2:
        raise DynamicsError(
            f"dataset {dataset_name!r} has {n} transitions: too few to hold out a validation split "
            f"(holdout_ratio {config.holdout_ratio} gives {holdout}). Fix: use a dataset of at least "
            f"{max(2 * math.ceil(1 / max(config.holdout_ratio, 1e-9)), 10)} transitions or raise --holdout-ratio")
    perm = np.random.default_rng(config.seed).permutation(n)
    return perm[holdout:], perm[:holdout]


def dataset_inputs_targets(dataset) -> tuple[np.ndarray, np.ndarray]:
    """x = (s, a) and y = (s' - s, r), float32, env units."""
    obs = np.asarray(dataset.observations, np.float32)
    x = np.concatenate([obs, np.asarray(dataset.actions, np.float32).reshape(len(obs), -1)], axis=1)
    y = np.concatenate([np.asarray(dataset.next_observations, np.float32) - obs,
                        np.asarray(dataset.rewards, np.float32)[:, None]], axis=1)
    return x, y


def train_dynamics(dataset, config: DynamicsConfig = DynamicsConfig(), log=None) -> tuple[DynamicsModel, dict]:
    """Train the ensemble on ``dataset``; returns the model (each member at its best epoch) and its card."""
    if dataset.num_actions is not None:
        raise DynamicsError("the dynamics ensemble models continuous actions; this dataset has discrete actions. "
                            "Fix: use a model-free discrete algorithm (see `offrl algos`)")
    if config.num_elites < 1 or config.num_elites > config.num_members:
        raise DynamicsError(f"num_elites must be in 1..num_members={config.num_members}, got {config.num_elites}")
    name = dataset.info.name or "dataset"
    x, y = dataset_inputs_targets(dataset)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DynamicsError(f"dataset {name!r} holds NaN/Inf observations, actions or rewards. Fix: clean the dataset")
    train_idx, hold_idx = _split(len(x), config, name)
    mean = x[train_idx].mean(axis=0)
    std = x[train_idx].std(axis=0)
    std = np.where(std < 1e-12, 1.0, std).astype(np.float32)
    xn = (x - mean) / std
    xs = tuple(jnp.asarray(a) for a in (xn[train_idx], y[train_idx], xn[hold_idx], y[hold_idx]))
    obs_dim = dataset.obs_dim
    batch_size = min(config.batch_size, len(train_idx))
    compiled_key = dataclasses.replace(config, max_epochs=None, max_minutes=None, epochs_per_call=1, seed=0, holdout_ratio=0.2,
                                       max_holdout=1000, termination_steps=0, num_elites=1)  # fields the program does not use
    net, tx, run = _make_epochs(compiled_key, obs_dim, len(train_idx), batch_size)
    key = jax.random.PRNGKey(config.seed)
    key, init_key = jax.random.split(key)
    params = jax.jit(net.init)(init_key, jnp.zeros((config.num_members, 1, x.shape[1])))
    carry = (params, tx.init(params), params, jnp.full((config.num_members,), jnp.inf), jnp.zeros((), jnp.int32))
    t0, epochs, history, stopped_by = time.perf_counter(), 0, [], "early_stop"
    while True:
        n = config.epochs_per_call if config.max_epochs is None else min(config.epochs_per_call, config.max_epochs - epochs)
        key, sub = jax.random.split(key)
        carry, (mse, nll, active) = run(carry, jax.random.split(sub, n), xs)
        since, ran = int(carry[4]), int(np.asarray(active).sum())
        mse, nll = np.asarray(mse), np.asarray(nll)
        for e in range(ran):
            history.append({"epoch": epochs + e + 1, "holdout_mse": mse[e].tolist(), "holdout_nll": nll[e].tolist()})
        epochs += ran
        if log is not None:
            log(f"epoch {epochs}: held-out MSE per member {np.round(mse[ran - 1], 5).tolist()}")
        if since >= config.patience:
            break
        if config.max_epochs is not None and epochs >= config.max_epochs:
            stopped_by = "max_epochs"
            break
        if config.max_minutes is not None and time.perf_counter() - t0 >= 60 * config.max_minutes:
            stopped_by = "max_minutes"
            break
    seconds = time.perf_counter() - t0
    best = carry[2]
    mse, nll = (np.asarray(v) for v in jax.jit(holdout_errors, static_argnums=0)(ensemble_net(config, obs_dim), best, xs[2], xs[3]))
    if not (np.isfinite(mse).all() and np.isfinite(nll).all()):
        raise DynamicsError(f"the ensemble's held-out predictions are NaN/Inf on {name!r}. "
                            "Fix: lower --learning-rate, or check the dataset for extreme values")
    elites = np.sort(np.argsort(mse, kind="stable")[: config.num_elites]).astype(np.int32)
    terminals = np.asarray(dataset.terminals) > 0
    term_params = _train_termination(x, np.asarray(dataset.next_observations, np.float32), terminals, mean, std, obs_dim,
                                     config) if terminals.any() else None
    model = DynamicsModel(params=best, input_mean=jnp.asarray(mean, jnp.float32), input_std=jnp.asarray(std),
                          elites=jnp.asarray(elites), term_params=term_params, hidden_dims=tuple(config.hidden_dims),
                          obs_dim=obs_dim, num_members=config.num_members)
    card = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "dataset_name": name, "env_id": dataset.info.env_id,
        "obs_dim": obs_dim, "act_dim": dataset.act_dim, "config": dataclasses.asdict(config),
        "holdout_mse": mse.tolist(), "holdout_nll": nll.tolist(), "elites": elites.tolist(), "epochs": epochs,
        "stopped_by": stopped_by, "train_seconds": seconds, "seconds_per_epoch": seconds / max(epochs, 1),
        "num_train": int(len(train_idx)), "num_holdout": int(len(hold_idx)), "learned_termination": term_params is not None,
        "history": history,
    }
    return model, card


def _train_termination(x, next_obs, terminals, mean, std, obs_dim, config: DynamicsConfig) -> dict:
    """A logistic head P(terminal | s, a, s') (an MLP), balanced between the classes; minibatch Adam."""
    net = MLP(TERM_HIDDEN, 1)
    inputs = np.concatenate([(x - mean) / std, (next_obs - mean[:obs_dim]) / std[:obs_dim]], axis=1).astype(np.float32)
    labels = terminals.astype(np.float32)
    pos = labels.mean()
    weights = np.where(labels > 0, 0.5 / max(pos, 1e-6), 0.5 / max(1 - pos, 1e-6)).astype(np.float32)
    key = jax.random.PRNGKey(config.seed + 1)
    params = jax.jit(net.init)(key, jnp.asarray(inputs[:1]))
    train = _termination_trainer(config.termination_steps, min(512, inputs.shape[0]))
    return train(params, key, jnp.asarray(inputs), jnp.asarray(labels), jnp.asarray(weights))


@cached(maxsize=8)
def _termination_trainer(steps: int, batch: int):
    """Jitted minibatch Adam on the class-balanced logistic loss of the termination head."""
    net, tx = MLP(TERM_HIDDEN, 1), optax.adam(1e-3)

    @jax.jit
    def train(params, key, inputs, labels, weights):
        def loss(p, idx):
            logits = net.apply(p, inputs[idx])[:, 0]
            return (weights[idx] * optax.sigmoid_binary_cross_entropy(logits, labels[idx])).mean()

        def step(c, k):
            p, o = c
            g = jax.grad(loss)(p, jax.random.randint(k, (batch,), 0, inputs.shape[0]))
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), o), None

        return jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, steps))[0][0]

    return train


def open_loop_errors(model: DynamicsModel, dataset, horizon: int, num_starts: int = 256, seed: int = 0) -> list[dict]:
    """Mean error of the elites' mean prediction rolled open loop along the data's own actions, per horizon 1..H.

    Starts are transitions with at least ``horizon`` steps left in their episode; the state error is the
    MSE of the predicted s_{t+k} against the data's, the reward error that of r_{t+k-1}.
    """
    ends = dataset.episode_end_index
    starts = np.flatnonzero(ends - np.arange(dataset.num_transitions) >= horizon - 1)
    if starts.size == 0:
        raise DynamicsError(f"no episode of the dataset has {horizon} steps. Fix: pass a shorter --horizon")
    starts = np.random.default_rng(seed).choice(starts, size=min(num_starts, starts.size), replace=False)
    obs_all, act_all = np.asarray(dataset.observations, np.float32), np.asarray(dataset.actions, np.float32)
    step = jax.jit(lambda s, a: jnp.mean(predict(model, s, a)[0][model.elites], axis=0))
    s, out = jnp.asarray(obs_all[starts]), []
    for k in range(horizon):
        mean = np.asarray(step(s, jnp.asarray(act_all[starts + k])))
        s_np = np.asarray(s) + mean[:, :-1]
        if not np.isfinite(s_np).all():
            raise DynamicsError(f"the model's predictions became NaN/Inf at horizon {k + 1}. Fix: retrain it with "
                                "`offrl dynamics train DATASET` (a lower learning rate)")
        out.append({"horizon": k + 1, "state_mse": float(((s_np - dataset.next_observations[starts + k]) ** 2).mean()),
                    "reward_mse": float(((mean[:, -1] - dataset.rewards[starts + k]) ** 2).mean())})
        s = jnp.asarray(s_np)
    return out


# ----------------------------------------------------------------------------- files


def _arrays(model: DynamicsModel) -> dict:
    out = {"params": serialization.to_state_dict(jax.device_get(model.params)),
           "input_mean": np.asarray(model.input_mean), "input_std": np.asarray(model.input_std),
           "elites": np.asarray(model.elites)}
    if model.term_params is not None:
        out["term_params"] = serialization.to_state_dict(jax.device_get(model.term_params))
    return out


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path).expanduser()
    if p.suffix in (".msgpack", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".msgpack"), p.with_suffix(".json")


def save_dynamics(path: str | os.PathLike, model: DynamicsModel, card: dict, dataset_checksum: str) -> Path:
    """Write ``PATH.msgpack`` (arrays) then ``PATH.json`` (card with the arrays' sha256), each atomically."""
    arrays_path, card_path = _paths(path)
    raw = serialization.msgpack_serialize(_arrays(model))
    card = {**card, "dataset_sha256": dataset_checksum, "arrays_sha256": hashlib.sha256(raw).hexdigest()}
    atomic_write_bytes(arrays_path, raw)
    atomic_write_bytes(card_path, json.dumps(card, indent=1, sort_keys=True).encode())
    return arrays_path


def read_card(path: str | os.PathLike) -> dict:
    arrays_path, card_path = _paths(path)
    if not card_path.is_file() or not arrays_path.is_file():
        raise DynamicsError(f"no dynamics model at {arrays_path} (+ {card_path.name}). Fix: train one with "
                            "`offrl dynamics train DATASET --out PATH`, or leave --dynamics empty to use or make the cached one")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise DynamicsError(f"{card_path}: unreadable card ({type(exc).__name__}). Fix: retrain with `offrl dynamics train`") from None
    if card.get("format") != FORMAT:
        raise DynamicsError(f"{card_path} is not an offrl dynamics card. Fix: pass the .json/.msgpack written by `offrl dynamics train`")
    return card


def load_dynamics(path: str | os.PathLike, dataset_checksum: str | None = None) -> tuple[DynamicsModel, dict]:
    """Read a model and its card; verify the arrays' sha256 and, given one, the dataset's checksum."""
    arrays_path, card_path = _paths(path)
    card = read_card(path)
    raw = arrays_path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != card.get("arrays_sha256"):
        raise DynamicsError(f"{arrays_path}: checksum mismatch with its card (the file was modified or truncated). "
                            "Fix: retrain with `offrl dynamics train DATASET`")
    if dataset_checksum is not None and card.get("dataset_sha256") != dataset_checksum:
        raise DynamicsError(
            f"dynamics model {arrays_path} was trained on another dataset ({card.get('dataset_name')!r}, sha256 "
            f"{str(card.get('dataset_sha256'))[:12]}...; this one is {dataset_checksum[:12]}...). Fix: train one on this "
            "dataset with `offrl dynamics train DATASET`, or leave --dynamics empty to use or make the cached one")
    try:
        arrays = serialization.msgpack_restore(raw)
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types on damaged input
        raise DynamicsError(f"{arrays_path}: corrupt ({type(exc).__name__}). Fix: retrain with `offrl dynamics train`") from None
    cfg = card["config"]
    model = DynamicsModel(
        params=jax.tree.map(jnp.asarray, arrays["params"]), input_mean=jnp.asarray(arrays["input_mean"]),
        input_std=jnp.asarray(arrays["input_std"]), elites=jnp.asarray(arrays["elites"], jnp.int32),
        term_params=jax.tree.map(jnp.asarray, arrays["term_params"]) if "term_params" in arrays else None,
        hidden_dims=tuple(cfg["hidden_dims"]), obs_dim=int(card["obs_dim"]), num_members=int(cfg["num_members"]))
    return model, card


def config_from_card(card: dict) -> DynamicsConfig:
    cfg = dict(card["config"])
    cfg["hidden_dims"] = tuple(cfg["hidden_dims"])
    return DynamicsConfig(**cfg)


def cache_path(dataset_checksum: str, config: DynamicsConfig) -> Path:
    """``$OFFRL_HOME/dynamics/<dataset sha256[:16]>-<config hash>``: where a dataset's model is found automatically."""
    from offrl.data.registry import offrl_home

    return offrl_home() / "dynamics" / f"{dataset_checksum[:16]}-{config.key()}"


_MEMORY: dict[tuple[str, str], tuple[DynamicsModel, dict]] = {}


def find_or_train(dataset, config: DynamicsConfig, path: str | None = None, log=None) -> tuple[DynamicsModel, dict]:
    """The model of ``dataset``: from ``path`` (checked against the dataset), else the cached one for
    (dataset checksum, config) in ``$OFFRL_HOME/dynamics``, else trained now and saved there."""
    from offrl.data.integrity import array_checksum

    checksum = array_checksum(dataset)
    if path:
        return load_dynamics(path, checksum)
    memo = (checksum, config.key())
    if memo in _MEMORY:
        return _MEMORY[memo]
    stem = cache_path(checksum, config)
    if stem.with_suffix(".json").is_file():
        try:
            _MEMORY[memo] = load_dynamics(stem, checksum)
            return _MEMORY[memo]
        except DynamicsError:
            pass  # a damaged cache entry is trained again and replaced
    model, card = train_dynamics(dataset, config, log=log)
    save_dynamics(stem, model, card, checksum)
    _MEMORY[memo] = load_dynamics(stem, checksum)
    return _MEMORY[memo]

"""The behaviour policy's log-probabilities of the logged actions: exact from the dataset, or a proxy.

offrl's own generators store ``Dataset.behaviour_log_probs`` where they know the behaviour policy (the
epsilon-greedy controllers of the discrete datasets, the uniform random pendulum). Elsewhere the proxy
pi_beta-hat is fitted on the data by maximum likelihood, in the compiled loop:

* discrete actions: pi_beta-hat(.|s) = softmax(MLP(s)), minimising -E_D[log pi_beta-hat(a|s)];
* continuous actions: the tanh-Gaussian mixture :class:`offrl.nets.BehaviourPolicy` on unit-box actions,
  minimising :func:`offrl.losses.behaviour.behaviour_nll_loss` (the proxy BRAC uses).

A proxy's density is a model, so its importance weights carry its error: ``source`` says which was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from offrl.config import Checked, choice, integer, number, sizes
from offrl.data import Dataset
from offrl.losses.behaviour import behaviour_nll_loss
from offrl.nets import MLP, BehaviourPolicy
from offrl.ope.episodes import OPEError
from offrl.ope.policy import Policy

SOURCES = ("auto", "data", "proxy")


@dataclass(frozen=True)
class ProxyConfig(Checked):
    """Settings of the behaviour-policy proxy fitted on the data."""

    source: Literal["auto", "data", "proxy"] = choice("auto")
    """Where pi_beta comes from: the dataset's stored log-probs (data), a fitted proxy (proxy), or data when stored (auto)."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layers of the proxy network."""
    components: int = integer(5, ge=1)
    """Mixture components of the continuous proxy."""
    learning_rate: float = number(1e-3, gt=0)
    """Adam step size."""
    batch_size: int = integer(256, ge=1)
    """Transitions per update."""
    steps: int = integer(10_000, ge=1)
    """Maximum-likelihood updates."""
    chunk: int = integer(1000, ge=1)
    """Updates per compiled call."""
    seed: int = integer(0)
    """Seed of the initialisation and batches."""


@dataclass
class BehaviourLogProbs:
    """log pi_beta(a_t|s_t) per transition [N] and where it came from (``data`` or ``proxy``)."""

    log_probs: np.ndarray
    source: str
    policy: Policy | None = None  # the proxy, when fitted
    nll: float | None = None


def fit_proxy(dataset: Dataset, config: ProxyConfig = ProxyConfig(), log: Callable[[str], None] | None = None) -> Policy:
    """The behaviour proxy fitted on ``dataset`` as a :class:`Policy` (``categorical`` or ``mixture``)."""
    obs = np.asarray(dataset.observations, np.float32)
    mean, std = obs.mean(axis=0), obs.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std).astype(np.float32)
    norm = lambda o: (o - mean) / std
    key_init, key_train = jax.random.split(jax.random.PRNGKey(config.seed))
    if dataset.is_discrete:
        net = MLP(config.hidden_dims, dataset.num_actions)
        actions = jnp.asarray(dataset.actions, jnp.int32)

        def loss_fn(p, o, a):
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(net.apply(p, norm(o))), a[:, None], axis=-1))

        scale = offset = None
    else:
        low, high = dataset.info.action_low, dataset.info.action_high
        if low is None or high is None:
            low = np.asarray(dataset.actions).min(axis=0) - 1e-3
            high = np.asarray(dataset.actions).max(axis=0) + 1e-3
        low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        scale, offset = (high - low) / 2.0, (high + low) / 2.0
        net = BehaviourPolicy(config.hidden_dims, dataset.act_dim, config.components)
        actions = jnp.asarray((np.asarray(dataset.actions, np.float32) - offset) / scale)

        def loss_fn(p, o, a):
            return behaviour_nll_loss(lambda pp, oo: net.apply(pp, norm(oo)), p, o, a)[0]

    params = net.init(key_init, jnp.zeros((1, obs.shape[1])))
    tx = optax.adam(config.learning_rate)
    data_obs, n = jnp.asarray(obs), len(obs)

    def update(carry, k):
        p, opt = carry
        idx = jax.random.randint(k, (config.batch_size,), 0, n)
        loss, grads = jax.value_and_grad(loss_fn)(p, data_obs[idx], actions[idx])
        updates, opt = tx.update(grads, opt, p)
        return (optax.apply_updates(p, updates), opt), loss

    run = jax.jit(lambda carry, keys: jax.lax.scan(update, carry, keys))
    carry, done = (params, tx.init(params)), 0
    while done < config.steps:
        length = min(config.chunk, config.steps - done)
        key_train, k = jax.random.split(key_train)
        carry, losses = run(carry, jax.random.split(k, length))
        done += length
        if log is not None:
            log(f"behaviour proxy: {done}/{config.steps} updates, NLL {float(losses.mean()):.4g}")
    final = carry[0]
    outputs = lambda o: net.apply(final, norm(o))
    if dataset.is_discrete:
        return Policy("categorical", outputs, obs.shape[1], num_actions=dataset.num_actions, name="behaviour proxy",
                      note="softmax MLP fitted by maximum likelihood")
    return Policy("mixture", outputs, obs.shape[1], action_scale=scale, action_offset=offset, name="behaviour proxy",
                  note=f"{config.components}-component tanh-Gaussian mixture fitted by maximum likelihood")


def behaviour_log_probs(dataset: Dataset, config: ProxyConfig = ProxyConfig(),
                        log: Callable[[str], None] | None = None) -> BehaviourLogProbs:
    """log pi_beta of every logged action, from ``config.source`` (see :data:`SOURCES`)."""
    from offrl.ope.policy import batched_log_prob

    stored = dataset.behaviour_log_probs
    if config.source == "data" or (config.source == "auto" and stored is not None):
        if stored is None:
            raise OPEError(f"{dataset.info.name or 'the dataset'} stores no behaviour_log_probs, and the importance-sampling "
                           "and doubly robust estimators need the behaviour policy's probabilities. Fix: fit the behaviour "
                           "proxy on the data (--behaviour proxy or auto), or use --estimators fqe (or mb)")
        return BehaviourLogProbs(np.asarray(stored, np.float64), "data")
    proxy = fit_proxy(dataset, config, log)
    lp = batched_log_prob(proxy, np.asarray(dataset.observations, np.float32), np.asarray(dataset.actions))
    return BehaviourLogProbs(lp, "proxy", proxy, float(-lp.mean()))

"""Fitted Q evaluation (Le, Voloshin & Yue 2019, Alg. 2): the Q function of a fixed policy pi, regressed on
the data in the compiled loop, and its value at the episodes' start states.

    Q_{k+1} = argmin_Q E_D[ (Q(s, a) - r - gamma (1 - d) V_k(s'))^2 ],   V_k(s') = E_{a'~pi(.|s')} Q_k(s', a')
    V-hat(pi) = 1/n sum_i V(s_{i,0})

s' is the transition's NEXT observation and a' the evaluation policy's action there (not the logged one):
``V_k(s') = sum_a' pi(a'|s') Q_k(s', a')`` with discrete actions, the mean of Q_k over ``action_samples``
draws of pi(.|s') with continuous ones (one draw, the action itself, for a deterministic policy). pi's
actions at the next states are drawn once before training (pi is fixed) and the regression runs as
minibatch Adam steps against a Polyak-averaged target Q_k (``tau``), ``chunk`` updates per compiled
``lax.scan`` call. Time-limit ends bootstrap (d = 0); true terminals do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from offrl.config import Checked, flag, integer, number, sizes
from offrl.data import Dataset
from offrl.nets import MLP
from offrl.ope.episodes import Episodes, Estimate, with_bootstrap
from offrl.ope.policy import Policy, action_probs, check_observations, in_blocks, sample


@dataclass(frozen=True)
class FQEConfig(Checked):
    """Settings of fitted Q evaluation."""

    discount: float = number(0.99, ge=0, le=1)
    """gamma of the evaluated value (the same as the other estimators')."""
    hidden_dims: tuple[int, ...] = sizes((256, 256))
    """Hidden layers of the Q network; () is a linear model (tabular with one-hot observations)."""
    learning_rate: float = number(1e-3, gt=0)
    """Adam step size."""
    batch_size: Optional[int] = integer(256, ge=1, optional=True)
    """Transitions per update; None uses every transition in every update (full-batch)."""
    steps: int = integer(20_000, ge=1)
    """Regression updates."""
    tau: float = number(0.05, gt=0, le=1)
    """Polyak rate of the target Q (1: the target is the current Q). With gamma = 0.99 values propagate over
    ~100 steps; on cartpole-mixed (5000 transitions) 5000 updates with tau 0.05 came within 5% of the
    Monte-Carlo value where 500 updates with tau 0.005 had barely moved from 0."""
    action_samples: int = integer(10, ge=1)
    """Draws of pi(.|s') averaged per next state (continuous stochastic policies)."""
    normalize_observations: bool = flag(True)
    """Standardise the Q network's observations with the dataset's mean and std."""
    chunk: int = integer(1000, ge=1)
    """Updates per compiled call (progress is reported between calls)."""
    seed: int = integer(0)
    """Seed of the initialisation, the batches and the policy's draws."""


@dataclass
class FQEModel:
    """A fitted Q-hat of one policy: ``q(obs, actions)`` and ``v(obs)`` in numpy, batched."""

    q_fn: Callable
    v_fn: Callable
    losses: list

    def q(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Q-hat(s, a) [N] of env-unit actions (indices when discrete)."""
        return in_blocks(self.q_fn, np.asarray(observations, np.float32), np.asarray(actions))

    def v(self, observations: np.ndarray) -> np.ndarray:
        """V-hat(s) = E_{a~pi(.|s)} Q-hat(s, a) [N]."""
        return in_blocks(self.v_fn, np.asarray(observations, np.float32), key=jax.random.PRNGKey(1))


def _policy_draws(policy: Policy, observations: np.ndarray, num: int, key: jax.Array) -> np.ndarray:
    """pi's information at each state: probabilities [N, K] (discrete) or ``num`` unit-box actions [N, num, A]."""
    if policy.discrete:
        return in_blocks(jax.jit(lambda o: action_probs(policy, o)), observations).astype(np.float32)
    num = 1 if policy.kind == "deterministic" else num

    @jax.jit
    def draw(o, k):
        acts = jax.vmap(lambda kk: sample(policy, o, kk))(jax.random.split(k, num))  # [num, B, A]
        return jnp.swapaxes(policy.to_unit(acts), 0, 1)

    return in_blocks(draw, observations, key=key).astype(np.float32)


def fit_fqe(dataset: Dataset, policy: Policy, config: FQEConfig = FQEConfig(), log: Callable[[str], None] | None = None) -> FQEModel:
    """Fit Q-hat of ``policy`` on ``dataset`` (see the module docstring)."""
    check_observations(policy, dataset.observations)
    discrete = policy.discrete
    obs = np.asarray(dataset.observations, np.float32)
    mean = obs.mean(axis=0) if config.normalize_observations else np.zeros(obs.shape[1], np.float32)
    std = obs.std(axis=0) if config.normalize_observations else np.ones(obs.shape[1], np.float32)
    std = np.where(std < 1e-6, 1.0, std).astype(np.float32)
    norm = lambda o: (o - mean) / std
    key = jax.random.PRNGKey(config.seed)
    k_init, k_draw, k_train = jax.random.split(key, 3)
    next_draws = _policy_draws(policy, np.asarray(dataset.next_observations, np.float32), config.action_samples, k_draw)
    if discrete:
        net = MLP(config.hidden_dims, policy.num_actions)
        actions = jnp.asarray(dataset.actions, jnp.int32)
        q_all = lambda p, o: net.apply(p, norm(o))  # [B, K]
        q_sa = lambda p, o, a: jnp.take_along_axis(q_all(p, o), a[:, None], axis=-1)[:, 0]
        v_next = lambda p, o, probs: jnp.sum(probs * q_all(p, o), axis=-1)
        params = net.init(k_init, jnp.zeros((1, obs.shape[1])))
    else:
        net = MLP(config.hidden_dims, 1)
        actions = jnp.asarray(policy.to_unit(jnp.asarray(dataset.actions, jnp.float32)))
        q_sa = lambda p, o, a: net.apply(p, jnp.concatenate([norm(o), a], axis=-1))[..., 0]

        def v_next(p, o, acts):  # acts [B, M, A]
            b, m, a = acts.shape
            return q_sa(p, jnp.repeat(o, m, axis=0), acts.reshape(b * m, a)).reshape(b, m).mean(axis=1)

        params = net.init(k_init, jnp.zeros((1, obs.shape[1] + dataset.act_dim)))
    data = dict(obs=jnp.asarray(obs), actions=actions, rewards=jnp.asarray(dataset.rewards, jnp.float32),
                next_obs=jnp.asarray(dataset.next_observations, jnp.float32), draws=jnp.asarray(next_draws),
                terminals=jnp.asarray(dataset.terminals, jnp.float32))
    n = len(obs)
    tx = optax.adam(config.learning_rate)
    gamma, tau = config.discount, config.tau

    def loss_fn(p, target, idx):
        batch = jax.tree.map(lambda x: x[idx], data)
        y = batch["rewards"] + gamma * (1.0 - batch["terminals"]) * v_next(target, batch["next_obs"], batch["draws"])
        return jnp.mean((q_sa(p, batch["obs"], batch["actions"]) - jax.lax.stop_gradient(y)) ** 2)

    def update(carry, key):
        p, target, opt = carry
        idx = jnp.arange(n) if config.batch_size is None else jax.random.randint(key, (config.batch_size,), 0, n)
        loss, grads = jax.value_and_grad(loss_fn)(p, target, idx)
        updates, opt = tx.update(grads, opt, p)
        p = optax.apply_updates(p, updates)
        target = jax.tree.map(lambda t, q: (1.0 - tau) * t + tau * q, target, p)
        return (p, target, opt), loss

    @jax.jit
    def run_chunk(carry, key, length_keys):
        carry, losses = jax.lax.scan(update, carry, length_keys)
        return carry, losses.mean()

    carry = (params, params, tx.init(params))
    losses, done = [], 0
    while done < config.steps:
        length = min(config.chunk, config.steps - done)
        k_train, k = jax.random.split(k_train)
        carry, loss = run_chunk(carry, k, jax.random.split(k, length))
        done += length
        losses.append(float(loss))
        if log is not None:
            log(f"fqe {policy.name}: {done}/{config.steps} updates, TD loss {losses[-1]:.4g}")
    final = carry[0]
    q_jit = jax.jit(lambda o, a: q_sa(final, o, a if discrete else policy.to_unit(a)))
    if discrete:
        v_jit = jax.jit(lambda o, k: v_next(final, o, action_probs(policy, o)))
    else:
        m = 1 if policy.kind == "deterministic" else config.action_samples

        def v_draw(o, k):
            acts = jax.vmap(lambda kk: sample(policy, o, kk))(jax.random.split(k, m))
            return v_next(final, o, jnp.swapaxes(policy.to_unit(acts), 0, 1))

        v_jit = jax.jit(v_draw)
    return FQEModel(q_fn=q_jit, v_fn=v_jit, losses=losses)


def fqe_estimate(episodes: Episodes, model: FQEModel, dataset: Dataset, *, num_bootstrap: int = 200, confidence: float = 0.95,
                 seed: int = 0) -> Estimate:
    """1/n sum_i V-hat(s_{i,0}) over the episodes' start states, with its bootstrap interval."""
    v0 = model.v(np.asarray(dataset.observations, np.float32)[episodes.start_index])
    diag = {"td_loss": model.losses[-1] if model.losses else None}
    return with_bootstrap("fqe", lambda c: c @ v0 / c.sum(axis=1), episodes.num_episodes, num_bootstrap=num_bootstrap,
                          confidence=confidence, seed=seed, diagnostics=diag)

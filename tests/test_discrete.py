"""Known answers for the discrete-action algorithms (bc_discrete, dqn_offline, cql_discrete, iql_discrete).

* the loss pieces in ``offrl.losses.discrete`` against numpy formulas;
* CQL on a tabular MDP whose exact answers come from numpy linear algebra: with a fixed policy pi and
  mu = pi, the converged conservative Q is the closed form of Kumar et al. (2020, Theorem 3.2), a lower
  bound on the true Q^pi at every dataset state, and it is the exact Q^pi when alpha = 0; the full
  ``cql_discrete`` update with one-hot observations converges to Q* at alpha = 0 and to the CQL(H)
  stationarity condition at alpha > 0;
* a small MDP where the naive offline DQN's greedy action is one the data never takes in that state,
  while CQL and IQL pick the best action inside the data's support.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import offrl
from offrl.algos import DataSpec, get_algo
from offrl.data import Dataset, DatasetInfo
from offrl.data.sampling import Batch
from offrl.losses import (action_values, categorical_log_prob, discrete_cql_penalty, double_q_next_values,
                          td_regression_loss, td_target)


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1)
    return m + np.log(np.exp(x - m[..., None]).sum(axis=-1))


# -- loss pieces vs numpy ----------------------------------------------------------------------


def test_loss_pieces_match_numpy():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 4)).astype(np.float32) * 3
    a = rng.integers(0, 4, size=7)
    probs = softmax(rng.normal(size=(7, 4)))
    picked = q[np.arange(7), a]
    np.testing.assert_allclose(action_values(jnp.asarray(q), jnp.asarray(a)), picked)
    ensemble = np.stack([q, q + 1.0])  # [2, B, A]: the batch's actions broadcast over the ensemble
    np.testing.assert_allclose(action_values(jnp.asarray(ensemble), jnp.asarray(a)), np.stack([picked, picked + 1]))
    np.testing.assert_allclose(categorical_log_prob(jnp.asarray(q), jnp.asarray(a)), picked - logsumexp(q), rtol=1e-5)
    np.testing.assert_allclose(discrete_cql_penalty(jnp.asarray(q), jnp.asarray(a)), logsumexp(q) - picked, rtol=1e-5)
    np.testing.assert_allclose(discrete_cql_penalty(jnp.asarray(q), jnp.asarray(a), jnp.asarray(probs)),
                               (probs * q).sum(-1) - picked, rtol=1e-5, atol=1e-5)
    nxt_target, nxt_online = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    np.testing.assert_allclose(double_q_next_values(jnp.asarray(nxt_target)), nxt_target.max(-1), rtol=1e-6)
    np.testing.assert_allclose(double_q_next_values(jnp.asarray(nxt_target), jnp.asarray(nxt_online)),
                               nxt_target[np.arange(7), nxt_online.argmax(-1)], rtol=1e-6)
    u = np.array([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0], np.float32)
    np.testing.assert_allclose(td_regression_loss(jnp.asarray(u), jnp.zeros(7), "mse"), 0.5 * u**2)
    np.testing.assert_allclose(td_regression_loss(jnp.asarray(u), jnp.zeros(7), "huber"),
                               np.where(np.abs(u) <= 1, 0.5 * u**2, np.abs(u) - 0.5))
    with pytest.raises(ValueError, match="td_loss must be one of huber, mse"):
        td_regression_loss(jnp.asarray(u), jnp.zeros(7), "l1")


def test_cql_penalty_gradient_is_mu_minus_data_action():
    """d/dQ(s, .) of the CQL(H) penalty = softmax(Q(s, .)) - onehot(a_data): the push-down / push-up."""
    rng = np.random.default_rng(1)
    q = rng.normal(size=(5, 3)).astype(np.float32)
    a = rng.integers(0, 3, size=5)
    grad = jax.grad(lambda x: discrete_cql_penalty(x, jnp.asarray(a)).sum())(jnp.asarray(q))
    np.testing.assert_allclose(grad, softmax(q) - np.eye(3)[a], atol=1e-6)


# -- a tabular MDP with exact answers ----------------------------------------------------------

S, A, GAMMA = 4, 3, 0.9
# NEXT[s, a] = successor state, or -1 for a terminal transition
NEXT = np.array([[1, 2, -1], [3, 0, -1], [3, 2, -1], [-1, 0, 1]])
R = np.array([[0.0, 0.5, 0.2], [1.0, 0.0, -1.0], [0.0, 0.3, 1.5], [2.0, 0.0, -0.5]])
# the behaviour policy (data action frequencies, in quarters) and a different target policy
PI_BETA = np.array([[2, 1, 1], [1, 2, 1], [1, 1, 2], [2, 1, 1]]) / 4.0
PI = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]])


def transition_matrix(policy: np.ndarray) -> np.ndarray:
    """P^pi on state-action pairs: P[(s, a), (s', a')] = 1[s' = NEXT[s, a]] pi(a'|s')."""
    p = np.zeros((S * A, S * A))
    for s in range(S):
        for a in range(A):
            if NEXT[s, a] >= 0:
                p[s * A + a, NEXT[s, a] * A:(NEXT[s, a] + 1) * A] = policy[NEXT[s, a]]
    return p


def exact_q(policy: np.ndarray) -> np.ndarray:
    """Q^pi by solving (I - gamma P^pi) Q = R."""
    return np.linalg.solve(np.eye(S * A) - GAMMA * transition_matrix(policy), R.reshape(-1)).reshape(S, A)


def exact_q_star() -> np.ndarray:
    q = np.zeros((S, A))
    for _ in range(2000):
        v = q.max(axis=1)
        q = R + GAMMA * np.where(NEXT >= 0, v[np.maximum(NEXT, 0)], 0.0)
    return q


def tabular_dataset():
    """Every (s, a) with count 4 pi_beta(a|s): 16 transitions, one-hot observations."""
    rows = [(s, a) for s in range(S) for a in range(A) for _ in range(int(round(4 * PI_BETA[s, a])))]
    s_idx = np.array([s for s, _ in rows])
    a_idx = np.array([a for _, a in rows])
    nxt = NEXT[s_idx, a_idx]
    eye = np.eye(S, dtype=np.float32)
    return dict(
        s=s_idx, a=a_idx, next_s=np.maximum(nxt, 0), terminal=(nxt < 0).astype(np.float32),
        batch=Batch(observations=jnp.asarray(eye[s_idx]), actions=jnp.asarray(a_idx, jnp.int32),
                    rewards=jnp.asarray(R[s_idx, a_idx], jnp.float32),
                    next_observations=jnp.asarray(np.where((nxt >= 0)[:, None], eye[np.maximum(nxt, 0)], 0.0)),
                    terminals=jnp.asarray((nxt < 0).astype(np.float32)),
                    discounts=jnp.full(len(rows), GAMMA, jnp.float32)),
    )


def conservative_policy_evaluation(alpha: float, iterations: int = 4000, lr: float = 4.0) -> np.ndarray:
    """Iterate CQL policy evaluation with mu = pi on the tabular dataset, built from the library's
    loss pieces: alpha * E_D[E_pi Q(s, .) - Q(s, a)] + E_D[(Q(s, a) - B^pi Q_k(s, a))^2 / 2], each step
    a gradient step on the table with the target Q_k = the current table (no gradient)."""
    data = tabular_dataset()
    s, a, next_s, terminal = (jnp.asarray(data[k]) for k in ("s", "a", "next_s", "terminal"))
    rewards, pi = jnp.asarray(R[data["s"], data["a"]]), jnp.asarray(PI)

    def loss(table, target_table):
        q_all = table[s]
        next_v = jnp.sum(pi[next_s] * target_table[next_s], axis=-1)
        y = td_target(rewards, terminal, GAMMA, next_v)
        td = td_regression_loss(action_values(q_all, a), y, "mse").mean()
        return td + alpha * discrete_cql_penalty(q_all, a, pi[s]).mean()

    def step(_, table):
        return table - lr * jax.grad(loss)(table, jax.lax.stop_gradient(table))

    return np.asarray(jax.lax.fori_loop(0, iterations, step, jnp.zeros((S, A), jnp.float32)))


def test_cql_policy_evaluation_without_penalty_is_exact_q():
    np.testing.assert_allclose(conservative_policy_evaluation(alpha=0.0), exact_q(PI), atol=1e-4)


@pytest.mark.parametrize("alpha", [0.5, 5.0])
def test_cql_policy_evaluation_is_theorem_3_2s_lower_bound(alpha):
    """mu = pi: Q_hat = Q^pi - alpha (I - gamma P^pi)^-1 (pi / pi_beta - 1), so
    V_hat(s) = E_pi Q_hat(s, .) = V^pi(s) - alpha [(I - gamma P_S^pi)^-1 E_pi(pi / pi_beta - 1)](s) <= V^pi(s)."""
    q_hat = conservative_policy_evaluation(alpha)
    q_pi = exact_q(PI)
    overshoot = (PI / PI_BETA - 1.0).reshape(-1)
    closed_form = q_pi - alpha * np.linalg.solve(np.eye(S * A) - GAMMA * transition_matrix(PI), overshoot).reshape(S, A)
    np.testing.assert_allclose(q_hat, closed_form, atol=2e-4 * max(alpha, 1.0))
    v_hat, v_pi = (PI * q_hat).sum(1), (PI * q_pi).sum(1)
    assert np.all(v_hat <= v_pi), (v_hat, v_pi)
    assert np.all(v_pi - v_hat > 0.05 * alpha)  # a real gap, not round-off: the bound is not vacuous
    # the same through the state values of the theorem
    p_states = np.array([[sum(PI[s, a] * (NEXT[s, a] == t) for a in range(A)) for t in range(S)] for s in range(S)])
    chi = (PI * (PI / PI_BETA - 1.0)).sum(1)
    np.testing.assert_allclose(v_pi - v_hat, alpha * np.linalg.solve(np.eye(S) - GAMMA * p_states, chi),
                               atol=2e-4 * max(alpha, 1.0))


def run_cql_update(alpha: float, steps: int = 6000):
    """The library's cql_discrete.update on the full tabular dataset (one batch = all 16 transitions),
    a linear Q-network on one-hot observations (hidden_dims=()): a table plus a shared bias."""
    cql = get_algo("cql_discrete")
    config = cql.config_cls(alpha=alpha, td_loss="mse", hidden_dims=(), critic_lr=1e-2, tau=0.05, discount=GAMMA)
    batch = tabular_dataset()["batch"]
    state = cql.init(config, DataSpec(obs_dim=S, action_dim=1, num_actions=A), jax.random.PRNGKey(0), steps)

    @jax.jit
    def train(state):
        return jax.lax.scan(lambda st, k: cql.update(config, st, batch, k), state,
                            jax.random.split(jax.random.PRNGKey(1), steps))

    state, metrics = train(state)
    q = np.asarray(state.critic.apply_fn(state.critic.params, jnp.eye(S)))
    return q, {k: np.asarray(v) for k, v in metrics.items()}


def test_cql_discrete_without_penalty_is_fitted_q_learning():
    q, metrics = run_cql_update(alpha=0.0)
    np.testing.assert_allclose(q, exact_q_star(), atol=2e-2)
    assert metrics["cql_penalty"].shape == (6000,) and metrics["td_loss"][-1] < 1e-4


def test_cql_discrete_reaches_the_cql_h_fixed_point():
    """Stationarity of alpha E[logsumexp Q - Q(s, a)] + E[(Q - y)^2 / 2] in the table Q(s, a):
    pi_beta(a|s) (Q(s, a) - y(s, a)) + alpha (softmax Q(s, .)_a - pi_beta(a|s)) = 0, with the double-DQN
    target y = r + gamma Q(s', argmax Q(s', .)) of the converged Q."""
    alpha = 1.0
    q, _ = run_cql_update(alpha)
    best_next = q[np.maximum(NEXT, 0), q[np.maximum(NEXT, 0)].argmax(-1)]
    y = R + GAMMA * np.where(NEXT >= 0, best_next, 0.0)
    residual = PI_BETA * (q - y) + alpha * (softmax(q) - PI_BETA)
    np.testing.assert_allclose(residual, 0.0, atol=5e-3)
    # and it is conservative: below the unpenalised fixed point Q* on the behaviour's average
    assert np.all((PI_BETA * q).sum(1) < (PI_BETA * exact_q_star()).sum(1))


# -- the out-of-support trap -------------------------------------------------------------------

#   state s0 (obs [1, 0]): the data takes a0 (reward +1) and a1 (reward -1), never a2;
#   state s1 (obs [0, 1]): the data takes a2 (reward +10) and a0 (reward 0).
# All episodes are one step long. With a linear Q-network (shared bias per action), fitting
# Q(s1, a2) = 10 raises the bias of a2, so the naive Q(s0, a2) extrapolates far above Q(s0, a0) = 1:
# DQN's greedy action in s0 is a2, never seen there. The best action inside the support is a0.

TRAP = [  # (state, action, reward, copies)
    (0, 0, 1.0, 100), (0, 1, -1.0, 100), (1, 2, 10.0, 100), (1, 0, 0.0, 100),
]


def trap_dataset() -> Dataset:
    rows = [(s, a, r) for s, a, r, n in TRAP for _ in range(n)]
    eye = np.eye(2, dtype=np.float32)
    s = np.array([x[0] for x in rows])
    return Dataset.from_arrays(
        observations=eye[s], actions=np.array([x[1] for x in rows]), rewards=np.array([x[2] for x in rows]),
        next_observations=eye[s], terminals=np.ones(len(rows)), info=DatasetInfo(name="ood-trap", num_actions=3))


def greedy_actions(name: str, tmp_path, steps: int = 3000, **overrides) -> tuple[np.ndarray, np.ndarray]:
    """Greedy actions in s0 and s1 of two seeds trained on the trap, shape (2 seeds, 2 states), and the
    agents' Q(s0, a) for every action, shape (2 seeds, 3)."""
    algo = get_algo(name)
    fields = {f.name for f in dataclasses.fields(algo.config_cls)}
    values = {"hidden_dims": (), "batch_size": 64, **{k: 1e-2 for k in ("critic_lr", "actor_lr", "value_lr") if k in fields}}
    result = offrl.fit(algo.config_cls(**{**values, **overrides}), trap_dataset(), steps=steps, seeds=2, chunk=steps,
                       normalize_observations=False, run_dir=tmp_path / name, progress=False, plot=False)
    agent = offrl.load_agent(result.run_dir)
    actions = np.stack([agent.act(np.eye(2, dtype=np.float32), seed_index=i) for i in range(2)])
    s0 = jnp.ones((3, 2)) * jnp.array([1.0, 0.0])
    q_s0 = np.stack([agent.algo.q_value(agent.config, jax.tree.map(lambda x: x[i], agent.states), s0, jnp.arange(3))
                     for i in range(2)])
    return actions, q_s0


def test_trap_data_never_takes_the_tempting_action():
    ds = trap_dataset()
    in_s0 = ds.observations[:, 0] == 1
    assert 2 not in set(ds.actions[in_s0].tolist()) and 2 in set(ds.actions[~in_s0].tolist())


def test_naive_dqn_picks_an_action_outside_the_data(tmp_path):
    actions, q_s0 = greedy_actions("dqn_offline", tmp_path)
    assert np.all(actions[:, 0] == 2), f"DQN's greedy action in s0 should be the unseen a2, got {actions[:, 0]}"
    assert np.all(actions[:, 1] == 2)
    np.testing.assert_allclose(q_s0[:, :2], [[1.0, -1.0]] * 2, atol=0.05)  # the seen actions are fitted
    assert np.all(q_s0[:, 2] > 2.0)  # the unseen one is extrapolated through the shared bias


@pytest.mark.parametrize("name", ["cql_discrete", "iql_discrete"])
def test_conservative_methods_stay_in_the_support(name, tmp_path):
    actions, q_s0 = greedy_actions(name, tmp_path)
    np.testing.assert_array_equal(actions, [[0, 2], [0, 2]], err_msg=f"{name}: greedy actions in (s0, s1) per seed")
    if name == "cql_discrete":  # the penalty pushed the unseen action's value below the data's best
        assert np.all(q_s0[:, 2] < q_s0[:, 0] - 1.0)
    else:  # IQL's critic extrapolates like DQN's, but IQL never reads Q at an unseen action
        assert np.all(q_s0[:, 2] > q_s0[:, 0] + 1.0)


def test_bc_discrete_clones_the_majority_action(tmp_path):
    """bc_discrete has no values: in s0 it splits between a0 and a1 (50/50 data), so only s1's
    majority is checked after making a2 the majority there."""
    algo = get_algo("bc_discrete")
    ds = trap_dataset()
    keep = ~((ds.observations[:, 1] == 1) & (ds.actions == 0) & (np.arange(len(ds)) % 2 == 0))
    arrays = {k: v[keep] for k, v in ds.arrays().items()}
    small = Dataset.from_arrays(**arrays, info=ds.info)
    result = offrl.fit(algo.config_cls(hidden_dims=(), batch_size=64, actor_lr=1e-2), small, steps=1000, chunk=1000,
                       run_dir=tmp_path / "bc", progress=False, plot=False)
    agent = offrl.load_agent(result.run_dir)
    logits = agent.states.actor.apply_fn(jax.tree.map(lambda x: x[0], agent.states.actor.params),
                                         agent.transforms.normalize_obs(np.eye(2, dtype=np.float32)))
    probs = softmax(np.asarray(logits))
    np.testing.assert_allclose(probs[1], [1 / 3, 0.0, 2 / 3], atol=0.05)  # s1: a0 50 copies, a2 100 copies
    np.testing.assert_allclose(probs[0], [0.5, 0.5, 0.0], atol=0.05)

"""The out-of-distribution trap shared by the policy-constraint tests.

A one-step continuous bandit (one state, every transition terminal) with a 2-D action box [-1, 1]^2.
The data covers only the corner ``[-1, 0]^2``, with reward ``r(a) = 1 + mean(a)``: the best action
inside the data's support is ``a = (0, 0)`` with reward 1. Nothing in the data says what happens
beyond 0; in the "true" bandit (:func:`true_reward`) actions more than ``MARGIN`` outside the support
fall off a cliff (reward -1). A critic fitted to the data is free to extrapolate the upward slope
beyond 0, so an unconstrained actor that maximises it leaves the support and gets -1, while a method
that stays in the support gets close to 1.

Only the output biases of the networks can learn here (the normalised observation is 0), which is
why the tests raise learning rates and use a few thousand updates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import offrl
from offrl.data import Dataset, DatasetInfo

SUPPORT_HIGH = 0.0
"""The data's actions lie in [-1, SUPPORT_HIGH]^2."""
MARGIN = 0.05
"""How far beyond the support an action may go before the true reward falls off the cliff."""
IN_SUPPORT_OPTIMUM = 1.0
"""The best true reward of an action inside the data's support (at a = SUPPORT_HIGH)."""
BEHAVIOUR_MEAN_REWARD = 0.5
"""The mean reward of the data (the behaviour policy's value)."""
NAIVE_MIN_EXCESS = 0.1
"""The naive baseline's largest action coordinate lands at least this far beyond the support."""
ACTION_DIM = 2
"""Action dimensions of the trap."""
FIT = dict(progress=False, plot=False, evaluate_at_end=False)


def true_reward(action) -> float:
    """Reward of the real bandit: 1 + mean(a) inside the support, -1 beyond it plus MARGIN (never seen in the data)."""
    action = np.atleast_1d(np.asarray(action, np.float64))
    return float(1.0 + action.mean()) if np.all(action <= SUPPORT_HIGH + MARGIN) else -1.0


def trap_dataset(n: int = 1024, action_dim: int = ACTION_DIM, seed: int = 0) -> Dataset:
    """``n`` one-step episodes with actions uniform on [-1, 0]^d and rewards 1 + mean(a)."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, SUPPORT_HIGH, size=(n, action_dim)).astype(np.float32)
    return Dataset.from_arrays(
        observations=np.zeros((n, 1), np.float32), actions=actions, rewards=1.0 + actions.mean(axis=1),
        terminals=np.ones(n, np.float32), next_observations=np.zeros((n, 1), np.float32),
        info=DatasetInfo(name="ood-trap", action_low=[-1.0] * action_dim, action_high=[1.0] * action_dim),
    )


def trained_action(config, run_dir: Path, steps: int = 3000, seed: int = 0, action_dim: int = ACTION_DIM) -> np.ndarray:
    """Train ``config`` on the trap data and return its deterministic action at the one state."""
    result = offrl.fit(config, trap_dataset(action_dim=action_dim), steps=steps, chunk=steps, seed=seed, run_dir=run_dir, **FIT)
    return offrl.load_agent(result.run_dir).act(np.zeros((1, 1), np.float32))[0]

"""The naive offline baseline falls into the out-of-distribution trap (see ``tests/ood_trap.py``).

The policy-constraint algorithms' tests use the same trap and show they stay inside the support.
"""

from __future__ import annotations

from offrl.algos import sac

from ood_trap import NAIVE_MIN_EXCESS, SUPPORT_HIGH, trained_action, true_reward


def test_naive_sac_leaves_the_support_and_falls_off_the_cliff(tmp_path):
    """Unconstrained SAC picks an action beyond the data (seeds 0-4 gave max coordinates 0.17-0.35): reward -1."""
    config = sac.Config(hidden_dims=(64, 64), batch_size=64, actor_lr=1e-2, critic_lr=1e-3)
    action = trained_action(config, tmp_path / "sac", steps=3000)
    assert action.max() > SUPPORT_HIGH + NAIVE_MIN_EXCESS, f"naive SAC stayed near the data: a = {action}"
    assert true_reward(action) == -1.0

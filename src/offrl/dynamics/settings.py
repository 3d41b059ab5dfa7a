"""The settings every model-based algorithm shares: a frozen dataclass base its ``Config`` inherits.

``ModelRollouts`` declares the rollout, mixed-batch and dynamics-ensemble fields (each with its valid
range and docstring, as any ``Config`` field) that ``algo_device_model``, ``algo_dynamics_config`` and
the algorithms' ``rollout``/``make_batch`` read. An algorithm changes a default by redeclaring the
field (with its own docstring), as ``combo.Config`` does for ``real_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from offrl.config import Checked, integer, number, sizes, text


@dataclass(frozen=True)
class ModelRollouts(Checked):
    """Rollouts of the policy in a learned dynamics ensemble, mixed into each batch (MOPO, COMBO, MOBILE)."""

    horizon: int = integer(5, ge=1)
    """h: model steps per rollout."""
    real_ratio: float = number(0.05, ge=0, le=1)
    """f: share of each batch drawn from the data (the rest from the model buffer)."""
    rollout_every: int = integer(1000, ge=1)
    """Updates between two rollout rounds."""
    rollout_batch_size: int = integer(50_000, ge=1)
    """Start states (drawn from the data) per rollout round."""
    buffer_size: int = integer(1_250_000, ge=1)
    """Model transitions kept (the authors keep 5 rounds: 5 x 50,000 x h with h = 5)."""
    dynamics: str = text("")
    """Path of a trained dynamics model (``offrl dynamics train``); empty: the cached one of this dataset, or train one now."""
    dynamics_hidden_dims: tuple[int, ...] = sizes((200, 200, 200, 200))
    """Hidden layers of each ensemble member (used when the model is trained or looked up here)."""
    dynamics_members: int = integer(7, ge=1)
    """Ensemble members."""
    dynamics_elites: int = integer(5, ge=1)
    """Elites used in rollouts."""
    dynamics_max_epochs: Optional[int] = integer(None, ge=1, optional=True)
    """Budget of the ensemble's training in epochs (None: until its early stop)."""
    termination: str = text("auto")
    """Rollout termination: ``auto`` (exact rule of a built-in env, else a learned head), ``never``, ``learned``, or ``module:function``."""

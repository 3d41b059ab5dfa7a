"""Scripted controllers for gymnasium ``Pendulum-v1`` (vectorised numpy).

Dynamics of Pendulum-v1 (g=10, m=1, l=1, dt=0.05, |u| <= 2, |thdot| <= 8)::

    thdot' = thdot + (15 sin(th) + 3 u) dt,    th' = th + thdot' dt
    reward = -(th^2 + 0.1 thdot^2 + 0.001 u^2)          (th wrapped to [-pi, pi))

The controller pumps energy with (nearly) full torque until the pendulum swings up, then an LQR
stabiliser, computed from the discretised linearisation around the top, holds it upright.
With ``E = thdot^2 / 2 + 15 (cos th - 1)`` (0 at rest at the top) one has ``dE/dt = 3 u thdot``,
so ``u = k (0 - E) sign(thdot)`` drives the energy to that of the upright position.

Measured on Pendulum-v1 (100 episodes, reset seeds 0..99): -144.7 mean return (std 89), close to the
best achievable; the uniform-random policy gets -1199.9 (std 276).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "MAX_TORQUE",
    "lqr_gain",
    "controller_action",
    "noisy_controller_action",
    "random_action",
]

MAX_TORQUE = 2.0
_DT = 0.05
_G_TERM = 15.0  # 3 g / (2 l)
_U_TERM = 3.0  # 3 / (m l^2)

#: |angle| (rad) below which the LQR stabiliser takes over from the energy pump.
CAPTURE_ANGLE = 0.5
#: Gain of the energy pump (torque per unit of energy error, saturated at MAX_TORQUE).
PUMP_GAIN = 3.0


@functools.cache
def lqr_gain() -> np.ndarray:
    """Infinite-horizon discrete LQR gain ``K`` (shape (2,)) for state ``[th, thdot]``.

    Uses the semi-implicit Euler linearisation of Pendulum-v1 around the top with the task's own
    cost weights Q = diag(1, 0.1), R = 0.001; ``u = -K @ [th, thdot]``.
    """
    a = np.array([[1.0 + _G_TERM * _DT * _DT, _DT], [_G_TERM * _DT, 1.0]])
    b = np.array([[_U_TERM * _DT * _DT], [_U_TERM * _DT]])
    q = np.diag([1.0, 0.1])
    r = np.array([[0.001]])
    p = q.copy()
    for _ in range(5000):
        k = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p_next = q + a.T @ p @ (a - b @ k)
        if np.allclose(p_next, p, rtol=1e-12, atol=1e-12):
            p = p_next
            break
        p = p_next
    k = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
    return k[0].copy()


def _split(obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs = np.asarray(obs, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[1] != 3:
        raise ValueError(
            f"Pendulum observations must have shape (batch, 3) = [cos th, sin th, thdot], got {obs.shape}"
        )
    return obs[:, 0], obs[:, 1], obs[:, 2]


def controller_action(obs) -> np.ndarray:
    """Noise-free swing-up + LQR controller. ``obs`` (B, 3) -> torque (B, 1) float32 in [-2, 2]."""
    cos_th, sin_th, thdot = _split(obs)
    th = np.arctan2(sin_th, cos_th)
    energy = 0.5 * thdot**2 + _G_TERM * (cos_th - 1.0)
    direction = np.where(thdot >= 0.0, 1.0, -1.0)
    u_pump = PUMP_GAIN * (0.0 - energy) * direction
    # at rest (thdot == 0, e.g. hanging straight down) any push starts the swing
    u_pump = np.where(np.abs(thdot) < 1e-3, MAX_TORQUE, u_pump)
    k = lqr_gain()
    u_lqr = -(k[0] * th + k[1] * thdot)
    u = np.where(np.abs(th) < CAPTURE_ANGLE, u_lqr, u_pump)
    return np.clip(u, -MAX_TORQUE, MAX_TORQUE).astype(np.float32)[:, None]


def random_action(batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random torques, shape (batch_size, 1) float32 in [-2, 2]."""
    return rng.uniform(-MAX_TORQUE, MAX_TORQUE, size=(batch_size, 1)).astype(np.float32)


def noisy_controller_action(
    obs,
    rng: np.random.Generator,
    noise_std: float,
    random_action_prob: float = 0.0,
) -> np.ndarray:
    """Behaviour variant of :func:`controller_action`.

    Adds Gaussian noise of std ``noise_std`` (torque units) to the controller's action; with
    probability ``random_action_prob`` (per step and env) the action is instead replaced by a
    uniform random torque. The result is clipped to [-2, 2]. Random numbers are always drawn in the
    same order, so a given ``rng`` state gives the same actions whatever the parameters.
    """
    if noise_std < 0 or not 0.0 <= random_action_prob <= 1.0:
        raise ValueError(
            f"need noise_std >= 0 and 0 <= random_action_prob <= 1, got {noise_std}, {random_action_prob}"
        )
    a = controller_action(obs).astype(np.float64)
    b = a.shape[0]
    noise = rng.standard_normal(size=(b, 1))
    replace = rng.uniform(size=(b, 1)) < random_action_prob
    uniform = rng.uniform(-MAX_TORQUE, MAX_TORQUE, size=(b, 1))
    a = np.where(replace, uniform, a + noise_std * noise)
    return np.clip(a, -MAX_TORQUE, MAX_TORQUE).astype(np.float32)

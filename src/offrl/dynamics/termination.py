"""When does a model rollout end? Termination rules ``rule(obs, action, next_obs) -> bool [B]`` in env units.

Exact rules for the built-in environments (gymnasium v5 defaults, read from the environments' own
``is_healthy``; both bounds of every range are tested, the lower ones included):

- ``Hopper-v5``: healthy while 0.7 < z, -0.2 < angle < 0.2 and every entry of the state (qpos[2:],
  qvel) lies in (-100, 100); z = obs[0], angle = obs[1], the state is obs[1:] (the observation clips
  velocities to [-10, 10], so only the positions can leave the state range there).
- ``Walker2d-v5``: healthy while 0.8 < z < 2.0 and -1 < angle < 1.
- ``HalfCheetah-v5``, ``Pendulum-v1`` and the maze environments (``offrl/PointMaze*``): never.

Any other environment: a learned termination head (a logistic classifier of (s, a, s') trained with
the dynamics, :mod:`offrl.dynamics.model`) when the data has terminals, "never" when it has none; or
a rule of the user's own, ``"module:function"`` with the signature above (jnp arrays in, bool out).
"""

from __future__ import annotations

import importlib
from typing import Callable

import jax.numpy as jnp


def never(obs, action, next_obs):
    """Continuing tasks: no state ends an episode."""
    return jnp.zeros(next_obs.shape[:-1], bool)


def hopper_v5(obs, action, next_obs):
    """Not healthy after the step (gymnasium Hopper-v5, default ranges)."""
    z, angle, state = next_obs[..., 0], next_obs[..., 1], next_obs[..., 1:]
    healthy = (z > 0.7) & (angle > -0.2) & (angle < 0.2) & jnp.all((state > -100.0) & (state < 100.0), axis=-1)
    return ~healthy


def walker2d_v5(obs, action, next_obs):
    """Not healthy after the step (gymnasium Walker2d-v5, default ranges)."""
    z, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


BUILTIN_RULES: dict[str, Callable] = {
    "Hopper-v5": hopper_v5,
    "Walker2d-v5": walker2d_v5,
    "HalfCheetah-v5": never,
    "Pendulum-v1": never,
}

TERMINATION_CHOICES = ("auto", "never", "learned", "module:function")


class TerminationError(ValueError):
    """No usable termination rule; the message names the fix."""


def builtin_rule(env_id: str | None) -> Callable | None:
    """The exact rule of a built-in environment, or None."""
    if env_id is None:
        return None
    if env_id in BUILTIN_RULES:
        return BUILTIN_RULES[env_id]
    if env_id.startswith("offrl/PointMaze"):
        return never
    return None


def import_rule(spec: str) -> Callable:
    """``"package.module:function"`` -> the function (a user's own rule)."""
    module_name, _, name = spec.partition(":")
    try:
        rule = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise TerminationError(f"termination rule {spec!r} cannot be imported ({type(exc).__name__}: {exc}). "
                               "Fix: pass an importable 'module:function' taking (obs, action, next_obs) jnp arrays "
                               "and returning a bool array") from None
    if not callable(rule):
        raise TerminationError(f"termination rule {spec!r} is not a function. Fix: name a function 'module:function'")
    return rule


def resolve(termination: str, env_id: str | None, has_terminals: bool, has_learned_head: bool) -> str | Callable:
    """The rule a rollout uses: a function, or ``"learned"`` (the model's termination head).

    ``termination``: ``auto`` (the built-in rule of ``env_id``, else the learned head when the data
    has terminals, else never), ``never``, ``learned`` or ``module:function``.
    """
    if ":" in termination:
        return import_rule(termination)
    if termination == "auto":
        rule = builtin_rule(env_id)
        if rule is not None:
            return rule
        return "learned" if has_terminals else never
    if termination == "never":
        if has_terminals and builtin_rule(env_id) is not never:
            raise TerminationError(
                f"termination 'never' but the dataset has terminal transitions (env {env_id!r}): model rollouts would "
                "run past states where the episode ends. Fix: use --algo.termination auto (a learned head for an "
                "unknown env) or your own rule 'module:function'")
        return never
    if termination == "learned":
        if not has_terminals:
            raise TerminationError("termination 'learned' but the dataset has no terminal transitions to learn from. "
                                   "Fix: use --algo.termination never (or auto)")
        return "learned"
    raise TerminationError(f"unknown termination {termination!r}; valid values: auto, never, learned, or 'module:function'")

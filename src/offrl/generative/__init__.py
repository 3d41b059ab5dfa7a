"""Generative models of actions and state sequences, shared by the diffusion and flow algorithms.

One implementation each, used by every algorithm that needs it (``diffusion_ql``, ``idql``, ``fql``,
``decision_diffuser``):

* DDPM (Ho et al. 2020): noise schedules (:func:`make_schedule`: ``vp``, ``linear``, ``cosine``), the forward
  process q(x_k | x_0) = N(sqrt(abar_k) x_0, (1 - abar_k) I) (:func:`diffusion_inputs`), the epsilon-prediction
  loss (:func:`epsilon_loss`), the ancestral sampler (:func:`ddpm_sample`) and DDIM (:func:`ddim_sample`), both a
  ``lax.scan`` over the reverse steps, and classifier-free guidance (:func:`guided_epsilon`).
* Flow matching (Lipman et al. 2023, the linear path of Liu et al. 2023): x_t = (1 - t) x_0 + t x_1,
  velocity x_1 - x_0 (:func:`flow_inputs`), the velocity loss (:func:`velocity_loss`) and the Euler sampler
  (:func:`euler_sample`).

A model enters a sampler as a function ``(x, t) -> prediction`` with ``t`` the network's time input in
[0, 1] (:func:`diffusion_time`: step k of K is (k + 1) / K; flow time as it is), so that one network class
(:class:`offrl.nets.Denoiser`) serves both. Everything here is pure and jit/vmap/scan friendly.
"""

from offrl.generative.diffusion import (  # noqa: F401
    SCHEDULES, DiffusionSchedule, ddim_sample, ddim_timesteps, ddpm_sample, diffusion_inputs, diffusion_time,
    epsilon_loss, guided_epsilon, make_schedule,
)
from offrl.generative.flow import euler_sample, flow_inputs, velocity_loss  # noqa: F401

__all__ = [
    "SCHEDULES", "DiffusionSchedule", "ddim_sample", "ddim_timesteps", "ddpm_sample", "diffusion_inputs",
    "diffusion_time", "epsilon_loss", "euler_sample", "flow_inputs", "guided_epsilon", "make_schedule",
    "velocity_loss",
]

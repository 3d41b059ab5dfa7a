"""A conditional VAE over dataset actions: the behaviour model of BCQ and BEAR (Fujimoto et al. 2019).

  encoder  E(s, a) -> (mu, log_sigma),  log_sigma clipped to [log_std_min, log_std_max] ([-4, 15])
  decoder  D(s, z) -> tanh(MLP(s, z)),  an action in the unit box
Training reparameterises z = mu + sigma * eps (:meth:`ActionVAE.__call__`, loss in
``offrl.losses.vae_loss``); sampling draws z ~ N(0, I) clipped to [-latent_clip, latent_clip]
(0.5 in the paper), so samples come from the well-covered centre of the latent prior
(:func:`vae_sample`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl.nets import MLP


class ActionVAE(nn.Module):
    """Conditional VAE p(a | s) with a Gaussian encoder and a tanh decoder.

    Methods (select with ``module.apply(params, ..., method=...)``): ``__call__`` (reconstruction
    for training), ``encode``, ``decode`` and ``decode_raw`` (the decoder before the tanh).
    """

    hidden_dims: Sequence[int]
    action_dim: int
    latent_dim: int
    log_std_min: float = -4.0
    log_std_max: float = 15.0
    initializer: str = "lecun_normal"
    """Initialisation of the Dense layers of encoder and decoder (see ``offrl.nets.NETWORK_INITS``)."""

    def setup(self):
        self.encoder = MLP(self.hidden_dims, 2 * self.latent_dim, initializer=self.initializer)
        self.decoder = MLP(self.hidden_dims, self.action_dim, initializer=self.initializer)

    def encode(self, observations: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(mean, log_std)`` of q(z | s, a), each (..., latent_dim); log_std clipped for stability."""
        mean, log_std = jnp.split(self.encoder(jnp.concatenate([observations, actions], axis=-1)), 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)

    def decode_raw(self, observations: jax.Array, latents: jax.Array) -> jax.Array:
        """The decoder output before the tanh squashing, (..., action_dim)."""
        return self.decoder(jnp.concatenate([observations, latents], axis=-1))

    def decode(self, observations: jax.Array, latents: jax.Array) -> jax.Array:
        """D(s, z) = tanh(decode_raw(s, z)): an action in the unit box."""
        return jnp.tanh(self.decode_raw(observations, latents))

    def __call__(self, observations: jax.Array, actions: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Reconstruct ``actions`` through a reparameterised latent: ``(reconstruction, mean, log_std)``."""
        mean, log_std = self.encode(observations, actions)
        latents = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
        return self.decode(observations, latents), mean, log_std


def vae_sample(vae: ActionVAE, params, observations: jax.Array, key: jax.Array, num_samples: int,
               latent_clip: float = 0.5) -> tuple[jax.Array, jax.Array]:
    """``num_samples`` decoded actions per state from clipped prior latents, in ONE decoder call.

    ``observations`` is (B, obs_dim); the states are repeated to (B * num_samples, obs_dim) (sample
    ``j`` of state ``i`` at row ``i * num_samples + j``) and decoded together with
    z ~ clip(N(0, I), -latent_clip, latent_clip). Returns ``(actions, raw)``, both
    (B, num_samples, action_dim): the actions in the unit box and the decoder outputs before the tanh.
    """
    batch = observations.shape[0]
    flat_obs = jnp.repeat(observations, num_samples, axis=0)
    latents = jnp.clip(jax.random.normal(key, (batch * num_samples, vae.latent_dim), observations.dtype), -latent_clip, latent_clip)
    raw = vae.apply(params, flat_obs, latents, method=ActionVAE.decode_raw).reshape(batch, num_samples, vae.action_dim)
    return jnp.tanh(raw), raw

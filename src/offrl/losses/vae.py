"""The conditional-VAE loss of BCQ/BEAR's behaviour model (Fujimoto et al. 2019)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def vae_loss(reconstructions: jax.Array, actions: jax.Array, mean: jax.Array, log_std: jax.Array,
             kl_weight: float = 0.5) -> tuple[jax.Array, dict]:
    """L = mean (D(s, z) - a)^2 + kl_weight * mean KL(N(mu, sigma^2) || N(0, I)).

    The reconstruction error is averaged over batch and action dimensions, and the KL term
    -1/2 (1 + log sigma^2 - mu^2 - sigma^2) over batch and latent dimensions, as in the authors'
    code (``vae_loss = recon_loss + 0.5 * KL_loss``); ``kl_weight`` is that 0.5.
    ``reconstructions``/``actions`` are (B, action_dim); ``mean``/``log_std`` are the encoder's (B, latent_dim).
    Returns ``(loss, {"vae_loss", "recon_loss", "kl_loss"})``.
    """
    recon = jnp.mean((reconstructions - actions) ** 2)
    kl = jnp.mean(-0.5 * (1.0 + 2.0 * log_std - mean**2 - jnp.exp(2.0 * log_std)))
    loss = recon + kl_weight * kl
    return loss, {"vae_loss": loss, "recon_loss": recon, "kl_loss": kl}

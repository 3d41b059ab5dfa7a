"""Maximum mean discrepancy between two sample sets per state (Kumar et al. 2019, BEAR).

Kernels, in the form of the authors' code, whose bandwidth defaults (sigma = 10 or 20) were tuned
for exactly these forms:
  laplacian  k(x, y) = exp(-||x - y||_1 / (2 sigma))
  gaussian   k(x, y) = exp(-||x - y||_2^2 / (2 sigma))
(The textbook Laplacian exp(-||x - y||_1 / b) is this with b = 2 sigma; the textbook Gaussian
exp(-||x - y||^2 / (2 b^2)) is this with b = sqrt(sigma).)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MMD_KERNELS = ("laplacian", "gaussian")


def mmd_kernel_matrix(x: jax.Array, y: jax.Array, kernel: str, sigma: float) -> jax.Array:
    """k(x_i, y_j) for every pair within each state: x (B, n, d), y (B, m, d) -> (B, n, m)."""
    diff = x[:, :, None, :] - y[:, None, :, :]
    if kernel == "laplacian":
        return jnp.exp(-jnp.sum(jnp.abs(diff), axis=-1) / (2.0 * sigma))
    if kernel == "gaussian":
        return jnp.exp(-jnp.sum(diff**2, axis=-1) / (2.0 * sigma))
    raise ValueError(f"mmd kernel must be one of {', '.join(MMD_KERNELS)}; got {kernel!r}")


def mmd_squared(x: jax.Array, y: jax.Array, kernel: str = "laplacian", sigma: float = 10.0) -> jax.Array:
    """The biased (V-statistic) squared MMD between the sample sets x and y of each state.

    MMD^2 = 1/n^2 sum_{i,i'} k(x_i, x_i') + 1/m^2 sum_{j,j'} k(y_j, y_j') - 2/(n m) sum_{i,j} k(x_i, y_j)
    (Kumar et al. 2019, eq. 3 with the empirical means). ``x`` is (B, n, d), ``y`` is (B, m, d);
    returns (B,). It is the squared RKHS distance of the two empirical mean embeddings, so it is
    >= 0 (up to round-off) and exactly 0 when the two sets are the same.
    """
    kxx = mmd_kernel_matrix(x, x, kernel, sigma).mean(axis=(1, 2))
    kyy = mmd_kernel_matrix(y, y, kernel, sigma).mean(axis=(1, 2))
    kxy = mmd_kernel_matrix(x, y, kernel, sigma).mean(axis=(1, 2))
    return kxx + kyy - 2.0 * kxy

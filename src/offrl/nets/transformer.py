"""The Decision Transformer's network (Chen et al. 2021): a GPT-2 style causal transformer over
interleaved (R_t, s_t, a_t) tokens.

Token embeddings (``DecisionTransformer.__call__``), with e(t) a learned embedding of the episode
timestep (no position embedding: a token's place is its timestep, so where a window is padded does
not matter):

    x^R_t = W_R (return_scale R_t) + e(t),   x^s_t = W_s s_t + e(t),   x^a_t = W_a a_t + e(t)

The sequence (x^R_1, x^s_1, x^a_1, ..., x^R_K, x^s_K, x^a_K) goes through LayerNorm, dropout and
``num_layers`` pre-LayerNorm blocks (causal self-attention, then a 4x MLP, each with a residual
connection and dropout) and a final LayerNorm; the action at step t is read from the output of the
state token, a_t = tanh(W_out h^s_t), which attends to R_1..R_t, s_1..s_t and a_1..a_{t-1} only.
Padding steps (``mask`` 0) are never attended to.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["DecisionTransformer"]


class _CausalSelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(d) + mask) V over ``num_heads`` heads, with dropout on the attention weights."""

    embed_dim: int
    num_heads: int
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, attention_mask: jax.Array, training: bool) -> jax.Array:
        b, n, _ = x.shape
        head = self.embed_dim // self.num_heads
        qkv = nn.Dense(3 * self.embed_dim, name="qkv")(x).reshape(b, n, 3, self.num_heads, head)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, H, D]
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head).astype(x.dtype)
        scores = jnp.where(attention_mask, scores, jnp.finfo(x.dtype).min)
        weights = nn.Dropout(self.dropout, deterministic=not training)(jax.nn.softmax(scores, axis=-1))
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, self.embed_dim)
        return nn.Dense(self.embed_dim, name="out")(out)


class _Block(nn.Module):
    """x + Attention(LN(x)), then x + MLP(LN(x)) (GPT-2's pre-LayerNorm block)."""

    embed_dim: int
    num_heads: int
    dropout: float
    activation: str

    @nn.compact
    def __call__(self, x: jax.Array, attention_mask: jax.Array, training: bool) -> jax.Array:
        h = nn.LayerNorm()(x)
        h = _CausalSelfAttention(self.embed_dim, self.num_heads, self.dropout, name="attention")(h, attention_mask, training)
        x = x + nn.Dropout(self.dropout, deterministic=not training)(h)
        h = nn.LayerNorm()(x)
        h = nn.Dense(4 * self.embed_dim)(h)
        h = nn.relu(h) if self.activation == "relu" else nn.gelu(h)
        h = nn.Dense(self.embed_dim)(h)
        return x + nn.Dropout(self.dropout, deterministic=not training)(h)


class DecisionTransformer(nn.Module):
    """``(returns_to_go [B, K], observations [B, K, d], actions [B, K, a], timesteps [B, K], mask [B, K]) -> actions [B, K, a]``.

    Output k is the action predicted for step k from the tokens up to and including s_k; outputs at
    padding steps are meaningless (mask them out). Timesteps at or past ``max_timestep`` share its
    last embedding.
    """

    act_dim: int
    embed_dim: int = 128
    num_layers: int = 3
    num_heads: int = 1
    dropout: float = 0.1
    max_timestep: int = 1000
    return_scale: float = 1e-3
    activation: str = "relu"

    @nn.compact
    def __call__(self, returns_to_go, observations, actions, timesteps, mask, training: bool = False) -> jax.Array:
        b, k = mask.shape
        t = jnp.clip(timesteps, 0, self.max_timestep - 1)
        time = nn.Embed(self.max_timestep, self.embed_dim, name="timestep_embedding")(t)  # [B, K, E]
        r = nn.Dense(self.embed_dim, name="return_embedding")(self.return_scale * returns_to_go[..., None]) + time
        s = nn.Dense(self.embed_dim, name="state_embedding")(observations) + time
        a = nn.Dense(self.embed_dim, name="action_embedding")(actions) + time
        x = jnp.stack([r, s, a], axis=2).reshape(b, 3 * k, self.embed_dim)  # R_1, s_1, a_1, R_2, ...
        x = nn.LayerNorm(name="embedding_norm")(x)
        x = nn.Dropout(self.dropout, deterministic=not training)(x)

        keys = jnp.repeat(mask > 0, 3, axis=1)  # [B, 3K]: padding tokens are never attended to
        causal = jnp.tril(jnp.ones((3 * k, 3 * k), bool))
        # every query may attend to itself, so a padding query's softmax is never over an empty set
        allowed = (causal[None] & keys[:, None, :]) | jnp.eye(3 * k, dtype=bool)[None]
        attention_mask = allowed[:, None]  # [B, 1 head axis, 3K, 3K]
        for i in range(self.num_layers):
            x = _Block(self.embed_dim, self.num_heads, self.dropout, self.activation, name=f"block_{i}")(
                x, attention_mask, training)
        x = nn.LayerNorm(name="final_norm")(x)
        state_tokens = x.reshape(b, k, 3, self.embed_dim)[:, :, 1]
        return jnp.tanh(nn.Dense(self.act_dim, name="action_head")(state_tokens))

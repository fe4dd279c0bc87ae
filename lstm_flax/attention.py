"""Attention over encoder states for the LSTM decoder: Luong dot / general, Bahdanau additive.

Keys are computed once per source (``attention_keys``) and reused at every
decoder step (``Attention``), so a step costs one ``[batch, S]``
score computation and one weighted sum.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_flax import axes
from lstm_flax.linen import dense

Array = jax.Array

ATTENTION_TYPES = ('dot', 'general', 'additive')


def attention_keys(kind: str, memory: Array, key_projection: Any) -> Array:
  """Keys ``[batch, S, K]`` of ``memory [batch, S, M]``: the memory itself for
  ``'dot'``, else ``key_projection(memory)`` (``W_k``), computed once per source."""
  if kind not in ATTENTION_TYPES:
    raise ValueError(f'attention must be one of {ATTENTION_TYPES}; got {kind!r}.')
  return memory if kind == 'dot' else key_projection(memory)


class Attention(nn.Module):
  """Scores a decoder state against precomputed keys and returns the context.

  Attributes:
    kind: ``'dot'`` (Luong: ``q . m``), ``'general'`` (Luong: ``q . (m W_k)``)
      or ``'additive'`` (Bahdanau: ``v . tanh(q W_q + m W_k)``); ``m W_k`` is
      computed once per source by ``attention_keys``.
    dtype: compute dtype (a name or a jnp dtype).
  """

  kind: str = 'general'
  dtype: Any = 'float32'

  @nn.compact
  def __call__(
      self,
      query: Array,  # [batch, Q]
      keys: Array,  # [batch, S, K] from attention_keys
      memory: Array,  # [batch, S, M]
      memory_mask: Array,  # [batch, S], true at real source positions
  ) -> tuple[Array, Array]:  # (context [batch, M], weights [batch, S])
    if self.kind not in ATTENTION_TYPES:
      raise ValueError(f'attention must be one of {ATTENTION_TYPES}; got {self.kind!r}.')
    if self.kind == 'additive':
      q = dense(keys.shape[-1], (axes.ATTENTION_IN, axes.ATTENTION_OUT), use_bias=False,
                dtype=self.dtype, name='query')(query)
      hidden = jnp.tanh(keys + q[:, None, :])  # [batch, S, K]
      scores = dense(1, (axes.ATTENTION_OUT, axes.ATTENTION_SCORE), use_bias=False,
                     dtype=self.dtype, name='score')(hidden)[..., 0]
    else:
      if query.shape[-1] != keys.shape[-1]:
        raise ValueError(
            f"{self.kind!r} attention: decoder state size {query.shape[-1]} != key size "
            f"{keys.shape[-1]} (for 'dot', the encoder output size); use 'general' or "
            "'additive', or matching sizes."
        )
      dtype = jnp.dtype(self.dtype)
      scores = jnp.einsum('bk,bsk->bs', query.astype(dtype), keys.astype(dtype))
    scores = jnp.where(memory_mask, scores.astype(jnp.float32), -1e9)  # [batch, S]
    weights = jax.nn.softmax(scores, axis=-1)
    dtype = jnp.dtype(self.dtype)
    context = jnp.einsum('bs,bsm->bm', weights.astype(dtype), memory.astype(dtype))
    return context, weights

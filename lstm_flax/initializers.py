"""Initialisers for LSTM parameters with a gate axis (shared by Linen and NNX)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax.linen import initializers

Initializer = Callable[..., jax.Array]

default_kernel_init: Initializer = initializers.lecun_normal()
default_recurrent_kernel_init: Initializer = initializers.orthogonal()


def per_gate(init: Initializer) -> Initializer:
  """Applies ``init`` to each of the four ``[rows, H]`` gate blocks of a ``[rows, 4, H]`` kernel.

  An orthogonal recurrent initialiser then gives four orthogonal ``[P, H]``
  blocks, as Flax's ``LSTMCell`` (one kernel per gate) does, instead of one
  orthogonal ``[P, 4H]`` matrix.
  """

  def init_fn(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    rows, gates, h = shape
    keys = jax.random.split(key, gates)
    # Drawn in at least float32, then cast: the orthogonal initialiser's QR
    # has no bfloat16 / float16 kernel (LAPACK on CPU).
    draw = jnp.promote_types(dtype, jnp.float32)
    return jnp.stack([init(k, (rows, h), draw) for k in keys],
                     axis=1).astype(dtype)  # [rows, 4, H]

  return init_fn


def lstm_bias_init(forget_bias: float = 0.0,
                   bias_init: Initializer | None = None) -> Initializer:
  """Bias ``[4, H]``: ``bias_init`` (default zeros) plus ``forget_bias`` on the
  forget gate, row 1 (Jozefowicz et al. use 1; Zaremba et al. draw every bias
  uniform with no offset)."""

  def init_fn(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    if bias_init is None:
      bias = jnp.zeros(shape, dtype)
    else:
      bias = jnp.asarray(bias_init(key, shape, dtype), dtype)
    return bias.at[1].add(forget_bias)  # [4, H]: i f g o

  return init_fn

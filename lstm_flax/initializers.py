"""Initialisers for fused-gate LSTM parameters (shared by Linen and NNX)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax.linen import initializers

Initializer = Callable[..., jax.Array]

default_kernel_init: Initializer = initializers.lecun_normal()
default_recurrent_kernel_init: Initializer = initializers.orthogonal()


def per_gate(init: Initializer) -> Initializer:
  """Applies ``init`` to each of the four ``[rows, H]`` gate blocks of a ``[rows, 4H]`` kernel.

  An orthogonal recurrent initialiser then gives four orthogonal blocks, as
  Flax's ``LSTMCell`` (one kernel per gate) does, instead of one orthogonal
  ``[P, 4H]`` matrix.
  """

  def init_fn(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    rows, four_h = shape
    keys = jax.random.split(key, 4)
    return jnp.concatenate([init(k, (rows, four_h // 4), dtype) for k in keys], -1)

  return init_fn


def lstm_bias_init(forget_bias: float = 0.0,
                   bias_init: Initializer | None = None) -> Initializer:
  """Bias ``[4H]``: ``bias_init`` (default zeros) plus ``forget_bias`` on the
  forget gate (Jozefowicz et al. use 1; Zaremba et al. draw every bias
  uniform with no offset)."""

  def init_fn(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    (four_h,) = shape
    h = four_h // 4
    if bias_init is None:
      bias = jnp.zeros(shape, dtype)
    else:
      bias = jnp.asarray(bias_init(key, shape, dtype), dtype)
    return bias.at[h : 2 * h].add(forget_bias)

  return init_fn

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


def lstm_bias_init(forget_bias: float = 0.0) -> Initializer:
  """Zero bias ``[4H]`` with ``forget_bias`` on the forget gate (Jozefowicz et al. use 1)."""

  def init_fn(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    del key
    (four_h,) = shape
    h = four_h // 4
    return jnp.zeros(shape, dtype).at[h : 2 * h].set(forget_bias)

  return init_fn

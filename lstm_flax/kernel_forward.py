"""The LSTM recurrence's forward scan and its custom VJP (``lstm_flax.kernel``).

Per step, the forward scan does one recurrent product (``[B, P] x [P, 4,
H]``, or one ``[B, P] x [H, P]^T`` per gate: ``lstm_flax.kernel_products``),
one elementwise pass that turns the ``[B, 4, H]`` pre-activations into the
activations (sigmoid as a scaled tanh, so the four gates need no slicing and
re-stacking), the cell update, and stores the activations ``[B, 4, H]`` for
the backward pass (``lstm_flax.kernel_backward``). Storing them costs one
copy per step and saves the backward scan the transcendentals (recomputing
them from stored pre-activations was not faster). Without a mask there is no
``where`` (it is skipped at trace time).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax import lax

from lstm_flax import kernel_products as products
from lstm_flax.kernel_backward import recurrence_backward

Array = jax.Array
DType = Any

# sigmoid(x) = (1 + tanh(x / 2)) / 2, so with the per-gate scale s below,
# s * tanh(s * x) + 1 - s is sigmoid(x) for i, f, o and tanh(x) for g.
_GATE_SCALES = (0.5, 0.5, 1.0, 0.5)


def _activations(gates: Array) -> Array:
  """``[..., 4, H]`` pre-activations -> ``[sigmoid(i), sigmoid(f), tanh(g),
  sigmoid(o)]`` as ``[..., 4, H]``, in one elementwise pass over the gate
  array: no per-gate slices to stack again for the backward pass (forward
  scan 1.3x faster at PTB-small)."""
  s = jnp.asarray(_GATE_SCALES, gates.dtype)[:, None]  # [4, 1]
  return s * jnp.tanh(s * gates) + (1.0 - s)


def cell(
    gates_x: Array,  # [batch, 4, H] input projection (+ bias) of this step
    h: Array,  # [batch, P]
    c: Array,  # [batch, H] float32
    w_h_t: Array | tuple[Array, ...],  # products.recurrent_weights(w_h)
    w_p_t: Optional[Array],  # [P, H] (transposed projection) or None
    compute_dtype: DType,
) -> tuple[Array, Array, Array]:
  """One LSTM step on a precomputed input projection.

  Returns (h' [batch, P] float32, c' [batch, H] float32, activations
  [batch, 4, H] = [sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)] float32).
  """
  gates = gates_x.astype(h.dtype) + products.recurrent_product(h, w_h_t, compute_dtype)  # [B, 4, H]
  acts = _activations(gates)  # [B, 4, H]
  i, f, g, o = products.split_gates(acts)
  c_new = f * c + i * g
  m = o * jnp.tanh(c_new)  # [B, H]
  h_new = m if w_p_t is None else products.dot_nt(m, w_p_t, compute_dtype)
  return h_new, c_new, acts


def _scan_xs(gates_x: Array, mask: Optional[Array]) -> tuple[Array, Optional[Array]]:
  return gates_x, (None if mask is None else mask[:, :, None])


def recurrence_forward(
    gates_x: Array,  # [T, B, 4, H]
    mask: Optional[Array],  # [T, B] bool or None
    h0: Array,  # [B, P]
    c0: Array,  # [B, H]
    w_h: Array,  # [P, 4, H]
    w_p: Optional[Array],  # [H, P]
    reverse: bool,
    unroll: int,
    compute_dtype: DType,
    keep_activations: bool,
):
  """Scans the cell; returns (hs [T,B,P], cs [T,B,H] | None, acts | None, hT, cT).

  ``hs[t]``/``cs[t]`` are the carry after step ``t`` (unchanged at a padded
  step); ``acts`` is ``[T, B, 4, H]``.
  """

  w_h_t = products.recurrent_weights(w_h, compute_dtype)  # once per call
  w_p_t = None if w_p is None else w_p.T.astype(compute_dtype)  # [P, H]

  def step(carry, xs):
    h, c = carry
    gx, m = xs
    h_new, c_new, acts = cell(gx, h, c, w_h_t, w_p_t, compute_dtype)
    if m is not None:
      h_new = jnp.where(m, h_new, h)
      c_new = jnp.where(m, c_new, c)
    ys = (h_new, c_new, acts) if keep_activations else (h_new, None, None)
    return (h_new, c_new), ys

  (h_t, c_t), (hs, cs, acts) = lax.scan(
      step, (h0, c0), _scan_xs(gates_x, mask), reverse=reverse, unroll=unroll
  )
  return hs, cs, acts, h_t, c_t


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8))
def recurrence(gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype):
  """The scan of ``recurrence_forward`` with the hand-written backward pass:
  ``(hs [T, B, P], h_T [B, P], c_T [B, H])``."""
  hs, _, _, h_t, c_t = recurrence_forward(
      gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype, False
  )
  return hs, h_t, c_t


def _recurrence_fwd(gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype):
  hs, cs, acts, h_t, c_t = recurrence_forward(
      gates_x, mask, h0, c0, w_h, w_p, reverse, unroll, compute_dtype, True
  )
  residuals = (mask, h0, c0, w_h, w_p, hs, cs, acts)
  return (hs, h_t, c_t), residuals


recurrence.defvjp(_recurrence_fwd, recurrence_backward)

"""The hand-written backward pass of the LSTM recurrence (its custom VJP).

The backward scan computes only the per-step gate gradients (elementwise,
from the activations the forward scan stored) and the carry gradients, with
one product for ``dh`` per step; ``dW_h`` (and the projection's gradient)
are whole-sequence matrix products after the scan. ``dW_x``, ``db`` and
``dx`` follow by autodiff of the hoisted input projection
(``lstm_flax.kernel``), whole-sequence matrix products too (cuDNN's
approach).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from lstm_flax import kernel_products as products

Array = jax.Array


def _previous(seq: Array, first: Array, reverse: bool) -> Array:
  """The carry before each step: ``seq`` shifted by one in processing order."""
  if reverse:
    return jnp.concatenate([seq[1:], first[None]], axis=0)
  return jnp.concatenate([first[None], seq[:-1]], axis=0)



def recurrence_backward(reverse, unroll, compute_dtype, residuals, cotangents):
  """The VJP of ``kernel_forward.recurrence``: residuals ``(mask, h0, c0,
  w_h, w_p, hs, cs, acts)`` and cotangents ``(d_hs [T, B, P], d_h_T [B, P],
  d_c_T [B, H])`` -> gradients of ``(gates_x, mask, h0, c0, w_h, w_p)``."""
  mask, h0, c0, w_h, w_p, hs, cs, acts = residuals
  acc = products.accumulation_dtype(compute_dtype)
  d_hs, d_h_t, d_c_t = cotangents  # [T,B,P], [B,P], [B,H]
  c_prev = _previous(cs, c0, reverse)  # [T, B, H]
  w_h_g = products.recurrent_weights_t(w_h, compute_dtype)  # once per call
  w_p_c = None if w_p is None else w_p.astype(compute_dtype)  # [H, P]

  def step(carry, xs):
    dh, dc = carry  # [B, P], [B, H]
    d_out, act, c, c_p, m = xs
    dh = dh + d_out
    i, f, g, o = products.split_gates(act)
    dm = dh if w_p_c is None else products.dot_nt(dh, w_p_c, compute_dtype)  # [B, H]
    tanh_c = jnp.tanh(c)
    dc_total = dc + dm * o * (1.0 - tanh_c * tanh_c)
    d_gates = jnp.stack(
        [
            dc_total * g * i * (1.0 - i),
            dc_total * c_p * f * (1.0 - f),
            dc_total * i * (1.0 - g * g),
            dm * tanh_c * o * (1.0 - o),
        ],
        axis=-2,
    )  # [B, 4, H] gradient of the pre-activation gates
    dh_prev = products.recurrent_product_t(d_gates, w_h_g, compute_dtype)  # [B, P]
    dc_prev = dc_total * f
    d_h_step = dh  # gradient reaching this step's h (for the projection)
    if m is not None:
      d_gates = jnp.where(m[..., None], d_gates, 0.0)
      dh_prev = jnp.where(m, dh_prev, dh)
      dc_prev = jnp.where(m, dc_prev, dc)
      d_h_step = jnp.where(m, dh, 0.0)
    ys = (d_gates, None if w_p is None else d_h_step)
    return (dh_prev, dc_prev), ys

  m_seq = None if mask is None else mask[:, :, None]
  xs = (d_hs.astype(acc), acts, cs, c_prev, m_seq)
  (dh0, dc0), (d_gates_seq, d_h_seq) = lax.scan(
      step,
      (d_h_t.astype(acc), d_c_t.astype(acc)),
      xs,
      reverse=not reverse,
      unroll=unroll,
  )
  # Whole-sequence weight gradients, one matrix product each.
  h_prev = _previous(hs, h0, reverse)  # [T, B, P]
  if products.flat_gates():
    d_w_h = jnp.einsum(
        'tbp,tbg->pg', h_prev, d_gates_seq.reshape(d_gates_seq.shape[:2] + (-1,)),
        preferred_element_type=acc,
    ).reshape(w_h.shape).astype(w_h.dtype)
  else:
    d_w_h = jnp.einsum(
        'tbp,tbgh->pgh', h_prev, d_gates_seq, preferred_element_type=acc
    ).astype(w_h.dtype)
  d_w_p = None
  if w_p is not None:
    o = acts[..., 3, :]
    m_seq_out = o * jnp.tanh(cs)  # [T, B, H] pre-projection outputs
    d_w_p = jnp.einsum(
        'tbh,tbp->hp', m_seq_out, d_h_seq, preferred_element_type=acc
    ).astype(w_p.dtype)
  return (
      d_gates_seq.astype(compute_dtype),
      None,
      dh0.astype(h0.dtype),
      dc0.astype(c0.dtype),
      d_w_h,
      d_w_p,
  )


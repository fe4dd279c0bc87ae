"""Text generation from a ``LanguageModel``: temperature, top-k and top-p sampling.

The prompt is read once (one LSTM call over all its tokens); generation then
runs a jit-compiled ``lax.scan`` that carries the LSTM state and feeds one
token per step, instead of re-reading the prompt.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def filter_logits(
    logits: Array,  # [batch, vocab] float32
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
) -> Array:
  """Scales by temperature and masks tokens outside the top-k / nucleus (top-p) set."""
  if temperature <= 0.0:
    raise ValueError(f'temperature must be positive (use top_k=1 for greedy); got {temperature}.')
  logits = logits / temperature
  neg_inf = jnp.finfo(logits.dtype).min
  if top_k is not None:
    if top_k <= 0:
      raise ValueError(f'top_k must be positive; got {top_k}.')
    kth = jax.lax.top_k(logits, min(top_k, logits.shape[-1]))[0][..., -1:]  # [batch, 1]
    logits = jnp.where(logits < kth, neg_inf, logits)
  if top_p is not None:
    if not 0.0 < top_p <= 1.0:
      raise ValueError(f'top_p must be in (0, 1]; got {top_p}.')
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]  # descending
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep the smallest prefix whose mass reaches top_p (the first token always).
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    cutoff_index = jnp.sum(mass_before < top_p, axis=-1, keepdims=True) - 1
    cutoff = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
    logits = jnp.where(logits < cutoff, neg_inf, logits)
  return logits


@functools.partial(
    jax.jit, static_argnames=('model', 'num_tokens', 'temperature', 'top_k', 'top_p')
)
def sample(
    model: nn.Module,
    params: Any,
    prompt: Array,  # [batch, prompt_len] int32
    rng: Array,
    num_tokens: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
) -> Array:  # [batch, num_tokens] int32
  """Samples ``num_tokens`` continuations of ``prompt`` from a language model.

  ``model`` is a ``LanguageModel`` (or any module with the same call
  signature ``(tokens [B, T], carry) -> (logits [B, T, V], carry)``).
  """
  if prompt.ndim != 2 or prompt.shape[1] == 0:
    raise ValueError(f'prompt must be [batch, prompt_len >= 1]; got shape {prompt.shape}.')
  logits, carry = model.apply({'params': params}, prompt)
  last_logits = logits[:, -1]  # [batch, vocab]

  def step(state, key):
    last_logits, carry = state
    token = jax.random.categorical(key, filter_logits(last_logits, temperature, top_k, top_p))
    logits, carry = model.apply({'params': params}, token[:, None], carry)
    return (logits[:, 0], carry), token

  keys = jax.random.split(rng, num_tokens)
  _, tokens = jax.lax.scan(step, (last_logits, carry), keys)
  return tokens.T.astype(jnp.int32)

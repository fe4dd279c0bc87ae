"""Autoregressive decoding: batched beam search, greedy decoding and sampling.

All three work on a step function ``step_fn(tokens [N], state) -> (logits [N,
V], state)`` whose state is any pytree with a leading ``N`` axis (an LSTM carry
plus whatever it attends to), run as one ``lax.while_loop`` that stops once
every sequence has finished, and are jit-compatible. ``translate`` applies them
to a ``Seq2Seq`` model, encoding each source once.

Output tokens exclude BOS; a finished sequence ends with EOS and is followed
by ``pad_id``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from lstm_flax.sampling import filter_logits

Array = jax.Array
StepFn = Callable[[Array, Any], tuple[Array, Any]]

NEG_INF = -1.0e9  # "impossible"; finite so that sums of them stay finite


def length_penalty(length: Array, alpha: float) -> Array:
  """GNMT length penalty ``((5 + length) / 6) ** alpha`` (Wu et al. 2016)."""
  return ((5.0 + length) / 6.0) ** alpha


def max_lengths(
    source_lengths: Array, max_length: int, ratio: float = 1.5, offset: int = 10
) -> Array:
  """Per-example output limit ``min(max_length, ratio * source_length + offset)``, ``[batch]`` int32."""
  limits = jnp.floor(ratio * source_lengths + offset).astype(jnp.int32)
  return jnp.clip(limits, 1, max_length)


def _gather_beams(tree: Any, indices: Array) -> Any:
  """``[batch, old_beams, ...]`` leaves -> ``[batch, len(indices[0]), ...]``."""
  batch = indices.shape[0]
  return jax.tree_util.tree_map(lambda x: x[jnp.arange(batch)[:, None], indices], tree)


def _split(tree: Any, batch: int, beams: int) -> Any:
  return jax.tree_util.tree_map(lambda x: x.reshape((batch, beams) + x.shape[1:]), tree)


def _merge(tree: Any) -> Any:
  return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


class _BeamState(NamedTuple):
  step: Array  # scalar int32: tokens decoded so far
  live_tokens: Array  # [batch, beams, max_length] int32
  live_logprob: Array  # [batch, beams] float32 (NEG_INF: empty slot)
  done_tokens: Array  # [batch, beams, max_length] int32
  done_score: Array  # [batch, beams] float32 (NEG_INF: empty slot)
  model_state: Any  # leaves [batch, beams, ...]


def beam_search(
    step_fn: StepFn,
    initial_state: Any,  # leaves [batch, ...]
    *,
    batch_size: int,
    beam_size: int,
    max_length: int,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    alpha: float = 0.6,
    limits: Optional[Array] = None,  # [batch] int, per-example length limit
) -> tuple[Array, Array]:  # ([batch, beams, max_length] int32, [batch, beams] float32)
  """Batched beam search with the GNMT length penalty.

  Every step expands each live hypothesis by every token, keeps the
  ``2 * beam_size`` best extensions, moves those ending in EOS into the
  finished set (scored ``log p / length_penalty(length)``) and keeps the
  ``beam_size`` best others alive. A hypothesis reaching its example's limit
  is ended with EOS. The loop stops when no live hypothesis can still beat
  the worst of ``beam_size`` finished ones (for ``alpha >= 0``: its log-prob
  divided by the largest possible penalty), or at ``max_length``.

  Returns:
    Finished hypotheses, best first, and their scores.
  """
  if beam_size < 1 or max_length < 1:
    raise ValueError(f'beam_size and max_length must be >= 1; got {beam_size}, {max_length}.')
  if limits is None:
    limits = jnp.full((batch_size,), max_length, jnp.int32)
  limits = jnp.minimum(limits.astype(jnp.int32), max_length)
  expand = lambda x: jnp.repeat(x[:, None], beam_size, axis=1)  # noqa: E731
  init = _BeamState(
      step=jnp.array(0, jnp.int32),
      live_tokens=jnp.full((batch_size, beam_size, max_length), pad_id, jnp.int32),
      live_logprob=jnp.tile(
          jnp.array([0.0] + [NEG_INF] * (beam_size - 1), jnp.float32), (batch_size, 1)),
      done_tokens=jnp.full((batch_size, beam_size, max_length), pad_id, jnp.int32),
      done_score=jnp.full((batch_size, beam_size), NEG_INF, jnp.float32),
      model_state=jax.tree_util.tree_map(expand, initial_state),
  )

  def can_improve(s: _BeamState) -> Array:  # [batch] bool
    best_live = jnp.max(s.live_logprob, axis=1)
    bound = best_live / length_penalty(limits.astype(jnp.float32), alpha) if alpha >= 0 else (
        best_live)  # with alpha < 0 longer is never rewarded; the raw log-prob bounds it
    worst_done = jnp.min(s.done_score, axis=1)
    has_live = best_live > NEG_INF / 2
    return has_live & (bound > worst_done)

  def cond(s: _BeamState) -> Array:
    return (s.step < max_length) & jnp.any(can_improve(s))

  def body(s: _BeamState) -> _BeamState:
    previous = jnp.where(
        s.step == 0, bos_id,
        lax.dynamic_index_in_dim(s.live_tokens, jnp.maximum(s.step - 1, 0), axis=2, keepdims=False))
    logits, new_state = step_fn(previous.reshape(-1), _merge(s.model_state))
    vocab = logits.shape[-1]
    logprobs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch_size, beam_size, vocab)
    # At the limit only EOS may follow.
    at_limit = (s.step + 1 >= limits)[:, None, None]
    logprobs = jnp.where(at_limit & (jnp.arange(vocab) != eos_id), NEG_INF, logprobs)
    candidates = (s.live_logprob[:, :, None] + logprobs).reshape(batch_size, beam_size * vocab)
    top_logprob, top_index = lax.top_k(candidates, 2 * beam_size)  # [batch, 2K]
    top_beam, top_token = top_index // vocab, top_index % vocab
    top_tokens = _gather_beams(s.live_tokens, top_beam)  # [batch, 2K, max_length]
    top_tokens = lax.dynamic_update_index_in_dim(top_tokens, top_token, s.step, axis=2)
    valid = top_logprob > NEG_INF / 2
    ends = (top_token == eos_id) & valid

    # Finished: merge the new ones into the best beam_size.
    new_scores = jnp.where(
        ends, top_logprob / length_penalty((s.step + 1).astype(jnp.float32), alpha), NEG_INF)
    all_scores = jnp.concatenate([s.done_score, new_scores], axis=1)
    all_tokens = jnp.concatenate([s.done_tokens, top_tokens], axis=1)
    done_score, keep = lax.top_k(all_scores, beam_size)
    done_tokens = _gather_beams(all_tokens, keep)

    # Live: the best beam_size extensions that did not end.
    live_candidates = jnp.where(ends, NEG_INF, top_logprob)
    live_logprob, keep = lax.top_k(live_candidates, beam_size)
    live_tokens = _gather_beams(top_tokens, keep)
    source_beam = jnp.take_along_axis(top_beam, keep, axis=1)
    model_state = _gather_beams(_split(new_state, batch_size, beam_size), source_beam)
    return _BeamState(s.step + 1, live_tokens, live_logprob, done_tokens, done_score, model_state)

  final = lax.while_loop(cond, body, init)
  return final.done_tokens, final.done_score


class _GreedyState(NamedTuple):
  step: Array
  tokens: Array  # [batch, max_length]
  finished: Array  # [batch] bool
  model_state: Any
  rng: Array


def _decode_loop(
    step_fn: StepFn,
    initial_state: Any,
    choose: Callable[[Array, Array], Array],  # (logits [batch, V], key) -> tokens [batch]
    rng: Array,
    *,
    batch_size: int,
    max_length: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    limits: Optional[Array],
) -> Array:
  if limits is None:
    limits = jnp.full((batch_size,), max_length, jnp.int32)
  limits = jnp.minimum(limits.astype(jnp.int32), max_length)
  init = _GreedyState(
      jnp.array(0, jnp.int32),
      jnp.full((batch_size, max_length), pad_id, jnp.int32),
      jnp.zeros((batch_size,), bool),
      initial_state,
      rng,
  )

  def cond(s: _GreedyState) -> Array:
    return (s.step < max_length) & ~jnp.all(s.finished)

  def body(s: _GreedyState) -> _GreedyState:
    previous = jnp.where(
        s.step == 0, bos_id,
        lax.dynamic_index_in_dim(s.tokens, jnp.maximum(s.step - 1, 0), axis=1, keepdims=False))
    logits, model_state = step_fn(previous, s.model_state)
    rng, key = jax.random.split(s.rng)
    token = choose(logits.astype(jnp.float32), key)
    token = jnp.where(s.step + 1 >= limits, eos_id, token)
    token = jnp.where(s.finished, pad_id, token)
    tokens = lax.dynamic_update_index_in_dim(s.tokens, token, s.step, axis=1)
    return _GreedyState(s.step + 1, tokens, s.finished | (token == eos_id), model_state, rng)

  return lax.while_loop(cond, body, init).tokens


def greedy_search(step_fn: StepFn, initial_state: Any, *, batch_size: int, max_length: int,
                  bos_id: int, eos_id: int, pad_id: int = 0,
                  limits: Optional[Array] = None) -> Array:  # [batch, max_length]
  """Greedy decoding (argmax at every step) until EOS or the limit."""
  return _decode_loop(step_fn, initial_state, lambda logits, key: jnp.argmax(logits, -1),
                      jax.random.key(0), batch_size=batch_size, max_length=max_length,
                      bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, limits=limits)


def sample_search(step_fn: StepFn, initial_state: Any, rng: Array, *, batch_size: int,
                  max_length: int, bos_id: int, eos_id: int, pad_id: int = 0,
                  temperature: float = 1.0, top_k: Optional[int] = None,
                  top_p: Optional[float] = None, limits: Optional[Array] = None) -> Array:
  """Ancestral sampling (temperature, top-k, top-p as in ``sampling.filter_logits``)."""
  filter_logits(jnp.zeros((1, 1)), temperature, top_k, top_p)  # validates the settings
  return _decode_loop(step_fn, initial_state,
                      lambda logits, key: jax.random.categorical(
                          key, filter_logits(logits, temperature, top_k, top_p)),
                      rng, batch_size=batch_size, max_length=max_length, bos_id=bos_id,
                      eos_id=eos_id, pad_id=pad_id, limits=limits)


@functools.partial(
    jax.jit,
    static_argnames=('model', 'method', 'beam_size', 'max_length', 'bos_id', 'eos_id',
                     'pad_id', 'alpha', 'length_ratio', 'length_offset', 'temperature'),
)
def translate(
    model: Any,  # lstm_flax.seq2seq.Seq2Seq
    params: Any,
    source: Array,  # [batch, S] int
    source_mask: Array,  # [batch, S]
    *,
    method: str = 'beam',  # 'beam', 'greedy' or 'sample'
    beam_size: int = 5,
    alpha: float = 0.6,
    max_length: int = 128,
    length_ratio: float = 1.5,
    length_offset: int = 10,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    temperature: float = 1.0,
    rng: Optional[Array] = None,
) -> Array:  # [batch, max_length] int32: the best translation of each source
  """Translates a batch with a ``Seq2Seq`` model: the source is encoded once.

  The output limit per sentence is ``min(max_length, length_ratio *
  source_length + length_offset)`` tokens.
  """
  variables = {'params': params}
  encoded, state = model.apply(variables, source, source_mask, method=model.encode)
  batch = source.shape[0]
  limits = max_lengths(jnp.sum(source_mask, axis=1), max_length, length_ratio, length_offset)

  if method == 'beam':
    # Encoder outputs are tiled over the beams once; beams never change source.
    encoded_beams = jax.tree_util.tree_map(lambda x: jnp.repeat(x, beam_size, axis=0), encoded)

    def beam_step_fn(tokens, state):
      return model.apply(variables, encoded_beams, state, tokens, method=model.decode_step)

    tokens, _ = beam_search(
        beam_step_fn, state, batch_size=batch, beam_size=beam_size, max_length=max_length,
        bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, alpha=alpha, limits=limits)
    return tokens[:, 0]

  def step_fn(tokens, state):
    return model.apply(variables, encoded, state, tokens, method=model.decode_step)

  kw = dict(batch_size=batch, max_length=max_length, bos_id=bos_id, eos_id=eos_id,
            pad_id=pad_id, limits=limits)
  if method == 'greedy':
    return greedy_search(step_fn, state, **kw)
  if method == 'sample':
    return sample_search(step_fn, state, jax.random.key(0) if rng is None else rng,
                         temperature=temperature, **kw)
  raise ValueError(f"method must be 'beam', 'greedy' or 'sample'; got {method!r}.")

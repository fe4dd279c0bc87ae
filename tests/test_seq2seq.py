"""Seq2Seq with attention, and decoding: beam search against exhaustive search."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_flax import decoding
from lstm_flax.seq2seq import Seq2Seq

PAD, BOS, EOS = 0, 1, 2
SOURCE = jnp.array([[3, 4, 5, 6, 0], [7, 8, 0, 0, 0]])
SOURCE_MASK = SOURCE > 0
TARGET = jnp.array([[BOS, 5, 6, 7], [BOS, 8, 9, 0]])


def _model(**kw):
  defaults = dict(source_vocab_size=11, target_vocab_size=11, embedding_size=8, hidden_size=8,
                  encoder_hidden_size=6)
  return Seq2Seq(**{**defaults, **kw})


@pytest.mark.parametrize('attention, input_feeding', [('general', True), ('additive', False), ('dot', True)])
def test_decode_step_equals_teacher_forcing(attention, input_feeding):
  model = _model(attention=attention, input_feeding=input_feeding,
                 hidden_size=12 if attention == 'dot' else 8)
  variables = model.init(jax.random.key(0), SOURCE, TARGET, SOURCE_MASK)
  logits = model.apply(variables, SOURCE, TARGET, SOURCE_MASK)
  assert logits.shape == (2, 4, 11) and logits.dtype == jnp.float32
  encoded, state = model.apply(variables, SOURCE, SOURCE_MASK, method=Seq2Seq.encode)
  for t in range(TARGET.shape[1]):
    step_logits, state = model.apply(variables, encoded, state, TARGET[:, t],
                                     method=Seq2Seq.decode_step)
    np.testing.assert_allclose(step_logits, logits[:, t], rtol=1e-5, atol=1e-6)


def test_padded_source_positions_are_ignored():
  model = _model(share_embeddings=True, dropout_rate=0.3)
  variables = model.init(jax.random.key(1), SOURCE, TARGET, SOURCE_MASK)
  logits = model.apply(variables, SOURCE, TARGET, SOURCE_MASK)
  noisy = jnp.where(SOURCE_MASK, SOURCE, 9)  # different tokens at padded positions
  np.testing.assert_allclose(model.apply(variables, noisy, TARGET, SOURCE_MASK), logits,
                             rtol=1e-6, atol=1e-6)
  # Dropout is active only when not deterministic.
  train = model.apply(variables, SOURCE, TARGET, SOURCE_MASK, deterministic=False,
                      rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(train, logits)


def _exhaustive_best(model, variables, source, source_mask, max_length, alpha):
  """Scores every output sequence (tokens then EOS, EOS forced at max_length)."""
  vocab = model.target_vocab_size
  non_eos = [t for t in range(vocab) if t != EOS]
  candidates = []
  for length in range(max_length):  # tokens before EOS
    candidates += [list(p) + [EOS] for p in itertools.product(non_eos, repeat=length)]
  outputs = np.full((len(candidates), max_length), PAD, np.int32)
  for i, c in enumerate(candidates):
    outputs[i, : len(c)] = c
  inputs = np.concatenate([np.full((len(candidates), 1), BOS), outputs[:, :-1]], 1)
  n = len(candidates)
  src = jnp.repeat(source[None], n, 0)
  mask = jnp.repeat(source_mask[None], n, 0)
  logp = jax.nn.log_softmax(model.apply(variables, src, jnp.asarray(inputs), mask))
  lengths = np.array([len(c) for c in candidates])
  token_logp = np.take_along_axis(np.asarray(logp), outputs[..., None], -1)[..., 0]
  valid = np.arange(max_length)[None, :] < lengths[:, None]
  scores = (token_logp * valid).sum(1) / decoding.length_penalty(lengths, alpha)
  best = int(np.argmax(scores))
  return outputs[best], float(scores[best])


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_beam_search_equals_exhaustive_search(alpha):
  model = _model(source_vocab_size=6, target_vocab_size=5, hidden_size=8)
  source = jnp.array([3, 4, 5, 0])
  source_mask = source > 0
  variables = model.init(jax.random.key(3), source[None], TARGET[:1, :3], source_mask[None])
  # Sharpen the output layer so that the search problem is not trivial.
  variables = jax.tree_util.tree_map(lambda x: x * 3.0, variables)
  max_length = 4
  expected_tokens, expected_score = _exhaustive_best(model, variables, source, source_mask,
                                                     max_length, alpha)
  encoded, state = model.apply(variables, source[None], source_mask[None], method=Seq2Seq.encode)
  beam_size = 4**3  # every live prefix fits: the search is exhaustive
  encoded_beams = jax.tree_util.tree_map(lambda x: jnp.repeat(x, beam_size, 0), encoded)
  step_fn = lambda tokens, state: model.apply(variables, encoded_beams, state, tokens,
                                              method=Seq2Seq.decode_step)
  tokens, scores = jax.jit(lambda state: decoding.beam_search(
      step_fn, state, batch_size=1, beam_size=beam_size, max_length=max_length, bos_id=BOS,
      eos_id=EOS, pad_id=PAD, alpha=alpha))(state)
  np.testing.assert_array_equal(tokens[0, 0], expected_tokens)
  np.testing.assert_allclose(scores[0, 0], expected_score, rtol=1e-5)
  assert np.all(np.diff(np.asarray(scores[0])) <= 1e-6)  # best first


def test_small_beam_finds_high_scoring_translation_and_greedy_matches_manual_argmax():
  model = _model(target_vocab_size=7)
  variables = model.init(jax.random.key(4), SOURCE, TARGET[:, :3] % 7, SOURCE_MASK)
  variables = jax.tree_util.tree_map(lambda x: x * 3.0, variables)
  greedy = decoding.translate(model, variables['params'], SOURCE, SOURCE_MASK, method='greedy',
                              max_length=6, bos_id=BOS, eos_id=EOS)
  encoded, state = model.apply(variables, SOURCE, SOURCE_MASK, method=Seq2Seq.encode)
  token = jnp.full((2,), BOS)
  finished = np.zeros(2, bool)
  limits = np.asarray(decoding.max_lengths(SOURCE_MASK.sum(1), 6))
  for t in range(6):
    logits, state = model.apply(variables, encoded, state, token, method=Seq2Seq.decode_step)
    token = jnp.argmax(logits, -1)
    token = jnp.where(t + 1 >= limits, EOS, token)
    expected = np.where(finished, PAD, np.asarray(token))
    np.testing.assert_array_equal(greedy[:, t], expected)
    finished |= expected == EOS
  beam = decoding.translate(model, variables['params'], SOURCE, SOURCE_MASK, method='beam',
                            beam_size=3, max_length=6, bos_id=BOS, eos_id=EOS)
  assert beam.shape == (2, 6)
  for row in np.asarray(beam):  # ends with EOS, then padding only
    end = list(row).index(EOS)
    assert (row[end + 1 :] == PAD).all()
  sampled = decoding.translate(model, variables['params'], SOURCE, SOURCE_MASK, method='sample',
                               max_length=6, bos_id=BOS, eos_id=EOS, rng=jax.random.key(5))
  again = decoding.translate(model, variables['params'], SOURCE, SOURCE_MASK, method='sample',
                             max_length=6, bos_id=BOS, eos_id=EOS, rng=jax.random.key(5))
  np.testing.assert_array_equal(sampled, again)


def test_length_limits_follow_the_source():
  limits = decoding.max_lengths(jnp.array([1, 10, 100]), max_length=64, ratio=1.5, offset=2)
  np.testing.assert_array_equal(limits, [3, 17, 64])


def test_configuration_errors():
  with pytest.raises(ValueError, match='share_embeddings needs one joint vocabulary'):
    _model(share_embeddings=True, target_vocab_size=12).init(jax.random.key(0), SOURCE, TARGET)
  with pytest.raises(ValueError, match='tie_output needs embedding_size'):
    _model(tie_output=True, hidden_size=10).init(jax.random.key(0), SOURCE, TARGET)
  with pytest.raises(ValueError, match='attention must be one of'):
    _model(attention='cosine').init(jax.random.key(0), SOURCE, TARGET)
  with pytest.raises(ValueError, match="Seq2Seq.attention='dot' needs the encoder output size"):
    _model(attention='dot')

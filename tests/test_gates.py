"""lstm_flax.gates: the recorded gates are the model's computation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_flax
from lstm_flax import gates, models, seq2seq


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _reference_layer(p, x, mask, reverse):
  """float64 NumPy LSTM of one direction: x [B, T, in], mask [B, T]."""
  w_x, w_h, b = (np.asarray(p[k], np.float64) for k in ('input_kernel', 'recurrent_kernel', 'bias'))
  batch, time, _ = x.shape
  hidden = b.shape[-1]
  h, c = np.zeros((batch, hidden)), np.zeros((batch, hidden))
  out = {k: np.zeros((batch, time, hidden)) for k in gates.NAMES}
  for t in (reversed(range(time)) if reverse else range(time)):
    z = np.einsum('bi,igh->bgh', x[:, t], w_x) + np.einsum('bp,pgh->bgh', h, w_h) + b
    i, f, o = _sigmoid(z[:, 0]), _sigmoid(z[:, 1]), _sigmoid(z[:, 3])
    g = np.tanh(z[:, 2])
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    m = mask[:, t, None]
    c, h = np.where(m, c_new, c), np.where(m, h_new, h)
    for k, v in zip(gates.NAMES, (i, f, g, o, c_new, h_new)):
      out[k][:, t] = np.where(m, v, 0.0)
  return out


def test_bidirectional_stack_matches_float64_equations_and_the_module():
  lstm = lstm_flax.LSTM(hidden_size=5, num_layers=2, bidirectional=True, forget_bias=1.0)
  x = jax.random.normal(jax.random.key(0), (3, 6, 4))
  lengths = jnp.array([6, 3, 1])
  variables = lstm.init(jax.random.key(1), x, lengths=lengths)
  (y, carry), recordings = gates.record(lstm, variables, x, lengths=lengths)
  rec = recordings['LSTM']
  assert set(rec) == set(gates.NAMES) | {'mask'}
  assert rec['c'].shape == (4, 3, 6, 5)  # [L*D, batch, time, H]
  mask = np.arange(6)[None] < np.asarray(lengths)[:, None]
  np.testing.assert_array_equal(rec['mask'], mask)
  params = nn.meta.unbox(variables['params'])
  layer_in = np.asarray(x, np.float64)
  for layer in range(2):
    outs = []
    for d, suffix in enumerate(('', '_reverse')):
      ref = _reference_layer(params[f'layer_{layer}{suffix}'], layer_in, mask, reverse=d == 1)
      for k in gates.NAMES:
        np.testing.assert_allclose(rec[k][2 * layer + d], ref[k], atol=1e-5, rtol=1e-5,
                                   err_msg=f'layer {layer} direction {d} {k}')
      outs.append(ref['h'])
    layer_in = np.concatenate(outs, -1)
  # The recording is the module's computation: its h is the module's output.
  np.testing.assert_allclose(jnp.concatenate([rec['h'][2], rec['h'][3]], -1), y, atol=1e-6)
  # Final carries of row 0 (full length): forward at the last step, reverse at the first.
  np.testing.assert_allclose(rec['c'][0::2, 0, -1], carry.c[0::2, 0], atol=1e-6)
  np.testing.assert_allclose(rec['c'][1::2, 0, 0], carry.c[1::2, 0], atol=1e-6)
  # The outputs are those of a plain apply (no recording).
  np.testing.assert_array_equal(y, lstm.apply(variables, x, lengths=lengths)[0])


def test_cell_matches_float64_equations():
  cell = lstm_flax.LSTMCell(features=4)
  x = jax.random.normal(jax.random.key(2), (2, 3))
  carry = (jax.random.normal(jax.random.key(3), (2, 4)), jax.random.normal(jax.random.key(4), (2, 4)))
  variables = cell.init(jax.random.key(5), carry, x)
  ((c1, h1), _), recordings = gates.record(cell, variables, carry, x)
  rec = recordings['LSTMCell']
  p = {k: np.asarray(v, np.float64) for k, v in nn.meta.unbox(variables['params']).items()}
  c0, h0 = (np.asarray(a, np.float64) for a in carry)
  z = np.einsum('bi,igh->bgh', np.asarray(x, np.float64), p['input_kernel']) + np.einsum(
      'bp,pgh->bgh', h0, p['recurrent_kernel']) + p['bias']
  i, f, g, o = _sigmoid(z[:, 0]), _sigmoid(z[:, 1]), np.tanh(z[:, 2]), _sigmoid(z[:, 3])
  c = f * c0 + i * g
  expected = dict(i=i, f=f, g=g, o=o, c=c, h=o * np.tanh(c))
  for k, v in expected.items():
    np.testing.assert_allclose(rec[k][0, :, 0], v, atol=1e-5, rtol=1e-5, err_msg=k)
  np.testing.assert_allclose(rec['c'][0, :, 0], c1, atol=1e-6)
  np.testing.assert_allclose(rec['h'][0, :, 0], h1, atol=1e-6)


def test_models_record_every_lstm_and_refuse_dropout():
  tokens = jnp.arange(7) % 9
  classifier = models.SequenceClassifier(vocab_size=9, num_classes=2, embedding_size=4,
                                         hidden_size=3, bidirectional=True, dropout_rate=0.5,
                                         num_layers=2)
  variables = classifier.init(jax.random.key(0), tokens[None], jnp.array([7]),
                              deterministic=True)
  logits, recordings = gates.record_tokens(classifier, variables, tokens)
  assert set(recordings) == {'lstm', 'lstm_reverse'}
  np.testing.assert_allclose(logits, classifier.apply(
      variables, tokens[None], jnp.array([7]), deterministic=True)[0], atol=1e-6)
  # lstm_reverse ran over the reversed text; its recording is in text order.
  reverse = lstm_flax.LSTM(hidden_size=3, num_layers=2)
  params = nn.meta.unbox(variables['params'])
  embedded = params['embed']['embedding'][tokens[::-1]][None]
  y, _ = reverse.apply({'params': params['lstm_reverse']}, embedded)
  np.testing.assert_allclose(recordings['lstm_reverse']['h'][1, 0], y[0, ::-1], atol=1e-6)
  with pytest.raises(ValueError, match='deterministic'):
    gates.record(classifier, variables, tokens[None], jnp.array([7]), deterministic=False,
                 rngs={'dropout': jax.random.key(1)})


def test_translation_records_encoder_and_decoder_steps():
  """The encoder's and a decoder step's recordings against the states the
  real modules return (record_translation's loop is run by test_visualize)."""
  model = seq2seq.Seq2Seq(source_vocab_size=9, target_vocab_size=8, embedding_size=4,
                          hidden_size=3, encoder_layers=1, decoder_layers=2)
  source = jnp.arange(1, 6)[None]
  variables = jax.jit(model.init)(jax.random.key(0), source, source[:, :2])
  (encoded, state), rec = jax.jit(lambda v: gates.record(model, v, source,
                                                         method=model.encode))(variables)
  assert rec['encoder']['c'].shape == (2, 1, 5, 3)  # bidirectional encoder
  np.testing.assert_allclose(jnp.concatenate([rec['encoder']['h'][0], rec['encoder']['h'][1]],
                                             -1), encoded.memory, atol=1e-6)
  (_, new_state), rec = jax.jit(lambda v: gates.record(
      model, v, encoded, state, jnp.array([3]), method=model.decode_step))(variables)
  assert rec['decoder']['c'].shape == (2, 1, 1, 3)  # [layers, batch, 1 step, H]
  np.testing.assert_allclose(rec['decoder']['c'][:, 0, 0], new_state.c[0], atol=1e-6)
  np.testing.assert_allclose(rec['decoder']['h'][:, 0, 0], new_state.h[0], atol=1e-6)


def test_gate_stats_saturation_properties_and_ranking():
  from lstm_flax import gate_stats
  text = list('a "b (cd)" e')
  props = gate_stats.text_properties(text)
  np.testing.assert_array_equal(props['in_quotes'], [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(props['in_brackets'], [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(props['word_position'], [1, 0, 0, 1, 0, 0, 1, 2, 0, 0, 0, 1])
  np.testing.assert_array_equal(props['line_position'], np.arange(12))
  time, hidden = len(text), 3
  c = np.zeros((1, 1, time + 2, hidden))  # two padded steps at the end
  c[0, 0, :time, 0] = props['in_brackets'] * 2.0 - 1.0  # unit 0 tracks brackets
  c[0, 0, :time, 1] = np.sin(np.arange(time))
  c[0, 0, time:] = 99.0  # padding must be ignored
  f = np.full((1, 1, time + 2, hidden), 0.5)
  f[0, 0, :6, 2] = 0.95
  f[0, 0, 6:time, 2] = 0.05
  mask = (np.arange(time + 2) < time)[None]
  gates = {'c': c, 'f': f, 'i': f, 'o': f, 'g': c, 'h': c, 'mask': mask}
  roles = gate_stats.rank_units(gates, text, top=2)
  assert (roles[0].layer, roles[0].unit, roles[0].prop) == (0, 0, 'in_brackets')
  assert roles[0].correlation == pytest.approx(1.0)
  left, right = gate_stats.saturation(gates)['f']
  np.testing.assert_allclose(left[0], [0, 0, 0.5])
  np.testing.assert_allclose(right[0], [0, 0, 0.5])
  assert gate_stats.mean_forget(gates)[0] == pytest.approx((0.5 * 2 + 0.5) / 3)
  with pytest.raises(ValueError, match='tokens'):
    gate_stats.rank_units(gates, text[:-1])


def test_recording_off_leaves_the_program_unchanged():
  """With the interceptor installed but 'gates' not mutable (as in training),
  the traced step is the plain one: recording costs nothing when off."""
  model = models.LanguageModel(vocab_size=7, embedding_size=3, hidden_size=4, num_layers=1)
  tokens = jnp.zeros((2, 3), jnp.int32)
  params = model.init(jax.random.key(0), tokens)['params']

  def loss(params):
    return model.apply({'params': params}, tokens, targets=tokens)[0]

  def loss_with_recorder(params):
    with nn.intercept_methods(gates.interceptor):
      return loss(params)

  plain = str(jax.make_jaxpr(jax.grad(loss))(params))
  assert str(jax.make_jaxpr(jax.grad(loss_with_recorder))(params)) == plain
  with nn.intercept_methods(gates.interceptor):
    _, state = model.apply({'params': params}, tokens, mutable=[gates.COLLECTION])
  assert 'lstm' in state[gates.COLLECTION]  # and on, it records

"""LanguageModel: AWD-LSTM's smaller last layer, carry across windows, and
a tied output layer that embedding dropout leaves whole."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lstm_flax import LSTM
from lstm_flax.models import LanguageModel

VOCAB, BATCH, TIME = 23, 3, 10


def _model(**kw):
  kw = {'vocab_size': VOCAB, 'embedding_size': 6, 'hidden_size': 9,
        'num_layers': 3, 'last_layer_size': 6, 'tie_weights': True, **kw}
  return LanguageModel(**kw)


def _tokens(seed=0):
  return jax.random.randint(jax.random.PRNGKey(seed), (BATCH, TIME), 0, VOCAB)


def test_last_layer_size_shapes_and_reference():
  model = _model()
  tokens = _tokens()
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(1), tokens))['params']
  assert set(params['lstm']) == {'layer_0', 'layer_1'}
  assert params['lstm']['layer_1']['recurrent_kernel'].shape == (9, 4, 9)
  assert params['lstm_last']['layer_0']['input_kernel'].shape == (9, 4, 6)
  assert params['lstm_last']['layer_0']['recurrent_kernel'].shape == (6, 4, 6)
  logits, carry = model.apply({'params': params}, tokens)
  assert logits.shape == (BATCH, TIME, VOCAB)
  zeros = model.initialize_carry(BATCH)
  assert jax.tree.map(jnp.shape, carry) == jax.tree.map(jnp.shape, zeros)
  # The same as the two LSTM modules run by hand.
  x = params['embed']['embedding'][tokens]
  h, _ = LSTM(9, num_layers=2).apply({'params': params['lstm']}, x)
  y, _ = LSTM(6, num_layers=1).apply({'params': params['lstm_last']}, h)
  expected = y @ params['embed']['embedding'].T + params['output_bias']
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_last_layer_size_carry_continues_across_windows():
  model = _model()
  tokens = _tokens()
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(1), tokens))['params']
  whole, whole_carry = model.apply({'params': params}, tokens)
  first, carry = model.apply({'params': params}, tokens[:, :4])
  second, carry = model.apply({'params': params}, tokens[:, 4:], carry)
  np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole,
                             rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               carry, whole_carry)


def test_embedding_dropout_spares_the_tied_output_layer():
  """Dropped words vanish from the input lookup only (AWD-LSTM): the tied
  softmax still scores every word with its full embedding."""
  model = _model(embedding_dropout_rate=0.5)
  tokens = _tokens()
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(1), tokens))['params']
  (logits, _), state = model.apply(
      {'params': params}, tokens, deterministic=False,
      rngs={'dropout': jax.random.PRNGKey(2)},
      capture_intermediates=lambda m, _: m.name == 'lstm_last')
  y, _ = state['intermediates']['lstm_last']['__call__'][0]
  expected = y @ params['embed']['embedding'].T + params['output_bias']
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
  # The input side did drop words: the outputs differ from no dropout.
  clean, _ = model.apply({'params': params}, tokens)
  assert not np.allclose(logits, clean)


def test_init_scale_draws_every_parameter_uniform():
  """Zaremba et al.: every parameter, LSTM biases included, uniform in
  [-init_scale, init_scale]."""
  model = _model(init_scale=0.05, last_layer_size=None, tie_weights=False)
  params = model.init(jax.random.PRNGKey(1), _tokens())['params']
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    assert np.abs(leaf).max() <= 0.05, path
    assert np.abs(leaf).max() > 0.03 and np.ptp(leaf) > 0.06, path

"""SequenceClassifier: shapes, padding, pooling against NumPy, shared paths with LanguageModel."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_flax import LSTM
from lstm_flax.models import LanguageModel, SequenceClassifier

VOCAB, CLASSES, EMBED, HIDDEN, LAYERS = 13, 3, 5, 6, 2
BATCH, TIME = 4, 6
LENGTHS = jnp.array([6, 3, 0, 1])  # a zero-length row too
TOKENS = jax.random.randint(jax.random.key(0), (BATCH, TIME), 1, VOCAB)


def _model(**kw):
  return SequenceClassifier(**{'vocab_size': VOCAB, 'num_classes': CLASSES,
                               'embedding_size': EMBED, 'hidden_size': HIDDEN,
                               'num_layers': LAYERS, **kw})


def _params(model, seed=1):
  variables = model.init(jax.random.key(seed), TOKENS, LENGTHS, deterministic=True)
  return nn.meta.unbox(variables)['params']


def _np_lstm(stack, x):
  """A NumPy LSTM stack (gate axis, order i f g o) over one unpadded row ``x [n, in]``."""
  sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
  for layer in range(LAYERS):
    p = {k: np.asarray(v, np.float64) for k, v in stack[f'layer_{layer}'].items()}
    h, c, outputs = np.zeros(HIDDEN), np.zeros(HIDDEN), []
    for x_t in x:
      g = (np.einsum('i,igh->gh', x_t, p['input_kernel'])
           + np.einsum('p,pgh->gh', h, p['recurrent_kernel']) + p['bias'])  # [4, H]
      c = sigmoid(g[1]) * c + sigmoid(g[0]) * np.tanh(g[2])
      h = sigmoid(g[3]) * np.tanh(c)
      outputs.append(h)
    x = np.stack(outputs)
  return x  # [n, H]


def _reference(model, params, tokens, lengths):
  """Pooling in NumPy over NumPy LSTMs run on each row's unpadded part."""
  x = np.asarray(params['embed']['embedding'], np.float64)[np.asarray(tokens)]
  rows = []
  for b, n in enumerate(np.asarray(lengths)):
    width = HIDDEN * (2 if model.bidirectional else 1)
    if n == 0:
      rows.append(np.zeros(width))
      continue
    fwd = _np_lstm(params['lstm'], x[b, :n])  # [n, H]
    feats = [fwd]
    if model.bidirectional:
      feats.append(_np_lstm(params['lstm_reverse'], x[b, :n][::-1])[::-1])  # time order
    y = np.concatenate(feats, -1)  # [n, D*H]
    if model.pooling == 'max':
      rows.append(y.max(0))
    elif model.pooling == 'mean':
      rows.append(y.mean(0))
    else:  # forward's last step, backward's first
      rows.append(np.concatenate([fwd[-1]] + ([feats[1][0]] if model.bidirectional else [])))
  pooled = np.stack(rows)
  return pooled @ np.asarray(params['head']['kernel']) + np.asarray(params['head']['bias'])


@pytest.mark.parametrize('pooling, bidirectional',
                         [('max', True), ('mean', True), ('last', True), ('last', False)])
def test_pooling_matches_numpy_and_ignores_padding(pooling, bidirectional):
  model = _model(pooling=pooling, bidirectional=bidirectional)
  params = _params(model)
  apply = jax.jit(lambda p, t, l: model.apply({'params': p}, t, l, deterministic=True))
  logits = apply(params, TOKENS, LENGTHS)
  assert logits.shape == (BATCH, CLASSES) and logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, _reference(model, params, TOKENS, LENGTHS),
                             rtol=1e-5, atol=1e-5)
  # Other tokens at padded steps and extra padding leave the logits unchanged.
  valid = jnp.arange(TIME)[None, :] < LENGTHS[:, None]
  noisy = jnp.where(valid, TOKENS, 7)
  padded = jnp.concatenate([noisy, jnp.full((BATCH, 3), 9)], 1)
  np.testing.assert_allclose(apply(params, padded, LENGTHS), logits, rtol=1e-5, atol=1e-6)


def test_zero_length_rows_pool_to_zeros_and_gradients_are_finite():
  for pooling in ('max', 'mean'):
    model = _model(pooling=pooling)
    params = _params(model)

    def loss(p, model=model):
      logits = model.apply({'params': p}, TOKENS, LENGTHS, deterministic=True)
      return jnp.sum(logits ** 2), logits

    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    np.testing.assert_allclose(logits[2], params['head']['bias'], atol=1e-6)  # row of length 0
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
      assert np.isfinite(g).all(), (pooling, path)
    assert np.abs(grads['lstm_reverse']['layer_0']['input_kernel']).sum() > 0


def test_dropout_only_when_not_deterministic():
  model = _model(embedding_dropout_rate=0.2, input_dropout_rate=0.3, dropout_rate=0.3,
                 output_dropout_rate=0.3)
  params = _params(model)
  apply = jax.jit(lambda seed: model.apply({'params': params}, TOKENS, LENGTHS,
                                           deterministic=False,
                                           rngs={'dropout': jax.random.key(seed)}))
  test = jax.jit(lambda: model.apply({'params': params}, TOKENS, LENGTHS, deterministic=True))
  run = lambda det, seed=0: test() if det else apply(seed)  # noqa: E731
  np.testing.assert_array_equal(run(True), run(True, 1))
  np.testing.assert_allclose(run(True), _model().apply(  # the same model without dropout
      {'params': params}, TOKENS, LENGTHS, deterministic=True), rtol=1e-5, atol=1e-6)
  assert not np.allclose(run(False, 0), run(True))
  assert not np.allclose(run(False, 0), run(False, 1))


def test_embedding_and_forward_layers_share_language_model_paths():
  model = _model(pooling='last')
  lm = LanguageModel(vocab_size=VOCAB, embedding_size=EMBED, hidden_size=HIDDEN,
                     num_layers=LAYERS)
  lm_params = nn.meta.unbox(lm.init(jax.random.key(2), TOKENS))['params']
  params = _params(model)
  shapes = lambda t: jax.tree.map(jnp.shape, t)  # noqa: E731
  assert shapes(params['embed']) == shapes(lm_params['embed']) == {'embedding': (VOCAB, EMBED)}
  assert set(params['lstm']) == set(lm_params['lstm']) == {'layer_0', 'layer_1'}
  assert shapes(params['lstm']) == shapes(lm_params['lstm'])
  assert shapes(params['lstm_reverse']) == shapes(lm_params['lstm'])
  # Transfer by path: the classifier runs the language model's LSTM.
  transferred = {**params, 'embed': lm_params['embed'], 'lstm': lm_params['lstm']}
  logits = model.apply({'params': transferred}, TOKENS, LENGTHS, deterministic=True)
  x = lm_params['embed']['embedding'][TOKENS]
  _, carry = LSTM(HIDDEN, num_layers=LAYERS).apply({'params': lm_params['lstm']}, x,
                                                   lengths=LENGTHS)
  forward_head = carry.h[-1] @ params['head']['kernel'][:HIDDEN]
  backward = logits - forward_head - params['head']['bias']
  np.testing.assert_allclose(  # The rest is the backward stack's share.
      backward, _reference(model, transferred, TOKENS, LENGTHS) - forward_head
      - params['head']['bias'], rtol=1e-4, atol=1e-5)


def test_call_errors():
  model = _model()
  params = _params(model)
  with pytest.raises(ValueError, match=r'lengths must be \[batch\] = \(4,\)'):
    model.apply({'params': params}, TOKENS, LENGTHS[:2], deterministic=True)
  with pytest.raises(ValueError, match=r'tokens must be \[batch, time\]'):
    model.apply({'params': params}, TOKENS[0], LENGTHS, deterministic=True)

"""FeatureSequenceClassifier: shapes, axis names, masking, and the whole
forward pass (projection, layer norm, biLSTM, pooling, head) against a
float64 numpy computation."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from lstm_flax import axes, inference
from lstm_flax.feature_models import FeatureSequenceClassifier


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np_lstm(p, x):
  """float64 LSTM over ``x [T, in]`` (gates i f g o); ``[T, H]``."""
  wx, wh, b = (np.asarray(p[k], np.float64) for k in
               ('input_kernel', 'recurrent_kernel', 'bias'))
  h = np.zeros(wh.shape[-1])
  c = np.zeros_like(h)
  out = []
  for x_t in x:
    a = np.einsum('i,igh->gh', x_t, wx) + np.einsum('p,pgh->gh', h, wh) + b
    i, f, g, o = _sigmoid(a[0]), _sigmoid(a[1]), np.tanh(a[2]), _sigmoid(a[3])
    c = f * c + i * g
    h = o * np.tanh(c)
    out.append(h)
  return np.stack(out)


def _np_classifier(params, features, lengths, pooling):
  """float64 forward pass of a 1-layer bidirectional model with layer norm."""
  p = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params)
  logits = []
  for x, n in zip(np.asarray(features, np.float64), lengths):
    x = x[:n] @ p['input']['kernel'] + p['input']['bias']
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    x = (x - mu) / np.sqrt(var + 1e-6) * p['input_norm']['scale'] + p['input_norm']['bias']
    fwd = _np_lstm(p['lstm']['layer_0'], x)
    bwd = _np_lstm(p['lstm_reverse']['layer_0'], x[::-1])[::-1]
    y = np.concatenate([fwd, bwd], -1)
    pooled = {'mean': y.mean(0), 'max': y.max(0),
              'last': np.concatenate([fwd[-1], bwd[0]])}[pooling]
    logits.append(pooled @ p['head']['kernel'] + p['head']['bias'])
  return np.stack(logits)


@pytest.mark.parametrize('pooling', ['mean', 'max', 'last'])
def test_matches_numpy_and_ignores_padding(pooling):
  model = FeatureSequenceClassifier(num_features=3, num_classes=4, embedding_size=5,
                                    hidden_size=6, pooling=pooling, layer_norm=True)
  rng = np.random.default_rng(0)
  features = rng.normal(size=(2, 7, 3)).astype(np.float32)
  lengths = np.array([7, 4], np.int32)
  variables = model.init(jax.random.PRNGKey(0), features, lengths,
                         deterministic=True)
  # Non-trivial layer-norm parameters, so the test sees them used.
  params = nn.unbox(variables['params'])
  params['input_norm'] = {'scale': rng.normal(size=5).astype(np.float32),
                          'bias': rng.normal(size=5).astype(np.float32)}
  logits = model.apply({'params': params}, features, lengths, deterministic=True)
  assert logits.shape == (2, 4) and logits.dtype == np.float32
  expected = _np_classifier(params, features, lengths, pooling)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
  garbage = features.copy()
  garbage[1, 4:] = 1e3
  again = model.apply({'params': params}, garbage, lengths, deterministic=True)
  np.testing.assert_array_equal(again, logits)


def test_parameters_have_axis_names_and_fields_are_checked():
  model = FeatureSequenceClassifier(num_features=3, num_classes=2, embedding_size=4,
                                    hidden_size=5, bidirectional=False)
  boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *model.dummy_inputs()[0],
                                            deterministic=True))['params']
  names = jax.tree_util.tree_map(lambda b: b.names, boxed,
                                 is_leaf=lambda v: isinstance(v, nn.Partitioned))
  assert names['input'] == {'kernel': (axes.MLP_IN, axes.EMBED), 'bias': (axes.EMBED,)}
  assert names['head']['kernel'] == (axes.MLP_IN, axes.CLASSES)
  assert names['lstm']['layer_0']['input_kernel'] == axes.INPUT_KERNEL
  assert 'lstm_reverse' not in names and 'input_norm' not in names
  full = FeatureSequenceClassifier(num_features=3, num_classes=2, embedding_size=4,
                                   hidden_size=5, num_layers=2, proj_size=3, layer_norm=True)
  axes.check_all_named(jax.eval_shape(lambda: full.init(
      jax.random.PRNGKey(0), *full.dummy_inputs()[0], deterministic=True)))
  with pytest.raises(ValueError, match='FeatureSequenceClassifier.num_features'):
    FeatureSequenceClassifier(num_features=0, num_classes=2, embedding_size=4, hidden_size=5)
  with pytest.raises(ValueError, match='FeatureSequenceClassifier.pooling'):
    FeatureSequenceClassifier(num_features=1, num_classes=2, embedding_size=4,
                              hidden_size=5, pooling='sum')
  with pytest.raises(ValueError, match=r'features must be \[batch, time, 3\]'):
    model.apply({'params': {}},
                np.zeros((1, 2, 4), np.float32), np.ones(1, np.int32), deterministic=True)


def test_classify_frames_reuses_compiled_shapes_and_ignores_padding():
  """Recordings of 3-30 frames in batches of 4: two compiled shapes (widths
  32, 32 and 8, 4 rows each; padded to the longest, three), and every
  prediction equals the model on that recording alone."""
  model = FeatureSequenceClassifier(num_features=3, num_classes=2,
                                    embedding_size=4, hidden_size=4)
  rng = np.random.default_rng(1)
  frames = [rng.normal(size=(n, 3)).astype(np.float32)
            for n in (3, 12, 9, 30, 17, 5, 11, 13, 7)]
  params = model.init(jax.random.PRNGKey(0), frames[0][None],
                      np.array([3], np.int32), deterministic=True)['params']
  probabilities = inference.class_probabilities(model)
  got = inference.classify_frames(model, params, [*frames[:4], None, *frames[4:]],
                                  ['a', 'b'], batch_size=4,
                                  probabilities_fn=probabilities)
  assert got[4] is None
  got = got[:4] + got[5:]
  assert probabilities._cache_size() == 2  # [4, 32, 3] and [4, 8, 3].
  for x, prediction in zip(frames, got):
    alone = np.asarray(probabilities(params, x[None], np.array([len(x)], np.int32)))[0]
    np.testing.assert_allclose([prediction.probabilities['a'],
                                prediction.probabilities['b']], alone,
                               rtol=1e-5, atol=1e-6)
    assert prediction.label == 'ab'[int(np.argmax(alone))]

"""Keras interop: keras.layers.LSTM / Bidirectional / stacked weights <-> lstm_flax.LSTM.

Against tests/fixtures/keras_lstm.npz (written by tests/make_keras_fixture.py
with Keras 3's JAX backend), and live against Keras in a subprocess when Keras
is installed (Keras fixes its backend at first import, and other modules in
this worker may have imported TensorFlow).
"""

import importlib.util
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lstm_flax
from lstm_flax import interop

FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'keras_lstm.npz'
CONFIGS = ('single', 'no_bias', 'bidirectional', 'stacked', 'stacked_bidirectional',
           'bidirectional_masked')


def _load(name):
  """(num_layers, bidirectional, use_bias, units), per-layer weight lists, arrays."""
  with np.load(FIXTURE) as data:
    arrays = {k[len(name) + 1:]: data[k] for k in data.files if k.startswith(f'{name}/')}
  num_layers, bidirectional, use_bias, units = (int(v) for v in arrays['config'])
  layers = []
  for k in range(num_layers):
    count = sum(1 for key in arrays if key.startswith(f'layer{k}.w'))
    layers.append([arrays[f'layer{k}.w{i}'] for i in range(count)])
  return (num_layers, bool(bidirectional), bool(use_bias), units), layers, arrays


@pytest.mark.parametrize('name', CONFIGS)
def test_matches_keras_outputs_and_states(name):
  (num_layers, bidirectional, use_bias, units), layers, ref = _load(name)
  params = interop.from_keras_lstm(layers if num_layers > 1 else layers[0])
  expected = [lstm_flax.spec.layer_name(l, r) for l in range(num_layers)
              for r in ((False, True) if bidirectional else (False,))]
  assert list(params) == expected
  model = lstm_flax.LSTM(units, num_layers=num_layers, bidirectional=bidirectional)
  y, carry = model.apply({'params': params}, ref['x'], lengths=ref['lengths'])
  # Every step, padded ones included: Bidirectional zeroes them, as we do.
  np.testing.assert_allclose(y, ref['y'], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(carry.h, ref['h_n'], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(carry.c, ref['c_n'], rtol=1e-5, atol=1e-5)
  # And back: the Keras weights, bit for bit.
  back = interop.to_keras_lstm({'params': params}, use_bias=use_bias)
  assert len(back) == num_layers
  for ours, theirs in zip(back, layers):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
      assert a.dtype == b.dtype
      np.testing.assert_array_equal(a, b)


def test_gate_layout():
  """Keras' column block k of kernel is our gate k (i f c/g o)."""
  _, layers, _ = _load('single')
  kernel_, recurrent, bias = layers[0]
  layer = interop.from_keras_lstm(layers[0])['layer_0']
  u = recurrent.shape[0]
  for k in range(4):
    np.testing.assert_array_equal(layer['input_kernel'][:, k], kernel_[:, k * u:(k + 1) * u])
    np.testing.assert_array_equal(layer['recurrent_kernel'][:, k], recurrent[:, k * u:(k + 1) * u])
    np.testing.assert_array_equal(layer['bias'][k], bias[k * u:(k + 1) * u])


class _Fn:
  def __init__(self, name):
    self.__name__ = name


class _FakeLSTM:
  """Duck-types a Keras LSTM layer (what from_keras_lstm reads) without Keras."""

  def __init__(self, weights, activation='tanh', recurrent_activation='sigmoid',
               go_backwards=False):
    self.weights = weights
    self.activation, self.recurrent_activation = _Fn(activation), _Fn(recurrent_activation)
    self.go_backwards = go_backwards

  def get_weights(self):
    return list(self.weights)


class _FakeBidirectional:
  def __init__(self, forward, backward, merge_mode='concat'):
    self.forward_layer, self.backward_layer, self.merge_mode = forward, backward, merge_mode

  def get_weights(self):
    return self.forward_layer.get_weights() + self.backward_layer.get_weights()


def test_layer_objects_and_weight_lists_agree():
  _, layers, _ = _load('stacked_bidirectional')
  objects = [_FakeBidirectional(_FakeLSTM(w[:3]), _FakeLSTM(w[3:], go_backwards=True))
             for w in layers]
  from_objects = interop.from_keras_lstm(objects)
  from_lists = interop.from_keras_lstm(layers)
  for name in from_lists:
    for key in from_lists[name]:
      np.testing.assert_array_equal(from_objects[name][key], from_lists[name][key])


def _errors_cases():
  _, (w,), _ = _load('single')
  kernel_, recurrent, bias = w
  _, bi_layers, _ = _load('stacked_bidirectional')
  return [
      ([kernel_[:, :12], recurrent, bias], ValueError,
       'Keras layer 0 kernel must be [in, 4 * units] = [in, 16]'),
      ([kernel_, recurrent[:, :12], bias], ValueError,
       'Keras layer 0 recurrent_kernel must be [units, 4 * units]'),
      ([kernel_, recurrent, bias[:8]], ValueError,
       'Keras layer 0 bias must be [4 * units] = (16,)'),
      ([kernel_, recurrent, bias, bias], ValueError, 'expected an LSTM\'s'),
      ([[kernel_, recurrent, bias], bi_layers[1]], ValueError, 'a stack is all Bidirectional'),
      ([[kernel_, recurrent, bias]] * 2, ValueError, 'layer_1 input_kernel reads 5 features'),
      (_FakeLSTM(w, activation='relu'), ValueError, "activation='relu'"),
      (_FakeLSTM(w, recurrent_activation='hard_sigmoid'), ValueError,
       "recurrent_activation='hard_sigmoid'"),
      (_FakeLSTM(w, go_backwards=True), ValueError, 'go_backwards=True'),
      (_FakeBidirectional(_FakeLSTM(w), _FakeLSTM(w, go_backwards=True), 'sum'), ValueError,
       "merge_mode='sum'"),
      ([], ValueError, 'no layers'),
      ('lstm', TypeError, 'must be a Keras LSTM'),
      ({'layer_0': {}}, TypeError, 'not a mapping'),
  ]


@pytest.mark.parametrize('layers, error, message', _errors_cases(),
                         ids=[case[2][:30] for case in _errors_cases()])
def test_errors_name_the_array_and_shape(layers, error, message):
  with pytest.raises(error) as err:
    interop.from_keras_lstm(layers)
  assert message in str(err.value)


def test_to_keras_errors():
  torch_fixture = pathlib.Path(__file__).parent / 'fixtures' / 'torch_lstm.npz'
  with np.load(torch_fixture) as data:
    sd = {k[len('projection/sd.'):]: data[k] for k in data.files
          if k.startswith('projection/sd.')}
  with pytest.raises(ValueError, match='projection_kernel'):
    interop.to_keras_lstm(interop.from_torch_state_dict(sd))
  _, layers, _ = _load('stacked')
  params = interop.from_keras_lstm(layers)
  with pytest.raises(ValueError, match="layer_0 has a non-zero bias; it needs use_bias=True"):
    interop.to_keras_lstm(params, use_bias=False)
  with pytest.raises(ValueError, match=r"missing \['layer_0'\]"):
    interop.to_keras_lstm({'layer_1': params['layer_1']})


_LIVE = textwrap.dedent('''
    import os
    os.environ['KERAS_BACKEND'] = 'jax'
    import keras
    import numpy as np
    import lstm_flax
    from lstm_flax import interop

    assert keras.backend.backend() == 'jax'
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    mask = np.arange(5)[None, :] < np.array([5, 2])[:, None]

    def stack():
      return [keras.layers.Bidirectional(keras.layers.LSTM(
          4, return_sequences=True, return_state=True)) for _ in range(2)]

    def run(layers, set_weights=None):
      y, hs, cs = x, [], []
      for k, layer in enumerate(layers):
        layer.build(y.shape)
        if set_weights is None:
          layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                             for w in layer.get_weights()])
        else:
          layer.set_weights(set_weights[k])
        y, h_fw, c_fw, h_bw, c_bw = (np.asarray(a) for a in layer(y, mask=mask))
        hs += [h_fw, h_bw]
        cs += [c_fw, c_bw]
      return y, np.stack(hs), np.stack(cs)

    layers = stack()
    y_keras, h_keras, c_keras = run(layers)
    params = interop.from_keras_lstm(layers)  # the layer objects themselves
    model = lstm_flax.LSTM(4, num_layers=2, bidirectional=True)
    y, carry = model.apply({'params': params}, x, mask=mask)
    np.testing.assert_allclose(y, y_keras, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(carry.h, h_keras, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(carry.c, c_keras, rtol=1e-5, atol=1e-5)
    # Our params into fresh Keras layers: Keras computes the same again.
    y_back, h_back, c_back = run(stack(), interop.to_keras_lstm(params))
    np.testing.assert_array_equal(y_back, y_keras)
    np.testing.assert_array_equal(h_back, h_keras)
    print('KERAS_LIVE_OK', float(np.abs(y - y_keras).max()))
''')


@pytest.mark.skipif(importlib.util.find_spec('keras') is None, reason='keras is not installed')
def test_live_against_keras_jax_backend():
  root = pathlib.Path(__file__).resolve().parent.parent
  env = {**os.environ, 'KERAS_BACKEND': 'jax', 'JAX_PLATFORMS': 'cpu',
         'PYTHONPATH': os.pathsep.join(filter(None, [str(root), os.environ.get('PYTHONPATH')]))}
  result = subprocess.run([sys.executable, '-c', _LIVE], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  assert 'KERAS_LIVE_OK' in result.stdout

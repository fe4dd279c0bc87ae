"""Writes tests/fixtures/keras_lstm.npz: Keras 3 LSTM reference outputs (JAX backend).

``tests/test_keras_interop.py`` compares lstm_flax against this file, so the
suite needs no Keras (it also runs Keras live, in a subprocess, when Keras is
installed). Regenerate with (Keras is not a project dependency)::

  pip install keras
  python tests/make_keras_fixture.py

Keras fixes its backend at its first import, so this sets
``KERAS_BACKEND=jax`` before importing it. For each configuration it stores,
under ``{config}/``: ``config`` (``[num_layers, bidirectional, use_bias,
units]``), the layers' weights ``layer{k}.w{i}`` (``layer.get_weights()``
order: kernel ``[in, 4u]``, recurrent_kernel ``[u, 4u]``, bias ``[4u]``,
forward then backward for ``Bidirectional``), inputs ``x [batch, time, in]``,
``lengths [batch]`` (a padding ``mask`` was passed when they are not all
``time``), the last layer's outputs ``y [batch, time, D*u]`` and the final
states stacked in lstm_flax's layout, ``h_n``/``c_n [L*D, batch, u]`` (index
``layer * D + direction``; Keras returns ``[h, c]`` per direction). Weights
are drawn from U(-0.6, 0.6) so that no gate is near its initial value.
"""

import os

os.environ['KERAS_BACKEND'] = 'jax'

import keras  # noqa: E402  (after KERAS_BACKEND)
import numpy as np  # noqa: E402

# name: (num_layers, bidirectional, use_bias, lengths or None)
CONFIGS = {
    'single': (1, False, True, None),
    'no_bias': (1, False, False, None),
    'bidirectional': (1, True, True, None),
    'stacked': (2, False, True, None),
    'stacked_bidirectional': (2, True, True, None),
    'bidirectional_masked': (1, True, True, [6, 3]),
}
BATCH, TIME, IN, UNITS = 2, 6, 5, 4


def build(num_layers, bidirectional, use_bias):
  """Keras layers of the stack, each returning ``[sequence, *states]``."""
  layers = []
  for _ in range(num_layers):
    lstm = keras.layers.LSTM(UNITS, use_bias=use_bias, return_sequences=True,
                             return_state=True)
    layers.append(keras.layers.Bidirectional(lstm) if bidirectional else lstm)
  return layers


def reference(name, num_layers, bidirectional, use_bias, lengths, seed):
  keras.utils.set_random_seed(seed)
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((BATCH, TIME, IN)).astype(np.float32)
  mask = None if lengths is None else np.arange(TIME)[None, :] < np.array(lengths)[:, None]
  out = {
      'config': np.array([num_layers, int(bidirectional), int(use_bias), UNITS]),
      'x': x,
      'lengths': np.array(lengths if lengths is not None else [TIME] * BATCH),
  }
  hs, cs = [], []
  y = x
  for k, layer in enumerate(build(num_layers, bidirectional, use_bias)):
    layer.build(y.shape)
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                       for w in layer.get_weights()])
    for i, w in enumerate(layer.get_weights()):
      out[f'layer{k}.w{i}'] = w
    result = layer(y) if mask is None else layer(y, mask=mask)
    y, states = np.asarray(result[0]), [np.asarray(s) for s in result[1:]]
    hs += states[0::2]  # [h_fw, c_fw(, h_bw, c_bw)]
    cs += states[1::2]
  out.update(y=y, h_n=np.stack(hs), c_n=np.stack(cs))
  return {f'{name}/{k}': v for k, v in out.items()}


def main():
  arrays = {}
  for seed, (name, config) in enumerate(CONFIGS.items()):
    arrays.update(reference(name, *config, seed=seed))
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'keras_lstm.npz')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez_compressed(path, **arrays)
  print(f'wrote {path}: {len(arrays)} arrays, keras {keras.__version__} '
        f'({keras.backend.backend()} backend)')


if __name__ == '__main__':
  main()

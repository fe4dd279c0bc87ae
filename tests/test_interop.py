"""Weight conversion: PyTorch nn.LSTM state_dicts and Flax LSTM cells."""

import pathlib

import numpy as np
import pytest

from lstm_flax import interop

FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'torch_lstm.npz'


def _state_dict(name):
  with np.load(FIXTURE) as data:
    prefix = f'{name}/sd.'
    return {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}


class _FakeTensor:
  """Duck-types a torch tensor (detach().cpu().numpy()) without importing torch."""

  def __init__(self, array):
    self.array = array

  def detach(self):
    return self

  def cpu(self):
    return self

  def numpy(self):
    return self.array


def test_round_trip_keeps_weights_and_the_bias_sum():
  sd = _state_dict('padded_bidirectional_projection')
  params = interop.from_torch_state_dict(sd)
  assert sorted(params) == ['layer_0', 'layer_0_reverse', 'layer_1', 'layer_1_reverse']
  layer = params['layer_1_reverse']
  h = sd['weight_hr_l1_reverse'].shape[1]
  assert layer['input_kernel'].shape == (sd['weight_ih_l1_reverse'].shape[1], 4, h)
  # Gate k of ours is torch's row block k*H:(k+1)*H.
  for k in range(4):
    rows = slice(k * h, (k + 1) * h)
    np.testing.assert_array_equal(layer['input_kernel'][:, k], sd['weight_ih_l1_reverse'][rows].T)
    np.testing.assert_array_equal(layer['recurrent_kernel'][:, k],
                                  sd['weight_hh_l1_reverse'][rows].T)
    np.testing.assert_allclose(layer['bias'][k], sd['bias_ih_l1_reverse'][rows]
                               + sd['bias_hh_l1_reverse'][rows])
  np.testing.assert_array_equal(layer['projection_kernel'], sd['weight_hr_l1_reverse'].T)
  back = interop.to_torch_state_dict(params)
  assert sorted(back) == sorted(sd)
  for key, value in back.items():
    if key.startswith('bias_ih'):
      np.testing.assert_allclose(value, sd[key] + sd[key.replace('_ih', '_hh')])
    elif key.startswith('bias_hh'):
      np.testing.assert_array_equal(value, 0.0)
    else:
      np.testing.assert_array_equal(value, sd[key])


def test_prefix_and_torch_tensors():
  sd = {f'encoder.rnn.{k}': _FakeTensor(v) for k, v in _state_dict('three_layers').items()}
  sd['encoder.embed.weight'] = _FakeTensor(np.zeros((3, 5)))
  params = interop.from_torch_state_dict(sd, prefix='encoder.rnn.')
  assert sorted(params) == ['layer_0', 'layer_1', 'layer_2']
  assert params['layer_2']['input_kernel'].shape == (7, 4, 7)


def test_lstm_without_biases():
  sd = {k: v for k, v in _state_dict('one_layer').items() if not k.startswith('bias')}
  params = interop.from_torch_state_dict(sd)
  np.testing.assert_array_equal(params['layer_0']['bias'], 0.0)


@pytest.mark.parametrize(
    'mutate, message',
    [
        (lambda sd: {k: v for k, v in sd.items() if k != 'weight_hh_l1'}, "missing 'weight_hh_l1'"),
        (lambda sd: {k: v for k, v in sd.items() if k != 'bias_hh_l0'}, "missing 'bias_hh_l0'"),
        (lambda sd: {**sd, 'weight_hh_l0': sd['weight_hh_l0'][:, :3]}, 'recurrent_kernel'),
        (lambda sd: {**sd, 'bias_ih_l0': sd['bias_ih_l0'][:5]}, 'bias_ih_l0 must have shape (28,)'),
        (lambda sd: {**sd, 'weight_ih_l0': sd['weight_ih_l0'][:27]}, 'must be [4H, in] and [4H, P]'),
        (lambda sd: {**sd, 'lstm.extra': np.zeros(3)}, "not nn.LSTM weights under prefix ''"),
        (lambda sd: {}, 'no nn.LSTM weights'),
    ],
)
def test_state_dict_errors_name_the_key(mutate, message):
  with pytest.raises(ValueError) as err:
    interop.from_torch_state_dict(mutate(_state_dict('three_layers')))
  assert message in str(err.value)


def test_flax_cell_errors():
  with pytest.raises(ValueError, match=r"missing \['ho'\]"):
    interop.from_flax_lstm_cell({f'{s}{g}': {'kernel': np.zeros((2, 2))} for s in 'ih' for g in 'ifg'}
                                | {'io': {'kernel': np.zeros((2, 2))}})
  params = interop.from_torch_state_dict(_state_dict('projection'))
  with pytest.raises(ValueError, match='no projection'):
    interop.to_flax_lstm_cell(params['layer_0'])

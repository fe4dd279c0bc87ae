"""PyTorch word-language-model state dicts <-> ``LanguageModel`` parameters.

The PyTorch model is pytorch/examples' ``word_language_model`` ``RNNModel``
with ``rnn_type='LSTM'`` (``torch.nn.Embedding -> nn.LSTM -> nn.Linear``)::

  encoder.weight           [V, E]     our embed/embedding
  rnn.weight_ih_l{k}       [4H, in]   our lstm/layer_{k} (lstm_flax.interop)
  rnn.weight_hh_l{k}       [4H, H]
  rnn.bias_ih_l{k}         [4H]       bias_ih + bias_hh = our bias
  rnn.bias_hh_l{k}         [4H]
  decoder.weight           [V, H]     our output/kernel [H, V] transposed
                                      (the embedding when tied)
  decoder.bias             [V]        our output/bias (output_bias when tied)

Its ``forward`` returns ``log_softmax(decoder(rnn(encoder(tokens))))``, which
is ``log_softmax`` of our logits: the same log-probabilities. Exporting puts
the whole LSTM bias into ``bias_ih`` and zeros into ``bias_hh`` (the same
function). Nothing here imports torch; arrays are numpy (a state dict of
torch tensors is read too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from lstm_flax import interop
from lstm_flax.models import LanguageModel

ENCODER = 'encoder.weight'
DECODER_WEIGHT = 'decoder.weight'
DECODER_BIAS = 'decoder.bias'
RNN_PREFIX = 'rnn.'


def check_exportable(model: LanguageModel) -> None:
  """Raises ValueError naming each ``LanguageModel`` field that ``RNNModel``
  (one ``nn.LSTM`` of equal layers, no projection) cannot express."""
  if not isinstance(model, LanguageModel):
    raise ValueError(f'Only a LanguageModel exports to a PyTorch RNNModel state dict; got '
                     f'{type(model).__name__}.')
  refused = []
  if model.proj_size is not None:
    refused.append(f'proj_size={model.proj_size} (LSTMP projections)')
  if model.last_layer_size is not None and model.num_layers > 1:
    refused.append(f'last_layer_size={model.last_layer_size} with num_layers='
                   f'{model.num_layers} (layers of different sizes)')
  if refused:
    raise ValueError(
        'This LanguageModel has features that the PyTorch word_language_model RNNModel '
        '(nn.Embedding -> nn.LSTM -> nn.Linear) cannot express: ' + '; '.join(refused) +
        '. Export without --torch (the safetensors parameters hold the whole model).')


def to_torch_state_dict(model: LanguageModel, params: Mapping[str, Any]
                        ) -> dict[str, np.ndarray]:
  """``RNNModel.state_dict()`` of a ``LanguageModel``'s ``params`` (float32
  numpy arrays; with ``tie_weights`` ``decoder.weight`` is a copy of
  ``encoder.weight``, as torch's tied state dict holds both).

  Raises:
    ValueError: a field ``RNNModel`` cannot express (:func:`check_exportable`).
  """
  check_exportable(model)
  params = params.get('params', params)
  as32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
  lstm = {name: {k: as32(v) for k, v in layer.items()} for name, layer in params['lstm'].items()}
  embedding = as32(params['embed']['embedding'])  # [V, E]
  state_dict = {ENCODER: embedding}
  state_dict.update(interop.to_torch_state_dict(lstm, prefix=RNN_PREFIX))
  if model.tie_weights:
    state_dict[DECODER_WEIGHT] = embedding.copy()
    state_dict[DECODER_BIAS] = as32(params['output_bias'])
  else:
    state_dict[DECODER_WEIGHT] = as32(params['output']['kernel']).T.copy()  # [V, H]
    state_dict[DECODER_BIAS] = as32(params['output']['bias'])
  return state_dict


def from_torch_state_dict(state_dict: Mapping[str, Any], *, tie_weights: Optional[bool] = None,
                          **model_fields: Any) -> tuple[LanguageModel, dict[str, Any]]:
  """A ``LanguageModel`` and its ``{'params': ...}`` from an ``RNNModel``
  state dict (torch tensors or numpy arrays).

  Args:
    state_dict: ``RNNModel(rnn_type='LSTM', ...).state_dict()``.
    tie_weights: whether ``decoder.weight`` is ``encoder.weight`` (None:
      when the two are equal).
    **model_fields: other ``LanguageModel`` fields (``dtype``, dropout
      rates...); the sizes come from the state dict.

  Raises:
    ValueError: a missing key, or shapes that do not fit, named.
  """
  missing = [k for k in (ENCODER, DECODER_WEIGHT, DECODER_BIAS) if k not in state_dict]
  if missing:
    raise ValueError(f'The state dict lacks {missing} of an RNNModel (encoder.weight, rnn.*, '
                     f'decoder.weight, decoder.bias); got keys {sorted(state_dict)[:10]}.')
  embedding = interop.to_numpy(state_dict[ENCODER])
  decoder_weight = interop.to_numpy(state_dict[DECODER_WEIGHT])
  decoder_bias = interop.to_numpy(state_dict[DECODER_BIAS])
  lstm = interop.from_torch_state_dict(
      {k: v for k, v in state_dict.items() if k.startswith(RNN_PREFIX)}, prefix=RNN_PREFIX)
  vocab_size, embedding_size = embedding.shape
  hidden_size = lstm['layer_0']['bias'].shape[-1]
  if any(name.endswith('_reverse') for name in lstm) or any(
      'projection_kernel' in layer for layer in lstm.values()):
    raise ValueError('The state dict has a bidirectional or projected nn.LSTM; a LanguageModel '
                     'runs one direction without projection.')
  if decoder_weight.shape != (vocab_size, hidden_size) or decoder_bias.shape != (vocab_size,):
    raise ValueError(
        f'decoder.weight {decoder_weight.shape} and decoder.bias {decoder_bias.shape} must be '
        f'[V, H] = ({vocab_size}, {hidden_size}) and [V] for encoder.weight {embedding.shape} '
        f'and rnn hidden size {hidden_size}.')
  if tie_weights is None:
    tie_weights = decoder_weight.shape == embedding.shape and bool(
        np.array_equal(decoder_weight, embedding))
  model = LanguageModel(vocab_size=vocab_size, embedding_size=embedding_size,
                        hidden_size=hidden_size, num_layers=len(lstm), tie_weights=tie_weights,
                        **model_fields)
  params: dict[str, Any] = {'embed': {'embedding': embedding.copy()}, 'lstm': lstm}
  if tie_weights:
    params['output_bias'] = decoder_bias.copy()
  else:
    params['output'] = {'kernel': decoder_weight.T.copy(), 'bias': decoder_bias.copy()}
  return model, {'params': params}

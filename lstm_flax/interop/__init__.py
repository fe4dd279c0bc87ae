"""Weight conversion: PyTorch ``nn.LSTM``, Flax LSTM cells and Keras ``LSTM`` <-> lstm_flax.

One module per framework, all re-exported here:

  * ``torch_lstm``: ``from_torch_state_dict`` / ``to_torch_state_dict``
    (``nn.LSTM``, stacked, bidirectional, ``proj_size``);
  * ``flax_cells``: ``from_flax_lstm_cell(s)`` / ``to_flax_lstm_cell(s)``
    (``nn.LSTMCell`` / ``nn.OptimizedLSTMCell``, one cell or every cell in a
    model's parameter tree, for swapping in ``lstm_flax.LSTMCell``);
  * ``keras_lstm``: ``from_keras_lstm`` / ``to_keras_lstm`` (single,
    ``Bidirectional`` and stacked ``layers.LSTM``);
  * ``common``: ``to_numpy`` and the checked fused-gate ``[..., 4H]`` <->
    gate-axis ``[..., 4, H]`` layer conversion they share.

Nothing here imports torch or keras: state dicts may hold torch tensors or
numpy arrays, results are numpy arrays, and Keras layers are read through
their public attributes.
"""

from lstm_flax.interop.common import to_numpy
from lstm_flax.interop.flax_cells import (
    from_flax_lstm_cell, from_flax_lstm_cells, to_flax_lstm_cell, to_flax_lstm_cells)
from lstm_flax.interop.keras_lstm import from_keras_lstm, to_keras_lstm
from lstm_flax.interop.torch_lstm import from_torch_state_dict, to_torch_state_dict

__all__ = [
    'from_flax_lstm_cell',
    'from_flax_lstm_cells',
    'from_keras_lstm',
    'from_torch_state_dict',
    'to_flax_lstm_cell',
    'to_flax_lstm_cells',
    'to_keras_lstm',
    'to_numpy',
    'to_torch_state_dict',
]

"""lstm_flax: fast LSTMs for JAX and Flax.

Imports only jax, flax and numpy (never TensorFlow), so any Flax code can use it.

  * ``lstm_flax.kernel``: the functional LSTM (gate-axis weights ``[in, 4,
    H]``, hoisted input projection, custom VJP, padding masks).
  * ``lstm_flax.spec``: ``LSTMSpec``, the one description of a stack (sizes,
    layer names, zero carry) that Linen and NNX share.
  * ``lstm_flax.stack``: multi-layer / bidirectional stacks with dropout.
  * ``lstm_flax.axes``: the logical axis names of every parameter and the
    default mesh rules (model parallelism).
  * ``lstm_flax.LSTM`` / ``lstm_flax.LSTMCell``: Linen modules. ``LSTM``
    carries PyTorch's stacked ``LSTMState(h_n, c_n)``; ``LSTMCell`` is a
    drop-in for Flax's ``nn.OptimizedLSTMCell`` and carries ``(c, h)``.
  * ``lstm_flax.nnx``: the same layer for ``flax.nnx``.
  * ``lstm_flax.interop``: PyTorch ``nn.LSTM``, Flax LSTM cell and Keras
    ``LSTM`` weights.
  * ``lstm_flax.export``: a trained model as a directory (safetensors,
    module arguments, tokenizer, model card) and ``load(directory)`` back;
    ``lstm_flax.torch_lm``: PyTorch word_language_model ``RNNModel`` weights.
  * ``lstm_flax.inference``: generation, translation and classification of
    raw text; ``lstm_flax.tokenizer`` reads the saved tokenizer files.
"""

from lstm_flax.kernel import LSTMState, lstm, lstm_cell, lstm_time_major
from lstm_flax.linen import LSTM, LSTMCell
from lstm_flax.spec import DropoutConfig, LSTMSpec
from lstm_flax.stack import lstm_stack

__all__ = [
    'LSTM',
    'LSTMCell',
    'LSTMState',
    'DropoutConfig',
    'LSTMSpec',
    'lstm',
    'lstm_cell',
    'lstm_stack',
    'lstm_time_major',
]
__version__ = '0.1.0'

"""lstm_flax: fast LSTMs for JAX and Flax.

Imports only jax, flax and numpy (never TensorFlow), so any Flax code can use it.

  * ``lstm_flax.kernel``: the functional LSTM (gate-axis weights ``[in, 4,
    H]``, hoisted input projection, padding masks); its scan
    (``kernel_forward``), hand-written backward pass (``kernel_backward``,
    the custom VJP) and per-backend product forms (``kernel_products``).
  * ``lstm_flax.spec``: ``LSTMSpec``, the one description of a stack (sizes,
    layer names, zero carry) that Linen and NNX share.
  * ``lstm_flax.stack``: multi-layer / bidirectional stacks with dropout.
  * ``lstm_flax.axes``: the logical axis names of every parameter and the
    default mesh rules (model parallelism).
  * ``lstm_flax.LSTM`` / ``lstm_flax.LSTMCell`` (``lstm_flax.linen``): Linen
    modules with plain parameters (``logical_axes=True`` names their axes).
    ``LSTM`` carries PyTorch's stacked ``LSTMState(h_n, c_n)``; ``LSTMCell``
    is a drop-in for Flax's ``nn.OptimizedLSTMCell`` and carries ``(c, h)``.
  * ``lstm_flax.nnx``: the same layer for ``flax.nnx``.
  * ``lstm_flax.models`` / ``lstm_flax.seq2seq``: language model, sequence
    classifier and attention encoder-decoder (``attention``; ``decoding``:
    the encoder-decoder's beam search, greedy decoding and sampling;
    ``sampling``: language-model text generation; ``losses``: softmax
    cross-entropy fused with the output projection).
  * ``lstm_flax.interop``: PyTorch ``nn.LSTM``, Flax LSTM cell and Keras
    ``LSTM`` weights, one module per framework.
  * ``lstm_flax.export``: a trained model as a directory (safetensors,
    module class and arguments, tokenizer, model card) and
    ``load(directory)`` back; ``lstm_flax.torch_lm``: PyTorch
    word_language_model ``RNNModel`` weights.
  * ``lstm_flax.param_paths``: parameter trees as ``'/'``-joined paths.
  * ``lstm_flax.inference``: generation, translation and classification of
    raw text; ``lstm_flax.tokenizer`` reads the saved tokenizer files.
  * ``lstm_flax.feature_models``: ``FeatureSequenceClassifier`` over real-valued
    frames ``[batch, time, features]`` (speech, image rows);
    ``lstm_flax.features``: the audio front end (wav reading, log-mel / MFCC,
    saved ``FeatureSettings``), the audio analogue of the tokenizer.
  * ``lstm_flax.gates``: records i, f, g, o, c, h per step, layer and
    direction of any of these models; ``lstm_flax.gate_stats``: saturation,
    forget-gate means and units ranked by text properties.
  * ``lstm_flax.initializers``, ``lstm_flax.validation``: the default
    initialisers and the field checks with one-line errors.

Every submodule is an attribute of the package (``import lstm_flax;
lstm_flax.nnx.LSTM(...)``). Those that the eager exports below do not need
are imported on first access (PEP 562), so ``import lstm_flax`` stays cheap.
"""

import importlib as _importlib
import importlib.util as _importlib_util
import types as _types
from typing import TYPE_CHECKING as _TYPE_CHECKING

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

# The public submodules reachable as attributes. kernel, linen, spec, stack,
# axes, initializers and validation are imported above anyway (the eager
# exports need them); the others load on first access.
_SUBMODULES = frozenset({
    'attention',
    'axes',
    'decoding',
    'export',
    'feature_models',
    'features',
    'gate_stats',
    'gates',
    'inference',
    'initializers',
    'interop',
    'kernel',
    'linen',
    'losses',
    'models',
    'nnx',
    'param_paths',
    'sampling',
    'seq2seq',
    'spec',
    'stack',
    'tokenizer',
    'torch_lm',
    'validation',
})


if _TYPE_CHECKING:  # Type checkers see the real modules (py.typed).
  from lstm_flax import (  # noqa: F401
      attention, decoding, export, feature_models, features, gate_stats, gates, inference,
      interop, losses, models, nnx, param_paths, sampling, seq2seq, tokenizer, torch_lm)


def __getattr__(name: str) -> _types.ModuleType:
  """Imports the submodule ``lstm_flax.<name>`` on first access (PEP 562)."""
  if name in _SUBMODULES:
    try:
      # Importing sets the package attribute, so this runs once per name.
      return _importlib.import_module(f'{__name__}.{name}')
    except ModuleNotFoundError as e:
      if e.name != f'{__name__}.{name}':
        raise  # the submodule exists but one of its own imports is missing
      raise AttributeError(
          f'module {__name__!r} has no submodule {name!r} in this '
          'installation') from None
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  """The module's names plus every submodule this installation has."""
  present = {name for name in _SUBMODULES
             if _importlib_util.find_spec(f'{__name__}.{name}') is not None}
  return sorted({n for n in globals() if not n.startswith('_')} | present
                | {'__version__', '__all__'})

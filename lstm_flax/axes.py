"""Logical axis names of every parameter in ``lstm_flax``, and their default mesh rules.

Every parameter of the project's models (``lstm_flax.models``,
``lstm_flax.seq2seq``) and of ``lstm_flax.nnx`` is created with logical axis
names (Linen: ``nn.with_logical_partitioning``; NNX: the ``out_sharding``
metadata); the bare Linen ``LSTM`` / ``LSTMCell`` name theirs with
``logical_axes=True`` (plain parameters by default, as Flax's cells). A
trainer maps the names onto a device mesh with rules instead of matching
parameter names::

  boxed = jax.eval_shape(model.init, rng, *inputs)     # nn.LogicallyPartitioned leaves
  axes.check_all_named(boxed)                          # every parameter has names
  specs = nn.get_partition_spec(boxed)                 # logical PartitionSpecs
  shardings = nn.logical_to_mesh_sharding(specs, mesh, axes.DEFAULT_RULES)

=================  ==============================================  ===========
name               axis of                                         default
=================  ==============================================  ===========
``vocab``          embedding rows ``V``; LM/decoder softmax ``V``  ``model``
``embed``          embedding features ``E``                        replicated
``lstm_in``        an LSTM layer's input features                  replicated
``gate``           the gate axis (4: i, f, g, o)                   replicated
``lstm_hidden``    an LSTM layer's hidden units ``H``              ``model``
``lstm_out``       an LSTM layer's output ``h`` size ``P``         replicated
                   (``H`` without a projection)
``attention_in``   input features of an attention projection       replicated
                   (encoder memory, or the decoder query)
``attention_out``  attention key size ``K``                        replicated
``attention_score``  the additive-attention score (size 1)         replicated
``mlp_in``         input features of a dense layer (bridge,        replicated
                   attentional combine, classifier head)
``mlp_out``        output features of such a dense layer           replicated
``classes``        classifier outputs                              replicated
=================  ==============================================  ===========

Parameters:
  * LSTM layer (``lstm_flax.linen``, ``lstm_flax.nnx``, decoder cells):
    ``input_kernel [in, 4, H]`` = (lstm_in, gate, lstm_hidden),
    ``recurrent_kernel [P, 4, H]`` = (lstm_out, gate, lstm_hidden),
    ``bias [4, H]`` = (gate, lstm_hidden),
    ``projection_kernel [H, P]`` = (lstm_hidden, lstm_out).
  * Embeddings ``[V, E]`` = (vocab, embed).
  * ``LanguageModel`` softmax ``kernel [P, V]`` = (lstm_out, vocab), ``bias
    [V]`` and tied ``output_bias [V]`` = (vocab,).
  * ``Seq2Seq``: bridge ``kernel [D*He, L*H]`` = (mlp_in, mlp_out), bias
    (mlp_out,); attention keys ``[M, K]`` and additive query ``[H, K]`` =
    (attention_in, attention_out); additive score ``[K, 1]`` =
    (attention_out, attention_score); combine ``[M+H, H]`` = (mlp_in,
    mlp_out); output ``kernel [H, V]`` = (mlp_out, vocab), bias (vocab,).
  * ``SequenceClassifier`` head ``kernel [F, C]`` = (mlp_in, classes), bias
    (classes,).

With ``lstm_hidden`` over ``model`` each device holds all four gates of its
hidden units, and a recurrent step needs one all-gather of ``h``
(``lstm_flax.kernel``).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
from flax import nnx
from flax.core import meta

VOCAB = 'vocab'
EMBED = 'embed'
LSTM_IN = 'lstm_in'
GATE = 'gate'
LSTM_HIDDEN = 'lstm_hidden'
LSTM_OUT = 'lstm_out'
ATTENTION_IN = 'attention_in'
ATTENTION_OUT = 'attention_out'
ATTENTION_SCORE = 'attention_score'
MLP_IN = 'mlp_in'
MLP_OUT = 'mlp_out'
CLASSES = 'classes'

ALL = (VOCAB, EMBED, LSTM_IN, GATE, LSTM_HIDDEN, LSTM_OUT, ATTENTION_IN,
       ATTENTION_OUT, ATTENTION_SCORE, MLP_IN, MLP_OUT, CLASSES)

# The LSTM layer's parameters.
INPUT_KERNEL = (LSTM_IN, GATE, LSTM_HIDDEN)  # [in, 4, H]
RECURRENT_KERNEL = (LSTM_OUT, GATE, LSTM_HIDDEN)  # [P, 4, H]
BIAS = (GATE, LSTM_HIDDEN)  # [4, H]
PROJECTION_KERNEL = (LSTM_HIDDEN, LSTM_OUT)  # [H, P]
EMBEDDING = (VOCAB, EMBED)  # [V, E]

MODEL_AXIS = 'model'
# (logical name, mesh axis or None) pairs for nn.logical_to_mesh_sharding:
# model parallelism over the hidden units and the vocabulary.
DEFAULT_RULES: tuple[tuple[str, Optional[str]], ...] = tuple(
    (name, MODEL_AXIS if name in (LSTM_HIDDEN, VOCAB) else None) for name in ALL)


def _names_of(leaf: Any) -> Optional[Sequence[Any]]:
  if isinstance(leaf, meta.Partitioned):
    return leaf.names
  if isinstance(leaf, nnx.Variable):
    return leaf.get_metadata('out_sharding', None)
  return None


def _is_box(leaf: Any) -> bool:
  return isinstance(leaf, (meta.Partitioned, nnx.Variable))


def check_all_named(abstract_boxed_variables: Any) -> None:
  """Raises ValueError naming every parameter that has no logical axis names.

  Args:
    abstract_boxed_variables: ``model.init``'s (or ``jax.eval_shape`` of it)
      variables with their ``nn.LogicallyPartitioned`` boxes, or an NNX
      ``nnx.state(model)``. A bare array (no box), a box whose names do not
      match the rank, or a name that is not a string is an error: a trainer
      would otherwise replicate the parameter silently.
  """
  unnamed = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      abstract_boxed_variables, is_leaf=_is_box)[0]:
    names = _names_of(leaf)
    value = leaf.value if isinstance(leaf, meta.Partitioned) else leaf
    if isinstance(leaf, nnx.Variable):
      value = leaf.get_value()
    ndim = len(getattr(value, 'shape', ()))
    if (names is None or len(names) != ndim
        or not all(isinstance(n, str) for n in names)):
      unnamed.append(f'{jax.tree_util.keystr(path)} (shape '
                     f'{tuple(getattr(value, "shape", ()))}, names {names})')
  if unnamed:
    raise ValueError(
        'parameters without logical axis names (one string per dimension): '
        + '; '.join(unnamed))

"""Models on the LSTM layer: ``LanguageModel`` and ``SequenceClassifier``.

Both check their fields on construction (``ValueError`` naming
``Class.field``), so they can be built straight from a config dict, and both
name every parameter's logical axes (``lstm_flax.axes``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_flax import axes, kernel, losses, spec as spec_lib, validation
from lstm_flax.linen import LSTM, dense

Array = jax.Array

POOLING = ('max', 'mean', 'last')


def _uniform(scale: float):
  """Uniform in ``[-scale, scale]``."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


def _init(init_scale: Optional[float], default):
  """``default``, or uniform in ``[-init_scale, init_scale]`` when set."""
  return default if init_scale is None else _uniform(init_scale)


def _lstm_inits(init_scale: Optional[float]) -> dict[str, Any]:
  """LSTM initialisers for ``init_scale`` (none: the LSTM's defaults)."""
  if init_scale is None:
    return {}
  uniform = _uniform(init_scale)
  return dict(kernel_init=uniform, recurrent_kernel_init=uniform, bias_init=uniform)


def _embedding(module: nn.Module, vocab_size: int, embedding_size: int,
               init_scale: Optional[float]) -> Array:
  """Declares ``embed/embedding [V, E]`` (``nn.Embed``'s path and default
  init, logical axes (vocab, embed)) and returns it."""
  init = _init(init_scale, nn.initializers.normal(stddev=1.0))
  return nn.Embed(vocab_size, embedding_size,
                  embedding_init=nn.with_logical_partitioning(init, axes.EMBEDDING),
                  name='embed').embedding


def _lookup(module: nn.Module, embedding: Array, tokens: Array, dropout_rate: float,
            deterministic: bool, dtype: Any) -> Array:
  """``embedding[tokens]`` ``[batch, time, E]``, with whole words dropped
  (rows of the matrix, AWD-LSTM's embedded_dropout) when training."""
  if not deterministic and dropout_rate > 0.0:
    keep = jax.random.bernoulli(module.make_rng('dropout'), 1.0 - dropout_rate,
                                (embedding.shape[0], 1))
    embedding = jnp.where(keep, embedding / (1.0 - dropout_rate), 0.0)
  return jnp.take(embedding, tokens, axis=0).astype(dtype)


def _check_common(module: Any) -> None:
  """Fields that LanguageModel and SequenceClassifier share."""
  owner = type(module).__name__
  for name in ('vocab_size', 'embedding_size', 'hidden_size', 'num_layers'):
    if hasattr(module, name):  # A feature classifier has no vocab_size.
      validation.positive(owner, name, getattr(module, name))
  spec_lib.check_sizes(owner, module.hidden_size, module.num_layers, module.proj_size)
  for name in ('embedding_dropout_rate', 'input_dropout_rate', 'dropout_rate',
               'output_dropout_rate'):
    validation.rate(owner, name, getattr(module, name))
  validation.number(owner, 'forget_bias', module.forget_bias)
  validation.optional_positive_float(owner, 'init_scale', module.init_scale)
  validation.dtype(owner, 'dtype', module.dtype)
  validation.unroll(owner, 'unroll', module.unroll)
  validation.boolean(owner, 'use_custom_vjp', module.use_custom_vjp)


def _keyword(default: Any) -> Any:
  return dataclasses.field(default=default, kw_only=True)


class _TokenLSTM(nn.Module):
  """Keyword-only fields and checks shared by ``LanguageModel`` and
  ``SequenceClassifier`` (see their docstrings); subclasses declare
  ``vocab_size``, ``embedding_size``, ``hidden_size``, ``num_layers`` and
  ``proj_size``."""

  embedding_dropout_rate: float = _keyword(0.0)
  input_dropout_rate: float = _keyword(0.0)
  dropout_rate: float = _keyword(0.0)
  output_dropout_rate: float = _keyword(0.0)
  forget_bias: float = _keyword(0.0)
  init_scale: Optional[float] = _keyword(None)
  dtype: Any = _keyword('float32')
  unroll: Optional[int] = _keyword(None)
  use_custom_vjp: bool = _keyword(True)

  def __post_init__(self):
    super().__post_init__()
    _check_common(self)


class LanguageModel(_TokenLSTM):
  """Embedding -> LSTM stack -> softmax over the vocabulary.

  ``logits, carry = model.apply(variables, tokens, carry)`` with ``tokens
  [batch, time]`` int gives ``logits [batch, time, vocab]`` (float32) and the
  stacked LSTM carry, which the trainer feeds to the next batch for truncated
  BPTT (Zaremba et al. 2014; AWD-LSTM). With ``last_layer_size`` the carry is
  a pair ``(carry of the first L-1 layers, carry of the last layer)``.

  For training, ``loss_sum, carry = model.apply(variables, tokens, carry,
  targets=targets, mask=mask)`` returns the token cross-entropy summed over
  the unmasked positions instead of the logits: the output projection and
  softmax then run fused, with a hand-written backward pass
  (``lstm_flax.losses``): the PTB-small CPU training step is 1.21x faster
  than with logits and optax's cross-entropy (``benchmarks/lm_step_speed.py``).

  Parameters: ``embed/embedding [V, E]``; ``lstm/layer_{l}/...`` (the
  ``LSTM`` layout; with ``last_layer_size``, layers ``0..L-2`` there and the
  last in ``lstm_last/layer_0``); ``output/kernel [P, V]``, ``output/bias
  [V]`` (``nn.Dense``'s), or ``output_bias [V]`` when tied. All carry logical
  axis names (``lstm_flax.axes``).

  Attributes (JSON-able; checked on construction; those from
  ``embedding_dropout_rate`` on are keyword-only):
    vocab_size: ``V``.
    embedding_size: ``E``.
    hidden_size: ``H`` of every LSTM layer.
    num_layers: LSTM layers.
    proj_size: optional LSTMP projection ``P`` of each layer's output (None).
    last_layer_size: if set, the last layer has this many units (and no
      projection) instead of ``H``: AWD-LSTM's 1150-1150-400 stack, whose
      bounded last-layer outputs feed a tied embedding. An LSTMP output is
      unbounded, and a tied LSTMP model at AWD-LSTM's learning rate 30
      diverges.
    tie_weights: share the embedding matrix with the output projection
      (Press & Wolf 2017; Inan et al. 2017). Needs ``P`` (or ``H``) ``== E``.
    embedding_dropout_rate: drops whole words (rows of the embedding matrix,
      AWD-LSTM's embedding dropout).
    input_dropout_rate: dropout on the embedded inputs.
    dropout_rate: dropout between LSTM layers.
    output_dropout_rate: dropout on the last LSTM layer's outputs.
    weight_dropout_rate: DropConnect on the recurrent kernels.
    variational_dropout: one dropout mask per sequence (locked dropout).
    forget_bias: initial forget-gate bias.
    init_scale: if set, every parameter is initialised uniform in
      ``[-init_scale, init_scale]`` (Zaremba et al.: 0.1 / 0.05 / 0.04);
      else Flax's default initialisers.
    dtype: compute dtype, a name (``'float32'``, ``'bfloat16'``,
      ``'float16'``) or a jnp dtype.
    unroll: ``lax.scan`` unroll factor (None: 1 on CPU, 8 on GPU/TPU).
    use_custom_vjp: the LSTM's hand-written backward pass.
  """

  vocab_size: int
  embedding_size: int
  hidden_size: int
  num_layers: int = 2
  proj_size: Optional[int] = None
  last_layer_size: Optional[int] = None
  tie_weights: bool = False
  weight_dropout_rate: float = 0.0
  variational_dropout: bool = False

  def __post_init__(self):
    super().__post_init__()
    owner = type(self).__name__
    validation.optional_positive(owner, 'last_layer_size', self.last_layer_size)
    validation.rate(owner, 'weight_dropout_rate', self.weight_dropout_rate)
    validation.boolean(owner, 'tie_weights', self.tie_weights)
    validation.boolean(owner, 'variational_dropout', self.variational_dropout)
    if self.tie_weights and self.output_features != self.embedding_size:
      raise ValueError(
          f'{owner}.tie_weights needs the LSTM output size (last_layer_size, proj_size '
          f'or hidden_size = {self.output_features}) to equal {owner}.embedding_size '
          f'({self.embedding_size}); got tie_weights=True.')

  @property
  def output_features(self) -> int:
    return self.last_layer_size or self.proj_size or self.hidden_size

  @nn.nowrap
  def _lstms(self) -> list[LSTM]:
    """The LSTM module(s), unbound: ``[lstm]`` or, with ``last_layer_size``
    and ``num_layers > 1``, ``[lstm (L-1 layers), lstm_last]``."""
    common = dict(
        weight_dropout_rate=self.weight_dropout_rate,
        variational_dropout=self.variational_dropout,
        forget_bias=self.forget_bias,
        dtype=self.dtype,
        unroll=self.unroll,
        use_custom_vjp=self.use_custom_vjp,
        logical_axes=True,
        parent=None,
        **_lstm_inits(self.init_scale),
    )
    if not (self.last_layer_size and self.num_layers > 1):
      return [LSTM(
          self.last_layer_size or self.hidden_size,
          num_layers=self.num_layers,
          proj_size=None if self.last_layer_size else self.proj_size,
          dropout_rate=self.dropout_rate,
          input_dropout_rate=self.input_dropout_rate,
          output_dropout_rate=self.output_dropout_rate,
          name='lstm',
          **common,
      )]
    return [
        LSTM(self.hidden_size, num_layers=self.num_layers - 1, proj_size=self.proj_size,
             dropout_rate=self.dropout_rate, input_dropout_rate=self.input_dropout_rate,
             output_dropout_rate=self.dropout_rate,  # Between the two stacks.
             name='lstm', **common),
        LSTM(self.last_layer_size, num_layers=1,
             output_dropout_rate=self.output_dropout_rate, name='lstm_last', **common),
    ]

  export_kind: ClassVar[str] = 'language_model'  # lstm_flax.export's name for this kind

  @nn.nowrap
  def dummy_inputs(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of ``init`` for one token (export's shape check)."""
    return (jnp.zeros((1, 1), jnp.int32),), {}

  @nn.compact
  def __call__(
      self,
      tokens: Array,  # [batch, time] int
      initial_carry: Optional[Any] = None,  # See initialize_carry.
      *,
      lengths: Optional[Array] = None,  # [batch]
      mask: Optional[Array] = None,  # [batch, time]
      deterministic: bool = True,
      targets: Optional[Array] = None,  # [batch, time] int
  ) -> tuple[Array, Any]:  # ([batch, time, vocab] float32 or [] loss, carry)
    if tokens.ndim != 2:
      raise ValueError(f'tokens must be [batch, time]; got shape {tokens.shape}.')
    dtype = validation.dtype('LanguageModel', 'dtype', self.dtype)
    embedding = _embedding(self, self.vocab_size, self.embedding_size, self.init_scale)
    y = _lookup(self, embedding, tokens, self.embedding_dropout_rate, deterministic,
                dtype)  # [batch, time, E]
    lstms = self._lstms()
    carries = [initial_carry] if len(lstms) == 1 else list(initial_carry or (None, None))
    for index, lstm in enumerate(lstms):
      y, carries[index] = lstm.clone(parent=self)(  # [batch, time, features]
          y, carries[index], lengths=lengths, mask=mask, deterministic=deterministic)
    carry = carries[0] if len(lstms) == 1 else tuple(carries)
    # The output layer as one [batch*time, F] x [F, V] product: XLA:CPU runs
    # it (and its two backward products) markedly faster than the same
    # contraction over [batch, time, F].
    batch, time = y.shape[:2]
    y = y.reshape(batch * time, y.shape[-1]).astype(dtype)  # [batch*time, F]
    if self.tie_weights:
      out_kernel = embedding.T  # [F, V]
      out_bias = self.param(
          'output_bias',
          nn.with_logical_partitioning(nn.initializers.zeros_init(), (axes.VOCAB,)),
          (self.vocab_size,))
    else:
      out_kernel, out_bias = OutputParams(  # nn.Dense's names, shapes, inits.
          self.vocab_size,
          kernel_init=_init(self.init_scale, nn.initializers.lecun_normal()),
          bias_init=_init(self.init_scale, nn.initializers.zeros_init()),
          name='output',
      )(y.shape[-1])
    if targets is not None:
      if targets.shape != tokens.shape:
        raise ValueError(f'targets must be [batch, time] = {tokens.shape}; got {targets.shape}.')
      valid = kernel.time_major_mask(tokens.shape, lengths, mask, time_major=False)
      weights = None if valid is None else valid.T.reshape(-1).astype(jnp.float32)
      loss_sum = losses.dense_softmax_cross_entropy(
          y, out_kernel, out_bias, targets.reshape(-1), weights)
      return loss_sum, carry
    acc = losses.accumulation_dtype(dtype)
    logits = jnp.dot(y, out_kernel.astype(dtype), preferred_element_type=acc)
    logits = logits + out_bias.astype(acc)  # [batch*time, V]
    return logits.reshape(batch, time, self.vocab_size), carry

  @nn.nowrap
  def initialize_carry(self, batch_size: int) -> Any:
    """Zero carry ``(h [L, batch, P], c [L, batch, H])`` (a pair of them, for
    the first L-1 layers and the last, with ``last_layer_size``)."""
    carries = tuple(lstm.spec.zero_carry(batch_size) for lstm in self._lstms())
    return carries[0] if len(carries) == 1 else carries


class OutputParams(nn.Module):
  """The output layer's ``kernel [F, V]`` and ``bias [V]``, named and
  initialised as ``nn.Dense(V)``'s (checkpoints are interchangeable), with
  logical axes (lstm_out, vocab) and (vocab,)."""

  features: int
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, in_features: int) -> tuple[Array, Array]:
    kernel_ = self.param(
        'kernel', nn.with_logical_partitioning(self.kernel_init, (axes.LSTM_OUT, axes.VOCAB)),
        (in_features, self.features))
    bias = self.param('bias', nn.with_logical_partitioning(self.bias_init, (axes.VOCAB,)),
                      (self.features,))
    return kernel_, bias


def reverse_padded(x: Array, lengths: Array) -> Array:
  """Reverses each row's valid part: ``x [batch, time, ...]``, ``lengths
  [batch]``; padded steps stay where they are (an involution)."""
  t = jnp.arange(x.shape[1])[None, :]  # [1, time]
  index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [batch, time]
  index = index.reshape(index.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, index, axis=1)


class SequenceClassifier(_TokenLSTM):
  """Embedding -> LSTM stack(s) -> pooling over time -> dense -> class logits.

  ``logits = model.apply(variables, tokens, lengths, deterministic=True)``
  with ``tokens [batch, time]`` int (right-padded) and ``lengths [batch]``
  gives ``logits [batch, num_classes]`` float32. Padding never reaches the
  pooled features: ``'max'`` and ``'mean'`` pool over each row's valid steps,
  ``'last'`` concatenates each direction's final valid state (the forward
  stack's at ``lengths - 1``, the backward stack's at step 0), and a row of
  length 0 pools to zeros.

  A bidirectional classifier runs two independent stacks, ELMo-style: the
  forward stack reads the sequence, the backward stack reads each valid part
  reversed, and the top layers' outputs are concatenated. So every forward
  layer has the shapes of a unidirectional ``LanguageModel``'s layer.

  Shared parameter paths (for transfer learning; same paths and shapes as a
  ``LanguageModel`` with the same ``vocab_size``, ``embedding_size``,
  ``hidden_size``, ``num_layers``, ``proj_size`` and no ``last_layer_size``)::

    embed/embedding          [V, E]       LanguageModel's embed/embedding
    lstm/layer_{l}/...       forward      LanguageModel's lstm/layer_{l}/...
    lstm_reverse/layer_{l}/  backward     (a backward LanguageModel's lstm/...)
    head/kernel [D*P, C], head/bias [C]   the classifier's own

  so ``params['lstm'] = lm_params['lstm']`` (and ``params['embed']``)
  transfers a trained language model.

  Attributes (JSON-able; checked on construction):
    vocab_size, num_classes, embedding_size, hidden_size, num_layers,
    proj_size: sizes (``proj_size`` None: no projection).
    (``embedding_dropout_rate`` and the following fields of
    ``LanguageModel`` are keyword-only.)
    bidirectional: add the backward stack (default True).
    pooling: ``'max'``, ``'mean'`` or ``'last'``.
    embedding_dropout_rate: whole-word dropout (as ``LanguageModel``).
    input_dropout_rate: dropout on the embedded inputs.
    dropout_rate: dropout between LSTM layers.
    output_dropout_rate: dropout on the pooled features, before the head.
    forget_bias, init_scale, dtype, unroll, use_custom_vjp: as
      ``LanguageModel``.
  """

  vocab_size: int
  num_classes: int
  embedding_size: int
  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = True
  proj_size: Optional[int] = None
  pooling: str = 'max'

  def __post_init__(self):
    super().__post_init__()
    owner = type(self).__name__
    validation.positive(owner, 'num_classes', self.num_classes)
    validation.boolean(owner, 'bidirectional', self.bidirectional)
    validation.choice(owner, 'pooling', self.pooling, POOLING)

  export_kind: ClassVar[str] = 'classifier'  # lstm_flax.export's name for this kind

  @nn.nowrap
  def dummy_inputs(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of ``init`` for one token (export's shape check)."""
    return (jnp.zeros((1, 1), jnp.int32), jnp.ones((1,), jnp.int32)), {
        'deterministic': True}

  @nn.compact
  def __call__(
      self,
      tokens: Array,  # [batch, time] int
      lengths: Array,  # [batch] int
      *,
      deterministic: bool,
  ) -> Array:  # [batch, num_classes] float32
    if tokens.ndim != 2:
      raise ValueError(f'tokens must be [batch, time]; got shape {tokens.shape}.')
    if lengths.shape != tokens.shape[:1]:
      raise ValueError(f'lengths must be [batch] = {tokens.shape[:1]}; got {lengths.shape}.')
    dtype = validation.dtype('SequenceClassifier', 'dtype', self.dtype)
    embedding = _embedding(self, self.vocab_size, self.embedding_size, self.init_scale)
    x = _lookup(self, embedding, tokens, self.embedding_dropout_rate, deterministic, dtype)
    x = nn.Dropout(self.input_dropout_rate)(x, deterministic=deterministic)
    return lstm_pool_head(self, x, lengths, deterministic=deterministic)


def lstm_pool_head(module: nn.Module, x: Array, lengths: Array, *,
                   deterministic: bool) -> Array:
  """The classifiers' shared top: the (bi)LSTM stack(s), pooling over time
  and the ``head`` layer. Called inside ``module``'s compact ``__call__``
  (it declares ``lstm``, ``lstm_reverse`` and ``head`` there).

  ``x [batch, time, E]`` (right-padded, in the compute dtype), ``lengths
  [batch]`` -> logits ``[batch, num_classes]`` float32. ``module`` has
  ``SequenceClassifier``'s LSTM, pooling and head fields.
  """
  dtype = validation.dtype(type(module).__name__, 'dtype', module.dtype)
  lstm = dict(hidden_size=module.hidden_size, num_layers=module.num_layers,
              proj_size=module.proj_size, dropout_rate=module.dropout_rate,
              forget_bias=module.forget_bias, dtype=module.dtype, unroll=module.unroll,
              use_custom_vjp=module.use_custom_vjp, logical_axes=True,
              **_lstm_inits(module.init_scale))
  run = dict(lengths=lengths, deterministic=deterministic)
  y, carry = LSTM(name='lstm', **lstm)(x, **run)  # [batch, time, P]
  features, finals = [y], [carry.h[-1]]
  if module.bidirectional:
    y_rev, carry_rev = LSTM(name='lstm_reverse', **lstm)(reverse_padded(x, lengths), **run)
    features.append(reverse_padded(y_rev, lengths))
    finals.append(carry_rev.h[-1])
  y = jnp.concatenate(features, -1).astype(jnp.float32)  # [batch, time, D*P]
  valid = kernel.lengths_to_mask(lengths, x.shape[1]).T[..., None]  # [batch, time, 1]
  nonempty = (lengths > 0)[:, None]  # [batch, 1]
  if module.pooling == 'max':
    pooled = jnp.max(jnp.where(valid, y, -jnp.inf), axis=1)
    pooled = jnp.where(nonempty, pooled, 0.0)
  elif module.pooling == 'mean':
    pooled = jnp.sum(jnp.where(valid, y, 0.0), axis=1) / jnp.maximum(lengths, 1)[:, None]
  else:  # 'last': the final carries hold each row's last valid state.
    pooled = jnp.concatenate(finals, -1).astype(jnp.float32)  # [batch, D*P]
  pooled = nn.Dropout(module.output_dropout_rate)(pooled, deterministic=deterministic)
  logits = dense(
      module.num_classes, (axes.MLP_IN, axes.CLASSES), dtype=dtype,
      kernel_init=_init(module.init_scale, nn.initializers.lecun_normal()),
      bias_init=_init(module.init_scale, nn.initializers.zeros_init()), name='head',
  )(pooled.astype(dtype))
  return logits.astype(jnp.float32)

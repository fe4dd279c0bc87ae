"""``FeatureSequenceClassifier``: classification of real-valued frame
sequences (speech features, image rows), sibling of
``lstm_flax.models.SequenceClassifier``."""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_flax import axes, models, validation
from lstm_flax.linen import dense

Array = jax.Array


class FeatureSequenceClassifier(models._TokenLSTM):  # pylint: disable=protected-access
  """Dense input projection (optional layer norm) -> LSTM stack(s) ->
  pooling over time -> dense -> class logits.

  ``logits = model.apply(variables, features, lengths, deterministic=True)``
  with ``features [batch, time, num_features]`` float (right-padded) and
  ``lengths [batch]`` int gives ``logits [batch, num_classes]`` float32.
  Everything after the projection is ``SequenceClassifier``'s
  (``models.lstm_pool_head``): padding never reaches the pooled features, a
  bidirectional model runs a second stack on each row's reversed valid part.

  Parameters (logical axes in ``lstm_flax.axes``)::

    input/kernel [F, E] (mlp_in, embed), input/bias [E] (embed,)
    input_norm/scale [E], input_norm/bias [E] (embed,)   with layer_norm
    lstm/layer_{l}/..., lstm_reverse/layer_{l}/...       the LSTM layout
    head/kernel [D*P, C] (mlp_in, classes), head/bias [C]

  Attributes (JSON-able; checked on construction):
    num_features: ``F`` per frame.
    num_classes: ``C``.
    embedding_size: ``E``, the projection's width (the LSTM input).
    hidden_size, num_layers, proj_size, bidirectional, pooling: as
      ``SequenceClassifier``.
    layer_norm: layer-normalise the projected frames.
    (keyword-only) input_dropout_rate: dropout on the projected frames;
      dropout_rate, output_dropout_rate, forget_bias, init_scale, dtype,
      unroll, use_custom_vjp: as ``SequenceClassifier`` (``embedding_dropout_rate``
      is unused: there is no embedding).
  """

  num_features: int
  num_classes: int
  embedding_size: int
  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = True
  proj_size: Optional[int] = None
  pooling: str = 'mean'
  layer_norm: bool = False

  def __post_init__(self):
    super().__post_init__()
    owner = type(self).__name__
    validation.positive(owner, 'num_features', self.num_features)
    validation.positive(owner, 'num_classes', self.num_classes)
    validation.boolean(owner, 'bidirectional', self.bidirectional)
    validation.boolean(owner, 'layer_norm', self.layer_norm)
    validation.choice(owner, 'pooling', self.pooling, models.POOLING)

  @nn.compact
  def __call__(
      self,
      features: Array,  # [batch, time, num_features] float
      lengths: Array,  # [batch] int
      *,
      deterministic: bool,
  ) -> Array:  # [batch, num_classes] float32
    if features.ndim != 3 or features.shape[-1] != self.num_features:
      raise ValueError(f'features must be [batch, time, {self.num_features}]; got shape '
                       f'{features.shape}.')
    if lengths.shape != features.shape[:1]:
      raise ValueError(f'lengths must be [batch] = {features.shape[:1]}; got {lengths.shape}.')
    dtype = validation.dtype(type(self).__name__, 'dtype', self.dtype)
    init = models._init  # pylint: disable=protected-access
    x = dense(self.embedding_size, (axes.MLP_IN, axes.EMBED), dtype=dtype,
              kernel_init=init(self.init_scale, nn.initializers.lecun_normal()),
              bias_init=init(self.init_scale, nn.initializers.zeros_init()),
              name='input')(features.astype(dtype))  # [batch, time, E]
    if self.layer_norm:
      x = nn.LayerNorm(
          dtype=dtype, name='input_norm',
          scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (axes.EMBED,)),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axes.EMBED,)),
      )(x)
    x = nn.Dropout(self.input_dropout_rate)(x, deterministic=deterministic)
    return models.lstm_pool_head(self, x, lengths, deterministic=deterministic)

  export_kind: ClassVar[str] = 'feature_classifier'  # lstm_flax.export's name for this kind

  @nn.nowrap
  def dummy_inputs(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of ``init`` for one frame (export's shape check):
    ``features [1, 1, F]`` float32, ``lengths [1]`` int32."""
    return ((jnp.zeros((1, 1, self.num_features), jnp.float32),
             jnp.ones((1,), jnp.int32)), {'deterministic': True})

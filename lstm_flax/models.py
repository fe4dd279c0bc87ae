"""Models on the LSTM layer: ``LanguageModel``."""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_flax import kernel
from lstm_flax.linen import LSTM

Array = jax.Array


class LanguageModel(nn.Module):
  """Embedding -> LSTM stack -> softmax over the vocabulary.

  ``logits, carry = model.apply(variables, tokens, carry)`` with ``tokens
  [batch, time]`` int gives ``logits [batch, time, vocab]`` (float32) and the
  stacked LSTM carry, which the trainer feeds to the next batch for truncated
  BPTT (Zaremba et al. 2014; AWD-LSTM).

  Attributes:
    vocab_size: ``V``.
    embedding_size: ``E``.
    hidden_size: ``H`` of every LSTM layer.
    num_layers: LSTM layers.
    proj_size: optional LSTMP projection ``P`` of each layer's output.
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
    dtype: compute dtype.
    unroll: ``lax.scan`` unroll factor (None: 1 on CPU, 8 on GPU/TPU).
    use_custom_vjp: the LSTM's hand-written backward pass.
  """

  vocab_size: int
  embedding_size: int
  hidden_size: int
  num_layers: int = 2
  proj_size: Optional[int] = None
  tie_weights: bool = False
  embedding_dropout_rate: float = 0.0
  input_dropout_rate: float = 0.0
  dropout_rate: float = 0.0
  output_dropout_rate: float = 0.0
  weight_dropout_rate: float = 0.0
  variational_dropout: bool = False
  forget_bias: float = 0.0
  init_scale: Optional[float] = None
  dtype: Any = jnp.float32
  unroll: Optional[int] = None
  use_custom_vjp: bool = True

  @property
  def output_features(self) -> int:
    return self.proj_size or self.hidden_size

  def _init(self, default):
    if self.init_scale is None:
      return default
    return _uniform(self.init_scale)

  @nn.compact
  def __call__(
      self,
      tokens: Array,  # [batch, time] int
      initial_carry: Optional[kernel.LSTMState] = None,
      *,
      lengths: Optional[Array] = None,  # [batch]
      mask: Optional[Array] = None,  # [batch, time]
      deterministic: bool = True,
  ) -> tuple[Array, kernel.LSTMState]:  # ([batch, time, vocab] float32, carry)
    for name in ('vocab_size', 'embedding_size', 'hidden_size', 'num_layers'):
      if getattr(self, name) <= 0:
        raise ValueError(f'LanguageModel.{name} must be positive; got {getattr(self, name)}.')
    if self.tie_weights and self.output_features != self.embedding_size:
      raise ValueError(
          'tie_weights needs the LSTM output size (proj_size or hidden_size = '
          f'{self.output_features}) to equal embedding_size ({self.embedding_size}).'
      )
    if tokens.ndim != 2:
      raise ValueError(f'tokens must be [batch, time]; got shape {tokens.shape}.')
    embed = nn.Embed(
        self.vocab_size,
        self.embedding_size,
        embedding_init=self._init(nn.initializers.normal(stddev=1.0)),
        name='embed',
    )
    embedding = embed.embedding  # [V, E]
    if not deterministic and self.embedding_dropout_rate > 0.0:
      keep = jax.random.bernoulli(
          self.make_rng('dropout'), 1.0 - self.embedding_dropout_rate, (self.vocab_size, 1)
      )
      embedding = jnp.where(keep, embedding / (1.0 - self.embedding_dropout_rate), 0.0)
    x = jnp.take(embedding, tokens, axis=0).astype(self.dtype)  # [batch, time, E]
    lstm_kw = {}
    if self.init_scale is not None:
      lstm_kw = dict(kernel_init=self._init(None), recurrent_kernel_init=self._init(None))
    y, carry = LSTM(
        self.hidden_size,
        num_layers=self.num_layers,
        proj_size=self.proj_size,
        dropout_rate=self.dropout_rate,
        input_dropout_rate=self.input_dropout_rate,
        output_dropout_rate=self.output_dropout_rate,
        weight_dropout_rate=self.weight_dropout_rate,
        variational_dropout=self.variational_dropout,
        forget_bias=self.forget_bias,
        dtype=self.dtype,
        unroll=self.unroll,
        use_custom_vjp=self.use_custom_vjp,
        name='lstm',
        **lstm_kw,
    )(x, initial_carry, lengths=lengths, mask=mask, deterministic=deterministic)
    if self.tie_weights:
      bias = self.param('output_bias', nn.initializers.zeros_init(), (self.vocab_size,))
      logits = jnp.dot(y, embedding.T.astype(self.dtype), preferred_element_type=jnp.float32)
      logits = logits + bias
    else:
      logits = nn.Dense(
          self.vocab_size,
          dtype=self.dtype,
          kernel_init=self._init(nn.initializers.lecun_normal()),
          bias_init=self._init(nn.initializers.zeros_init()),
          name='output',
      )(y)
    return logits.astype(jnp.float32), carry

  @nn.nowrap
  def initialize_carry(self, batch_size: int) -> kernel.LSTMState:
    """Zero carry ``(h [L, batch, P], c [L, batch, H])``."""
    return kernel.LSTMState(
        h=jnp.zeros((self.num_layers, batch_size, self.output_features), jnp.float32),
        c=jnp.zeros((self.num_layers, batch_size, self.hidden_size), jnp.float32),
    )


def _uniform(scale: float):
  """Uniform in ``[-scale, scale]``."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


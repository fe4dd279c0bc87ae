"""Models on the LSTM layer: ``LanguageModel``."""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_flax import kernel, losses
from lstm_flax.linen import LSTM

Array = jax.Array


class LanguageModel(nn.Module):
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

  Attributes:
    vocab_size: ``V``.
    embedding_size: ``E``.
    hidden_size: ``H`` of every LSTM layer.
    num_layers: LSTM layers.
    proj_size: optional LSTMP projection ``P`` of each layer's output.
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
    dtype: compute dtype.
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
    return self.last_layer_size or self.proj_size or self.hidden_size

  @property
  def _split_last_layer(self) -> bool:
    return bool(self.last_layer_size) and self.num_layers > 1

  def _init(self, default):
    if self.init_scale is None:
      return default
    return _uniform(self.init_scale)

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
    input_embedding = embedding
    if not deterministic and self.embedding_dropout_rate > 0.0:
      # Whole words dropped from the input lookup only (AWD-LSTM's
      # embedded_dropout); a tied output layer sees every word.
      keep = jax.random.bernoulli(
          self.make_rng('dropout'), 1.0 - self.embedding_dropout_rate, (self.vocab_size, 1)
      )
      input_embedding = jnp.where(keep, embedding / (1.0 - self.embedding_dropout_rate), 0.0)
    x = jnp.take(input_embedding, tokens, axis=0).astype(self.dtype)  # [batch, time, E]
    lstm_kw = {}
    if self.init_scale is not None:
      lstm_kw = dict(kernel_init=self._init(None), recurrent_kernel_init=self._init(None),
                     bias_init=self._init(None))
    common = dict(
        weight_dropout_rate=self.weight_dropout_rate,
        variational_dropout=self.variational_dropout,
        forget_bias=self.forget_bias,
        dtype=self.dtype,
        unroll=self.unroll,
        use_custom_vjp=self.use_custom_vjp,
        **lstm_kw,
    )
    run = dict(lengths=lengths, mask=mask, deterministic=deterministic)
    if not self._split_last_layer:
      y, carry = LSTM(
          self.last_layer_size or self.hidden_size,
          num_layers=self.num_layers,
          proj_size=None if self.last_layer_size else self.proj_size,
          dropout_rate=self.dropout_rate,
          input_dropout_rate=self.input_dropout_rate,
          output_dropout_rate=self.output_dropout_rate,
          name='lstm',
          **common,
      )(x, initial_carry, **run)
    else:
      lower_carry, last_carry = initial_carry or (None, None)
      h, lower_carry = LSTM(  # [batch, time, P or H]
          self.hidden_size,
          num_layers=self.num_layers - 1,
          proj_size=self.proj_size,
          dropout_rate=self.dropout_rate,
          input_dropout_rate=self.input_dropout_rate,
          output_dropout_rate=self.dropout_rate,  # Between the two stacks.
          name='lstm',
          **common,
      )(x, lower_carry, **run)
      y, last_carry = LSTM(  # [batch, time, last_layer_size]
          self.last_layer_size,
          num_layers=1,
          output_dropout_rate=self.output_dropout_rate,
          name='lstm_last',
          **common,
      )(h, last_carry, **run)
      carry = (lower_carry, last_carry)
    # The output layer as one [batch*time, F] x [F, V] product: XLA:CPU runs
    # it (and its two backward products) markedly faster than the same
    # contraction over [batch, time, F].
    batch, time = y.shape[:2]
    y = y.reshape(batch * time, y.shape[-1]).astype(self.dtype)  # [batch*time, F]
    if self.tie_weights:
      out_kernel = embedding.T  # [F, V]
      out_bias = self.param('output_bias', nn.initializers.zeros_init(), (self.vocab_size,))
    else:
      out_kernel, out_bias = OutputParams(  # nn.Dense's names, shapes, inits.
          self.vocab_size,
          kernel_init=self._init(nn.initializers.lecun_normal()),
          bias_init=self._init(nn.initializers.zeros_init()),
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
    acc = losses.accumulation_dtype(self.dtype)
    logits = jnp.dot(y, out_kernel.astype(self.dtype), preferred_element_type=acc)
    logits = logits + out_bias.astype(acc)  # [batch*time, V]
    return logits.reshape(batch, time, self.vocab_size), carry

  @nn.nowrap
  def initialize_carry(self, batch_size: int) -> Any:
    """Zero carry ``(h [L, batch, P], c [L, batch, H])`` (a pair of them, for
    the first L-1 layers and the last, with ``last_layer_size``)."""

    def zeros(layers, features, hidden):
      return kernel.LSTMState(
          h=jnp.zeros((layers, batch_size, features), jnp.float32),
          c=jnp.zeros((layers, batch_size, hidden), jnp.float32),
      )

    if not self._split_last_layer:
      hidden = self.last_layer_size or self.hidden_size
      return zeros(self.num_layers, self.output_features, hidden)
    return (zeros(self.num_layers - 1, self.proj_size or self.hidden_size, self.hidden_size),
            zeros(1, self.last_layer_size, self.last_layer_size))


class OutputParams(nn.Module):
  """The output layer's ``kernel [F, V]`` and ``bias [V]``, named and
  initialised as ``nn.Dense(V)``'s (checkpoints are interchangeable)."""

  features: int
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, in_features: int) -> tuple[Array, Array]:
    kernel_ = self.param('kernel', self.kernel_init, (in_features, self.features))
    bias = self.param('bias', self.bias_init, (self.features,))
    return kernel_, bias


def _uniform(scale: float):
  """Uniform in ``[-scale, scale]``."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


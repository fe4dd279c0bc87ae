"""Attention encoder-decoder (Luong et al. 2015; Bahdanau et al. 2015) on the LSTM layer.

* Encoder: embedding -> (bidirectional) multi-layer ``LSTM`` with source
  lengths from the padding mask.
* Bridge: the top encoder layer's final ``h`` and ``c`` (both directions)
  initialise every decoder layer through a dense layer.
* Decoder: per step, ``[embedding(y_{t-1}); attentional_{t-1}]`` (input
  feeding) -> LSTM cells -> attention over the encoder outputs ->
  ``attentional_t = tanh(W_c [context; h_top])`` -> logits.

``Seq2Seq.__call__`` runs the decoder with teacher forcing (one ``nn.scan``);
``encode`` + ``decode_step`` give the same computation one token at a time
for beam search and sampling (``lstm_flax.decoding``), reusing the encoder
states.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_flax import attention as attention_lib
from lstm_flax import axes, kernel, validation
from lstm_flax.linen import LSTM, LayerParams, dense

Array = jax.Array


class EncoderOutput(NamedTuple):
  """Encoder states the decoder attends to (computed once per source).

  Attributes:
    memory: ``[batch, S, M]`` top encoder layer outputs (``M = D * He``).
    keys: ``[batch, S, K]`` attention keys of ``memory``.
    mask: ``[batch, S]`` bool, true at real source positions.
  """

  memory: Array
  keys: Array
  mask: Array


class DecoderState(NamedTuple):
  """Decoder carry.

  Attributes:
    h: ``[batch, layers, H]`` (batch-major, so that decoding can gather
      beams on the leading axis of every state leaf).
    c: ``[batch, layers, H]``.
    feed: ``[batch, H]``, the previous attentional state (input feeding).
  """

  h: Array
  c: Array
  feed: Array


class DecoderStep(nn.Module):
  """One decoder step: LSTM cells, attention, attentional state."""

  hidden_size: int
  num_layers: int
  attention: str
  input_feeding: bool
  dropout_rate: float
  dtype: Any

  @nn.compact
  def __call__(
      self,
      state: DecoderState,
      embedded: Array,  # [batch, E]
      encoded: EncoderOutput,
      deterministic: bool,
  ) -> tuple[DecoderState, Array]:  # (state, attentional [batch, H])
    x = jnp.concatenate([embedded, state.feed.astype(embedded.dtype)], -1) if (
        self.input_feeding) else embedded
    hs, cs = [], []
    for layer in range(self.num_layers):
      params = LayerParams(self.hidden_size, logical_axes=True,
                           name=f'layer_{layer}')(x.shape[-1])
      carry, x = kernel.lstm_cell(
          params, kernel.LSTMState(state.h[:, layer], state.c[:, layer]), x, self.dtype
      )
      hs.append(carry.h)
      cs.append(carry.c)
      if layer < self.num_layers - 1:
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    context, _ = attention_lib.Attention(self.attention, self.dtype, name='attention')(
        x, encoded.keys, encoded.memory, encoded.mask
    )
    attentional = jnp.tanh(
        dense(self.hidden_size, (axes.MLP_IN, axes.MLP_OUT), use_bias=False,
              dtype=self.dtype, name='combine')(
            jnp.concatenate([context.astype(x.dtype), x], -1)
        )
    )
    new_state = DecoderState(jnp.stack(hs, 1), jnp.stack(cs, 1), attentional.astype(jnp.float32))
    attentional = nn.Dropout(self.dropout_rate)(attentional, deterministic=deterministic)
    return new_state, attentional


class Seq2Seq(nn.Module):
  """LSTM encoder-decoder with attention for translation.

  Parameters (all with logical axis names, ``lstm_flax.axes``):
  ``source_embed/embedding`` and ``target_embed/embedding [V, E]`` (one when
  shared), ``encoder/layer_{l}[_reverse]/...`` (the ``LSTM`` layout),
  ``bridge_h``/``bridge_c`` (``nn.Dense``), ``attention_key/kernel``,
  ``decoder/layer_{l}/...`` (LSTM cells), ``decoder/attention/{query,score}``
  (additive), ``decoder/combine/kernel`` and ``output/{kernel,bias}``.

  Attributes (JSON-able; checked on construction):
    source_vocab_size: source vocabulary size.
    target_vocab_size: target vocabulary size.
    embedding_size: ``E``.
    hidden_size: decoder hidden size ``H``.
    encoder_hidden_size: encoder hidden size per direction (default ``H``).
    encoder_layers: encoder LSTM layers.
    decoder_layers: decoder LSTM layers.
    bidirectional_encoder: a bidirectional encoder (outputs ``2 He``).
    attention: ``'dot'``, ``'general'`` (Luong) or ``'additive'`` (Bahdanau).
    attention_size: key size of additive attention (default ``H``).
    input_feeding: feed the previous attentional state to the decoder (Luong).
    share_embeddings: one embedding for source and target (joint vocabulary).
    tie_output: use the target embedding as the output projection (needs
      ``E == H``).
    dropout_rate: dropout on embeddings, between layers and on the
      attentional state.
    dtype: compute dtype, a name (``'float32'``, ``'bfloat16'``,
      ``'float16'``) or a jnp dtype.
    unroll: ``lax.scan`` unroll of the encoder and the teacher-forced decoder
      (None: the backend default).
  """

  source_vocab_size: int
  target_vocab_size: int
  embedding_size: int = 256
  hidden_size: int = 256
  encoder_hidden_size: Optional[int] = None
  encoder_layers: int = 2
  decoder_layers: int = 2
  bidirectional_encoder: bool = True
  attention: str = 'general'
  attention_size: Optional[int] = None
  input_feeding: bool = True
  share_embeddings: bool = False
  tie_output: bool = False
  dropout_rate: float = 0.0
  dtype: Any = 'float32'
  unroll: Optional[int] = None

  def __post_init__(self):
    super().__post_init__()
    owner = type(self).__name__
    for name in ('source_vocab_size', 'target_vocab_size', 'embedding_size', 'hidden_size',
                 'encoder_layers', 'decoder_layers'):
      validation.positive(owner, name, getattr(self, name))
    for name in ('encoder_hidden_size', 'attention_size'):
      validation.optional_positive(owner, name, getattr(self, name))
    for name in ('bidirectional_encoder', 'input_feeding', 'share_embeddings', 'tie_output'):
      validation.boolean(owner, name, getattr(self, name))
    validation.choice(owner, 'attention', self.attention, attention_lib.ATTENTION_TYPES)
    validation.rate(owner, 'dropout_rate', self.dropout_rate)
    validation.dtype(owner, 'dtype', self.dtype)
    validation.unroll(owner, 'unroll', self.unroll)
    if self.share_embeddings and self.source_vocab_size != self.target_vocab_size:
      raise ValueError(
          f'{owner}.share_embeddings needs one joint vocabulary; got source_vocab_size='
          f'{self.source_vocab_size}, target_vocab_size={self.target_vocab_size}.'
      )
    if self.tie_output and self.embedding_size != self.hidden_size:
      raise ValueError(
          f'{owner}.tie_output needs embedding_size ({self.embedding_size}) == hidden_size '
          f'({self.hidden_size}).'
      )
    memory_size = (self.encoder_hidden_size or self.hidden_size) * (
        2 if self.bidirectional_encoder else 1)
    if self.attention == 'dot' and memory_size != self.hidden_size:
      raise ValueError(
          f"{owner}.attention='dot' needs the encoder output size (encoder_hidden_size "
          f'x directions = {memory_size}) to equal hidden_size ({self.hidden_size}); use '
          "'general' or 'additive', or set encoder_hidden_size.")

  def setup(self):
    embed_init = nn.with_logical_partitioning(
        nn.initializers.normal(stddev=self.embedding_size**-0.5), axes.EMBEDDING)
    self.source_embed = nn.Embed(self.source_vocab_size, self.embedding_size,
                                 embedding_init=embed_init)
    self.target_embed = self.source_embed if self.share_embeddings else nn.Embed(
        self.target_vocab_size, self.embedding_size, embedding_init=embed_init)
    self.encoder = LSTM(
        self.encoder_hidden_size or self.hidden_size,
        num_layers=self.encoder_layers,
        bidirectional=self.bidirectional_encoder,
        dropout_rate=self.dropout_rate,
        dtype=self.dtype,
        unroll=self.unroll,
        logical_axes=True,
    )
    bridge = (axes.MLP_IN, axes.MLP_OUT)
    self.bridge_h = dense(self.decoder_layers * self.hidden_size, bridge, dtype=self.dtype)
    self.bridge_c = dense(self.decoder_layers * self.hidden_size, bridge, dtype=self.dtype)
    key_size = self.hidden_size if self.attention == 'general' else (
        self.attention_size or self.hidden_size)
    self.attention_key = dense(key_size, (axes.ATTENTION_IN, axes.ATTENTION_OUT),
                               use_bias=False, dtype=self.dtype)
    self.decoder = DecoderStep(
        self.hidden_size, self.decoder_layers, self.attention, self.input_feeding,
        self.dropout_rate, self._dtype)
    if not self.tie_output:
      self.output = dense(self.target_vocab_size, (axes.MLP_OUT, axes.VOCAB), dtype=self.dtype)
    self.embedding_dropout = nn.Dropout(self.dropout_rate)

  def encode(
      self,
      source: Array,  # [batch, S] int
      source_mask: Optional[Array] = None,  # [batch, S], 1 at real tokens
      *,
      deterministic: bool = True,
  ) -> tuple[EncoderOutput, DecoderState]:
    """Encodes the source once; returns the attention memory and the decoder's initial state."""
    if source.ndim != 2:
      raise ValueError(f'source must be [batch, S]; got shape {source.shape}.')
    mask = jnp.ones(source.shape, bool) if source_mask is None else source_mask.astype(bool)
    if mask.shape != source.shape:
      raise ValueError(f'source_mask must have the shape of source {source.shape}; got {mask.shape}.')
    x = self.embedding_dropout(self.source_embed(source), deterministic=deterministic)
    memory, carry = self.encoder(x.astype(self._dtype), mask=mask, deterministic=deterministic)
    directions = 2 if self.bidirectional_encoder else 1
    top = slice((self.encoder_layers - 1) * directions, self.encoder_layers * directions)
    batch = source.shape[0]
    top_h = jnp.moveaxis(carry.h[top], 0, 1).reshape(batch, -1)  # [batch, D*He]
    top_c = jnp.moveaxis(carry.c[top], 0, 1).reshape(batch, -1)
    to_layers = lambda v: v.reshape(  # noqa: E731
        batch, self.decoder_layers, self.hidden_size).astype(jnp.float32)
    state = DecoderState(
        h=to_layers(jnp.tanh(self.bridge_h(top_h))),
        c=to_layers(self.bridge_c(top_c)),
        feed=jnp.zeros((batch, self.hidden_size), jnp.float32),
    )
    keys = attention_lib.attention_keys(self.attention, memory, self.attention_key)
    return EncoderOutput(memory, keys, mask), state

  @property
  def _dtype(self) -> jnp.dtype:
    return validation.dtype(type(self).__name__, 'dtype', self.dtype)

  def _logits(self, attentional: Array) -> Array:  # [..., H] -> [..., V] float32
    if self.tie_output:
      return self.target_embed.attend(attentional.astype(self._dtype)).astype(jnp.float32)
    return self.output(attentional).astype(jnp.float32)

  def decode(
      self,
      encoded: EncoderOutput,
      state: DecoderState,
      target_input: Array,  # [batch, T] int: BOS y_1 .. y_{T-1}
      *,
      deterministic: bool = True,
  ) -> Array:  # [batch, T, V] float32
    """Teacher-forced decoding of a whole target sequence."""
    embedded = self.embedding_dropout(self.target_embed(target_input),
                                      deterministic=deterministic).astype(self._dtype)

    def step(cell, carry, x):
      return cell(carry, x, encoded, deterministic)

    scan = nn.scan(
        step,
        variable_broadcast='params',
        split_rngs={'params': False, 'dropout': True},
        in_axes=1,
        out_axes=1,
        unroll=kernel.resolve_unroll(self.unroll),
    )
    _, attentional = scan(self.decoder, state, embedded)  # [batch, T, H]
    return self._logits(attentional)

  def decode_step(
      self,
      encoded: EncoderOutput,
      state: DecoderState,
      token: Array,  # [batch] int, the previous target token
  ) -> tuple[Array, DecoderState]:  # (logits [batch, V] float32, state)
    """One decoder step (inference: no dropout)."""
    embedded = self.target_embed(token).astype(self._dtype)
    state, attentional = self.decoder(state, embedded, encoded, True)
    return self._logits(attentional), state

  export_kind: ClassVar[str] = 'translation'  # lstm_flax.export's name for this kind

  @nn.nowrap
  def dummy_inputs(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of ``init`` for one token (export's shape check)."""
    return (jnp.zeros((1, 1), jnp.int32), jnp.zeros((1, 1), jnp.int32),
            jnp.ones((1, 1), jnp.float32)), {'deterministic': True}

  def __call__(
      self,
      source: Array,  # [batch, S] int
      target_input: Array,  # [batch, T] int
      source_mask: Optional[Array] = None,  # [batch, S]
      *,
      deterministic: bool = True,
  ) -> Array:  # [batch, T, V] float32 logits
    encoded, state = self.encode(source, source_mask, deterministic=deterministic)
    return self.decode(encoded, state, target_input, deterministic=deterministic)

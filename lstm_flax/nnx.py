"""``flax.nnx`` version of the LSTM layer, on the same kernel and parameter layout.

``nnx.state(model, nnx.Param)`` has the same tree as the Linen ``LSTM``'s
``variables['params']`` (``layer_0/input_kernel``, ...), so parameters move
between the two with ``nnx.update(model, linen_params)`` and
``nnx.to_pure_dict(nnx.state(model, nnx.Param))``.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_flax import initializers, kernel, stack

Array = jax.Array
Initializer = initializers.Initializer


class LayerParams(nnx.Module):
  """One layer direction's fused-gate parameters (see ``lstm_flax.kernel``)."""

  def __init__(
      self,
      in_features: int,
      hidden_size: int,
      proj_size: Optional[int],
      kernel_init: Initializer,
      recurrent_kernel_init: Initializer,
      forget_bias: float,
      param_dtype: Any,
      rngs: nnx.Rngs,
      bias_init: Optional[Initializer] = None,
  ):
    h, p = hidden_size, proj_size or hidden_size
    self.input_kernel = nnx.Param(
        initializers.per_gate(kernel_init)(rngs.params(), (in_features, 4 * h), param_dtype)
    )
    self.recurrent_kernel = nnx.Param(
        initializers.per_gate(recurrent_kernel_init)(rngs.params(), (p, 4 * h), param_dtype)
    )
    bias_key = None if bias_init is None else rngs.params()
    self.bias = nnx.Param(
        initializers.lstm_bias_init(forget_bias, bias_init)(bias_key, (4 * h,), param_dtype)
    )
    self.projection_kernel = (
        nnx.Param(kernel_init(rngs.params(), (h, p), param_dtype)) if proj_size else None
    )

  def as_dict(self) -> dict[str, Array]:
    params = {
        kernel.INPUT_KERNEL: self.input_kernel[...],
        kernel.RECURRENT_KERNEL: self.recurrent_kernel[...],
        kernel.BIAS: self.bias[...],
    }
    if self.projection_kernel is not None:
      params[kernel.PROJECTION_KERNEL] = self.projection_kernel[...]
    return params


class LSTM(nnx.Module):
  """Multi-layer, optionally bidirectional LSTM for ``flax.nnx``.

  Same options and semantics as ``lstm_flax.LSTM`` (Linen); ``in_features`` is
  given up front as NNX modules create their parameters eagerly. Dropout keys
  come from ``rngs.dropout``; ``model.eval()`` / ``model.train()`` switch
  ``deterministic``.

  ``outputs, carry = model(x)`` with ``x [batch, time, in_features]``.
  """

  def __init__(
      self,
      in_features: int,
      hidden_size: int,
      *,
      num_layers: int = 1,
      bidirectional: bool = False,
      proj_size: Optional[int] = None,
      dropout_rate: float = 0.0,
      input_dropout_rate: float = 0.0,
      output_dropout_rate: float = 0.0,
      weight_dropout_rate: float = 0.0,
      variational_dropout: bool = False,
      forget_bias: float = 0.0,
      kernel_init: Initializer = initializers.default_kernel_init,
      recurrent_kernel_init: Initializer = initializers.default_recurrent_kernel_init,
      bias_init: Optional[Initializer] = None,
      time_major: bool = False,
      unroll: Optional[int] = None,
      dtype: Any = jnp.float32,
      param_dtype: Any = jnp.float32,
      use_custom_vjp: bool = True,
      deterministic: bool = False,
      rngs: nnx.Rngs,
  ):
    if hidden_size <= 0 or num_layers <= 0 or in_features <= 0:
      raise ValueError(
          'in_features, hidden_size and num_layers must be positive; got '
          f'{in_features}, {hidden_size}, {num_layers}.'
      )
    if proj_size is not None and not 0 < proj_size < hidden_size:
      raise ValueError(f'proj_size must be in (0, hidden_size={hidden_size}); got {proj_size}.')
    self.num_layers = num_layers
    self.bidirectional = bidirectional
    self.dropout = stack.DropoutConfig(
        input_rate=input_dropout_rate,
        hidden_rate=dropout_rate,
        output_rate=output_dropout_rate,
        weight_rate=weight_dropout_rate,
        variational=variational_dropout,
    )
    self.time_major = time_major
    self.unroll = unroll
    self.dtype = dtype
    self.use_custom_vjp = use_custom_vjp
    self.deterministic = deterministic
    self.rngs = rngs
    directions = (False, True) if bidirectional else (False,)
    features = in_features
    for layer in range(num_layers):
      for reverse in directions:
        setattr(
            self,
            stack.layer_name(layer, reverse),
            LayerParams(
                features,
                hidden_size,
                proj_size,
                kernel_init,
                recurrent_kernel_init,
                forget_bias,
                param_dtype,
                rngs,
                bias_init,
            ),
        )
      features = len(directions) * (proj_size or hidden_size)

  def params_dict(self) -> dict[str, dict[str, Array]]:
    """Parameters as the kernel's nested dict (the Linen layout)."""
    directions = (False, True) if self.bidirectional else (False,)
    return {
        stack.layer_name(l, r): getattr(self, stack.layer_name(l, r)).as_dict()
        for l in range(self.num_layers)
        for r in directions
    }

  def __call__(
      self,
      inputs: Array,  # [batch, time, in] (or [time, batch, in])
      initial_carry: Optional[kernel.LSTMState] = None,
      *,
      lengths: Optional[Array] = None,  # [batch]
      mask: Optional[Array] = None,  # [batch, time] (or [time, batch])
      deterministic: Optional[bool] = None,
  ) -> tuple[Array, kernel.LSTMState]:
    deterministic = self.deterministic if deterministic is None else deterministic
    train = not deterministic and self.dropout.active
    return stack.lstm_stack(
        self.params_dict(),
        inputs,
        None if initial_carry is None else kernel.LSTMState(*initial_carry),
        num_layers=self.num_layers,
        bidirectional=self.bidirectional,
        lengths=lengths,
        mask=mask,
        dropout=self.dropout,
        dropout_rng=self.rngs.dropout() if train else None,
        deterministic=not train,
        time_major=self.time_major,
        unroll=self.unroll,
        compute_dtype=self.dtype,
        use_custom_vjp=self.use_custom_vjp,
    )

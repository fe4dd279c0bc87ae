"""``flax.nnx`` version of the LSTM layer, on the same spec, kernel and parameter layout.

``nnx.state(model, nnx.Param)`` has the same tree as the Linen ``LSTM``'s
``variables['params']`` (``layer_0/input_kernel``, ...), so parameters move
between the two with ``nnx.update(model, linen_params)`` and
``nnx.to_pure_dict(nnx.state(model, nnx.Param))``. Every ``nnx.Param``
carries its logical axis names as ``out_sharding`` metadata
(``lstm_flax.axes``): ``nnx.get_partition_spec(nnx.state(model))`` gives
logical specs for ``nn.logical_to_mesh_sharding(..., axes.DEFAULT_RULES)``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_flax import initializers, kernel, spec as spec_lib, validation

Array = jax.Array
Initializer = initializers.Initializer


class LayerParams(nnx.Module):
  """One layer direction's parameters (``lstm_flax.spec.layer_param_specs``)."""

  def __init__(self, specs: Mapping[str, spec_lib.ParamSpec], param_dtype: Any,
               rngs: nnx.Rngs):
    self.names = tuple(specs)
    for name, s in specs.items():
      # Logical names only (eager_sharding=False: no mesh is needed here);
      # a trainer maps them with axes.DEFAULT_RULES.
      setattr(self, name, nnx.Param(s.init(rngs.params(), s.shape, param_dtype),
                                    out_sharding=s.names, eager_sharding=False))

  def as_dict(self) -> dict[str, Array]:
    return {name: getattr(self, name)[...] for name in self.names}


class LSTM(nnx.Module):
  """Multi-layer, optionally bidirectional LSTM for ``flax.nnx``.

  Same options and semantics as ``lstm_flax.LSTM`` (Linen), one
  ``LSTMSpec``; ``in_features`` is given up front as NNX modules create their
  parameters eagerly. Dropout keys come from ``rngs.dropout``;
  ``model.eval()`` / ``model.train()`` switch ``deterministic``.

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
    arguments = dict(locals())
    owner = 'nnx.LSTM'
    validation.positive(owner, 'in_features', in_features)
    validation.number(owner, 'forget_bias', forget_bias)
    self.spec = spec_lib.from_fields(owner, {f: arguments[f] for f in spec_lib.SPEC_FIELDS})
    self.deterministic = deterministic
    self.rngs = rngs
    param_dtype = validation.dtype(owner, 'param_dtype', param_dtype)
    specs = self.spec.param_specs(
        in_features, kernel_init=kernel_init, recurrent_kernel_init=recurrent_kernel_init,
        forget_bias=forget_bias, bias_init=bias_init)
    for name, layer_specs in specs.items():
      setattr(self, name, LayerParams(layer_specs, param_dtype, rngs))

  def params_dict(self) -> dict[str, dict[str, Array]]:
    """Parameters as the kernel's nested dict (the Linen layout)."""
    return {name: getattr(self, name).as_dict() for name in self.spec.layer_names()}

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
    train = not deterministic and self.spec.dropout.active
    return self.spec(
        self.params_dict(),
        inputs,
        None if initial_carry is None else kernel.LSTMState(*initial_carry),
        lengths=lengths,
        mask=mask,
        dropout_rng=self.rngs.dropout() if train else None,
        deterministic=not train,
    )

  def initialize_carry(self, batch_size: int) -> kernel.LSTMState:
    """Zero stacked carry ``(h [L*D, batch, P], c [L*D, batch, H])``."""
    return self.spec.zero_carry(batch_size)

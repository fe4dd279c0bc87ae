"""Linen modules on the functional kernel: ``LSTMCell`` and the ``LSTM`` layer."""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_flax import initializers, kernel, stack

Array = jax.Array
Dtype = Any
Initializer = initializers.Initializer


class LayerParams(nn.Module):
  """Declares one layer direction's fused-gate parameters and returns them.

  Attributes: see ``LSTM``. Returns ``{'input_kernel': [in, 4H],
  'recurrent_kernel': [P, 4H], 'bias': [4H]}`` (+ ``'projection_kernel'
  [H, P]`` when ``proj_size`` is set).
  """

  hidden_size: int
  proj_size: Optional[int] = None
  kernel_init: Initializer = initializers.default_kernel_init
  recurrent_kernel_init: Initializer = initializers.default_recurrent_kernel_init
  forget_bias: float = 0.0
  param_dtype: Dtype = jnp.float32
  bias_init: Optional[Initializer] = None

  @nn.compact
  def __call__(self, in_features: int) -> dict[str, Array]:
    return declare_layer_params(
        self,
        in_features,
        self.hidden_size,
        self.proj_size,
        self.kernel_init,
        self.recurrent_kernel_init,
        self.forget_bias,
        self.param_dtype,
        self.bias_init,
    )


def declare_layer_params(
    module: nn.Module,
    in_features: int,
    hidden_size: int,
    proj_size: Optional[int],
    kernel_init: Initializer,
    recurrent_kernel_init: Initializer,
    forget_bias: float,
    param_dtype: Dtype,
    bias_init: Optional[Initializer] = None,
) -> dict[str, Array]:
  """Declares one layer direction's parameters on ``module`` (inside a compact method)."""
  h = hidden_size
  p = proj_size or h
  params = {
      kernel.INPUT_KERNEL: module.param(
          kernel.INPUT_KERNEL,
          initializers.per_gate(kernel_init),
          (in_features, 4 * h),
          param_dtype,
      ),
      kernel.RECURRENT_KERNEL: module.param(
          kernel.RECURRENT_KERNEL,
          initializers.per_gate(recurrent_kernel_init),
          (p, 4 * h),
          param_dtype,
      ),
      kernel.BIAS: module.param(
          kernel.BIAS,
          initializers.lstm_bias_init(forget_bias, bias_init),
          (4 * h,),
          param_dtype,
      ),
  }
  if proj_size is not None:
    params[kernel.PROJECTION_KERNEL] = module.param(
        kernel.PROJECTION_KERNEL, kernel_init, (h, p), param_dtype
    )
  return params


def _check_sizes(hidden_size: int, num_layers: int = 1, proj_size: Optional[int] = None):
  if hidden_size <= 0:
    raise ValueError(f'hidden_size must be positive; got {hidden_size}.')
  if num_layers <= 0:
    raise ValueError(f'num_layers must be positive; got {num_layers}.')
  if proj_size is not None and not 0 < proj_size < hidden_size:
    raise ValueError(
        f'proj_size must be in (0, hidden_size={hidden_size}) as in PyTorch; '
        f'got {proj_size}.'
    )


class LSTMCell(nn.RNNCellBase):
  """One LSTM step with fused gates; usable with ``nn.RNN``.

  The carry is ``LSTMState(h [batch, P], c [batch, H])``. Parameters have the
  same names and shapes as one layer of ``LSTM``, so they can be swapped.
  For whole sequences prefer ``LSTM``: it hoists the input projection out of
  the recurrence and has a hand-written backward pass.

  Attributes:
    features: hidden size ``H``.
    proj_size: optional projection size ``P`` of ``h`` (PyTorch's proj_size).
    kernel_init, recurrent_kernel_init: initialisers, applied per gate block.
    forget_bias: initial forget-gate bias, added to ``bias_init``'s.
    bias_init: initialiser of the ``[4H]`` bias (None: zeros).
    dtype: compute dtype of the matrix products.
    param_dtype: parameter dtype.
  """

  features: int
  proj_size: Optional[int] = None
  kernel_init: Initializer = initializers.default_kernel_init
  recurrent_kernel_init: Initializer = initializers.default_recurrent_kernel_init
  forget_bias: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  bias_init: Optional[Initializer] = None

  @nn.compact
  def __call__(
      self, carry: kernel.LSTMState, inputs: Array  # [batch, in]
  ) -> tuple[kernel.LSTMState, Array]:  # (carry, [batch, P])
    _check_sizes(self.features, proj_size=self.proj_size)
    params = declare_layer_params(
        self,
        inputs.shape[-1],
        self.features,
        self.proj_size,
        self.kernel_init,
        self.recurrent_kernel_init,
        self.forget_bias,
        self.param_dtype,
        self.bias_init,
    )
    return kernel.lstm_cell(params, kernel.LSTMState(*carry), inputs, self.dtype)

  @nn.nowrap
  def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> kernel.LSTMState:
    """Zero carry for inputs of shape ``[*batch, in]``."""
    del rng
    batch = input_shape[:-1]
    return kernel.LSTMState(
        h=jnp.zeros(batch + (self.proj_size or self.features,), jnp.float32),
        c=jnp.zeros(batch + (self.features,), jnp.float32),
    )

  @property
  def num_feature_axes(self) -> int:
    return 1


class LSTM(nn.Module):
  """Multi-layer, optionally bidirectional LSTM over whole sequences.

  ``outputs, carry = LSTM(hidden_size=650, num_layers=2)(x)`` with ``x [batch,
  time, in]`` gives ``outputs [batch, time, D*P]`` and the stacked final carry
  ``LSTMState(h [L*D, batch, P], c [L*D, batch, H])`` (PyTorch's ``h_n, c_n``
  layout), which can be fed back as ``initial_carry`` (truncated BPTT).

  Attributes:
    hidden_size: ``H``.
    num_layers: stacked layers ``L``.
    bidirectional: add a reverse direction (``D = 2``); features concatenated.
    proj_size: optional projection of ``h`` to ``P < H`` features (LSTMP).
    dropout_rate: dropout between layers (PyTorch's ``dropout``).
    input_dropout_rate: dropout on the inputs.
    output_dropout_rate: dropout on the outputs.
    weight_dropout_rate: DropConnect on the recurrent kernels (AWD-LSTM).
    variational_dropout: one dropout mask per sequence, shared over time, for
      the input, between-layer and output dropout.
    forget_bias: initial forget-gate bias (1.0 is a common choice), added to
      ``bias_init``'s.
    kernel_init: input-kernel initialiser, per gate block.
    recurrent_kernel_init: recurrent-kernel initialiser, per gate block
      (orthogonal by default).
    bias_init: initialiser of each ``[4H]`` bias (None: zeros).
    time_major: inputs and outputs are ``[time, batch, ...]``.
    unroll: ``lax.scan`` unroll factor (None: 1 on CPU, 8 on GPU/TPU).
    dtype: compute dtype of the matrix products (bfloat16 on TPU/GPU); the
      cell state and gate arithmetic stay float32.
    param_dtype: parameter dtype.
    use_custom_vjp: hand-written backward pass (False: autodiff of the scan).
    deterministic: default for the call argument of the same name.
  """

  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = False
  proj_size: Optional[int] = None
  dropout_rate: float = 0.0
  input_dropout_rate: float = 0.0
  output_dropout_rate: float = 0.0
  weight_dropout_rate: float = 0.0
  variational_dropout: bool = False
  forget_bias: float = 0.0
  kernel_init: Initializer = initializers.default_kernel_init
  recurrent_kernel_init: Initializer = initializers.default_recurrent_kernel_init
  time_major: bool = False
  unroll: Optional[int] = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  use_custom_vjp: bool = True
  deterministic: Optional[bool] = None
  bias_init: Optional[Initializer] = None

  @property
  def dropout(self) -> stack.DropoutConfig:
    return stack.DropoutConfig(
        input_rate=self.input_dropout_rate,
        hidden_rate=self.dropout_rate,
        output_rate=self.output_dropout_rate,
        weight_rate=self.weight_dropout_rate,
        variational=self.variational_dropout,
    )

  @nn.compact
  def __call__(
      self,
      inputs: Array,  # [batch, time, in] (or [time, batch, in])
      initial_carry: Optional[kernel.LSTMState] = None,
      *,
      lengths: Optional[Array] = None,  # [batch]
      mask: Optional[Array] = None,  # [batch, time] (or [time, batch])
      deterministic: Optional[bool] = None,
  ) -> tuple[Array, kernel.LSTMState]:
    _check_sizes(self.hidden_size, self.num_layers, self.proj_size)
    if inputs.ndim != 3:
      layout = '[time, batch, features]' if self.time_major else '[batch, time, features]'
      raise ValueError(
          f'LSTM inputs must be {layout}; got shape {inputs.shape} (rank {inputs.ndim}).'
      )
    dropout = self.dropout
    deterministic = nn.merge_param(
        'deterministic', self.deterministic, deterministic
    ) if dropout.active else True
    params = {}
    in_features = inputs.shape[-1]
    directions = (False, True) if self.bidirectional else (False,)
    for layer in range(self.num_layers):
      for reverse in directions:
        name = stack.layer_name(layer, reverse)
        params[name] = LayerParams(
            self.hidden_size,
            self.proj_size,
            self.kernel_init,
            self.recurrent_kernel_init,
            self.forget_bias,
            self.param_dtype,
            self.bias_init,
            name=name,
        )(in_features)
      in_features = len(directions) * (self.proj_size or self.hidden_size)
    return stack.lstm_stack(
        params,
        inputs,
        None if initial_carry is None else kernel.LSTMState(*initial_carry),
        num_layers=self.num_layers,
        bidirectional=self.bidirectional,
        lengths=lengths,
        mask=mask,
        dropout=dropout,
        dropout_rng=None if deterministic else self.make_rng('dropout'),
        deterministic=deterministic,
        time_major=self.time_major,
        unroll=self.unroll,
        compute_dtype=self.dtype,
        use_custom_vjp=self.use_custom_vjp,
    )

  @nn.nowrap
  def initialize_carry(self, batch_size: int) -> kernel.LSTMState:
    """Zero stacked carry ``(h [L*D, batch, P], c [L*D, batch, H])``."""
    n = self.num_layers * stack.num_directions(self.bidirectional)
    return kernel.LSTMState(
        h=jnp.zeros((n, batch_size, self.proj_size or self.hidden_size), jnp.float32),
        c=jnp.zeros((n, batch_size, self.hidden_size), jnp.float32),
    )

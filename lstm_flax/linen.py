"""Linen modules on the functional kernel: ``LSTMCell`` and the ``LSTM`` layer.

Parameters are plain arrays by default, as Flax's own cells have, so the
modules drop into any Linen code (``nn.scan`` with ``variable_axes``,
``nn.vmap``, ...) with no partitioning arguments. With ``logical_axes=True``
every parameter carries its logical axis names (``lstm_flax.axes``): ``init``
returns ``nn.LogicallyPartitioned`` boxes (``nn.get_partition_spec`` and
``nn.logical_to_mesh_sharding`` read them; ``nn.meta.unbox`` strips them);
the project's models (``lstm_flax.models``, ``lstm_flax.seq2seq``) opt in,
for the trainer's model parallelism. ``apply`` takes boxed or plain
parameters alike.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_flax import initializers, kernel, spec as spec_lib, validation

Array = jax.Array
Dtype = Any
Initializer = initializers.Initializer


def declare_params(
    module: nn.Module, specs: Mapping[str, spec_lib.ParamSpec], param_dtype: Dtype,
    logical_axes: bool,
) -> dict[str, Array]:
  """Declares ``specs`` as parameters of ``module`` (inside a compact method),
  boxed with their logical axis names when ``logical_axes``, and returns
  their values."""
  return {
      name: module.param(
          name, nn.with_logical_partitioning(s.init, s.names) if logical_axes else s.init,
          s.shape, param_dtype)
      for name, s in specs.items()
  }


def _check_init_fields(module: Any) -> None:
  """Fields shared by ``LSTMCell``, ``LayerParams`` and ``LSTM``."""
  owner = type(module).__name__
  validation.number(owner, 'forget_bias', module.forget_bias)
  validation.dtype(owner, 'param_dtype', module.param_dtype)
  validation.boolean(owner, 'logical_axes', module.logical_axes)


class LayerParams(nn.Module):
  """Declares one layer direction's parameters and returns them.

  Attributes: see ``LSTM``. Returns ``{'input_kernel': [in, 4, H],
  'recurrent_kernel': [P, 4, H], 'bias': [4, H]}`` (+ ``'projection_kernel'
  [H, P]`` when ``proj_size`` is set).
  """

  hidden_size: int
  proj_size: Optional[int] = None
  kernel_init: Initializer = initializers.default_kernel_init
  recurrent_kernel_init: Initializer = initializers.default_recurrent_kernel_init
  forget_bias: float = 0.0
  param_dtype: Dtype = 'float32'
  bias_init: Optional[Initializer] = None
  logical_axes: bool = False

  def __post_init__(self):
    super().__post_init__()
    spec_lib.check_sizes(type(self).__name__, self.hidden_size, proj_size=self.proj_size)
    _check_init_fields(self)

  @nn.compact
  def __call__(self, in_features: int) -> dict[str, Array]:
    return declare_params(self, spec_lib.layer_param_specs(
        in_features, self.hidden_size, self.proj_size, self.kernel_init,
        self.recurrent_kernel_init, self.forget_bias, self.bias_init,
    ), validation.dtype('LayerParams', 'param_dtype', self.param_dtype), self.logical_axes)


class LSTMCell(nn.RNNCellBase):
  """One LSTM step, a drop-in for Flax's ``nn.OptimizedLSTMCell``.

  Carry convention (Flax's, not ``LSTM``'s): a plain tuple ``(c [*batch, H],
  h [*batch, P])``, cell state first, so ``c, h = carry`` works as with
  ``nn.LSTMCell`` / ``nn.OptimizedLSTMCell``. ``cell(carry, x [*batch, in])``
  returns ``((new_c, new_h), new_h)``, and ``initialize_carry(rng,
  input_shape)`` gives ``carry_init`` values in ``param_dtype`` (zeros by
  default), as Flax's cells do. So the cell works unchanged inside
  ``nn.RNN``, ``nn.Bidirectional`` and ``nn.scan``;
  ``lstm_flax.interop.from_flax_lstm_cells`` converts a trained Flax model's
  cell weights (the maths, sigmoid gates and tanh activations, is the same).
  The new carry keeps the dtypes of the carry passed in (a scan needs that).

  Parameters have the same names and shapes as one layer of ``LSTM``
  (``input_kernel [in, 4, H]``, ``recurrent_kernel [P, 4, H]``, ``bias [4,
  H]``, ``projection_kernel [H, P]``), so they can be swapped. The whole-
  sequence ``LSTM`` keeps PyTorch's stacked ``LSTMState(h_n, c_n)`` carry.
  For whole sequences prefer ``LSTM``: it hoists the input projection out of
  the recurrence and has a hand-written backward pass.

  Attributes:
    features: hidden size ``H``.
    proj_size: optional projection size ``P`` of ``h`` (PyTorch's proj_size);
      ``h`` is ``[*batch, P]``, ``c`` stays ``[*batch, H]``.
    kernel_init, recurrent_kernel_init: initialisers, applied per gate block.
    forget_bias: initial forget-gate bias, added to ``bias_init``'s.
    bias_init: initialiser of the ``[4, H]`` bias (None: zeros).
    dtype: compute dtype of the matrix products (a name or a jnp dtype).
    param_dtype: parameter dtype, and the dtype of ``initialize_carry``.
    carry_init: initialiser of ``c`` and ``h`` in ``initialize_carry``
      (Flax's field of the same name; zeros).
    logical_axes: box the parameters with their logical axis names
      (``lstm_flax.axes``) for sharding. False (default): plain arrays, as
      Flax's cells have, so ``nn.scan(LSTMCell, variable_axes={'params': 0},
      ...)`` needs no ``metadata_params``.
  """

  features: int
  proj_size: Optional[int] = None
  kernel_init: Initializer = initializers.default_kernel_init
  recurrent_kernel_init: Initializer = initializers.default_recurrent_kernel_init
  forget_bias: float = 0.0
  dtype: Dtype = 'float32'
  param_dtype: Dtype = 'float32'
  bias_init: Optional[Initializer] = None
  carry_init: Initializer = nn.initializers.zeros_init()
  logical_axes: bool = False

  def __post_init__(self):
    super().__post_init__()
    owner = type(self).__name__
    validation.positive(owner, 'features', self.features)
    spec_lib.check_sizes(owner, self.features, proj_size=self.proj_size)
    validation.dtype(owner, 'dtype', self.dtype)
    _check_init_fields(self)

  @nn.compact
  def __call__(
      self,
      carry: tuple[Array, Array],  # (c [*batch, H], h [*batch, P])
      inputs: Array,  # [*batch, in]
  ) -> tuple[tuple[Array, Array], Array]:  # ((c', h'), h' [*batch, P])
    c, h = _check_cell_carry(carry, inputs, self.features, self.proj_size or self.features)
    params = declare_params(self, spec_lib.layer_param_specs(
        inputs.shape[-1], self.features, self.proj_size, self.kernel_init,
        self.recurrent_kernel_init, self.forget_bias, self.bias_init,
    ), validation.dtype('LSTMCell', 'param_dtype', self.param_dtype), self.logical_axes)
    batch = inputs.shape[:-1]  # the kernel takes one batch axis
    flat = lambda a: jnp.reshape(a, (-1, a.shape[-1]))  # noqa: E731
    new, out = kernel.lstm_cell(params, kernel.LSTMState(h=flat(h), c=flat(c)), flat(inputs),
                                validation.dtype('LSTMCell', 'dtype', self.dtype))
    unflat = lambda a, like: jnp.reshape(a, batch + a.shape[-1:]).astype(like.dtype)  # noqa: E731
    return (unflat(new.c, c), unflat(new.h, h)), jnp.reshape(out, batch + out.shape[-1:])

  @nn.nowrap
  def initialize_carry(
      self, rng: Optional[Array], input_shape: tuple[int, ...]
  ) -> tuple[Array, Array]:  # (c [*batch, H], h [*batch, P])
    """Flax's carry ``(c [*batch, H], h [*batch, P])`` for inputs of shape
    ``[*batch, in]``: ``carry_init`` values in ``param_dtype`` (zeros by
    default; ``rng`` feeds ``carry_init``, None means ``jax.random.key(0)``)."""
    batch_dims = tuple(input_shape[:-1])
    key_c, key_h = jax.random.split(jax.random.key(0) if rng is None else rng)
    dtype = validation.dtype('LSTMCell', 'param_dtype', self.param_dtype)
    c = self.carry_init(key_c, batch_dims + (self.features,), dtype)
    h = self.carry_init(key_h, batch_dims + (self.proj_size or self.features,), dtype)
    return c, h

  @property
  def num_feature_axes(self) -> int:
    return 1


def _check_cell_carry(
    carry: Any, inputs: Array, hidden: int, output: int
) -> tuple[Array, Array]:
  """``(c, h)`` of an ``LSTMCell`` carry; a clear error for anything else
  (PyTorch-style ``LSTMState(h, c)`` included: unpacking it as ``(c, h)``
  would swap the two silently when ``P == H``)."""
  if isinstance(carry, kernel.LSTMState):
    raise TypeError(
        'LSTMCell takes Flax\'s carry (c, h), as nn.OptimizedLSTMCell does; got an '
        'LSTMState(h, c) (the whole-sequence LSTM\'s convention). Pass (state.c, '
        'state.h), or build the carry with cell.initialize_carry(rng, x.shape).')
  if not isinstance(carry, (tuple, list)) or len(carry) != 2:
    raise TypeError(f'LSTMCell carry must be a tuple (c, h); got {type(carry).__name__}.')
  c, h = carry
  batch = tuple(inputs.shape[:-1])
  if tuple(jnp.shape(c)) != batch + (hidden,) or tuple(jnp.shape(h)) != batch + (output,):
    raise ValueError(
        f'LSTMCell carry must be (c [*batch, H], h [*batch, P]) = (c={batch + (hidden,)}, '
        f'h={batch + (output,)}) for inputs {tuple(inputs.shape)}; got '
        f'(c={tuple(jnp.shape(c))}, h={tuple(jnp.shape(h))}).')
  return c, h


class LSTM(nn.Module):
  """Multi-layer, optionally bidirectional LSTM over whole sequences.

  ``outputs, carry = LSTM(hidden_size=650, num_layers=2)(x)`` with ``x [batch,
  time, in]`` gives ``outputs [batch, time, D*P]`` and the stacked final carry
  ``LSTMState(h [L*D, batch, P], c [L*D, batch, H])`` (PyTorch's ``h_n, c_n``
  layout), which can be fed back as ``initial_carry`` (truncated BPTT).
  Parameters: ``layer_{l}[_reverse]/{input_kernel [in, 4, H],
  recurrent_kernel [P, 4, H], bias [4, H], projection_kernel [H, P]}``.

  Attributes (all JSON-able but the initialisers; checked on construction):
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
    bias_init: initialiser of each ``[4, H]`` bias (None: zeros).
    time_major: inputs and outputs are ``[time, batch, ...]``.
    unroll: ``lax.scan`` unroll factor (None: 1 on CPU, 8 on GPU/TPU).
    dtype: compute dtype of the matrix products (bfloat16 on TPU/GPU), a name
      (``'float32'``, ``'bfloat16'``, ``'float16'``) or a jnp dtype; the cell
      state and gate arithmetic stay float32.
    param_dtype: parameter dtype (likewise).
    use_custom_vjp: hand-written backward pass (False: autodiff of the scan).
    deterministic: default for the call argument of the same name.
    logical_axes: box the parameters with their logical axis names
      (``lstm_flax.axes``) for sharding (the project's models do); False:
      plain arrays.
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
  dtype: Dtype = 'float32'
  param_dtype: Dtype = 'float32'
  use_custom_vjp: bool = True
  deterministic: Optional[bool] = None
  bias_init: Optional[Initializer] = None
  logical_axes: bool = False

  def __post_init__(self):
    super().__post_init__()
    self.spec  # pylint: disable=pointless-statement  (validates the fields)
    _check_init_fields(self)
    if self.deterministic is not None:
      validation.boolean(type(self).__name__, 'deterministic', self.deterministic)

  @property
  def spec(self) -> spec_lib.LSTMSpec:
    return spec_lib.from_fields(
        type(self).__name__, {f: getattr(self, f) for f in spec_lib.SPEC_FIELDS})

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
    if inputs.ndim != 3:
      layout = '[time, batch, features]' if self.time_major else '[batch, time, features]'
      raise ValueError(
          f'LSTM inputs must be {layout}; got shape {inputs.shape} (rank {inputs.ndim}).'
      )
    spec = self.spec
    deterministic = nn.merge_param(
        'deterministic', self.deterministic, deterministic
    ) if spec.dropout.active else True
    sizes = spec.input_sizes(inputs.shape[-1])
    params = {
        name: LayerParams(
            self.hidden_size,
            self.proj_size,
            self.kernel_init,
            self.recurrent_kernel_init,
            self.forget_bias,
            self.param_dtype,
            self.bias_init,
            self.logical_axes,
            name=name,
        )(sizes[layer])
        for layer, _, name in spec.layers()
    }
    return spec(
        params,
        inputs,
        None if initial_carry is None else kernel.LSTMState(*initial_carry),
        lengths=lengths,
        mask=mask,
        dropout_rng=None if deterministic else self.make_rng('dropout'),
        deterministic=deterministic,
    )

  @nn.nowrap
  def initialize_carry(self, batch_size: int) -> kernel.LSTMState:
    """Zero stacked carry ``(h [L*D, batch, P], c [L*D, batch, H])``."""
    return self.spec.zero_carry(batch_size)


def dense(
    features: int,
    names: tuple[str, str],
    *,
    use_bias: bool = True,
    dtype: Dtype = 'float32',
    kernel_init: Initializer = nn.initializers.lecun_normal(),
    bias_init: Initializer = nn.initializers.zeros_init(),
    name: Optional[str] = None,
) -> nn.Dense:
  """``nn.Dense`` whose ``kernel [in, features]`` has logical axes ``names``
  and whose ``bias [features]`` has ``(names[1],)`` (``lstm_flax.axes``)."""
  return nn.Dense(
      features,
      use_bias=use_bias,
      dtype=validation.dtype('dense', 'dtype', dtype),
      kernel_init=nn.with_logical_partitioning(kernel_init, names),
      bias_init=nn.with_logical_partitioning(bias_init, names[1:]),
      name=name,
  )

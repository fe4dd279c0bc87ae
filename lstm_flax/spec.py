"""``LSTMSpec``: the one description of an LSTM stack, shared by Linen and NNX.

The Linen ``LSTM``, the NNX ``LSTM`` and ``LanguageModel.initialize_carry``
build an ``LSTMSpec`` and ask it for the sizes, the layer names, the
parameter shapes and logical axes, the zero carry and the run
(``lstm_flax.stack.lstm_stack``); the size checks live here only.

Parameter tree of a stack (the same in Linen and NNX)::

  {'layer_0': {...}, 'layer_0_reverse': {...}, 'layer_1': {...}, ...}

each entry one layer direction's kernel parameters (``lstm_flax.kernel``).
The carry is stacked like PyTorch's ``(h_n, c_n)``: ``h [L*D, batch, P]`` and
``c [L*D, batch, H]``, index ``layer * D + direction``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstm_flax import axes, initializers, kernel, validation

Array = jax.Array
Initializer = initializers.Initializer


def layer_name(layer: int, reverse: bool) -> str:
  """Parameter-tree key of one layer direction: ``layer_0``, ``layer_0_reverse``."""
  return f'layer_{layer}_reverse' if reverse else f'layer_{layer}'


@dataclasses.dataclass(frozen=True)
class DropoutConfig:
  """Dropout rates of an LSTM stack.

  Attributes:
    input_rate: dropout on the stack's inputs.
    hidden_rate: dropout on the outputs of every layer but the last (PyTorch's
      ``dropout``).
    output_rate: dropout on the stack's outputs.
    weight_rate: DropConnect on the recurrent kernels, one mask per call
      (AWD-LSTM's weight drop).
    variational: one mask per sequence, shared over time, for the input,
      hidden and output dropout (Gal & Ghahramani; AWD-LSTM's locked dropout).
  """

  input_rate: float = 0.0
  hidden_rate: float = 0.0
  output_rate: float = 0.0
  weight_rate: float = 0.0
  variational: bool = False

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if field.name != 'variational':
        validation.rate('DropoutConfig', field.name, getattr(self, field.name))

  @property
  def active(self) -> bool:
    return any((self.input_rate, self.hidden_rate, self.output_rate, self.weight_rate))


class ParamSpec(NamedTuple):
  """How to create one parameter: ``init(key, shape, dtype)`` and its logical axes."""

  init: Initializer
  shape: tuple[int, ...]
  names: tuple[str, ...]


def layer_param_specs(
    in_features: int,
    hidden_size: int,
    proj_size: Optional[int] = None,
    kernel_init: Initializer = initializers.default_kernel_init,
    recurrent_kernel_init: Initializer = initializers.default_recurrent_kernel_init,
    forget_bias: float = 0.0,
    bias_init: Optional[Initializer] = None,
) -> dict[str, ParamSpec]:
  """One layer direction's parameters: ``input_kernel [in, 4, H]``,
  ``recurrent_kernel [P, 4, H]``, ``bias [4, H]`` and, with ``proj_size``,
  ``projection_kernel [H, P]``, with per-gate initialisers and logical axes
  (``lstm_flax.axes``)."""
  h, p = hidden_size, proj_size or hidden_size
  g = kernel.NUM_GATES
  specs = {
      kernel.INPUT_KERNEL: ParamSpec(
          initializers.per_gate(kernel_init), (in_features, g, h), axes.INPUT_KERNEL),
      kernel.RECURRENT_KERNEL: ParamSpec(
          initializers.per_gate(recurrent_kernel_init), (p, g, h), axes.RECURRENT_KERNEL),
      kernel.BIAS: ParamSpec(
          initializers.lstm_bias_init(forget_bias, bias_init), (g, h), axes.BIAS),
  }
  if proj_size is not None:
    specs[kernel.PROJECTION_KERNEL] = ParamSpec(kernel_init, (h, p), axes.PROJECTION_KERNEL)
  return specs


def check_sizes(owner: str, hidden_size: Any, num_layers: Any = 1,
                proj_size: Any = None) -> None:
  """The size checks of an LSTM (messages name ``owner.field``)."""
  validation.positive(owner, 'hidden_size', hidden_size)
  validation.positive(owner, 'num_layers', num_layers)
  validation.optional_positive(owner, 'proj_size', proj_size)
  if proj_size is not None and not proj_size < hidden_size:
    raise ValueError(
        f'{owner}.proj_size must be None or in (0, hidden_size={hidden_size}) as in '
        f'PyTorch; got {proj_size!r}.')


@dataclasses.dataclass(frozen=True)
class LSTMSpec:
  """Sizes, dropout and run options of a (multi-layer, bidirectional) LSTM.

  Attributes:
    hidden_size: ``H``.
    num_layers: ``L``.
    bidirectional: ``D = 2`` directions, features concatenated.
    proj_size: optional projection size ``P < H`` of ``h`` (LSTMP).
    dropout: the stack's dropout rates.
    time_major: inputs and outputs ``[time, batch, ...]``.
    unroll: ``lax.scan`` unroll (None: backend default).
    compute_dtype: dtype of the matrix products.
    use_custom_vjp: hand-written backward pass.
    owner: class name used in error messages (``LSTM.hidden_size ...``).
  """

  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = False
  proj_size: Optional[int] = None
  dropout: DropoutConfig = DropoutConfig()
  time_major: bool = False
  unroll: Optional[int] = None
  compute_dtype: Any = jnp.float32
  use_custom_vjp: bool = True
  owner: str = dataclasses.field(default='LSTMSpec', compare=False, repr=False)

  def __post_init__(self):
    check_sizes(self.owner, self.hidden_size, self.num_layers, self.proj_size)
    validation.unroll(self.owner, 'unroll', self.unroll)

  @property
  def num_directions(self) -> int:
    return 2 if self.bidirectional else 1

  @property
  def directions(self) -> tuple[bool, ...]:
    """``reverse`` flags of the directions: ``(False,)`` or ``(False, True)``."""
    return (False, True) if self.bidirectional else (False,)

  @property
  def output_size(self) -> int:
    """``P``: size of each direction's ``h`` (``proj_size`` or ``H``)."""
    return self.proj_size or self.hidden_size

  @property
  def features(self) -> int:
    """``D * P``: features of every layer's (and the stack's) output."""
    return self.num_directions * self.output_size

  def layers(self) -> tuple[tuple[int, bool, str], ...]:
    """``(layer, reverse, name)`` in carry order (index ``layer * D + direction``)."""
    return tuple((l, r, layer_name(l, r)) for l in range(self.num_layers)
                 for r in self.directions)

  def layer_names(self) -> tuple[str, ...]:
    return tuple(name for _, _, name in self.layers())

  def input_sizes(self, in_features: int) -> tuple[int, ...]:
    """Input features of each layer: ``in_features``, then ``D * P``."""
    return (in_features,) + (self.features,) * (self.num_layers - 1)

  def param_specs(self, in_features: int, **inits: Any) -> dict[str, dict[str, ParamSpec]]:
    """``{layer name: layer_param_specs(...)}``; ``inits``: the initialisers
    and ``forget_bias`` of ``layer_param_specs``."""
    sizes = self.input_sizes(in_features)
    return {name: layer_param_specs(sizes[l], self.hidden_size, self.proj_size, **inits)
            for l, _, name in self.layers()}

  def zero_carry(self, batch_size: int, dtype: Any = jnp.float32) -> kernel.LSTMState:
    """Zero stacked carry ``(h [L*D, batch, P], c [L*D, batch, H])``."""
    return kernel.zero_state((self.num_layers * self.num_directions, batch_size),
                             self.hidden_size, self.output_size, dtype)

  def check_params(self, params: Mapping[str, Any]) -> None:
    missing = [n for n in self.layer_names() if n not in params]
    if missing:
      raise ValueError(
          f'LSTM params are missing layers {missing} for num_layers={self.num_layers}, '
          f'bidirectional={self.bidirectional}; got {sorted(params)}.')

  def check_carry(self, carry: Optional[kernel.LSTMState], batch_size: int) -> None:
    if carry is None:
      return
    expected = jax.eval_shape(lambda: self.zero_carry(batch_size))
    if (jnp.shape(carry.h), jnp.shape(carry.c)) != (expected.h.shape, expected.c.shape):
      raise ValueError(
          'initial_carry must be LSTMState(h=[layers*directions, batch, P], '
          f'c=[layers*directions, batch, H]) = (h={expected.h.shape}, '
          f'c={expected.c.shape}); got (h={jnp.shape(carry.h)}, c={jnp.shape(carry.c)}).')

  def __call__(
      self,
      params: Mapping[str, Mapping[str, Array]],
      inputs: Array,  # [batch, time, in] (or [time, batch, in])
      initial_carry: Optional[kernel.LSTMState] = None,
      **kwargs: Any,
  ) -> tuple[Array, kernel.LSTMState]:
    """Runs the stack: ``lstm_flax.stack.lstm_stack(self, params, ...)``."""
    from lstm_flax import stack  # pylint: disable=g-import-not-at-top

    return stack.lstm_stack(self, params, inputs, initial_carry, **kwargs)



# Module fields (Linen ``LSTM`` attributes, NNX ``LSTM`` keywords) that make a spec.
SPEC_FIELDS = ('hidden_size', 'num_layers', 'bidirectional', 'proj_size', 'dropout_rate',
               'input_dropout_rate', 'output_dropout_rate', 'weight_dropout_rate',
               'variational_dropout', 'time_major', 'unroll', 'dtype', 'use_custom_vjp')


def from_fields(owner: str, fields: Mapping[str, Any]) -> LSTMSpec:
  """Validates an LSTM module's fields (errors name ``owner.field``) and
  returns its ``LSTMSpec``.

  Args:
    owner: class name for error messages (``'LSTM'``, ``'nnx.LSTM'``).
    fields: the module's values of every name in ``SPEC_FIELDS``; ``dtype``
      may be a name (``'bfloat16'``).
  """
  f = fields
  for name in ('dropout_rate', 'input_dropout_rate', 'output_dropout_rate',
               'weight_dropout_rate'):
    validation.rate(owner, name, f[name])
  for name in ('bidirectional', 'variational_dropout', 'time_major', 'use_custom_vjp'):
    validation.boolean(owner, name, f[name])
  return LSTMSpec(
      hidden_size=f['hidden_size'],
      num_layers=f['num_layers'],
      bidirectional=f['bidirectional'],
      proj_size=f['proj_size'],
      dropout=DropoutConfig(
          input_rate=f['input_dropout_rate'],
          hidden_rate=f['dropout_rate'],
          output_rate=f['output_dropout_rate'],
          weight_rate=f['weight_dropout_rate'],
          variational=f['variational_dropout'],
      ),
      time_major=f['time_major'],
      unroll=f['unroll'],
      compute_dtype=validation.dtype(owner, 'dtype', f['dtype']),
      use_custom_vjp=f['use_custom_vjp'],
      owner=owner,
  )

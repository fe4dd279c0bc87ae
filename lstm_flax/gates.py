"""Recording the LSTM's gates and cell state per token (looking inside).

For every step ``t`` of every layer and direction the LSTM computes (gate
order ``i f g o``, as in ``lstm_flax.kernel``)::

  i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i)     input gate
  f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)     forget gate
  g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)        candidate
  o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)     output gate
  c_t = f_t * c_{t-1} + i_t * g_t                cell state
  h_t = o_t * tanh(c_t)                          (times W_p with a projection)

The training kernel never materialises these per step in a form one can
read back, and it must not pay for doing so. Recording therefore re-runs
the recurrence with a plain ``lax.scan`` from the layer's own parameters,
only inside :func:`record` (or under ``flax.linen.intercept_methods(
interceptor)`` with the ``'gates'`` collection mutable). Nothing is
registered globally: a model applied without it runs exactly the training
code (``benchmarks/gate_overhead.py``).

Recorded modules: ``lstm_flax.LSTM`` (so ``LanguageModel``,
``SequenceClassifier`` and the ``Seq2Seq`` encoder), ``lstm_flax.LSTMCell``
and the ``Seq2Seq`` decoder step (``DecoderStep``). Each call sows one
:data:`Gates` dict into the ``'gates'`` collection at the module's path:
``{'i', 'f', 'g', 'o', 'c': [L*D, batch, time, H], 'h': [L*D, batch, time,
P], 'mask': [batch, time] bool}``, layer-major with the reverse direction
after the forward one (``LSTM``'s carry order). Values at padded steps are
zero. Recording needs deterministic runs (no dropout). It computes in
float32 (matrix products at HIGHEST precision) whatever the model's compute
dtype: for a bfloat16 model the values are the equations on the same
parameters, close to but not bit-equal to its bfloat16 products.

Inside a lifted transform that does not carry the ``'gates'`` collection
(the teacher-forced ``Seq2Seq.__call__``'s ``nn.scan`` over decoder steps)
nothing is recorded; :func:`record_translation` steps the decoder itself.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
from jax import lax

from lstm_flax import kernel, linen, seq2seq

Array = jax.Array
Gates = dict[str, Array]

COLLECTION = 'gates'
GATE_NAMES = ('i', 'f', 'g', 'o')  # the kernel's gate order on the gate axis
STATE_NAMES = ('c', 'h')
NAMES = GATE_NAMES + STATE_NAMES
_HIGHEST = lax.Precision.HIGHEST


def _step(params: Mapping[str, Array], gx: Array, h: Array, c: Array
          ) -> tuple[Array, ...]:
  """One step from the input projection ``gx [B, 4, H]`` and the carry
  ``h [B, P]``, ``c [B, H]``: returns ``(i, f, g, o, c', h')``."""
  z = gx + jnp.einsum('bp,pgh->bgh', h, params[kernel.RECURRENT_KERNEL].astype(jnp.float32),
                      precision=_HIGHEST)  # [B, 4, H]
  i, f, o = (jax.nn.sigmoid(z[:, k]) for k in (0, 1, 3))
  g = jnp.tanh(z[:, 2])
  c_new = f * c + i * g
  h_new = o * jnp.tanh(c_new)
  w_p = params.get(kernel.PROJECTION_KERNEL)
  if w_p is not None:
    h_new = jnp.dot(h_new, w_p.astype(jnp.float32), precision=_HIGHEST)  # [B, P]
  return i, f, g, o, c_new, h_new


def _input_projection(params: Mapping[str, Array], x: Array) -> Array:
  """``x [..., in]`` -> ``x W_x + b`` as ``[..., 4, H]`` float32."""
  w_x = params[kernel.INPUT_KERNEL].astype(jnp.float32)
  return jnp.einsum('...i,igh->...gh', x.astype(jnp.float32), w_x,
                    precision=_HIGHEST) + params[kernel.BIAS].astype(jnp.float32)


def record_layer(
    params: Mapping[str, Array],
    inputs: Array,  # [time, batch, in]
    initial_carry: Optional[kernel.LSTMState] = None,
    mask: Optional[Array] = None,  # [time, batch] bool
    *,
    reverse: bool = False,
) -> Gates:
  """Runs one layer direction and records every step.

  Returns ``{'i', 'f', 'g', 'o', 'c': [time, batch, H], 'h': [time, batch,
  P]}`` float32, zero at padded steps (a padded step keeps the carry, as in
  the kernel).
  """
  kernel.check_params(params)
  time, batch, _ = inputs.shape
  h_size, p_size = kernel.hidden_size(params), kernel.output_size(params)
  carry = initial_carry or kernel.zero_state(batch, h_size, p_size)
  gx = _input_projection(params, inputs)  # [T, B, 4, H]
  valid = jnp.ones((time, batch), bool) if mask is None else mask.astype(bool)

  def step(carry, xs):
    h, c = carry
    g_t, m = xs
    values = _step(params, g_t, h, c)
    c_new = jnp.where(m[:, None], values[4], c)
    h_new = jnp.where(m[:, None], values[5], h)
    recorded = tuple(jnp.where(m[:, None], v, 0.0) for v in values)
    return (h_new, c_new), recorded

  _, values = lax.scan(step, (carry.h.astype(jnp.float32), carry.c.astype(jnp.float32)),
                       (gx, valid), reverse=reverse)
  return dict(zip(NAMES, values))


def record_stack(
    spec: Any,  # lstm_flax.LSTMSpec
    params: Mapping[str, Mapping[str, Array]],
    inputs: Array,  # [batch, time, in] (or [time, batch, in] if spec.time_major)
    initial_carry: Optional[kernel.LSTMState] = None,
    *,
    lengths: Optional[Array] = None,  # [batch]
    mask: Optional[Array] = None,  # [batch, time] (or time-major)
) -> Gates:
  """Records a (multi-layer, bidirectional) stack as ``lstm_flax.lstm_stack``
  runs it without dropout; returns a :data:`Gates` dict (shapes in the
  module docstring)."""
  mask_tb = kernel.time_major_mask(inputs.shape, lengths, mask, spec.time_major)
  x = inputs if spec.time_major else jnp.swapaxes(inputs, 0, 1)  # [T, B, in]
  per_layer, outputs = [], []
  for index, (_, reverse, name) in enumerate(spec.layers()):
    carry = None
    if initial_carry is not None:
      carry = kernel.LSTMState(initial_carry.h[index], initial_carry.c[index])
    values = record_layer(params[name], x, carry, mask_tb, reverse=reverse)
    per_layer.append(values)
    outputs.append(values['h'])
    if len(outputs) == spec.num_directions:  # the layer's last direction
      x = jnp.concatenate(outputs, axis=-1).astype(inputs.dtype)
      outputs = []
  gates = {k: jnp.stack([jnp.swapaxes(v[k], 0, 1) for v in per_layer]) for k in NAMES}
  time, batch = x.shape[:2]
  gates['mask'] = (jnp.ones((batch, time), bool) if mask_tb is None else mask_tb.T)
  return gates


def _params(module: nn.Module) -> Any:
  return nn.meta.unbox(module.variables['params'])


def _refuse_dropout(module: nn.Module, deterministic: Optional[bool]) -> None:
  if deterministic is False:
    raise ValueError(
        f'Recording the gates of {type(module).__name__} {module.path} needs a deterministic '
        'run (deterministic=True): with dropout the recording would not be the computation.')


def _record_lstm(module: linen.LSTM, args: tuple, kwargs: dict) -> Gates:
  spec = module.spec
  deterministic = kwargs.get('deterministic', module.deterministic)
  if spec.dropout.active:
    _refuse_dropout(module, deterministic)
  initial_carry = kwargs.get('initial_carry', args[1] if len(args) > 1 else None)
  return record_stack(
      spec, _params(module), args[0],
      None if initial_carry is None else kernel.LSTMState(*initial_carry),
      lengths=kwargs.get('lengths'), mask=kwargs.get('mask'))


def _one_step(params: Mapping[str, Array], h: Array, c: Array, x: Array) -> Gates:
  """One recorded step of ``x [B, in]`` as ``[B, 1, ...]`` arrays."""
  values = _step(params, _input_projection(params, x), h.astype(jnp.float32),
                 c.astype(jnp.float32))
  return {k: v[:, None] for k, v in zip(NAMES, values)}


def _record_cell(module: linen.LSTMCell, args: tuple, kwargs: dict) -> Gates:
  carry = kwargs.get('carry', args[0] if args else None)
  inputs = kwargs.get('inputs', args[1] if len(args) > 1 else None)
  c, h = carry
  flat = lambda a: jnp.reshape(a, (-1, a.shape[-1]))  # noqa: E731
  step = _one_step(_params(module), flat(h), flat(c), flat(inputs))
  gates = {k: v[None] for k, v in step.items()}  # [1, B, 1, ...]
  gates['mask'] = jnp.ones(gates['c'].shape[1:3], bool)
  return gates


def _record_decoder(module: seq2seq.DecoderStep, args: tuple, kwargs: dict) -> Gates:
  state, embedded = args[0], args[1]
  deterministic = args[3] if len(args) > 3 else kwargs.get('deterministic')
  if module.dropout_rate:
    _refuse_dropout(module, deterministic)
  x = jnp.concatenate([embedded, state.feed.astype(embedded.dtype)], -1) if (
      module.input_feeding) else embedded
  params = _params(module)
  layers = []
  for layer in range(module.num_layers):
    step = _one_step(params[f'layer_{layer}'], state.h[:, layer], state.c[:, layer], x)
    layers.append(step)
    x = step['h'][:, 0].astype(embedded.dtype)
  gates = {k: jnp.stack([s[k] for s in layers]) for k in NAMES}
  gates['mask'] = jnp.ones(gates['c'].shape[1:3], bool)
  return gates


RECORDERS: dict[type, Callable[[Any, tuple, dict], Gates]] = {
    linen.LSTM: _record_lstm,
    linen.LSTMCell: _record_cell,
    seq2seq.DecoderStep: _record_decoder,
}


def interceptor(next_fun: Callable[..., Any], args: tuple, kwargs: dict,
                context: Any) -> Any:
  """``flax.linen.intercept_methods`` interceptor: runs the real method and,
  when the ``'gates'`` collection is mutable, sows the recorded gates of an
  LSTM / LSTMCell / DecoderStep ``__call__`` (else only the real method)."""
  outputs = next_fun(*args, **kwargs)
  module = context.module
  recorder = RECORDERS.get(type(module))
  if (recorder is None or context.method_name != '__call__'
      or not module.is_mutable_collection(COLLECTION)):
    return outputs
  module.sow(COLLECTION, 'calls', recorder(module, args, kwargs))
  return outputs


def record(module: nn.Module, variables: Mapping[str, Any], *args: Any,
           method: Any = None, **kwargs: Any) -> tuple[Any, dict[str, Gates]]:
  """``module.apply(variables, *args, method=method, **kwargs)`` with the
  gates recorded.

  Returns ``(outputs, recordings)``: ``recordings`` maps each recorded
  module's path (``'lstm'``, ``'encoder'``, ``'decoder'``; ``'name#2'`` for a
  module's second call) to its :data:`Gates` dict. Works under ``jax.jit``
  (close over ``module`` and ``method``).
  """
  with nn.intercept_methods(interceptor):
    outputs, state = module.apply(variables, *args, method=method,
                                  mutable=[COLLECTION], **kwargs)
  recordings = {}
  for path, calls in traverse_util.flatten_dict(dict(state.get(COLLECTION, {}))).items():
    name = '/'.join(p for p in path[:-1]) or type(module).__name__
    for n, gates in enumerate(calls):
      recordings[name if n == 0 else f'{name}#{n + 1}'] = gates
  return outputs, recordings


# ------------------------------------------------------------ whole models ----


def record_tokens(model: nn.Module, variables: Mapping[str, Any], tokens: Array
                  ) -> tuple[Array, dict[str, Gates]]:
  """A ``LanguageModel`` (or ``SequenceClassifier``) on one sequence
  ``tokens [T]`` int: ``(logits, recordings)`` with batch 1; a classifier's
  ``'lstm_reverse'`` (run on the reversed text) is put back in text order."""
  tokens = jnp.asarray(tokens, jnp.int32)[None]  # [1, T]
  from lstm_flax import models  # pylint: disable=g-import-not-at-top
  if isinstance(model, models.SequenceClassifier):
    lengths = jnp.array([tokens.shape[1]], jnp.int32)
    logits, recordings = record(model, variables, tokens, lengths, deterministic=True)
    if 'lstm_reverse' in recordings:
      recordings['lstm_reverse'] = {
          k: v if k == 'mask' else jnp.flip(v, axis=2)
          for k, v in recordings['lstm_reverse'].items()}
    return logits[0], recordings
  logits, recordings = record(model, variables, tokens, deterministic=True)
  return logits[0][0], recordings


def record_translation(model: seq2seq.Seq2Seq, variables: Mapping[str, Any], source: Array,
                       target: Array, bos_id: int) -> dict[str, Gates]:
  """A ``Seq2Seq`` on ``source [S]`` ids, teacher-forced with the output ids
  ``target [T]`` (e.g. its own translation, EOS included): ``{'encoder':
  Gates [L*D, 1, S, ...], 'decoder': Gates [layers, 1, T, H]}``, the decoder
  step ``t`` reading ``target[t-1]`` (BOS first) and predicting ``target[t]``."""
  source = jnp.asarray(source, jnp.int32)[None]
  (encoded, state), enc = record(model, variables, source, method=seq2seq.Seq2Seq.encode)

  @jax.jit
  def step(state, token):
    (_, state), rec = record(model, variables, encoded, state, token,
                             method=seq2seq.Seq2Seq.decode_step)
    return state, rec['decoder']

  inputs = [bos_id] + [int(t) for t in target][:-1]
  steps = []
  for token in inputs:
    state, gates = step(state, jnp.array([token], jnp.int32))
    steps.append(gates)
  decoder = {k: jnp.concatenate([s[k] for s in steps], axis=-2 if k != 'mask' else 1)
             for k in steps[0]}
  return {'encoder': enc['encoder'], 'decoder': decoder}

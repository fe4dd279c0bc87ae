"""Optax optimisers and learning-rate schedules from ``config.optimizer``.

* SGD (optionally with momentum) with Zaremba et al.'s schedule: constant
  for ``decay_after_epochs`` epochs, then divided by ``lr_decay_factor``
  every further epoch (``optax.exponential_decay`` with a staircase).
* Adam / AdamW with linear warm-up and cosine or inverse-square-root decay.
* Global-norm clipping, gradient accumulation (``optax.MultiSteps``) and
  AWD-LSTM's averaged SGD (:func:`parameter_averaging`: the optimiser state
  keeps a running average of the parameters, used for evaluation).

Schedules count optimiser *updates*; with ``grad_accum_steps = k`` an update
happens every ``k`` batches and an epoch has ``steps_per_epoch // k`` updates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

PyTree = Any


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           updates_per_epoch: int,
                           total_updates: int) -> optax.Schedule:
  """The learning rate as a function of the optimiser update count."""
  o = config
  lr = float(o.learning_rate)
  warmup = int(o.warmup_steps)
  updates_per_epoch = max(1, int(updates_per_epoch))
  if o.schedule == 'zaremba':
    # Epoch i (from 0) uses lr / factor ** max(0, i + 1 - decay_after_epochs).
    main = optax.exponential_decay(
        lr, transition_steps=updates_per_epoch,
        decay_rate=1.0 / float(o.lr_decay_factor),
        transition_begin=(int(o.decay_after_epochs) - 1) * updates_per_epoch,
        staircase=True)
    return _with_warmup(main, lr, warmup)
  if o.schedule == 'constant':
    return _with_warmup(optax.constant_schedule(lr), lr, warmup)
  if o.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else lr, peak_value=lr, warmup_steps=warmup,
        decay_steps=max(total_updates, warmup + 1),
        end_value=lr * float(o.end_lr_fraction))
  if o.schedule == 'inverse_sqrt':
    def inverse_sqrt(count):
      return lr * jnp.sqrt(warmup / jnp.maximum(count + warmup, 1.0))
    return _with_warmup(inverse_sqrt, lr, warmup)
  raise ValueError(f'Unknown schedule {o.schedule!r}.')


def _with_warmup(schedule: optax.Schedule, lr: float,
                 warmup: int) -> optax.Schedule:
  """Linear warm-up from 0 to ``lr`` over ``warmup`` updates, then
  ``schedule(count - warmup)``."""
  if warmup <= 0:
    return schedule
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), schedule], [warmup])


class AveragingState(NamedTuple):
  """State of :func:`parameter_averaging`."""

  count: jax.Array  # Updates seen.
  num_averaged: jax.Array  # Updates averaged (those from start_step on).
  average: PyTree  # Running mean of the parameters after each such update.


def parameter_averaging(start_step: int) -> optax.GradientTransformation:
  """AWD-LSTM's averaged SGD (Polyak averaging) as an optax transformation.

  Chained last, it leaves the updates unchanged and keeps, in its state, the
  mean of the parameters after every update from update ``start_step`` on.
  :func:`eval_params` returns that mean (the parameters AWD-LSTM evaluates
  and saves) once averaging has begun.
  """

  def init_fn(params):
    return AveragingState(
        jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32),
        jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('parameter_averaging needs params in update().')
    new_params = optax.apply_updates(params, updates)
    active = state.count >= start_step
    num = state.num_averaged + active.astype(jnp.int32)
    weight = jnp.where(active, 1.0 / jnp.maximum(num, 1), 0.0)
    average = jax.tree.map(
        lambda a, p: (a + weight * (p.astype(a.dtype) - a)).astype(a.dtype),
        state.average, new_params)
    return updates, AveragingState(state.count + 1, num, average)

  return optax.GradientTransformation(init_fn, update_fn)


def _averaging_states(opt_state: PyTree) -> list[AveragingState]:
  return [s for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, AveragingState))
          if isinstance(s, AveragingState)]


def has_averaging(opt_state: PyTree) -> bool:
  """Whether ``opt_state`` holds a :func:`parameter_averaging` state."""
  return bool(_averaging_states(opt_state))


def eval_params(params: PyTree, opt_state: PyTree) -> PyTree:
  """The parameters to evaluate: the running average when parameter
  averaging is on and has begun, else ``params``. Works under jit."""
  states = _averaging_states(opt_state)
  if not states:
    return params
  state = states[0]
  started = state.num_averaged > 0
  return jax.tree.map(lambda a, p: jnp.where(started, a, p), state.average,
                      params)


def create_optimizer(config: ml_collections.ConfigDict, updates_per_epoch: int,
                     total_updates: int
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer, learning-rate schedule) for ``config.optimizer``.

  Args:
    config: ``config.optimizer``.
    updates_per_epoch: optimiser updates per epoch (for 'zaremba').
    total_updates: updates of the whole run (for 'cosine').
  """
  o = config
  # Only the schedules that use them depend on these (keeps jit caches warm).
  updates_per_epoch = updates_per_epoch if o.schedule == 'zaremba' else 1
  total_updates = total_updates if o.schedule == 'cosine' else 1
  schedule = learning_rate_schedule(o, updates_per_epoch, total_updates)
  chain = []
  if o.max_grad_norm > 0:
    chain.append(optax.clip_by_global_norm(float(o.max_grad_norm)))
  if o.name == 'sgd':
    if o.weight_decay > 0:
      chain.append(optax.add_decayed_weights(float(o.weight_decay)))
    chain.append(optax.sgd(schedule, momentum=float(o.momentum) or None))
  elif o.name == 'adam':
    if o.weight_decay > 0:
      chain.append(optax.add_decayed_weights(float(o.weight_decay)))
    chain.append(optax.adam(schedule, b1=float(o.b1), b2=float(o.b2),
                            eps=float(o.eps)))
  elif o.name == 'adamw':
    chain.append(optax.adamw(schedule, b1=float(o.b1), b2=float(o.b2),
                             eps=float(o.eps),
                             weight_decay=float(o.weight_decay)))
  else:
    raise ValueError(f'Unknown optimizer {o.name!r}.')
  if o.averaging_start_step >= 0:
    chain.append(parameter_averaging(int(o.averaging_start_step)))
  optimizer = optax.chain(*chain)
  if o.grad_accum_steps > 1:
    optimizer = optax.MultiSteps(optimizer, int(o.grad_accum_steps))
  return optimizer, schedule

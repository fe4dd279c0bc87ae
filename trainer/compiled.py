"""Jit compilation and sharding of the steps: decided here, once.

:func:`compile_steps` builds the train state's abstract shape and its
shardings (from the parameters' logical axis names, ``partitioning``) and
jit-compiles :func:`~trainer.steps.train_step`, :func:`~trainer.steps.eval_step`,
the initialisation and the evaluation parameters with them. The training
loop, the evaluate command and inference (generate / translate / classify)
all get their compiled functions from here, so they place arrays the same
way.

Compiled steps are reused within a process (tests, evaluation after
training) when the computation is the same: the cache key is the model
module (its repr has every field), the task, the whole config except its
data section and the loop's own bookkeeping keys (:data:`LOOP_KEYS`), and
the one data value the compiled functions take in: the training batch size
(the rows of the carry held in the state; batches of other shapes retrace).
The exclusion list can only cause extra compiles if it misses a key, never a
stale step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from trainer import optimizers, partitioning
from trainer.steps import TrainState, eval_step, train_step
from trainer import task_base as base

PyTree = Any

# Config keys that steer the loop but never enter a compiled function.
LOOP_KEYS = ('mode', 'eval_split', 'checkpoint', 'seed', 'num_train_steps',
             'num_epochs', 'log_every_steps', 'eval_every_steps',
             'checkpoint_every_steps', 'keep_checkpoints',
             'keep_best_checkpoints', 'async_checkpoints',
             'progress_every_secs', 'max_loss', 'checkpoint_fallback', 'data')


@dataclasses.dataclass
class CompiledSteps:
  """The model, optimiser and jit-compiled functions of a run."""

  task: base.Task
  model: Any
  optimizer: optax.GradientTransformation
  schedule: optax.Schedule
  partitioner: partitioning.Partitioner
  state_shardings: TrainState
  abstract_state: TrainState  # ShapeDtypeStructs with their shardings.
  init: Callable[[jax.Array], TrainState]
  train: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
  eval: Callable[..., tuple[PyTree, dict[str, jax.Array]]]
  eval_params: Callable[[PyTree, PyTree], PyTree]
  _zero_carry: dict[int, Callable[[], PyTree]] = dataclasses.field(
      default_factory=dict)

  def zero_carry(self, batch_size: int) -> PyTree:
    """The task's zero carry for ``batch_size`` rows, sharded like the
    training carry (``None`` for tasks without one)."""
    if batch_size not in self._zero_carry:
      abstract = jax.eval_shape(
          lambda: self.task.initial_carry(self.model, batch_size))
      self._zero_carry[batch_size] = jax.jit(
          lambda: self.task.initial_carry(self.model, batch_size),
          out_shardings=jax.tree.map(
              lambda a: self.partitioner.carry_sharding(a.ndim), abstract))
    return self._zero_carry[batch_size]()

  def eval_context(self, state: TrainState,
                   eval_batch_size: int = 0) -> base.EvalContext:
    """What a task's ``evaluate`` needs: the parameters to evaluate (the
    running average under averaged SGD), the bound eval step, the zero
    carry and the batch placement."""
    params = state.params
    if optimizers.has_averaging(state.opt_state):
      params = self.eval_params(state.params, state.opt_state)
    return base.EvalContext(
        model=self.model, params=params,
        eval_step=functools.partial(self.eval, params),
        zero_carry=lambda: self.zero_carry(eval_batch_size),
        to_device=self.partitioner.global_batch)


_CACHE: dict[str, CompiledSteps] = {}


def _cache_key(task: base.Task, model: Any, config: ml_collections.ConfigDict,
               build_args: tuple[int, int, int],
               partitioner: partitioning.Partitioner) -> str:
  relevant = {k: v for k, v in config.to_dict().items() if k not in LOOP_KEYS}
  return json.dumps([type(task).__qualname__, repr(model), relevant,
                     build_args, [d.id for d in partitioner.mesh.devices.flat],
                     partitioner.model_size, partitioner.rules],
                    sort_keys=True, default=str)


def compile_steps(task: base.Task, model_inputs: dict[str, int],
                  updates_per_epoch: int, total_updates: int,
                  partitioner: partitioning.Partitioner) -> CompiledSteps:
  """Builds (or reuses, within a process) the jit-compiled steps of
  ``task``'s model, with ``model_inputs`` (``Datasets.model_inputs()``) the data
  sizes of the model.

  Raises:
    ConfigError: a parameter has no logical axis names, or a rule splits an
      axis the mesh does not divide.
  """
  config = task.config
  o = config.optimizer
  # Only the schedules that use them depend on these (keeps caches warm).
  updates_per_epoch = updates_per_epoch if o.schedule == 'zaremba' else 1
  total_updates = total_updates if o.schedule == 'cosine' else 1
  model = task.build_model(**model_inputs)
  # The one data value the compiled functions take in: the rows of the
  # training carry held in the state (the steps retrace for other shapes).
  batch_size = config.data.get('batch_size', 0)
  key = _cache_key(task, model, config,
                   (updates_per_epoch, total_updates, batch_size), partitioner)
  if key in _CACHE:
    cached = _CACHE[key]
    if cached.task is not task:  # Same computation; this run's task object.
      cached = dataclasses.replace(cached, task=task)
    return cached
  optimizer, schedule = optimizers.create_optimizer(
      o, updates_per_epoch, total_updates)

  def init(rng, unbox=True):
    params_rng, dropout_rng = jax.random.split(rng)
    params = task.init_variables(model, params_rng)
    if unbox:
      params = nn.unbox(params)
    return TrainState(
        step=jnp.zeros([], jnp.int32), params=params,
        opt_state=optimizer.init(params),
        carry=task.initial_carry(model, batch_size), rng=dropout_rng)

  rng_shape = jax.ShapeDtypeStruct((2,), jnp.uint32)
  boxed = jax.eval_shape(functools.partial(init, unbox=False), rng_shape)
  partitioning.check_named(boxed.params)
  p = partitioner
  shardings = TrainState(
      step=p.replicated,
      params=p.tree_shardings(boxed.params),
      opt_state=p.tree_shardings(boxed.opt_state),
      carry=jax.tree.map(lambda a: p.carry_sharding(a.ndim), boxed.carry),
      rng=p.replicated)
  abstract = jax.eval_shape(init, rng_shape)
  abstract_state = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, shardings)
  batch_sharding = p.batch_sharding()
  train = jax.jit(
      functools.partial(train_step, task=task, model=model,
                        optimizer=optimizer, schedule=schedule,
                        grad_accum_steps=o.grad_accum_steps),
      in_shardings=(shardings, batch_sharding, p.replicated),
      out_shardings=(shardings, p.replicated), donate_argnums=(0,))
  evaluate = jax.jit(
      functools.partial(eval_step, task=task, model=model),
      in_shardings=(shardings.params, None, batch_sharding),
      out_shardings=(None, p.replicated))
  compiled = CompiledSteps(
      task=task, model=model, optimizer=optimizer, schedule=schedule,
      partitioner=p, state_shardings=shardings, abstract_state=abstract_state,
      init=jax.jit(init, in_shardings=p.replicated, out_shardings=shardings),
      train=train, eval=evaluate,
      eval_params=jax.jit(optimizers.eval_params,
                          in_shardings=(shardings.params, shardings.opt_state),
                          out_shardings=shardings.params))
  _CACHE[key] = compiled
  return compiled

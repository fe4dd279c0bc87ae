"""The pure training and evaluation steps (jit-compiled in ``compiled``).

:func:`train_step` differentiates the task's objective, applies the optax
update and returns the task's metric *sums* (a loss sum and its weight, as
in Flax's lm1b example, plus anything else the task counts), the gradient
norm and the learning rate, so metrics aggregate exactly over steps and
devices. :func:`eval_step` scores one batch deterministically. Neither knows
which task it runs: the :class:`~trainer.task_base.Task` supplies the loss.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from trainer import task_base as base

PyTree = Any
Batch = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything a step changes; checkpointed as one pytree."""

  step: jax.Array  # int32 []: batches trained on.
  params: PyTree
  opt_state: PyTree
  # The task's carry between batches (LM: LSTM state, leaves
  # [layers, batch, features]); None for tasks without one.
  carry: PyTree
  rng: jax.Array  # uint32 [2]: dropout key of step s = fold_in(rng, s).


def train_step(state: TrainState, batch: Batch, reset: jax.Array, *,
               task: base.Task, model: Any,
               optimizer: optax.GradientTransformation,
               schedule: optax.Schedule, grad_accum_steps: int = 1
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One training step.

  Args:
    state: the train state; ``state.carry`` is the task's carry at the end
      of the previous batch.
    batch: the task's device batch (``Datasets.device_batch``), sharded over
      the data-parallel devices.
    reset: bool ``[]``: start from a zero carry (e.g. an epoch's first batch).

  Returns:
    (new state, metrics: the task's sums plus ``grad_norm`` and
    ``learning_rate``).
  """
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    return task.loss_fn(model, params, state.carry, batch, reset, dropout_rng)

  grads, (sums, new_carry) = jax.grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
      **sums,
      'grad_norm': optax.tree.norm(grads),
      'learning_rate': jnp.asarray(
          schedule(state.step // grad_accum_steps), jnp.float32),
  }
  new_state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state,
      carry=jax.lax.stop_gradient(new_carry))
  return new_state, metrics


def eval_step(params: PyTree, carry: PyTree, batch: Batch, *,
              task: base.Task, model: Any
              ) -> tuple[PyTree, dict[str, jax.Array]]:
  """Scores one batch: (carry for the next batch, the task's sums)."""
  return task.eval_fn(model, params, carry, batch)

"""The training loop: resume, train, evaluate, checkpoint, stop cleanly.

:func:`train_and_evaluate` takes the task the command built (its config
resolved), resumes from the workdir's latest checkpoint (refusing one whose
parameter, optimiser-state or carry shapes, tokenizer or data signature
differ, naming the config fields that changed), gets its steps from
:mod:`trainer.compiled`, writes metrics with clu (sums over steps divided
by their weight, as in Flax's lm1b example), evaluates and checkpoints every
N steps and at the end, keeps the best checkpoints by the task's validation
metric, saves on SIGTERM (or at Orbax's multi-host preemption sync point)
and exits, and stops with the step number when the loss becomes NaN or
infinite. It never names a task: everything task-specific comes from the
:class:`~trainer.task_base.Task` and its ``Datasets``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from input_pipeline import errors as input_errors
from trainer import checkpoints, compiled, config_lib, errors
from trainer import metrics as metrics_lib
from trainer import partitioning, workdir_lock
from trainer import preemption as preemption_lib
from trainer.steps import TrainState
from trainer import task_base as base

CONFIG_FILE = 'config.json'  # The resolved config of the run, in the workdir.
# Per-step metrics that are not sums (everything else a step returns is).
_NOT_SUMS = ('grad_norm', 'learning_rate')


class EpochTracker:
  """Which epoch a global step is in, and whether it starts one.

  Fixed epochs: every epoch has ``steps_per_epoch`` batches. Otherwise
  (random windows, length buckets) epoch lengths differ and come from the
  task's per-epoch plan.
  """

  def __init__(self, steps_per_epoch: int,
               epoch_length: Callable[[int], int] | None = None):
    self.steps_per_epoch = steps_per_epoch
    self._length = epoch_length  # None: every epoch has steps_per_epoch.
    self._starts = [0]

  def _extend(self, step: int) -> None:
    while self._starts[-1] <= step:
      epoch = len(self._starts) - 1
      self._starts.append(self._starts[-1] + max(1, self._length(epoch)))

  def epoch(self, step: int) -> int:
    """The epoch (from 0) of the batch with index ``step``."""
    if self._length is None:
      return step // self.steps_per_epoch
    self._extend(step)
    return int(np.searchsorted(self._starts, step, side='right')) - 1

  def is_epoch_start(self, step: int) -> bool:
    if self._length is None:
      return step % self.steps_per_epoch == 0
    self._extend(step)
    return step in self._starts

  def steps_for_epochs(self, num_epochs: int) -> int:
    if self._length is None:
      return num_epochs * self.steps_per_epoch
    self._extend(0)
    while len(self._starts) <= num_epochs:
      self._extend(self._starts[-1])
    return self._starts[num_epochs]


# ------------------------------------------------------------ resume checks --


def state_shapes(abstract_state: TrainState) -> dict[str, str]:
  """'params/lstm/...': 'float32[16,4,16]' for every array of the state a
  resume must match (parameters, optimiser state, carry)."""
  out = {}
  for name in ('params', 'opt_state', 'carry'):
    for path, leaf in jax.tree_util.tree_flatten_with_path(
        getattr(abstract_state, name))[0]:
      key = name + jax.tree_util.keystr(path)
      out[key] = f'{leaf.dtype}{list(leaf.shape)}'
  return out


def check_resumable(ckpt: checkpoints.Checkpointer, step: int,
                    signature: Mapping[str, Any],
                    config: ml_collections.ConfigDict) -> None:
  """Raises CheckpointMismatchError naming what differs when the
  checkpoint at ``step`` cannot be resumed with ``config``."""
  meta = ckpt.read_meta(step)
  saved = meta.get('signature', {})
  # As saved (JSON): a tuple given now equals the list it was saved as.
  signature = json.loads(json.dumps(signature))
  differences = [
      f'{key}: checkpoint has {saved.get(key)!r}, config gives {value!r}'
      for key, value in signature.items()
      if key != 'shapes' and saved.get(key) != value]
  shapes_now, shapes_then = signature['shapes'], saved.get('shapes', {})
  changed = sorted(k for k in set(shapes_now) | set(shapes_then)
                   if shapes_now.get(k) != shapes_then.get(k))
  if changed:
    differences = config_lib.config_differences(
        meta.get('config', {}), config, ('model', 'optimizer', 'data')
    ) + differences + [
        f'{len(changed)} state arrays differ, e.g. ' + '; '.join(
            f'{k}: {shapes_then.get(k, "absent")} -> {shapes_now.get(k, "absent")}'
            for k in changed[:3])]
  if differences:
    raise errors.CheckpointMismatchError(
        f'The workdir holds a checkpoint (step {step}, in {ckpt.directory}) '
        'of a different model than this config describes; refusing to '
        'resume or overwrite it. Differing fields: ' + '; '.join(differences)
        + '. Restore the config the run was started with, or use a fresh '
        '--workdir.')


def _load_datasets(task: base.Task, workdir: str,
                   ckpt: checkpoints.Checkpointer, latest: int | None
                   ) -> base.Datasets:
  """The datasets; a tokenizer mismatch with an existing checkpoint is
  reported as a CheckpointMismatchError naming the data fields that differ."""
  try:
    return task.load_datasets(workdir)
  except input_errors.VocabularyMismatchError as e:
    if latest is None:
      raise
    fields = config_lib.config_differences(ckpt.read_meta(latest).get('config', {}),
                                task.config, ('data',))
    raise errors.CheckpointMismatchError(
        f'The workdir holds a checkpoint (step {latest}) whose vocabulary '
        'differs from the one this config builds; refusing to resume or '
        'overwrite it. Differing fields: ' + ('; '.join(fields) or 'the data')
        + f'. ({e})') from e


def _meta(config: ml_collections.ConfigDict, task: base.Task,
          signature: dict[str, Any], model_inputs: dict[str, int], step: int,
          tracker: EpochTracker, datasets: base.Datasets,
          validation_pending: bool = False) -> dict[str, Any]:
  return {
      'step': step,
      # A SIGTERM stopped this step's validation: the resumed run does it.
      'validation_pending': validation_pending,
      'task': task.name,
      'model_inputs': model_inputs,
      'input_pipeline': {'next_step': step, 'epoch': tracker.epoch(step),
                         'steps_per_epoch': tracker.steps_per_epoch},
      'tokenizer': {'directory': 'tokenizer',
                    'kind': datasets.tokenizer.kind,
                    'vocab_size': datasets.tokenizer.vocab_size,
                    'fingerprint': datasets.tokenizer.fingerprint()},
      'signature': signature,
      'process_count': jax.process_count(),
      'device_count': jax.device_count(),
      'config': json.loads(config.to_json_best_effort()),
  }


def _flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  out = {}

  def visit(prefix, value):
    if isinstance(value, dict):
      for k, v in value.items():
        visit(f'{prefix}{k}.', v)
    elif isinstance(value, (int, float, str, bool)):
      out[prefix.rstrip('.')] = value

  visit('', config.to_dict())
  return out


# ------------------------------------------------------------------ loop ----


def train_and_evaluate(task: base.Task, workdir: str) -> dict[str, float]:
  """Trains ``task`` (``task.config``: the resolved config), resuming from
  the workdir's latest checkpoint, and evaluates.

  Returns:
    The last validation metrics; ``{}`` for a run stopped by a signal (or a
    preemption) before its end.

  Raises:
    BatchSizeError: a batch size the devices do not divide.
    CheckpointMismatchError: the workdir's checkpoint is of another model.
    NonFiniteLossError: the loss became NaN / inf (the last good checkpoint
      stays the latest).
    CheckpointSaveError: a checkpoint could not be written.
    WorkdirError: another run holds the workdir (``workdir_lock``), or it is
      a file or cannot be written.
  """
  config = task.config
  partitioner = partitioning.Partitioner(config.model_parallelism,
                                         config.logical_axis_rules)
  task.check_batch_sizes(partitioner.check_batch_size)
  with workdir_lock.hold(workdir, primary=jax.process_index() == 0), \
      metrics_lib.orbax_errors_to_file(
          os.path.join(workdir, checkpoints.CHECKPOINT_LOG)):
    ckpt = checkpoints.Checkpointer(
        workdir, keep=config.keep_checkpoints,
        keep_best=config.keep_best_checkpoints,
        async_save=config.async_checkpoints)
    try:
      return _train(config, task, workdir, partitioner, ckpt)
    finally:
      ckpt.close()


def _train(config: ml_collections.ConfigDict, task: base.Task, workdir: str,
           partitioner: partitioning.Partitioner,
           ckpt: checkpoints.Checkpointer) -> dict[str, float]:
  latest = ckpt.latest_intact_step(config.checkpoint_fallback,
                                   primary=jax.process_index() == 0)
  datasets = _load_datasets(task, workdir, ckpt, latest)
  tracker = EpochTracker(*datasets.epoch_length())
  num_steps = (config.num_train_steps if config.num_train_steps > 0 else
               tracker.steps_for_epochs(config.num_epochs))
  accum = config.optimizer.grad_accum_steps
  model_inputs = datasets.model_inputs()
  steps = compiled.compile_steps(
      task, model_inputs, max(1, tracker.steps_per_epoch // accum),
      max(1, num_steps // accum), partitioner)
  signature = {**datasets.signature(),
               'shapes': state_shapes(steps.abstract_state)}
  if latest is not None:
    check_resumable(ckpt, latest, signature, config)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, CONFIG_FILE), 'w', encoding='utf-8') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')
  validation_pending = False
  # A restore that fails falls back to an older checkpoint in place.
  restored = None if latest is None else ckpt.restore_newest(
      latest, steps.abstract_state, fallback=config.checkpoint_fallback,
      primary=jax.process_index() == 0,
      check=lambda step: check_resumable(ckpt, step, signature, config))
  if restored is None:
    state = steps.init(jax.random.PRNGKey(config.seed))
    transferred = task.transfer_params(jax.device_get(state.params))
    if transferred is not None:
      state = state.replace(params=jax.device_put(
          transferred, steps.state_shardings.params))
    start = 0
  else:
    _, state, meta = restored
    start = int(meta['input_pipeline']['next_step'])
    validation_pending = bool(meta.get('validation_pending'))
    logging.info('Resumed from the checkpoint of step %d.', start)
  if jax.process_index() == 0:  # Steps after the checkpoint are replayed;
    # a fresh start (a run killed before its first save) replays them all.
    metrics_lib.drop_rows_after(workdir, start if start else -1)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  logging.info('The model has %s parameters.', f'{num_params:,}')
  writer = metrics_lib.create_writer(workdir)
  if start == 0:
    writer.write_hparams({**_flat_hparams(config), 'num_params': num_params})
  eval_every = config.eval_every_steps or tracker.steps_per_epoch
  eval_batch_size = int(config.data.get('eval_batch_size', 0))
  report = metrics_lib.progress_reporter(num_steps, writer,
                                        config.progress_every_secs)
  best = task.best_metric
  pending: list[dict[str, jax.Array]] = []
  loss_bound: dict[str, float] = {}  # 'max': set from the first loss.
  window = {'time': time.perf_counter(), 'tokens': 0.0}
  last_eval: dict[str, float] = {}

  def flush(step: int) -> None:
    """Writes the metrics of the steps since the last flush; raises on
    NaN / inf loss with the first bad step."""
    if not pending:
      return
    fetched = jax.device_get(pending)
    first = step - len(fetched)
    for i, m in enumerate(fetched):
      loss = float(m['loss_sum']) / max(float(m['weight']), 1.0)
      if 'max' not in loss_bound and math.isfinite(loss):
        loss_bound['max'] = config.max_loss or 1e4 * max(abs(loss), 1.0)
      if not math.isfinite(loss) or loss > loss_bound.get('max', math.inf):
        ckpt.wait()  # Earlier (good) saves complete; this state is never saved.
        what = (f'{loss}' if not math.isfinite(loss) else
                f'{loss:.4g}, above max_loss={loss_bound["max"]:.4g}' + (
                    '' if config.max_loss else ' (1e4 x the first loss)'))
        raise errors.NonFiniteLossError(
            f'The training loss is {what} at step {first + i + 1}; '
            'stopping. The last good '
            f'checkpoint (step {ckpt.latest_step()}) stays the latest. Lower '
            'optimizer.learning_rate or set optimizer.max_grad_norm.')
    sums = base.sum_metrics({k: v for k, v in m.items() if k not in _NOT_SUMS}
                            for m in fetched)
    now = time.perf_counter()
    elapsed = max(now - window['time'], 1e-9)
    scalars = task.summarize('train', sums)
    scalars.update({
        'learning_rate': float(fetched[-1]['learning_rate']),
        'grad_norm': float(np.mean([m['grad_norm'] for m in fetched])),
        'train_steps_per_sec': len(fetched) / elapsed,
        'train_tokens_per_sec': window['tokens'] / elapsed,
        'epoch': float(tracker.epoch(step - 1)),
    })
    writer.write_scalars(step, {k: v if abs(v) < 3e38 else math.copysign(
        math.inf, v) for k, v in scalars.items()})
    pending.clear()
    window.update(time=now, tokens=0.0)

  def validate(step: int,
               preemption: preemption_lib.PreemptionHandler) -> dict[str, float]:
    """Validation metrics of ``step`` (written); ValidationInterrupted if a
    SIGTERM arrives meanwhile."""
    with report.timed('eval'):
      result = task.evaluate(
          preemption_lib.interruptible(
              steps.eval_context(state, eval_batch_size),
              lambda: preemption.requested), datasets, 'valid')
    writer.write_scalars(step, result)
    return result

  if validation_pending:
    with preemption_lib.PreemptionHandler() as preemption:
      logging.info('Validating step %d, which a stop interrupted.', start)
      try:
        last_eval = validate(start, preemption)
      except preemption_lib.ValidationInterrupted:
        logging.warning('Stopped again during the validation of step %d; '
                        'exiting (it runs on the next resume).', start)
        return {}
      finally:
        writer.flush()
  if start >= num_steps:
    logging.info('The run is complete (step %d of %d).', start, num_steps)
    return last_eval
  train_iter = datasets.train_batches(start)
  with preemption_lib.PreemptionHandler() as preemption:
    try:
      for step in range(start, num_steps):
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          local = next(train_iter)
          reset = np.asarray(datasets.resets_carry(tracker.is_epoch_start(step)))
          batch = partitioner.global_batch(datasets.device_batch(local))
          state, step_metrics = steps.train(state, batch, reset)
        pending.append(step_metrics)
        window['tokens'] += datasets.batch_tokens(local) * jax.process_count()
        done = step + 1
        report(done)
        last = done == num_steps
        preempted = preemption.requested or (
            jax.process_count() > 1 and ckpt.reached_preemption(done))
        do_eval = last or done % eval_every == 0
        # Evaluated steps are saved too, so the best checkpoints exist.
        do_save = (last or preempted or do_eval or
                   done % config.checkpoint_every_steps == 0)
        if do_save or do_eval or done % config.log_every_steps == 0:
          flush(done)
        validated = False  # This step's validation ran to the end.
        if do_eval and not preempted:
          try:
            last_eval = validate(done, preemption)
            validated = True
          except preemption_lib.ValidationInterrupted:
            # Save at once; the resumed run validates.
            logging.warning('Stopped the validation of step %d for the '
                            'stop request.', done)
            preempted = True
        if do_save:
          # A validation that a stop interrupted or came before is left
          # pending: the resumed run does it first.
          ckpt.save(done, state,
                    _meta(config, task, signature, model_inputs, done, tracker,
                          datasets, validation_pending=do_eval and not validated),
                    metrics=(checkpoints.best_metrics(last_eval, best.name,
                                                      best.mode)
                             if validated else None))
        if preempted:
          ckpt.wait()
          logging.warning('Preempted: saved the checkpoint of step %d; '
                          'exiting.', done)
          last_eval = {}  # Not this step's; the resumed run reports.
          break
      ckpt.wait()
    finally:
      writer.flush()
      with contextlib.suppress(Exception):
        ckpt.manager.wait_until_finished()
  return last_eval

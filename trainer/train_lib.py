"""Training and evaluation of LSTM language models and translation models.

The pure functions come first: :func:`train_step` (one step; for language
models truncated BPTT: the carry of the previous batch starts this one, with
its gradient stopped, and is reset to zero at each epoch start) and
:func:`eval_step`. The loss is the masked token cross-entropy *sum* with the
token count as denominator, as in Flax's lm1b example, so padded positions
count for nothing and metrics aggregate exactly over steps and devices.
What differs between tasks (model, batches, loss, carry, evaluation with
BLEU) comes from :mod:`trainer.tasks`, selected by ``config.task``.

The loop at the bottom (:func:`train_and_evaluate`) resumes from the
workdir's latest checkpoint, jit-compiles the steps with the shardings of
:mod:`trainer.partitioning`, writes metrics with clu, evaluates and
checkpoints every N steps and at the end, saves on SIGTERM (or at Orbax's
multi-host preemption sync point) and exits, and stops with the step number
when the loss becomes NaN or infinite. :func:`evaluate` scores a checkpoint
on any split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import signal
import threading
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from input_pipeline import tokenizers as tokenizers_lib
from input_pipeline import errors as input_errors
from lstm_flax import kernel
from lstm_flax.models import LanguageModel
from trainer import checkpoints, config_lib, errors, metrics as metrics_lib
from trainer import optimizers, partitioning, tasks as tasks_lib

PyTree = Any
Batch = dict[str, jax.Array]
CONFIG_FILE = 'config.json'  # The resolved config of the run, in the workdir.
_DTYPES = tasks_lib.DTYPES
loss_sums = tasks_lib.loss_sums
summarize = tasks_lib.summarize


@flax.struct.dataclass
class TrainState:
  """Everything a step changes; checkpointed as one pytree."""

  step: jax.Array  # int32 []: batches trained on.
  params: PyTree
  opt_state: PyTree
  # LM: h [L, B, P], c [L, B, H], the next batch's start; translation: None.
  carry: kernel.LSTMState | None
  rng: jax.Array  # uint32 [2]: dropout key of step s = fold_in(rng, s).


def build_model(model_config: ml_collections.ConfigDict,
                vocab_size: int) -> LanguageModel:
  """The language model of ``model_config`` (see ``tasks.LMTask``)."""
  config = ml_collections.ConfigDict({'task': 'lm', 'model': model_config})
  return tasks_lib.LMTask(config).build_model(vocab_size)


# ----------------------------------------------------------- pure steps -----


def train_step(state: TrainState, batch: Batch, reset: jax.Array, *,
               model: Any, optimizer: optax.GradientTransformation,
               schedule: optax.Schedule, grad_accum_steps: int = 1,
               task: tasks_lib.Task | None = None
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One training step (for language models, truncated BPTT).

  Args:
    state: the train state; for language models ``state.carry`` is the LSTM
      state at the end of the previous batch.
    batch: LM: ``inputs``, ``targets`` int32 ``[B, T]``, ``mask`` float32;
      translation: ``source``, ``target_input``, ``target_output``,
      ``source_mask``, ``target_mask``.
    reset: bool ``[]``: LM: start from a zero carry (first batch of an
      epoch, or independent sentences).
    task: the task's loss (default: the language model's).

  Returns:
    (new state, metrics: ``loss_sum``, ``weight``, ``grad_norm``,
    ``learning_rate``).
  """
  task = task or tasks_lib.LMTask(ml_collections.ConfigDict())
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    return task.train_loss(model, params, state.carry, batch, reset,
                           dropout_rng)

  grads, (loss_sum, weight, new_carry) = jax.grad(loss_fn, has_aux=True)(
      state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
      'loss_sum': loss_sum,
      'weight': weight,
      'grad_norm': optax.tree.norm(grads),
      'learning_rate': jnp.asarray(
          schedule(state.step // grad_accum_steps), jnp.float32),
  }
  new_state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state,
      carry=jax.lax.stop_gradient(new_carry))
  return new_state, metrics


def eval_step(params: PyTree, carry: PyTree, batch: Batch, *,
              model: Any, reset: bool = False,
              task: tasks_lib.Task | None = None
              ) -> tuple[PyTree, dict[str, jax.Array]]:
  """Scores one batch; returns (carry for the next batch, loss sums)."""
  task = task or tasks_lib.LMTask(ml_collections.ConfigDict())
  if reset:
    carry = jax.tree.map(jnp.zeros_like, carry)
  carry, loss_sum, weight = task.eval_loss(model, params, carry, batch)
  return carry, {'loss_sum': loss_sum, 'weight': weight}


# ------------------------------------------------------------ run setup -----


class EpochTracker:
  """Which epoch a global step is in, and whether it starts one.

  Fixed stream windows: every epoch has ``steps_per_epoch`` batches. AWD-LSTM
  random windows and translation buckets: epoch lengths differ and are taken
  from the batcher's per-epoch plan.
  """

  def __init__(self, datasets: Any, task: tasks_lib.Task | None = None):
    task = task or tasks_lib.LMTask(ml_collections.ConfigDict())
    self.steps_per_epoch, self._length = task.epoch_length(datasets)
    self._batcher = self._length  # None: every epoch has steps_per_epoch.
    self._starts = [0]

  def _extend(self, step: int) -> None:
    while self._starts[-1] <= step:
      epoch = len(self._starts) - 1
      self._starts.append(self._starts[-1] + max(1, self._length(epoch)))

  def epoch(self, step: int) -> int:
    """The epoch (from 0) of the batch with index ``step``."""
    if self._batcher is None:
      return step // self.steps_per_epoch
    self._extend(step)
    return int(np.searchsorted(self._starts, step, side='right')) - 1

  def is_epoch_start(self, step: int) -> bool:
    if self._batcher is None:
      return step % self.steps_per_epoch == 0
    self._extend(step)
    return step in self._starts

  def steps_for_epochs(self, num_epochs: int) -> int:
    if self._batcher is None:
      return num_epochs * self.steps_per_epoch
    self._extend(0)
    while len(self._starts) <= num_epochs:
      self._extend(self._starts[-1])
    return self._starts[num_epochs]


def run_signature(config: ml_collections.ConfigDict,
                  tokenizer: Any) -> dict[str, Any]:
  """What a checkpoint must share with the config to be resumed."""
  signature = tasks_lib.get_task(config).signature(tokenizer)
  if config.get('task', 'lm') != 'lm':
    signature['task'] = config.task
  return signature


@dataclasses.dataclass
class Steps:
  """The model, optimiser and jit-compiled steps of a run."""

  model: Any  # LanguageModel or Seq2Seq
  task: tasks_lib.Task
  optimizer: optax.GradientTransformation
  schedule: optax.Schedule
  partitioner: partitioning.Partitioner
  state_shardings: TrainState
  abstract_state: TrainState
  init: Any  # (rng) -> TrainState
  train: Any  # (state, batch, reset) -> (state, metrics)
  eval: Any  # (params, carry, batch) -> (carry, metrics)
  eval_reset: Any  # same, from a zero carry every batch (sentences)
  eval_params: Any  # (params, opt_state) -> params to evaluate
  eval_carry: Any  # () -> zero eval carry


_STEPS_CACHE: dict[str, Steps] = {}


def make_steps(config: ml_collections.ConfigDict, vocab_size: int,
               updates_per_epoch: int, total_updates: int,
               partitioner: partitioning.Partitioner) -> Steps:
  """Builds (or reuses, within a process) the jit-compiled steps."""
  if config.optimizer.schedule != 'zaremba':
    updates_per_epoch = 1  # Only these schedules use them (see optimizers).
  if config.optimizer.schedule != 'cosine':
    total_updates = 1
  task = tasks_lib.get_task(config)
  key = json.dumps([task.name, config.model.to_dict(),
                    config.optimizer.to_dict(),
                    config.get('label_smoothing'),
                    config.decode.to_dict() if 'decode' in config else None,
                    config.data.get('batch_size'),
                    config.data.get('eval_batch_size'), vocab_size, updates_per_epoch, total_updates,
                    [d.id for d in partitioner.mesh.devices.flat],
                    partitioner.model_size], sort_keys=True, default=str)
  if key in _STEPS_CACHE:
    return _STEPS_CACHE[key]
  model = task.build_model(vocab_size)
  optimizer, schedule = optimizers.create_optimizer(
      config.optimizer, updates_per_epoch, total_updates)
  batch_size = config.data.get('batch_size', 0)
  eval_batch_size = config.data.get('eval_batch_size', 0)

  def init(rng):
    params_rng, dropout_rng = jax.random.split(rng)
    params = task.init_params(model, params_rng)
    return TrainState(
        step=jnp.zeros([], jnp.int32), params=params,
        opt_state=optimizer.init(params),
        carry=task.initial_carry(model, batch_size), rng=dropout_rng)

  abstract = jax.eval_shape(init, jax.ShapeDtypeStruct((2,), jnp.uint32))
  p = partitioner
  shardings = TrainState(
      step=p.replicated,
      params=p.tree_shardings(abstract.params),
      opt_state=p.tree_shardings(abstract.opt_state),
      carry=jax.tree.map(lambda _: p.carry_sharding(), abstract.carry),
      rng=p.replicated)
  abstract_state = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, shardings)
  batch_sharding = p.batch_sharding(2)
  carry_shardings = shardings.carry
  train = jax.jit(
      functools.partial(train_step, model=model, optimizer=optimizer,
                        schedule=schedule,
                        grad_accum_steps=config.optimizer.grad_accum_steps,
                        task=task),
      in_shardings=(shardings, batch_sharding, p.replicated),
      out_shardings=(shardings, p.replicated), donate_argnums=(0,))
  evals = {}
  for reset in (False, True):
    evals[reset] = jax.jit(
        functools.partial(eval_step, model=model, reset=reset, task=task),
        in_shardings=(shardings.params, carry_shardings, batch_sharding),
        out_shardings=(carry_shardings, p.replicated), donate_argnums=(1,))
  steps = Steps(
      model=model, task=task, optimizer=optimizer, schedule=schedule, partitioner=p,
      state_shardings=shardings, abstract_state=abstract_state,
      init=jax.jit(init, in_shardings=p.replicated, out_shardings=shardings),
      train=train, eval=evals[False], eval_reset=evals[True],
      eval_params=jax.jit(optimizers.eval_params,
                          in_shardings=(shardings.params,
                                        shardings.opt_state),
                          out_shardings=shardings.params),
      eval_carry=jax.jit(lambda: task.initial_carry(model, eval_batch_size),
                         out_shardings=carry_shardings))
  _STEPS_CACHE[key] = steps
  return steps


def _load_datasets(config: ml_collections.ConfigDict, workdir: str,
                   ckpt: checkpoints.Checkpointer | None,
                   latest: int | None) -> Any:
  """The datasets; a tokenizer mismatch with an existing checkpoint is
  reported as a CheckpointMismatchError naming the data fields that differ."""
  try:
    return tasks_lib.get_task(config).load_datasets(workdir)
  except input_errors.VocabularyMismatchError as e:
    if ckpt is None or latest is None:
      raise
    saved = ckpt.read_meta(latest).get('config', {}).get('data', {})
    now = config.data.to_dict()
    fields = [f'data.{k}: checkpoint has {saved.get(k)!r}, config gives '
              f'{now.get(k)!r}' for k in sorted(now)
              if k in saved and saved.get(k) != now.get(k)]
    raise errors.CheckpointMismatchError(
        f'The workdir holds a checkpoint (step {latest}) whose vocabulary '
        'differs from the one this config builds; refusing to resume or '
        'overwrite it. Differing fields: ' + ('; '.join(fields) or 'the data')
        + f'. ({e})') from e


def _check_config(config: ml_collections.ConfigDict,
                  partitioner: partitioning.Partitioner) -> None:
  tasks_lib.get_task(config).check_config(partitioner)


# ----------------------------------------------------------- evaluation -----


def evaluate_split(steps: Steps, state: TrainState, datasets: Any,
                   split: str) -> dict[str, float]:
  """The metrics of ``split``: LM: loss / perplexity (every token once, the
  carry flowing from batch to batch as in training), bits per char for char
  models; translation: also corpus BLEU and chrF of the decoded output."""
  return steps.task.evaluate(steps, state, datasets, split)


_has_averaging = tasks_lib.has_averaging


# ---------------------------------------------------------------- loop ------


class PreemptionHandler:
  """Turns SIGTERM into a flag the loop polls (single process).

  On several processes JAX's preemption service catches SIGTERM and the loop
  asks Orbax's sync point (``reached_preemption``) instead, so that every
  host saves at the same step.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if (jax.process_count() == 1 and
        threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning('Received signal %d: saving a checkpoint and exiting.',
                    signum)
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False


def _meta(config: ml_collections.ConfigDict, signature: dict[str, Any],
          step: int, tracker: EpochTracker, datasets: Any) -> dict[str, Any]:
  return {
      'step': step,
      'task': config.get('task', 'lm'),
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


def train_and_evaluate(config: ml_collections.ConfigDict | dict,
                       workdir: str) -> dict[str, float]:
  """Trains (resuming from the workdir's latest checkpoint) and evaluates.

  Returns:
    The last validation metrics.

  Raises:
    ConfigError / BatchSizeError: invalid config.
    CheckpointMismatchError: the workdir's checkpoint is of another model.
    NonFiniteLossError: the loss became NaN / inf (the last good checkpoint
      stays the latest).
    CheckpointSaveError: a checkpoint could not be written.
  """
  config = config_lib.resolve(config)
  partitioner = partitioning.Partitioner(config.model_parallelism)
  _check_config(config, partitioner)
  ckpt = checkpoints.Checkpointer(
      workdir, keep=config.keep_checkpoints,
      keep_best=config.keep_best_checkpoints,
      async_save=config.async_checkpoints)
  try:
    return _train(config, workdir, partitioner, ckpt)
  finally:
    ckpt.close()


def _train(config, workdir, partitioner, ckpt) -> dict[str, float]:
  latest = ckpt.latest_step()
  datasets = _load_datasets(config, workdir, ckpt, latest)
  signature = run_signature(config, datasets.tokenizer)
  if latest is not None:
    ckpt.check_compatible(latest, signature)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, CONFIG_FILE), 'w', encoding='utf-8') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')
  task = tasks_lib.get_task(config)
  tracker = EpochTracker(datasets, task)
  num_steps = (config.num_train_steps if config.num_train_steps > 0 else
               tracker.steps_for_epochs(config.num_epochs))
  accum = config.optimizer.grad_accum_steps
  steps = make_steps(config, datasets.vocab_size,
                     max(1, tracker.steps_per_epoch // accum),
                     max(1, num_steps // accum), partitioner)
  if latest is None:
    state = steps.init(jax.random.PRNGKey(config.seed))
    start = 0
  else:
    state, meta = ckpt.restore(latest, steps.abstract_state)
    start = int(meta['input_pipeline']['next_step'])
    logging.info('Resumed from the checkpoint of step %d.', start)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  logging.info('The model has %s parameters.', f'{num_params:,}')
  writer = metrics_lib.create_writer(workdir)
  if start == 0:
    writer.write_hparams({**_flat_hparams(config), 'num_params': num_params})
  eval_every = config.eval_every_steps or tracker.steps_per_epoch
  report = metrics_lib.progress_reporter(num_steps, writer,
                                        config.progress_every_secs)
  kind = datasets.tokenizer.kind
  pending: list[dict[str, jax.Array]] = []
  window = {'start': start, 'time': time.perf_counter(), 'tokens': 0.0}
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
      if not math.isfinite(loss):
        ckpt.wait()  # Earlier (good) saves complete; this state is never saved.
        raise errors.NonFiniteLossError(
            f'The training loss is {loss} at step {first + i + 1}; '
            'stopping. The last good '
            f'checkpoint (step {ckpt.latest_step()}) stays the latest. Lower '
            'optimizer.learning_rate or set optimizer.max_grad_norm.')
    loss_sum = sum(np.float64(m['loss_sum']) for m in fetched)
    weight = sum(np.float64(m['weight']) for m in fetched)
    now = time.perf_counter()
    elapsed = max(now - window['time'], 1e-9)
    scalars = summarize('train', float(loss_sum), float(weight), kind)
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

  if start >= num_steps:
    logging.info('The run is complete (step %d of %d).', start, num_steps)
    return last_eval
  train_iter = datasets.train_batches(start)
  with PreemptionHandler() as preemption:
    try:
      for step in range(start, num_steps):
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          local = next(train_iter)
          reset = np.asarray(task.resets_carry(
              datasets, tracker.is_epoch_start(step)))
          state, step_metrics = steps.train(
              state, partitioner.global_batch(task.device_batch(local)), reset)
        pending.append(step_metrics)
        window['tokens'] += task.batch_tokens(local) * jax.process_count()
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
        if do_eval and not preempted:
          with report.timed('eval'):
            last_eval = evaluate_split(steps, state, datasets, 'valid')
          writer.write_scalars(done, last_eval)
        if do_save:
          ckpt.save(done, state,
                    _meta(config, signature, done, tracker, datasets),
                    metrics=(checkpoints.best_metrics(last_eval)
                             if do_eval and last_eval else None))
        if preempted:
          ckpt.wait()
          logging.warning('Preempted: saved the checkpoint of step %d; '
                          'exiting.', done)
          break
      ckpt.wait()
    finally:
      writer.flush()
      with contextlib.suppress(Exception):
        ckpt.manager.wait_until_finished()
  return last_eval


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


_TASK_USES = {
    'lm': 'a language model (use generate.py, or train.py with '
          '--config.mode=evaluate and a language-model config)',
    'translation': 'a translation model (use translate.py, or train.py with '
                   '--config.mode=evaluate and a translation config)',
}


def checkpoint_task(meta: dict[str, Any]) -> str:
  """The task of a checkpoint's meta ('lm' for checkpoints from before
  tasks existed)."""
  return meta.get('task') or meta.get('config', {}).get('task', 'lm')


def _set_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  node = config
  *parents, leaf = key.split('.')
  for parent in parents:
    node = node[parent]
  node[leaf] = value


def checkpoint_tokenizer(workdir: str, meta: dict[str, Any], step: int) -> Any:
  """The tokenizer a checkpoint was trained with (saved in the workdir).

  Raises:
    CheckpointNotFoundError: the tokenizer directory the checkpoint names is
      missing.
    CheckpointMismatchError: the saved tokenizer is not the checkpoint's.
  """
  info = meta['tokenizer']
  directory = os.path.join(workdir, info['directory'])
  saved = tokenizers_lib.load_saved(directory)
  if saved is None:
    raise errors.CheckpointNotFoundError(
        f'The checkpoint of step {step} refers to the tokenizer in '
        f'{directory}, which is missing.')
  tokenizer = saved[0]
  if tokenizer.fingerprint() != info['fingerprint']:
    raise errors.CheckpointMismatchError(
        f'The tokenizer in {directory} is not the one the checkpoint of step '
        f'{step} was trained with.')
  return tokenizer


def restore_for_inference(workdir: str, which: str | int = 'latest', *,
                          eval_splits: tuple[str, ...] = (),
                          eval_batch_size: int | None = None,
                          model_parallelism: int = 1,
                          task: str | None = None,
                          overrides: dict[str, Any] | None = None):
  """Restores a checkpoint of ``workdir`` onto the current devices.

  The model, data and optimiser config are those saved with the checkpoint
  (``overrides``: dotted keys, e.g. ``{'decode.beam_size': 5}``, replace
  saved values).

  Args:
    task: the task the caller needs ('lm' or 'translation'); a checkpoint of
      another task is a CheckpointMismatchError saying what it is.
    eval_splits: LM: the splits to load; translation: one split, 'valid'
      for the run's validation split, else a file prefix (parallel text,
      e.g. 'test_2016_flickr') or a TFDS split name.

  Returns:
    (steps, state, meta, datasets or None, step). ``datasets`` (with
    ``eval_splits`` tokenised) is built only when ``eval_splits`` is given.
  """
  partitioner = partitioning.Partitioner(model_parallelism)
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  try:
    step = ckpt.resolve_step(config_lib.checkpoint_choice(which))
    meta = ckpt.read_meta(step)
    saved_task = checkpoint_task(meta)
    if task is not None and saved_task != task:
      raise errors.CheckpointMismatchError(
          f'The checkpoint of step {step} in {ckpt.directory} is '
          f'{_TASK_USES.get(saved_task, repr(saved_task))}, not '
          f'{_TASK_USES.get(task, repr(task)).split(" (")[0]} '
          f"(task {saved_task!r}, this needs task {task!r}).")
    config = config_lib.resolve(meta['config'])
    for key, value in (overrides or {}).items():
      _set_key(config, key, value)
    if config.task == 'lm':
      if eval_batch_size:
        config.data.eval_batch_size = eval_batch_size
      config.data.eval_splits = tuple(eval_splits)
    elif eval_splits and eval_splits[0] != 'valid':
      key = ('eval_prefix' if config.data.source == 'parallel_text' else
             'tfds_eval_split')
      config.data[key] = eval_splits[0]
    config_lib.validate(config)
    _check_config(config, partitioner)
    datasets = None
    vocab_size = meta['tokenizer']['vocab_size']
    if eval_splits:
      datasets = tasks_lib.get_task(config).load_datasets(workdir)
      vocab_size = datasets.vocab_size
    steps = make_steps(config, vocab_size, 1, 1, partitioner)
    state, meta = ckpt.restore(step, steps.abstract_state)
  finally:
    ckpt.close()
  return steps, state, meta, datasets, step


def evaluate(config: ml_collections.ConfigDict | dict,
             workdir: str) -> dict[str, float]:
  """Scores the checkpoint ``config.checkpoint`` ('latest', 'best' or a step)
  of ``workdir`` on ``config.eval_split``; prints and returns the metrics.

  The model and data config are those saved with the checkpoint; from
  ``config`` only ``task``, ``checkpoint``, ``eval_split``,
  ``data.eval_batch_size`` (LM), ``data.eval_tokens_per_batch`` and
  ``decode`` (translation) and ``model_parallelism`` are used. Translation:
  ``eval_split`` 'valid' is the run's validation split; any other value
  names a split (parallel text: the file prefix, e.g. 'test_2016_flickr';
  TFDS: the split name), scored with loss, perplexity, BLEU and chrF.
  """
  config = config_lib.resolve(config)
  split = config.eval_split
  overrides = {}
  if config.task == 'translation':
    overrides = {f'decode.{k}': v for k, v in config.decode.items()}
    overrides['data.eval_tokens_per_batch'] = (
        config.data.eval_tokens_per_batch)
    overrides['decode.eval_bleu'] = True
  steps, state, _, datasets, step = restore_for_inference(
      workdir, config.checkpoint, eval_splits=(split,),
      eval_batch_size=config.data.get('eval_batch_size'),
      model_parallelism=config.model_parallelism, task=config.task,
      overrides=overrides)
  result = evaluate_split(steps, state, datasets, split)
  writer = metrics_lib.create_writer(workdir)
  writer.write_scalars(step, {f'evaluate/{k}': v for k, v in result.items()})
  writer.flush()
  line = ', '.join(f'{k} = {v:.4f}' for k, v in result.items())
  print(f'Checkpoint step {step}, split {split!r}: {line}', flush=True)
  return result

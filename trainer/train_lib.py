"""Training and evaluation of LSTM language models.

The pure functions come first: :func:`train_step` (one truncated-BPTT step:
the carry of the previous batch starts this one, with its gradient stopped,
and is reset to zero at each epoch start) and :func:`eval_step`. The loss is
the masked token cross-entropy *sum* with the token count as denominator, as
in Flax's lm1b example, so padded positions count for nothing and metrics
aggregate exactly over steps and devices.

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

import input_pipeline
from input_pipeline import errors as input_errors
from lstm_flax import kernel
from lstm_flax.models import LanguageModel
from trainer import checkpoints, config_lib, errors, metrics as metrics_lib
from trainer import optimizers, partitioning
from clu import periodic_actions  # pylint: disable=g-bad-import-order  # After metrics (tensorboard check).

PyTree = Any
Batch = dict[str, jax.Array]
CONFIG_FILE = 'config.json'  # The resolved config of the run, in the workdir.
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16,
           'float16': jnp.float16}


@flax.struct.dataclass
class TrainState:
  """Everything a step changes; checkpointed as one pytree."""

  step: jax.Array  # int32 []: batches trained on.
  params: PyTree
  opt_state: PyTree
  carry: kernel.LSTMState  # h [L, B, P], c [L, B, H]: next batch's start.
  rng: jax.Array  # uint32 [2]: dropout key of step s = fold_in(rng, s).


def build_model(model_config: ml_collections.ConfigDict,
                vocab_size: int) -> LanguageModel:
  m = model_config
  return LanguageModel(
      vocab_size=vocab_size,
      embedding_size=m.embedding_size,
      hidden_size=m.hidden_size,
      num_layers=m.num_layers,
      proj_size=m.proj_size or None,
      tie_weights=m.tie_weights,
      embedding_dropout_rate=m.embedding_dropout_rate,
      input_dropout_rate=m.input_dropout_rate,
      dropout_rate=m.dropout_rate,
      output_dropout_rate=m.output_dropout_rate,
      weight_dropout_rate=m.weight_dropout_rate,
      variational_dropout=m.variational_dropout,
      forget_bias=m.forget_bias,
      init_scale=m.init_scale or None,
      dtype=_DTYPES[m.dtype],
      unroll=m.unroll,
      use_custom_vjp=m.use_custom_vjp,
  )


# ----------------------------------------------------------- pure steps -----


def loss_sums(logits: jax.Array, targets: jax.Array, mask: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
  """(sum of masked token cross-entropies, number of tokens)."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.sum(losses * mask), jnp.sum(mask)


def _reset(carry: kernel.LSTMState, reset: jax.Array) -> kernel.LSTMState:
  return jax.tree.map(lambda c: jnp.where(reset, jnp.zeros_like(c), c), carry)


def train_step(state: TrainState, batch: Batch, reset: jax.Array, *,
               model: LanguageModel, optimizer: optax.GradientTransformation,
               schedule: optax.Schedule, grad_accum_steps: int = 1
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One truncated-BPTT step.

  Args:
    state: the train state; ``state.carry`` is the LSTM state at the end of
      the previous batch.
    batch: ``inputs``, ``targets`` int32 ``[B, T]``, ``mask`` float32.
    reset: bool ``[]``: start from a zero carry (first batch of an epoch, or
      independent sentences).

  Returns:
    (new state, metrics: ``loss_sum``, ``weight``, ``grad_norm``,
    ``learning_rate``).
  """
  carry = jax.lax.stop_gradient(_reset(state.carry, reset))
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    logits, new_carry = model.apply(
        {'params': params}, batch['inputs'], carry, mask=batch['mask'],
        deterministic=False, rngs={'dropout': dropout_rng})
    loss_sum, weight = loss_sums(logits, batch['targets'], batch['mask'])
    return loss_sum / jnp.maximum(weight, 1.0), (loss_sum, weight, new_carry)

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


def eval_step(params: PyTree, carry: kernel.LSTMState, batch: Batch, *,
              model: LanguageModel, reset: bool = False
              ) -> tuple[kernel.LSTMState, dict[str, jax.Array]]:
  """Scores one batch; returns (carry for the next batch, loss sums)."""
  if reset:
    carry = jax.tree.map(jnp.zeros_like, carry)
  logits, carry = model.apply({'params': params}, batch['inputs'], carry,
                              mask=batch['mask'], deterministic=True)
  loss_sum, weight = loss_sums(logits, batch['targets'], batch['mask'])
  return carry, {'loss_sum': loss_sum, 'weight': weight}


# ------------------------------------------------------------ run setup -----


class EpochTracker:
  """Which epoch a global step is in, and whether it starts one.

  Fixed stream windows: every epoch has ``steps_per_epoch`` batches. AWD-LSTM
  random windows: epoch lengths differ and are taken from the batcher's
  per-epoch plan.
  """

  def __init__(self, datasets: input_pipeline.LMDatasets):
    cfg = datasets.config
    self.stream = cfg['batching'] == 'stream'
    self.steps_per_epoch = datasets.steps_per_epoch()
    self._batcher = (datasets.batcher('train')
                     if self.stream and cfg['random_window'] else None)
    self._starts = [0]

  def _extend(self, step: int) -> None:
    while self._starts[-1] <= step:
      epoch = len(self._starts) - 1
      self._starts.append(self._starts[-1] +
                          len(self._batcher.windows(epoch)))

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
  m, o = config.model, config.optimizer
  return {
      'vocab_size': tokenizer.vocab_size,
      'tokenizer_fingerprint': tokenizer.fingerprint(),
      'model.embedding_size': m.embedding_size,
      'model.hidden_size': m.hidden_size,
      'model.num_layers': m.num_layers,
      'model.proj_size': m.proj_size,
      'model.tie_weights': m.tie_weights,
      'data.batch_size': config.data.batch_size,
      'optimizer.name': o.name,
      'optimizer.momentum': o.momentum > 0,
      'optimizer.weight_decay': o.weight_decay > 0,
      'optimizer.max_grad_norm': o.max_grad_norm > 0,
      'optimizer.grad_accum_steps': o.grad_accum_steps,
      'optimizer.averaging': o.averaging_start_step >= 0,
  }


@dataclasses.dataclass
class Steps:
  """The model, optimiser and jit-compiled steps of a run."""

  model: LanguageModel
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
  key = json.dumps([config.model.to_dict(), config.optimizer.to_dict(),
                    config.data.batch_size, config.data.eval_batch_size,
                    vocab_size, updates_per_epoch, total_updates,
                    [d.id for d in partitioner.mesh.devices.flat],
                    partitioner.model_size], sort_keys=True, default=str)
  if key in _STEPS_CACHE:
    return _STEPS_CACHE[key]
  model = build_model(config.model, vocab_size)
  optimizer, schedule = optimizers.create_optimizer(
      config.optimizer, updates_per_epoch, total_updates)
  batch_size = config.data.batch_size
  eval_batch_size = config.data.eval_batch_size

  def init(rng):
    params_rng, dropout_rng = jax.random.split(rng)
    params = model.init(params_rng, jnp.zeros((1, 1), jnp.int32))['params']
    return TrainState(
        step=jnp.zeros([], jnp.int32), params=params,
        opt_state=optimizer.init(params),
        carry=model.initialize_carry(batch_size), rng=dropout_rng)

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
                        grad_accum_steps=config.optimizer.grad_accum_steps),
      in_shardings=(shardings, batch_sharding, p.replicated),
      out_shardings=(shardings, p.replicated), donate_argnums=(0,))
  evals = {}
  for reset in (False, True):
    evals[reset] = jax.jit(
        functools.partial(eval_step, model=model, reset=reset),
        in_shardings=(shardings.params, carry_shardings, batch_sharding),
        out_shardings=(carry_shardings, p.replicated), donate_argnums=(1,))
  steps = Steps(
      model=model, optimizer=optimizer, schedule=schedule, partitioner=p,
      state_shardings=shardings, abstract_state=abstract_state,
      init=jax.jit(init, in_shardings=p.replicated, out_shardings=shardings),
      train=train, eval=evals[False], eval_reset=evals[True],
      eval_params=jax.jit(optimizers.eval_params,
                          in_shardings=(shardings.params,
                                        shardings.opt_state),
                          out_shardings=shardings.params),
      eval_carry=jax.jit(lambda: model.initialize_carry(eval_batch_size),
                         out_shardings=carry_shardings))
  _STEPS_CACHE[key] = steps
  return steps


def _load_datasets(config: ml_collections.ConfigDict, workdir: str,
                   ckpt: checkpoints.Checkpointer | None,
                   latest: int | None) -> input_pipeline.LMDatasets:
  """The datasets; a tokenizer mismatch with an existing checkpoint is
  reported as a CheckpointMismatchError naming the data fields that differ."""
  try:
    return input_pipeline.get_lm_datasets(config.data, workdir)
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
  partitioner.check_batch_size(config.data.batch_size, 'data.batch_size')
  partitioner.check_batch_size(config.data.eval_batch_size,
                               'data.eval_batch_size')
  if config.data.batching == 'sentences' and config.data.packing:
    raise errors.ConfigError(
        'data.packing=True puts several sentences in one row, but the LSTM '
        'carry is not reset between them; use data.packing=False.')


# ----------------------------------------------------------- evaluation -----


def evaluate_split(steps: Steps, state: TrainState,
                   datasets: input_pipeline.LMDatasets,
                   split: str) -> dict[str, float]:
  """Loss / perplexity of ``split`` (every token once, the carry flowing
  from batch to batch as in training); bits per char for char models."""
  params = state.params
  if steps.optimizer is not None and _has_averaging(state.opt_state):
    params = steps.eval_params(state.params, state.opt_state)
  stream = datasets.config['batching'] == 'stream'
  step_fn = steps.eval if stream else steps.eval_reset
  carry = steps.eval_carry()
  sums = []
  for local in datasets.eval_batches(split):
    carry, m = step_fn(params, carry, steps.partitioner.global_batch(local))
    sums.append(m)
  sums = jax.device_get(sums)
  loss_sum = float(sum(np.float64(m['loss_sum']) for m in sums))
  weight = float(sum(np.float64(m['weight']) for m in sums))
  return summarize(split, loss_sum, weight, datasets.tokenizer.kind)


def _has_averaging(opt_state: PyTree) -> bool:
  return any(isinstance(s, optimizers.AveragingState) for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, optimizers.AveragingState)))


def summarize(prefix: str, loss_sum: float, weight: float,
              tokenizer_kind: str) -> dict[str, float]:
  loss = loss_sum / max(weight, 1.0)
  out = {f'{prefix}_loss': loss,
         # inf beyond float32 (TensorBoard stores float32 scalars).
         f'{prefix}_perplexity': math.exp(loss) if loss < 88.0 else math.inf}
  if tokenizer_kind == 'char':
    out[f'{prefix}_bits_per_char'] = loss / math.log(2.0)
  return out


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
          step: int, tracker: EpochTracker,
          datasets: input_pipeline.LMDatasets) -> dict[str, Any]:
  return {
      'step': step,
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
  tracker = EpochTracker(datasets)
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
  writer = metrics_lib.create_writer(workdir)
  if start == 0:
    writer.write_hparams(_flat_hparams(config))
  eval_every = config.eval_every_steps or tracker.steps_per_epoch
  report = periodic_actions.ReportProgress(
      num_train_steps=num_steps, writer=writer,
      every_secs=config.progress_every_secs)
  stream = datasets.config['batching'] == 'stream'
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
          reset = np.asarray(tracker.is_epoch_start(step) or not stream)
          state, step_metrics = steps.train(
              state, partitioner.global_batch(local), reset)
        pending.append(step_metrics)
        window['tokens'] += float(local['mask'].sum()) * jax.process_count()
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
                    metrics=({'valid_perplexity': last_eval['valid_perplexity']}
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


def restore_for_inference(workdir: str, which: str | int = 'latest', *,
                          eval_splits: tuple[str, ...] = (),
                          eval_batch_size: int | None = None,
                          model_parallelism: int = 1):
  """Restores a checkpoint of ``workdir`` onto the current devices.

  The model, data and optimiser config are those saved with the checkpoint.

  Returns:
    (steps, state, meta, datasets or None, step). ``datasets`` (with
    ``eval_splits`` tokenised) is built only when ``eval_splits`` is given.
  """
  partitioner = partitioning.Partitioner(model_parallelism)
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  try:
    step = ckpt.resolve_step(config_lib.checkpoint_choice(which))
    meta = ckpt.read_meta(step)
    config = config_lib.resolve(meta['config'])
    if eval_batch_size:
      config.data.eval_batch_size = eval_batch_size
    config.data.eval_splits = tuple(eval_splits)
    _check_config(config, partitioner)
    datasets = None
    vocab_size = meta['tokenizer']['vocab_size']
    if eval_splits:
      datasets = input_pipeline.get_lm_datasets(config.data, workdir)
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
  ``config`` only ``checkpoint``, ``eval_split``, ``data.eval_batch_size``
  and ``model_parallelism`` are used.
  """
  config = config_lib.resolve(config)
  split = config.eval_split
  steps, state, _, datasets, step = restore_for_inference(
      workdir, config.checkpoint, eval_splits=(split,),
      eval_batch_size=config.data.eval_batch_size,
      model_parallelism=config.model_parallelism)
  result = evaluate_split(steps, state, datasets, split)
  writer = metrics_lib.create_writer(workdir)
  writer.write_scalars(step, {f'evaluate/{k}': v for k, v in result.items()})
  writer.flush()
  line = ', '.join(f'{k} = {v:.4f}' for k, v in result.items())
  print(f'Checkpoint step {step}, split {split!r}: {line}', flush=True)
  return result

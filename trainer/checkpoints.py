"""Orbax checkpoints of a run: async saves, resume, preemption, safety checks.

A checkpoint (``workdir/checkpoints/<step>/``) holds two items:

* ``state``: the train state pytree (parameters, optimiser state, step, RNG
  key, LSTM carry), saved with ``StandardSave`` and restored onto the current
  mesh's shardings (so 8 devices -> 1 works);
* ``meta``: JSON with the step, the input pipeline position (global batches
  consumed, epoch), the run signature (model shape, vocabulary size, tokenizer
  fingerprint and location, batch size, optimiser structure) and the full
  config.

Orbax writes each checkpoint into a temporary directory and renames it when
complete, so a save interrupted by a kill is never listed (hence never
resumed from); the run resumes from the latest complete checkpoint. The
last ``keep`` checkpoints and the ``keep_best`` best by the task's validation
metric (``Task.best_metric``, recorded as an objective) are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers

from trainer import errors

PyTree = Any
CHECKPOINT_DIR = 'checkpoints'
# Written into a step's directory once its save is complete: every file's
# size and BLAKE2b digest, checked before the checkpoint is used.
CHECKSUM_FILE = 'lstm_flax_checksums.json'
# A damaged checkpoint is moved to checkpoints/corrupt-<step>/ (never deleted).
CORRUPT_PREFIX = 'corrupt-'
# Orbax's, TensorStore's and asyncio's warnings and errors of a training run,
# tracebacks included (trainer.metrics.orbax_errors_to_file routes them
# there; the console shows one line per failure: the trainer's).
CHECKPOINT_LOG = 'checkpoint_errors.log'
# The number a save records for ranking checkpoints (lower is better): the
# task's best metric, negated when higher is better.
OBJECTIVE = 'objective'


def best_metrics(scores: Mapping[str, float], name: str,
                 mode: str) -> dict[str, float] | None:
  """What a save records for choosing the best checkpoint: the metric
  ``name`` of ``scores`` and the objective (``mode`` 'min' or 'max');
  ``None`` when ``scores`` lacks it."""
  if name not in scores:
    return None
  value = float(scores[name])
  return {name: value, OBJECTIVE: value if mode == 'min' else -value}


def _objective(metrics: Mapping[str, float]) -> float:
  """The ranking of a checkpoint; one saved without a validation (empty
  metrics) ranks below every validated one."""
  return float(metrics.get(OBJECTIVE, math.inf))


def _digest(path: str) -> str:
  digest = hashlib.blake2b(digest_size=16)
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def file_digests(step_dir: str) -> dict[str, list[Any]]:
  """``{relative path: [size, BLAKE2b hex]}`` of every file of a step's
  directory (the checksum record itself excluded)."""
  out = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel != CHECKSUM_FILE:
        out[rel] = [os.path.getsize(path), _digest(path)]
  return dict(sorted(out.items()))


def _remove_unfinished_saves(directory: str) -> None:
  """Deletes Orbax's temporary directories of saves that never completed (a
  run killed mid-save), on the primary process, before the manager starts.

  Orbax's own ``cleanup_tmp_directories`` runs in a background future that
  ``CheckpointManager.close()`` does not await (only a later ``save`` or the
  private ``_maybe_await_cleanup_tmp_directory`` does), so a run failing right
  after start exited with that future still scheduling work. This does the
  same synchronously with the public ``ocp.path.step`` helpers. A directory
  that cannot be removed is only logged: listing and resuming ignore it.
  """
  if jax.process_index() != 0 or not os.path.isdir(directory):
    return
  helpers = ocp.path.step
  if hasattr(helpers, 'all_temporary_paths'):
    paths = [epath.Path(p.get()) for p in helpers.all_temporary_paths(directory)]
  else:  # older Orbax releases: names only
    paths = [epath.Path(directory) / name
             for name in helpers.tmp_checkpoints(directory)]
  for path in paths:
    logging.info('Removing the unfinished checkpoint save %s', path)
    try:
      path.rmtree()
    except OSError as e:
      logging.warning('Could not remove the unfinished checkpoint save %s: %s',
                      path, e)


class Checkpointer:
  """A ``CheckpointManager`` for one run directory.

  Args:
    workdir: the run directory; checkpoints go to ``workdir/checkpoints``.
    keep: the last this many checkpoints are kept.
    keep_best: and the best this many by the objective their saves recorded
      (:func:`best_metrics`: the task's best validation metric).
    async_save: write in a background thread (the arrays are copied to host
      memory before :meth:`save` returns).
    read_only: never create or delete anything (evaluation, generation).
  """

  def __init__(self, workdir: str | os.PathLike[str], *, keep: int = 3,
               keep_best: int = 1, async_save: bool = True,
               read_only: bool = False):
    self.directory = os.path.join(os.fspath(workdir), CHECKPOINT_DIR)
    policies = [checkpoint_managers.LatestN(n=keep)]
    if keep_best > 0:
      policies.append(checkpoint_managers.BestN(
          get_metric_fn=_objective, reverse=True, n=keep_best,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        best_fn=_objective, best_mode='min',
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=async_save,
        create=not read_only, read_only=read_only,
        # Unfinished saves are removed by _remove_unfinished_saves below.
        cleanup_tmp_directories=False)
    if read_only and not os.path.isdir(self.directory):
      raise errors.CheckpointNotFoundError(
          f'No checkpoints in {self.directory}: train a model with '
          f'`python train.py --workdir={workdir}` first.')
    if not read_only:
      _remove_unfinished_saves(self.directory)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=('state', 'meta'))
    self.read_only = read_only
    self._unrecorded: list[int] = []  # Saved; checksums not yet written.

  # --------------------------------------------------------------- query --

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    return self.manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def resolve_step(self, which: str | int) -> int:
    """'latest', 'best' or a step -> a step that has a checkpoint."""
    steps = self.all_steps()
    if not steps:
      raise errors.CheckpointNotFoundError(
          f'No complete checkpoint in {self.directory}.')
    if which == 'latest':
      return self.latest_step()
    if which == 'best':
      return self.best_step()
    if int(which) not in steps:
      raise errors.CheckpointNotFoundError(
          f'No checkpoint of step {which} in {self.directory}; there are '
          f'steps {sorted(steps)}.')
    return int(which)

  def read_meta(self, step: int) -> dict[str, Any]:
    """The JSON ``meta`` item of a checkpoint."""
    restored = self.manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored['meta'])

  # ------------------------------------------------------------ integrity --

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _record_checksums(self) -> None:
    """Writes the checksum record of each completed save (the caller has
    waited for them). Process 0 writes it: processes sharing the directory
    would otherwise race on the same temporary file."""
    if jax.process_index() != 0:
      self._unrecorded.clear()
      return
    for step in self._unrecorded:
      step_dir = self.step_dir(step)
      if not os.path.isdir(step_dir):  # Already removed by the keep policy.
        continue
      record = json.dumps({'step': step, 'files': file_digests(step_dir)})
      tmp = os.path.join(step_dir, f'.{CHECKSUM_FILE}.tmp')
      with open(tmp, 'w', encoding='utf-8') as f:
        f.write(record)
      os.replace(tmp, os.path.join(step_dir, CHECKSUM_FILE))
    self._unrecorded.clear()

  def damage(self, step: int) -> str | None:
    """What is wrong with the checkpoint of ``step`` (``None``: intact).

    Checks its items, its metadata, and every file against the checksum
    record written when it was saved (a checkpoint saved just before a kill
    may have no record yet; it is then checked for structure only).
    """
    step_dir = self.step_dir(step)
    for item in ('state', 'meta'):
      if not os.path.isdir(os.path.join(step_dir, item)):
        return f'its item {item!r} is missing'
    record_path = os.path.join(step_dir, CHECKSUM_FILE)
    if os.path.exists(record_path):
      try:
        with open(record_path, encoding='utf-8') as f:
          recorded = json.load(f)['files']
      except (OSError, ValueError, KeyError, TypeError) as e:
        return f'its checksum record is unreadable ({type(e).__name__})'
      now = file_digests(step_dir)
      for rel, (size, digest) in recorded.items():
        if rel not in now:
          return f'the file {rel} is missing'
        if now[rel][0] != size:
          return f'the file {rel} has {now[rel][0]} bytes, not {size}'
        if now[rel][1] != digest:
          return f'the file {rel} does not match its checksum'
    try:
      meta = self.read_meta(step)
      int(meta['input_pipeline']['next_step'])
    except Exception as e:  # pylint: disable=broad-except
      return (f'its metadata is unreadable ({type(e).__name__}: '
              f'{errors.first_line(e, 200)})')
    return None

  def set_aside(self, step: int, problem: str) -> str:
    """Moves a damaged checkpoint to ``corrupt-<step>`` (never deletes it);
    returns where."""
    target = os.path.join(self.directory, f'{CORRUPT_PREFIX}{step}')
    n = 1
    while os.path.exists(target):
      n += 1
      target = os.path.join(self.directory, f'{CORRUPT_PREFIX}{step}-{n}')
    os.rename(self.step_dir(step), target)
    self.manager.reload()
    logging.warning('The checkpoint of step %d is damaged (%s); moved it to '
                    '%s.', step, problem, target)
    return target

  def latest_intact_step(self, fallback: bool = True,
                         primary: bool = True) -> int | None:
    """The newest checkpoint that passes :meth:`damage`. Damaged newer ones
    are moved aside by the ``primary`` process (read-only, or elsewhere:
    skipped), each with one warning.

    Raises:
      CheckpointCorruptError: the latest is damaged and not ``fallback``.
    """
    for step in sorted(self.all_steps(), reverse=True):
      problem = self.damage(step)
      if problem is None:
        return step
      if not fallback:
        raise errors.CheckpointCorruptError(
            f'The checkpoint of step {step} in {self.directory} is damaged: '
            f'{problem}. Nothing was changed. Rerun with '
            '--config.checkpoint_fallback=True to set it aside and resume '
            'from the newest intact checkpoint, or use a fresh --workdir.')
      if self.read_only or not primary:  # Process 0 moves it aside.
        logging.warning('The checkpoint of step %d is damaged (%s); using '
                        'an earlier one.', step, problem)
      else:
        self.set_aside(step, problem)
    return None

  def restore_newest(self, first: int, abstract_state: PyTree, *,
                     fallback: bool = True, primary: bool = True,
                     check: Callable[[int], None] | None = None
                     ) -> tuple[int, PyTree, dict[str, Any]] | None:
    """Restores checkpoint ``first`` (:meth:`latest_intact_step` verified
    it) or, when restoring it fails (damage its checksum record could not
    show, e.g. a save killed before the record was written) and
    ``fallback``, the newest older one that passes :meth:`damage` and
    restores. The same ``abstract_state`` serves every candidate, so the
    caller loads no data and compiles nothing again. Failed candidates are
    moved aside by the ``primary`` process (elsewhere: skipped, with a
    warning); ``check(step)`` vets each older candidate before its restore
    (e.g. that it is of the same model).

    Returns:
      (step, state placed like ``abstract_state``, meta), or None when no
      checkpoint restores.

    Raises:
      CheckpointCorruptError: restoring ``first`` failed and not
        ``fallback`` (nothing changed).
    """
    older = sorted((s for s in self.all_steps() if s < first), reverse=True)
    for step in [first] + older:
      problem = None if step == first else self.damage(step)
      if problem is None:
        if check is not None and step != first:
          check(step)
        try:
          state, meta = self.restore(step, abstract_state)
          return step, state, meta
        except Exception as e:  # pylint: disable=broad-except
          problem = ('restoring it failed: '
                     f'{type(e).__name__}: {errors.first_line(e, 200)}')
          if not fallback:
            raise errors.CheckpointCorruptError(
                f'The checkpoint of step {step} in {self.directory} is '
                f'damaged: {problem}. Nothing was changed. Rerun with '
                '--config.checkpoint_fallback=True to resume from the newest '
                'intact checkpoint.') from e
      if self.read_only or not primary:
        logging.warning('The checkpoint of step %d is damaged (%s); using '
                        'an earlier one.', step, problem)
      else:
        self.set_aside(step, problem)
    return None

  def check_intact(self, step: int) -> None:
    """Raises CheckpointCorruptError if the checkpoint of ``step`` is
    damaged (an explicitly chosen step is never replaced)."""
    problem = self.damage(step)
    if problem is not None:
      raise errors.CheckpointCorruptError(
          f'The checkpoint of step {step} in {self.directory} is damaged: '
          f'{problem}. Choose another step (--checkpoint=latest takes the '
          f'newest intact one; steps: {sorted(self.all_steps())}).')

  # ---------------------------------------------------------- save / load --

  def save(self, step: int, state: PyTree, meta: Mapping[str, Any],
           metrics: Mapping[str, float] | None = None) -> None:
    """Starts saving ``state`` and ``meta`` as step ``step``.

    Raises:
      CheckpointSaveError: this save, or an earlier asynchronous one, failed.
        Earlier complete checkpoints are left as they are.
    """
    self.wait()  # The previous save's errors name its own step.
    try:
      self.manager.save(
          step, args=ocp.args.Composite(
              state=ocp.args.StandardSave(state),
              meta=ocp.args.JsonSave(dict(meta))),
          # Always given (empty without a validation): Orbax warns about
          # every save without metrics when it tracks the best.
          metrics=dict(metrics) if metrics else {}, force=True)
    except Exception as e:  # pylint: disable=broad-except
      raise errors.CheckpointSaveError(
          f'Saving the checkpoint of step {step} in {self.directory} failed: '
          f'{type(e).__name__}: {errors.first_line(e)}. Earlier checkpoints are '
          f'intact (latest complete: {self._safe_latest()}); details in '
          f'{self._log_path()}.') from e
    self._unrecorded.append(step)

  def wait(self) -> None:
    """Blocks until pending saves are written.

    Raises:
      CheckpointSaveError: a pending save failed.
    """
    try:
      self.manager.wait_until_finished()
      self.manager.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      steps = ', '.join(map(str, self._unrecorded)) or 'unknown'
      self._unrecorded.clear()
      raise errors.CheckpointSaveError(
          f'Writing the checkpoint of step {steps} in {self.directory} '
          f'failed: {type(e).__name__}: {errors.first_line(e)}. Earlier checkpoints '
          f'are intact (latest complete: {self._safe_latest()}); details in '
          f'{self._log_path()}.') from e
    self._record_checksums()

  def _log_path(self) -> str:
    return os.path.join(os.path.dirname(self.directory), CHECKPOINT_LOG)

  def _safe_latest(self) -> int | None:
    try:
      self.manager.reload()
      return self.manager.latest_step()
    except Exception:  # pylint: disable=broad-except
      return None

  def restore(self, step: int, abstract_state: PyTree
              ) -> tuple[PyTree, dict[str, Any]]:
    """(state placed like ``abstract_state``'s shardings, meta)."""
    logging.info('Restoring checkpoint of step %d from %s', step,
                 self.directory)
    restored = self.manager.restore(
        step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore()))
    return restored['state'], dict(restored['meta'])

  def reached_preemption(self, step: int) -> bool:
    """Orbax's multi-host preemption sync point (all hosts agree on the step
    to save at; False when JAX's preemption service is not running)."""
    return self.manager.reached_preemption(step)

  def close(self) -> None:
    self.manager.close()

"""Restoring a trained checkpoint for inference, without the training loop.

:func:`restore` reads a checkpoint of a workdir ('latest', 'best' or a
step), builds its task once from the config saved with it (with the few keys
a caller may change: ``Task.INFERENCE_KEYS``; the task class comes from the
caller's ``lookup``, ``trainer.tasks.task_class``, so this module names no
task), gets the compiled steps from
:mod:`trainer.compiled` and places the state on the current devices (any
device count). It is the one path of the inference commands (generate / translate /
classify, through ``trainer.tasks.load``): the restored task's
:meth:`~trainer.task_base.Task.predictor` supplies what differs, so a new
task plugs into a command through its own module. The evaluate command and export use
:func:`restore` too; none of them imports the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from absl import logging
import jax
import ml_collections

from input_pipeline import tokenizers as tokenizers_lib
from lstm_flax import inference as inference_lib
from lstm_flax import tokenizer as tokenizer_format
from trainer import checkpoints, compiled, config_lib, errors, partitioning
from trainer import workdir_lock
from trainer.steps import TrainState
from trainer import task_base as base


@dataclasses.dataclass
class Restored:
  """A restored checkpoint: its task, compiled steps and state."""

  task: base.Task
  steps: compiled.CompiledSteps
  state: TrainState
  meta: dict[str, Any]
  step: int
  datasets: base.Datasets | None  # Loaded when a split was asked for.
  workdir: str

  @functools.cached_property
  def tokenizer(self) -> Any:
    """The tokenizer the checkpoint was trained with (saved in the workdir).

    Raises:
      CheckpointNotFoundError: the tokenizer directory it names is missing.
      CheckpointCorruptError: the saved tokenizer cannot be read (the
        reason, naming the file).
      CheckpointMismatchError: the saved tokenizer is not the checkpoint's.
      ConfigError: a tokenizer kind this version does not know.
    """
    info = self.meta['tokenizer']
    directory = os.path.join(self.workdir, info['directory'])
    try:
      tokenizer = tokenizer_format.load(directory)
    except tokenizer_format.UnknownKindError as e:
      raise errors.ConfigError(str(e)) from None  # Saved by a newer version.
    except FileNotFoundError as e:
      raise errors.CheckpointNotFoundError(
          f'The checkpoint of step {self.step} refers to the tokenizer in '
          f'{directory}, which is missing ({e}).') from None
    except (OSError, ValueError) as e:
      raise errors.CheckpointCorruptError(
          f'The tokenizer of the checkpoint of step {self.step} cannot be '
          f'read: {errors.first_line(e)}') from None
    if tokenizer.fingerprint() != info['fingerprint']:
      raise errors.CheckpointMismatchError(
          f'The tokenizer in {directory} is not the one the checkpoint of '
          f'step {self.step} was trained with.')
    return tokenizer

  @property
  def model(self) -> Any:
    return self.steps.model

  def eval_context(self) -> base.EvalContext:
    return self.steps.eval_context(
        self.state, int(self.task.config.data.get('eval_batch_size', 0)))

  def params(self) -> Any:
    """The parameters to use (the average under averaged SGD), on the host."""
    return jax.device_get(self.eval_context().params)


def _set_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  node = config
  *parents, leaf = key.split('.')
  for parent in parents:
    node = node[parent]
  node[leaf] = value


def inference_overrides(task: base.Task) -> dict[str, Any]:
  """The values of ``task.config`` (a user's evaluate / inference config)
  that replace the checkpoint's saved ones: the task's ``INFERENCE_KEYS``."""
  out = {}
  for key in task.INFERENCE_KEYS:
    node = task.config
    for part in key.split('.'):
      node = node[part]
    out[key] = node.to_dict() if isinstance(
        node, ml_collections.ConfigDict) else node
  return out


# Where the data are: a user's values replace the checkpoint's (the data may
# have moved, or the split to score lives elsewhere).
DATA_LOCATION_KEYS = ('data_dir', 'files', 'tfds_data_dir',
                      'train_prefix', 'eval_prefix')
# What the tokenizer is built from: a different value would score another
# vocabulary than the model's, so it is refused.
TOKENIZER_KEYS = (*tokenizers_lib.CONFIG_KEYS, 'lowercase', 'source', 'tfds_name')


def given_overrides(given: ml_collections.ConfigDict,
                    saved: Mapping[str, Any], step: int, directory: str
                    ) -> tuple[dict[str, Any], list[str]]:
  """What a user's config (evaluate mode) changes in a checkpoint's saved
  one.

  Returns:
    The data location keys that differ (``{'data.data_dir': ...}``), to
    apply, and the other data keys that differ and are not used (the saved
    values are), to report.

  Raises:
    CheckpointMismatchError: a model key or a key the tokenizer is built
      from differs, named with both values.
  """
  refused = config_lib.config_differences(saved, given, ('model',))
  apply, ignored = {}, []
  for key, before, after in config_lib.differing_keys(saved, given, 'data'):
    if key in DATA_LOCATION_KEYS:
      apply[f'data.{key}'] = after
    elif key in TOKENIZER_KEYS:
      refused.append(f'data.{key}: checkpoint has {before!r}, config gives '
                     f'{after!r}')
    else:
      ignored.append(f'data.{key}')
  if refused:
    raise errors.CheckpointMismatchError(
        f'The config differs from the one the checkpoint of step {step} (in '
        f'{directory}) was trained with in keys that change the model or its '
        'tokenizer: ' + '; '.join(refused) + '. Evaluate with the config and '
        'overrides the run was trained with (its config.json); only the data '
        f'location keys ({", ".join(DATA_LOCATION_KEYS)}) may change.')
  return apply, ignored


def restore(workdir: str, which: str | int = 'latest', *,
            lookup: Callable[[str], type[base.Task]],
            task_name: str | None = None, eval_split: str | None = None,
            overrides: Mapping[str, Any] | None = None,
            model_parallelism: int = 1,
            given_config: ml_collections.ConfigDict | None = None
            ) -> Restored:
  """Restores a checkpoint of ``workdir`` onto the current devices.

  Args:
    which: 'latest', 'best' or a step number.
    lookup: task name -> task class (``trainer.tasks.task_class``).
    task_name: the task the caller needs; a checkpoint of a task served by
      another command (``Task.COMMAND``) is a CheckpointMismatchError saying
      what it is and which command uses it.
    eval_split: also load the datasets that score this split
      (``Task.load_datasets(workdir, eval_split)``).
    overrides: dotted keys (``{'decode.beam_size': 5}``) replacing saved
      values; only the task's ``INFERENCE_KEYS``.
    given_config: a user's config (the evaluate mode's): its data location
      keys replace the saved ones, a differing model or tokenizer key is
      refused, other differing data keys are logged as not used
      (:func:`given_overrides`).

  Raises:
    CheckpointNotFoundError: no (such) checkpoint.
    CheckpointMismatchError: a checkpoint of another task.
  """
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  try:
    which = config_lib.checkpoint_choice(which)
    if which == 'latest':  # The newest intact one (damaged ones skipped).
      step = ckpt.latest_intact_step()
      if step is None:
        ckpt.resolve_step(which)  # Raises: none at all.
        raise errors.CheckpointCorruptError(
            f'Every checkpoint in {ckpt.directory} is damaged (see the '
            'warnings above).')
    else:
      step = ckpt.resolve_step(which)
      ckpt.check_intact(step)
    meta = ckpt.read_meta(step)
    saved_task = meta.get('task')
    try:
      saved_cls = lookup(saved_task)
    except errors.ConfigError:
      saved_cls = None
    if task_name is not None and saved_task != task_name and (
        saved_cls is None or saved_cls.COMMAND != lookup(task_name).COMMAND):
      usage = repr(saved_task) if saved_cls is None else saved_cls.USAGE
      wanted = lookup(task_name).USAGE.split(' (')[0]
      raise errors.CheckpointMismatchError(
          f'The checkpoint of step {step} in {ckpt.directory} is {usage}, '
          f'not {wanted} (task {saved_task!r}, this needs task '
          f'{task_name!r}).')
    task_cls = saved_cls or lookup(saved_task)  # Raises: an unknown task.
    config = config_lib.resolve(meta['config'], task_cls)
    config.model_parallelism = model_parallelism
    overrides = dict(overrides or {})
    if given_config is not None:
      located, ignored = given_overrides(given_config, meta['config'], step,
                                         ckpt.directory)
      for key, value in located.items():
        logging.warning('Using %s=%r from the config given (the checkpoint '
                        'has %r).', key, value,
                        meta['config']['data'][key.split('.', 1)[1]])
      if ignored:
        logging.warning(
            'Not used: %s differ from the checkpoint of step %d, whose saved '
            'values are used (only the data location keys %s apply).',
            ', '.join(ignored), step, DATA_LOCATION_KEYS)
      overrides = {**located, **overrides}
    for key, value in overrides.items():
      _set_key(config, key, value)
    if eval_split and not config.data.get('cache_dir', '') and (
        not workdir_lock.writable(workdir)):
      # A read-only workdir (e.g. a mounted checkpoint): splits not cached
      # there are encoded into a temporary cache; nothing is written to it.
      import tempfile  # pylint: disable=g-import-not-at-top
      config.data.cache_dir = tempfile.mkdtemp(prefix='lstm-flax-eval-cache-')
      logging.warning('The workdir %s is read-only: caching the data in %s.',
                      workdir, config.data.cache_dir)
    task = task_cls(config)
    config_lib.validate(config)
    config_lib.validate_task(task)
    partitioner = partitioning.Partitioner(model_parallelism,
                                           config.logical_axis_rules)
    task.check_batch_sizes(partitioner.check_batch_size)
    datasets = (task.load_datasets(workdir, eval_split) if eval_split
                else None)
    steps = compiled.compile_steps(task, meta['model_inputs'], 1, 1,
                                   partitioner)
    state, meta = ckpt.restore(step, steps.abstract_state)
  finally:
    ckpt.close()
  return Restored(task, steps, state, meta, step, datasets, workdir)


@contextlib.contextmanager
def settings_as_config_errors() -> Iterator[None]:
  """An invalid inference setting (``lstm_flax.inference.SettingError``,
  already naming it) as a one-line ConfigError (no traceback)."""
  try:
    yield
  except inference_lib.SettingError as e:
    raise errors.ConfigError(str(e)) from None


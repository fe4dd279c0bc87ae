"""Task lookup: ``config.task`` names a module that declares ``TASK``.

``config.task = 'lm'`` imports ``trainer.tasks.lm`` and takes its ``TASK``
(a :class:`~trainer.task_base.Task` subclass); a dotted name
(``'mypackage.speech'``) imports that module instead, so a task kept outside
this repository is one module plus its config, with no table to edit. Only
the chosen task's module is imported (sacrebleu for translation, say).

The commands (``train.py``, ``generate.py``, ``translate.py``,
``classify.py``, ``export.py``) look the task up here and resolve the config
once (:func:`build`); the loop, evaluation and inference code receive the
task and never look one up.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

import ml_collections

from trainer import config_lib, errors
from trainer.task_base import Task

DEFAULT_TASK = 'lm'


def _module_name(name: str) -> str:
  return name if '.' in name else f'{__name__}.{name}'


def known_tasks() -> list[str]:
  """The task names of this package (its modules that declare ``TASK``),
  the default first."""
  names = [m.name for m in pkgutil.iter_modules(__path__)
           if hasattr(importlib.import_module(_module_name(m.name)), 'TASK')]
  return sorted(names, key=lambda n: (n != DEFAULT_TASK, n))


def task_class(name: Any) -> type[Task]:
  """The ``TASK`` of module ``trainer.tasks.<name>`` (or of the dotted
  module ``name``).

  Raises:
    ConfigError: no such task module, or it declares no ``TASK``.
  """
  if not isinstance(name, str) or not name:
    raise errors.ConfigError(f'task={name!r} is unknown; use one of '
                             f'{known_tasks()}.')
  module_name = _module_name(name)
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is None or not module_name.startswith(e.name):
      raise  # The task module exists; one of its imports is missing.
    raise errors.ConfigError(
        f'task={name!r} is unknown; use one of {known_tasks()}, or the dotted '
        'path of a module that declares TASK.') from None
  cls = getattr(module, 'TASK', None)
  if not (isinstance(cls, type) and issubclass(cls, Task)):
    raise errors.ConfigError(
        f'task={name!r}: module {module_name} declares no TASK (a '
        'trainer.task_base.Task subclass); add `TASK = YourTask` to it.')
  return cls


def default_config(name: str = DEFAULT_TASK) -> ml_collections.ConfigDict:
  """Every config key of task ``name`` with its default value: the generic
  keys (``config_lib.default_config``) plus the task's sections."""
  return config_lib.default_config(task_class(name))


def build(config: ml_collections.ConfigDict | Mapping[str, Any]) -> Task:
  """The task of ``config`` (a file plus overrides), built once, with
  ``task.config`` the resolved, validated config.

  Raises:
    ConfigError: an unknown task or key, or an invalid value (named).
  """
  given = config_lib.as_dict(config)
  cls = task_class(given.get('task', DEFAULT_TASK))
  resolved = config_lib.resolve(
      given, cls, others=lambda: {n: task_class(n) for n in known_tasks()})
  task = cls(resolved)
  config_lib.validate_task(task)
  return task


def load(workdir: str, checkpoint: str | int = 'latest',
         task_name: str = DEFAULT_TASK) -> Any:
  """The predictor (``Task.predictor``) of ``workdir``'s checkpoint
  ('latest', 'best' or a step) for the command that serves ``task_name``
  and every task with its ``COMMAND``: a ``Generator`` ('lm'),
  ``Translator`` ('translation'), ``Classifier`` ('classification'), ...

  Raises:
    CheckpointNotFoundError: no (such) checkpoint, or its tokenizer is
      missing.
    CheckpointMismatchError: a checkpoint of a task another command serves.
  """
  from trainer import inference  # pylint: disable=g-import-not-at-top
  restored = inference.restore(workdir, checkpoint, lookup=task_class,
                               task_name=task_name)
  return restored.task.predictor(restored)

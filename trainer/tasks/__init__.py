"""The task registry: ``config.task`` name -> :class:`~trainer.tasks.base.Task`.

A new task is one module in this package (a ``Task`` subclass) plus one line
in :data:`REGISTRY`. Modules are imported on first use, so a run imports
only its own task's dependencies (sacrebleu for translation, say).
"""

from __future__ import annotations

import importlib

import ml_collections

from trainer.tasks.base import Task

# name -> 'module:Class'
REGISTRY = {
    'lm': 'trainer.tasks.language_model:LanguageModelTask',
    'translation': 'trainer.tasks.translation:TranslationTask',
    'classification': 'trainer.tasks.classification:ClassificationTask',
}
DEFAULT_TASK = 'lm'


def task_class(name: str) -> type[Task]:
  """The Task subclass registered as ``name``.

  Raises:
    KeyError: no task of that name (the caller words the error).
  """
  module_name, class_name = REGISTRY[name].split(':')
  return getattr(importlib.import_module(module_name), class_name)


def get_task(config: ml_collections.ConfigDict) -> Task:
  """The task of a resolved config (build it once per run)."""
  return task_class(config.task)(config)

"""The training config: the generic keys, each task's sections, validation.

``default_config(task_cls)`` is the schema: the generic keys below (what to
run, how long, checkpoints, optimiser, devices) plus the task's sections
(:meth:`trainer.task_base.Task.default_config`: ``model``, ``data`` and the
task's own keys). Each config file in ``configs/`` starts from
``trainer.tasks.default_config(name)`` (which looks the task class up) and
changes the fields it needs. This module knows no task by name.

A task's ``model`` section is made by :func:`module_config` from the Flax
module's own dataclass fields and defaults, and the module checks its own
values (the trainer builds it with ``Module(**config.model, vocab_size=V)``):
each hyperparameter is defined, defaulted and validated once, in
``lstm_flax``.

``resolve(config, task_cls)`` checks a config (a file plus command-line
overrides) against the schema and raises :class:`ConfigError` naming the key
at fault: unknown keys (with the closest known key), non-positive sizes,
rates outside ``[0, 1)``, unknown choices; :func:`validate_task` has the
task check its own sections. ``trainer.tasks.build`` does both, once per
command.
"""

from __future__ import annotations

import dataclasses
import json
import difflib
import re
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from lstm_flax import axes
from trainer import errors

if TYPE_CHECKING:
  from trainer.task_base import Task

ConfigError = errors.ConfigError

MODES = ('train', 'evaluate')
OPTIMIZERS = ('sgd', 'adam', 'adamw')
SCHEDULES = ('constant', 'zaremba', 'cosine', 'inverse_sqrt')


def default_config(task_cls: type[Task] | None = None
                   ) -> ml_collections.ConfigDict:
  """Every training config key with its default value.

  Args:
    task_cls: the task class (``trainer.tasks.task_class(name)``) whose
      sections are added; ``None``: the generic keys only.
  """
  config = ml_collections.ConfigDict()

  # The task: a module of trainer/tasks/ (or a dotted module path) that
  # declares TASK; it defines the model, data and loss.
  config.task = task_cls.name if task_cls is not None else 'lm'

  # What to run: 'train' (resumes from the workdir's latest checkpoint) or
  # 'evaluate' (scores a checkpoint on `eval_split` and prints the metrics).
  config.mode = 'train'
  # evaluate: the split to score ('valid', 'test', ...).
  config.eval_split = 'valid'
  # evaluate / inference: 'latest', 'best' or a step number.
  config.checkpoint = 'latest'
  # Seed of parameter initialisation and dropout.
  config.seed = 0

  # Length of training: num_train_steps if > 0, else num_epochs epochs.
  config.num_train_steps = 0
  # Epochs (passes over the training split) when num_train_steps is 0.
  config.num_epochs = 1
  # Write training metrics every this many steps.
  config.log_every_steps = 50
  # Evaluate on the validation split every this many steps (0: every epoch),
  # and always at the end.
  config.eval_every_steps = 0
  # Save a checkpoint every this many steps (and at the end, and on SIGTERM).
  config.checkpoint_every_steps = 500
  # Keep the last this many checkpoints ...
  config.keep_checkpoints = 3
  # ... and the best this many by the task's validation metric.
  config.keep_best_checkpoints = 1
  # Write checkpoints in the background while training goes on.
  config.async_checkpoints = True
  # A damaged latest checkpoint (failed checksum, unreadable metadata, a
  # missing item) is moved to checkpoints/corrupt-<step>/ and the run resumes
  # from the newest intact one; False: refuse and change nothing.
  config.checkpoint_fallback = True
  # Report progress (steps/s, ETA) every this many seconds.
  config.progress_every_secs = 60.0
  # Stop, as for a NaN loss, when a step's training loss exceeds this (0:
  # 1e4 times the run's first logged loss); such a state is never saved.
  config.max_loss = 0.0

  _optimizer_config(config)

  # Devices: the size of the 'model' mesh axis; the 'data' axis takes the
  # remaining devices (batches are split over it).
  config.model_parallelism = 1
  # Logical parameter axis (lstm_flax.axes) -> mesh axis ('model') or None
  # (replicated). The default splits the LSTM's hidden units and the
  # vocabulary over 'model', so a device holds all four gates of its units.
  config.logical_axis_rules = axes.DEFAULT_RULES

  if task_cls is not None:
    for key, value in task_cls.default_config().items():
      config[key] = value
  return config


def module_config(module_cls: type, *, exclude: tuple[str, ...] = (),
                  **defaults: Any) -> ml_collections.ConfigDict:
  """A config section of ``module_cls``'s dataclass fields.

  Each field becomes a key with the module's own default (``defaults``
  replaces some, and must be given for fields without one); ``exclude``
  names the fields the trainer fills in (vocabulary size, say). Optional
  fields (default ``None``) become typed placeholders, so
  ``--config.model.proj_size=512`` works; dtypes become their names.
  Callables (initialisers) and Flax's own fields are left out.
  """
  hints = _type_hints(module_cls)
  section = ml_collections.ConfigDict()
  unknown = set(defaults) - {f.name for f in dataclasses.fields(module_cls)}
  if unknown:
    raise ValueError(f'{module_cls.__name__} has no fields {sorted(unknown)}.')
  for field in dataclasses.fields(module_cls):
    if field.name in ('parent', 'name') or field.name in exclude:
      continue
    if field.name in defaults:
      value = defaults[field.name]
    elif field.default is not dataclasses.MISSING:
      value = field.default
    else:
      raise ValueError(f'{module_cls.__name__}.{field.name} has no default; '
                       'pass one to module_config.')
    if callable(value) and not isinstance(value, type):
      continue
    if value is None:
      value = config_dict.placeholder(_optional_type(hints.get(field.name)))
    elif isinstance(value, type) or _is_dtype(value):
      value = jnp.dtype(value).name
    section[field.name] = value
  return section


def _is_dtype(value: Any) -> bool:
  if value is None or isinstance(value, (str, bool, int, float)):
    return False
  try:
    return bool(jnp.dtype(value))
  except TypeError:
    return False


def _type_hints(module_cls: type) -> dict[str, Any]:
  try:
    return typing.get_type_hints(module_cls)
  except Exception:  # pylint: disable=broad-except
    return {f.name: f.type for f in dataclasses.fields(module_cls)}


def _optional_type(hint: Any) -> type:
  """int / float / str / bool of an ``Optional[...]`` annotation."""
  text = hint if isinstance(hint, str) else repr(hint)
  for name, kind in (('bool', bool), ('float', float), ('int', int),
                     ('str', str)):
    if name in text:
      return kind
  return object


def _optimizer_config(config: ml_collections.ConfigDict) -> None:
  # Optimiser (optax).
  config.optimizer = ml_collections.ConfigDict()
  # 'sgd', 'adam' or 'adamw'.
  config.optimizer.name = 'sgd'
  # Peak learning rate.
  config.optimizer.learning_rate = 1.0
  # 'constant', 'zaremba' (constant, then divided by lr_decay_factor every
  # epoch after decay_after_epochs), 'cosine' or 'inverse_sqrt' (both after
  # warmup_steps of linear warm-up).
  config.optimizer.schedule = 'constant'
  # Linear warm-up steps (cosine / inverse_sqrt / constant).
  config.optimizer.warmup_steps = 0
  # zaremba: epochs at the full learning rate.
  config.optimizer.decay_after_epochs = 4
  # zaremba: divide the learning rate by this every later epoch.
  config.optimizer.lr_decay_factor = 2.0
  # cosine: final learning rate as a fraction of the peak.
  config.optimizer.end_lr_fraction = 0.0
  # sgd: momentum (0: plain SGD).
  config.optimizer.momentum = 0.0
  # adam / adamw: moment decay rates and epsilon.
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  # adamw: decoupled weight decay; sgd / adam: L2 added to the gradient.
  config.optimizer.weight_decay = 0.0
  # Clip gradients to this global norm (0: no clipping).
  config.optimizer.max_grad_norm = 5.0
  # Accumulate gradients over this many batches per update (optax.MultiSteps).
  config.optimizer.grad_accum_steps = 1
  # AWD-LSTM averaged SGD: average the parameters from this update on and
  # evaluate / checkpoint the average as the eval parameters (-1: off).
  config.optimizer.averaging_start_step = -1




def _flatten(tree: Mapping[str, Any], free_keyed: tuple[str, ...],
             prefix: str = '') -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping) and value and name not in free_keyed:
      out.update(_flatten(value, free_keyed, name + '.'))
    else:
      out[name] = value
  return out


def as_dict(config: Any) -> dict[str, Any]:
  if isinstance(config, ml_collections.ConfigDict):
    return config.to_dict()
  if isinstance(config, Mapping):
    return {k: as_dict(v) if isinstance(v, (Mapping, ml_collections.ConfigDict))
            else v for k, v in config.items()}
  raise ConfigError(f'A config must be a ConfigDict or dict; got {type(config)}.')


def resolve(config: Any, task_cls: type[Task], *,
            others: Callable[[], Mapping[str, type[Task]]] = dict
            ) -> ml_collections.ConfigDict:
  """``default_config(task_cls)`` updated with ``config``, its generic keys
  validated (the task's own: :func:`validate_task`).

  Args:
    others: name -> class of the other tasks, asked only to hint at the
      task an unknown key belongs to.

  Raises:
    ConfigError: an unknown key or an invalid value.
  """
  given_tree = as_dict(config)
  free = task_cls.FREE_KEYED
  given = _flatten(given_tree, free)
  defaults = _flatten(default_config(task_cls).to_dict(), free)
  for key in given:
    if key not in defaults and not any(key.startswith(d + '.') for d in free):
      close = difflib.get_close_matches(key, list(defaults), n=1)
      hint = f' Did you mean {close[0]!r}?' if close else ''
      for other, other_cls in others().items():
        if other != task_cls.name and key in _flatten(
            default_config(other_cls).to_dict(), other_cls.FREE_KEYED):
          hint += (f' ({key!r} is a key of task={other!r}; this config has '
                   f'task={task_cls.name!r}.)')
          break
      raise ConfigError(f'Unknown config key {key!r}.{hint}')
  resolved = default_config(task_cls)
  resolved.update(ml_collections.ConfigDict(given_tree))
  validate(resolved)
  return resolved


def positive(key: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ConfigError(f'{key} must be a positive integer; got {value!r}.')


def non_negative(key: str, value: Any) -> None:
  if not isinstance(value, (int, float)) or value < 0:
    raise ConfigError(f'{key} must be >= 0; got {value!r}.')


def choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ConfigError(f'{key}={value!r} is unknown; use one of {list(choices)}.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first invalid generic value, naming its key."""
  c = config
  choice('mode', c.mode, MODES)
  if not c.eval_split:
    raise ConfigError('eval_split must name a split, e.g. valid or test.')
  checkpoint_choice(c.checkpoint)
  for key in ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
              'model_parallelism'):
    positive(key, c[key])
  for key in ('num_train_steps', 'num_epochs', 'eval_every_steps',
              'keep_best_checkpoints', 'max_loss'):
    non_negative(key, c[key])
  if c.num_train_steps <= 0 and c.num_epochs <= 0:
    raise ConfigError('Set num_train_steps or num_epochs to a positive value.')
  for rule in c.logical_axis_rules:
    if len(rule) != 2 or not isinstance(rule[0], str):
      raise ConfigError(
          'logical_axis_rules must be (logical axis, mesh axis or None) '
          f"pairs, e.g. (('lstm_hidden', 'model'),); got {rule!r}.")
  _validate_optimizer(c)
  _refuse_float16(c)


def validate_task(task: Task) -> None:
  """``task.validate()`` (its sections of ``task.config``), the module's
  field errors reworded to name the config key."""
  try:
    task.validate()
  except ValueError as e:
    if isinstance(e, ConfigError):
      raise
    # The module names its field ('LanguageModel.hidden_size must ...'):
    # say which config key that is.
    match = re.match(r'(\w+)\.(\w+)', str(e))
    if match is None:
      raise ConfigError(f'config.model: {e}') from e
    raise ConfigError(f'model.{match.group(2)}{str(e)[match.end():]} (checked '
                      f'by {match.group(0)})') from e


def _refuse_float16(c: ml_collections.ConfigDict) -> None:
  """float16 compute needs loss scaling (its range underflows gradients),
  which the trainer does not do; bfloat16 has float32's range and needs none.
  The library itself still takes float16 (inference)."""
  for key, value in c.get('model', {}).items():
    if key != 'dtype' and not key.endswith('_dtype'):
      continue
    try:
      is_float16 = value is not None and jnp.dtype(value) == jnp.float16
    except TypeError:
      continue  # not a dtype: the module's own check names it
    if is_float16:
      raise ConfigError(
          f'model.{key}={_dtype_name(value)!r} is not supported for training '
          "(no loss scaling); use 'bfloat16'.")


def _dtype_name(value: Any) -> str:
  return value if isinstance(value, str) else jnp.dtype(value).name


def _validate_optimizer(c: ml_collections.ConfigDict) -> None:
  o = c.optimizer
  choice('optimizer.name', o.name, OPTIMIZERS)
  choice('optimizer.schedule', o.schedule, SCHEDULES)
  if not o.learning_rate > 0:
    raise ConfigError(f'optimizer.learning_rate must be > 0; got {o.learning_rate!r}.')
  for key in ('warmup_steps', 'momentum', 'weight_decay', 'max_grad_norm',
              'end_lr_fraction'):
    non_negative(f'optimizer.{key}', o[key])
  positive('optimizer.grad_accum_steps', o.grad_accum_steps)
  positive('optimizer.decay_after_epochs', o.decay_after_epochs)
  if not o.lr_decay_factor >= 1.0:
    raise ConfigError(
        f'optimizer.lr_decay_factor divides the learning rate; it must be >= 1, '
        f'got {o.lr_decay_factor!r}.')
  if o.schedule == 'inverse_sqrt' and o.warmup_steps <= 0:
    raise ConfigError('optimizer.schedule=inverse_sqrt needs warmup_steps > 0.')


def checkpoint_choice(value: Any) -> str | int:
  """'latest', 'best' or a step number (int or digit string)."""
  if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
    return value
  if isinstance(value, str):
    if value in ('latest', 'best'):
      return value
    if value.isdigit():
      return int(value)
  raise ConfigError(
      f"checkpoint={value!r} must be 'latest', 'best' or a step number.")


def differing_keys(saved: Mapping[str, Any], config: ml_collections.ConfigDict,
                   section: str) -> list[tuple[str, Any, Any]]:
  """``(key, saved value, value now)`` for each key of ``section`` that
  differs between a checkpoint's saved config (JSON) and ``config`` (lists
  and tuples compare equal)."""
  now = json.loads(config.to_json_best_effort()).get(section) or {}
  before = saved.get(section) or {}
  return [(key, before[key], now[key]) for key in sorted(now)
          if key in before and before[key] != now[key]]


def config_differences(saved: Mapping[str, Any],
                       config: ml_collections.ConfigDict,
                       sections: tuple[str, ...]) -> list[str]:
  """'section.key: checkpoint has X, config gives Y' for each key of
  ``sections`` that differs (:func:`differing_keys`)."""
  return [f'{section}.{key}: checkpoint has {before!r}, config gives '
          f'{after!r}' for section in sections
          for key, before, after in differing_keys(saved, config, section)]

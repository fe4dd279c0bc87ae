"""A model's class and constructor arguments as JSON, and its parameter shapes.

Generic over model classes: an exportable class is a Flax module with
``export_kind`` (a class attribute naming its kind, e.g.
``'language_model'``) and ``dummy_inputs()`` (``(args, kwargs)`` of ``init``
for one token or step, used to check parameter shapes). ``model.json``
records the class by its import path (``"module"``, ``"class"``), so a new
model class exports and reloads with no edit here. Field values are written
as JSON: numbers, strings, lists, dicts, dtypes by name, and the dataclasses
of ``_DATACLASSES`` by name.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from flax.core import meta
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lstm_flax import param_paths
from lstm_flax.export.files import MODEL_FILE

# Dataclasses that may appear in a module's fields (written by name).
_DATACLASSES = {'LSTMSpec': ('lstm_flax.spec', 'LSTMSpec'),
                'DropoutConfig': ('lstm_flax.spec', 'DropoutConfig')}
_SKIPPED_FIELDS = ('parent', 'name')


def _import(module_name: str, name: str) -> Any:
  return getattr(importlib.import_module(module_name), name)


def _is_exportable(cls: Any) -> bool:
  return (isinstance(cls, type) and issubclass(cls, nn.Module)
          and isinstance(getattr(cls, 'export_kind', None), str)
          and callable(getattr(cls, 'dummy_inputs', None)))


def kind_of(module: Any) -> str:
  """The export kind of a module instance (its class's ``export_kind``).

  Raises:
    ValueError: a module whose class is not exportable.
  """
  if not _is_exportable(type(module)):
    raise ValueError(
        f'Cannot export a {type(module).__name__}: an exportable Flax module class has '
        'export_kind (a kind name) and dummy_inputs() (init arguments), as '
        'lstm_flax.models.LanguageModel does.')
  return type(module).export_kind


def class_path(module: Any) -> tuple[str, str]:
  """``(module import path, class name)`` of an exportable module instance."""
  kind_of(module)
  return type(module).__module__, type(module).__qualname__


def module_class(kind: Any, module_name: Any, class_name: Any) -> type:
  """The exportable class ``module_name.class_name``, checked against ``kind``.

  Raises:
    ValueError: a missing or unimportable class, one that is not exportable,
      or one of another kind.
  """
  if not isinstance(module_name, str) or not isinstance(class_name, str):
    raise ValueError(f'"module" = {module_name!r} and "class" = {class_name!r} must name the '
                     "model class (e.g. 'lstm_flax.models', 'LanguageModel').")
  try:
    cls = _import(module_name, class_name)
  except (ImportError, AttributeError) as e:
    raise ValueError(f'cannot import {module_name}.{class_name} ({e}); install the package '
                     'that defines the model class.') from None
  if not _is_exportable(cls):
    raise ValueError(f'{module_name}.{class_name} is not an exportable model class (a Flax '
                     'module with export_kind and dummy_inputs()).')
  if cls.export_kind != kind:
    raise ValueError(f'"kind" is {kind!r} but {module_name}.{class_name} is a '
                     f'{cls.export_kind!r}.')
  return cls


def _to_json(value: Any, where: str) -> Any:
  """A module field value as JSON (dtypes by name, dataclasses by class)."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, (list, tuple)):
    return [_to_json(v, f'{where}[{i}]') for i, v in enumerate(value)]
  if isinstance(value, Mapping):
    return {str(k): _to_json(v, f'{where}.{k}') for k, v in value.items()}
  if dataclasses.is_dataclass(value) and type(value).__name__ in _DATACLASSES:
    fields = {f.name: _to_json(getattr(value, f.name), f'{where}.{f.name}')
              for f in dataclasses.fields(value) if f.init}
    return {'__dataclass__': type(value).__name__, 'fields': fields}
  try:
    return jnp.dtype(value).name  # jnp.float32, np.dtype('bfloat16'), ...
  except TypeError:
    pass
  raise ValueError(f'{where} = {value!r} cannot be written as JSON (supported: numbers, '
                   f'strings, lists, dtypes and {sorted(_DATACLASSES)}); export a module whose '
                   'fields are plain values.')


def _from_json(value: Any) -> Any:
  """The inverse of :func:`_to_json` (lists become tuples: hashable fields)."""
  if isinstance(value, list):
    return tuple(_from_json(v) for v in value)
  if isinstance(value, dict):
    if '__dataclass__' in value:
      name = value['__dataclass__']
      if name not in _DATACLASSES:
        raise ValueError(f'Unknown dataclass {name!r} in {MODEL_FILE}; known: '
                         f'{sorted(_DATACLASSES)}.')
      fields = {k: _from_json(v) for k, v in value['fields'].items()}
      return _import(*_DATACLASSES[name])(**fields)
    return {k: _from_json(v) for k, v in value.items()}
  return value


def module_arguments(module: Any) -> dict[str, Any]:
  """The constructor arguments of a Flax module as JSON (its dataclass fields
  but ``parent`` and ``name``).

  Raises:
    ValueError: a field that cannot be written as JSON, named.
  """
  owner = type(module).__name__
  return {f.name: _to_json(getattr(module, f.name), f'{owner}.{f.name}')
          for f in dataclasses.fields(module) if f.init and f.name not in _SKIPPED_FIELDS}


def build_module(info: Mapping[str, Any]) -> Any:
  """The module that ``model.json``'s ``info`` describes: its ``"module"`` /
  ``"class"`` (checked against ``"kind"``) built from ``"arguments"``.

  Raises:
    ValueError: an unknown or mismatched class, or an invalid field (the
      module's own check).
  """
  cls = module_class(info.get('kind'), info.get('module'), info.get('class'))
  return cls(**{k: _from_json(v) for k, v in info['arguments'].items()})


def param_shapes(module: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """``{'/'-joined path: (shape, dtype name)}`` of the module's parameters
  (abstract: nothing is computed)."""
  kind_of(module)
  args, kwargs = module.dummy_inputs()
  abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
  params = meta.unbox(abstract['params'])
  return {k: (tuple(v.shape), jnp.dtype(v.dtype).name)
          for k, v in param_paths.flatten(params).items()}


def check_params(flat: Mapping[str, Any], expected: Mapping[str, tuple[tuple[int, ...], str]],
                 what: str) -> None:
  """Raises ValueError naming the missing, unexpected and wrongly shaped
  entries of ``flat`` (``'/'``-joined paths) against :func:`param_shapes`."""
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  wrong = [f'{k}: {tuple(np.shape(flat[k]))}, expected {expected[k][0]}'
           for k in sorted(set(flat) & set(expected))
           if tuple(np.shape(flat[k])) != expected[k][0]]
  if missing or unexpected or wrong:
    raise ValueError(
        f'{what} do not fit the module: ' + '; '.join(
            part for part in (f'missing {missing}' if missing else '',
                              f'unexpected {unexpected}' if unexpected else '',
                              f'wrong shapes ({", ".join(wrong)})' if wrong else '') if part)
        + '.')

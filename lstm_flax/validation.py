"""Field checks shared by the modules' ``__post_init__`` (one message format).

Every error is a ``ValueError`` naming ``Owner.field``, the value and what is
allowed, so a model built from a config dict points at the bad key.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax.numpy as jnp

DTYPES = ('float32', 'bfloat16', 'float16', 'float64')


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def positive(owner: str, field: str, value: Any) -> None:
  """``value`` must be an int > 0."""
  if not _is_int(value) or value <= 0:
    raise ValueError(f'{owner}.{field} must be a positive int; got {value!r}.')


def optional_positive(owner: str, field: str, value: Any) -> None:
  """``value`` must be None (the default) or an int > 0."""
  if value is not None and (not _is_int(value) or value <= 0):
    raise ValueError(
        f'{owner}.{field} must be None (default) or a positive int; got {value!r}.')


def optional_positive_float(owner: str, field: str, value: Any) -> None:
  """``value`` must be None or a number > 0."""
  if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                            or not value > 0):
    raise ValueError(
        f'{owner}.{field} must be None (default) or a positive number; got {value!r}.')


def rate(owner: str, field: str, value: Any) -> None:
  """A dropout rate: a number in ``[0, 1)``."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise ValueError(f'{owner}.{field} must be a dropout rate in [0, 1); got {value!r}.')


def boolean(owner: str, field: str, value: Any) -> None:
  if not isinstance(value, bool):
    raise ValueError(f'{owner}.{field} must be True or False; got {value!r}.')


def number(owner: str, field: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ValueError(f'{owner}.{field} must be a number; got {value!r}.')


def choice(owner: str, field: str, value: Any, allowed: Sequence[Any]) -> None:
  if value not in allowed:
    raise ValueError(f'{owner}.{field} must be one of {tuple(allowed)}; got {value!r}.')


def dtype(owner: str, field: str, value: Any) -> jnp.dtype:
  """A floating dtype given as a name (``'bfloat16'``) or a jnp/numpy dtype."""
  if isinstance(value, str):
    if value not in DTYPES:
      raise ValueError(f'{owner}.{field} must be one of {DTYPES} (or a jnp dtype); '
                       f'got {value!r}.')
    return jnp.dtype(value)
  try:
    resolved = jnp.dtype(value)
  except TypeError:
    resolved = None
  if resolved is None or not jnp.issubdtype(resolved, jnp.floating):
    raise ValueError(f'{owner}.{field} must be one of {DTYPES} (or a jnp floating dtype); '
                     f'got {value!r}.')
  return resolved


def unroll(owner: str, field: str, value: Optional[int]) -> None:
  """``lax.scan`` unroll: None (backend default) or an int >= 1."""
  optional_positive(owner, field, value)

"""Cache of tokenised data, so a second run starts in seconds.

Entries are uncompressed ``.npz`` files named by a digest of everything that
determines their content (source fingerprint, tokenizer fingerprint, format
version). They are written atomically (temporary file + rename), so processes
that share a cache directory never read a partial entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1


def entry_path(cache_dir: str | os.PathLike[str], name: str,
               key: Mapping[str, Any]) -> Path:
  """The file of the entry ``name`` for ``key``."""
  digest = hashlib.sha256(json.dumps(
      {'version': FORMAT_VERSION, **key}, sort_keys=True,
      default=str).encode()).hexdigest()[:20]
  return Path(cache_dir) / f'{name}-{digest}.npz'


def load_or_build(cache_dir: str | os.PathLike[str] | None, name: str,
                  key: Mapping[str, Any],
                  build: Callable[[], Mapping[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
  """Returns the cached arrays for ``key``, building and caching them if new.

  Args:
    cache_dir: the cache directory (``None``: no caching).
    name: readable prefix of the file name, e.g. ``'lm-train'``.
    key: JSON-able values that determine the arrays.
    build: computes the arrays when they are not cached.
  """
  if cache_dir is None:
    return dict(build())
  path = entry_path(cache_dir, name, key)
  if path.is_file():
    with np.load(path) as entry:
      return {k: entry[k] for k in entry.files}
  arrays = dict(build())
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=path.parent, suffix='.tmp',
                                   delete=False) as f:
    np.savez(f, **arrays)
  os.replace(f.name, path)
  logging.info('Cached %s in %s', name, path)
  return arrays

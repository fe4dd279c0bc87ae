"""What the LM and translation datasets share: the data config and the
sharded encoding of a split into the cache.

:func:`resolve_config` checks a data config against its defaults;
:func:`preprocessing_keys` adds the keys of the sharded, chunked
preprocessing. :func:`encode_shards` has process ``p`` of ``P`` encode the
missing shards ``k % P == p`` of a :class:`input_pipeline.cache.ShardedEntry`
and then wait for the others'; :func:`find_entry` remembers an entry's shard
count so a cached split opens without touching its text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from input_pipeline import cache, errors, hosts, text_lines
from input_pipeline import tokenizers as tokenizers_lib


def preprocessing_keys(c: ml_collections.ConfigDict) -> None:
  """Keys of the sharded, chunked preprocessing (LM and translation)."""
  # Cache shard size in MiB of text (0: auto, 1/16 of the split but 1-64
  # MiB). Shards are a property of the data, not of the number of processes.
  c.shard_mb = 0.0
  # Text read and encoded per chunk, in MiB: bounds preprocessing memory.
  c.chunk_mb = 4.0
  # SentencePiece encoding threads per process (-1: all cores; 1 when
  # several processes share a machine's cores).
  c.encode_threads = -1
  # Seconds a process waits for the tokenizer or other processes' shards.
  c.wait_timeout_s = 3600.0


def resolve_config(config: Mapping[str, Any] | ml_collections.ConfigDict,
                   defaults: ml_collections.ConfigDict) -> dict[str, Any]:
  """``defaults`` updated with ``config``, as a plain dict.

  Raises:
    errors.ConfigError: ``config`` has a key the defaults do not know.
  """
  given = config.to_dict() if isinstance(
      config, ml_collections.ConfigDict) else dict(config)
  resolved = defaults.to_dict()
  for key, value in given.items():
    if key not in resolved:
      raise errors.ConfigError(
          f'Unknown data config key {key!r}. Known keys: {sorted(resolved)}.')
    if isinstance(resolved[key], dict) and isinstance(value, Mapping):
      resolved[key] = {**resolved[key], **value}
    else:
      resolved[key] = value
  return resolved


def cache_dir(cfg: Mapping[str, Any], workdir: str | os.PathLike[str]) -> Path:
  return Path(cfg['cache_dir'] or Path(workdir) / 'data_cache')


class LazyShards(text_lines.LineShards):
  """LineShards made on first use (a cached run never opens the text)."""

  def __init__(self, make: Callable[[], Any]):
    self._make = make

  @property
  def num_shards(self) -> int:  # pytype: disable=signature-mismatch
    return self._make().num_shards

  def chunks(self, shard: int, chunk_bytes: int):
    return self._make().chunks(shard, chunk_bytes)


def chunk_bytes(cfg: Mapping[str, Any]) -> int:
  if not cfg['chunk_mb'] > 0:
    raise errors.ConfigError(f"chunk_mb={cfg['chunk_mb']} must be > 0.")
  return max(1, int(cfg['chunk_mb'] * text_lines.MIB))


def set_threads(tokenizer: tokenizers_lib.Tokenizer,
                cfg: Mapping[str, Any]) -> None:
  if isinstance(tokenizer, tokenizers_lib.SentencePieceTokenizer):
    tokenizer.num_threads = int(cfg['encode_threads'])


def find_entry(cache_dir: Path, name: str, key: Mapping[str, Any],
               fields: Mapping[str, Any],
               num_shards: Callable[[], int]) -> cache.ShardedEntry:
  """The cache entry of ``key``. Its shard count is recorded in a small
  index file (written atomically) so that a later run opens the entry
  without reading (or even sizing) the text."""
  index = cache.entry_dir(cache_dir, name, key).with_suffix('.shards')
  try:
    count = int(index.read_text())
  except (OSError, ValueError):
    count = num_shards()
    cache.atomic_write_bytes(index, str(count).encode())
  return cache.ShardedEntry(cache_dir, name, key, count, fields)


def encode_shards(entry: cache.ShardedEntry, shard: hosts.HostShard,
                  cfg: Mapping[str, Any], done: dict[str, int],
                  chunks: Callable[[int], Iterator[dict[str, np.ndarray]]]
                  ) -> list[dict[str, Any]]:
  """Writes this process's missing shards of ``entry``, then waits for all
  (written by the other processes) and returns their metadata."""
  for k in cache.my_shards(entry.num_shards, shard.process_index,
                           shard.process_count):
    if entry.complete(k):
      continue
    state = {'has_text': False}

    def tracked(k=k, state=state):
      for chunk in chunks(k):
        has_text = bool(chunk.pop('_has_text'))
        state['has_text'] = state['has_text'] or has_text
        yield chunk

    meta = entry.write(k, tracked(), lambda state=state: state)
    done['shards_encoded'] += 1
    done['tokens_encoded'] += sum(
        n for f, n in meta['lengths'].items() if f.endswith('ids'))
    logging.info('Encoded shard %d of %d of %s (%s tokens)', k,
                 entry.num_shards, entry.name, meta['lengths'])
  return entry.wait(cfg['wait_timeout_s'])

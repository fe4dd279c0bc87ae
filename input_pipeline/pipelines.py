"""Config-facing entry points: LM and translation datasets from a data config.

``get_lm_datasets(config.data, workdir)`` and
``get_translation_datasets(config.data, workdir)`` take an
``ml_collections.ConfigDict`` (or dict) whose keys are those of
:func:`default_lm_config` / :func:`default_translation_config`; missing keys
take the defaults and unknown keys are an error (they are usually typos).

What a run builds is kept in the workdir: the tokenizer in
``workdir/tokenizer/`` (built once, by process 0; reused on restart; a
different one is an error) and the tokenised splits in ``cache_dir`` (default
``workdir/data_cache``) as memory-mapped ``.npy`` shards (see
:mod:`input_pipeline.cache`), so a second run reads neither text nor trains a
tokenizer, and opens its data in O(1). With several processes the workdir
(and ``cache_dir``) must be on a file system they share.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from input_pipeline import cache, corpora, errors, hosts, lm, prefetch
from input_pipeline import tokenizers as tokenizers_lib
from input_pipeline import translation

Batch = dict[str, np.ndarray]


def default_lm_config() -> ml_collections.ConfigDict:
  """Data config of a language model, with every key and its default."""
  c = ml_collections.ConfigDict()
  # Source: 'embedded' (pydoc_data.topics), 'text_files' or 'tfds'.
  c.source = 'embedded'
  c.data_dir = ''  # text_files: the directory of split files.
  c.files = ml_collections.ConfigDict(
      {'train': 'train.txt', 'valid': 'valid.txt', 'test': 'test.txt'})
  c.encoding_errors = 'strict'  # Or 'replace': invalid UTF-8 -> U+FFFD.
  c.tfds_name = ''  # tfds: e.g. 'lm1b', 'tiny_shakespeare'.
  c.tfds_data_dir = ''  # tfds: where it is prepared ('': TFDS default).
  c.tfds_splits = ml_collections.ConfigDict(
      {'train': 'train', 'valid': 'validation', 'test': 'test'})
  c.tfds_text_key = 'text'
  c.eval_splits = ('valid',)
  c.max_lines = 0  # Use only the first max_lines lines of each split (0: all).
  # Tokenizer: 'word', 'char' or 'sentencepiece'.
  c.tokenizer = 'word'
  c.vocab_size = 0  # word: cap (0: none); sentencepiece: size.
  c.min_count = 1  # word: minimum count in train.
  c.spm_model_type = 'unigram'  # Or 'bpe'.
  c.spm_model_path = ''  # Load this model instead of training one.
  c.spm_character_coverage = 1.0
  c.spm_max_training_lines = 1_000_000
  # Batching: 'stream' (truncated BPTT) or 'sentences' (lm1b style).
  c.batching = 'stream'
  c.batch_size = 20  # Global (all hosts) rows per batch.
  c.eval_batch_size = 10
  c.seq_len = 35  # stream: window length T.
  c.random_window = False  # stream: AWD-LSTM randomised window length.
  c.window_std = 5.0
  c.short_window_prob = 0.05
  c.min_window = 5
  c.max_window_extra = 20
  c.max_length = 128  # sentences: truncate / pack to this many tokens.
  c.packing = False
  c.pool_batches = 100
  c.pad_to_multiple = 8
  c.shuffle = True
  c.seed = 0
  c.cache_dir = ''  # '': workdir/data_cache.
  c.prefetch = 2  # Batches prepared ahead on a thread (0: none).
  _preprocessing_keys(c)
  return c


def _preprocessing_keys(c: ml_collections.ConfigDict) -> None:
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


def default_translation_config() -> ml_collections.ConfigDict:
  """Data config of a translation model, with every key and its default."""
  c = ml_collections.ConfigDict()
  # Source: 'parallel_text' (Multi30k layout) or 'tfds'.
  c.source = 'parallel_text'
  c.data_dir = ''  # parallel_text: holds {prefix}.{lang} files.
  c.train_prefix = 'train'
  c.eval_prefix = 'val'
  c.source_lang = 'de'  # File suffix / TFDS feature key of the source.
  c.target_lang = 'en'
  c.encoding_errors = 'strict'
  c.tfds_name = 'wmt17_translate/de-en'  # Or wmt14_translate/de-en, ...
  c.tfds_data_dir = ''
  c.tfds_train_split = 'train'
  c.tfds_eval_split = 'validation'
  c.max_train_examples = 0  # Use only the first N pairs (0: all).
  c.max_eval_examples = 0
  # Joint SentencePiece model on both sides of the training split.
  c.vocab_size = 8000
  c.spm_model_type = 'unigram'
  c.spm_model_path = ''
  c.spm_character_coverage = 1.0
  c.spm_max_training_lines = 1_000_000
  # Batching.
  c.max_length = 64  # Training pairs with a longer side are dropped.
  c.max_eval_length = 0  # 0: keep every evaluation pair.
  c.tokens_per_batch = 4096  # Global token budget per batch and side.
  c.eval_tokens_per_batch = 4096
  c.batch_size_multiple = 8
  c.bucket_boundaries = ()  # (): translation.DEFAULT_BOUNDARIES.
  c.seed = 0
  c.cache_dir = ''
  c.prefetch = 2
  _preprocessing_keys(c)
  return c


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


def _cache_dir(cfg: Mapping[str, Any], workdir: str | os.PathLike[str]) -> Path:
  return Path(cfg['cache_dir'] or Path(workdir) / 'data_cache')


# ------------------------------------------------------------------ LM ------


def make_text_corpus(cfg: Mapping[str, Any]) -> corpora.TextCorpus:
  """The corpus a resolved LM data config names."""
  source = cfg['source']
  if source == 'embedded':
    return corpora.EmbeddedCorpus()
  if source == 'text_files':
    return corpora.TextFilesCorpus(cfg['data_dir'], cfg['files'],
                                   cfg['encoding_errors'])
  if source == 'tfds':
    if not cfg['tfds_name']:
      raise errors.ConfigError(
          "source='tfds' needs tfds_name (e.g. 'lm1b', 'tiny_shakespeare').")
    return corpora.TfdsTextCorpus(
        cfg['tfds_name'], cfg['tfds_splits'], cfg['tfds_text_key'],
        cfg['tfds_data_dir'] or cfg['data_dir'] or None,
        encoding_errors=cfg['encoding_errors'])
  raise errors.ConfigError(
      f"source={source!r} is unknown; use 'embedded', 'text_files' or 'tfds'.")


@dataclasses.dataclass
class TokenizedText:
  """A tokenised split: ``ids`` int32 ``[num_tokens]`` (every line followed by
  ``eos_id``) and ``lengths`` int32 ``[num_lines]`` (tokens per line, eos
  included). Both are memory-mapped cache shards (one ``np.memmap``, or a
  :class:`input_pipeline.cache.ConcatArray` of them): nothing is read until a
  batch slices it."""

  ids: np.ndarray | cache.ConcatArray
  lengths: np.ndarray | cache.ConcatArray

  @property
  def num_lines(self) -> int:
    return len(self.lengths)

  @functools.cached_property
  def offsets(self) -> np.ndarray:
    """int64 ``[num_lines + 1]``; line i is ``ids[offsets[i]:offsets[i+1]]``
    (computed on first use, in memory: 8 bytes per line)."""
    offsets = np.zeros(self.num_lines + 1, np.int64)
    np.cumsum(np.asarray(self.lengths), out=offsets[1:])
    return offsets


@dataclasses.dataclass
class LMDatasets:
  """The tokenizer and tokenised splits of an LM run, and their batches.

  Batch formats: :class:`input_pipeline.lm.StreamBatcher` (``batching=
  'stream'``) and :class:`input_pipeline.lm.SentenceBatcher`
  (``'sentences'``).
  """

  config: dict[str, Any]
  tokenizer: tokenizers_lib.Tokenizer
  splits: dict[str, TokenizedText]
  shard: hosts.HostShard
  # What this process did to preprocess: shards and tokens it encoded.
  preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.vocab_size

  def num_tokens(self, split: str) -> int:
    """Tokens of ``split``, one ``<eos>`` per line included."""
    return len(self.splits[split].ids)

  def batcher(self, split: str) -> lm.StreamBatcher | lm.SentenceBatcher:
    """The batcher of ``split`` (train: shuffled / dropping remainders)."""
    if split not in self.splits:
      raise errors.ConfigError(
          f'Split {split!r} was not loaded; loaded: {sorted(self.splits)}. '
          'Add it to the data config eval_splits.')
    cfg, data = self.config, self.splits[split]
    training = split == 'train'
    batch_size = cfg['batch_size'] if training else cfg['eval_batch_size']
    if cfg['batching'] == 'stream':
      return lm.StreamBatcher(
          data.ids, batch_size, cfg['seq_len'], self.shard,
          drop_remainder=training,
          random_window=cfg['random_window'] and training, seed=cfg['seed'],
          window_std=cfg['window_std'],
          short_window_prob=cfg['short_window_prob'],
          min_window=cfg['min_window'],
          max_window_extra=cfg['max_window_extra'],
          pad_to_multiple=cfg['pad_to_multiple'])
    if cfg['batching'] == 'sentences':
      return lm.SentenceBatcher(
          data.ids, data.offsets, batch_size, cfg['max_length'], self.shard,
          bos_id=self.tokenizer.bos_id, packing=cfg['packing'],
          shuffle=cfg['shuffle'] and training, seed=cfg['seed'],
          drop_remainder=training, pad_to_multiple=cfg['pad_to_multiple'],
          pool_batches=cfg['pool_batches'])
    raise errors.ConfigError(
        f"batching={cfg['batching']!r} is unknown; use 'stream' or "
        "'sentences'.")

  def steps_per_epoch(self, split: str = 'train') -> int:
    """Batches in the first epoch of ``split`` (later epochs have as many,
    except with AWD-LSTM random windows or dropped remainders)."""
    batcher = self.batcher(split)
    if isinstance(batcher, lm.StreamBatcher):
      return len(batcher.windows(0))
    return len(batcher.plan(0))

  def train_batches(self, start_step: int = 0) -> Iterator[Batch]:
    """Training batches forever, from global step ``start_step`` on."""
    return prefetch.prefetch(self.batcher('train').iterate(start_step),
                             self.config['prefetch'])

  def eval_batches(self, split: str = 'valid') -> Iterator[Batch]:
    """One pass over an evaluation split (every token scored once)."""
    return prefetch.prefetch(self.batcher(split).iterate(num_epochs=1),
                             self.config['prefetch'])


def get_lm_datasets(config: Mapping[str, Any] | ml_collections.ConfigDict,
                    workdir: str | os.PathLike[str], *,
                    process_index: int | None = None,
                    process_count: int | None = None) -> LMDatasets:
  """Loads (or reuses) the tokenizer and tokenised splits of an LM run.

  Preprocessing streams the text in chunks (``chunk_mb``) into memory-mapped
  cache shards: process ``p`` of ``P`` encodes the shards ``k % P == p`` of
  each split and then maps all of them; process 0 alone builds the tokenizer
  (see :func:`input_pipeline.tokenizers.get_tokenizer`). A process that finds
  the shards complete reads no text.

  Args:
    config: the data config (keys of :func:`default_lm_config`).
    workdir: the run directory (tokenizer and default cache live there); on a
      file system shared by all processes.
    process_index, process_count: this host among the JAX processes
      (default: ``jax.process_index()``, ``jax.process_count()``).

  Returns:
    :class:`LMDatasets` with the train split and ``eval_splits``.
  """
  cfg = resolve_config(config, default_lm_config())
  shard = hosts.resolve(process_index, process_count)
  shard.rows(cfg['batch_size'], 'batch_size')
  shard.rows(cfg['eval_batch_size'], 'eval_batch_size')
  corpus = make_text_corpus(cfg)
  max_lines = cfg['max_lines'] or None
  cache_dir = _cache_dir(cfg, workdir)
  chunk_bytes = _chunk_bytes(cfg)

  @functools.cache
  def sources(split: str) -> corpora.LineShards:
    return corpus.shards(split, max_lines, cfg['shard_mb'])

  def fingerprint(split: str) -> str:
    return corpora.fingerprint_of(corpus.fingerprint(split), str(max_lines))

  tokenizer = tokenizers_lib.get_tokenizer(
      tokenizers_lib.spec_of(cfg), workdir, _LazyShards(lambda: sources('train')),
      fingerprint('train'), process_index=shard.process_index,
      process_count=shard.process_count, stats_dir=cache_dir,
      wait_timeout_s=cfg['wait_timeout_s'], chunk_bytes=chunk_bytes)
  _set_threads(tokenizer, cfg)
  splits = {}
  done = {'shards_encoded': 0, 'tokens_encoded': 0}
  for split in ('train', *cfg['eval_splits']):
    # The number of shards is decided from the data: the entry's name only
    # needs the source, so a cached split opens without touching its text.
    key = {'source': fingerprint(split), 'tokenizer': tokenizer.fingerprint(),
           'shard_mb': cfg['shard_mb']}
    entry = _find_entry(cache_dir, f'lm-{split}', key, _LM_FIELDS,
                        lambda split=split: sources(split).num_shards)
    metas = _encode_shards(entry, shard, cfg, done, lambda k, split=split: (
        _lm_chunks(tokenizer, sources(split), k, chunk_bytes)))
    if not any(m.get('has_text') for m in metas):
      raise errors.EmptyDataError(
          f'Split {split!r} of {corpus!r} has no text in its first '
          f"{sum(m['lengths']['lengths'] for m in metas)} lines (data config "
          f"max_lines={cfg['max_lines']}). Put text in the split, or raise "
          'max_lines (0: all lines).')
    splits[split] = TokenizedText(cache.concat(entry.open('ids')),
                                  cache.concat(entry.open('lengths')))
    logging.info('LM split %s: %d lines, %d tokens in %d shard(s)', split,
                 splits[split].num_lines, len(splits[split].ids),
                 entry.num_shards)
  return LMDatasets(cfg, tokenizer, splits, shard, done)


_LM_FIELDS = {'ids': np.int32, 'lengths': np.int32}
_PAIR_FIELDS = {'source_ids': np.int32, 'source_lengths': np.int32,
                'target_ids': np.int32, 'target_lengths': np.int32}


class _LazyShards(corpora.LineShards):
  """LineShards made on first use (a cached run never opens the text)."""

  def __init__(self, make: Callable[[], Any]):
    self._make = make

  @property
  def num_shards(self) -> int:  # pytype: disable=signature-mismatch
    return self._make().num_shards

  def chunks(self, shard: int, chunk_bytes: int):
    return self._make().chunks(shard, chunk_bytes)


def _chunk_bytes(cfg: Mapping[str, Any]) -> int:
  if not cfg['chunk_mb'] > 0:
    raise errors.ConfigError(f"chunk_mb={cfg['chunk_mb']} must be > 0.")
  return max(1, int(cfg['chunk_mb'] * corpora.MIB))


def _set_threads(tokenizer: tokenizers_lib.Tokenizer,
                 cfg: Mapping[str, Any]) -> None:
  if isinstance(tokenizer, tokenizers_lib.SentencePieceTokenizer):
    tokenizer.num_threads = int(cfg['encode_threads'])


def _find_entry(cache_dir: Path, name: str, key: Mapping[str, Any],
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


def _encode_shards(entry: cache.ShardedEntry, shard: hosts.HostShard,
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


def _lm_chunks(tokenizer: tokenizers_lib.Tokenizer,
               source: corpora.LineShards, shard: int, chunk_bytes: int
               ) -> Iterator[dict[str, np.ndarray]]:
  has_text = False
  for lines in source.chunks(shard, chunk_bytes):
    ids, lengths = tokenizer.encode_chunk(lines)
    has_text = has_text or any(map(str.strip, lines))
    yield {'ids': ids, 'lengths': lengths, '_has_text': has_text}


# ---------------------------------------------------------- translation -----


@dataclasses.dataclass
class TranslationSplit:
  """Encoded pairs of a split (after the length filter).

  ``source_ids`` / ``target_ids``: int32 flat tokens of every pair of the
  split (before the filter), each sentence followed by EOS, memory-mapped.
  ``source_starts`` / ``source_lengths`` (and ``target_*``): int64 start and
  length in those arrays of each kept pair. ``raw_index``: int64
  ``[num_pairs]``, the line of each kept pair in the unfiltered split.
  ``num_dropped``: pairs removed by the length filter.
  """

  source_ids: np.ndarray | cache.ConcatArray
  source_starts: np.ndarray
  source_lengths: np.ndarray
  target_ids: np.ndarray | cache.ConcatArray
  target_starts: np.ndarray
  target_lengths: np.ndarray
  raw_index: np.ndarray
  num_dropped: int

  @property
  def num_pairs(self) -> int:
    return len(self.raw_index)

  @property
  def source_offsets(self) -> translation.Spans:
    """The kept source sentences, as :class:`translation.Spans` (what
    :class:`translation.TranslationBatcher` takes as offsets)."""
    return translation.Spans(self.source_starts, self.source_lengths)

  @property
  def target_offsets(self) -> translation.Spans:
    return translation.Spans(self.target_starts, self.target_lengths)


@dataclasses.dataclass
class TranslationDatasets:
  """Tokenizer, encoded train / eval pairs and raw eval strings.

  ``eval_references[i]`` / ``eval_sources[i]`` are the raw target / source
  strings of eval pair ``i`` (the ``example_index`` of the batches), for BLEU
  on detokenised text. Batch format: :mod:`input_pipeline.translation`.
  """

  config: dict[str, Any]
  tokenizer: tokenizers_lib.SentencePieceTokenizer
  train: TranslationSplit
  eval: TranslationSplit
  eval_sources: list[str]
  eval_references: list[str]
  shard: hosts.HostShard
  # What this process did to preprocess: shards and tokens it encoded.
  preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.vocab_size

  def batcher(self, split: str) -> translation.TranslationBatcher:
    cfg = self.config
    training = split == 'train'
    data = self.train if training else self.eval
    if training:
      max_length = cfg['max_length']
    else:
      max_length = cfg['max_eval_length'] or translation.max_length_of(
          np.maximum(data.source_lengths, data.target_lengths))
    return translation.TranslationBatcher(
        data.source_ids, data.source_offsets, data.target_ids,
        data.target_offsets, self.shard, bos_id=self.tokenizer.bos_id,
        pad_id=self.tokenizer.pad_id,
        tokens_per_batch=cfg['tokens_per_batch' if training else
                             'eval_tokens_per_batch'],
        max_length=max_length, batch_size_multiple=cfg['batch_size_multiple'],
        training=training, seed=cfg['seed'],
        boundaries=cfg['bucket_boundaries'])

  def train_batches(self, start_step: int = 0) -> Iterator[Batch]:
    """Training batches forever, from global step ``start_step`` on."""
    return prefetch.prefetch(self.batcher('train').iterate(start_step),
                             self.config['prefetch'])

  def eval_batches(self) -> Iterator[Batch]:
    """One ordered pass over the eval pairs (empty rows: index -1)."""
    return prefetch.prefetch(self.batcher('eval').iterate(),
                             self.config['prefetch'])


def _pair_source(cfg: Mapping[str, Any], split: str
                 ) -> tuple[Callable[[], corpora.PairShards],
                            Callable[[], tuple[list[str], list[str]]], str]:
  """(sharded pairs, reader of all pairs in memory (small eval splits),
  fingerprint) of 'train' or 'eval'."""
  limit = cfg['max_train_examples' if split == 'train' else
              'max_eval_examples'] or None
  if cfg['source'] == 'parallel_text':
    if not cfg['data_dir']:
      raise errors.ConfigError(
          "source='parallel_text' needs data_dir: the directory with "
          f"{cfg['train_prefix']}.{cfg['source_lang']} etc.")
    prefix = cfg['train_prefix' if split == 'train' else 'eval_prefix']
    args = (cfg['data_dir'], prefix, cfg['source_lang'], cfg['target_lang'],
            cfg['encoding_errors'])
    read = functools.partial(corpora.read_parallel_files, *args)
    fingerprint = corpora.parallel_files_fingerprint(*args)
    shards = functools.partial(corpora.parallel_file_shards, *args,
                               limit=limit, shard_mb=cfg['shard_mb'])
  elif cfg['source'] == 'tfds':
    args = (cfg['tfds_name'], cfg['tfds_train_split' if split == 'train'
                                  else 'tfds_eval_split'],
            cfg['source_lang'], cfg['target_lang'],
            cfg['tfds_data_dir'] or cfg['data_dir'] or None)
    read = functools.partial(corpora.read_tfds_translation, *args)
    fingerprint = corpora.tfds_translation_fingerprint(*args)
    shards = functools.partial(corpora.tfds_translation_shards, *args,
                               limit=limit, shard_mb=cfg['shard_mb'])
  else:
    raise errors.ConfigError(
        f"source={cfg['source']!r} is unknown; use 'parallel_text' or 'tfds'.")

  @functools.cache
  def read_limited() -> tuple[list[str], list[str]]:
    source, target = read()
    return source[:limit], target[:limit]

  return (functools.cache(shards), read_limited,
          corpora.fingerprint_of(fingerprint, str(limit)))


def get_translation_datasets(
    config: Mapping[str, Any] | ml_collections.ConfigDict,
    workdir: str | os.PathLike[str], *, process_index: int | None = None,
    process_count: int | None = None) -> TranslationDatasets:
  """Loads (or reuses) the joint tokenizer and encoded pairs of a run.

  Preprocessing is sharded and chunked as in :func:`get_lm_datasets`; the
  cache holds every pair with its lengths, and the length filter and bucket
  plan work on the lengths arrays.

  Args:
    config: the data config (keys of :func:`default_translation_config`).
    workdir: the run directory.
    process_index, process_count: this host among the JAX processes.
  """
  cfg = resolve_config(config, default_translation_config())
  shard = hosts.resolve(process_index, process_count)
  shard.rows(cfg['batch_size_multiple'], 'batch_size_multiple')
  train_shards, _, train_fingerprint = _pair_source(cfg, 'train')
  eval_shards, read_eval, eval_fingerprint = _pair_source(cfg, 'eval')
  cache_dir = _cache_dir(cfg, workdir)
  chunk_bytes = _chunk_bytes(cfg)

  tokenizer = tokenizers_lib.get_tokenizer(
      tokenizers_lib.spec_of(cfg, 'sentencepiece'), workdir, _LazyShards(lambda: train_shards().joint_lines()),
      train_fingerprint, process_index=shard.process_index,
      process_count=shard.process_count, stats_dir=cache_dir,
      wait_timeout_s=cfg['wait_timeout_s'], chunk_bytes=chunk_bytes)
  assert isinstance(tokenizer, tokenizers_lib.SentencePieceTokenizer)
  _set_threads(tokenizer, cfg)
  splits = {}
  done = {'shards_encoded': 0, 'tokens_encoded': 0}
  for split, shards, fingerprint, max_length in (
      ('train', train_shards, train_fingerprint, cfg['max_length']),
      ('eval', eval_shards, eval_fingerprint, cfg['max_eval_length'])):
    key = {'source': fingerprint, 'tokenizer': tokenizer.fingerprint(),
           'shard_mb': cfg['shard_mb']}
    entry = _find_entry(cache_dir, f'translation-{split}', key, _PAIR_FIELDS,
                        lambda shards=shards: shards().num_shards)
    _encode_shards(entry, shard, cfg, done, lambda k, shards=shards: (
        _pair_chunks(tokenizer, shards(), k, chunk_bytes)))
    splits[split] = _filtered_pairs(entry, max_length, split)
    if splits[split].num_dropped:
      logging.info('Translation %s: %d pairs kept, %d dropped by max length',
                   split, splits[split].num_pairs, splits[split].num_dropped)
  eval_source, eval_target = read_eval()
  kept = splits['eval'].raw_index.tolist()
  return TranslationDatasets(
      cfg, tokenizer, splits['train'], splits['eval'],
      [eval_source[i] for i in kept], [eval_target[i] for i in kept], shard,
      done)


def _pair_chunks(tokenizer: tokenizers_lib.Tokenizer,
                 pairs: corpora.PairShards, shard: int, chunk_bytes: int
                 ) -> Iterator[dict[str, np.ndarray]]:
  for source, target in pairs.chunks(shard, chunk_bytes):
    source_ids, source_lengths = tokenizer.encode_chunk(source)
    target_ids, target_lengths = tokenizer.encode_chunk(target)
    yield {'source_ids': source_ids, 'source_lengths': source_lengths,
           'target_ids': target_ids, 'target_lengths': target_lengths,
           '_has_text': True}


def _filtered_pairs(entry: cache.ShardedEntry, max_length: int,
                    split: str) -> TranslationSplit:
  """The cached pairs, length-filtered from the lengths arrays alone.

  Holds per kept pair an int64 start and an int32 length per side and the
  int64 raw index (~32 bytes per pair); the token ids stay memory-mapped.
  """
  lengths = {side: np.concatenate(entry.open(f'{side}_lengths'))
             for side in ('source', 'target')}
  total = len(lengths['source'])
  keep = translation.length_mask(lengths['source'], lengths['target'],
                                 max_length, split)
  sides = []
  for side in ('source', 'target'):
    side_lengths = lengths.pop(side)
    starts = np.zeros(total, np.int64)
    np.cumsum(side_lengths[:-1], dtype=np.int64, out=starts[1:])
    if keep is not None:
      starts, side_lengths = starts[keep], side_lengths[keep]
    sides.append((cache.concat(entry.open(f'{side}_ids')), starts,
                  side_lengths))
  raw_index = (np.arange(total, dtype=np.int64) if keep is None else
               np.flatnonzero(keep).astype(np.int64))
  return TranslationSplit(*sides[0], *sides[1], raw_index,
                          total - len(raw_index))

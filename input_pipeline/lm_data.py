"""Language-model datasets from a data config: ``get_lm_datasets``.

``get_lm_datasets(config.data, workdir)`` takes an ``ml_collections.ConfigDict``
(or dict) whose keys are those of :func:`default_lm_config`; missing keys
take the defaults and unknown keys are an error (they are usually typos).

What a run builds is kept in the workdir: the tokenizer in
``workdir/tokenizer/`` (built once, by process 0; reused on restart; a
different one is an error) and the tokenised splits in ``cache_dir`` (default
``workdir/data_cache``) as memory-mapped ``.npy`` shards (see
:mod:`input_pipeline.cache`), so a second run reads neither text nor trains a
tokenizer, and opens its data in O(1). With several processes the workdir
(and ``cache_dir``) must be on a file system they share. Batches:
:mod:`input_pipeline.lm`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections
import numpy as np

from input_pipeline import cache, errors, hosts, lm, prefetch
from input_pipeline import sharded_encoding, text_corpora, text_lines, tfds_data
from input_pipeline import tokenizers as tokenizers_lib

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
  sharded_encoding.preprocessing_keys(c)
  return c


def make_text_corpus(cfg: Mapping[str, Any]) -> text_corpora.TextCorpus:
  """The corpus a resolved LM data config names."""
  source = cfg['source']
  if source == 'embedded':
    return text_corpora.EmbeddedCorpus()
  if source == 'text_files':
    return text_corpora.TextFilesCorpus(cfg['data_dir'], cfg['files'],
                                        cfg['encoding_errors'])
  if source == 'tfds':
    if not cfg['tfds_name']:
      raise errors.ConfigError(
          "source='tfds' needs tfds_name (e.g. 'lm1b', 'tiny_shakespeare').")
    return tfds_data.TfdsTextCorpus(
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
  cfg = sharded_encoding.resolve_config(config, default_lm_config())
  shard = hosts.resolve(process_index, process_count)
  shard.rows(cfg['batch_size'], 'batch_size')
  shard.rows(cfg['eval_batch_size'], 'eval_batch_size')
  corpus = make_text_corpus(cfg)
  max_lines = cfg['max_lines'] or None
  cache_dir = sharded_encoding.cache_dir(cfg, workdir)
  chunk_bytes = sharded_encoding.chunk_bytes(cfg)

  @functools.cache
  def sources(split: str) -> text_lines.LineShards:
    return corpus.shards(split, max_lines, cfg['shard_mb'])

  def fingerprint(split: str) -> str:
    return text_lines.fingerprint_of(corpus.fingerprint(split), str(max_lines))

  tokenizer = tokenizers_lib.get_tokenizer(
      tokenizers_lib.spec_of(cfg), workdir,
      sharded_encoding.LazyShards(lambda: sources('train')),
      fingerprint('train'), process_index=shard.process_index,
      process_count=shard.process_count, stats_dir=cache_dir,
      wait_timeout_s=cfg['wait_timeout_s'], chunk_bytes=chunk_bytes)
  sharded_encoding.set_threads(tokenizer, cfg)
  splits = {}
  done = {'shards_encoded': 0, 'tokens_encoded': 0}
  for split in ('train', *cfg['eval_splits']):
    # The number of shards is decided from the data: the entry's name only
    # needs the source, so a cached split opens without touching its text.
    key = {'source': fingerprint(split), 'tokenizer': tokenizer.fingerprint(),
           'shard_mb': cfg['shard_mb']}
    entry = sharded_encoding.find_entry(
        cache_dir, f'lm-{split}', key, _LM_FIELDS,
        lambda split=split: sources(split).num_shards)
    metas = sharded_encoding.encode_shards(
        entry, shard, cfg, done, lambda k, split=split: (
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


def _lm_chunks(tokenizer: tokenizers_lib.Tokenizer,
               source: text_lines.LineShards, shard: int, chunk_bytes: int
               ) -> Iterator[dict[str, np.ndarray]]:
  has_text = False
  for lines in source.chunks(shard, chunk_bytes):
    ids, lengths = tokenizer.encode_chunk(lines)
    has_text = has_text or any(map(str.strip, lines))
    yield {'ids': ids, 'lengths': lengths, '_has_text': has_text}

"""Translation datasets from a data config: ``get_translation_datasets``.

``get_translation_datasets(config.data, workdir)`` takes a config with the
keys of :func:`default_translation_config`: parallel files (Multi30k layout)
or a TFDS translate dataset (:mod:`input_pipeline.parallel_text`), a joint
SentencePiece tokenizer trained on both sides of the training split, and the
encoded pairs in memory-mapped cache shards as for the language-model data
(:mod:`input_pipeline.lm_data`). Batches: :mod:`input_pipeline.translation`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ml_collections
import numpy as np

from input_pipeline import cache, errors, hosts, parallel_text, prefetch
from input_pipeline import sharded_encoding, text_lines, translation
from input_pipeline import tokenizers as tokenizers_lib

Batch = dict[str, np.ndarray]


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
  sharded_encoding.preprocessing_keys(c)
  return c


_PAIR_FIELDS = {'source_ids': np.int32, 'source_lengths': np.int32,
                'target_ids': np.int32, 'target_lengths': np.int32}


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
                 ) -> tuple[Callable[[], parallel_text.PairShards],
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
    read = functools.partial(parallel_text.read_parallel_files, *args)
    fingerprint = parallel_text.parallel_files_fingerprint(*args)
    shards = functools.partial(parallel_text.parallel_file_shards, *args,
                               limit=limit, shard_mb=cfg['shard_mb'])
  elif cfg['source'] == 'tfds':
    args = (cfg['tfds_name'], cfg['tfds_train_split' if split == 'train'
                                  else 'tfds_eval_split'],
            cfg['source_lang'], cfg['target_lang'],
            cfg['tfds_data_dir'] or cfg['data_dir'] or None)
    read = functools.partial(parallel_text.read_tfds_translation, *args)
    fingerprint = parallel_text.tfds_translation_fingerprint(*args)
    shards = functools.partial(parallel_text.tfds_translation_shards, *args,
                               limit=limit, shard_mb=cfg['shard_mb'])
  else:
    raise errors.ConfigError(
        f"source={cfg['source']!r} is unknown; use 'parallel_text' or 'tfds'.")

  @functools.cache
  def read_limited() -> tuple[list[str], list[str]]:
    source, target = read()
    return source[:limit], target[:limit]

  return (functools.cache(shards), read_limited,
          text_lines.fingerprint_of(fingerprint, str(limit)))


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
  cfg = sharded_encoding.resolve_config(config, default_translation_config())
  shard = hosts.resolve(process_index, process_count)
  shard.rows(cfg['batch_size_multiple'], 'batch_size_multiple')
  train_shards, _, train_fingerprint = _pair_source(cfg, 'train')
  eval_shards, read_eval, eval_fingerprint = _pair_source(cfg, 'eval')
  cache_dir = sharded_encoding.cache_dir(cfg, workdir)
  chunk_bytes = sharded_encoding.chunk_bytes(cfg)

  tokenizer = tokenizers_lib.get_tokenizer(
      tokenizers_lib.spec_of(cfg, 'sentencepiece'), workdir,
      sharded_encoding.LazyShards(lambda: train_shards().joint_lines()),
      train_fingerprint, process_index=shard.process_index,
      process_count=shard.process_count, stats_dir=cache_dir,
      wait_timeout_s=cfg['wait_timeout_s'], chunk_bytes=chunk_bytes)
  assert isinstance(tokenizer, tokenizers_lib.SentencePieceTokenizer)
  sharded_encoding.set_threads(tokenizer, cfg)
  splits = {}
  done = {'shards_encoded': 0, 'tokens_encoded': 0}
  for split, shards, fingerprint, max_length in (
      ('train', train_shards, train_fingerprint, cfg['max_length']),
      ('eval', eval_shards, eval_fingerprint, cfg['max_eval_length'])):
    key = {'source': fingerprint, 'tokenizer': tokenizer.fingerprint(),
           'shard_mb': cfg['shard_mb']}
    entry = sharded_encoding.find_entry(
        cache_dir, f'translation-{split}', key, _PAIR_FIELDS,
        lambda shards=shards: shards().num_shards)
    sharded_encoding.encode_shards(
        entry, shard, cfg, done, lambda k, shards=shards: (
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
                 pairs: parallel_text.PairShards, shard: int, chunk_bytes: int
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

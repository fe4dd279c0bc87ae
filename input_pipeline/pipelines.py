"""Config-facing entry points: LM and translation datasets from a data config.

``get_lm_datasets(config.data, workdir)`` and
``get_translation_datasets(config.data, workdir)`` take an
``ml_collections.ConfigDict`` (or dict) whose keys are those of
:func:`default_lm_config` / :func:`default_translation_config`; missing keys
take the defaults and unknown keys are an error (they are usually typos).

What a run builds is kept in the workdir: the tokenizer in
``workdir/tokenizer/`` (reused on restart; a different one is an error) and
the tokenised splits in ``cache_dir`` (default ``workdir/data_cache``), so a
second run reads neither text nor trains a tokenizer.
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
_TOKENIZER_KEYS = ('vocab_size', 'min_count', 'spm_model_type',
                   'spm_model_path', 'spm_character_coverage',
                   'spm_max_training_lines')


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
  return c


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
  ``eos_id``) and ``offsets`` int64 ``[num_lines + 1]``."""

  ids: np.ndarray
  offsets: np.ndarray

  @property
  def num_lines(self) -> int:
    return len(self.offsets) - 1


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

  Args:
    config: the data config (keys of :func:`default_lm_config`).
    workdir: the run directory (tokenizer and default cache live there).
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

  @functools.cache
  def read_lines(split: str) -> list[str]:
    lines = corpus.read_lines(split)[:max_lines]
    if not any(line.strip() for line in lines):
      raise errors.EmptyDataError(
          f'Split {split!r} of {corpus!r} has no text in its first '
          f"{len(lines)} lines (data config max_lines={cfg['max_lines']}). "
          'Put text in the split, or raise max_lines (0: all lines).')
    return lines

  def fingerprint(split: str) -> str:
    return corpora.fingerprint_of(corpus.fingerprint(split), str(max_lines))

  spec = {'kind': cfg['tokenizer'],
          **{k: cfg[k] for k in _TOKENIZER_KEYS}}
  tokenizer = tokenizers_lib.get_tokenizer(
      spec, workdir, lambda: read_lines('train'), fingerprint('train'))
  splits = {}
  for split in ('train', *cfg['eval_splits']):
    arrays = cache.load_or_build(
        _cache_dir(cfg, workdir), f'lm-{split}',
        {'source': fingerprint(split), 'tokenizer': tokenizer.fingerprint()},
        functools.partial(_encode_split, tokenizer, read_lines, split))
    splits[split] = TokenizedText(arrays['ids'], arrays['offsets'])
    logging.info('LM split %s: %d lines, %d tokens', split,
                 splits[split].num_lines, len(arrays['ids']))
  return LMDatasets(cfg, tokenizer, splits, shard)


def _encode_split(tokenizer: tokenizers_lib.Tokenizer,
                  read_lines: Callable[[str], list[str]],
                  split: str) -> dict[str, np.ndarray]:
  ids, offsets = tokenizer.encode_lines(read_lines(split))
  return {'ids': ids, 'offsets': offsets}


# ---------------------------------------------------------- translation -----


@dataclasses.dataclass
class TranslationSplit:
  """Encoded pairs of a split (after the length filter).

  ``source_ids`` / ``target_ids``: int32 flat tokens, each sentence followed
  by EOS; ``*_offsets``: int64 ``[num_pairs + 1]``. ``raw_index``: int64
  ``[num_pairs]``, the line of each kept pair in the unfiltered split.
  ``num_dropped``: pairs removed by the length filter.
  """

  source_ids: np.ndarray
  source_offsets: np.ndarray
  target_ids: np.ndarray
  target_offsets: np.ndarray
  raw_index: np.ndarray
  num_dropped: int

  @property
  def num_pairs(self) -> int:
    return len(self.source_offsets) - 1


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
          np.maximum(np.diff(data.source_offsets),
                     np.diff(data.target_offsets)))
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


def _read_pairs(cfg: Mapping[str, Any], split: str
                ) -> tuple[Callable[[], tuple[list[str], list[str]]], str]:
  """(reader of the split's pairs, fingerprint) for 'train' or 'eval'."""
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
  elif cfg['source'] == 'tfds':
    args = (cfg['tfds_name'], cfg['tfds_train_split' if split == 'train'
                                  else 'tfds_eval_split'],
            cfg['source_lang'], cfg['target_lang'],
            cfg['tfds_data_dir'] or cfg['data_dir'] or None)
    read = functools.partial(corpora.read_tfds_translation, *args)
    fingerprint = corpora.tfds_translation_fingerprint(*args)
  else:
    raise errors.ConfigError(
        f"source={cfg['source']!r} is unknown; use 'parallel_text' or 'tfds'.")

  @functools.cache
  def read_limited() -> tuple[list[str], list[str]]:
    source, target = read()
    return source[:limit], target[:limit]

  return read_limited, corpora.fingerprint_of(fingerprint, str(limit))


def get_translation_datasets(
    config: Mapping[str, Any] | ml_collections.ConfigDict,
    workdir: str | os.PathLike[str], *, process_index: int | None = None,
    process_count: int | None = None) -> TranslationDatasets:
  """Loads (or reuses) the joint tokenizer and encoded pairs of a run.

  Args:
    config: the data config (keys of :func:`default_translation_config`).
    workdir: the run directory.
    process_index, process_count: this host among the JAX processes.
  """
  cfg = resolve_config(config, default_translation_config())
  shard = hosts.resolve(process_index, process_count)
  shard.rows(cfg['batch_size_multiple'], 'batch_size_multiple')
  read_train, train_fingerprint = _read_pairs(cfg, 'train')
  read_eval, eval_fingerprint = _read_pairs(cfg, 'eval')

  def joint_lines() -> list[str]:
    source, target = read_train()
    return [line for pair in zip(source, target) for line in pair]

  spec = {'kind': 'sentencepiece',
          **{k: cfg[k] for k in _TOKENIZER_KEYS if k in cfg}}
  tokenizer = tokenizers_lib.get_tokenizer(spec, workdir, joint_lines,
                                           train_fingerprint)
  assert isinstance(tokenizer, tokenizers_lib.SentencePieceTokenizer)
  cache_dir = _cache_dir(cfg, workdir)
  splits = {}
  for split, read, fingerprint, max_length in (
      ('train', read_train, train_fingerprint, cfg['max_length']),
      ('eval', read_eval, eval_fingerprint, cfg['max_eval_length'])):
    arrays = cache.load_or_build(
        cache_dir, f'translation-{split}',
        {'source': fingerprint, 'tokenizer': tokenizer.fingerprint(),
         'max_length': max_length},
        functools.partial(_encode_pairs, tokenizer, read, max_length, split))
    splits[split] = TranslationSplit(
        arrays['source_ids'], arrays['source_offsets'], arrays['target_ids'],
        arrays['target_offsets'], arrays['raw_index'],
        int(arrays['num_dropped']))
    if splits[split].num_dropped:
      logging.info('Translation %s: %d pairs kept, %d dropped by max length',
                   split, splits[split].num_pairs, splits[split].num_dropped)
  eval_source, eval_target = read_eval()
  kept = splits['eval'].raw_index.tolist()
  return TranslationDatasets(
      cfg, tokenizer, splits['train'], splits['eval'],
      [eval_source[i] for i in kept], [eval_target[i] for i in kept], shard)


def _encode_pairs(tokenizer: tokenizers_lib.Tokenizer,
                  read: Callable[[], tuple[list[str], list[str]]],
                  max_length: int, split: str) -> dict[str, np.ndarray]:
  source, target = read()
  source_ids, source_offsets = tokenizer.encode_lines(source)
  target_ids, target_offsets = tokenizer.encode_lines(target)
  keep = translation.length_filter(
      np.diff(source_offsets), np.diff(target_offsets), max_length, split)
  source_ids, source_offsets = _select(source_ids, source_offsets, keep)
  target_ids, target_offsets = _select(target_ids, target_offsets, keep)
  return {'source_ids': source_ids, 'source_offsets': source_offsets,
          'target_ids': target_ids, 'target_offsets': target_offsets,
          'raw_index': keep.astype(np.int64),
          'num_dropped': np.asarray(len(source) - len(keep), np.int64)}


def _select(ids: np.ndarray, offsets: np.ndarray,
            keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The ragged rows ``keep`` of (ids, offsets)."""
  lengths = np.diff(offsets)[keep]
  new_offsets = np.zeros(len(keep) + 1, np.int64)
  np.cumsum(lengths, out=new_offsets[1:])
  if len(keep) == len(offsets) - 1:
    return ids, new_offsets
  starts = offsets[:-1][keep]
  index = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(
      new_offsets[-1])
  return ids[index], new_offsets

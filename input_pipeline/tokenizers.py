"""A run's tokenizer: built once, saved with the run, reused on restart.

:func:`get_tokenizer` builds (:mod:`input_pipeline.vocabulary`) or loads the
tokenizer of a run and saves it in ``workdir/tokenizer/`` in the
:mod:`lstm_flax.tokenizer` format, so a restarted run, evaluation, generation
and an exported model use the same one; a different vocabulary for the same
workdir is an error. With several processes, process 0 builds it from
per-shard statistics that all processes count. :func:`use_given` makes a
given tokenizer (transfer learning) the run's; :func:`load_tokenizer` reads
a run's back. :data:`SPEC_KEYS` / :data:`CONFIG_KEYS` are the one list of
the settings a tokenizer is built from.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from input_pipeline import cache, errors, text_lines, vocabulary
import lstm_flax.tokenizer as tokenizer_format
# The tokenizer types, for this module's users (one implementation: there).
from lstm_flax.tokenizer import (KINDS, METADATA_FILE, SentencePieceTokenizer,
                                 TOKENIZER_DIR, Tokenizer, VocabularyTokenizer)

# The spec keys that determine the vocabulary of each kind (get_tokenizer).
SPEC_KEYS = {
    'word': ('vocab_size', 'min_count'),
    'char': (),
    'sentencepiece': ('vocab_size', 'spm_model_type', 'spm_model_path',
                      'spm_character_coverage', 'spm_max_training_lines',
                      'seed'),
}
# The data config keys a tokenizer is built from: 'tokenizer' (the kind) and
# the spec keys but 'seed' (the data config seed shuffles batches; runs
# train SentencePiece with seed 0).
CONFIG_KEYS = ('tokenizer', *dict.fromkeys(
    k for keys in SPEC_KEYS.values() for k in keys if k != 'seed'))


def spec_of(cfg: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
  """The tokenizer spec of a data config (:func:`get_tokenizer`'s ``spec``):
  ``kind`` (default ``cfg['tokenizer']``) and the config's spec keys."""
  return {'kind': kind or cfg['tokenizer'],
          **{k: cfg[k] for k in CONFIG_KEYS[1:] if k in cfg}}


# ------------------------------------------------------- saving, loading ----


def save(tokenizer: Tokenizer, directory: str | os.PathLike[str],
         extra: Mapping[str, Any] | None = None) -> None:
  """Saves ``tokenizer`` (and ``extra`` metadata) into ``directory``, each
  file atomically, ``tokenizer.json`` last
  (:func:`lstm_flax.tokenizer.files`)."""
  for name, content in tokenizer_format.files(tokenizer, extra).items():
    cache.atomic_write_bytes(Path(directory) / name, content)


def load_saved(directory: str | os.PathLike[str]
               ) -> tuple[Tokenizer, dict[str, Any]] | None:
  """The tokenizer saved in ``directory`` and its metadata as saved; ``None``
  if there is none, or it is unreadable or does not match its model files
  (logged: it is rebuilt).

  Raises:
    errors.ConfigError: a saved tokenizer of an unknown kind.
  """
  if not (Path(directory) / METADATA_FILE).is_file():
    return None
  try:
    return tokenizer_format.read(directory)
  except tokenizer_format.UnknownKindError as e:
    raise errors.ConfigError(str(e)) from None
  except (OSError, ValueError) as e:
    logging.warning('Ignored the saved tokenizer: %s', e)
    return None


def load_tokenizer(workdir: str | os.PathLike[str]) -> Tokenizer:
  """The tokenizer saved in ``workdir/tokenizer/`` (by an LM or classifier
  run), e.g. to pass to
  :func:`input_pipeline.get_classification_datasets` for transfer.

  Raises:
    errors.TokenizerNotFoundError: no tokenizer is saved there.
  """
  directory = Path(workdir) / TOKENIZER_DIR
  saved = load_saved(directory)
  if saved is None:
    raise errors.TokenizerNotFoundError(
        f'No tokenizer is saved in {directory} ({METADATA_FILE} missing). '
        'Point at the workdir of a run that has started training.')
  return saved[0]


def use_given(tokenizer: Tokenizer, workdir: str | os.PathLike[str]) -> None:
  """Saves a given tokenizer (e.g. a language model's, for transfer) as the
  run's, marked ``origin: given``, or checks it against the one saved."""
  directory = Path(workdir) / TOKENIZER_DIR
  saved = load_saved(directory)
  if saved is not None:
    if saved[0].fingerprint() == tokenizer.fingerprint():
      return
    raise errors.VocabularyMismatchError(
        f'The tokenizer given for this run ({tokenizer.kind}, '
        f'{tokenizer.vocab_size} ids) differs from the one saved with it in '
        f'{directory} ({saved[0].kind}, {saved[0].vocab_size} ids); the '
        'saved model weights only fit the saved vocabulary. Give the '
        'tokenizer the run was started with, or start a new run in a fresh '
        'workdir.')
  save(tokenizer, directory,
       {'spec': {'kind': tokenizer.kind}, 'origin': 'given'})
  logging.info('Saved the given %s tokenizer (%d ids) in %s', tokenizer.kind,
               tokenizer.vocab_size, directory)


def _vocab_difference(saved: Tokenizer, new: Tokenizer) -> str:
  if isinstance(saved, VocabularyTokenizer) and isinstance(
      new, VocabularyTokenizer):
    for i, (a, b) in enumerate(zip(saved.vocab, new.vocab)):
      if a != b:
        return f'first difference at id {i}: saved {a!r}, now {b!r}'
  return f'saved size {saved.vocab_size}, now {new.vocab_size}'


def get_tokenizer(spec: Mapping[str, Any], workdir: str | os.PathLike[str],
                  train_lines: Callable[[], Iterable[str]] | Any,
                  data_fingerprint: str, *, process_index: int = 0,
                  process_count: int = 1,
                  stats_dir: str | os.PathLike[str] | None = None,
                  wait_timeout_s: float = 3600.0,
                  chunk_bytes: int = 4 << 20) -> Tokenizer:
  """Returns the run's tokenizer: the saved one, or a new one that is saved.

  With several processes, only process 0 builds and saves the tokenizer; the
  others wait for ``workdir/tokenizer/tokenizer.json`` (the workdir is on a
  shared file system) and load it, so a run never trains N copies. The
  training text is streamed: word / char counts and SentencePiece's line
  sample are gathered shard by shard (each process counts its shards, see
  :func:`_shard_stats`), never holding the split in memory.

  Args:
    spec: what to build: ``kind`` (``'word'``, ``'char'``,
      ``'sentencepiece'``), ``vocab_size`` (word: cap, 0 = none;
      sentencepiece: size), ``min_count`` (word), ``spm_model_type``,
      ``spm_model_path`` (load instead of train), ``spm_character_coverage``,
      ``spm_max_training_lines``, ``seed``.
    workdir: the run directory; the tokenizer lives in
      ``workdir/tokenizer/``.
    train_lines: the training text: a :class:`text_lines.LineShards`, or a
      function returning the lines (only called when building).
    data_fingerprint: fingerprint of the training text; with ``spec`` it
      decides whether the saved tokenizer is still the right one.
    process_index, process_count: this process among those sharing the
      workdir.
    stats_dir: where the processes exchange per-shard counts (with
      ``process_count > 1``), e.g. the data cache directory.
    wait_timeout_s: how long a process waits for the others.
    chunk_bytes: text read per chunk.

  Raises:
    errors.VocabularyMismatchError: a tokenizer is saved in the workdir and
      the config / data now give a different one.
    errors.TokenizerNotFoundError: ``spm_model_path`` does not exist.
    errors.WaitTimeoutError: process 0 did not save the tokenizer in time.
  """
  kind = spec['kind']
  if kind not in KINDS:
    raise errors.ConfigError(
        f'tokenizer={kind!r} is unknown; use one of {list(KINDS)}.')
  model_path = spec.get('spm_model_path') or ''
  # Only the settings that determine this kind's vocabulary.
  spec = {'kind': kind, **{k: spec[k] for k in SPEC_KEYS[kind] if k in spec}}
  directory = Path(workdir) / TOKENIZER_DIR
  loaded = vocabulary.load_sentencepiece(model_path) if (
      kind == 'sentencepiece' and model_path) else None
  saved = load_saved(directory)
  if saved is not None:
    tokenizer, metadata = saved
    if loaded is not None:
      if loaded.fingerprint() == tokenizer.fingerprint():
        return tokenizer
      raise errors.VocabularyMismatchError(
          f'The SentencePiece model {model_path} (data config '
          'spm_model_path) differs from the tokenizer saved with this run in '
          f'{directory}. Use the model the run was started with, or start a '
          'new run in a fresh workdir.')
    if metadata.get('spec') == spec and (
        metadata.get('data_fingerprint') == data_fingerprint):
      return tokenizer
    if metadata['kind'] != kind or (kind == 'sentencepiece' and
                                    metadata.get('spec') != spec):
      # Training another kind or SentencePiece with other settings cannot
      # give the saved vocabulary back: fail before building anything.
      raise errors.VocabularyMismatchError(
          f'The tokenizer saved with this run in {directory} was built with '
          f"{metadata.get('spec')}, but the data config now asks for {spec}; "
          'its vocabulary would differ, and the saved model weights only fit '
          'the saved vocabulary. Restore the tokenizer settings the run was '
          'started with, or start a new run in a fresh workdir (or delete '
          f'{directory} if no model was trained with it).')
    # Same settings, other training data (or the same data touched / moved):
    # rebuild, and accept the result if it is the saved vocabulary.
  text = train_lines if isinstance(
      train_lines, text_lines.LineShards) else text_lines.ListShards(
          lambda: list(train_lines()))
  stats = None
  if loaded is None:
    stats = _shard_stats(spec, text, data_fingerprint, process_index,
                         process_count, stats_dir, wait_timeout_s,
                         chunk_bytes)
  if process_index != 0:
    return _wait_for_saved(directory, spec, data_fingerprint, loaded,
                           wait_timeout_s)
  new = vocabulary.build(spec, loaded, text, stats, chunk_bytes)
  if saved is not None and new.fingerprint() != saved[0].fingerprint():
    raise errors.VocabularyMismatchError(
        f'The vocabulary built now from the training data '
        f'({new.vocab_size} tokens) differs from the one saved with this '
        f'run in {directory} ({saved[0].vocab_size} tokens; '
        f'{_vocab_difference(saved[0], new)}). The training data changed '
        'since the run started, and the saved model weights only fit the '
        'saved vocabulary. Restore the training data the run was started '
        'with, or start a new run in a fresh workdir (or delete '
        f'{directory} if no model was trained with it).')
  if saved is not None:
    # The saved vocabulary again: refresh its record of the data, unless
    # the workdir is read-only (evaluating a mounted checkpoint).
    try:
      save(new, directory, {'spec': spec, 'data_fingerprint': data_fingerprint})
    except (errors.CacheWriteError, OSError) as e:
      logging.info('Kept the saved tokenizer record in %s (%s).', directory, e)
    return new
  save(new, directory, {'spec': spec, 'data_fingerprint': data_fingerprint})
  logging.info('Saved %s tokenizer (%d ids) in %s', kind, new.vocab_size,
               directory)
  return new


def _wait_for_saved(directory: Path, spec: Mapping[str, Any],
                    data_fingerprint: str,
                    loaded: SentencePieceTokenizer | None,
                    timeout_s: float) -> Tokenizer:
  """Process > 0: waits for process 0 to save the tokenizer, and loads it."""
  found: list[Tokenizer] = []

  def ready() -> bool:
    saved = load_saved(directory)
    if saved is None:
      return False
    tokenizer, metadata = saved
    if loaded is not None:
      ok = tokenizer.fingerprint() == loaded.fingerprint()
    else:
      ok = metadata.get('spec') == dict(spec) and metadata.get(
          'data_fingerprint') == data_fingerprint
    if ok:
      found.append(tokenizer)
    return ok

  cache.wait_until(
      ready, timeout_s,
      f'Timed out after {timeout_s:.0f} s waiting for process 0 to save the '
      f'tokenizer in {directory / METADATA_FILE}. Process 0 builds it; check '
      'its log (it may have failed), or raise the data config '
      'wait_timeout_s. The workdir must be on a file system shared by all '
      'processes.')
  return found[0]


def _shard_stats(spec: Mapping[str, Any], text: Any, data_fingerprint: str,
                 process_index: int, process_count: int,
                 stats_dir: str | os.PathLike[str] | None, timeout_s: float,
                 chunk_bytes: int) -> Iterator[dict[str, Any]] | None:
  """Per-shard vocabulary statistics, computed in parallel.

  One process: computed lazily, shard after shard, as the returned iterator
  is consumed (so only one shard's counts and the merged counts are held).
  Several: process ``p`` computes the shards ``k % P == p`` and saves each
  (atomically) under ``stats_dir``; process 0 waits for all and returns an
  iterator that loads them one by one; the others return ``None``.
  """
  kind = spec['kind']
  if process_count == 1:
    return (vocabulary.stats_of(kind, text, k, chunk_bytes)
            for k in range(text.num_shards))
  if stats_dir is None:
    raise errors.ConfigError('Several processes need a shared stats_dir.')
  digest = cache.digest_of({'kind': kind, 'data': data_fingerprint,
                             'shards': text.num_shards})
  directory = Path(stats_dir) / f'vocab-stats-{digest}'

  def path(k: int) -> Path:
    return directory / f'{k:05d}-of-{text.num_shards:05d}.json'

  for k in cache.my_shards(text.num_shards, process_index, process_count):
    if not path(k).is_file():
      stats = vocabulary.stats_of(kind, text, k, chunk_bytes)
      cache.atomic_write_bytes(path(k), json.dumps(stats).encode())
  if process_index != 0:
    return None
  cache.wait_until(
      lambda: all(path(k).is_file() for k in range(text.num_shards)),
      timeout_s, f'Timed out after {timeout_s:.0f} s waiting for the other '
      f'processes to count their shards of the training text in {directory}.'
      ' Check their logs, or raise the data config wait_timeout_s.')
  return (json.loads(path(k).read_text()) for k in range(text.num_shards))

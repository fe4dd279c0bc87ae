"""Tokens per second the input pipeline yields, after caching.

Cases (data from ../shared/data, relative to the repository root, or
--data_dir):

* ptb-stream: PTB, word level, stream batches B=20, T=35.
* wikitext2-spm: WikiText-2, SentencePiece (unigram, 8,000 pieces), stream
  batches B=20, T=35.
* multi30k-bucketed: Multi30k de->en, joint SentencePiece (8,000 pieces),
  length-bucketed batches of 4,096 tokens per side; source + target tokens
  are counted.

Each case first builds (or reuses) the tokenizer and the tokenised cache in
--workdir, then times a fresh ``get_*_datasets`` call (the cached start) and
iterating the training batches for --seconds, both through the tf.data
prefetch the trainer uses (prefetch=2) and straight from the numpy batcher
(prefetch=0). Tokens are the positions with mask 1.

Usage:
  python benchmarks/input_speed.py [--workdir /tmp/input-speed] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # pylint: disable=g-import-not-at-top

import input_pipeline  # pylint: disable=g-import-not-at-top

# What a PTB-medium train step consumes on 2 CPU cores (issue 3).
TRAIN_TOKENS_PER_SECOND = 1_300
REQUIRED_FACTOR = 20


def _cases(data_dir: Path) -> dict[str, tuple[Callable[..., Any], dict, list]]:
  return {
      'ptb-stream (word, B=20, T=35)': (
          input_pipeline.get_lm_datasets,
          {'source': 'text_files', 'data_dir': str(data_dir / 'ptb'),
           'files': {'train': 'ptb.train.txt', 'valid': 'ptb.valid.txt',
                     'test': ''},
           'batch_size': 20, 'seq_len': 35},
          ['mask']),
      'wikitext2-spm (unigram 8k, B=20, T=35)': (
          input_pipeline.get_lm_datasets,
          {'source': 'text_files', 'data_dir': str(data_dir / 'wikitext-2'),
           'files': {'train': 'train.txt', 'valid': 'valid.txt', 'test': ''},
           'tokenizer': 'sentencepiece', 'vocab_size': 8000,
           'batch_size': 20, 'seq_len': 35},
          ['mask']),
      'multi30k-bucketed (joint spm 8k, 4096 tok/batch)': (
          input_pipeline.get_translation_datasets,
          {'source': 'parallel_text', 'data_dir': str(data_dir / 'multi30k'),
           'vocab_size': 8000, 'tokens_per_batch': 4096},
          ['source_mask', 'target_mask']),
  }


def _rate(batches: Iterator[dict[str, np.ndarray]], mask_keys: list[str],
          seconds: float) -> tuple[float, int]:
  next(batches)  # Warm-up (starts the tf.data threads).
  tokens = steps = 0
  start = time.perf_counter()
  while time.perf_counter() - start < seconds:
    batch = next(batches)
    tokens += int(sum(batch[k].sum() for k in mask_keys))
    steps += 1
  return tokens / (time.perf_counter() - start), steps


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default='/tmp/lstm-flax-input-speed')
  parser.add_argument('--data_dir', default=str(REPO.parent / 'shared' /
                                                'data'))
  parser.add_argument('--seconds', type=float, default=5.0)
  args = parser.parse_args()
  data_dir = Path(args.data_dir)
  rows = []
  for number, (name, (get, config, mask_keys)) in enumerate(
      _cases(data_dir).items()):
    workdir = Path(args.workdir) / str(number)
    start = time.perf_counter()
    get(config, workdir, process_index=0, process_count=1)  # Build / cache.
    first = time.perf_counter() - start
    start = time.perf_counter()
    prefetched = get({**config, 'prefetch': 2}, workdir, process_index=0,
                     process_count=1)
    cached = time.perf_counter() - start
    rate_tf, _ = _rate(prefetched.train_batches(), mask_keys, args.seconds)
    direct = prefetched.batcher('train').iterate()
    rate_np, _ = _rate(direct, mask_keys, args.seconds)
    rows.append((name, first, cached, rate_tf, rate_np))
    print(f'{name}: first run {first:.1f} s, cached start {cached:.2f} s, '
          f'{rate_tf:,.0f} tokens/s (tf.data prefetch), {rate_np:,.0f} '
          'tokens/s (numpy batcher)', flush=True)
  need = TRAIN_TOKENS_PER_SECOND * REQUIRED_FACTOR
  print('\n| case | first run (build + cache) | cached start | tokens/s '
        '(tf.data prefetch) | tokens/s (numpy batcher) | x 1,300 tok/s |')
  print('|---|---|---|---|---|---|')
  for name, first, cached, rate_tf, rate_np in rows:
    print(f'| {name} | {first:.1f} s | {cached:.2f} s | {rate_tf:,.0f} | '
          f'{rate_np:,.0f} | {rate_tf / TRAIN_TOKENS_PER_SECOND:,.0f}x |')
  slow = [row[0] for row in rows if row[3] < need]
  if slow:
    print(f'\nBELOW {REQUIRED_FACTOR}x {TRAIN_TOKENS_PER_SECOND:,} tokens/s: '
          f'{slow}')
    sys.exit(1)


if __name__ == '__main__':
  main()

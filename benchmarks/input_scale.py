"""Preprocessing at scale: first-run time, CPU, tokens and peak memory per
process, cached start time and batches/s, for N = 1 and 2 processes.

Corpora are synthetic and built under ``--root`` (never in the repository):
k copies of WikiText-2 train (LM) or Multi30k train (translation, both
sides), each copy with its own line order, to about ``--sizes`` MB of text;
the eval split is the real validation split. Every measured process is
started as a multi-host run starts its processes: a separate Python process
per JAX process, ``jax.distributed.initialize(coordinator, N, i)`` (N > 1),
then ``input_pipeline.get_lm_datasets(config, workdir)`` /
``get_translation_datasets``, which take the process index and count from
JAX. Each configuration gets a fresh workdir (tokenizer and cache).

  python benchmarks/input_scale.py --root=/tmp/input_scale --sizes=10,160,1000

``--pipeline_path`` runs another checkout's ``input_pipeline`` (e.g. the one
before the sharded cache, extracted with ``git archive``) the same way.
Results are printed as a table and appended to ``--out`` as JSON lines.

Per process: ``first_s`` (wall time of the first call: reading, tokenizer,
encoding, cache), ``cpu_s`` (user + system CPU seconds of the call, all
threads), ``tokens`` (tokens this process encoded), ``peak_mb`` (peak RSS
while encoding and opening, sampled every 10 ms, with the Python, numpy and
JAX baseline ``base_mb``), ``tok_peak_mb`` (peak RSS while the tokenizer was
built: the SentencePiece sample and training, reported separately),
``cached_s`` (the same call in a new process once the cache is complete) and
``batches_s`` (training batches per second read from the cache, no
prefetch thread).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / 'shared' / 'data'
MB = 1_000_000


# ------------------------------------------------------------- corpora -----


def _copies(total_bytes: int, size_mb: float) -> int:
  return max(1, round(size_mb * MB / total_bytes))


def build_lm_corpus(root: Path, size_mb: float) -> Path:
  """k shuffled copies of WikiText-2 train (streamed to disk)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  directory = root / f'lm_{size_mb:g}mb'
  done = directory / '.complete'
  if done.is_file():
    return directory
  directory.mkdir(parents=True, exist_ok=True)
  source = (DATA / 'wikitext-2' / 'train.txt').read_bytes()
  lines = source.split(b'\n')[:-1]
  copies = _copies(len(source), size_mb)
  with open(directory / 'train.txt', 'wb') as f:
    for copy in range(copies):
      order = np.random.default_rng(copy).permutation(len(lines))
      f.write(b'\n'.join(lines[i] for i in order) + b'\n')
  shutil.copy(DATA / 'wikitext-2' / 'valid.txt', directory / 'valid.txt')
  done.write_text(str(copies))
  return directory


def build_parallel_corpus(root: Path, size_mb: float) -> Path:
  """k copies of Multi30k train (both sides in the same shuffled order)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  directory = root / f'mt_{size_mb:g}mb'
  done = directory / '.complete'
  if done.is_file():
    return directory
  directory.mkdir(parents=True, exist_ok=True)
  sides = {lang: (DATA / 'multi30k' / f'train.{lang}').read_bytes().split(
      b'\n')[:-1] for lang in ('de', 'en')}
  total = sum(len(b'\n'.join(v)) + 1 for v in sides.values())
  copies = _copies(total, size_mb)
  files = {lang: open(directory / f'train.{lang}', 'wb') for lang in sides}
  for copy in range(copies):
    order = np.random.default_rng(copy).permutation(len(sides['de']))
    for lang, lines in sides.items():
      files[lang].write(b'\n'.join(lines[i] for i in order) + b'\n')
  for f in files.values():
    f.close()
  for lang in sides:
    shutil.copy(DATA / 'multi30k' / f'val.{lang}', directory / f'val.{lang}')
  done.write_text(str(copies))
  return directory


def text_mb(directory: Path) -> float:
  return sum(p.stat().st_size for p in directory.glob('train.*')) / MB


# -------------------------------------------------------------- worker -----


class _RssSampler:
  """Peak resident memory per phase, sampled from /proc every 10 ms."""

  def __init__(self):
    self.phase = 'base'
    self.peaks: dict[str, float] = {}
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  @staticmethod
  def rss_mb() -> float:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20

  def _run(self):
    while not self._stop.is_set():
      rss = self.rss_mb()
      self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
      time.sleep(0.01)

  def set(self, phase: str):
    rss = self.rss_mb()
    self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
    self.phase = phase

  def stop(self):
    self.set('end')
    self._stop.set()
    self._thread.join()


def _cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def worker(spec: dict) -> dict:
  """One process of a run (in its own Python process)."""
  sampler = _RssSampler()
  import jax  # pylint: disable=g-import-not-at-top
  if spec['num_processes'] > 1:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(spec['coordinator'], spec['num_processes'],
                               spec['process_id'])
  import input_pipeline  # pylint: disable=g-import-not-at-top
  from input_pipeline import tokenizers  # pylint: disable=g-import-not-at-top
  new = 'encode_threads' in input_pipeline.default_lm_config()
  config = dict(spec['config'])
  if not new:
    for key in ('encode_threads', 'shard_mb', 'chunk_mb', 'wait_timeout_s'):
      config.pop(key, None)
  translation = spec['kind'] == 'translation'
  get = (input_pipeline.get_translation_datasets if translation else
         input_pipeline.get_lm_datasets)
  original = tokenizers.get_tokenizer

  def get_tokenizer(*args, **kwargs):
    sampler.set('tokenizer')
    start = time.perf_counter()
    try:
      return original(*args, **kwargs)
    finally:
      out['tokenizer_s'] = time.perf_counter() - start
      sampler.set('encode')

  out: dict = {}
  tokenizers.get_tokenizer = get_tokenizer  # What lm_data / translation_data call.
  sampler.set('base')
  base_mb = sampler.rss_mb()
  cpu0, start = _cpu_s(), time.perf_counter()
  data = get(config, spec['workdir'])
  wall, cpu = time.perf_counter() - start, _cpu_s() - cpu0
  sampler.set('after')
  if getattr(data, 'preprocessing', None) is not None:
    tokens = data.preprocessing['tokens_encoded']
  elif translation:
    tokens = sum(len(x.source_ids) + len(x.target_ids)
                 for x in (data.train, data.eval)) + data.train.num_dropped * 0
  else:
    tokens = sum(data.num_tokens(s) for s in data.splits)
  out.update({'wall_s': wall, 'cpu_s': cpu, 'tokens': int(tokens),
              'base_mb': base_mb,
              'peak_mb': max(sampler.peaks.get('encode', 0),
                             sampler.peaks.get('after', 0)),
              'tok_peak_mb': sampler.peaks.get('tokenizer', 0.0),
              'vocab_size': data.vocab_size})
  if spec.get('batches'):
    iterator = data.train_batches()
    next(iterator)
    start = time.perf_counter()
    for _ in range(spec['batches']):
      next(iterator)
    out['batches_s'] = spec['batches'] / (time.perf_counter() - start)
  sampler.stop()
  out['maxrss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  if spec['num_processes'] > 1:
    jax.distributed.shutdown()
  return out


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def run_processes(spec: dict, num_processes: int, pipeline_path: str,
                  timeout: float) -> list[dict]:
  """Starts ``num_processes`` workers as a multi-host run would."""
  coordinator = f'localhost:{_free_port()}'
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3',
         'PYTHONPATH': os.pathsep.join(
             [pipeline_path or str(REPO), str(REPO)])}
  procs = []
  for i in range(num_processes):
    worker_spec = {**spec, 'num_processes': num_processes, 'process_id': i,
                   'coordinator': coordinator}
    procs.append(subprocess.Popen(
        [sys.executable, __file__, '--worker', json.dumps(worker_spec)],
        env=env, cwd=REPO, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE))
  results = []
  for p in procs:
    out, err = p.communicate(timeout=timeout)
    if p.returncode:
      raise RuntimeError(f'worker failed ({p.returncode}):\n{err[-4000:]}')
    results.append(json.loads(out.split('RESULT')[-1]))
  return results


def lm_config(data_dir: Path, tokenizer: str, args) -> dict:
  return {'source': 'text_files', 'data_dir': str(data_dir),
          'files': {'train': 'train.txt', 'valid': 'valid.txt', 'test': ''},
          'tokenizer': tokenizer,
          'vocab_size': args.vocab_size if tokenizer == 'sentencepiece' else 0,
          'spm_max_training_lines': args.spm_max_training_lines,
          'batch_size': 64, 'eval_batch_size': 16, 'seq_len': 35,
          'prefetch': 0, 'encode_threads': 1}


def mt_config(data_dir: Path, args) -> dict:
  return {'source': 'parallel_text', 'data_dir': str(data_dir),
          'vocab_size': args.vocab_size,
          'spm_max_training_lines': args.spm_max_training_lines,
          'max_length': 64, 'tokens_per_batch': 4096,
          'batch_size_multiple': 8, 'prefetch': 0, 'encode_threads': 1}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--worker', default='')
  parser.add_argument('--root', default='/tmp/input_scale')
  parser.add_argument('--sizes', default='10,160,1000',
                      help='MB of training text per corpus.')
  parser.add_argument('--kinds', default='lm,translation')
  parser.add_argument('--tokenizers', default='word,sentencepiece',
                      help='LM tokenizers (translation: sentencepiece).')
  parser.add_argument('--processes', default='1,2')
  parser.add_argument('--vocab_size', type=int, default=32000)
  parser.add_argument('--spm_max_training_lines', type=int, default=50_000)
  parser.add_argument('--batches', type=int, default=200)
  parser.add_argument('--pipeline_path', default='',
                      help='PYTHONPATH of another input_pipeline checkout.')
  parser.add_argument('--label', default='sharded')
  parser.add_argument('--no_cached', action='store_true',
                      help='Skip the cached start / batches run.')
  parser.add_argument('--keep', action='store_true',
                      help='Keep the workdirs (corpora are always kept).')
  parser.add_argument('--timeout', type=float, default=3600)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  if args.worker:
    print('RESULT' + json.dumps(worker(json.loads(args.worker))), flush=True)
    return
  root = Path(args.root)
  rows = []
  for kind in args.kinds.split(','):
    for size in map(float, args.sizes.split(',')):
      corpus = (build_lm_corpus if kind == 'lm' else build_parallel_corpus)(
          root, size)
      for tokenizer in (args.tokenizers.split(',') if kind == 'lm' else
                        ['sentencepiece']):
        config = (lm_config(corpus, tokenizer, args) if kind == 'lm' else
                  mt_config(corpus, args))
        for n in map(int, args.processes.split(',')):
          workdir = root / 'runs' / f'{args.label}_{corpus.name}_{tokenizer}_n{n}'
          shutil.rmtree(workdir, ignore_errors=True)
          spec = {'kind': 'lm' if kind == 'lm' else 'translation',
                  'config': config, 'workdir': str(workdir), 'batches': 0}
          start = time.perf_counter()
          first = run_processes(spec, n, args.pipeline_path, args.timeout)
          run_wall = time.perf_counter() - start
          cached = []
          if not args.no_cached:
            cached = run_processes({**spec, 'batches': args.batches}, n,
                                   args.pipeline_path, args.timeout)
          for i, result in enumerate(first):
            row = {'label': args.label, 'kind': kind, 'corpus': corpus.name,
                   'text_mb': round(text_mb(corpus), 1),
                   'tokenizer': tokenizer, 'processes': n, 'process': i,
                   'run_wall_s': run_wall, **result}
            if cached:
              row['cached_s'] = cached[i]['wall_s']
              row['batches_s'] = cached[i].get('batches_s')
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
              with open(args.out, 'a') as f:
                f.write(json.dumps(row) + '\n')
          if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
  print(table(rows))


def table(rows: list[dict]) -> str:
  lines = ['| pipeline | data | text | tokenizer | N | proc | first run | '
           'CPU s | tokens encoded | peak RSS | tokenizer build (peak RSS) '
           '| cached start | batches/s |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    cached = f"{r['cached_s']:.2f} s" if 'cached_s' in r else '-'
    rate = f"{r['batches_s']:.0f}" if r.get('batches_s') else '-'
    lines.append(
        f"| {r['label']} | {r['kind']} | {r['text_mb']:.0f} MB | "
        f"{r['tokenizer']} | {r['processes']} | {r['process']} | "
        f"{r['wall_s']:.1f} s | {r['cpu_s']:.1f} | {r['tokens']:,} | "
        f"{r['peak_mb']:.0f} MB | {r.get('tokenizer_s', 0):.1f} s "
        f"({r['tok_peak_mb']:.0f} MB) | {cached} | {rate} |")
  return '\n'.join(lines)


if __name__ == '__main__':
  main()

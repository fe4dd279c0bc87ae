"""End to end at scale: train.py as two processes on a large corpus with
SentencePiece, kill -9 of both, resume; an uninterrupted run to compare.

  python benchmarks/input_scale_e2e.py --corpus=/tmp/input_scale/lm_1000mb \
      --run=/tmp/input_scale/e2e

1. ``train.py --num_processes=2`` (two local processes, as
   ``tests/test_train_processes.py`` starts them) with a fresh workdir:
   process 0 trains the tokenizer, both encode half of the shards, then they
   train ``--steps`` steps of the tiny model (a checkpoint every step).
2. Once ``--kill_at`` steps are logged, both get SIGKILL.
3. The same command again: it resumes from the last checkpoint (no
   preprocessing: the shards are complete) and finishes.
4. Reference: an uninterrupted two-process run (its own workdir with a copy
   of the tokenizer, the same data cache).
The per-step training losses of 1+3 must equal the reference's exactly.
Peak RSS per process (``VmHWM``: the whole process, trainer included), the
peak RSS until the data is loaded (sampled every 0.1 s) and the
preprocessing log lines are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))

import tiny_runs as testing  # pylint: disable=g-import-not-at-top


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _hwm_mb(pid: int) -> float:
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return 0.0


def start(workdir: Path, flags: list[str], log_prefix: Path):
  port = _free_port()
  procs = []
  for i in range(2):
    command = testing.train_command(
        workdir, f'--coordinator_address=localhost:{port}',
        '--num_processes=2', f'--process_id={i}', *flags)
    log = open(f'{log_prefix}.{i}.log', 'w')
    procs.append((subprocess.Popen(command, env=testing.python_env(1),
                                   cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT), log))
  print('$', ' '.join(command[:1] + [str(c) for c in command[1:]]).replace(
      '--process_id=1', '--process_id={0,1}'), flush=True)
  return procs


def _rss_mb(pid: int) -> float:
  try:
    with open(f'/proc/{pid}/statm') as f:
      return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
  except OSError:
    return 0.0


def watch(procs, workdir: Path, until_step: int | None, timeout: float,
          preprocessing: list[float] | None = None):
  """Waits for the processes to end (or ``until_step`` logged); returns
  peak RSS per process. ``preprocessing`` gets each process's peak RSS
  (sampled every 0.1 s) until its log says the data is loaded."""
  peaks = [0.0, 0.0]
  loaded = [False, False]
  deadline = time.time() + timeout
  while time.time() < deadline:
    for i, (p, log) in enumerate(procs):
      peaks[i] = max(peaks[i], _hwm_mb(p.pid))
      if preprocessing is not None and not loaded[i]:
        preprocessing[i] = max(preprocessing[i], _rss_mb(p.pid))
        with open(log.name) as f:
          loaded[i] = 'LM split valid' in f.read()
    if until_step is not None:
      losses = testing.train_losses(workdir)
      if losses and max(losses) >= until_step:
        return peaks
    if all(p.poll() is not None for p, _ in procs):
      return peaks
    if any(p.poll() not in (None, 0) for p, _ in procs):
      raise RuntimeError('a process failed; see the logs')
    time.sleep(0.1)
  raise RuntimeError('timed out')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--corpus', default='/tmp/input_scale/lm_1000mb')
  parser.add_argument('--run', default='/tmp/input_scale/e2e')
  parser.add_argument('--steps', type=int, default=24)
  parser.add_argument('--kill_at', type=int, default=12)
  parser.add_argument('--vocab_size', type=int, default=32000)
  parser.add_argument('--spm_max_training_lines', type=int, default=50_000)
  parser.add_argument('--timeout', type=float, default=3600)
  args = parser.parse_args()
  run = Path(args.run)
  shutil.rmtree(run, ignore_errors=True)
  run.mkdir(parents=True)
  cache = run / 'data_cache'
  flags = testing.config_flags({
      'data__source': 'text_files', 'data__data_dir': args.corpus,
      'data__files__test': '', 'data__max_lines': 0,
      'data__tokenizer': 'sentencepiece',
      'data__vocab_size': args.vocab_size,
      'data__spm_max_training_lines': args.spm_max_training_lines,
      'data__encode_threads': 1, 'data__cache_dir': cache,
      'data__prefetch': 0, 'num_train_steps': args.steps,
      'checkpoint_every_steps': 1, 'eval_every_steps': 0})
  workdir = run / 'killed'
  report = {}

  start_time = time.time()
  procs = start(workdir, flags, run / 'first')
  preprocessing = [0.0, 0.0]
  peaks = watch(procs, workdir, args.kill_at, args.timeout, preprocessing)
  for p, log in procs:
    os.kill(p.pid, signal.SIGKILL)
  for p, log in procs:
    p.wait()
    log.close()
  report['first'] = {'wall_s': time.time() - start_time, 'peak_rss_mb': peaks,
                     'preprocessing_peak_rss_mb': preprocessing,
                     'killed_after_step': max(testing.train_losses(workdir)),
                     'returncodes': [p.returncode for p, _ in procs]}
  for i in range(2):
    text = (run / f'first.{i}.log').read_text()
    report['first'][f'log_{i}'] = [
        line[line.find(']') + 2:] for line in text.splitlines()
        if re.search(r'Training a|Saved sentencepiece|LM split|Encoded shard '
                     r'\d+ of \d+ of lm-train', line)][-6:]
  print(json.dumps(report['first'], indent=1), flush=True)

  start_time = time.time()
  procs = start(workdir, flags, run / 'resumed')
  peaks = watch(procs, workdir, None, args.timeout)
  for p, log in procs:
    log.close()
  report['resumed'] = {'wall_s': time.time() - start_time,
                       'peak_rss_mb': peaks,
                       'returncodes': [p.returncode for p, _ in procs]}
  print(json.dumps(report['resumed'], indent=1), flush=True)

  reference = run / 'reference'
  shutil.copytree(workdir / 'tokenizer', reference / 'tokenizer')
  procs = start(reference, flags, run / 'reference')
  watch(procs, reference, None, args.timeout)
  for p, log in procs:
    log.close()
  killed, uninterrupted = (testing.train_losses(workdir),
                           testing.train_losses(reference))
  report['identical'] = killed == uninterrupted and sorted(killed) == list(
      range(1, args.steps + 1))
  report['losses'] = {s: (killed.get(s), uninterrupted.get(s))
                      for s in sorted(uninterrupted)}
  print(json.dumps({k: report[k] for k in ('identical', 'losses')}),
        flush=True)
  (run / 'report.json').write_text(json.dumps(report, indent=1))


if __name__ == '__main__':
  main()

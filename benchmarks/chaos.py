"""Chaos run: kill a tiny training job at random moments, resume, compare.

  python benchmarks/chaos.py --runs=20 --root=/tmp/chaos

1. Reference: ``train.py --config=configs/tiny.py`` (30 steps, a checkpoint
   every 4 steps, a validation every 10, asynchronous saves) runs to the end
   in its own workdir; its wall time ``T`` is measured.
2. Each of ``--runs`` runs starts the same command in a fresh workdir (the
   data cache shared), waits a random time in ``[0.3 s, T]`` (start-up,
   compilation, steps, saves and validations all get hit; ``T`` is measured
   on a second, warm-cache run, 0.9 x), and sends a random signal: SIGKILL,
   SIGTERM or SIGINT.
3. The same command is rerun until it exits 0 (at most ``--max_restarts``
   times, each of them also killed at random with probability
   ``--rekill``).
4. The run survived if its per-step training losses and final validation
   metrics in ``metrics.jsonl`` equal the reference's exactly, with each
   step logged once.

Prints one line per run and ``survived K of N``; exits 1 if any run did not
survive. The numbers depend on nothing but the code: every resume must be
bit-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SIGNALS = {'SIGKILL': signal.SIGKILL, 'SIGTERM': signal.SIGTERM,
           'SIGINT': signal.SIGINT}


def _command(workdir: pathlib.Path, cache: pathlib.Path,
             config: str) -> list[str]:
  return [sys.executable, str(REPO / 'train.py'), f'--config={config}',
          f'--workdir={workdir}', f'--config.data.cache_dir={cache}']


def _env() -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = os.pathsep.join(
      [str(REPO)] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                     if p])
  return env


def _outcome(workdir: pathlib.Path) -> tuple[dict[int, float], dict[str, float],
                                            bool]:
  """(train loss per step, last validation row, each step logged once)."""
  rows = []
  with open(workdir / 'metrics.jsonl', encoding='utf-8') as f:
    for line in f:
      rows.append(json.loads(line))
  train = [(r['step'], r['train_loss']) for r in rows if 'train_loss' in r]
  valid = [r for r in rows if 'valid_loss' in r]
  unique = len({s for s, _ in train}) == len(train) and (
      len({r['step'] for r in valid}) == len(valid))
  return dict(train), (valid[-1] if valid else {}), unique


def _run_until_done(cmd: list[str], rng: random.Random, duration: float,
                    rekill: float, max_restarts: int, log) -> tuple[int, str]:
  """Reruns ``cmd`` until it exits 0; returns (restarts, signals sent)."""
  sent = []
  for attempt in range(max_restarts + 1):
    proc = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=log)
    if attempt < max_restarts and rng.random() < rekill:
      try:
        proc.wait(timeout=rng.uniform(0.3, duration))
      except subprocess.TimeoutExpired:
        name = rng.choice(sorted(SIGNALS))
        proc.send_signal(SIGNALS[name])
        sent.append(name)
    if proc.wait() == 0:
      return attempt, ','.join(sent)
  return max_restarts + 1, ','.join(sent)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', type=int, default=20)
  parser.add_argument('--root', default='/tmp/lstm_flax_chaos')
  parser.add_argument('--config', default='configs/tiny.py')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--rekill', type=float, default=0.2,
                      help='probability that a resume is killed too')
  parser.add_argument('--max_restarts', type=int, default=4)
  args = parser.parse_args()

  root = pathlib.Path(args.root)
  shutil.rmtree(root, ignore_errors=True)
  root.mkdir(parents=True)
  cache = root / 'data_cache'
  rng = random.Random(args.seed)

  start = time.perf_counter()
  with open(root / 'reference.log', 'w') as log:
    rc = subprocess.call(_command(root / 'reference', cache, args.config),
                         env=_env(), stdout=log, stderr=log)
  duration = time.perf_counter() - start
  if rc != 0:
    print(f'The reference run failed (exit {rc}); see {root}/reference.log')
    return 1
  reference = _outcome(root / 'reference')
  # The runs below find the data cache built: time one such run, so that the
  # random moments fall inside a run rather than after it.
  start = time.perf_counter()
  with open(root / 'timing.log', 'w') as log:
    subprocess.call(_command(root / 'timing', cache, args.config), env=_env(),
                    stdout=log, stderr=log)
  duration = 0.9 * (time.perf_counter() - start)
  print(f'reference: {len(reference[0])} steps, valid {reference[1]}; kills '
        f'within {duration:.1f} s of a start')

  survived = 0
  for i in range(args.runs):
    workdir = root / f'run_{i:02d}'
    cmd = _command(workdir, cache, args.config)
    with open(root / f'run_{i:02d}.log', 'w') as log:
      proc = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=log)
      delay = rng.uniform(0.3, duration)
      name = rng.choice(sorted(SIGNALS))
      try:
        first_rc = proc.wait(timeout=delay)
        name = 'none (finished first)'
      except subprocess.TimeoutExpired:
        proc.send_signal(SIGNALS[name])
        first_rc = proc.wait()
      restarts, later = _run_until_done(cmd, rng, duration, args.rekill,
                                        args.max_restarts, log)
    ok = restarts <= args.max_restarts
    detail = ''
    if ok:
      outcome = _outcome(workdir)
      same_losses = outcome[0] == reference[0]
      same_valid = {k: v for k, v in outcome[1].items() if k != 'step'} == {
          k: v for k, v in reference[1].items() if k != 'step'}
      ok = same_losses and same_valid and outcome[2]
      if not ok:
        differing = sorted(s for s in set(reference[0]) | set(outcome[0])
                           if reference[0].get(s) != outcome[0].get(s))
        detail = (f' losses differ at steps {differing[:5]}' if differing
                  else '') + ('' if same_valid else ' validation differs') + (
                      '' if outcome[2] else ' steps logged twice')
    else:
      detail = ' never finished'
    survived += ok
    print(f'run {i:2d}: {name} after {delay:5.1f} s (exit {first_rc}); '
          f'{restarts} resume(s) killed again{" by " + later if later else ""}'
          f': {"survived" if ok else "FAILED" + detail}', flush=True)
  print(f'survived {survived} of {args.runs}')
  return 0 if survived == args.runs else 1


if __name__ == '__main__':
  sys.exit(main())

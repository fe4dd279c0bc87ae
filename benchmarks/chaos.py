"""Chaos run: kill a tiny training job at random moments, resume, compare.

  python benchmarks/chaos.py --runs=20 --root=/tmp/chaos
  python benchmarks/chaos.py --runs=20 --processes=2
  python benchmarks/chaos.py --runs=20 --config=toy_translation
  python benchmarks/chaos.py --runs=20 --config=toy_classification
  python benchmarks/chaos.py --runs=20 --config=toy_features

1. Reference: ``train.py --config=configs/tiny.py`` (30 steps, a checkpoint
   every 4 steps, a validation every 10, asynchronous saves) runs to the end
   in its own workdir; its wall time ``T`` is measured. ``--config`` takes
   another config file, or ``toy_translation`` / ``toy_classification`` /
   ``toy_features``: configs/multi30k.py:tiny and the tiny configs/sst2.py
   and configs/spoken_digits.py of the tests, on a toy corpus (sine-tone
   recordings) written under ``--root`` (``tests/tiny_runs.py``), with a
   checkpoint every 5 steps.
2. Each of ``--runs`` runs starts the same command in a fresh workdir (the
   data cache shared), waits a random time in ``[0.3 s, T]`` (start-up,
   compilation, steps, saves and validations all get hit; ``T`` is measured
   on a second, warm-cache run, 0.9 x), and sends a random signal.
   One process: SIGKILL, SIGTERM or SIGINT. ``--processes=2``: two JAX
   processes on this machine sharing the workdir (README, "two processes on
   one machine"), and one of: SIGKILL to one process, SIGKILL to both,
   SIGTERM to one (a preemption notice on one host only), SIGTERM to both.
   Every process must then stop by itself within ``--stop_within`` seconds,
   with status 0, 1 (a lost peer), 130 or 143 unless SIGKILLed
   (the peer watchdog of trainer/distributed.py: 20 s without a heartbeat,
   or JAX's initialisation timeout for a process lost before all connected,
   which this script sets to 30 s through LSTM_FLAX_INIT_TIMEOUT_S), and no
   log may hold a C++ ``Check failure`` trace, ``Fatal Python error`` or a
   ``Segmentation fault``.
3. The same command (all processes) is rerun until a start that was not hit
   exits 0 in every process (at most ``--max_restarts`` times, each of them
   also hit at random with probability ``--rekill``; a hit start that exits
   0 has saved on SIGTERM, and is resumed).
4. The run survived if its per-step training losses and final validation
   metrics in ``metrics.jsonl`` equal the reference's exactly (the reference
   has as many processes), with each step logged once.

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
import socket
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SIGNALS = {'SIGKILL': signal.SIGKILL, 'SIGTERM': signal.SIGTERM,
           'SIGINT': signal.SIGINT}
# Several processes: (name, signal, how many processes get it).
SCENARIOS = (('SIGKILL one', signal.SIGKILL, 1),
             ('SIGKILL both', signal.SIGKILL, 2),
             ('SIGTERM one', signal.SIGTERM, 1),
             ('SIGTERM both', signal.SIGTERM, 2))
CRASH_MARKS = ('Check failure', 'Fatal Python error', 'Segmentation fault')
TOY_CONFIG = '''"""chaos.py's {name} config: {what}."""
import sys
sys.path.insert(0, {tests!r})
import tiny_runs as testing  # tests/tiny_runs.py


def get_config():
  return testing.{factory}({data!r}, checkpoint_every_steps=5)
'''


def _toy_config(name: str, root: pathlib.Path) -> str:
  """Writes the toy corpus and a config file for ``name``; returns its path."""
  sys.path[:0] = [str(REPO), str(REPO / 'tests')]
  import tiny_runs as testing  # pylint: disable=g-import-not-at-top
  if name == 'toy_translation':
    data = testing.write_toy_parallel_corpus(root / 'corpus')
    factory, what = 'tiny_translation_config', 'configs/multi30k.py:tiny'
  elif name == 'toy_classification':
    data = testing.write_toy_labelled_corpus(root / 'corpus')
    factory, what = 'tiny_classification_config', 'the tiny configs/sst2.py'
  else:
    data = str(testing.write_toy_recordings(root / 'recordings'))
    factory, what = ('tiny_feature_config',
                     'the tiny configs/spoken_digits.py (sine tones)')
  path = root / f'{name}.py'
  path.write_text(TOY_CONFIG.format(name=name, what=what + ' on a toy corpus',
                                    factory=factory, data=data,
                                    tests=str(REPO / 'tests')))
  return str(path)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _commands(workdir: pathlib.Path, cache: pathlib.Path, config: str,
              processes: int) -> list[list[str]]:
  base = [sys.executable, str(REPO / 'train.py'), f'--config={config}',
          f'--workdir={workdir}', f'--config.data.cache_dir={cache}']
  if processes == 1:
    return [base]
  port = _free_port()
  return [base + [f'--coordinator_address=localhost:{port}',
                  f'--num_processes={processes}', f'--process_id={i}']
          for i in range(processes)]


def _env() -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS='cpu', LSTM_FLAX_INIT_TIMEOUT_S='30')
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


class Job:
  """The processes of one start of a run, logging to ``log``."""

  def __init__(self, commands: list[list[str]], log):
    self.log = log
    self.procs = [subprocess.Popen(c, env=_env(), stdout=log, stderr=log)
                  for c in commands]

  def wait(self, timeout: float | None) -> list[int] | None:
    """Exit statuses, or None if some process still runs after ``timeout``
    seconds (it is then killed)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for p in self.procs:
      try:
        p.wait(timeout=None if deadline is None else
               max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        for q in self.procs:
          q.kill()
          q.wait()
        return None
    return [p.returncode for p in self.procs]

  def hit(self, rng: random.Random, duration: float) -> str | None:
    """Waits a random time, then signals at random (None: it ended first)."""
    try:
      self.procs[-1].wait(timeout=rng.uniform(0.3, duration))
      if all(p.poll() is not None for p in self.procs):
        return None
    except subprocess.TimeoutExpired:
      pass
    if len(self.procs) == 1:
      name = rng.choice(sorted(SIGNALS))
      self.procs[0].send_signal(SIGNALS[name])
      return name
    name, signum, count = rng.choice(SCENARIOS)
    targets = rng.sample(range(len(self.procs)), count)
    for i in targets:
      if self.procs[i].poll() is None:
        self.procs[i].send_signal(signum)
    return name + (f' ({targets[0]})' if count == 1 else '')


def _start_and_hit(commands, rng, duration, stop_within, log, hit=True
                   ) -> tuple[str | None, list[int] | None, float]:
  """(what was sent, exit statuses or None if a process hung, seconds from
  the signal until the last process stopped)."""
  job = Job(commands, log)
  name = job.hit(rng, duration) if hit else None
  start = time.monotonic()
  statuses = job.wait(stop_within if name else 1800)
  return name, statuses, time.monotonic() - start


def _unclean(statuses: list[int] | None, name: str | None,
             took: float) -> list[str]:
  """What was not clean about how the processes ended: one that hung, or
  one ended by a signal other than SIGKILL (statuses 0, 1 for a lost
  peer, 130 and 143 are clean)."""
  if statuses is None:
    return [f'a process still ran {took:.0f} s after {name}']
  return [f'exit {s} after {name}' for s in statuses
          if s < 0 and s != -signal.SIGKILL]


def _run_until_done(commands, rng, duration, args, log
                    ) -> tuple[int, list[str], list[str]]:
  """Reruns until every process exits 0: (restarts, signals, problems)."""
  sent, problems = [], []
  for attempt in range(args.max_restarts + 1):
    hit = attempt < args.max_restarts and rng.random() < args.rekill
    name, statuses, took = _start_and_hit(commands, rng, duration,
                                          args.stop_within, log, hit)
    if name:
      sent.append(name)
    problems += _unclean(statuses, name, took)
    # Exit 0 after a hit may be a save on SIGTERM: only an unhit start that
    # exits 0 has finished the run.
    if not name and statuses is not None and all(s == 0 for s in statuses):
      return attempt, sent, problems
  return args.max_restarts + 1, sent, problems


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', type=int, default=20)
  parser.add_argument('--root', default='/tmp/lstm_flax_chaos')
  parser.add_argument('--config', default='configs/tiny.py',
                      help='a config file, toy_translation, '
                      'toy_classification or toy_features')
  parser.add_argument('--processes', type=int, default=1)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--rekill', type=float, default=0.2,
                      help='probability that a resume is hit too')
  parser.add_argument('--max_restarts', type=int, default=4)
  parser.add_argument('--stop_within', type=float, default=60.0,
                      help='seconds every process has to stop after a signal')
  args = parser.parse_args()

  root = pathlib.Path(args.root)
  shutil.rmtree(root, ignore_errors=True)
  root.mkdir(parents=True)
  cache = root / 'data_cache'
  config = (_toy_config(args.config, root) if args.config in (
      'toy_translation', 'toy_classification', 'toy_features')
            else args.config)
  rng = random.Random(args.seed)
  commands = lambda wd: _commands(wd, cache, config, args.processes)  # noqa: E731

  start = time.perf_counter()
  with open(root / 'reference.log', 'w') as log:
    statuses = Job(commands(root / 'reference'), log).wait(None)
  if any(statuses):
    print(f'The reference run failed (exit {statuses}); see '
          f'{root}/reference.log')
    return 1
  reference = _outcome(root / 'reference')
  # The runs below find the data cache built: time one such run, so that the
  # random moments fall inside a run rather than after it.
  start = time.perf_counter()
  with open(root / 'timing.log', 'w') as log:
    Job(commands(root / 'timing'), log).wait(None)
  duration = 0.9 * (time.perf_counter() - start)
  print(f'reference: {len(reference[0])} steps, valid {reference[1]}; '
        f'{args.processes} process(es); hits within {duration:.1f} s of a '
        'start', flush=True)

  survived = 0
  for i in range(args.runs):
    workdir = root / f'run_{i:02d}'
    cmds = commands(workdir)
    log_path = root / f'run_{i:02d}.log'
    with open(log_path, 'w') as log:
      start = time.monotonic()
      name, first, took = _start_and_hit(cmds, rng, duration,
                                         args.stop_within, log)
      delay = time.monotonic() - start - took
      restarts, later, problems = _run_until_done(cmds, rng, duration, args,
                                                  log)
    problems[:0] = _unclean(first, name, took)
    text = log_path.read_text(errors='replace')
    problems += [f'log has "{m}"' for m in CRASH_MARKS if m in text]
    ok = restarts <= args.max_restarts and not problems
    detail = '; '.join(problems)
    if restarts <= args.max_restarts:
      outcome = _outcome(workdir)
      same_losses = outcome[0] == reference[0]
      same_valid = {k: v for k, v in outcome[1].items() if k != 'step'} == {
          k: v for k, v in reference[1].items() if k != 'step'}
      ok = ok and same_losses and same_valid and outcome[2]
      differing = sorted(s for s in set(reference[0]) | set(outcome[0])
                         if reference[0].get(s) != outcome[0].get(s))
      detail += (f' losses differ at steps {differing[:5]}' if differing
                 else '') + ('' if same_valid else ' validation differs') + (
                     '' if outcome[2] else ' steps logged twice')
    else:
      detail += ' never finished'
    survived += ok
    print(f'run {i:2d}: {name or "none (finished first)"} after {delay:5.1f} s'
          f' (exit {first}, all stopped {took:4.1f} s later); {restarts} '
          f'resume(s) hit again{" by " + ", ".join(later) if later else ""}: '
          f'{"survived" if ok else "FAILED " + detail.strip()}', flush=True)
  print(f'survived {survived} of {args.runs}')
  return 0 if survived == args.runs else 1


if __name__ == '__main__':
  sys.exit(main())

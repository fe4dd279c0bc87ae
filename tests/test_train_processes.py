"""The trainer across processes and devices, through the command line:
8 virtual devices vs 1, two JAX processes vs one, kill -9 / SIGTERM and exact
resume, restoring 8 devices -> 1, the generation CLI, CLI config errors."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from trainer import checkpoints, distributed, evaluation, loop, signals, tasks

import tiny_runs as testing

STEPS = 6


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp('data_cache')


@pytest.fixture(scope='module')
def reference(tmp_path_factory, request):
  """An uninterrupted single-device, single-process tiny run (30 steps;
  shared, read-only): (workdir, losses, result)."""
  workdir, result = testing.shared_tiny_run(tmp_path_factory, request)
  return workdir, testing.train_losses(workdir), result


def _flags(cache, **overrides):
  return testing.config_flags({'data__cache_dir': cache, 'data__prefetch': 0,
                               **overrides})


def _check(proc):
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


_EIGHT_DEVICES = r'''
import json, sys
import jax
from trainer import errors, loop, tasks
import tiny_runs as testing
assert jax.device_count() == 8
cache, workdir, workdir_mp = sys.argv[1:4]
out = {}
try:
  loop.train_and_evaluate(
      tasks.build(testing.tiny_config(cache, data__batch_size=12)),
      workdir + '_bad')
except errors.BatchSizeError as e:
  out['batch_error'] = str(e)
out['result'] = loop.train_and_evaluate(
    tasks.build(testing.tiny_config(cache, num_train_steps=%d)), workdir)
out['losses'] = testing.train_losses(workdir)
# 4 x 2 data x model parallel: the hidden units (all four gates of a unit
# on one device) and the vocabulary split over 'model' (2 and 4 ways, with
# the collectives counted, in test_sharding.py).
for mp in (2,):
  loop.train_and_evaluate(
      tasks.build(testing.tiny_config(cache, num_train_steps=%d,
                                      model_parallelism=mp)),
      workdir_mp + str(mp))
  out[f'losses_mp{mp}'] = testing.train_losses(workdir_mp + str(mp))
print('RESULT' + json.dumps(out))
''' % (STEPS, STEPS)


@pytest.mark.slow
def test_eight_devices_match_one_and_restore_onto_one(cache, reference,
                                                      tmp_path):
  workdir, workdir_mp = str(tmp_path / 'eight'), str(tmp_path / 'eight_mp')
  proc = testing.run([sys.executable, '-c', _EIGHT_DEVICES, str(cache),
                      workdir, workdir_mp], num_cpu_devices=8)
  _check(proc)
  out = json.loads(proc.stdout.split('RESULT')[-1])
  assert 'not divisible by the 8 data-parallel devices' in out['batch_error']
  one = reference[1]
  for name in ('losses', 'losses_mp2'):
    eight = out[name]
    assert sorted(map(int, eight)) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([eight[str(s)] for s in range(1, STEPS + 1)],
                               [one[s] for s in range(1, STEPS + 1)],
                               rtol=1e-5, atol=1e-5, err_msg=name)
  # Restore the 8-device checkpoint on this 1-device process: it evaluates
  # to the same perplexity and trains on like the 1-device run.
  evaluated = evaluation.evaluate(tasks.build(testing.tiny_config(mode='evaluate')), workdir, tasks.task_class)
  assert evaluated['valid_perplexity'] == pytest.approx(
      out['result']['valid_perplexity'], rel=1e-5)
  loop.train_and_evaluate(
      tasks.build(testing.tiny_config(cache, num_train_steps=STEPS + 4)), workdir)
  resumed = testing.train_losses(workdir)
  np.testing.assert_allclose([resumed[s] for s in range(STEPS + 1, STEPS + 5)],
                             [one[s] for s in range(STEPS + 1, STEPS + 5)],
                             rtol=1e-5, atol=1e-5)


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _two_processes(workdir, cache, **overrides):
  port = _free_port()
  return [subprocess.Popen(
      testing.train_command(
          workdir, f'--coordinator_address=localhost:{port}',
          '--num_processes=2', f'--process_id={i}',
          *_flags(cache, **overrides)),
      env=testing.python_env(1), cwd=testing.REPO_ROOT, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]


@pytest.mark.slow
def test_two_processes_match_one_process_through_a_one_host_sigterm(
    cache, reference, tmp_path):
  """Two processes; SIGTERM to process 1 only (a preemption notice on one
  host): both save the same step and exit 0; restarted, they finish with
  the losses of the one-process run, and a Ctrl-C to one of them after its
  work is done neither stops it nor leaves the other in JAX's shutdown."""
  workdir = str(tmp_path / 'two')
  procs = _two_processes(workdir, cache, num_train_steps=16,
                         checkpoint_every_steps=100)
  _wait_for_step(procs[0], workdir, 2)
  procs[1].send_signal(signal.SIGTERM)
  outputs = [p.communicate(timeout=120) for p in procs]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, out[-2000:] + err[-6000:]
  saved = [re.findall(r'Preempted: saved the checkpoint of step (\d+)', err)
           for _, err in outputs]
  assert saved[0] == saved[1] and len(saved[0]) == 1, outputs[0][1][-3000:]
  assert int(saved[0][0]) < 16
  assert 'process 1 of 2' in outputs[1][1] or 'Rank 1' in outputs[1][1]
  procs = _two_processes(workdir, cache, num_train_steps=16,
                         checkpoint_every_steps=100)
  # Ctrl-C to process 1 once its work is done (its result printed): it still
  # takes part in JAX's shutdown, so neither is left waiting there.
  errors = [[] for _ in procs]
  readers = [threading.Thread(target=lambda p=p, e=e: e.append(p.stderr.read()))
             for p, e in zip(procs, errors)]
  for reader in readers:
    reader.start()
  for line in procs[1].stdout:
    if line.startswith('{"valid_loss"'):
      procs[1].send_signal(signal.SIGINT)
      break
  start, outputs = time.monotonic(), []
  for p, e, reader in zip(procs, errors, readers):
    out = p.stdout.read()
    p.wait(timeout=300)
    reader.join()
    outputs.append((out, ''.join(e)))
  assert time.monotonic() - start < 20, outputs
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, out[-2000:] + err[-6000:]
  assert 'stopped by' not in outputs[1][1]
  two = testing.train_losses(workdir)
  one = reference[1]
  assert sorted(two) == list(range(1, 17))
  np.testing.assert_allclose([two[s] for s in range(1, 17)],
                             [one[s] for s in range(1, 17)],
                             rtol=1e-5, atol=1e-5)
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  assert ckpt.latest_step() == 16
  assert ckpt.read_meta(16)['process_count'] == 2
  ckpt.close()


class _FakeCoordination:
  """The key-value store of JAX's coordination service, in memory; a
  process in ``frozen`` stops updating its heartbeat."""

  def __init__(self):
    self.values, self.frozen, self.down = {}, set(), False

  def key_value_set(self, key, value, allow_overwrite=False):
    del allow_overwrite
    if self.down:
      raise RuntimeError('UNAVAILABLE: connection refused')
    self.values[key] = value

  def key_value_dir_get(self, prefix):
    if self.down:
      raise RuntimeError('UNAVAILABLE: connection refused')
    return [(k, v) for k, v in self.values.items() if k.startswith(prefix)]


def _watch(client, me, exits, **kwargs):
  return distributed.PeerWatchdog(client, me, 2, timeout=0.3, interval=0.02,
                                  exit_fn=exits.append, **kwargs).start()


def test_peer_watchdog_ends_a_process_whose_peer_stopped():
  client = _FakeCoordination()
  exits0, exits1 = [], []
  _watch(client, 0, exits0)
  w1 = _watch(client, 1, exits1)
  time.sleep(0.6)
  assert exits0 == exits1 == []  # Both alive: nobody exits.
  w1.stop()  # Process 1 finished normally: process 0 stops watching it.
  time.sleep(0.6)
  assert exits0 == []
  client = _FakeCoordination()
  exits0, exits1 = [], []
  _watch(client, 0, exits0)
  w1 = _watch(client, 1, exits1)
  time.sleep(0.1)
  client.key_value_set = lambda *a, **k: None  # Nobody's heartbeat advances.
  deadline = time.time() + 5
  while not (exits0 and exits1) and time.time() < deadline:
    time.sleep(0.05)
  assert exits0 == exits1 == [distributed.LOST_STATUS]
  # Process 1 loses the coordinator (process 0 hosts the service).
  client, exits1 = _FakeCoordination(), []
  _watch(client, 1, exits1)
  client.down = True
  time.sleep(0.2)
  assert exits1 == [distributed.LOST_STATUS]
  # Failing calls to a coordinator that still answers: no news, not a lost
  # coordinator; the peer is taken for lost only after its timeout.
  with socket.socket() as listening:
    listening.bind(('localhost', 0))
    listening.listen()
    client, exits1 = _FakeCoordination(), []
    _watch(client, 1, exits1, coordinator_address='localhost:%d' %
           listening.getsockname()[1])
    time.sleep(0.1)
    client.down = True
    time.sleep(0.1)
    assert exits1 == []
    deadline = time.time() + 5
    while not exits1 and time.time() < deadline:
      time.sleep(0.05)
    assert exits1 == [distributed.LOST_STATUS]


_CONNECTED = r'''
import sys, time
from trainer import distributed
distributed.initialize(f'localhost:{sys.argv[1]}', 2, int(sys.argv[2]))
print('connected', flush=True)
time.sleep(120)
'''


def test_losing_the_coordinator_ends_the_others_with_one_line():
  """SIGKILL of process 0, which hosts JAX's coordination service: process 1
  exits at once with status 1 and one line naming process 0, not jaxlib's
  C++ abort (Check failure trace, SIGABRT)."""
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, '-c', _CONNECTED, str(port), str(i)],
      env=testing.python_env(1), cwd=testing.REPO_ROOT, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
  try:
    for proc in procs:
      assert proc.stdout.readline() == 'connected\n', proc.stderr.read()
    procs[0].kill()
    start = time.monotonic()
    _, err = procs[1].communicate(timeout=60)
    stopped_after = time.monotonic() - start
  finally:
    for proc in procs:
      proc.kill()
  assert procs[1].returncode == distributed.LOST_STATUS, err[-3000:]
  assert stopped_after < 10, (stopped_after, err[-3000:])
  lines = [l for l in err.splitlines() if 'error: ' in l and 'process 0' in l]
  assert len(lines) == 1 and (f'process 0 (the coordinator, localhost:{port}) '
                              'is unreachable') in lines[0], err[-3000:]
  for crash in ('Check failure', 'Fatal Python error', 'terminate called',
                'Traceback'):
    assert crash not in err, err[-3000:]


_TERMINATE = r'''
import ctypes, os
from trainer import coordination_errors
assert coordination_errors._install_terminate_handler(lambda: os._exit(7)) is not None
ctypes.CDLL('libstdc++.so.6')._ZSt9terminatev()
'''


def test_the_terminate_handler_leaves_other_failures_to_the_previous_one():
  """Only the error callback's std::bad_cast is taken for a lost
  coordinator; another std::terminate (here without an exception) still
  reaches the C++ runtime's handler and aborts."""
  proc = subprocess.run([sys.executable, '-c', _TERMINATE],
                        env=testing.python_env(1), cwd=testing.REPO_ROOT,
                        text=True, capture_output=True, timeout=120)
  assert proc.returncode == -signal.SIGABRT, proc.stderr[-2000:]
  assert 'terminate called without an active exception' in proc.stderr


@pytest.mark.parametrize('signum, delay', [
    (signal.SIGINT, 1.0), (signal.SIGTERM, 2.0), (signal.SIGINT, 4.0)])
@pytest.mark.slow
def test_a_signal_during_start_up_exits_cleanly(tmp_path, signum, delay):
  """SIGINT / SIGTERM during imports and JAX's start-up: exit status 130 /
  143 and one line, never a crash. (On a fast machine the 4 s signal may
  land in the training loop instead: then a save and exit 0.)"""
  proc = subprocess.Popen(
      testing.train_command(str(tmp_path / 'w'),
                            *_flags(tmp_path / 'cache')),
      env=testing.python_env(1),
      cwd=testing.REPO_ROOT, text=True, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE)
  time.sleep(delay)
  proc.send_signal(signum)
  _, err = proc.communicate(timeout=120)
  assert 'Fatal' not in err and 'Segmentation' not in err, err[-3000:]
  if 'Preempted: saved the checkpoint' in err:  # Reached the loop first.
    assert proc.returncode == 0 and delay > 2, err[-3000:]
  else:
    assert proc.returncode == signals.exit_status(signum), err[-3000:]
    assert 'stopped by SIG' in err


def _start(workdir, cache, **overrides):
  return subprocess.Popen(
      testing.train_command(workdir, *_flags(cache, **overrides)),
      env=testing.python_env(1), cwd=testing.REPO_ROOT, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_step(proc, workdir, step, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    losses = testing.train_losses(workdir)
    if losses and max(losses) >= step:
      return max(losses)
    if proc.poll() is not None:
      raise AssertionError(f'run ended before step {step}: '
                           + proc.communicate()[1][-4000:])
    time.sleep(0.01)
  raise AssertionError(f'step {step} not reached in {timeout}s')


@pytest.mark.slow
def test_kill9_and_sigterm_then_resume_exactly(cache, reference, tmp_path):
  """kill -9 mid-run (checkpoints every step, so likely mid-save), rerun,
  SIGTERM (saves the current step, exits 0), rerun, SIGINT (the same),
  resume to the end: every loss equals the uninterrupted run's, bit for
  bit."""
  workdir = str(tmp_path / 'killed')
  every_step = {'checkpoint_every_steps': 1}
  proc = _start(workdir, cache, **every_step)
  killed_at = _wait_for_step(proc, workdir, 7)
  os.kill(proc.pid, signal.SIGKILL)
  proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  assert max(testing.train_losses(workdir)) < 30
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  resumed_from = ckpt.latest_step()
  ckpt.close()
  assert resumed_from is not None and resumed_from <= killed_at + 1

  saved = 0
  for signum, at in ((signal.SIGTERM, 18), (signal.SIGINT, None)):
    # SIGTERM, then Ctrl-C (SIGINT) in the loop: each saves the current step
    # and exits 0.
    proc = _start(workdir, cache, **every_step)
    logged = _wait_for_step(proc, workdir, at or saved + 3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-4000:]
    assert 'Preempted: saved the checkpoint of step' in err
    ckpt = checkpoints.Checkpointer(workdir, read_only=True)
    saved = ckpt.latest_step()
    ckpt.close()
    assert logged <= saved < 30 and saved == max(testing.train_losses(workdir))

  # Finish in this process (same device count, same compiled program).
  loop.train_and_evaluate(
      tasks.build(testing.tiny_config(cache, checkpoint_every_steps=1)), workdir)
  assert testing.train_losses(workdir) == reference[1]  # Bit-identical.


def test_generate_cli(reference):
  workdir = reference[0]
  command = [sys.executable, str(testing.REPO_ROOT / 'generate.py'),
             f'--workdir={workdir}', '--prompt=The for statement',
             '--num_tokens=10', '--seed=7', '--temperature=0.8', '--top_k=20',
             '--num_samples=2']
  proc = testing.run(command)
  _check(proc)
  assert proc.stdout.startswith('--- sample 0 (checkpoint step 30) ---\n')
  assert '--- sample 1 (checkpoint step 30) ---' in proc.stdout
  lines = proc.stdout.splitlines()
  assert lines[1].startswith('The for statement ') and len(lines[1]) > 20


def test_cli_rejects_bad_config(tmp_path):
  workdir = str(tmp_path / 'bad')
  proc = testing.run(testing.train_command(workdir,
                                           '--config.model.hidden_size=0'))
  assert proc.returncode != 0
  assert 'model.hidden_size must be a positive int; got 0' in proc.stderr
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))


_WITHOUT_TENSORFLOW = r'''
import sys
sys.modules['tensorflow'] = None  # `import tensorflow` fails, as on GPU images.
from trainer import loop, metrics, tasks
import tiny_runs as testing
assert metrics.metric_writers is None
cache, workdir = sys.argv[1:3]
loop.train_and_evaluate(
    tasks.build(testing.tiny_config(cache, num_train_steps=%d)), workdir)
'''


def test_trains_without_tensorflow(cache, reference, tmp_path):
  """Where TensorFlow is missing, clu cannot import: the same run still
  writes metrics.jsonl (same losses) and TensorBoard events."""
  workdir = tmp_path / 'no_tf'
  proc = testing.run([sys.executable, '-c', _WITHOUT_TENSORFLOW % STEPS,
                      str(cache), str(workdir)])
  _check(proc)
  losses = testing.train_losses(workdir)
  assert sorted(losses) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([losses[s] for s in sorted(losses)],
                             [reference[1][s] for s in sorted(losses)],
                             rtol=1e-6)
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(workdir))
  events.Reload()
  tags = events.Tags()['tensors'] + events.Tags()['scalars']
  assert 'train_loss' in tags and 'valid_perplexity' in tags, tags

"""Starting JAX on several processes (hosts).

``initialize()`` calls ``jax.distributed.initialize`` when several processes
run: with the explicit coordinator address, process count and process id if
given (any cluster, or several processes on one machine), else automatically
where JAX detects the cluster (TPU pods, SLURM, Open MPI, Kubernetes
JobSets). A single process on one machine needs nothing.

Several processes also get a watchdog (:class:`PeerWatchdog`): each process
publishes a heartbeat in the coordination service's key-value store every
second and checks the others'. When a process stops (``kill -9``, a crash,
a lost host) the others exit within ``PEER_TIMEOUT_S`` seconds with one line
naming it and status 1, instead of blocking in a collective until JAX's own
heartbeat timeout ends them with a C++ ``Check failure`` abort. Restarting
all processes resumes from the latest checkpoint.

Process 0 hosts JAX's coordination service: when it dies, JAX's client on
every other process reports it at once, and
:mod:`trainer.coordination_errors` turns that into the same one line
(naming process 0) and status, instead of jaxlib's C++ abort.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import jax

from trainer import coordination_errors, errors

# Environment variables that mean several processes were launched.
_CLUSTER_HINTS = (
    ('SLURM_NTASKS', lambda v: int(v) > 1),
    ('OMPI_COMM_WORLD_SIZE', lambda v: int(v) > 1),
    ('TPU_WORKER_HOSTNAMES', lambda v: ',' in v),
    ('JAX_COORDINATOR_ADDRESS', bool),
)


def _env_hints_cluster() -> bool:
  """Whether an environment variable of a launcher says several processes
  were started (SLURM, Open MPI, multi-host TPU VMs, an explicit
  coordinator)."""
  for name, test in _CLUSTER_HINTS:
    value = os.environ.get(name)
    if value:
      try:
        if test(value):
          return True
      except ValueError:
        pass
  return False


def _jax_detects_cluster() -> bool:
  """Whether JAX's own cluster auto-detection finds an environment.

  JAX has no public API for this: ``jax.distributed.initialize()`` runs the
  detection but also initialises (and raises when nothing is found). So this
  reads the registry of ``jax._src.clusters`` where this JAX version has it,
  through getattr, and answers False when a JAX release moves or changes it
  (the environment-variable hints still apply then).
  """
  try:
    from jax._src.clusters import cluster  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  env_types = getattr(getattr(cluster, 'ClusterEnv', None), '_cluster_types', None)
  if not isinstance(env_types, (list, tuple)):
    return False
  try:
    return any(env.is_env_present() for env in env_types
               if not getattr(env, 'opt_in_only_method', False))
  except Exception:  # pylint: disable=broad-except
    return False


def in_cluster() -> bool:
  """Whether the environment says several processes were launched, or JAX's
  cluster auto-detection (TPU VMs, SLURM, Open MPI, K8s) finds a cluster."""
  return _env_hints_cluster() or _jax_detects_cluster()


# A process whose heartbeat has not advanced for this long is lost: the
# others exit (status 1). Several times the heartbeat interval, so a process
# that is only slow (compiling, a saturated host) is not taken for dead.
PEER_TIMEOUT_S = 20.0
HEARTBEAT_INTERVAL_S = 1.0
# JAX's own coordination-service heartbeat timeout, longer than the
# watchdog's; it still covers the shutdown barrier, after the watchdog
# stopped (the service then reports the lost process to the others, which
# stop with the one line of trainer/coordination_errors.py).
JAX_HEARTBEAT_TIMEOUT_S = 60
LOST_STATUS = 1
# Seconds the processes wait for each other to connect at start-up (JAX's
# default, 300); the environment variable LSTM_FLAX_INIT_TIMEOUT_S sets it
# (benchmarks/chaos.py: 30). A process lost before all connected leaves the
# others waiting this long, then they exit with one line (status 1; a
# timer 2 s before JAX's own timeout, whose expiry is a C++ abort).
INIT_TIMEOUT_ENV = 'LSTM_FLAX_INIT_TIMEOUT_S'
DEFAULT_INIT_TIMEOUT_S = 300
_KEY = 'lstm_flax/heartbeat/'
_DONE = 'lstm_flax/done/'


class PeerWatchdog:
  """Exits this process when another process of the run stops.

  A daemon thread sets ``lstm_flax/heartbeat/<process>`` to a counter every
  ``interval`` seconds and reads the other processes' counters; one that has
  not changed for ``timeout`` seconds (or the coordination service itself,
  hosted by process 0, becoming unreachable) ends this process with one
  line on stderr and ``os._exit(LOST_STATUS)`` (no unwinding: the main
  thread may be blocked in a collective that would never return).

  Args:
    client: JAX's distributed runtime client (``key_value_set`` /
      ``key_value_try_get``).
    process_id: this process.
    num_processes: the run's processes.
    timeout: seconds without a heartbeat after which a process is lost.
    interval: seconds between heartbeats.
    exit_fn: called with the status instead of ``os._exit`` (tests).
    coordinator_address: process 0's ``host:port``, named when it is lost.
  """

  def __init__(self, client: Any, process_id: int, num_processes: int, *,
               timeout: float = PEER_TIMEOUT_S,
               interval: float = HEARTBEAT_INTERVAL_S,
               exit_fn: Callable[[int], Any] | None = None,
               coordinator_address: str = ''):
    self._client = client
    self._me = process_id
    self._peers = [p for p in range(num_processes) if p != process_id]
    self.timeout = timeout
    self.interval = interval
    self._exit = exit_fn
    self.coordinator_address = coordinator_address
    self._ending = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True,
                                    name='lstm_flax-peer-watchdog')

  def start(self) -> 'PeerWatchdog':
    self._thread.start()
    return self

  def stop(self) -> None:
    """The run is ending normally: publishes that this process is done (the
    others stop watching it) and ends the watch, waiting for the thread (it
    must not be inside a call into JAX's client when the interpreter
    finalises: a daemon thread stopped there aborts the process). From here
    on JAX's own heartbeat (``JAX_HEARTBEAT_TIMEOUT_S``) covers a process
    lost during the shutdown barrier."""
    self._ending.set()
    try:
      self._client.key_value_set(f'{_DONE}{self._me}', '1',
                                 allow_overwrite=True)
    except Exception:  # pylint: disable=broad-except
      pass
    if self._thread.is_alive() and (
        self._thread is not threading.current_thread()):
      self._thread.join(timeout=10 * self.interval + 5)

  def _lost(self, message: str) -> None:
    if self._exit is None:
      _exit_lost(message)
    else:
      self._exit(LOST_STATUS)

  def _poll(self, count: int) -> dict[int, tuple[str | None, bool]]:
    """Publishes heartbeat ``count``; returns each peer's (heartbeat, done).
    Two directory reads, whatever the number of processes (not two reads
    per peer: on a pod every process polls every second)."""
    self._client.key_value_set(f'{_KEY}{self._me}', str(count),
                               allow_overwrite=True)
    beats, done = ({key.rsplit('/', 1)[-1]: value for key, value
                    in self._client.key_value_dir_get(prefix)}
                   for prefix in (_KEY, _DONE))
    return {p: (beats.get(str(p)), str(p) in done) for p in self._peers}

  def _run(self) -> None:
    start = time.monotonic()
    seen = {p: (None, start) for p in self._peers}  # value, when it changed
    watched = set(self._peers)
    count = 0
    while watched and not self._ending.is_set():
      count += 1
      now = time.monotonic()
      try:
        polled = self._poll(count)
      except Exception as e:  # pylint: disable=broad-except
        if self._ending.is_set() or self._me == 0:
          return  # Process 0 hosts the service: this is its own shutdown.
        if not (self.coordinator_address and
                coordination_errors.coordinator_reachable(
                    self.coordinator_address)):
          self._lost(coordination_errors.describe(
              self.coordinator_address,
              f'{type(e).__name__}: {errors.first_line(e, 120)}',
              reachable=False))
          return
        # A failed call to a coordinator that still answers (overloaded):
        # no news this round; a lost peer still shows by its timeout.
        polled = {}
      for p in self._peers:
        value, done = polled.get(p, (None, False))
        if done:
          watched.discard(p)
        elif value is not None and value != seen[p][0]:
          seen[p] = (value, now)
        elif p in watched and now - seen[p][1] > self.timeout:
          self._lost(f'process {p} of {len(self._peers) + 1} stopped '
                     f'responding (no heartbeat for {self.timeout:.0f} s).')
          return
      self._ending.wait(self.interval)


_watchdog: PeerWatchdog | None = None


def _await_watchdog_then(previous_hook: Callable[..., Any]) -> Callable[..., Any]:
  """A ``sys.excepthook`` that, for an uncaught JAX runtime error (a
  collective failing because another process died), first gives the
  watchdog time to name the lost process and exit; the traceback is printed
  only if no process was lost."""

  def hook(kind, value, traceback):
    if (_watchdog is not None and
        issubclass(kind, getattr(jax.errors, 'JaxRuntimeError', ()))):
      print(f'A JAX operation failed ({errors.first_line(value, 200)}); '
            'checking whether another process stopped...', file=sys.stderr,
            flush=True)
      time.sleep(_watchdog.timeout + 3 * _watchdog.interval)
    previous_hook(kind, value, traceback)

  return hook


_exiting = threading.Lock()


def _exit_lost(message: str) -> None:
  """One line on stderr, then ``os._exit(LOST_STATUS)``. Called from any
  thread (the watchdog, JAX's client, a timer); the first caller's line is
  the one written, and a second caller waits for the exit."""
  if not _exiting.acquire(blocking=False):
    while True:
      time.sleep(60)
  try:
    os.write(2, (f'{os.path.basename(sys.argv[0]) or "python"}: error: '
                 f'{message} This process stops (exit status {LOST_STATUS}); '
                 'restart all processes with the same command to resume '
                 'from the latest checkpoint.\n').encode())
  except OSError:
    pass
  os._exit(LOST_STATUS)  # pylint: disable=protected-access


def stop_watchdog() -> None:
  """Stops the peer watchdog, if any (at exit, before JAX's shutdown)."""
  if _watchdog is not None:
    _watchdog.stop()


def initialize(coordinator_address: str = '', num_processes: int = 0,
               process_id: int = -1, cpu_collectives: str = 'gloo') -> None:
  """Initialises multi-process JAX when needed (call before any JAX use).

  Args:
    coordinator_address: ``host:port`` of process 0 ('' = detect).
    num_processes: number of processes (0 = detect).
    process_id: this process (-1 = detect).
    cpu_collectives: collectives of the CPU backend across processes.
  """
  explicit = bool(coordinator_address) or num_processes > 1
  if not explicit and not in_cluster():
    return
  jax.config.update('jax_cpu_collectives_implementation', cpu_collectives)
  kwargs = {}
  if coordinator_address:
    kwargs['coordinator_address'] = coordinator_address
  if num_processes > 0:
    kwargs['num_processes'] = num_processes
  if process_id >= 0:
    kwargs['process_id'] = process_id
  try:
    init_timeout = int(os.environ.get(INIT_TIMEOUT_ENV, DEFAULT_INIT_TIMEOUT_S))
  except ValueError:
    raise ValueError(f'{INIT_TIMEOUT_ENV}={os.environ[INIT_TIMEOUT_ENV]!r} is '
                     'not a whole number of seconds; set it to e.g. 300 or '
                     'unset it.') from None
  # JAX's client aborts (C++ Check failure) when not every process
  # connected in time: this timer ends the process with one line first.
  timer = threading.Timer(max(1.0, init_timeout - 2.0), _exit_lost, args=(
      f'not every one of the {num_processes or "detected"} processes '
      f'connected to the coordinator {coordinator_address or "(detected)"} '
      f'within {init_timeout} s (a process that stopped during start-up, or '
      f'was never started; {INIT_TIMEOUT_ENV} sets the wait).',))
  timer.daemon = True
  timer.start()
  try:
    with coordination_errors.reported(coordinator_address, _exit_lost):
      jax.distributed.initialize(
          heartbeat_timeout_seconds=JAX_HEARTBEAT_TIMEOUT_S,
          initialization_timeout=init_timeout, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    timer.cancel()
    text = errors.first_line(e, 300)
    print(f'{os.path.basename(sys.argv[0]) or "python"}: error: starting JAX '
          f'on {num_processes or "the detected"} processes (coordinator '
          f'{coordinator_address or "detected"}) failed within '
          f'{init_timeout} s: {type(e).__name__}: {text}. Start every '
          'process of the run (a process that stopped during start-up '
          f'leaves the others waiting {INIT_TIMEOUT_ENV} seconds).',
          file=sys.stderr, flush=True)
    raise SystemExit(LOST_STATUS) from e
  timer.cancel()
  global _watchdog
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  state = jax_distributed.global_state
  client = getattr(state, 'client', None)
  # From the coordination service's own record, not jax.process_count():
  # that starts the backend, which waits for every process's devices, so a
  # process lost right after connecting left the others there until JAX's
  # heartbeat timeout (60 s) with no watchdog yet.
  if client is not None and state.num_processes > 1:
    _watchdog = PeerWatchdog(
        client, state.process_id, state.num_processes,
        coordinator_address=state.coordinator_address
        or coordinator_address).start()
    atexit.register(stop_watchdog)
    sys.excepthook = _await_watchdog_then(sys.excepthook)
  logging.info('JAX process %d of %d; %d local / %d global devices.',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())

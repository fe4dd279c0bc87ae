"""Starting JAX on several processes (hosts).

``initialize()`` calls ``jax.distributed.initialize`` when several processes
run: with the explicit coordinator address, process count and process id if
given (any cluster, or several processes on one machine), else automatically
where JAX detects the cluster (TPU pods, SLURM, Open MPI, Kubernetes
JobSets). A single process on one machine needs nothing.
"""

from __future__ import annotations

import logging
import os

import jax

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
  jax.distributed.initialize(**kwargs)
  logging.info('JAX process %d of %d; %d local / %d global devices.',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())

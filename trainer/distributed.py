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


def in_cluster() -> bool:
  """Whether JAX's cluster auto-detection (TPU VMs, SLURM, Open MPI, K8s)
  or the environment says several processes were launched."""
  try:  # JAX's own detection (private API; fall back to the hints below).
    from jax._src.clusters import cluster  # pylint: disable=g-import-not-at-top
    if any(env.is_env_present() for env in cluster.ClusterEnv._cluster_types  # pylint: disable=protected-access
           if not env.opt_in_only_method):
      return True
  except Exception:  # pylint: disable=broad-except
    pass
  for name, test in _CLUSTER_HINTS:
    value = os.environ.get(name)
    if value:
      try:
        if test(value):
          return True
      except ValueError:
        pass
  return False


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

"""Trains or evaluates a model of any task (language model, translation,
sentence classification: ``config.task``).

  python train.py --config=configs/lm.py --workdir=/tmp/lm
  python train.py --config=configs/ptb.py:medium --workdir=/tmp/ptb \
      --config.model.hidden_size=700
  python train.py --config=configs/lm.py --workdir=/tmp/lm \
      --config.mode=evaluate --config.eval_split=test
  python train.py --config=configs/multi30k.py --workdir=/tmp/multi30k

Rerunning the same command resumes from the workdir's latest checkpoint.
The resolved config is written to ``workdir/config.json``.
"""

from trainer import signals  # First: SIGINT/SIGTERM exit cleanly from here on.
signals.exit_cleanly_on_signals()
import json
import math

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from trainer import distributed, host_memory, metrics

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, tokenizer.')
flags.DEFINE_string('coordinator_address', '',
                    'host:port of process 0 (multi-process runs without auto-detection).')
flags.DEFINE_integer('num_processes', 0, 'Number of processes (0: detect).')
flags.DEFINE_integer('process_id', -1, 'This process (-1: detect).')
flags.DEFINE_bool('retain_freed_memory', True,
                  "On the CPU backend, keep freed host memory for reuse (glibc's "
                  "malloc), so XLA:CPU's per-step buffers are not mapped afresh "
                  'each step (see trainer/host_memory.py).')
config_flags.DEFINE_config_file('config', None, 'Training config file.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  metrics.quiet_checkpoint_logs()
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                         FLAGS.process_id)
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.retain_freed_memory and jax.default_backend() == 'cpu':
    host_memory.retain_freed_memory()
  from trainer import cli, evaluation, loop, tasks  # pylint: disable=g-import-not-at-top

  with cli.errors_as_messages('train.py'):
    task = tasks.build(FLAGS.config)  # Validates; writes nothing.
    workdir = FLAGS.workdir
    logging.info('JAX devices: %s', jax.devices())
    result = {}
    if task.config.mode == 'evaluate':
      evaluation.evaluate(task, workdir, tasks.task_class)
    else:
      result = loop.train_and_evaluate(task, workdir)
    if jax.process_count() > 1:
      signals.ignore()  # The others wait for this one in JAX's shutdown.
    if result:
      print(json.dumps({k: round(v, 4) if math.isfinite(v) else None
                        for k, v in result.items()}), flush=True)


if __name__ == '__main__':
  from trainer import cli  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=cli.config_flags_parser('train.py'))

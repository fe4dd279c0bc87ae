"""The evaluate command: score a checkpoint on any split.

``train.py --config.mode=evaluate`` calls :func:`evaluate` with the task
built from the given config (``trainer.tasks.build``). The model and
data config are those saved with the checkpoint; from the given config,
``task``, ``checkpoint``, ``eval_split``, ``model_parallelism``, the task's
``INFERENCE_KEYS`` (evaluation batch size, decoding) and the data location
keys (``data_dir``, ``files``, ...: the data may have moved) are used. A
model key or a key the tokenizer is built from that differs from the
checkpoint's is refused by name; other differing data keys are reported as
not used (``inference.given_overrides``).
"""

from __future__ import annotations

from collections.abc import Callable

from absl import logging

from trainer import inference, metrics as metrics_lib
from trainer import workdir_lock
from trainer import task_base as base


def evaluate(task: base.Task, workdir: str,
             lookup: Callable[[str], type[base.Task]]) -> dict[str, float]:
  """Scores the checkpoint ``config.checkpoint`` ('latest', 'best' or a step)
  of ``workdir`` on ``config.eval_split`` (``config``: ``task.config``, the
  user's resolved config; ``lookup``: ``trainer.tasks.task_class``); prints
  and returns the metrics (the task's: loss / perplexity, BLEU / chrF,
  accuracy, ...)."""
  config = task.config
  split = config.eval_split
  restored = inference.restore(
      workdir, config.checkpoint, lookup=lookup, task_name=task.name,
      eval_split=split, overrides=inference.inference_overrides(task),
      model_parallelism=config.model_parallelism, given_config=config)
  result = restored.task.evaluate(restored.eval_context(), restored.datasets,
                                  split)
  if workdir_lock.writable(workdir):
    writer = metrics_lib.create_writer(workdir)
    writer.write_scalars(restored.step,
                         {f'evaluate/{k}': v for k, v in result.items()})
    writer.flush()
  else:  # A read-only workdir: the result is printed only.
    logging.warning('The workdir %s is read-only: the evaluation metrics are '
                    'not written there.', workdir)
  line = ', '.join(f'{k} = {v:.4f}' for k, v in result.items())
  print(f'Checkpoint step {restored.step}, split {split!r}: {line}',
        flush=True)
  return result

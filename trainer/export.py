"""A run's checkpoint as a self-contained ``lstm_flax.export`` directory.

``export(workdir, out, checkpoint)`` restores a checkpoint ('latest', 'best'
or a step; damaged ones are refused or skipped by
:func:`trainer.inference.restore`), checks the run's saved tokenizer and
writes, through :func:`lstm_flax.export.save`, the parameters, the module's
arguments, the tokenizer (with the label names of a classifier), the run's
config, the inference settings (translation decoding, classification text
encoding) and a model card with the run's data and validation metrics
(from ``workdir/metrics.jsonl``). ``lstm_flax.export.load`` reads it back
without the trainer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lstm_flax import export as export_lib
from lstm_flax import torch_lm
from trainer import errors, inference, metrics, tasks

# The data config keys shown on the model card (those present).
DATA_KEYS = ('source', 'data_dir', 'files', 'tfds_name', 'train_prefix',
             'eval_prefix', 'source_language', 'target_language', 'tokenizer',
             'vocab_size', 'lowercase', 'max_lines', 'max_length', 'seq_len',
             'batch_size', 'tokens_per_batch')
TRAINING_KEYS = ('num_train_steps', 'num_epochs', 'seed')


def check_out(out: str | os.PathLike[str]) -> Path:
  """``out`` as a path, refused (before any work) when it holds anything.

  Raises:
    WorkdirError: ``out`` exists and is not an empty directory.
  """
  try:
    return export_lib.check_target(out, f'--out={out}')
  except FileExistsError as e:
    raise errors.WorkdirError(str(e)) from None


def validation_metrics(workdir: str | os.PathLike[str], best_name: str,
                       best_mode: str, step: int) -> dict[str, Any]:
  """The validation metrics of a run (``metrics.jsonl``): at the exported
  ``step``, the best by ``best_name`` (``best_mode`` 'min' / 'max') and the
  latest; each ``{'step': s, 'valid_...': value}`` or absent."""
  by_step: dict[int, dict[str, float]] = {}
  for row in metrics.read_metrics(workdir):
    values = {k: v for k, v in row.items() if k.startswith('valid_')}
    if values and 'step' in row:
      by_step.setdefault(int(row['step']), {}).update(values)
  out: dict[str, Any] = {}
  if not by_step:
    return out
  rows = [{'step': s, **v} for s, v in sorted(by_step.items())]
  if step in by_step:
    out['exported'] = {'step': step, **by_step[step]}
  out['latest'] = rows[-1]
  ranked = [r for r in rows if isinstance(r.get(best_name), (int, float))]
  if ranked:
    pick = min if best_mode == 'min' else max
    out['best'] = {**pick(ranked, key=lambda r: r[best_name]),
                   'metric': best_name, 'mode': best_mode}
  return out


def _metrics_section(found: Mapping[str, Any]) -> str:
  if not found:
    return 'No validation metrics were recorded (no `metrics.jsonl` rows).'
  names = sorted({k for row in found.values() for k in row
                  if k.startswith('valid_')})
  lines = ['| | step | ' + ' | '.join(names) + ' |',
           '|---|---|' + '---|' * len(names)]
  labels = {'exported': 'exported checkpoint', 'best': 'best validation',
            'latest': 'latest validation'}
  for key in ('exported', 'best', 'latest'):
    if key in found:
      row = found[key]
      cells = [f'{row[n]:.4g}' if isinstance(row.get(n), (int, float)) else ''
               for n in names]
      lines.append(f'| {labels[key]} | {row["step"]} | '
                   + ' | '.join(cells) + ' |')
  if 'best' in found:
    best = found['best']
    lines += ['', f'Best by `{best["metric"]}` ({best["mode"]}).']
  return '\n'.join(lines)


def _data_keys(data: Mapping[str, Any]) -> list[str]:
  """The :data:`DATA_KEYS` that describe where ``data`` came from: the TFDS
  keys for a TFDS source, the file keys otherwise."""
  tfds = data.get('source') == 'tfds'
  files = ('data_dir', 'files', 'train_prefix', 'eval_prefix')
  return [k for k in DATA_KEYS
          if (k.startswith('tfds') and tfds) or (k in files and not tfds) or (
              not k.startswith('tfds') and k not in files)]


def _bullets(values: Mapping[str, Any], keys: Sequence[str]) -> str:
  return '\n'.join(f'- `{k}`: `{json.dumps(values[k])}`' for k in keys
                   if k in values and values[k] not in ('', None, {}, []))


def export(workdir: str | os.PathLike[str], out: str | os.PathLike[str],
           checkpoint: str | int = 'best', *, torch: bool = False,
           serving: export_lib.ServingOptions | None = None) -> Path:
  """Exports a checkpoint of ``workdir`` into the new directory ``out``.

  Args:
    checkpoint: 'latest', 'best' or a step number.
    torch: also write the PyTorch ``RNNModel`` state dict (language models).
    serving: also write a ``jax.export`` generation function with these
      settings (language models; ``lstm_flax.export.ServingOptions``).

  Raises:
    WorkdirError: ``out`` exists and is not empty.
    CheckpointNotFoundError / CheckpointCorruptError: no (usable) checkpoint.
    ConfigError: ``torch`` for a model that cannot go to PyTorch.
  """
  out_path = check_out(out)
  restored = inference.restore(workdir, checkpoint, lookup=tasks.task_class)
  task, meta, step = restored.task, restored.meta, restored.step
  tokenizer = restored.tokenizer
  kind = export_lib.kind_of(restored.model)
  for flag, wanted in (('--torch', torch), ('--serving_tokens', serving)):
    if wanted and kind != 'language_model':
      raise errors.ConfigError(
          f'{flag} exports language models only; the checkpoint of step '
          f'{step} in {workdir} is {task.USAGE.split(" (")[0]}.')
  if torch:
    try:
      torch_lm.check_exportable(restored.model)
    except ValueError as e:
      raise errors.ConfigError(str(e)) from None
  best = task.best_metric
  found = validation_metrics(workdir, best.name, best.mode, step)
  source = {'workdir': os.path.abspath(os.fspath(workdir)),
            'checkpoint': str(checkpoint), 'step': step, 'task': task.name,
            'tokenizer': {'kind': tokenizer.kind,
                          'vocab_size': tokenizer.vocab_size,
                          'fingerprint': tokenizer.fingerprint()}}
  config_dict = meta['config']
  training = {k: config_dict.get(k) for k in TRAINING_KEYS}
  sections = [
      ('Training', _bullets({'task': task.name, 'checkpoint step': step,
                             **training}, ('task', 'checkpoint step',
                                           *TRAINING_KEYS))
       + '\n- optimizer: `' + json.dumps(config_dict.get('optimizer', {}))
       + '`\n\nThe whole training config is in `config.json`.'),
      ('Data', _bullets(config_dict.get('data', {}),
                        _data_keys(config_dict.get('data', {})))
       + f'\n\nTokenizer: {tokenizer.kind}, {tokenizer.vocab_size} ids '
       '(`tokenizer/`).'),
      ('Metrics', _metrics_section(found)),
  ]
  try:
    return export_lib.save(
        out_path, restored.model, {'params': restored.params()},
        tokenizer_dir=Path(workdir) / meta['tokenizer']['directory'],
        config=config_dict,
        inference_settings=task.inference_settings(os.fspath(workdir)),
        metadata={'source': source, 'metrics': found},
        card_title=f'{type(restored.model).__name__} from {Path(workdir).name} '
                   f'(step {step})',
        card_sections=sections, torch=torch, serving=serving)
  except FileExistsError as e:  # Written meanwhile.
    raise errors.WorkdirError(str(e)) from None

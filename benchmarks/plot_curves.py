"""Renders training curves from the TensorBoard event files of train.py runs.

  python benchmarks/plot_curves.py --out=docs/ptb_small.png \
      --title="PTB, Zaremba small" --target=120.7 /tmp/ptb_small

Each positional argument is a workdir (or ``label=workdir``); the plot has the
training and validation curves of every run against the epoch, on a log
scale for perplexities. Reads the events with tensorboard's reader (no
TensorFlow needed) and writes a PNG with matplotlib (``pip install
.[plots]``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import app
from absl import flags
import numpy as np

_OUT = flags.DEFINE_string('out', None, 'The PNG to write.', required=True)
_TITLE = flags.DEFINE_string('title', '', 'Plot title.')
_METRIC = flags.DEFINE_string(
    'metric', 'perplexity',
    "Which metric: 'perplexity', 'bits_per_char' or 'bleu' (valid only).")
_TARGET = flags.DEFINE_float('target', None,
                             "A horizontal line: the paper's / target figure.")
_TARGET_LABEL = flags.DEFINE_string('target_label', 'paper', 'Its label.')


def read_scalars(workdir: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} from every event file in ``workdir`` (later files
  win for a repeated step, as after a resume)."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(workdir):
    raise SystemExit(f'plot_curves: {workdir!r} is not a directory.')
  events = event_accumulator.EventAccumulator(
      workdir, size_guidance={event_accumulator.TENSORS: 0,
                              event_accumulator.SCALARS: 0})
  events.Reload()
  out: dict[str, dict[int, float]] = {}
  for tag in events.Tags()['tensors']:
    values = {e.step: tensor_util.make_ndarray(e.tensor_proto)
              for e in events.Tensors(tag)}
    if all(v.size == 1 and v.dtype.kind in 'fiu' for v in values.values()):
      out[tag] = {step: float(v) for step, v in values.items()}  # Scalars.
    # Others (text summaries, hyper-parameters) are not curves.
  for tag in events.Tags()['scalars']:
    out[tag] = {e.step: float(e.value) for e in events.Scalars(tag)}
  if not out:
    raise SystemExit(f'plot_curves: no TensorBoard events in {workdir!r}.')
  return out


def _epochs(scalars: dict[str, dict[int, float]], steps: Sequence[int]
            ) -> np.ndarray:
  """Epoch of each step. The logged 'epoch' scalar at step s is the epoch
  index of step s - 1, floor((s - 1) / steps_per_epoch), so steps_per_epoch
  is at most (s - 1) / epoch for every log line: the tightest such bound
  (steps themselves where no epoch was logged)."""
  bounds = [(step - 1) / epoch
            for step, epoch in scalars.get('epoch', {}).items() if epoch >= 1]
  if not bounds:
    return np.asarray(steps, float)
  return np.asarray(steps, float) / min(bounds)


def plot(runs: list[tuple[str, str]], out: str, metric: str, title: str,
         target: float | None, target_label: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
  for index, (label, workdir) in enumerate(runs):
    scalars = read_scalars(workdir)
    for split in ('train', 'valid'):
      series = scalars.get(f'{split}_{metric}')
      if not series:
        continue
      steps = sorted(series)
      epochs = _epochs(scalars, steps)
      values = [series[s] for s in steps]
      name = f'{label} {split}' if label else split
      ax.plot(epochs, values, color=f'C{index}',
              alpha=0.35 if split == 'train' else 1.0,
              marker='' if split == 'train' else '.', label=name)
      if split == 'valid':
        best = min(values) if metric != 'bleu' else max(values)
        shift = 10 * index  # Runs' labels stacked, not overprinted.
        ax.annotate(f'{best:.4g}', (epochs[values.index(best)], best),
                    textcoords='offset points', color=f'C{index}',
                    xytext=(0, -12 - shift if metric != 'bleu' else 6 + shift),
                    fontsize=8)
  if target is not None:
    ax.axhline(target, color='gray', linestyle='--', linewidth=1,
               label=f'{target_label} {target:g}')
  if metric == 'perplexity':
    ax.set_yscale('log')
  ax.set_xlabel('epoch')
  ax.set_ylabel(metric.replace('_', ' '))
  ax.set_title(title)
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out)
  print(f'wrote {out}')


def main(argv: Sequence[str]) -> None:
  if len(argv) < 2:
    raise app.UsageError('Give one or more workdirs (or label=workdir).')
  runs = []
  for arg in argv[1:]:
    label, _, workdir = arg.rpartition('=')
    runs.append((label, workdir))
  plot(runs, _OUT.value, _METRIC.value, _TITLE.value, _TARGET.value,
       _TARGET_LABEL.value)


if __name__ == '__main__':
  app.run(main)

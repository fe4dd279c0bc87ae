"""Start-up cost of the checkpoint integrity check with large checkpoints.

  python benchmarks/checkpoint_startup.py --megabytes=512 --keep=5 \
      --root=/tmp/ckpt_startup

Writes ``--keep`` checkpoints of a synthetic train state of ``--megabytes``
MB (float32 parameters) with the project's ``Checkpointer`` (checksum records
included), then times, in fresh ``Checkpointer`` objects, what a resuming
run does before its restore: opening the manager and
``latest_intact_step()`` (only the newest checkpoint is hashed; an older one
only if the newest is damaged), and for comparison checking every
checkpoint, the restore itself, and the start-up check after damaging the
newest (one fallback).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402  pylint: disable=g-import-not-at-top
import orbax.checkpoint as ocp  # noqa: E402  pylint: disable=g-import-not-at-top

from trainer import checkpoints  # noqa: E402  pylint: disable=g-import-not-at-top


def _timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--megabytes', type=int, default=512)
  parser.add_argument('--keep', type=int, default=5)
  parser.add_argument('--root', default='/tmp/lstm_flax_ckpt_startup')
  args = parser.parse_args()
  root = pathlib.Path(args.root)
  shutil.rmtree(root, ignore_errors=True)
  root.mkdir(parents=True)
  n = args.megabytes * (1 << 20) // 4
  state = {'params': {'w': jax.numpy.asarray(
      np.random.default_rng(0).standard_normal(n, dtype=np.float32))},
           'step': jax.numpy.asarray(0)}
  ckpt = checkpoints.Checkpointer(root, keep=args.keep, keep_best=0)
  _, wrote = _timed(lambda: [
      (ckpt.save(s, state, {'step': s, 'input_pipeline': {'next_step': s}}),
       ckpt.wait()) for s in range(1, args.keep + 1)])
  ckpt.close()
  size = sum(f.stat().st_size for f in (root / 'checkpoints').rglob('*')
             if f.is_file()) / 1e9
  print(f'{args.keep} checkpoints of {args.megabytes} MB written in '
        f'{wrote:.1f} s ({size:.2f} GB on disk)')

  def start_up():
    c = checkpoints.Checkpointer(root, keep=args.keep, keep_best=0)
    step = c.latest_intact_step()
    c.close()
    return step

  for attempt in range(2):
    step, took = _timed(start_up)
    print(f'start-up check (run {attempt + 1}): newest intact step {step} in '
          f'{took:.2f} s')
  def every_step():
    c = checkpoints.Checkpointer(root, keep=args.keep, keep_best=0)
    problems = [c.damage(s) for s in c.all_steps()]
    c.close()
    return problems

  problems, took = _timed(every_step)
  print(f'for comparison, checking all {len(problems)} checkpoints: '
        f'{took:.2f} s')
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  c = checkpoints.Checkpointer(root, keep=args.keep, keep_best=0)
  _, took = _timed(lambda: c.restore(args.keep, abstract))
  c.close()
  print(f'restore of step {args.keep}: {took:.2f} s')
  newest = root / 'checkpoints' / str(args.keep)
  biggest = max((f for f in newest.rglob('*') if f.is_file()),
                key=lambda f: f.stat().st_size)
  with open(biggest, 'r+b') as f:
    f.seek(os.path.getsize(biggest) // 2)
    f.write(b'\0' * 16)
  step, took = _timed(start_up)
  print(f'start-up check with the newest damaged: step {step} in {took:.2f} s '
        '(two checkpoints hashed, the damaged one moved aside)')
  shutil.rmtree(root, ignore_errors=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())

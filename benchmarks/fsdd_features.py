"""FSDD (spoken digits): feature build / cached-start times and a quick
standalone training run of FeatureSequenceClassifier (not the trainer).

  PYTHONPATH=. python benchmarks/fsdd_features.py --cache_dir /tmp/fsdd_cache \
      --epochs 8   # --epochs 0: timings only

Reads ../shared/data/fsdd/recordings (train = index 10-49, valid = 5-9),
prints the build time (first run: every file read and featurised), the
cached load time (run it twice), then per epoch the training loss,
validation accuracy and wall time.

Measured on the shared 2-core machine (loaded by other jobs), defaults
(40 log-mel bands, 25 ms window, 10 ms hop, embedding 64, biLSTM 2 x 128,
mean pooling, adam 3e-3 cosine-decayed, batch 32, 8 epochs):
featurise + cache the 2,700 files 1.4-2.2 s, cached start 0.14-0.36 s
(plus ~2 s importing jax); valid accuracy 0.9433 after epoch 1, 0.9867
after 3, 0.9967 (299/300) from epoch 5, 147 s in all (~40 s of it
compiling). ``--hop 160``: 0.9867 after 2 epochs, 0.9967 after 8, 104 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from input_pipeline import audio, hosts
from lstm_flax import features as features_lib


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data_dir', default='../shared/data/fsdd/recordings')
  parser.add_argument('--cache_dir', default='/tmp/fsdd_cache')
  parser.add_argument('--epochs', type=int, default=8)
  parser.add_argument('--mel', type=int, default=40)
  parser.add_argument('--hop', type=int, default=80)
  parser.add_argument('--hidden', type=int, default=128)
  parser.add_argument('--embedding', type=int, default=64)
  parser.add_argument('--pooling', default='mean')
  parser.add_argument('--lr', type=float, default=3e-3)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--layer_norm', action='store_true')
  args = parser.parse_args()

  settings = features_lib.FeatureSettings(num_mel_bands=args.mel, hop_length=args.hop)
  start = time.perf_counter()
  splits = audio.load_directory(args.data_dir, settings, args.cache_dir)
  settings = audio.with_train_statistics(settings, splits['train'])
  print(f'load (featurise or map the cache) + statistics: '
        f'{time.perf_counter() - start:.2f} s; ' + ', '.join(
            f'{k}: {v.num_examples} recordings, {len(v.frames)} frames'
            for k, v in splits.items()), flush=True)
  if not args.epochs:
    return

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from lstm_flax.feature_models import FeatureSequenceClassifier  # pylint: disable=g-import-not-at-top

  model = FeatureSequenceClassifier(
      num_features=settings.num_features, num_classes=10, embedding_size=args.embedding,
      hidden_size=args.hidden, pooling=args.pooling, layer_norm=args.layer_norm)
  shard = hosts.HostShard(0, 1)
  norm = dict(mean=np.asarray(settings.mean), std=np.asarray(settings.std))
  buckets = dict(max_length=256, boundaries=(32, 48, 64, 96, 128))
  train = splits['train'].batcher(shard, batch_size=args.batch, **buckets, **norm)
  valid = splits['valid'].batcher(shard, batch_size=100, training=False, **buckets, **norm)
  params = model.init(jax.random.PRNGKey(0), *model.dummy_inputs()[0], deterministic=True)['params']
  steps = args.epochs * len(train)
  optimizer = optax.adam(optax.cosine_decay_schedule(args.lr, steps))
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, batch):
    def loss_fn(p):
      logits = model.apply({'params': p}, batch['features'], batch['lengths'],
                           deterministic=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels']).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def predict(params, batch):
    return jnp.argmax(model.apply({'params': params}, batch['features'], batch['lengths'],
                                  deterministic=True), -1)

  start = time.perf_counter()
  batches = train.iterate()
  for epoch in range(args.epochs):
    losses = []
    for _ in range(len(train)):
      params, opt_state, loss = step(params, opt_state, next(batches))
      losses.append(loss)
    correct = total = 0
    for batch in valid.iterate():
      real = batch['example_index'] >= 0
      correct += int(np.sum((np.asarray(predict(params, batch)) == batch['labels'])[real]))
      total += int(real.sum())
    print(f'epoch {epoch + 1}: train loss {float(np.mean(losses)):.4f}, valid accuracy '
          f'{correct / total:.4f} ({correct}/{total}), {time.perf_counter() - start:.0f} s',
          flush=True)


if __name__ == '__main__':
  main()

"""Dense global gradient norm against TF's IndexedSlices one, along PTB training.

  python benchmarks/embedding_clip_norm.py [HIDDEN=650] [STEPS=400]

TF's ``clip_by_global_norm`` (the TF PTB tutorial's clipping) counts the
embedding gradient as one row per token occurrence (``IndexedSlices``);
optax (and Zaremba's Lua code) count the dense gradient, where repeated
tokens' rows are summed. This trains the medium recipe (dropout 0.5, SGD lr
1 on the summed cost, clip 5; ``HIDDEN`` units) and prints, every 50 steps,
both norms. The per-occurrence rows are the gradient of the looked-up
``[batch, time, E]`` embeddings: ``jnp.take`` is wrapped to add a zero
``[batch, time, E]`` perturbation, whose gradient they are.
"""
import math
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)
from lstm_flax.models import LanguageModel
from trainer import host_memory
host_memory.retain_freed_memory()

words = open(os.path.join(_REPO, '..', 'shared', 'data', 'ptb', 'ptb.train.txt')).read().replace('\n', ' <eos> ').split()
vocab = {w: i for i, w in enumerate(sorted(set(words)))}
data = np.array([vocab[w] for w in words], np.int32)
B, T = 20, 35
L = len(data) // B
streams = data[:L * B].reshape(B, L)
nsteps = (L - 1) // T
H = int(sys.argv[1]) if len(sys.argv) > 1 else 650
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 400
model = LanguageModel(vocab_size=len(vocab), embedding_size=H, hidden_size=H, num_layers=2,
                      input_dropout_rate=0.5, dropout_rate=0.5, output_dropout_rate=0.5, init_scale=0.05)
params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32)))['params']
orig_take = jnp.take
PERT = {}
def take(a, idx, axis=None, **kw):
  out = orig_take(a, idx, axis=axis, **kw)
  if 'p' in PERT and a.ndim == 2 and a.shape[0] == len(vocab) and idx.shape == (B, T):
    out = out + PERT['p']
  return out
jnp.take = take

def loss_fn(params, pert, carry, x, y, rng):
  PERT['p'] = pert
  try:
    loss_sum, carry = model.apply({'params': params}, x, carry, targets=y, deterministic=False,
                                  rngs={'dropout': rng})
  finally:
    PERT.clear()
  return loss_sum / B, carry  # Zaremba's cost: summed over time, mean over batch.

@jax.jit
def step(params, carry, x, y, rng, lr):
  pert = jnp.zeros((B, T, H))
  (loss, carry), (g, gx) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(params, pert, carry, x, y, rng)
  dense = optax.global_norm(g)
  emb_dense = jnp.sqrt(jnp.sum(g['embed']['embedding'] ** 2))
  emb_occ = jnp.sqrt(jnp.sum(gx ** 2))
  tf_norm = jnp.sqrt(dense ** 2 - emb_dense ** 2 + emb_occ ** 2)
  scale = jnp.minimum(1.0, 5.0 / dense)
  params = jax.tree.map(lambda p, gg: p - lr * scale * gg, params, g)
  return params, jax.lax.stop_gradient(carry), loss, dense, emb_dense, emb_occ, tf_norm

zero = model.initialize_carry(B)
carry = zero
rows = []
t0 = time.time()
for s in range(STEPS):
  i = s % nsteps
  if i == 0: carry = zero
  x = streams[:, i * T:(i + 1) * T]; y = streams[:, i * T + 1:(i + 1) * T + 1]
  params, carry, loss, dense, ed, eo, tfn = step(params, carry, x, y, jax.random.fold_in(jax.random.PRNGKey(1), s), 1.0)
  rows.append([float(loss) / T, float(dense), float(ed), float(eo), float(tfn)])
  if (s + 1) % 50 == 0:
    r = np.array(rows[-50:])
    print(f'step {s+1} {time.time()-t0:.0f}s ppl {math.exp(r[:,0].mean()):.1f} dense {r[:,1].mean():.2f} '
          f'emb_dense {r[:,2].mean():.2f} emb_occ {r[:,3].mean():.2f} tf {r[:,4].mean():.2f} '
          f'ratio dense/tf {np.median(r[:,1]/r[:,4]):.3f}', flush=True)

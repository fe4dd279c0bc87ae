"""Logical axis names on every parameter, and model parallelism over them.

One subprocess on 8 virtual CPU devices (the device count must be set before
jax starts) runs a 2-layer ``LanguageModel``'s fused loss and gradients with
parameters sharded by ``axes.DEFAULT_RULES`` (hidden units and vocabulary
over ``model``) and the batch over ``data``, compares them with one device,
and counts the collectives in the compiled scans' while-loop bodies.
"""

import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from lstm_flax import LSTMCell, axes
from lstm_flax import nnx as lstm_nnx
from lstm_flax.models import LanguageModel, SequenceClassifier
from lstm_flax.seq2seq import Seq2Seq

SCRIPT = textwrap.dedent(r'''
    import json, re
    import flax.linen as nn
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from lstm_flax import axes
    from lstm_flax.models import LanguageModel

    assert jax.device_count() == 8, jax.devices()
    COLLECTIVES = ('all-gather', 'all-reduce', 'reduce-scatter', 'collective-permute',
                   'all-to-all')
    model = LanguageModel(vocab_size=32, embedding_size=16, hidden_size=16, num_layers=2)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, 32, (8, 5)), jnp.int32)
    targets = jnp.asarray(rng.integers(0, 32, (8, 5)), jnp.int32)
    boxed = model.init(jax.random.key(0), tokens)
    axes.check_all_named(boxed)
    params = nn.meta.unbox(boxed)['params']

    def loss(params, tokens, targets):
      return model.apply({'params': params}, tokens, targets=targets)[0]

    step = jax.jit(jax.value_and_grad(loss))
    ref = jax.device_get(step(params, tokens, targets))

    def computations(text):
      """name -> body text of each HLO computation."""
      comps, name = {}, None
      for line in text.splitlines():
        m = re.match(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$', line)
        if m and not line.startswith(' '):
          name = m.group(1); comps[name] = []
        elif name is not None:
          comps[name].append(line)
      return {k: '\n'.join(v) for k, v in comps.items()}

    def reachable(comps, name):
      seen, todo = set(), [name]
      while todo:
        n = todo.pop()
        if n in seen or n not in comps:
          continue
        seen.add(n)
        todo += re.findall(r'(?:calls|to_apply|body|condition|branch_computations)=\{?%?([\w.\-]+)', comps[n])
      return '\n'.join(comps[n] for n in seen)

    def count(text, op):
      return len(re.findall(r'\b' + op + r'(?:-start)?\(', text))

    results = {}
    for mp in (2, 4):
      mesh = Mesh(np.array(jax.devices()).reshape(8 // mp, mp), ('data', 'model'))
      shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh,
                                              axes.DEFAULT_RULES)['params']
      p = jax.device_put(params, shardings)
      batch = NamedSharding(mesh, P('data', None))
      t, y = jax.device_put(tokens, batch), jax.device_put(targets, batch)
      out = jax.device_get(step(p, t, y))
      errors = [float(np.max(np.abs(a - b)) / (1e-6 + np.max(np.abs(b))))
                for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref))]
      hlo = step.lower(p, t, y).compile().as_text()
      comps = computations(hlo)
      loops = []
      for line in hlo.splitlines():
        if ' while(' not in line:
          continue
        body = re.search(r'body=%?([\w.\-]+)', line).group(1)
        op_name = re.search(r'op_name="([^"]*)"', line).group(1)
        text = reachable(comps, body)
        # The backward scans are the custom VJP's, under transpose(jvp(...)).
        loops.append({'forward': 'transpose(' not in op_name,
                      **{op: count(text, op) for op in COLLECTIVES}})
      results[mp] = {'max_rel_error': max(errors), 'loops': loops,
                     'sharded': str(p['lstm']['layer_0']['recurrent_kernel'].sharding.spec)}
    print('RESULT ' + json.dumps(results))
''')


@pytest.fixture(scope='module')
def sharded():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  line = [l for l in result.stdout.splitlines() if l.startswith('RESULT ')][-1]
  return {int(k): v for k, v in json.loads(line[len('RESULT '):]).items()}


@pytest.mark.parametrize('mp', [2, 4])
def test_model_parallel_loss_and_grads_match_one_device(sharded, mp):
  r = sharded[mp]
  # recurrent_kernel [P, 4, H]: the hidden units over 'model'.
  assert r['sharded'] == str(jax.sharding.PartitionSpec(None, None, 'model')), r['sharded']
  assert r['max_rel_error'] < 1e-5, r


@pytest.mark.parametrize('mp', [2, 4])
def test_forward_scan_body_has_one_all_gather_and_no_other_collective(sharded, mp):
  loops = sharded[mp]['loops']
  forward = [l for l in loops if l['forward']]
  backward = [l for l in loops if not l['forward']]
  # Two layers: two forward scans (in the custom VJP's forward) and two backward scans.
  assert len(forward) == 2 and len(backward) == 2, loops
  for loop in forward:
    assert loop['all-gather'] == 1, f'forward scan body: {loop}'
    others = {k: v for k, v in loop.items() if k not in ('forward', 'all-gather')}
    assert not any(others.values()), f'forward scan body: {loop}'
  # The backward step's dh = d_gates . W_h contracts the sharded hidden axis:
  # one all-reduce of dh per step, nothing else.
  for loop in backward:
    assert loop['all-reduce'] == 1 and loop['all-gather'] == 0, f'backward scan body: {loop}'
    assert not (loop['reduce-scatter'] or loop['collective-permute'] or loop['all-to-all']), loop


# --- names on every parameter (in process, shapes only) --------------------

TOKENS = jnp.zeros((2, 3), jnp.int32)


def _abstract(model, *args, **kwargs):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **kwargs))


MODELS = {
    'lm': lambda: _abstract(LanguageModel(11, 6, 8, num_layers=2, proj_size=4), TOKENS),
    'lm_tied_last_layer': lambda: _abstract(
        LanguageModel(11, 6, 8, num_layers=3, last_layer_size=6, tie_weights=True), TOKENS),
    'seq2seq_additive': lambda: _abstract(
        Seq2Seq(11, 13, embedding_size=8, hidden_size=8, attention='additive'), TOKENS, TOKENS),
    'seq2seq_general_tied': lambda: _abstract(
        Seq2Seq(11, 11, embedding_size=8, hidden_size=8, share_embeddings=True,
                tie_output=True), TOKENS, TOKENS),
    'classifier': lambda: _abstract(
        SequenceClassifier(11, 3, 6, 8, num_layers=2, proj_size=5), TOKENS, jnp.array([3, 1]),
        deterministic=True),
    'cell': lambda: _abstract(nn.RNN(LSTMCell(8, proj_size=3, logical_axes=True)), jnp.zeros((2, 3, 5))),
}


@pytest.mark.parametrize('name', sorted(MODELS))
def test_every_linen_parameter_is_named(name):
  boxed = MODELS[name]()
  axes.check_all_named(boxed)
  specs = jax.tree.leaves(nn.get_partition_spec(boxed),
                          is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  assert specs and all(set(s) <= set(axes.ALL) for s in specs), specs


def test_nnx_parameters_are_named():
  model = lstm_nnx.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=3, rngs=nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  axes.check_all_named(state)
  specs = nnx.get_partition_spec(state)
  assert specs['layer_1_reverse']['recurrent_kernel'].get_value() == jax.sharding.PartitionSpec(
      *axes.RECURRENT_KERNEL)


def test_unnamed_parameter_is_an_error_naming_its_path():
  class Half(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = LanguageModel(11, 6, 8, name='lm')(x)[0]
      return nn.Dense(2, name='plain')(x)

  boxed = _abstract(Half(), TOKENS)
  with pytest.raises(ValueError) as err:
    axes.check_all_named(boxed)
  message = str(err.value)
  assert "['params']['plain']['kernel'] (shape (11, 2), names None)" in message, message
  assert "['params']['plain']['bias']" in message and "['lm']" not in message, message


def test_default_rules():
  rules = dict(axes.DEFAULT_RULES)
  assert rules.pop(axes.LSTM_HIDDEN) == 'model' and rules.pop(axes.VOCAB) == 'model'
  assert set(rules.values()) == {None}
  assert set(rules) | {axes.LSTM_HIDDEN, axes.VOCAB} == set(axes.ALL)

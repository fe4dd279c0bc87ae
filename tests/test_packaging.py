"""Packaging: the wheel holds only ``lstm_flax`` and its core dependencies,
installs alone into a fresh virtual environment and runs there; the
submodules are package attributes, loaded lazily."""

from __future__ import annotations

import email.parser
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CORE_REQUIREMENTS = {'jax', 'flax', 'numpy', 'safetensors'}
EXTRAS = {'train', 'test', 'plots', 'cuda', 'tpu'}
# Importable with the [train] extra or from the checkout; never with the
# core install.
TRAINING_ONLY = ('tensorflow', 'tensorflow_datasets', 'clu', 'sentencepiece',
                 'trainer', 'input_pipeline')
# The submodules that load on first attribute access (the rest of
# lstm_flax._SUBMODULES is imported by the eager exports).
LAZY = ('attention', 'decoding', 'export', 'feature_models', 'features', 'gate_stats', 'gates',
        'inference',
        'interop', 'losses',
        'models', 'nnx', 'sampling', 'seq2seq', 'tokenizer', 'torch_lm')
# pip's messages when the package index (or the network) cannot be reached.
_UNREACHABLE = re.compile(
    r'Could not find a version that satisfies|No matching distribution found|'
    r'NewConnectionError|Max retries exceeded|Temporary failure in name '
    r'resolution|Network is unreachable|ConnectTimeout|ReadTimeout')


def _clean_env() -> dict[str, str]:
  """This environment without PYTHONPATH (the checkout must not leak in)."""
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def _pip(python: str | os.PathLike[str], *args: str,
         cwd: pathlib.Path) -> subprocess.CompletedProcess:
  """``python -m pip args``; skips the test when pip cannot reach the
  package index, except under CI (CI=true), where that fails it."""
  result = subprocess.run(
      [os.fspath(python), '-m', 'pip', '--disable-pip-version-check', *args],
      cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=600)
  if result.returncode != 0 and _UNREACHABLE.search(result.stderr):
    if os.environ.get('CI') != 'true':
      pytest.skip(f'pip cannot reach the package index: {result.stderr[-1500:]}')
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result


def _has_build_backend() -> bool:
  """Whether this environment can build the wheel without an isolated build
  environment (no download): setuptools >= 68 as pyproject.toml asks."""
  try:
    major = int(importlib.metadata.version('setuptools').split('.')[0])
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return False
  return major >= 68


@pytest.fixture(scope='module')
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
  """A wheel built from a copy of the repository (the build writes
  ``build/`` and ``*.egg-info`` beside its sources; the checkout stays
  clean)."""
  root = tmp_path_factory.mktemp('wheel')
  source = root / 'source'
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
      '.git', '__pycache__', '*.egg-info', 'build', 'dist', '.pytest_cache',
      '.venv', 'workdirs'))
  isolation = ['--no-build-isolation'] if _has_build_backend() else []
  _pip(sys.executable, 'wheel', '--no-deps', *isolation, '-w', str(root / 'dist'),
       str(source), cwd=root)
  wheels = list((root / 'dist').glob('lstm_flax-*.whl'))
  assert len(wheels) == 1, wheels
  return wheels[0]


def test_wheel_holds_only_the_library_and_core_requirements(wheel):
  with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    dist_info = {n.split('/')[0] for n in names if '.dist-info/' in n}
    assert len(dist_info) == 1, dist_info
    metadata = email.parser.Parser().parsestr(
        archive.read(f'{dist_info.pop()}/METADATA').decode('utf-8'))
  top_level = {n.split('/')[0] for n in names}
  assert {t for t in top_level if not t.endswith('.dist-info')} == {'lstm_flax'}
  modules = {f'lstm_flax/{p.name}' for p in (REPO / 'lstm_flax').glob('*.py')}
  assert modules | {'lstm_flax/py.typed'} <= set(names)

  core, extras = set(), {}
  for requirement in metadata.get_all('Requires-Dist'):
    name = re.match(r'[A-Za-z0-9._-]+', requirement).group(0).lower()
    extra = re.search(r'''extra\s*==\s*['"]([\w-]+)['"]''', requirement)
    if extra:
      extras.setdefault(extra.group(1), set()).add(name)
    else:
      core.add(name)
  assert core == CORE_REQUIREMENTS
  assert set(metadata.get_all('Provides-Extra')) == EXTRAS
  assert {'tensorflow-datasets', 'clu', 'sentencepiece', 'sacrebleu', 'optax',
          'orbax-checkpoint', 'ml-collections'} <= extras['train']
  assert {'lstm-flax', 'pytest', 'pytest-xdist'} <= extras['test']


_SMOKE = textwrap.dedent('''
    import importlib.util, json, os, sys
    import jax, jax.numpy as jnp
    import lstm_flax

    def finite_nonzero(tree):
      leaves = jax.tree_util.tree_leaves(tree)
      return (all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
              and any(bool(jnp.any(g != 0)) for g in leaves))

    x = jax.random.normal(jax.random.key(0), (2, 3, 4))
    layer = lstm_flax.LSTM(hidden_size=5, num_layers=2, bidirectional=True)
    params = layer.init(jax.random.key(1), x)['params']
    def layer_loss(p):
      y, carry = layer.apply({'params': p}, x, lengths=jnp.array([3, 2]))
      return jnp.sum(y ** 2) + jnp.sum(carry.c ** 2)
    layer_grads = jax.grad(layer_loss)(params)

    lm = lstm_flax.models.LanguageModel(vocab_size=11, embedding_size=4,
                                        hidden_size=5, num_layers=1)
    tokens = jnp.array([[1, 2, 3], [4, 5, 6]])
    lm_params = lm.init(jax.random.key(2), tokens)['params']
    lm_loss = lambda p: lm.apply({'params': p}, tokens, targets=tokens)[0]
    lm_grads = jax.grad(lm_loss)(lm_params)
    print(json.dumps({
        'location': os.path.dirname(lstm_flax.__file__),
        'prefix': sys.prefix,
        'py_typed': os.path.isfile(os.path.join(
            os.path.dirname(lstm_flax.__file__), 'py.typed')),
        'grads_ok': [finite_nonzero(layer_grads), finite_nonzero(lm_grads)],
        'nnx': lstm_flax.nnx.LSTM.__name__,
        'importable': [m for m in %r if importlib.util.find_spec(m)],
    }))
''')


@pytest.mark.slow
def test_wheel_runs_in_a_fresh_venv_with_only_the_core_dependencies(
    wheel, tmp_path):
  """``pip install lstm-flax`` alone: forward and backward passes of the LSTM
  and the language model, from outside the checkout; none of the training
  stack is importable there."""
  start = time.monotonic()
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True,
                 env=_clean_env(), timeout=300)
  python = venv / 'bin' / 'python'
  # --no-compile: no bytecode for every installed file (the import compiles
  # what it uses): 14 s instead of 34 s here.
  _pip(python, 'install', '--quiet', '--no-compile', str(wheel), cwd=tmp_path)
  # -I: isolated mode, so neither the working directory nor PYTHONPATH nor
  # the user's site-packages is on sys.path.
  result = subprocess.run([str(python), '-I', '-c', _SMOKE % (TRAINING_ONLY,)],
                          cwd=tmp_path, env=_clean_env(), capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report['location'].startswith(report['prefix']), report
  assert report['py_typed'] and report['grads_ok'] == [True, True], report
  assert report['nnx'] == 'LSTM'
  assert report['importable'] == [], report
  print(f'fresh venv + install + smoke run: {time.monotonic() - start:.1f} s')


_LAZY_SCRIPT = textwrap.dedent('''
    import importlib.util, json, sys
    import lstm_flax
    table = sorted(lstm_flax._SUBMODULES)
    present = [n for n in table if importlib.util.find_spec('lstm_flax.' + n)]
    loaded_at_import = [n for n in present if 'lstm_flax.' + n in sys.modules]
    listed = [n for n in present if n in dir(lstm_flax)]
    resolved = [n for n in present
                if getattr(lstm_flax, n) is sys.modules.get('lstm_flax.' + n)]
    try:
      lstm_flax.no_such_module
      unknown = 'no error'
    except AttributeError as e:
      unknown = str(e)
    print(json.dumps({'table': table, 'present': present,
                      'loaded_at_import': loaded_at_import, 'listed': listed,
                      'resolved': resolved, 'unknown': unknown,
                      'nnx_lstm': lstm_flax.nnx.LSTM.__name__,
                      'eager': [lstm_flax.LSTM.__name__, lstm_flax.LSTMCell.__name__,
                                lstm_flax.LSTMState.__name__]}))
''')


def test_submodules_are_lazy_package_attributes():
  """``import lstm_flax; lstm_flax.nnx.LSTM(...)`` works for every submodule
  in the table (those with a module file), the lazy ones load only on first
  access, and the eager exports stay."""
  result = subprocess.run([sys.executable, '-c', _LAZY_SCRIPT], cwd=REPO,
                          env=_clean_env(), capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  r = json.loads(result.stdout.strip().splitlines()[-1])
  assert set(LAZY) <= set(r['table'])
  required = {'nnx', 'models', 'seq2seq', 'interop', 'decoding', 'losses',
              'sampling', 'attention', 'kernel', 'spec', 'stack', 'axes',
              'initializers', 'export', 'inference', 'tokenizer', 'torch_lm'}
  assert required <= set(r['present']), r
  assert not set(LAZY) & set(r['loaded_at_import']), r
  assert r['listed'] == r['present'] and r['resolved'] == r['present'], r
  assert r['unknown'] == "module 'lstm_flax' has no attribute 'no_such_module'"
  assert r['nnx_lstm'] == 'LSTM'
  assert r['eager'] == ['LSTM', 'LSTMCell', 'LSTMState']

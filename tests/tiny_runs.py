"""Helpers for the trainer's tests and benchmarks: the tiny configs and toy
data of each task, runs, per-step losses (``import tiny_runs`` with
``tests/`` on ``sys.path``, as pytest puts it)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
from typing import Any

import ml_collections

from trainer import metrics

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]



def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """Sets ``section__key=value`` overrides on ``config``; returns it."""
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('__')
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config

def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """``configs/<name>.py``'s (or, for a ``.py`` path, that file's) ``get_config(arg)``."""
  path = (pathlib.Path(name) if name.endswith('.py')
          else REPO_ROOT / 'configs' / f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'configs_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def tiny_config(cache_dir: str | os.PathLike[str] = '',
                **overrides: Any) -> ml_collections.ConfigDict:
  """configs/tiny.py with ``prefetch=0``, a shared data cache and overrides
  given as ``section__key=value``."""
  config = load_config('tiny')
  config.data.prefetch = 0
  config.async_checkpoints = True
  if cache_dir:
    config.data.cache_dir = os.fspath(cache_dir)
  return apply_overrides(config, overrides)


def config_flags(config_overrides: dict[str, Any]) -> list[str]:
  """``--config.a.b=value`` flags for train.py."""
  return [f'--config.{k.replace("__", ".")}={v}'
          for k, v in config_overrides.items()]


def train_losses(workdir: str | os.PathLike[str]) -> dict[int, float]:
  """Step -> training loss from metrics.jsonl (log_every_steps=1); a
  re-run step keeps its last value."""
  return {row['step']: row['train_loss']
          for row in metrics.read_metrics(workdir) if 'train_loss' in row}


def python_env(num_cpu_devices: int = 1) -> dict[str, str]:
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      f' --xla_force_host_platform_device_count={num_cpu_devices}')
  env['JAX_PLATFORMS'] = 'cpu'
  env['TF_CPP_MIN_LOG_LEVEL'] = '3'
  env['PYTHONPATH'] = os.pathsep.join(
      [str(REPO_ROOT), str(REPO_ROOT / 'tests'), env.get('PYTHONPATH', '')])
  return env


def train_command(workdir: str | os.PathLike[str], *extra: str,
                  config: str = 'configs/tiny.py') -> list[str]:
  return [sys.executable, str(REPO_ROOT / 'train.py'),
          f'--config={REPO_ROOT / config}', f'--workdir={workdir}', *extra]


def run(cmd: list[str], num_cpu_devices: int = 1, timeout: float = 300,
        **kwargs: Any) -> subprocess.CompletedProcess:
  return subprocess.run(cmd, env=python_env(num_cpu_devices), cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=timeout,
                        check=False, **kwargs)


def shared_tiny_run(tmp_path_factory: Any, request: Any
                    ) -> tuple[str, dict[str, float]]:
  """(workdir, result) of one uninterrupted configs/tiny.py run, trained once
  per test session and shared by all pytest-xdist workers. Read it, or copy
  it before changing anything."""
  return shared_run(tmp_path_factory, request, 'shared_tiny_run',
                    lambda root: tiny_config(root / 'cache'))


def shared_run(tmp_path_factory: Any, request: Any, name: str,
               make_config: Any) -> tuple[str, dict[str, float]]:
  """(workdir, result) of one run of ``make_config(root)`` (``root``: a
  directory for its data), trained once per test session under ``name`` and
  shared by all pytest-xdist workers (a file lock serialises them)."""
  import fcntl  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  from trainer import loop, tasks  # pylint: disable=g-import-not-at-top
  base = pathlib.Path(tmp_path_factory.getbasetemp())
  workerinput = getattr(request.config, 'workerinput', None)
  uid = 'local'
  if workerinput is not None:  # .../pytest-N/popen-gwK -> .../pytest-N
    base, uid = base.parent, workerinput['testrunuid']
  root = base / f'{name}_{uid}'
  root.mkdir(exist_ok=True)
  run_dir, done = root / 'run', root / 'run' / 'DONE.json'
  with open(root / 'lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      shutil.rmtree(run_dir, ignore_errors=True)
      result = loop.train_and_evaluate(tasks.build(make_config(root)),
                                       str(run_dir))
      done.write_text(json.dumps(result))
  return str(run_dir), json.loads(done.read_text())


# ---------------------------------------------------------- translation -----

TOY_GERMAN = ['ein hund läuft', 'zwei katzen schlafen', 'der mann liest',
              'eine frau trinkt kaffee', 'kinder spielen im park',
              'ein rotes auto fährt']
TOY_ENGLISH = ['a dog runs', 'two cats sleep', 'the man reads',
               'a woman drinks coffee', 'children play in the park',
               'a red car drives']


def write_toy_parallel_corpus(directory: str | os.PathLike[str],
                              num_train: int = 200, seed: int = 0) -> str:
  """A memorisable De->En corpus (phrases joined by und/and) as
  ``train.de/en``, ``val.de/en`` and ``test.de/en`` in ``directory``;
  returns it."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  de, en = [], []
  for _ in range(num_train):
    picks = rng.integers(0, len(TOY_GERMAN), rng.integers(1, 3)).tolist()
    de.append(' und '.join(TOY_GERMAN[i] for i in picks))
    en.append(' and '.join(TOY_ENGLISH[i] for i in picks))
  files = {'train.de': de, 'train.en': en}
  for prefix, picks in (('val', [(0,), (1, 2), (3,), (4, 5), (2, 0), (5,)]),
                        ('test', [(1,), (0, 3), (4,)])):
    files[f'{prefix}.de'] = [' und '.join(TOY_GERMAN[i] for i in p)
                             for p in picks]
    files[f'{prefix}.en'] = [' and '.join(TOY_ENGLISH[i] for i in p)
                             for p in picks]
  for name, lines in files.items():
    (directory / name).write_text('\n'.join(lines) + '\n', encoding='utf-8')
  return str(directory)


def tiny_translation_config(data_dir: str | os.PathLike[str],
                            cache_dir: str | os.PathLike[str] = '',
                            **overrides: Any) -> ml_collections.ConfigDict:
  """configs/multi30k.py:tiny on the toy corpus in ``data_dir`` (overrides
  as ``section__key=value``)."""
  config = load_config('multi30k', 'tiny')
  config.data.data_dir = os.fspath(data_dir)
  config.data.vocab_size = 64  # The toy corpus has few characters.
  config.data.prefetch = 0
  if cache_dir:
    config.data.cache_dir = os.fspath(cache_dir)
  return apply_overrides(config, overrides)


def shared_translation_run(tmp_path_factory: Any, request: Any
                           ) -> tuple[str, str, dict[str, float]]:
  """(toy corpus directory, workdir, result) of one uninterrupted
  configs/multi30k.py:tiny run on the toy corpus, shared like
  :func:`shared_tiny_run`."""
  holder = {}

  def make_config(root):
    holder['corpus'] = write_toy_parallel_corpus(root / 'corpus')
    return tiny_translation_config(holder['corpus'], root / 'cache')

  workdir, result = shared_run(tmp_path_factory, request,
                               'shared_translation_run', make_config)
  corpus = str(pathlib.Path(workdir).parent / 'corpus')
  return corpus, workdir, result


# ------------------------------------------------------- classification -----

_TOY_POSITIVE = ['good', 'great', 'fine', 'lovely', 'superb']
_TOY_NEGATIVE = ['bad', 'awful', 'dull', 'boring', 'poor']
_TOY_FILLER = ['the', 'film', 'was', 'a', 'story', 'and', 'it', 'very']


def write_toy_labelled_corpus(directory: str | os.PathLike[str],
                              num_train: int = 256, seed: int = 0) -> str:
  """A learnable sentiment corpus (label 1 iff the sentence has a positive
  word) as ``train.txt``, ``dev.txt`` and ``test.txt`` (``LABEL TEXT``) in
  ``directory``; returns it."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)

  def lines(n):
    out = []
    for _ in range(n):
      label = int(rng.integers(0, 2))
      words = list(rng.choice(_TOY_FILLER, int(rng.integers(2, 12))))
      cue = rng.choice(_TOY_POSITIVE if label else _TOY_NEGATIVE)
      words.insert(int(rng.integers(0, len(words) + 1)), cue)
      out.append(f'{label} ' + ' '.join(words))
    return out

  for name, n in (('train.txt', num_train), ('dev.txt', 40), ('test.txt', 24)):
    (directory / name).write_text('\n'.join(lines(n)) + '\n', encoding='utf-8')
  return str(directory)


def tiny_classification_config(data_dir: str | os.PathLike[str],
                               cache_dir: str | os.PathLike[str] = '',
                               **overrides: Any) -> ml_collections.ConfigDict:
  """configs/sst2.py's layout with a tiny model on the toy corpus in
  ``data_dir`` (overrides as ``section__key=value``)."""
  config = load_config('sst2')
  config.num_epochs = 0
  config.num_train_steps = 40
  config.log_every_steps = 1
  config.eval_every_steps = 20
  config.checkpoint_every_steps = 20
  config.model.embedding_size = 16
  config.model.hidden_size = 16
  config.model.input_dropout_rate = 0.1
  config.model.output_dropout_rate = 0.1
  config.optimizer.learning_rate = 1e-2
  config.optimizer.warmup_steps = 0
  config.data.data_dir = os.fspath(data_dir)
  config.data.files = {'train': 'train.txt', 'valid': 'dev.txt',
                       'test': 'test.txt'}
  config.data.min_count = 1
  config.data.batch_size = 16
  config.data.eval_batch_size = 16
  config.data.max_length = 16
  config.data.prefetch = 0
  if cache_dir:
    config.data.cache_dir = os.fspath(cache_dir)
  return apply_overrides(config, overrides)


def shared_classification_run(tmp_path_factory: Any, request: Any
                              ) -> tuple[str, dict[str, float]]:
  """(workdir, result) of one tiny classification run on the toy labelled
  corpus (:func:`tiny_classification_config`), shared like
  :func:`shared_tiny_run`."""
  return shared_run(
      tmp_path_factory, request, 'shared_classification_run',
      lambda root: tiny_classification_config(
          write_toy_labelled_corpus(root / 'corpus'), root / 'cache'))


# ----------------------------------------------------- feature sequences -----

TONE_RATE = 8000
TONES = {'0': 300.0, '1': 1200.0, '2': 2600.0}  # Label -> Hz.
TONE_STEPS = 12


def write_wav(path: str | os.PathLike[str], samples: Any,
              channels: int = 1) -> None:
  """16-bit PCM at ``TONE_RATE`` (samples in [-1, 1])."""
  import wave  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  with wave.open(os.fspath(path), 'wb') as f:
    f.setnchannels(channels)
    f.setsampwidth(2)
    f.setframerate(TONE_RATE)
    f.writeframes((np.clip(samples, -1, 1) * 32000).astype('<i2').tobytes())


def write_toy_recordings(directory: str | os.PathLike[str]) -> pathlib.Path:
  """Noisy sine tones, one pitch per label of ``TONES``, as FSDD-named
  ``{label}_synth_{index}.wav`` (index 0-1: valid, 2-7: train) in
  ``directory``; returns it."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  for label, hz in TONES.items():
    for index in range(8):
      t = np.arange(int(TONE_RATE * (0.15 + 0.01 * (index % 4)))) / TONE_RATE
      noise = np.random.default_rng(index).normal(0, 0.02, len(t))
      write_wav(directory / f'{label}_synth_{index}.wav',
                0.5 * np.sin(2 * np.pi * hz * t + index) + noise)
  return directory


def tiny_feature_config(data_dir: str | os.PathLike[str],
                        cache_dir: str | os.PathLike[str] = '',
                        **overrides: Any) -> ml_collections.ConfigDict:
  """configs/spoken_digits.py's layout with a tiny model on the tones of
  :func:`write_toy_recordings` (``TONE_STEPS`` steps; overrides as
  ``section__key=value``)."""
  config = load_config('spoken_digits')
  config.num_epochs = 0
  config.num_train_steps = TONE_STEPS
  config.log_every_steps = 1
  config.eval_every_steps = 6
  config.checkpoint_every_steps = 6
  config.model.embedding_size = 8
  config.model.hidden_size = 8
  config.optimizer.learning_rate = 2e-2
  config.data.data_dir = os.fspath(data_dir)
  config.data.labels = tuple(TONES)
  config.data.index_ranges = {'train': (2, 7), 'valid': (0, 1)}
  config.data.features.num_mel_bands = 12
  config.data.batch_size = 6
  config.data.eval_batch_size = 6
  config.data.bucket_boundaries = (16, 32)
  config.data.max_length = 32
  config.data.prefetch = 0
  if cache_dir:
    config.data.cache_dir = os.fspath(cache_dir)
  return apply_overrides(config, overrides)

"""Shared test helpers, and one JAX compilation cache per test run."""

import os
import pathlib
import shutil
import tempfile

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'

# Compile time dominates the suite. The tests build the same small programs
# many times over (a fresh jit per test, the pytest-xdist workers, the
# train.py subprocesses), so one JAX persistent compilation cache, shared by
# every process of this run (the workers and the subprocesses inherit the
# environment) and removed at its end, saves about a quarter of the time.
# Set JAX_COMPILATION_CACHE_DIR yourself to keep a cache (or '' for none).
_RUN_ID = os.environ.get('PYTEST_XDIST_TESTRUNUID') or str(os.getpid())
_OWN_CACHE = 'JAX_COMPILATION_CACHE_DIR' not in os.environ
if _OWN_CACHE:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(
      tempfile.gettempdir(), f'lstm-flax-tests-jax-cache-{_RUN_ID}')
  # Every program, however quick to compile (the default skips those under
  # a second).
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')


def pytest_sessionfinish(session: pytest.Session) -> None:
  """The run's own cache goes when the run ends (in the xdist controller, or
  in the only process without xdist)."""
  if _OWN_CACHE and not hasattr(session.config, 'workerinput'):
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)


@pytest.fixture(scope='session')
def shared_data() -> pathlib.Path:
  """``../shared/data`` beside the repository; skips the test when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'benchmark data not found at {SHARED_DATA}')
  return SHARED_DATA

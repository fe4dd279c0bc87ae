"""Shared test helpers."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> pathlib.Path:
  """``../shared/data`` beside the repository; skips the test when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'benchmark data not found at {SHARED_DATA}')
  return SHARED_DATA

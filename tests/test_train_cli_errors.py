"""The command lines report bad input as one error line, not a traceback."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
  return subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))


@pytest.mark.parametrize('script, args, message', [
    ('train.py', ['--config=configs/ptb.py:small', '--config.data.data_dir={tmp}/missing'],
     'train.py: error: '),
    ('generate.py', [], 'generate.py: error: '),
])
def test_cli_errors_are_one_line(tmp_path, script, args, message):
  args = [a.format(tmp=tmp_path) for a in args] + [f'--workdir={tmp_path / "run"}']
  result = _run(script, *args)
  assert result.returncode == 1, result.stderr[-2000:]
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
  if script == 'train.py':
    assert 'missing' in result.stderr  # names the directory

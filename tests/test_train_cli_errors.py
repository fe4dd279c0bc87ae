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
    ('train.py', ['--config=configs/tiny.py', '--config.model.hiden_size=32'],
     "train.py: error: unknown config key 'hiden_size' in --config.model.hiden_size "
     '(configs/tiny.py). Did you mean "hidden_size"'),
    ('train.py', ['--config=configs/tiny.py', '--config.model.dtype=float16'],
     "train.py: error: model.dtype='float16' is not supported for training "
     "(no loss scaling); use 'bfloat16'."),
    ('generate.py', [], 'generate.py: error: '),
    # The output is checked before any work (the workdir does not exist).
    ('translate.py', ['--output={tmp}/missing/out.en'],
     'translate.py: error: cannot write --output={tmp}/missing/out.en: the directory '
     '{tmp}/missing does not exist'),
])
def test_cli_errors_are_one_line(tmp_path, script, args, message):
  args = [a.format(tmp=tmp_path) for a in args] + [f'--workdir={tmp_path / "run"}']
  result = _run(script, *args)
  assert result.returncode == 1, result.stderr[-2000:]
  assert message.format(tmp=tmp_path) in result.stderr
  assert 'Traceback' not in result.stderr
  if any('missing' in a for a in args):
    assert 'missing' in result.stderr  # names the directory


@pytest.mark.parametrize('args, message', [
    (['--config={tmp}/nope.py'], 'config file {tmp}/nope.py (--config={tmp}/nope.py) '
     'does not exist; give the path of a config file'),
    (['--config={tmp}/bad.py'], 'config file {tmp}/bad.py is not valid Python: line 1: '),
    (['--config=configs/sst2.py:nope'],
     "ValueError: Unknown sst2 variant 'nope'; use 'scratch' or 'pretrained'."),
])
def test_config_flag_mistakes_are_one_line(tmp_path, capsys, monkeypatch, args, message):
  """Config files that are missing, not Python, or whose get_config fails (unknown
  override keys: the subprocess test above)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from trainer import cli  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(REPO)
  (tmp_path / 'bad.py').write_text('def get_config(:\n')
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=flag_values,
                                  lock_config=True)
  parse = cli.config_flags_parser('train.py', flag_values=flag_values)
  with pytest.raises(SystemExit) as exit_info:
    parse(['train.py', *(a.format(tmp=tmp_path) for a in args)])
  assert exit_info.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith('train.py: error: ') and err.count('\n') == 1, err
  assert message.format(tmp=tmp_path) in err


def test_output_paths_are_checked(tmp_path):
  from trainer import cli  # pylint: disable=g-import-not-at-top
  cli.check_output_path(str(tmp_path / 'out.txt'))
  for path, message in ((tmp_path, 'it is a directory'),
                        (tmp_path / 'no' / 'out.txt', f'the directory {tmp_path / "no"} does not exist')):
    with pytest.raises(OSError, match=message):
      cli.check_output_path(str(path))

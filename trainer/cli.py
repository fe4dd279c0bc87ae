"""Command-line error reporting shared by train.py, generate.py, translate.py,
classify.py and export.py."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from input_pipeline import errors as input_errors
from trainer import errors


@contextlib.contextmanager
def errors_as_messages(prog: str, extra: tuple[type[BaseException], ...] = ()
                       ) -> Iterator[None]:
  """Reports the project's errors (bad config, data, checkpoint, NaN loss) as
  one ``prog: error: ...`` line on standard error and exit status 1, instead
  of a traceback; the traceback is still logged at debug level."""
  try:
    yield
  except (errors.TrainerError, input_errors.InputPipelineError, *extra) as e:
    logging.debug('%s failed', prog, exc_info=True)
    print(f'{prog}: error: {e}', file=sys.stderr, flush=True)
    sys.exit(1)


def config_flags_parser(prog: str, config_flag: str = 'config',
                        flag_values: Any = None
                        ) -> Callable[[list[str]], list[str]]:
  """An ``absl.app.run(..., flags_parser=...)`` that reports a bad config
  file or ``--config.x=y`` override as one ``prog: error: ...`` line (exit
  status 1), naming the file or key and what to do, instead of a traceback.

  Covers a missing config file, one that is not valid Python or whose
  ``get_config`` fails, an unknown override key (with ml_collections'
  "did you mean"), a value of the wrong type and a missing required flag.
  ``flag_values``: the ``absl.flags.FlagValues`` to parse (default: the
  global ``FLAGS``).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top

  def fail(message: str) -> NoReturn:
    logging.debug('%s: bad command line', prog, exc_info=True)
    print(f'{prog}: error: {message}', file=sys.stderr, flush=True)
    sys.exit(1)

  def config_path(argv: list[str]) -> str:
    for arg in argv:
      if arg.startswith(f'--{config_flag}='):
        return arg.split('=', 1)[1]
    return ''

  def parse(argv: list[str]) -> list[str]:
    values = flags.FLAGS if flag_values is None else flag_values
    path = config_path(argv)
    try:
      rest = values(argv)
      values[config_flag].value.keys()  # A file that failed to load raises.
      return rest
    except flags.Error as e:
      lines = [line.strip() for line in str(e).splitlines() if line.strip()]
      # A get_config that raised: the flag, then the exception's last line.
      fail(lines[0] if len(lines) == 1 else f'{lines[0]} {lines[-1]}')
    except (AttributeError, KeyError) as e:  # An unknown --config.x key.
      cause = e.args[0] if isinstance(e, AttributeError) and e.args else e
      lines = str(cause.args[0] if isinstance(cause, KeyError) else cause
                  ).split('\n')
      key = lines[0].strip("'")
      given = [a.split('=')[0] for a in argv
               if a.startswith(f'--{config_flag}.') and key in a]
      fail(f'unknown config key {key!r} in {", ".join(given) or "an override"}'
           f' ({path}). {" ".join(lines[1:])} See the config file for the '
           'keys.')
    except SyntaxError as e:
      fail(f'config file {e.filename or path} is not valid Python: line '
           f'{e.lineno}: {e.msg}. Fix the file.')
    except OSError as e:
      file = path.split(':')[0]
      if file and not os.path.exists(file):
        fail(f'config file {file} (--{config_flag}={path}) does not exist; '
             f'give the path of a config file, e.g. --{config_flag}='
             'configs/lm.py.')
      fail(f'config file {path} could not be loaded: '
           f'{str(e).splitlines()[-1].strip()}')

  return parse


def check_output_path(path: str, flag: str = '--output') -> None:
  """Raises ``OSError`` naming ``path`` when it cannot be written, so a
  command checks its output before any work (and never truncates it first).
  """
  directory = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(path):
    raise OSError(f'cannot write {flag}={path}: it is a directory; give a '
                  'file name.')
  if not os.path.isdir(directory):
    raise OSError(f'cannot write {flag}={path}: the directory {directory} '
                  'does not exist; create it or choose another path.')
  if not os.access(directory, os.W_OK) or (
      os.path.exists(path) and not os.access(path, os.W_OK)):
    raise OSError(f'cannot write {flag}={path}: permission denied; choose a '
                  'writable path.')

"""Command-line error reporting shared by train.py, generate.py and translate.py."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

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

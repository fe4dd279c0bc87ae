"""Classifies sentences with a trained classification run's checkpoint.

  python classify.py --workdir=/tmp/sst2 --input=sentences.txt
  echo "a gorgeous , witty , seductive movie ." | python classify.py --workdir=/tmp/sst2
  python classify.py --workdir=/tmp/fsdd 0_george_0.wav 7_jackson_3.wav

Reads one input per line from --input (default: standard input), or takes
the positional arguments as the inputs, and writes one line per input to
--output (default: standard output): the predicted label, a tab, and each
class's probability (``name=p``). Blank lines give empty output lines. An
input is a sentence (task='classification') or a file path
(task='feature_classification': a .wav file, or an .npy image). Scores
on a whole labelled split:
``train.py --config.mode=evaluate`` (see README).
"""

import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'The run directory (checkpoints, tokenizer, labels).')
flags.DEFINE_string('input', '', 'Inputs (sentences or file paths), one per line (default: '
                    'the arguments, else stdin).')
flags.DEFINE_string('output', '', 'Where to write the labels (default: stdout).')
flags.DEFINE_string('checkpoint', 'best', "'latest', 'best' or a step number.")
flags.DEFINE_integer('batch_size', 64, 'Inputs per batch.')
flags.mark_flag_as_required('workdir')

PROG = 'classify.py'


def main(argv):
  if len(argv) > 1 and FLAGS.input:
    raise app.UsageError(f'Give inputs as arguments or --input, not both: {argv[1:]}')
  from trainer import cli, metrics  # pylint: disable=g-import-not-at-top
  metrics.quiet_checkpoint_logs()
  with cli.errors_as_messages(PROG, extra=(OSError,)):
    if FLAGS.output:
      cli.check_output_path(FLAGS.output)
    if len(argv) > 1:
      lines = list(argv[1:])
    elif FLAGS.input:
      try:
        with open(FLAGS.input, encoding='utf-8', errors='replace') as f:
          lines = f.read().splitlines()
      except OSError as e:
        raise OSError(f'cannot read {FLAGS.input}: {e.strerror or e}') from e
    else:
      lines = sys.stdin.read().splitlines()
    from trainer import tasks  # pylint: disable=g-import-not-at-top
    classifier = tasks.load(FLAGS.workdir, FLAGS.checkpoint, 'classification')
    predictions = classifier.classify(lines, batch_size=FLAGS.batch_size)
  text = ''.join(
      '\n' if p is None else p.label + '\t' + ' '.join(
          f'{name}={v:.4f}' for name, v in p.probabilities.items()) + '\n'
      for p in predictions)
  if FLAGS.output:
    with open(FLAGS.output, 'w', encoding='utf-8') as output:
      output.write(text)
  else:
    sys.stdout.write(text)
    sys.stdout.flush()
  blank = sum(p is None for p in predictions)
  print(f'{PROG}: classified {len(lines) - blank} of {len(lines)} lines with '
        f'the checkpoint of step {classifier.step}'
        + (f' ({blank} blank lines left empty)' if blank else '') + '.',
        file=sys.stderr)


if __name__ == '__main__':
  app.run(main)

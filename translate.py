"""Translates text lines with a trained translation run's checkpoint.

  python translate.py --workdir=/tmp/multi30k --input=sentences.de \
      --output=sentences.en --beam_size=5 --alpha=0.6
  echo "Ein Hund läuft im Park." | python translate.py --workdir=/tmp/multi30k
  python translate.py --workdir=/tmp/multi30k --input=val.de --reference=val.en

Reads one sentence per line from --input (default: standard input) and
writes one translation per line to --output (default: standard output), from
the latest (or --checkpoint=best, or a step) checkpoint of --workdir. Empty
lines give empty lines; overlong lines are truncated and characters the
vocabulary lacks become <unk>; both are counted on standard error. With
--reference, corpus BLEU and chrF (sacrebleu) are printed to standard error.
Scores on a whole split: train.py --config.mode=evaluate (see README).
"""

import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'The run directory (checkpoints and tokenizer).')
flags.DEFINE_string('input', '', 'Source sentences, one per line (default: stdin).')
flags.DEFINE_string('output', '', 'Where to write the translations (default: stdout).')
flags.DEFINE_string('reference', '', 'Optional reference translations: print BLEU / chrF.')
flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' or a step number.")
flags.DEFINE_integer('batch_size', 32, 'Sentences per batch.')
flags.DEFINE_enum('method', None, ['beam', 'greedy', 'sample'],
                  "Decoding (default: the run's config.decode.method).")
flags.DEFINE_integer('beam_size', None, "Beam size (default: the run's config).")
flags.DEFINE_float('alpha', None, "GNMT length penalty (default: the run's config).")
flags.DEFINE_integer('max_input_tokens', 0,
                     'Truncate longer sources (tokens with EOS; 0: the run\'s '
                     'config.decode.max_length).')
flags.DEFINE_integer('seed', 0, 'Seed of --method=sample.')
flags.mark_flag_as_required('workdir')

PROG = 'translate.py'


def _read_lines(path: str) -> list[str]:
  if path:
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise OSError(f'cannot read {path}: {e.strerror or e}') from e
  else:
    data = sys.stdin.buffer.read()
  text = data.decode('utf-8', errors='replace')
  if '\ufffd' in text and b'\xef\xbf\xbd' not in data:
    print(f'{PROG}: warning: the input is not valid UTF-8; invalid bytes were '
          'replaced by U+FFFD.', file=sys.stderr)
  lines = text.split('\n')
  if lines and lines[-1] == '':
    lines.pop()
  return [line.rstrip('\r') for line in lines]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from trainer import cli, errors, metrics  # pylint: disable=g-import-not-at-top
  metrics.quiet_checkpoint_logs()
  with cli.errors_as_messages(PROG, extra=(OSError,)):
    if FLAGS.output:
      cli.check_output_path(FLAGS.output)
    lines = _read_lines(FLAGS.input)
    references = _read_lines(FLAGS.reference) if FLAGS.reference else None
    if references is not None and len(references) != len(lines):
      raise errors.ConfigError(
          f'--reference has {len(references)} lines but the input has '
          f'{len(lines)}; they must be parallel.')
    from trainer import tasks  # pylint: disable=g-import-not-at-top
    from trainer.tasks import translation  # pylint: disable=g-import-not-at-top
    translator = tasks.load(FLAGS.workdir, FLAGS.checkpoint, 'translation')
    outputs, report = translator.translate(
        lines, batch_size=FLAGS.batch_size, method=FLAGS.method,
        beam_size=FLAGS.beam_size, alpha=FLAGS.alpha,
        max_input_tokens=FLAGS.max_input_tokens or None, seed=FLAGS.seed)
  text = ''.join(line + '\n' for line in outputs)
  if FLAGS.output:
    with open(FLAGS.output, 'w', encoding='utf-8') as f:
      f.write(text)
  else:
    sys.stdout.write(text)
    sys.stdout.flush()
  for message in report.messages():
    print(f'{PROG}: warning: {message}', file=sys.stderr)
  print(f'{PROG}: translated {len(lines) - len(report.empty)} of {len(lines)} '
        f'lines with the checkpoint of step {translator.step}.',
        file=sys.stderr)
  if references is not None:
    scores = translation.bleu_and_chrf('reference', outputs, references)
    print(f"{PROG}: BLEU = {scores['reference_bleu']:.2f}, chrF = "
          f"{scores['reference_chrf']:.2f} (sacrebleu, {len(lines)} lines).",
          file=sys.stderr)
  sys.stderr.flush()


if __name__ == '__main__':
  app.run(main)

"""Generates text from a trained run's checkpoint.

  python generate.py --workdir=/tmp/lm --prompt="The for statement" \
      --num_tokens=50 --temperature=0.8 --top_k=40 --seed=0
"""

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'The run directory (checkpoints and tokenizer).')
flags.DEFINE_string('prompt', '', 'Text to continue.')
flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' or a step number.")
flags.DEFINE_integer('num_tokens', 100, 'Tokens to generate.')
flags.DEFINE_float('temperature', 1.0, 'Softmax temperature (> 0).')
flags.DEFINE_integer('top_k', 0, 'Sample from the k most likely tokens (0: all).')
flags.DEFINE_float('top_p', 1.0, 'Nucleus sampling mass (1: all).')
flags.DEFINE_integer('seed', 0, 'Random seed; the same seed gives the same text.')
flags.DEFINE_integer('num_samples', 1, 'Independent samples.')
flags.mark_flag_as_required('workdir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from trainer import cli, metrics, tasks  # pylint: disable=g-import-not-at-top
  metrics.quiet_checkpoint_logs()
  with cli.errors_as_messages('generate.py', extra=(ValueError,)):
    generator = tasks.load(FLAGS.workdir, FLAGS.checkpoint, 'lm')
    texts = generator.generate(
        FLAGS.prompt, num_tokens=FLAGS.num_tokens, temperature=FLAGS.temperature,
        top_k=FLAGS.top_k, top_p=FLAGS.top_p, seed=FLAGS.seed,
        num_samples=FLAGS.num_samples)
  sep = '' if generator.tokenizer.kind == 'char' else ' '
  for i, text in enumerate(texts):
    if FLAGS.num_samples > 1:
      print(f'--- sample {i} (checkpoint step {generator.step}) ---')
    print(FLAGS.prompt + (sep if FLAGS.prompt else '') + text, flush=True)


if __name__ == '__main__':
  app.run(main)

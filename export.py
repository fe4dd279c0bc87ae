"""Exports a trained run's checkpoint as a self-contained directory.

  python export.py --workdir=/tmp/lm --checkpoint=best --out=/tmp/lm_export
  python export.py --workdir=/tmp/lm --out=/tmp/lm_export --torch

Writes --out (which must not exist, or be empty; nothing is overwritten, and
the directory appears only when complete): params.safetensors, model.json,
tokenizer/, config.json and MODEL_CARD.md, plus, with --torch (language
models), torch_state_dict.safetensors for PyTorch's word_language_model
RNNModel, and with --serving_tokens=N (language models) generate.jax_exported,
a jax.export generation function that needs only jax. Load it with
``lstm_flax.export.load(DIR)``; see MODEL_CARD.md.
"""

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'The run directory (checkpoints and tokenizer).')
flags.DEFINE_string('checkpoint', 'best', "'latest', 'best' or a step number.")
flags.DEFINE_string('out', None, 'The export directory to create.')
flags.DEFINE_bool('torch', False, 'Also write the PyTorch RNNModel state dict '
                  '(language models).')
flags.DEFINE_integer('serving_tokens', 0, 'Also write generate.jax_exported, a '
                     'jax.export function sampling this many tokens (language '
                     'models; 0: none).')
flags.DEFINE_integer('serving_batch_size', 1, 'Prompts per call of that function.')
flags.mark_flag_as_required('workdir')
flags.mark_flag_as_required('out')

PROG = 'export.py'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from trainer import cli, errors, export, metrics  # pylint: disable=g-import-not-at-top
  metrics.quiet_checkpoint_logs()
  with cli.errors_as_messages(PROG, extra=(OSError,)):
    serving = None
    if FLAGS.serving_tokens:
      from lstm_flax import export as export_lib  # pylint: disable=g-import-not-at-top
      try:
        serving = export_lib.ServingOptions(
            num_tokens=FLAGS.serving_tokens, batch_size=FLAGS.serving_batch_size)
      except ValueError as e:
        raise errors.ConfigError(str(e)) from None
    path = export.export(FLAGS.workdir, FLAGS.out, FLAGS.checkpoint,
                         torch=FLAGS.torch, serving=serving)
  print(f'{PROG}: wrote {path}', flush=True)


if __name__ == '__main__':
  app.run(main)

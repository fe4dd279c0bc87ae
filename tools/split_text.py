"""Splits one text file into train / valid / test files as TFDS does.

TFDS ``tiny_shakespeare`` takes the first 90 % of the characters as train and
halves the rest into validation and test:

  python tools/split_text.py --input=../shared/data/tiny_shakespeare/input.txt \
      --output_dir=/tmp/tiny_shakespeare
"""

import os

from absl import app
from absl import flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined when run, so importing ``split`` defines
  none that could clash with another command's)."""
  flags.DEFINE_string('input', None, 'The text file.')
  flags.DEFINE_string('output_dir', None, 'Where train.txt, valid.txt, test.txt go.')
  flags.DEFINE_float('train_fraction', 0.9, 'Fraction of the characters for train.')


def split(text: str, train_fraction: float = 0.9) -> dict[str, str]:
  i = int(len(text) * train_fraction)
  rest = text[i:]
  j = int(len(rest) * 0.5)
  return {'train': text[:i], 'valid': rest[:j], 'test': rest[j:]}


def main(argv):
  del argv
  with open(FLAGS.input, encoding='utf-8') as f:
    parts = split(f.read(), FLAGS.train_fraction)
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  for name, text in parts.items():
    with open(os.path.join(FLAGS.output_dir, f'{name}.txt'), 'w',
              encoding='utf-8') as f:
      f.write(text if text.endswith('\n') else text + '\n')
    print(f'{name}.txt: {len(text)} characters')


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['input', 'output_dir'])
  app.run(main)

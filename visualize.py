"""Looks inside a trained LSTM: its gates and cell state per token, as HTML.

  python visualize.py --workdir=/tmp/char --text="First Citizen:" --out=report.html
  python visualize.py --export_dir=/tmp/lm_export --input=poem.txt --out=report.html

A language model is run on the text as given; a classifier on the text (its
prediction shown); a translation model on the text as source, then its
decoder on its own greedy translation. The page (one file, no network) shows
per-token heatmaps of a chosen unit's c, h or gate, the units ranked by what
text property their cell state follows, saturation plots per layer and, for
a clicked token, the LSTM equations with that step's values
(``lstm_flax.gates``, ``lstm_flax.gate_stats``, ``trainer.gate_report``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'A training run directory (checkpoints and tokenizer).')
flags.DEFINE_string('export_dir', None, 'An exported model (export.py) instead of --workdir.')
flags.DEFINE_string('checkpoint', 'latest', "With --workdir: 'latest', 'best' or a step.")
flags.DEFINE_string('text', None, 'The text to run the model on.')
flags.DEFINE_string('input', None, 'A UTF-8 file with the text, instead of --text.')
flags.DEFINE_string('out', 'report.html', 'The HTML file to write.')
flags.DEFINE_integer('max_tokens', 1000, 'Tokens of the text at most (the rest is cut).')
flags.DEFINE_integer('max_output_tokens', 64, 'Translation: output tokens at most.')


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
  """The text of each token id (a vocabulary's entry, or the decoded id)."""
  vocab = getattr(tokenizer, 'vocab', None)
  if vocab is not None:
    return ['\ufffd' if i == tokenizer.unk_id and tokenizer.kind == 'char' else vocab[i]
            for i in ids]
  return [tokenizer.decode([i]) for i in ids]


def sections_for(kind: str, module: Any, variables: Any, tokenizer: Any, text: str, *,
                 settings: Mapping[str, Any] | None = None, max_tokens: int = 1000,
                 max_output_tokens: int = 64) -> list[Any]:
  """The report sections of ``module`` (an export ``kind``) run on ``text``.

  ``settings``: the run's inference settings (an export's
  ``info['inference']``, ``Task.inference_settings``); a classifier's
  ``label_names`` and text ``encoding`` (lower-casing, EOS) are used.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lstm_flax import gates, inference  # pylint: disable=g-import-not-at-top
  from trainer import gate_report  # pylint: disable=g-import-not-at-top
  settings = settings or {}
  sep = '' if getattr(tokenizer, 'kind', '') == 'char' else ' '
  ids = list(tokenizer.encode(text))[:max_tokens]
  if kind == 'classifier' and settings.get('encoding'):
    encoding = inference.TextEncoding.from_mapping(settings['encoding'])
    tokens, lengths = encoding.encode(tokenizer, [text])
    ids = [int(i) for i in tokens[0, :min(int(lengths[0]), max_tokens)]]
  if not ids:
    raise ValueError(f'The text {text[:40]!r} has no tokens; give some text.')
  if kind == 'language_model':
    _, recs = gates.record_tokens(module, variables, np.array(ids))
    return [gate_report.section_from(f'Language model: {name}', token_strings(tokenizer, ids),
                                     g, separator=sep) for name, g in recs.items()]
  if kind == 'classifier':
    logits, recs = gates.record_tokens(module, variables, np.array(ids))
    probs = np.asarray(jax.nn.softmax(logits))
    names = list(settings.get('label_names') or [str(k) for k in range(len(probs))])
    best = int(np.argmax(probs))
    note = f'prediction: {names[best]} (p = {probs[best]:.3f})'
    return [gate_report.section_from(f'Classifier: {name}', token_strings(tokenizer, ids), g,
                                     note, separator=sep) for name, g in recs.items()]
  if kind == 'translation':
    source = ids[:max_tokens - 1] + [tokenizer.eos_id]
    decode = inference.DecodeOptions(method='greedy', max_length=max_output_tokens)
    out = inference.translate_batch(module, variables['params'], np.array([source]),
                                    np.ones((1, len(source)), np.float32), decode, tokenizer)
    target = [int(t) for t in np.asarray(out)[0]]
    target = target[:target.index(tokenizer.eos_id) + 1] if tokenizer.eos_id in target else target
    recs = gates.record_translation(module, variables, np.array(source), np.array(target),
                                    tokenizer.bos_id)
    translation = inference.detokenize(tokenizer, target)
    directions = 2 if module.bidirectional_encoder else 1
    return [
        gate_report.section_from('Encoder (source)', token_strings(tokenizer, source),
                                 recs['encoder'], f'translation: {translation}', directions,
                                 sep),
        gate_report.section_from('Decoder (generated target; step t reads the previous token '
                                 'and predicts this one)', token_strings(tokenizer, target),
                                 recs['decoder'], f'translation: {translation}', 1, sep),
    ]
  raise ValueError(f'visualize.py cannot show a model of kind {kind!r}.')


def load(workdir: str | None = None, export_dir: str | None = None,
         checkpoint: str = 'latest') -> tuple[str, Any, Any, Any, dict[str, Any], str]:
  """(kind, module, variables, tokenizer, inference settings, where) of a
  run's checkpoint (``workdir``, restored through the trainer) or of an
  export (``export_dir``, through ``lstm_flax.export.load`` alone)."""
  from lstm_flax import export  # pylint: disable=g-import-not-at-top
  if export_dir:
    loaded = export.load(export_dir)
    if loaded.tokenizer is None:
      raise ValueError(f'{export_dir} has no tokenizer/; visualize.py needs it to read '
                       'the text.')
    return (loaded.kind, loaded.module, loaded.variables, loaded.tokenizer,
            dict(loaded.info.get('inference', {})), str(export_dir))
  from trainer import inference, tasks  # pylint: disable=g-import-not-at-top
  restored = inference.restore(workdir, checkpoint, lookup=tasks.task_class)
  return (export.kind_of(restored.model), restored.model, {'params': restored.params()},
          restored.tokenizer, restored.task.inference_settings(workdir),
          f'{workdir} step {restored.step}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if bool(FLAGS.workdir) == bool(FLAGS.export_dir):
    raise app.UsageError('Give one of --workdir or --export_dir.')
  if (FLAGS.text is None) == (FLAGS.input is None):
    raise app.UsageError('Give one of --text or --input.')
  from trainer import cli, gate_report, metrics  # pylint: disable=g-import-not-at-top
  metrics.quiet_checkpoint_logs()
  with cli.errors_as_messages('visualize.py', extra=(ValueError, OSError)):
    if FLAGS.input:
      with open(FLAGS.input, encoding='utf-8') as f:
        text = f.read()
    else:
      text = FLAGS.text
    kind, module, variables, tokenizer, settings, where = load(
        FLAGS.workdir, FLAGS.export_dir, FLAGS.checkpoint)
    sections = sections_for(kind, module, variables, tokenizer, text, settings=settings,
                            max_tokens=FLAGS.max_tokens,
                            max_output_tokens=FLAGS.max_output_tokens)
    gate_report.write(FLAGS.out, sections, subtitle=f'{kind.replace("_", " ")} from {where}')
  print(gate_report.describe(sections))
  print(f'Wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)

"""visualize.py's report for a language model, a classifier and a translation
model, rendered in headless Chromium (skipped where there is none)."""

import os
import shutil
import struct
import subprocess
import zlib

import jax
import jax.numpy as jnp
import pytest

import visualize
from lstm_flax import models, seq2seq, tokenizer as tokenizer_lib
from trainer import gate_report

TEXT = 'he said "hi (you)".'


def _chromium():
  for name in ('chromium', 'chromium-browser', 'google-chrome'):
    path = shutil.which(name)
    if path:
      return path
  return None


@pytest.fixture(scope='module')
def sections():
  tok = tokenizer_lib.CharTokenizer(['<unk>', '\n'] + sorted(set(TEXT)))
  vocab = tok.vocab_size
  ids = jnp.array([tok.encode(TEXT)])
  lm = models.LanguageModel(vocab_size=vocab, embedding_size=4, hidden_size=6, num_layers=2)
  classifier = models.SequenceClassifier(vocab_size=vocab, num_classes=2, embedding_size=4,
                                         hidden_size=5, bidirectional=True)
  mt = seq2seq.Seq2Seq(source_vocab_size=vocab, target_vocab_size=vocab, embedding_size=4,
                       hidden_size=4, encoder_layers=1, decoder_layers=1)
  key = jax.random.key(0)
  sections = visualize.sections_for('language_model', lm, lm.init(key, ids), tok, TEXT)
  sections += visualize.sections_for(
      'classifier', classifier, classifier.init(key, ids, jnp.array([ids.shape[1]]),
                                                deterministic=True),
      tok, TEXT, settings={'label_names': ['neg', 'pos'],
                          'encoding': {'max_length': 64, 'lowercase': True}})
  sections += visualize.sections_for('translation', mt, mt.init(key, ids, ids[:, :3]), tok,
                                     TEXT, max_output_tokens=6)
  return sections


def _png_size_and_colours(path):
  """(width, height, distinct colours in a sample of rows) of an RGB(A) PNG."""
  data = open(path, 'rb').read()
  assert data[:8] == b'\x89PNG\r\n\x1a\n'
  pos, idat, header = 8, b'', None
  while pos < len(data):
    length, kind = struct.unpack('>I4s', data[pos:pos + 8])
    chunk = data[pos + 8:pos + 8 + length]
    if kind == b'IHDR':
      header = struct.unpack('>IIBBBBB', chunk)
    elif kind == b'IDAT':
      idat += chunk
    pos += 12 + length
  width, height, depth, colour_type = header[:4]
  channels = {2: 3, 6: 4}[colour_type]
  raw = zlib.decompress(idat)
  stride = width * channels + 1
  colours = set()
  for y in range(0, height, max(1, height // 40)):
    row = raw[y * stride + 1:(y + 1) * stride]  # filtered bytes: a proxy for content
    colours.update(row[i:i + 3] for i in range(0, len(row), channels * 7))
  return width, height, len(colours)


def test_sections_cover_every_model_kind(sections):
  titles = [s.title for s in sections]
  assert titles[:3] == ['Language model: lstm', 'Classifier: lstm', 'Classifier: lstm_reverse']
  assert titles[3] == 'Encoder (source)' and titles[4].startswith('Decoder')
  assert sections[0].tokens == list(TEXT)
  assert sections[0].gates['c'].shape == (2, 1, len(TEXT), 6)
  assert sections[1].note.startswith('prediction: ')
  assert sections[1].note.split()[1] in ('neg', 'pos')
  assert sections[3].directions == 2 and sections[3].tokens[-1] == '\n'
  assert 1 <= len(sections[4].tokens) <= 6
  html = gate_report.render(sections)
  assert 'http://' not in html.replace('http://www.w3.org/2000/svg', '')
  assert 'https://' not in html and '<link' not in html and 'src=' not in html
  assert html.count('<svg class="sat"') == sum(s.gates['c'].shape[0] for s in sections)


@pytest.mark.skipif(_chromium() is None, reason='no chromium on PATH (apt-get install chromium)')
@pytest.mark.slow
def test_report_renders_in_headless_chromium(sections, tmp_path):
  page = tmp_path / 'report.html'
  gate_report.write(str(page), sections, title='Gate report test')
  browser = _chromium()
  common = [browser, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
            f'--user-data-dir={tmp_path / "profile"}', '--virtual-time-budget=3000']
  dom = subprocess.run(common + ['--dump-dom', page.as_uri()], capture_output=True, text=True,
                       timeout=120, check=True).stdout
  assert '<div id="status">ready</div>' in dom, dom[:2000]
  assert '<div id="errors"></div>' in dom
  assert dom.count('class="tok') >= len(TEXT) and 'class="tok sel"' in dom
  assert 'c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t =' in dom  # the equations, filled in
  assert 'background: rgb(' in dom  # the heatmap was painted
  shot = tmp_path / 'shot.png'
  subprocess.run(common + [f'--screenshot={shot}', '--window-size=1200,900', page.as_uri()],
                 capture_output=True, timeout=120, check=True)
  width, height, colours = _png_size_and_colours(shot)
  assert (width, height) == (1200, 900)
  assert colours > 20, 'the screenshot is (nearly) blank'
  assert os.path.getsize(shot) > 20000

"""The gate report: recorded LSTM gates as one self-contained HTML page.

Input: :class:`Section` s (a text's tokens and one recording of
``lstm_flax.gates``, batch row 0). Output: HTML with inline CSS, JavaScript
and SVG only (nothing fetched): per section, a per-token heatmap of a
chosen unit's ``c``, ``h`` or gate (colour legend), units picked by number
or from the "who does what" ranking (``lstm_flax.gate_stats``), saturation
plots per layer direction (Karpathy et al. 2015, Figure 3), the mean forget
gate, and for a clicked token the LSTM equations with that step's values.
Script errors are written into ``#errors``; ``#status`` reads ``ready``
once the page has rendered (the browser test reads both).
"""

from __future__ import annotations

import dataclasses
import html
import json
from typing import Any, Mapping, Sequence

import numpy as np

from lstm_flax import gate_stats

QUANTITIES = ('c', 'h', 'i', 'f', 'g', 'o')
_SCALE = 1000  # values are stored as integer thousandths
_COLOURS = {'i': '#1f77b4', 'f': '#d62728', 'o': '#2ca02c'}


@dataclasses.dataclass
class Section:
  """One recorded text.

  Attributes:
    title: e.g. ``'Language model'``, ``'Encoder (source)'``.
    tokens: the token strings of the valid steps, ``[T]``.
    gates: a ``lstm_flax.gates`` recording (``[L*D, batch, time, H]`` arrays
      and ``mask [batch, time]``); row 0 is shown.
    note: a line shown under the title (a prediction, a translation).
    directions: 2 for a bidirectional stack (layer names ``l0 fwd/rev``).
    separator: shown between tokens (``' '`` for words, ``''`` for characters).
  """

  title: str
  tokens: Sequence[str]
  gates: Mapping[str, Any]
  note: str = ''
  directions: int = 1
  separator: str = ''


def _layer_names(section: Section) -> list[str]:
  n = np.asarray(section.gates['c']).shape[0]
  if section.directions == 2:
    return [f'layer {k // 2} {"reverse" if k % 2 else "forward"}' for k in range(n)]
  return [f'layer {k}' for k in range(n)]


def saturation_svg(left: Mapping[str, np.ndarray], right: Mapping[str, np.ndarray],
                   title: str, size: int = 220) -> str:
  """An SVG scatter plot: one dot per unit and gate at (fraction left-
  saturated, fraction right-saturated), ``left[gate]``/``right[gate]`` ``[H]``."""
  pad = 34
  inner = size - pad - 8
  parts = [f'<svg class="sat" xmlns="http://www.w3.org/2000/svg" width="{size}" '
           f'height="{size + 18}" role="img"><title>{html.escape(title)}</title>',
           f'<rect x="{pad}" y="8" width="{inner}" height="{inner}" fill="#fafafa" '
           'stroke="#999"/>',
           f'<line x1="{pad}" y1="{8 + inner}" x2="{pad + inner}" y2="8" stroke="#ccc"/>']
  for tick in (0, 0.5, 1):
    x, y = pad + tick * inner, 8 + (1 - tick) * inner
    parts.append(f'<text x="{x:.1f}" y="{size - 10}" font-size="9" text-anchor="middle">'
                 f'{tick:g}</text><text x="{pad - 4}" y="{y + 3:.1f}" font-size="9" '
                 f'text-anchor="end">{tick:g}</text>')
  for gate, colour in _COLOURS.items():
    for lx, ry in zip(left[gate], right[gate]):
      parts.append(f'<circle cx="{pad + lx * inner:.1f}" cy="{8 + (1 - ry) * inner:.1f}" '
                   f'r="2.5" fill="{colour}" fill-opacity="0.6"/>')
  parts.append(f'<text x="{pad + inner / 2}" y="{size + 4}" font-size="10" '
               'text-anchor="middle">fraction left-saturated (&lt; 0.1)</text>')
  parts.append(f'<text x="10" y="{8 + inner / 2}" font-size="10" text-anchor="middle" '
               f'transform="rotate(-90 10 {8 + inner / 2})">fraction right-saturated '
               '(&gt; 0.9)</text>')
  parts.append(f'<text x="{pad + inner / 2}" y="{size + 16}" font-size="11" '
               f'text-anchor="middle">{html.escape(title)}</text></svg>')
  return ''.join(parts)


def _section_data(section: Section, top: int) -> dict[str, Any]:
  """The JSON the page script reads: values ``[layer][time][unit]`` per
  quantity (valid steps only) in integer thousandths, layer names, ranking."""
  mask = np.asarray(section.gates['mask'])[0].astype(bool)
  values = {q: np.rint(np.asarray(section.gates[q], np.float64)[:, 0][:, mask] * _SCALE)
            .astype(np.int64).tolist() for q in QUANTITIES}  # compact: thousandths
  roles = gate_stats.rank_units(section.gates, section.tokens, top=top)
  return {
      'title': section.title,
      'tokens': list(section.tokens),
      'separator': section.separator,
      'values': values,
      'layers': _layer_names(section),
      'reverse': [section.directions == 2 and k % 2 == 1
                  for k in range(len(values['c']))],
      'ranking': [dataclasses.asdict(r) for r in roles],
  }


def _section_html(index: int, section: Section, data: dict[str, Any]) -> str:
  names = data['layers']
  sat = gate_stats.saturation(section.gates)
  forget = gate_stats.mean_forget(section.gates)
  plots = ''.join(saturation_svg({g: sat[g][0][k] for g in _COLOURS},
                                 {g: sat[g][1][k] for g in _COLOURS}, names[k])
                  for k in range(len(names)))
  rows = ''.join(
      f'<tr class="role" data-layer="{r["layer"]}" data-unit="{r["unit"]}"><td>'
      f'{html.escape(names[r["layer"]])}</td><td>{r["unit"]}</td><td>{r["prop"]}</td>'
      f'<td>{r["correlation"]:+.2f}</td></tr>' for r in data['ranking'])
  forget_rows = ''.join(f'<tr><td>{html.escape(n)}</td><td>{f:.3f}</td></tr>'
                        for n, f in zip(names, forget))
  layer_opts = ''.join(f'<option value="{k}">{html.escape(n)}</option>'
                       for k, n in enumerate(names))
  qty_opts = ''.join(f'<option value="{q}">{q}</option>' for q in QUANTITIES)
  hidden = len(data['values']['c'][0][0]) if data['tokens'] else 0
  return f'''
<section class="rec" id="sec{index}" data-index="{index}">
<h2>{html.escape(section.title)}</h2>
<p class="note">{html.escape(section.note)}</p>
<div class="controls">
 <label>layer <select class="layer">{layer_opts}</select></label>
 <label>unit <input class="unit" type="number" min="0" max="{hidden - 1}" value="0"></label>
 <label>show <select class="qty">{qty_opts}</select></label>
 <span class="legend"><span class="lo"></span><span class="bar"></span><span class="hi"></span></span>
</div>
<div class="heatmap"></div>
<div class="equations">Click a token to see its step's equations.</div>
<div class="tables">
<table class="ranking"><caption>Who does what: units whose cell state c correlates most
with a text property (click a row to show the unit)</caption>
<tr><th>layer</th><th>unit</th><th>property</th><th>corr(c, property)</th></tr>{rows}</table>
<table class="forget"><caption>Mean forget gate</caption>{forget_rows}</table>
</div>
<div class="plots"><p>Saturation per layer: one dot per unit and gate
(<span style="color:{_COLOURS['i']}">input</span>,
<span style="color:{_COLOURS['f']}">forget</span>,
<span style="color:{_COLOURS['o']}">output</span>).</p>{plots}</div>
</section>'''


_CSS = '''
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.heatmap{font-family:monospace;font-size:15px;line-height:1.9;white-space:pre-wrap;
 border:1px solid #ddd;padding:8px;max-height:320px;overflow:auto}
.tok{padding:1px 0;cursor:pointer;border-radius:2px}
.tok.sel{outline:2px solid #000}
.controls{margin:6px 0} .controls label{margin-right:12px}
.legend{display:inline-flex;align-items:center;gap:4px;font-size:12px}
.legend .bar{display:inline-block;width:160px;height:12px;border:1px solid #999}
.equations{font-family:monospace;background:#f6f6f6;padding:8px;margin:8px 0;
 white-space:pre}
.tables{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ccc;padding:2px 6px}
caption{font-size:12px;text-align:left;max-width:420px}
tr.role{cursor:pointer} tr.role:hover{background:#eef}
.plots svg{margin-right:8px}
#errors{color:#b00;font-weight:bold}
'''

_SCRIPT = r'''
const SCALE = %SCALE%;
window.onerror = function(msg, src, line) {
  document.getElementById('errors').textContent += 'script error: ' + msg + ' (line ' + line + ')\n';
};
(function() {
const DATA = JSON.parse(document.getElementById('data').textContent);
DATA.forEach(d => Object.keys(d.values).forEach(q =>
  d.values[q] = d.values[q].map(layer => layer.map(row => row.map(v => v / SCALE)))));
const GATE = {c: 0, h: 0, g: 0, i: 1, f: 1, o: 1};
function colour(v, scale, gate) {
  if (gate) { const a = Math.max(0, Math.min(1, v));
    return 'rgb(' + Math.round(255 - 200 * a) + ',' + Math.round(255 - 80 * a) + ',' + Math.round(255 - 200 * a) + ')'; }
  const a = Math.max(-1, Math.min(1, v / scale));
  if (a >= 0) return 'rgb(255,' + Math.round(255 - 190 * a) + ',' + Math.round(255 - 190 * a) + ')';
  return 'rgb(' + Math.round(255 + 190 * a) + ',' + Math.round(255 + 190 * a) + ',255)';
}
const fmt = v => (v >= 0 ? ' ' : '') + v.toFixed(3);
function logit(p) { p = Math.min(Math.max(p, 1e-7), 1 - 1e-7); return Math.log(p / (1 - p)); }
function atanh(x) { x = Math.min(Math.max(x, -0.9999999), 0.9999999); return 0.5 * Math.log((1 + x) / (1 - x)); }
function equations(d, l, u, t) {
  const v = q => d.values[q][l][t][u];
  const rev = d.reverse[l], p = rev ? t + 1 : t - 1;
  const has = p >= 0 && p < d.tokens.length;
  const i = v('i'), f = v('f'), g = v('g'), o = v('o'), c = v('c'), h = v('h');
  const cp = has ? d.values.c[l][p][u] : (c - i * g) / f;
  return 'token ' + t + ' ' + JSON.stringify(d.tokens[t]) + ', ' + d.layers[l] + ', unit ' + u + '\n' +
    'i_t = σ(W_i x_t + U_i h_{t-1} + b_i) = σ(' + fmt(logit(i)) + ') = ' + fmt(i) + '\n' +
    'f_t = σ(W_f x_t + U_f h_{t-1} + b_f) = σ(' + fmt(logit(f)) + ') = ' + fmt(f) + '\n' +
    'g_t = tanh(W_g x_t + U_g h_{t-1} + b_g) = tanh(' + fmt(atanh(g)) + ') = ' + fmt(g) + '\n' +
    'o_t = σ(W_o x_t + U_o h_{t-1} + b_o) = σ(' + fmt(logit(o)) + ') = ' + fmt(o) + '\n' +
    'c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t = ' + fmt(f) + ' × ' + fmt(cp) + ' + ' + fmt(i) + ' × ' + fmt(g) +
      ' = ' + fmt(c) + (has ? '' : '   (c_{t-1}: the initial state)') + '\n' +
    'h_t = o_t ⊙ tanh(c_t) = ' + fmt(o) + ' × tanh(' + fmt(c) + ') = ' + fmt(o * Math.tanh(c)) +
      (Math.abs(o * Math.tanh(c) - h) > 1e-3 ? '   (after the projection: ' + fmt(h) + ')' : '');
}
document.querySelectorAll('section.rec').forEach(function(sec) {
  const d = DATA[+sec.dataset.index];
  const layer = sec.querySelector('.layer'), unit = sec.querySelector('.unit'), qty = sec.querySelector('.qty');
  const map = sec.querySelector('.heatmap'), eq = sec.querySelector('.equations');
  const spans = d.tokens.map(function(tok, t) {
    const s = document.createElement('span');
    s.className = 'tok'; s.textContent = tok; s.dataset.t = t;
    s.addEventListener('click', function() {
      sec.querySelectorAll('.tok.sel').forEach(x => x.classList.remove('sel'));
      s.classList.add('sel'); eq.textContent = equations(d, +layer.value, +unit.value, t);
    });
    map.appendChild(s);
    if (d.separator) map.appendChild(document.createTextNode(d.separator));
    return s;
  });
  function paint() {
    const l = +layer.value, q = qty.value;
    const u = Math.max(0, Math.min(+unit.value, d.values.c[l][0].length - 1));
    const col = d.values[q][l].map(row => row[u]);
    const scale = Math.max(1e-6, ...col.map(Math.abs));
    spans.forEach(function(s, t) {
      s.style.background = colour(col[t], scale, GATE[q]);
      s.title = q + ' = ' + col[t].toFixed(4);
    });
    const lo = GATE[q] ? 0 : -scale, hi = GATE[q] ? 1 : scale;
    sec.querySelector('.legend .lo').textContent = q + ': ' + lo.toFixed(2);
    sec.querySelector('.legend .hi').textContent = hi.toFixed(2);
    const stops = [0, 0.25, 0.5, 0.75, 1].map(a => colour(lo + a * (hi - lo), scale, GATE[q]));
    sec.querySelector('.legend .bar').style.background = 'linear-gradient(to right,' + stops.join(',') + ')';
    const sel = sec.querySelector('.tok.sel');
    if (sel) eq.textContent = equations(d, l, u, +sel.dataset.t);
  }
  [layer, unit, qty].forEach(e => e.addEventListener('input', paint));
  sec.querySelectorAll('tr.role').forEach(function(row) {
    row.addEventListener('click', function() {
      layer.value = row.dataset.layer; unit.value = row.dataset.unit; qty.value = 'c'; paint();
    });
  });
  const first = sec.querySelector('tr.role');
  if (first) { layer.value = first.dataset.layer; unit.value = first.dataset.unit; }
  paint();
  if (spans.length) spans[Math.min(spans.length - 1, 1)].click();
});
document.getElementById('status').textContent = 'ready';
})();
'''


def render(sections: Sequence[Section], *, title: str = 'Inside the LSTM',
           subtitle: str = '', top: int = 12) -> str:
  """The report page of ``sections``, one self-contained HTML string."""
  data = [_section_data(s, top) for s in sections]
  body = ''.join(_section_html(k, s, d) for k, (s, d) in enumerate(zip(sections, data)))
  blob = json.dumps(data, separators=(',', ':')).replace('</', '<\\/')
  return f'''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>
<p>i, f, o are sigmoid gates in (0, 1); g is the tanh candidate; c the cell state;
h the output. Colour: blue negative, white 0, red positive (scaled to the unit's
largest |value| in the text); gates white (0) to green (1).</p>
<div id="errors"></div><div id="status">loading</div>
{body}
<script type="application/json" id="data">{blob}</script>
<script>{_SCRIPT.replace('%SCALE%', str(_SCALE))}</script>
</body></html>'''


def write(path: str, sections: Sequence[Section], **kwargs: Any) -> None:
  """Writes :func:`render` of ``sections`` to ``path``."""
  with open(path, 'w', encoding='utf-8') as f:
    f.write(render(sections, **kwargs))


def describe(sections: Sequence[Section], top: int = 5) -> str:
  """A plain-text summary (mean forget gate, top units) for the terminal."""
  lines = []
  for s in sections:
    names = _layer_names(s)
    forget = gate_stats.mean_forget(s.gates)
    lines.append(f'{s.title}: mean forget gate ' + ', '.join(
        f'{n} {f:.3f}' for n, f in zip(names, forget)))
    for r in gate_stats.rank_units(s.gates, s.tokens, top=top):
      lines.append(f'  {names[r.layer]} unit {r.unit}: corr(c, {r.prop}) = {r.correlation:+.2f}')
  return '\n'.join(lines)


def section_from(title: str, tokens: Sequence[str], gates: Mapping[str, Any],
                 note: str = '', directions: int = 1, separator: str = '') -> Section:
  """A :class:`Section` with the recording moved to NumPy (host)."""
  host = {k: np.asarray(v) for k, v in gates.items()}
  return Section(title, list(tokens), host, note, directions, separator)

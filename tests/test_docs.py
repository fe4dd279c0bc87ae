"""Checks of README.md and docs/*.md (no JAX): length, commands, links, paths.

* README.md is a landing page: at most 250 lines, and its first 60 lines give
  the install commands, the main training command and the test command that
  `.ci/run` runs.
* Every relative link (and its `#anchor`) in README.md and docs/*.md points
  at a file (and heading) that exists.
* Every shell command (``sh`` code blocks, inline `python ...` / `bash ...` /
  `pip ...` spans) is complete for `bash -n`, and every repository path it
  names (`configs/*.py`, `benchmarks/*`, `tools/*`, the script run by
  `python X.py`) exists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / 'README.md'
PAGES = [README, *sorted((ROOT / 'docs').glob('*.md'))]

MAX_README_LINES = 250
HEAD_LINES = 60
MAIN_COMMAND = 'python train.py --config=configs/lm.py --workdir=/tmp/lm'
LIBRARY_INSTALLS = ('pip install .', 'pip install dist/lstm_flax-*.whl')
TRAIN_INSTALL = 'pip install -e ".[train]"'

FENCE = re.compile(r'^```([^\n`]*)\n(.*?)^```', re.M | re.S)
INLINE_CODE = re.compile(r'`([^`]+)`')
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
HEADING = re.compile(r'^#{1,6} +(.+?) *#*$', re.M)
# A repository path in a command: after a space, `=` or the start.
REPO_PATH = re.compile(
    r'(?:^|[\s=])((?:configs|benchmarks|tools|tests|trainer|input_pipeline|'
    r'lstm_flax|docs|\.ci)/[\w./*-]*[\w*])')
PYTHON_SCRIPT = re.compile(r'(?:^|[\s;&|(])python3? +([\w./-]+\.py)\b')
PYTHON_MODULE = re.compile(r'(?:^|[\s;&|(])python3? +-m +([\w.]+)')
COMMAND_START = ('python ', 'python3 ', 'bash ', 'pip ', 'echo ')


def _text(path: Path) -> str:
  return path.read_text(encoding='utf-8')


def _rel(path: Path) -> str:
  return str(path.relative_to(ROOT))


def _ci_commands() -> tuple[str, str]:
  """The test install (`-e ".[test]"`) and pytest lines that `.ci/run` runs."""
  lines = [l.strip() for l in _text(ROOT / '.ci' / 'run').splitlines()]
  pytest_lines = [l for l in lines if l.startswith('python -m pytest')]
  install_lines = [l for l in lines if 'pip install' in l and '.[test]' in l]
  assert len(pytest_lines) == 1 and len(install_lines) == 1, (
      '.ci/run: expected one `python -m pytest` line and one pip install of '
      f'".[test]"; got {pytest_lines} and {install_lines}')
  return 'pip install -e ".[test]"', pytest_lines[0]


def _commands(path: Path) -> list[str]:
  """Shell commands of a page: sh code blocks and inline command spans."""
  text = _text(path)
  commands = [body for lang, body in FENCE.findall(text)
              if lang.strip() in ('sh', 'bash', 'shell')]
  prose = FENCE.sub('', text)
  for span in INLINE_CODE.findall(prose):
    span = ' '.join(span.split())
    if span.startswith(COMMAND_START):
      commands.append(span)
  return commands


def _slug(heading: str) -> str:
  """GitHub's anchor of a heading."""
  text = heading.strip().lower().replace('`', '')
  text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', text)
  text = re.sub(r'[^\w\- ]', '', text)
  return text.replace(' ', '-')


def _anchors(path: Path) -> set[str]:
  seen: dict[str, int] = {}
  anchors = set()
  for heading in HEADING.findall(FENCE.sub('', _text(path))):
    slug = _slug(heading)
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    anchors.add(slug if n == 0 else f'{slug}-{n}')
  return anchors


def test_readme_is_a_landing_page():
  lines = _text(README).splitlines()
  assert len(lines) <= MAX_README_LINES, (
      f'README.md has {len(lines)} lines; keep it to {MAX_README_LINES} and '
      'move details into docs/')


def test_readme_head_has_install_main_and_test_commands():
  head = '\n'.join(_text(README).splitlines()[:HEAD_LINES])
  test_install, test_run = _ci_commands()
  for command in (*LIBRARY_INSTALLS, TRAIN_INSTALL, MAIN_COMMAND,
                  test_install, test_run):
    assert command in head, (
        f'README.md: {command!r} is not in the first {HEAD_LINES} lines')


def test_docs_pages_link_back_to_readme():
  for page in PAGES[1:]:
    lines = _text(page).splitlines()
    assert lines[0].startswith('# '), f'{_rel(page)}: no title on line 1'
    assert '](../README.md)' in lines[2], (
        f'{_rel(page)}: line 3 should be the one-line purpose with a link '
        'back to ../README.md')


@pytest.mark.parametrize('page', PAGES, ids=_rel)
def test_relative_links_resolve(page):
  prose = INLINE_CODE.sub('', FENCE.sub('', _text(page)))
  broken = []
  for target in LINK.findall(prose):
    if re.match(r'[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
      continue
    file_part, _, anchor = target.partition('#')
    file = (page.parent / file_part).resolve() if file_part else page
    if not file.exists():
      broken.append(f'{target} (no file {file_part})')
    elif anchor and file.suffix == '.md' and anchor not in _anchors(file):
      broken.append(f'{target} (no heading #{anchor} in {_rel(file)})')
  assert not broken, f'{_rel(page)}: broken links: {broken}'


@pytest.mark.parametrize('page', PAGES, ids=_rel)
def test_command_paths_exist(page):
  missing = []
  for command in _commands(page):
    paths = REPO_PATH.findall(command) + PYTHON_SCRIPT.findall(command)
    for module in PYTHON_MODULE.findall(command):
      if (ROOT / module.split('.')[0]).is_dir():
        paths.append(module.replace('.', '/') + '.py')
    for path in sorted({p.split(':')[0] for p in paths}):  # configs/ptb.py:small
      if not list(ROOT.glob(path)):
        missing.append(f'{path} (in `{command.splitlines()[0]}`)')
  assert not missing, f'{_rel(page)}: commands name missing files: {missing}'


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
@pytest.mark.parametrize('page', PAGES, ids=_rel)
def test_commands_are_complete(page):
  bad = []
  for command in _commands(page):
    result = subprocess.run(['bash', '-n'], input=command, text=True,
                            capture_output=True, check=False)
    if result.returncode:
      bad.append(f'`{command.strip()}`: {result.stderr.strip()}')
  assert not bad, f'{_rel(page)}: incomplete shell commands: {bad}'

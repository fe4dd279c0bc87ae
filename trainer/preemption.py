"""Stop requests during training: SIGTERM / SIGINT in a single process
become a flag the loop polls (:class:`PreemptionHandler`), and a validation
in progress stops within one batch (:func:`interruptible`)."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import jax

from trainer import task_base as base


class PreemptionHandler:
  """Turns SIGTERM and SIGINT into a flag the loop polls (single process):
  the loop saves a checkpoint and exits 0, so Ctrl-C keeps the steps done
  so far (a second signal leaves at once through the start-up handler).

  On several processes JAX's preemption service catches SIGTERM and the loop
  asks Orbax's sync point (``reached_preemption``) instead, so that every
  host saves at the same step.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self._previous: dict[int, Any] = {}

  def __enter__(self):
    if (jax.process_count() == 1 and
        threading.current_thread() is threading.main_thread()):
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def _handle(self, signum, frame):
    if self.requested:  # A second signal: no more waiting for the save.
      previous = self._previous.get(signum)
      if callable(previous):
        previous(signum, frame)
      return
    logging.warning('Received signal %d: saving a checkpoint and exiting '
                    '(again to stop at once).', signum)
    self.requested = True

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    return False


class ValidationInterrupted(Exception):
  """A stop was requested (SIGTERM, SIGINT) during a validation."""


def interruptible(context: base.EvalContext,
                  stop_requested: Callable[[], bool]) -> base.EvalContext:
  """``context`` whose ``to_device`` raises ValidationInterrupted once
  ``stop_requested()``: every task's evaluation places each batch through
  it, so a validation stops within one batch of a SIGTERM."""
  place = context.to_device

  def to_device(local):
    if stop_requested():
      raise ValidationInterrupted
    return place(local)

  return dataclasses.replace(context, to_device=to_device)

"""One line, not a C++ abort, when JAX's coordination service fails.

Every process of a multi-process run holds a client of JAX's coordination
service, which process 0 hosts. The client polls the service for errors and
sends it heartbeats; when either fails (process 0 was lost, or the service
reports that another process failed) it calls its
``missed_heartbeat_callback``. jaxlib's default callback is a
``LOG(FATAL)``: on every surviving process a C++ ``Check failure`` stack
trace, then ``SIGABRT`` and ``Fatal Python error: Aborted``, before any
Python code runs.

:func:`reported` gives the client (created inside
``jax.distributed.initialize``) a callback that writes one line naming the
coordinator and exits with the run's lost-peer status. jaxlib 0.10.2 cannot
hand the callback's ``absl::Status`` to a Python function: the call throws
``std::bad_cast`` on the client's thread, and an uncaught C++ exception ends
in ``std::terminate``. So :func:`reported` also installs a C++ terminate
handler (ctypes, on the process's libstdc++) that does the same for exactly
that exception and passes any other to the previous handler (``terminate
called after throwing ...`` and ``abort()``, as without it); JAX's distributed
shutdown at exit puts the previous handler back. Where jaxlib
converts the status, the Python callback runs itself and the terminate
handler is never reached. Where neither hook is available (another C++
runtime, a jaxlib without the argument), JAX's own abort remains.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from trainer import errors

# The exceptions an error callback that cannot convert its argument throws:
# nanobind raises std::bad_cast (its own cast_error where it has one).
_CALLBACK_CAST_ERRORS = (b'St8bad_cast', b'N8nanobind10cast_errorE')
_TERMINATE_HANDLER = ctypes.CFUNCTYPE(None)
# The handlers installed (ctypes callbacks must outlive their C users).
_installed: list[Any] = []


def coordinator_reachable(address: str, timeout_s: float = 1.0,
                          tries: int = 3, pause_s: float = 0.25) -> bool:
  """Whether TCP connections to ``host:port`` (``[v6]:port``) open on each
  of ``tries`` attempts ``pause_s`` apart (a process being killed closes
  its client connections a moment before its listening socket)."""
  host, _, port = address.rpartition(':')
  for attempt in range(tries):
    if attempt:
      time.sleep(pause_s)
    try:
      with socket.create_connection((host.strip('[]') or 'localhost',
                                     int(port)), timeout=timeout_s):
        pass
    except (OSError, ValueError):
      return False
  return True


def describe(address: str, detail: str = '',
             reachable: bool | None = None) -> str:
  """The one-line reason for a failed coordination service, from whether
  process 0's service still answers at ``address`` (``reachable``: already
  probed)."""
  detail = f' ({detail})' if detail else ''
  if reachable is None:
    reachable = bool(address) and coordinator_reachable(address)
  if reachable:
    return ("JAX's coordination service (process 0, "
            f'{address}) reported an error{detail}: most likely another '
            'process of the run stopped.')
  return (f'process 0 (the coordinator, {address or "detected address"}) '
          f'is unreachable{detail}.')


def _current_exception_name() -> bytes | None:
  """The mangled type name of the C++ exception being handled (Itanium ABI:
  a ``std::type_info`` is a vtable pointer, then its name)."""
  libstdcxx = ctypes.CDLL('libstdc++.so.6')
  current_type = libstdcxx.__cxa_current_exception_type
  current_type.restype = ctypes.c_void_p
  info = current_type()
  if not info:
    return None
  name = ctypes.c_char_p.from_address(info + ctypes.sizeof(ctypes.c_void_p))
  return (name.value or b'').lstrip(b'*')


def _install_terminate_handler(
    on_callback_failure: Callable[[], None]) -> Callable[[], None] | None:
  """Sets a C++ terminate handler that calls ``on_callback_failure`` for
  the error callback's ``std::bad_cast`` and otherwise calls the previous
  handler. Returns a function that puts the previous handler back (None if
  nothing was installed)."""
  try:
    libstdcxx = ctypes.CDLL('libstdc++.so.6')
    set_terminate = libstdcxx._ZSt13set_terminatePFvvE  # pylint: disable=protected-access
    libstdcxx.__cxa_current_exception_type  # pylint: disable=pointless-statement
  except (OSError, AttributeError):
    return None
  set_terminate.restype = ctypes.c_void_p
  set_terminate.argtypes = [_TERMINATE_HANDLER]
  previous: list[Any] = []

  def handler() -> None:
    if _current_exception_name() in _CALLBACK_CAST_ERRORS:
      on_callback_failure()  # Does not return.
    if previous[0]:
      _TERMINATE_HANDLER(previous[0])()
    ctypes.CDLL(None).abort()

  c_handler = _TERMINATE_HANDLER(handler)
  previous.append(set_terminate(c_handler))
  _installed.append(c_handler)

  def uninstall() -> None:
    set_terminate.argtypes = [ctypes.c_void_p]
    set_terminate(previous[0])

  return uninstall


def _client_factory_module() -> Any:
  """``jax._src.distributed``'s handle on jaxlib, whose
  ``get_distributed_runtime_client`` creates the client (None where this
  JAX version has no such attribute or argument)."""
  try:
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  jaxlib_module = getattr(jax_distributed, '_jax', None)
  make_client = getattr(jaxlib_module, 'get_distributed_runtime_client', None)
  if 'missed_heartbeat_callback' not in (getattr(make_client, '__doc__', '')
                                         or ''):
    return None
  return jax_distributed


def _uninstall_after_shutdown(state: Any, uninstall: Callable[[], None]
                              ) -> None:
  """Puts the previous terminate handler back once JAX's distributed
  ``state`` is shut down (its client gone, at exit): no C++ failure during
  the interpreter's finalisation reaches a Python callback."""
  shutdown = state.shutdown

  def shutdown_then_uninstall(*args: Any, **kwargs: Any) -> Any:
    try:
      return shutdown(*args, **kwargs)
    finally:
      uninstall()

  state.shutdown = shutdown_then_uninstall


@contextlib.contextmanager
def reported(coordinator_address: str,
             exit_lost: Callable[[str], None]) -> Iterator[bool]:
  """Within this context, ``jax.distributed.initialize`` creates a client
  whose coordination errors end the process through ``exit_lost(message)``
  (one line, no C++ trace). Yields whether the hooks are in place.

  Args:
    coordinator_address: ``host:port`` of process 0, named in the message
      ('' where JAX detects it).
    exit_lost: writes the message and exits; must not return.
  """
  jax_distributed = _client_factory_module()
  if jax_distributed is None:
    yield False
    return

  def on_error(status: Any = None) -> None:
    text = errors.first_line(status, 160)
    address = coordinator_address or getattr(
        jax_distributed.global_state, 'coordinator_address', '') or ''
    exit_lost(describe(address, text))

  uninstall = _install_terminate_handler(on_error)
  if uninstall is None:
    yield False
    return
  _uninstall_after_shutdown(jax_distributed.global_state, uninstall)
  jaxlib_module = jax_distributed._jax  # pylint: disable=protected-access
  make_client = jaxlib_module.get_distributed_runtime_client

  class _WithErrorCallback:
    """jaxlib's module, with the error callback added to new clients."""

    def __getattr__(self, name: str) -> Any:
      return getattr(jaxlib_module, name)

    @staticmethod
    def get_distributed_runtime_client(*args: Any, **kwargs: Any) -> Any:
      kwargs.setdefault('missed_heartbeat_callback', on_error)
      return make_client(*args, **kwargs)

  jax_distributed._jax = _WithErrorCallback()  # pylint: disable=protected-access
  try:
    yield True
  finally:
    jax_distributed._jax = jaxlib_module  # pylint: disable=protected-access

"""Metrics and tracing for asherah_django: the hook of :mod:`asherah_django.core.observability`
plus the management commands.

    from asherah_django import observability
    observability.register(my_observer)      # an asherah_django.core.observability.Observer

Registering also times the management commands (``asherah_rotate``, ``asherah_reindex``,
``asherah_encrypt``, ``asherah_check``) as ``command.<name>`` events. The Prometheus and
OpenTelemetry observers (``asherah_django.contrib.prometheus`` / ``.otel``) register here.
"""

from __future__ import annotations

import functools
import importlib
import threading
from typing import Any

from .core.observability import Observer, active, count, observers, timed
from .core.observability import register as _register
from .core.observability import unregister as _unregister

__all__ = [
    "COMMANDS",
    "Observer",
    "active",
    "count",
    "observers",
    "register",
    "timed",
    "unregister",
]

COMMANDS = ("asherah_check", "asherah_encrypt", "asherah_reindex", "asherah_rotate")
_lock = threading.Lock()
_commands_done = False


def register(observer: Observer) -> None:
    """Register ``observer`` for the engine's events and the management commands."""
    _register(observer)
    _instrument_commands()


def unregister(observer: Observer) -> None:
    _unregister(observer)


def _instrument_commands() -> None:
    """Wrap ``execute`` of this package's commands in a ``command.<name>`` timed event."""
    global _commands_done
    with _lock:
        if _commands_done:
            return
        _commands_done = True
    for name in COMMANDS:
        command = importlib.import_module(f"asherah_django.management.commands.{name}").Command
        command.execute = _timed_execute(name, command.execute)


def _timed_execute(name: str, execute: Any) -> Any:
    @functools.wraps(execute)
    def wrapper(self: Any, *args: Any, **options: Any) -> Any:
        with timed(f"command.{name}", {"command": name}):
            return execute(self, *args, **options)

    return wrapper

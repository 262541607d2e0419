"""The one fork hook: state that a child process must not inherit registers a reset here.

A factory built before ``os.fork()`` (gunicorn ``--preload``) must not carry into the child
locks that parent threads held at the moment of the fork, nor use the parent's sockets.
Callbacks run in the child, in the order they were registered (the order of the module
imports that registered them), each on its own: one failing does not stop the others.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import TypeVar

_Callback = TypeVar("_Callback", bound=Callable[[], None])
_CALLBACKS: list[Callable[[], None]] = []


def after_fork_in_child(callback: _Callback) -> _Callback:
    """Run ``callback()`` in every child process forked from now on; returns it (a
    decorator)."""
    _CALLBACKS.append(callback)
    return callback


def _run_in_child() -> None:
    for callback in list(_CALLBACKS):
        try:
            callback()
        except Exception:  # as os.register_at_fork reports a failing hook, and goes on
            traceback.print_exc()


os.register_at_fork(after_in_child=_run_in_child)

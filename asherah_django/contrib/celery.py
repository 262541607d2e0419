"""Celery tasks run in the partition that sent them (``pip install asherah-django[celery]``).

    # proj/celery.py
    from asherah_django.contrib.celery import install
    app = Celery("proj")
    install()

    with asherah_django.session("tenant-42"):
        export_notes.delay(note_id)          # runs in the worker inside session("tenant-42")

When a task is sent, the partition open at that moment (``asherah_django.session``, the
request's middleware scope) travels with it in the message header ``asherah_partition``;
the worker opens ``asherah_django.session(partition)`` around the task and closes it
afterwards. A task sent with no partition open runs with none. Overrides:

* per call: ``task.apply_async(args, headers=partition_headers("tenant-7"))``
  (``partition_headers(None)``: run with no partition);
* per task: ``@app.task(asherah_partition="reports")`` always runs in that partition
  (unless a call overrides it).

A task run in the calling process (``apply()``, ``task_always_eager``) keeps the caller's
scope, unless the call overrides it. Tasks sent from inside a task (chains, chords'
callbacks, ``retry()``, subtasks) are sent while the partition is open, so they carry it
on. The header holds the partition id only, never a key.
"""

from __future__ import annotations

from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

from ..context import current_partition, session

__all__ = ["OVERRIDE_HEADER", "PARTITION_HEADER", "install", "partition_headers", "uninstall"]

#: The message header that carries the sender's partition id (absent or null: none).
PARTITION_HEADER = "asherah_partition"
#: The header of an explicit per-call choice (:func:`partition_headers`); wins over all.
OVERRIDE_HEADER = "asherah_partition_override"
_SCOPE = "_asherah_session"
_UNSET = object()
_TASK_OPTION = "option"


def partition_headers(partition_id: str | None) -> dict[str, str | None]:
    """``headers=`` for ``apply_async``: run this call in ``partition_id`` (None: none)."""
    if partition_id is not None:
        session(partition_id)  # validates now, in the sender, not later in the worker
    return {OVERRIDE_HEADER: partition_id}


def install() -> None:
    """Connect the signal handlers (idempotent): in the sending processes and the workers."""
    before_task_publish.connect(_on_publish, weak=False, dispatch_uid=_on_publish.__name__)
    task_prerun.connect(_on_prerun, weak=False, dispatch_uid=_on_prerun.__name__)
    task_postrun.connect(_on_postrun, weak=False, dispatch_uid=_on_postrun.__name__)


def uninstall() -> None:
    before_task_publish.disconnect(dispatch_uid=_on_publish.__name__)
    task_prerun.disconnect(dispatch_uid=_on_prerun.__name__)
    task_postrun.disconnect(dispatch_uid=_on_postrun.__name__)


def _on_publish(headers: dict[str, Any] | None = None, **kw: Any) -> None:
    if headers is not None and PARTITION_HEADER not in headers:
        headers[PARTITION_HEADER] = current_partition()


def _partition_of(task: Any) -> str | None:
    request = task.request
    headers = getattr(request, "headers", None) or {}
    fields = vars(request)
    for name in (OVERRIDE_HEADER, _TASK_OPTION, PARTITION_HEADER):
        if name == _TASK_OPTION:
            fixed = getattr(task, "asherah_partition", _UNSET)
            if fixed is not _UNSET:
                return None if fixed is None else str(fixed)
        elif name in headers or name in fields:
            value = headers.get(name, fields.get(name))
            return None if value is None else str(value)
    return None


def _on_prerun(task: Any = None, **kw: Any) -> None:
    if task is None:
        return
    request = task.request
    if getattr(request, "is_eager", False) and not _has_header(task):
        return  # apply() / task_always_eager: runs here, in the caller's own scope
    scope = session(_partition_of(task))
    scope.__enter__()
    setattr(request, _SCOPE, scope)


def _has_header(task: Any) -> bool:
    request = task.request
    headers = getattr(request, "headers", None) or {}
    fields = vars(request)
    return any(n in headers or n in fields for n in (OVERRIDE_HEADER, PARTITION_HEADER))


def _on_postrun(task: Any = None, **kw: Any) -> None:
    if task is None:
        return
    scope = getattr(task.request, _SCOPE, None)
    if scope is not None:
        delattr(task.request, _SCOPE)
        scope.__exit__(None, None, None)

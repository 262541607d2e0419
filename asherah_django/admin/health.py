"""The admin's health panel: runs ``asherah_django.health.run_checks()`` on demand.

The checks (the same ones ``manage.py asherah_check`` runs) may probe Vault and the
database, so they run only when a staff member asks, never on page load. The interface
expected from ``asherah_django.health``::

    def run_checks() -> Iterable[Result]   # Result: .name, .status, .detail, .hint
                                           # (attributes or mapping keys); status is
                                           # "OK", "WARN" or "FAIL"

When that module is not installed the panel says so instead of failing.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

logger = logging.getLogger("asherah_django.admin")

HEALTH_MODULE: Final = "asherah_django.health"
STATUSES: Final = ("OK", "WARN", "FAIL")


@dataclass(frozen=True)
class Result:
    name: str
    status: str
    detail: str = ""
    hint: str = ""

    @property
    def css(self) -> str:
        return {"OK": "ok", "WARN": "warn", "FAIL": "fail"}.get(self.status, "warn")


@dataclass(frozen=True)
class Report:
    """What the panel shows: results, or why there are none."""

    available: bool
    results: list[Result] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def worst(self) -> str:
        statuses = {result.status for result in self.results}
        for status in ("FAIL", "WARN"):
            if status in statuses:
                return status
        return "OK" if self.results else ""


def run() -> Report:
    """Import the health module lazily and run its checks; never raises."""
    if importlib.util.find_spec(HEALTH_MODULE) is None:
        return Report(available=False)
    started = time.monotonic()
    try:
        module = importlib.import_module(HEALTH_MODULE)
        run_checks = getattr(module, "run_checks", None)
        if not callable(run_checks):
            return Report(available=False)
        results = [_result(item) for item in run_checks()]
    except Exception as exc:
        logger.exception("asherah health checks failed to run")
        return Report(
            available=True,
            error=f"the health checks failed to run: {type(exc).__name__}: {exc}",
            seconds=time.monotonic() - started,
        )
    return Report(available=True, results=results, seconds=time.monotonic() - started)


def _result(item: object) -> Result:
    def get(name: str) -> str:
        value = item.get(name) if isinstance(item, Mapping) else getattr(item, name, "")
        return "" if value is None else str(getattr(value, "value", value))

    status = get("status").upper()
    skipped = item.get("skipped") if isinstance(item, Mapping) else getattr(item, "skipped", False)
    detail = get("detail")
    return Result(
        name=get("name") or "check",
        status=status if status in STATUSES else status or "WARN",
        detail=f"{detail} (skipped)" if skipped is True else detail,
        hint=get("hint"),
    )

"""What a health check run produces: results, the report, its JSON shape and its text form.

A :class:`CheckResult` has a stable ``name`` (``vault.server``, ``metastore``...), a
``status`` (``OK``, ``WARN`` or ``FAIL``), a one-line ``detail`` saying what was found, and
for ``WARN``/``FAIL`` a ``hint`` saying what to do. A check that could not run because one
it depends on failed has status ``FAIL`` and ``skipped`` set. :class:`HealthReport` holds
every result of one run; ``exit_code`` is 0 when all pass, 1 when any fails, 2 when only
warnings remain. :data:`REPORT_SCHEMA` documents :meth:`HealthReport.to_dict` as a JSON
Schema (draft 2020-12 subset).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

#: Version of the JSON document; raised when a field changes meaning or disappears.
SCHEMA_VERSION: Final = 1


class Status(enum.StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


#: Machine-readable facts a check may attach: strings, numbers, booleans, None, and
#: flat lists/dicts of those.
Data = Mapping[str, Any]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str
    hint: str = ""
    #: Seconds the check took (wall clock).
    duration: float = 0.0
    #: True when the check did not run because a check it needs failed or hung.
    skipped: bool = False
    data: Data = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "hint": self.hint,
            "duration": round(self.duration, 4),
            "skipped": self.skipped,
            "data": dict(self.data),
        }

    def line(self, width: int = 17) -> str:
        """``name  STATUS  detail | hint: ...`` (the hint only for WARN and FAIL)."""
        text = f"{self.name:<{width}} {self.status.value:<4}  {self.detail}"
        if self.status is not Status.OK and self.hint:
            text += f" | hint: {self.hint}"
        return text


@dataclass(frozen=True)
class HealthReport:
    """Every result of one run."""

    checks: tuple[CheckResult, ...]
    #: When the run started (epoch seconds).
    started_at: float
    duration: float

    @property
    def status(self) -> Status:
        statuses = {check.status for check in self.checks}
        if Status.FAIL in statuses:
            return Status.FAIL
        if Status.WARN in statuses:
            return Status.WARN
        return Status.OK

    @property
    def exit_code(self) -> int:
        """0 when every check passed, 1 when any failed, 2 when only warnings remain."""
        return {Status.OK: 0, Status.FAIL: 1, Status.WARN: 2}[self.status]

    def counts(self) -> dict[str, int]:
        return {s.value: sum(c.status is s for c in self.checks) for s in Status}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see :data:`REPORT_SCHEMA`)."""
        started = datetime.datetime.fromtimestamp(self.started_at, datetime.UTC)
        return {
            "schema_version": SCHEMA_VERSION,
            "status": self.status.value,
            "exit_code": self.exit_code,
            "checked_at": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "duration": round(self.duration, 4),
            "counts": self.counts(),
            "checks": [check.to_dict() for check in self.checks],
        }

    def text(self) -> str:
        """One line per check, then a summary line."""
        width = max([17, *(len(check.name) for check in self.checks)])
        lines = [check.line(width) for check in self.checks]
        counts = self.counts()
        lines.append(
            f"asherah_check: {self.status.value}: {len(self.checks)} checks, "
            f"{counts['OK']} OK, {counts['WARN']} WARN, {counts['FAIL']} FAIL"
        )
        return "\n".join(lines)


_STATUS: Final = {"type": "string", "enum": [s.value for s in Status]}
_SCALAR: Final = {"type": ["string", "number", "integer", "boolean", "null"]}

#: The shape of ``asherah_check --json`` and of the readiness view's detailed answer.
REPORT_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "asherah_django health report",
    "type": "object",
    "required": [
        "schema_version",
        "status",
        "exit_code",
        "checked_at",
        "duration",
        "counts",
        "checks",
    ],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"type": "integer", "enum": [SCHEMA_VERSION]},
        "status": _STATUS,
        "exit_code": {"type": "integer", "enum": [0, 1, 2]},
        "checked_at": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
        "duration": {"type": "number", "minimum": 0},
        "counts": {
            "type": "object",
            "required": ["OK", "WARN", "FAIL"],
            "additionalProperties": False,
            "properties": {s.value: {"type": "integer", "minimum": 0} for s in Status},
        },
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "status", "detail", "hint", "duration", "skipped", "data"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": r"^[a-z_]+(\.[a-z_]+)?$"},
                    "status": _STATUS,
                    "detail": {"type": "string", "minLength": 1},
                    "hint": {"type": "string"},
                    "duration": {"type": "number", "minimum": 0},
                    "skipped": {"type": "boolean"},
                    "data": {
                        "type": "object",
                        "additionalProperties": {
                            "anyOf": [
                                _SCALAR,
                                {"type": "array", "items": _SCALAR},
                                {"type": "object", "additionalProperties": _SCALAR},
                            ]
                        },
                    },
                },
            },
        },
    },
}

#: What anonymous callers of the readiness view get.
PUBLIC_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["status"],
    "additionalProperties": False,
    "properties": {"status": _STATUS},
}

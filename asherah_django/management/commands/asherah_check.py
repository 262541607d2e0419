"""``manage.py asherah_check``: live health checks of Vault, the transit key and the metastore.

Prints one line per check (name, OK/WARN/FAIL, what it found, and for a problem what to
do), then a summary line; ``--json`` prints one JSON document instead
(:data:`asherah_django.health.REPORT_SCHEMA`). ``--write`` adds a full envelope round trip
through the ``asherah-health`` partition. Each check gets ``--timeout`` seconds.

Exit status: 0 when every check passes, 1 when any fails, 2 when only warnings remain.
The logic is :func:`asherah_django.health.run`.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...health import DEFAULT_TIMEOUT, HealthReport, Status, run


def render(report: HealthReport, *, as_json: bool) -> str:
    """What the command prints for ``report``."""
    if as_json:
        return json.dumps(report.to_dict(), indent=2)
    return report.text()


class Command(BaseCommand):
    help = (
        "Check that Vault, the transit key and the metastore work for asherah_django. "
        "Exit status 0: all OK, 1: a check failed, 2: warnings only."
    )
    # Broken settings are this command's to report, not a reason to refuse to run.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON document")
        parser.add_argument(
            "--write",
            action="store_true",
            help="also encrypt and decrypt through the 'asherah-health' partition "
            "(creates its keys when needed)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            help=f"seconds each check may take (default {DEFAULT_TIMEOUT:g})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 < options["timeout"] <= 300:
            raise CommandError("--timeout must be above 0 and at most 300 seconds")
        report = run(write=options["write"], timeout=options["timeout"])
        if options["json"]:
            self.stdout.write(render(report, as_json=True))
        else:
            styles = {
                Status.OK: self.style.SUCCESS,
                Status.WARN: self.style.WARNING,
                Status.FAIL: self.style.ERROR,
            }
            for line, check in zip(report.text().splitlines(), report.checks, strict=False):
                self.stdout.write(line, style_func=styles[check.status])
            self.stdout.write(report.text().splitlines()[-1], style_func=styles[report.status])
        if report.exit_code:
            raise SystemExit(report.exit_code)

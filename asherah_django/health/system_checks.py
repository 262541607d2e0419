"""The live health checks as Django system checks: ``manage.py check --deploy --tag asherah``.

They are registered as *deployment* checks because they talk to Vault and the database:
as ordinary checks they would run on every ``runserver`` reload and before every
``migrate``, and a Vault outage would stop migrations. Add ``--database default`` (the
alias holding the metastore) to include the metastore and system key checks, as Django
does for its own database checks. A failure is an Error, a warning a Warning, with the
stable ids of :data:`LIVE_CHECK_IDS`. The settings themselves are covered by the static
checks (``asherah.E0xx``); when they are invalid the live checks stay silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from django.apps import AppConfig
from django.core import checks
from django.core.checks import CheckMessage, Error, Warning

from ..conf import asherah_settings
from .model import Status
from .runner import run

TAG: Final = "asherah"

#: Check name -> number: a failure is ``asherah.E4nn``, a warning ``asherah.W4nn``.
_NUMBERS: Final = {
    "vault.server": 1,
    "vault.login": 2,
    "vault.transit_key": 3,
    "vault.key_config": 4,
    "kms.round_trip": 5,
    "metastore": 6,
    "system_key": 7,
    "aws.identity": 8,
    "aws.keys": 9,
}
#: Every id the live checks can report, with what it means.
LIVE_CHECK_IDS: Final[dict[str, str]] = {
    **{f"asherah.E4{n:02d}": f"live check {name} failed" for name, n in _NUMBERS.items()},
    **{f"asherah.W4{n:02d}": f"live check {name} warns" for name, n in _NUMBERS.items()},
}


def register_checks() -> None:
    """Register :func:`check_live` (idempotent). Call it from ``AppConfig.ready()``."""
    checks.register(check_live, TAG, deploy=True)


def unregister_checks() -> None:
    """Undo :func:`register_checks` (for tests)."""
    checks.registry.registry.deployment_checks.discard(check_live)


def check_live(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """Run the live checks and report failures as Errors and warnings as Warnings."""
    if asherah_settings.errors():
        return []  # the static checks report the settings
    database = bool(databases) and asherah_settings.DATABASE in (databases or ())
    report = run(list(_NUMBERS), database=database)
    messages: list[CheckMessage] = []
    for result in report.checks:
        number = _NUMBERS.get(result.name)
        if number is None or result.skipped or result.status is Status.OK:
            continue
        make = Error if result.status is Status.FAIL else Warning
        level = "E" if result.status is Status.FAIL else "W"
        messages.append(
            make(
                f"{result.name}: {result.detail}",
                hint=result.hint or None,
                id=f"asherah.{level}4{number:02d}",
            )
        )
    return messages

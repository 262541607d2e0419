"""Runs the checks in order, each in a worker thread with a deadline.

A check that does not finish within ``timeout`` seconds is reported as failed and left
behind (its thread is a daemon and ends when its client's own timeout fires); the checks
after it that need the same service (Vault or the database) are not run. A hung Vault or
database therefore delays a run by at most ``timeout`` each. A check whose prerequisite
failed is reported as failed and ``skipped``, with the prerequisite named.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from django.db import DatabaseError, connections

from ..conf import asherah_settings
from ..core.errors import AsherahError
from ..core.kms.vault_errors import HINT_TIMEOUT
from . import aws, integrity, local, vault
from .context import Context, Outcome, fail
from .model import CheckResult, HealthReport, Status

logger = logging.getLogger("asherah_django.health")

#: Seconds each check may take before it is reported as hung.
DEFAULT_TIMEOUT: Final = 5.0
_DB_HINT: Final = (
    "the database did not answer in time: check that it is reachable and that no long "
    "transaction or lock holds the encryption_key table"
)


@dataclass(frozen=True)
class Spec:
    """A check: its function, what it needs first, and what it talks to."""

    name: str
    run: Callable[[Context], Outcome]
    needs: tuple[str, ...] = ()
    vault_only: bool = False
    aws_only: bool = False
    uses_vault: bool = False
    uses_database: bool = False
    write_only: bool = False
    #: Runs only when KEY_INTEGRITY is sign or require.
    integrity_only: bool = False


SPECS: Final = (
    Spec("settings", local.settings),
    Spec("vault.server", vault.server, vault_only=True, uses_vault=True),
    Spec("vault.login", vault.login, ("vault.server",), vault_only=True, uses_vault=True),
    Spec(
        "vault.transit_key", vault.transit_key, ("vault.login",), vault_only=True, uses_vault=True
    ),
    Spec(
        "vault.key_config",
        vault.key_config,
        ("vault.login",),
        vault_only=True,
        uses_vault=True,
        uses_database=True,
    ),
    Spec("aws.identity", aws.identity, aws_only=True),
    Spec("aws.keys", aws.keys, aws_only=True),
    Spec("kms.round_trip", vault.round_trip, ("vault.login",), uses_vault=True),
    Spec("metastore", local.metastore, uses_database=True),
    Spec("system_key", local.system_key, ("metastore",), uses_database=True),
    Spec(
        "key_integrity",
        integrity.key_integrity,
        ("kms.round_trip", "metastore"),
        uses_vault=True,
        uses_database=True,
        integrity_only=True,
    ),
    Spec(
        "write",
        local.write,
        ("kms.round_trip", "metastore"),
        uses_vault=True,
        uses_database=True,
        write_only=True,
    ),
)
#: Every check name, in the order they run.
CHECK_NAMES: Final = tuple(spec.name for spec in SPECS)

_abandoned: list[threading.Thread] = []


def run(
    names: Iterable[str] | None = None,
    *,
    write: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    database: bool = True,
) -> HealthReport:
    """Run the checks (all, or those in ``names``); see the module docs.

    ``write`` adds the envelope round trip through the health partition (it may create
    keys). ``database=False`` leaves the database alone (system checks without
    ``--database``).
    """
    wanted = set(names) if names is not None else None
    if wanted is not None and wanted - set(CHECK_NAMES):
        raise ValueError(f"unknown checks: {', '.join(sorted(wanted - set(CHECK_NAMES)))}")
    started, clock = time.time(), time.monotonic()
    ctx = Context(timeout=timeout, write=write, database=database)
    results: dict[str, CheckResult] = {}
    hung: dict[str, str] = {}  # "vault"/"database" -> the check that hung
    for spec in SPECS:
        if wanted is not None and spec.name not in wanted:
            continue
        if spec.write_only and not (write or (wanted is not None and spec.name in wanted)):
            continue
        if spec.vault_only and (ctx.vault is None if ctx.factory else not _vault_configured()):
            continue  # not the Vault KMS
        if spec.aws_only and aws.aws_kms(ctx) is None:
            continue  # not the AWS KMS
        if spec.uses_database and not spec.uses_vault and not database:
            continue
        if spec.integrity_only and not _integrity_on():
            continue
        reason = _blocked(spec, ctx, results, hung)
        if reason is not None:
            results[spec.name] = CheckResult(
                spec.name, Status.FAIL, f"not checked: {reason[0]}", reason[1], skipped=True
            )
            continue
        result = _execute(spec, ctx)
        results[spec.name] = result
        if result.data.get("timed_out"):
            for service, used in (("vault", spec.uses_vault), ("database", spec.uses_database)):
                if used and service not in hung:
                    hung[service] = spec.name
    return HealthReport(tuple(results.values()), started, time.monotonic() - clock)


def run_checks(
    names: Iterable[str] | None = None,
    *,
    write: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[CheckResult]:
    """The results of :func:`run` (what the admin's health panel shows)."""
    return list(run(names, write=write, timeout=timeout).checks)


def _vault_configured() -> bool:
    try:
        return asherah_settings.KMS == "vault"
    except AsherahError:
        return False


def _integrity_on() -> bool:
    try:
        return asherah_settings.KEY_INTEGRITY != "off"
    except AsherahError:
        return False


def _blocked(
    spec: Spec, ctx: Context, results: dict[str, CheckResult], hung: dict[str, str]
) -> tuple[str, str] | None:
    """Why ``spec`` cannot run now, with a hint; None when it can."""
    if spec.name != "settings" and ctx.factory is None:
        return "the configuration is invalid (see settings)", "fix settings first"
    for need in spec.needs:
        result = results.get(need)
        if result is not None and result.status is Status.FAIL:
            return f"{need} failed", f"fix {need} first"
    uses = {"vault": spec.uses_vault and ctx.vault is not None, "database": spec.uses_database}
    for service, used in uses.items():
        if used and service in hung:
            name = "Vault" if service == "vault" else "the database"
            return (
                f"{name} did not answer within {ctx.timeout:g}s (see {hung[service]})",
                f"fix {hung[service]} first",
            )
    return None


def _execute(spec: Spec, ctx: Context) -> CheckResult:
    """Run one check in a worker thread, waiting at most ``ctx.timeout`` seconds."""
    box: list[Outcome] = []
    inline = spec.uses_database and ctx.django_metastore and local.database_is_in_memory(ctx.alias)
    started = time.monotonic()

    def target() -> None:
        try:
            box.append(_guarded(spec, ctx))
        finally:
            if not inline:
                connections.close_all()  # this worker thread's own connections

    if inline or spec.name == "settings":
        target()
    else:
        thread = threading.Thread(target=target, name=f"asherah-check-{spec.name}", daemon=True)
        thread.start()
        thread.join(ctx.timeout)
        if thread.is_alive():
            _abandoned.append(thread)
            uses_vault = spec.uses_vault and ctx.vault is not None
            what = "Vault" if uses_vault else "the database"
            outcome = fail(
                f"no answer within {ctx.timeout:g}s: {what} hangs ({spec.name} was abandoned)",
                HINT_TIMEOUT if uses_vault else _DB_HINT,
                timed_out=True,
            )
            return _result(spec, outcome, time.monotonic() - started)
    return _result(spec, box[0], time.monotonic() - started)


def _result(spec: Spec, outcome: Outcome, seconds: float) -> CheckResult:
    return CheckResult(
        spec.name,
        outcome.status,
        outcome.detail,
        outcome.hint,
        seconds,
        outcome.skipped,
        outcome.data,
    )


def _guarded(spec: Spec, ctx: Context) -> Outcome:
    """The check's outcome; its exceptions become failures (ours carry their hint)."""
    try:
        return spec.run(ctx)
    except AsherahError as exc:
        return fail(str(exc.args[0]), exc.hint)
    except DatabaseError as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return fail(
            f"database error: {detail}",
            "check that the database is reachable and migrated (manage.py migrate asherah_django)",
        )
    except Exception as exc:
        logger.exception("asherah health check %s crashed", spec.name)
        return fail(
            f"the check crashed: {type(exc).__name__}: {exc}",
            "this is a bug in asherah_django or an unexpected environment; see the log",
        )


def wait_for_abandoned(timeout: float) -> bool:
    """Wait for checks abandoned after their deadline to end; True when none is left."""
    deadline = time.monotonic() + timeout
    while _abandoned:
        thread = _abandoned[0]
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            return False
        _abandoned.pop(0)
    return True

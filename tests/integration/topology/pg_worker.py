"""Application processes of the PostgreSQL replica tests (started with the spawn method).

Each configures Django on its own: ``default`` is the primary (or a libpq multi-host list),
``replica`` the hot standby, and :class:`ReplicaRouter` sends reads to the replica and
writes to the primary, as README's "Read replicas" suggests. Values are ``TenantNote`` rows
(``body`` encrypted under the row's ``tenant_id``), keys go through ``DjangoMetastore`` on
``ASHERAH["DATABASE"]`` (``default``): the key path never asks the router.
"""

from __future__ import annotations

import time
from typing import Any

MASTER_HEX = "746869734973415374617469634d61737465724b6579466f7254657374696e67"


class ReplicaRouter:
    """Reads from the replica, writes (and migrations) on the primary."""

    def db_for_read(self, model: type, **hints: object) -> str:
        return "replica"

    def db_for_write(self, model: type, **hints: object) -> str:
        return "default"

    def allow_relation(self, obj1: object, obj2: object, **hints: object) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool:
        return db == "default"


def configure(databases: dict[str, dict[str, object]]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES=databases,
        DATABASE_ROUTERS=[f"{__name__}.ReplicaRouter"],
        INSTALLED_APPS=["django.contrib.contenttypes", "asherah_django", "tests.testapp"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        ASHERAH={
            "SERVICE_NAME": "svc",
            "PRODUCT_ID": "prod",
            "KMS": "static",
            "STATIC_MASTER_KEY_HEX": MASTER_HEX,
        },
    )
    django.setup()


def migrate(databases: dict[str, dict[str, object]], out: Any) -> None:
    configure(databases)
    from django.core.management import call_command

    call_command("migrate", database="default", verbosity=0)
    out.put(("migrated", None))


def _outcome(exc: BaseException) -> str:
    from django.db import Error as DjangoDatabaseError

    from asherah_django.core.errors import AsherahError

    if isinstance(exc, AsherahError | DjangoDatabaseError):
        return type(exc).__name__
    return f"UNTYPED {type(exc).__name__}"  # a defect: reported, not hidden


def race(databases: dict[str, dict[str, object]], tenants: list[str], go: Any, out: Any) -> None:
    """At ``go``, first-write a row in each of ``tenants`` (all processes race for the same
    ones), read each back from the primary; report failures and the rows written."""
    configure(databases)
    from django.db import connections

    from tests.testapp.models import TenantNote

    for alias in ("default", "replica"):
        connections[alias].ensure_connection()
    out.put(("ready", None))
    go.wait(120)
    errors: list[str] = []
    written: list[tuple[int, str, str]] = []
    for tenant in tenants:
        body = f"first write to {tenant}"
        try:
            note = TenantNote.objects.create(tenant_id=tenant, body=body)
            if TenantNote.objects.using("default").get(pk=note.pk).body != body:
                errors.append("wrong-plaintext")
            written.append((note.pk, tenant, body))
        except Exception as exc:
            errors.append(_outcome(exc))
    out.put(("done", {"errors": errors, "written": written}))


def load(databases: dict[str, dict[str, object]], name: str, go: Any, stop: Any, out: Any) -> None:
    """From ``go`` until ``stop``: one "request" every 20 ms writing a row, every fourth in a
    new tenant (cold: new key rows), the others in a tenant whose keys are cached."""
    configure(databases)
    from django.core.signals import request_finished, request_started
    from django.db import connections

    from tests.testapp.models import TenantNote

    connections["default"].ensure_connection()
    TenantNote.objects.create(tenant_id=f"{name}-hot", body="warm")
    out.put(("ready", None))
    go.wait(120)
    ops: list[tuple[float, float, str, bool]] = []  # (end, seconds, "" or error type, cold)
    written: list[tuple[int, str, str]] = []
    n = 0
    while not stop.is_set():
        n += 1
        cold = n % 4 == 0
        tenant = f"{name}-cold-{n}" if cold else f"{name}-hot"
        body = f"value {n} of {name}"
        request_started.send(sender=None)
        began = time.time()
        try:
            note = TenantNote.objects.create(tenant_id=tenant, body=body)
            written.append((note.pk, tenant, body))
            outcome = ""
        except Exception as exc:
            outcome = _outcome(exc)
        ops.append((time.time(), time.time() - began, outcome, cold))
        request_finished.send(sender=None)
        time.sleep(0.02)
    out.put(("done", {"ops": ops, "written": written}))


def verify(
    databases: dict[str, dict[str, object]], rows: list[tuple[int, str, str]], out: Any
) -> None:
    """A fresh process (cold caches) reads ``rows`` back (through the router) and decrypts
    them: how many are missing, unreadable or wrong."""
    configure(databases)
    from django.core.exceptions import ObjectDoesNotExist

    from tests.testapp.models import TenantNote

    missing = unreadable = 0
    for pk, tenant, body in rows:
        try:
            note = TenantNote.objects.get(pk=pk)
            unreadable += (note.tenant_id, note.body) != (tenant, body)
        except ObjectDoesNotExist:
            missing += 1
        except Exception:  # the value's key cannot be read
            unreadable += 1
    out.put(("verified", {"checked": len(rows), "missing": missing, "unreadable": unreadable}))

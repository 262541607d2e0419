"""The Celery app of the Celery tests, loaded by the test process and by the worker
subprocess (``celery -A tests.integration.integrations.celery_app worker``).

The worker reads its broker, result backend, queue and test database from environment
variables set by tests/integration/integrations/test_celery.py.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django
from django.conf import settings

if not settings.configured or not django.apps.apps.ready:  # the worker: set Django up
    if os.environ.get("ASHERAH_CELERY_DB_NAME"):
        settings.DATABASES["default"]["NAME"] = os.environ["ASHERAH_CELERY_DB_NAME"]
    django.setup()

from celery import Celery

from asherah_django.context import current_partition
from asherah_django.contrib.celery import install


def make_app(broker: str, backend: str, queue: str) -> Celery:
    """A Celery app with the test tasks (the test process makes one per broker)."""
    app = Celery("asherah_tests", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
    )
    for func, options in TASKS:
        app.task(name=f"asherah_tests.{func.__name__}", **options)(func)
    return app


def whoami() -> str | None:
    return current_partition()


def report() -> str | None:
    return current_partition()


def save_note(text: str) -> dict[str, Any]:
    """Encrypts with the partition the task runs in."""
    from tests.integrationsapp.models import Contact

    partition = current_partition()
    contact = Contact.objects.create(email=f"{text}@{partition}.example", name=text[:20])
    return {"pk": contact.pk, "partition": partition}


def read_note(pk: int) -> dict[str, Any]:
    from tests.integrationsapp.models import Contact

    contact = Contact.objects.get(pk=pk)
    return {"name": contact.name, "email": contact.email, "partition": current_partition()}


def read_many(results: list[dict[str, Any]]) -> list[str]:
    """A chord's body: reads every row its header tasks wrote."""
    from tests.integrationsapp.models import Contact

    pks = [r["pk"] for r in results]
    return sorted(c.name for c in Contact.objects.filter(pk__in=pks))


def flaky(self: Any, pk: int) -> dict[str, Any]:
    """Fails twice, then reads the row: each retry runs in the partition of the first try."""
    from tests.integrationsapp.models import Contact

    if self.request.retries < 2:
        raise self.retry(countdown=0)
    contact = Contact.objects.get(pk=pk)
    return {"name": contact.name, "retries": self.request.retries, "partition": current_partition()}


TASKS: list[tuple[Any, dict[str, Any]]] = [
    (whoami, {}),
    (report, {"asherah_partition": "reports"}),
    (save_note, {}),
    (read_note, {}),
    (read_many, {}),
    (flaky, {"bind": True, "max_retries": 3}),
]

install()
app = make_app(  # the worker's
    os.environ.get("ASHERAH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get("ASHERAH_CELERY_BACKEND", "redis://127.0.0.1:6379/0"),
    os.environ.get("ASHERAH_CELERY_QUEUE", "asherah-tests"),
)

"""The integration examples (#18) run here, taken from docs/integrations.md itself.

Each block is executed with ``Contact`` (tests/integrationsapp/models.py) standing in for
the reader's model, then used the way the README says.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.utils.module_loading import import_string
from prometheus_client import REGISTRY, generate_latest

import asherah_django
from asherah_django import observability
from asherah_django.contrib import otel, prometheus
from asherah_django.runtime import reset_session_factory
from tests.integration.docs.test_blocks import _block
from tests.integrationsapp.models import Contact


def run(marker: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"Contact": Contact, "__name__": "readme_integrations"}
    exec(_block(marker), namespace)
    return namespace


@pytest.mark.django_db
def test_drf_and_filter_block() -> None:
    ns = run("class ContactSerializer(EncryptedModelSerializer)")
    import_string(ns["REST_FRAMEWORK"]["EXCEPTION_HANDLER"])
    with asherah_django.session("tenant-r"):
        Contact.objects.create(email="Ann@x.org", name="Ann")
        data = ns["ContactSerializer"](Contact.objects.get()).data
        assert data["email"] == "Ann@x.org" and "email_bidx" not in data
        duplicate = ns["ContactSerializer"](data={"email": "ann@X.org", "name": "A2"})
        assert not duplicate.is_valid() and "email" in duplicate.errors
        found = ns["ContactFilter"]({"email__iexact": "ANN@x.org"}, queryset=Contact.objects.all())
        assert [c.name for c in found.qs] == ["Ann"]
        refused = ns["ContactFilter"]({"bio": "x"}, queryset=Contact.objects.all())
        assert not refused.is_valid() and "no blind index" in refused.errors["bio"][0]
    assert ns["ContactViewSet"].filterset_class is ns["ContactFilter"]


@pytest.mark.django_db
def test_celery_block() -> None:
    ns = run("def contact_email(contact_id)")
    try:
        ns["app"].conf.task_always_eager = True  # this check runs the task in-process
        with asherah_django.session("tenant-42"):
            contact = Contact.objects.create(email="c@x.org", name="C")
        assert ns["email_of"](contact).get() == "c@x.org"
        with pytest.raises(asherah_django.core.errors.PartitionMismatchError):
            ns["email_of_other_tenant"](contact).get()
    finally:
        ns["app"].close()  # (install() stays: idempotent, and the Celery tests rely on it)


@pytest.mark.django_db
def test_observability_block() -> None:
    reset_session_factory()
    before = observability.observers()
    ns = run("class SlowKMSWarning(observability.Observer)")
    try:
        added = [o for o in observability.observers() if o not in before]
        assert {type(o).__name__ for o in added} == {
            "PrometheusObserver",
            "OpenTelemetryObserver",
            "SlowKMSWarning",
        }
        with asherah_django.session("tenant-o"):
            Contact.objects.create(email="o@x.org", name="O")
        assert b"asherah_kms_calls_total" in generate_latest(REGISTRY)
        slow = ns["SlowKMSWarning"]()
        seen: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger("myapp").addHandler(handler)
        try:
            slow.end("kms.decrypt_key", {}, None, 0.6, None)
        finally:
            logging.getLogger("myapp").removeHandler(handler)
        assert seen == ["slow KMS call kms.decrypt_key: 0.6s"]
        assert callable(ns["metrics_view"])
    finally:
        for observer in observability.observers():
            if type(observer).__name__ == "SlowKMSWarning":
                observability.unregister(observer)
        otel.uninstall()
        prometheus.uninstall()
        reset_session_factory()

"""The readiness view: who sees what, caching, and the answer's shape."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from asherah_django import health
from asherah_django.health import views
from tests.unit.management.commands.conftest import Vault
from tests.unit.management.commands.jsonshape import problems

pytestmark = [pytest.mark.vault, pytest.mark.urls("tests.unit.management.commands.urls")]


@pytest.fixture
def ready(vault: Vault, settings: Any) -> Vault:
    settings.ASHERAH = vault.asherah()
    return vault


@pytest.mark.django_db(transaction=True)
def test_anonymous_callers_get_only_the_status(ready: Vault, client: Client) -> None:
    response = client.get("/ready/")
    assert response.status_code == 200
    assert response.json() == {"status": "OK"}
    assert problems(response.json(), health.PUBLIC_SCHEMA) == []
    assert ready.bao.addr not in response.content.decode()
    assert client.head("/ready/").status_code == 200
    assert client.post("/ready/").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_staff_and_token_holders_get_the_report(
    ready: Vault, client: Client, admin_client: Client, settings: Any
) -> None:
    settings.ASHERAH_HEALTH_TOKEN = "probe-secret"
    for response in (
        admin_client.get("/ready/"),
        client.get("/ready/", headers={"Authorization": "Bearer probe-secret"}),
    ):
        assert response.status_code == 200
        document = response.json()
        assert problems(document, health.REPORT_SCHEMA) == []
        assert [c["name"] for c in document["checks"]] == list(views.READINESS_CHECKS)
        assert ready.bao.addr in document["checks"][0]["detail"]
    wrong = client.get("/ready/", headers={"Authorization": "Bearer nope"})
    assert wrong.json() == {"status": "OK"}


@pytest.mark.django_db(transaction=True)
def test_results_are_cached_per_process(
    ready: Vault, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = views.run

    def counting(*args: Any, **kwargs: Any) -> health.HealthReport:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "run", counting)
    views.clear_cache()
    assert [client.get("/ready/cached/").status_code for _ in range(3)] == [200] * 3
    assert len(calls) == 1
    client.get("/ready/")
    client.get("/ready/")
    assert len(calls) == 3


@pytest.mark.django_db(transaction=True)
def test_broken_settings_answer_503(client: Client, settings: Any) -> None:
    settings.ASHERAH = {"SERVICE_NAME": "svc", "PRODUCT_ID": "prod", "KMS": "vault"}
    response = client.get("/ready/")
    assert (response.status_code, response.json()) == (503, {"status": "FAIL"})

"""Django's error reports never capture plaintext or tokens held by our views and admin
(issue #14 item 7): the readiness view's token check and the admin mixin's change form are
marked with ``sensitive_variables`` / ``sensitive_post_parameters``. An exception is forced
inside each; the report Django would mail to ADMINS (text and HTML) must not contain them."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from django.core.signals import got_request_exception
from django.test import Client, RequestFactory
from django.views.debug import ExceptionReporter

from asherah_django.health import views
from tests.testapp.models import TenantNote

TOKEN = "probe-token-8f3a1c"
PLAINTEXT = "PLAINTEXT-4b7e-secret-note"


def report_of(request: Any) -> str:
    reporter = ExceptionReporter(request, *sys.exc_info())
    return reporter.get_traceback_text() + reporter.get_traceback_html()


def test_readiness_token_is_not_in_error_reports(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ASHERAH_HEALTH_TOKEN = TOKEN

    # A C callable that raises: no frame of the test's own holds the token.
    monkeypatch.setattr(views.hmac, "compare_digest", int)
    request = RequestFactory().get("/ready/", headers={"Authorization": f"Bearer {TOKEN}"})
    request.user = type("Anonymous", (), {"is_active": False})()  # type: ignore[attr-defined]
    try:
        views.ReadinessView().may_see_details(request)
    except TypeError:
        text = report_of(request)
    else:
        pytest.fail("the forced error did not happen")
    assert "may_see_details" in text  # the frame is in the report...
    assert TOKEN not in text  # ...its variables are not


@pytest.mark.urls("tests.integration.admin.urls")
@pytest.mark.django_db
def test_admin_change_form_plaintext_is_not_in_error_reports(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(TenantNote, "save", broken)
    reports: list[str] = []

    def capture(sender: Any, request: Any, **kwargs: Any) -> None:
        reports.append(report_of(request))

    got_request_exception.connect(capture, dispatch_uid="lifecycle-report")
    admin_client.raise_request_exception = False
    try:
        response = admin_client.post(
            "/admin/testapp/tenantnote/add/",
            {"title": "t", "tenant_id": "acme", "body": PLAINTEXT, "extra": ""},
        )
    finally:
        got_request_exception.disconnect(dispatch_uid="lifecycle-report")
    assert response.status_code == 500
    (text,) = reports
    assert "save_model" in text and "database went away" in text
    assert PLAINTEXT not in text

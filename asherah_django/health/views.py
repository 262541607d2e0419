"""A readiness view for load balancers and Kubernetes probes.

    # urls.py
    from asherah_django.health.views import ReadinessView

    urlpatterns = [path("ready/asherah/", ReadinessView.as_view())]

It runs :data:`READINESS_CHECKS` of :mod:`asherah_django.health` (Vault reachable and
unsealed, a KMS round trip, the metastore table migrated and readable) and answers
**503** when one fails, **200** when all pass or only warn.

Who sees what
-------------
* Anyone: ``{"status": "OK" | "WARN" | "FAIL"}`` and the status code, nothing else (no
  Vault address, key name, versions, or error text).
* An active staff user with the key-view permission ``asherah_django.view_encryptionkey``
  (the admin's health panel asks the same; superusers have it), or a caller sending
  ``Authorization: Bearer <token>`` where ``<token>`` equals the ``ASHERAH_HEALTH_TOKEN``
  Django setting (or environment variable): the full report
  (:data:`asherah_django.health.REPORT_SCHEMA`). Unset means no token is accepted.
  A wrong token is treated as anonymous (a probe must not turn into a 401), and so is
  a staff user without the permission.

Results are reused for ``cache_seconds`` (default 5) within a process and concurrent
requests share one run, so frequent probes do not load Vault; each check has ``timeout``
seconds (default 2), so a hung Vault answers 503 quickly. Responses carry
``Cache-Control: no-store``. Subclass or pass ``as_view(checks=..., cache_seconds=...,
timeout=...)`` to change them.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from typing import Any, ClassVar, Final

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers
from django.views import View
from django.views.decorators.debug import sensitive_variables

from .model import HealthReport, Status
from .runner import run

#: The checks a readiness probe runs: enough to know that values can be encrypted.
READINESS_CHECKS: Final = ("vault.server", "kms.round_trip", "metastore")
#: The setting (or environment variable) holding the token that unlocks details.
TOKEN_SETTING: Final = "ASHERAH_HEALTH_TOKEN"
#: The permission a logged-in user needs to see the full report (as in the admin panel).
DETAILS_PERMISSION: Final = "asherah_django.view_encryptionkey"

_lock = threading.Lock()
_runs: dict[tuple[tuple[str, ...], float], tuple[float, HealthReport, threading.Lock]] = {}


def clear_cache(**kwargs: object) -> None:
    """Forget cached results (also done when settings change)."""
    with _lock:
        _runs.clear()


setting_changed.connect(clear_cache, dispatch_uid="asherah_django.health.views.clear_cache")


class ReadinessView(View):
    """``GET``/``HEAD``: 200 or 503 with the health JSON; see the module docs."""

    http_method_names: ClassVar[list[str]] = ["get", "head", "options"]  # type: ignore[misc]
    checks: tuple[str, ...] = READINESS_CHECKS
    cache_seconds: float = 5.0
    timeout: float = 2.0

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        report = self.report()
        body: dict[str, Any]
        if self.may_see_details(request):
            body = report.to_dict()
        else:
            body = {"status": report.status.value}
        response = JsonResponse(body, status=503 if report.status is Status.FAIL else 200)
        add_never_cache_headers(response)
        return response

    def report(self) -> HealthReport:
        """A recent report for these checks (run now when the cached one is too old)."""
        key = (tuple(self.checks), float(self.timeout))
        with _lock:
            entry = _runs.get(key)
            if entry is None:
                entry = _runs[key] = (0.0, HealthReport((), 0.0, 0.0), threading.Lock())
        at, report, gate = entry
        if at and time.monotonic() - at < self.cache_seconds:
            return report
        with gate:  # one run at a time per key; the others wait and reuse it
            at, report, _ = _runs.get(key, entry)
            if at and time.monotonic() - at < self.cache_seconds:
                return report
            report = run(self.checks, timeout=self.timeout)
            with _lock:
                _runs[key] = (time.monotonic(), report, gate)
            return report

    @sensitive_variables("expected", "header", "given")  # the health token
    def may_see_details(self, request: HttpRequest) -> bool:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_active
            and user.is_staff
            and user.has_perm(DETAILS_PERMISSION)
        ):
            return True
        expected = getattr(settings, TOKEN_SETTING, None) or os.environ.get(TOKEN_SETTING)
        header = request.headers.get("Authorization", "")
        if not expected or not header.startswith("Bearer "):
            return False
        given = header.removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), str(expected).encode())


#: ``path("ready/asherah/", readiness)`` with the defaults.
readiness = ReadinessView.as_view()

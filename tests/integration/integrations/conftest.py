from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from asherah_django.runtime import reset_session_factory

API_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "asherah_django.middleware.AsherahSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]


@pytest.fixture
def api(settings: Any, db: None) -> Iterator[APIClient]:
    """An APIClient against tests/integration/integrations/urls.py; X-Tenant picks the partition."""
    settings.ROOT_URLCONF = "tests.integration.integrations.urls"
    settings.MIDDLEWARE = API_MIDDLEWARE
    settings.ASHERAH = {
        **settings.ASHERAH,
        "PARTITION_RESOLVER": "tests.integration.integrations.urls.tenant_from_header",
    }
    settings.REST_FRAMEWORK = {
        "EXCEPTION_HANDLER": "asherah_django.contrib.drf.exception_handler",
        "UNAUTHENTICATED_USER": None,
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
    }
    yield APIClient()
    reset_session_factory()

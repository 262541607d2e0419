"""Django settings for the test suite.

The database comes from DATABASE_URL (django-environ's form), SQLite by default:
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
  DATABASE_URL=mysql://root@127.0.0.1:3306/test
"""

from __future__ import annotations

import os

import environ

env = environ.Env()

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:///:memory:")}
DATABASES["default"].setdefault("TEST", {})
if os.environ.get("ASHERAH_TEST_DB_NAME"):  # lets two test runs share one server
    DATABASES["default"]["TEST"]["NAME"] = os.environ["ASHERAH_TEST_DB_NAME"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    DATABASES["default"].setdefault("OPTIONS", {})["charset"] = "utf8mb4"
    DATABASES["default"]["TEST"].update({"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"})
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file (not :memory:) so that separate processes in race tests share it.
    DATABASES["default"]["TEST"]["NAME"] = os.environ.get(
        "ASHERAH_TEST_SQLITE", f"/tmp/asherah-django-test-{os.getpid()}.sqlite3"
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "asherah_django",
    "tests.testapp",
    "tests.bidxapp",
    "tests.bindapp",
    # Integrations (#18)
    "rest_framework",
    "django_filters",
    "tests.integrationsapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "/static/"

# Tests use the static KMS with the public Asherah test key; never do this in production.
ASHERAH = {
    "SERVICE_NAME": "testsvc",
    "PRODUCT_ID": "testprod",
    "KMS": "static",
    "STATIC_MASTER_KEY_HEX": "746869734973415374617469634d61737465724b6579466f7254657374696e67",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"asherah_django": {"level": "DEBUG"}},
}

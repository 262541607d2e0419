"""Settings of the example project: a clinic app whose patient data is encrypted with
asherah_django, the master key in a Vault-compatible server (OpenBao in the demo).

Everything about keys comes from the environment, with the names Asherah users know
(``KMS``, ``VAULT_ADDR``, ``VAULT_TRANSIT_KEY``, ``VAULT_TOKEN`` or ``VAULT_AUTH_METHOD``...);
``demo.py`` sets them for a local server.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="demo-only-not-a-secret")
DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "admin:login"

DEMO_DIR = Path(os.environ.get("DEMO_DIR", BASE_DIR / ".demo"))
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DEMO_DIR / 'db.sqlite3'}"),
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "asherah_django",
    "clinics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: the partition is the signed-in staff member's clinic.
    "asherah_django.middleware.AsherahSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

# asherah_django: keys missing here come from ASHERAH_<KEY> (and VAULT_*, KMS) in the environment.
ASHERAH = {
    "SERVICE_NAME": env.str("ASHERAH_SERVICE_NAME", default="clinics"),
    "PRODUCT_ID": env.str("ASHERAH_PRODUCT_ID", default="demo"),
    # Each clinic is a partition: staff members read and write under their clinic's key.
    "PARTITION_RESOLVER": "clinics.partitions.clinic_of_staff_member",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"asherah_django": {"handlers": ["console"], "level": "INFO"}},
}

"""The Django app: registers system checks and signal handlers; does no I/O."""

from __future__ import annotations

from django.apps import AppConfig


class AsherahDjangoConfig(AppConfig):
    name = "asherah_django"
    verbose_name = "Asherah encryption"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, health, runtime

        checks.register()
        health.register_checks()  # live probes: deploy checks only (`check --deploy`)
        runtime.connect_signals()

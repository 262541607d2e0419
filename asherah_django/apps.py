"""The Django app: registers system checks and signal handlers; does no I/O."""

from __future__ import annotations

from django.apps import AppConfig


class AsherahDjangoConfig(AppConfig):
    name = "asherah_django"
    verbose_name = "Asherah encryption"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, django_internals, health, runtime

        # Django internals the fields lean on where Django has no hook: refuse to start
        # on a Django where one that guards data no longer holds (fails closed).
        django_internals.check_startup()
        checks.register()
        health.register_checks()  # live probes: deploy checks only (`check --deploy`)
        runtime.connect_signals()

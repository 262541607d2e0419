"""asherah.W003: a plain ModelAdmin shows encrypted fields and no middleware renders them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Warning


def check_admin(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Without the middleware, a plain ModelAdmin answers 500 on a row it cannot decrypt."""
    from django.apps import apps

    middleware = getattr(settings, "MIDDLEWARE", None) or []
    if not apps.is_installed("django.contrib.admin") or any(
        str(path) == "asherah_django.middleware.AsherahSessionMiddleware" for path in middleware
    ):
        return []
    from django.contrib.admin.sites import all_sites

    from ..admin.fields import EncryptedFieldsAdminMixin
    from ..fields import encrypted_fields

    messages: list[CheckMessage] = []
    for model in apps.get_models():
        if not encrypted_fields(model):
            continue
        for site in list(all_sites):
            if not site.is_registered(model):
                continue
            model_admin = site.get_model_admin(model)
            if isinstance(model_admin, EncryptedFieldsAdminMixin):
                continue
            messages.append(
                Warning(
                    f"{type(model_admin).__name__} (admin site {site.name!r}) shows the encrypted "
                    f"fields of {model._meta.label} without EncryptedFieldsAdminMixin: a row "
                    "encrypted for another partition makes its pages answer 500",
                    hint="add asherah_django.admin.EncryptedFieldsAdminMixin before ModelAdmin, "
                    "or AsherahSessionMiddleware to MIDDLEWARE (it renders such values locked)",
                    obj=model_admin,
                    id="asherah.W003",
                )
            )
    return messages

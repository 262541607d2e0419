from django.apps import AppConfig


class BindAppConfig(AppConfig):
    name = "tests.bindapp"
    label = "bindapp"
    default_auto_field = "django.db.models.BigAutoField"

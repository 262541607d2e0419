from django.apps import AppConfig


class IntegrationsAppConfig(AppConfig):
    name = "tests.integrationsapp"
    label = "integrations_app"
    default_auto_field = "django.db.models.BigAutoField"

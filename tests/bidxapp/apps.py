from django.apps import AppConfig


class BidxAppConfig(AppConfig):
    name = "tests.bidxapp"
    label = "bidxapp"
    default_auto_field = "django.db.models.BigAutoField"

"""The smallest Django settings that let autodoc import the package's public modules."""

SECRET_KEY = "docs-build-only"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "asherah_django"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
ASHERAH = {"SERVICE_NAME": "docs", "PRODUCT_ID": "docs", "KMS": "test-debug-static"}

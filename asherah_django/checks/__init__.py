"""System checks for the ASHERAH settings, registered under the tag ``asherah``.

One module per job: :mod:`.settings`, :mod:`.admin`, :mod:`.deployment`,
:mod:`.database`. Ids are stable and unique (see :data:`CHECK_IDS`); every message says
what to set and where. No check makes a network call: live Vault probes belong to ``asherah_check``.

- settings (always): E001-E012, W001, W002;
- admin (always, tag ``admin``): W003 (a plain ModelAdmin of encrypted fields, no middleware);
- deployment (``check --deploy``): E101 static KMS, W102 dev-looking Vault token,
  W103 Vault over plain http;
- database (only when ``databases`` are given, e.g. ``migrate`` or ``check --database``):
  W201-W206. They are warnings so that ``migrate`` can still run to fix them.
"""

from __future__ import annotations

from typing import Final

from django.core import checks

from .admin import check_admin
from .database import check_database
from .deployment import check_deployment
from .settings import check_settings

__all__ = [
    "CHECK_IDS",
    "TAG",
    "check_admin",
    "check_database",
    "check_deployment",
    "check_settings",
    "register",
]

TAG: Final = "asherah"

#: Every id this module can report, with what it means.
CHECK_IDS: Final[dict[str, str]] = {
    "asherah.E001": "SERVICE_NAME is missing or invalid",
    "asherah.E002": "PRODUCT_ID is missing or invalid",
    "asherah.E003": "KMS is unknown",
    "asherah.E004": "STATIC_MASTER_KEY_HEX is missing or invalid for the static KMS",
    "asherah.E005": "VAULT_ADDR or VAULT_TRANSIT_KEY is missing for the Vault KMS",
    "asherah.E006": "Vault auth settings are incomplete for the chosen VAULT_AUTH_METHOD",
    "asherah.E007": "another Vault setting is invalid",
    "asherah.E008": "a crypto policy or cache setting is not a positive whole number",
    "asherah.E009": "METASTORE is unknown",
    "asherah.E010": "DATABASE is not an alias in settings.DATABASES",
    "asherah.E011": "PARTITION_RESOLVER cannot be imported",
    "asherah.E012": "settings.ASHERAH is not a dict",
    "asherah.E013": "KEY_INTEGRITY is not off, sign or require",
    "asherah.W001": "settings.ASHERAH has a key asherah_django does not know",
    "asherah.W002": "the KMS environment variable holds another tool's value and is ignored",
    "asherah.W003": "a plain ModelAdmin shows encrypted fields and no middleware renders them",
    "asherah.E021": "an AWS KMS setting is missing or invalid (REGION_MAP, PREFERRED_REGION, ...)",
    "asherah.E022": "boto3 is not installed, and KMS=aws or KMS=secrets-manager needs it",
    "asherah.E023": "the KMS class named by a dotted-path KMS cannot be used",
    "asherah.E101": "the static KMS is used with DEBUG = False",
    "asherah.W102": "VAULT_TOKEN looks like a development root token with DEBUG = False",
    "asherah.W103": "VAULT_ADDR uses plain http to a non-local host with DEBUG = False",
    "asherah.W121": "KMS=secrets-manager (a static master key) is used with DEBUG = False",
    "asherah.W122": "an AWS endpoint uses plain http to a non-local host with DEBUG = False",
    "asherah.W201": "the encryption_key table is missing although its migration is applied",
    "asherah.W202": "the encryption_key table exists but asherah_django's migration is unapplied",
    "asherah.W203": "the encryption_key table lacks a column Asherah needs",
    "asherah.W204": "the key database could not be inspected",
    "asherah.W205": "the id column compares case-insensitively (MySQL/MariaDB collation)",
    "asherah.W206": "KEY_INTEGRITY is on but the encryption_key table has no integrity_tag",
}


def register() -> None:
    """Register the checks (called by ``AppConfig.ready()``; idempotent)."""
    checks.register(check_settings, TAG)
    checks.register(check_admin, checks.Tags.admin)  # not under TAG: it is about your admin
    checks.register(check_deployment, TAG, deploy=True)
    checks.register(check_database, TAG, checks.Tags.database)

"""Live health checks: can this process reach Vault, use the transit key, and use its metastore?

    from asherah_django import health

    report = health.run(write=False, timeout=5.0)    # HealthReport
    report.exit_code                                 # 0 OK, 1 a failure, 2 only warnings
    report.to_dict()                                 # the JSON document (REPORT_SCHEMA)
    health.run_checks()                              # [CheckResult(name, status, detail, hint...)]

Used by ``manage.py asherah_check``, the readiness view (:mod:`.views`), the
admin's health panel, and ``manage.py check --deploy --tag asherah``
(:mod:`.system_checks`). The checks, in order (the Vault ones only with ``KMS=vault``):

=====================  ==================================================================
``settings``           the static system checks: settings valid (deploy checks too when
                       DEBUG is off)
``vault.server``       Vault reachable, initialized, unsealed, active; TLS verified
``vault.login``        the configured auth method yields a token; its TTL, renewability
                       and policies (a root policy or an unrenewable VAULT_TOKEN warns)
``vault.transit_key``  the transit key exists and the token may encrypt and decrypt with it
                       (``sys/capabilities-self``)
``vault.key_config``   deletion_allowed, exportable, min_decryption_version (against the
                       versions stored system keys are wrapped under), auto_rotate_period
``kms.round_trip``     32 random bytes encrypted and decrypted by the KMS
``metastore``          the encryption_key table exists, has Asherah's columns, its
                       migrations are applied, and it can be read
``system_key``         the current system key: age, expiry, revoked, Vault key version
``key_integrity``      (``KEY_INTEGRITY`` sign/require) this service's key rows signed,
                       untagged, with an invalid tag, unreadable or foreign-parented
``write``              (``write=True`` only) a full envelope round trip through the
                       partition ``asherah-health``, creating its keys if needed
=====================  ==================================================================

Each check runs in a worker thread with a deadline (``timeout`` seconds); see
:mod:`.runner`. Checks use the process-wide SessionFactory and its KMS, so in a web
process they reuse its Vault token rather than logging in again.

The JSON document (``HealthReport.to_dict()``, ``asherah_check --json``)::

    {
      "schema_version": 1,
      "status": "OK" | "WARN" | "FAIL",
      "exit_code": 0 | 1 | 2,
      "checked_at": "2026-01-31T12:00:00Z",
      "duration": 0.42,                               # seconds
      "counts": {"OK": 8, "WARN": 0, "FAIL": 0},
      "checks": [
        {"name": "vault.server", "status": "OK", "detail": "Vault 2.7.2 at ...",
         "hint": "", "duration": 0.01, "skipped": false,
         "data": {"version": "2.7.2", "sealed": false, ...}},
        ...
      ]
    }

:data:`REPORT_SCHEMA` is its JSON Schema. ``detail`` and ``hint`` are for people; ``data``
holds the facts for machines (TTL seconds, key versions, ...), never secrets.
"""

from __future__ import annotations

from .local import HEALTH_PARTITION
from .model import PUBLIC_SCHEMA, REPORT_SCHEMA, SCHEMA_VERSION, CheckResult, HealthReport, Status
from .runner import CHECK_NAMES, DEFAULT_TIMEOUT, run, run_checks, wait_for_abandoned
from .system_checks import LIVE_CHECK_IDS, check_live, register_checks, unregister_checks

__all__ = [
    "CHECK_NAMES",
    "DEFAULT_TIMEOUT",
    "HEALTH_PARTITION",
    "LIVE_CHECK_IDS",
    "PUBLIC_SCHEMA",
    "REPORT_SCHEMA",
    "SCHEMA_VERSION",
    "CheckResult",
    "HealthReport",
    "Status",
    "check_live",
    "register_checks",
    "run",
    "run_checks",
    "unregister_checks",
    "wait_for_abandoned",
]

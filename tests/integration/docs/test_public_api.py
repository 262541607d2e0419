"""The public API is listed in one place: ``asherah_django.__all__`` (and README's "Public
API"), with each subpackage's ``__all__`` holding what that subpackage owns.

The expected lists are written out here, so a name that appears or disappears fails this
test until it is announced: added here, in the README and in the CHANGELOG.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

import asherah_django
from tests.support.common import ROOT

PUBLIC = [
    "AsherahError",
    "Bind",
    "BindingMismatchError",
    "BlindIndex",
    "ConfigurationError",
    "DecryptionError",
    "EncryptedBigIntegerField",
    "EncryptedBinaryField",
    "EncryptedBooleanField",
    "EncryptedCharField",
    "EncryptedDateField",
    "EncryptedDateTimeField",
    "EncryptedDecimalField",
    "EncryptedEmailField",
    "EncryptedIntegerField",
    "EncryptedJSONField",
    "EncryptedTextField",
    "NoActiveSessionError",
    "PartitionMismatchError",
    "PlaintextValueError",
    "RowPartitionRequiredError",
    "__version__",
    "bulk_update",
    "get_session_factory",
    "session",
]

SUBPACKAGES = {
    "asherah_django.admin": [
        "EncryptedFieldsAdminMixin",
        "EncryptionKeyAdmin",
        "REVOKE_PERMISSION",
        "register",
    ],
    "asherah_django.blind_index": [
        "BlindIndex",
        "BlindIndexField",
        "IndexKeys",
        "KeyVersion",
        "index_key_id",
        "index_keys",
        "parse_index_key_id",
    ],
    "asherah_django.core": [
        "AsherahError",
        "BatchMetastore",
        "BindingMismatchError",
        "ConfigurationError",
        "CryptoPolicy",
        "DataRowRecord",
        "DecryptionError",
        "EnvelopeKeyRecord",
        "InMemoryMetastore",
        "InvalidPartitionError",
        "KMSError",
        "KeyCreationError",
        "KeyIntegrityError",
        "KeyManagementService",
        "KeyMeta",
        "KeyNotFoundError",
        "KeyParentMismatchError",
        "KeyTamperedError",
        "MalformedRecordError",
        "Metastore",
        "MetastoreError",
        "NoActiveSessionError",
        "PartitionMismatchError",
        "PayloadTooLargeError",
        "Session",
        "SessionClosedError",
        "SessionFactory",
        "StaticKMS",
        "UnboundRecordError",
        "parse_data_row",
    ],
    "asherah_django.fields": [
        "Bind",
        "BindingValueError",
        "BoundRowRequiredError",
        "EncryptedBigIntegerField",
        "EncryptedBinaryField",
        "EncryptedBooleanField",
        "EncryptedCharField",
        "EncryptedDateField",
        "EncryptedDateTimeField",
        "EncryptedDecimalField",
        "EncryptedEmailField",
        "EncryptedField",
        "EncryptedIntegerField",
        "EncryptedJSONField",
        "EncryptedTextField",
        "FIELD_CHECK_IDS",
        "PlaintextValueError",
        "RowPartitionRequiredError",
        "SealedValue",
        "VerbatimValue",
        "bulk_update",
        "encrypted_fields",
    ],
    "asherah_django.health": [
        "CHECK_NAMES",
        "CheckResult",
        "DEFAULT_TIMEOUT",
        "HEALTH_PARTITION",
        "HealthReport",
        "LIVE_CHECK_IDS",
        "PUBLIC_SCHEMA",
        "REPORT_SCHEMA",
        "SCHEMA_VERSION",
        "Status",
        "check_live",
        "register_checks",
        "run",
        "run_checks",
        "unregister_checks",
        "wait_for_abandoned",
    ],
    "asherah_django.rotation": [
        "Checkpoint",
        "Inventory",
        "KeyChange",
        "KeyStatus",
        "ReencryptStats",
        "RotationError",
        "Summary",
        "Target",
        "UNREADABLE",
        "all_partitions",
        "every_target",
        "forget_revoked",
        "reencrypt",
        "report",
        "resolve_targets",
        "revoke_partitions",
        "revoke_system_key",
        "rewrap_system_keys",
        "shred_partition",
        "take_inventory",
        "when",
    ],
    "asherah_django.context": ["current_partition", "current_session", "session"],
    "asherah_django.middleware": ["AsherahSessionMiddleware", "user_partition"],
    "asherah_django.observability": [
        "COMMANDS",
        "Observer",
        "active",
        "count",
        "observers",
        "register",
        "timed",
        "unregister",
    ],
    "asherah_django.runtime": ["connect_signals", "get_session_factory", "reset_session_factory"],
}


def test_the_package_exports_exactly_the_public_api() -> None:
    assert sorted(asherah_django.__all__) == PUBLIC
    assert set(PUBLIC) <= set(dir(asherah_django))


@pytest.mark.parametrize("name", [n for n in PUBLIC if n != "__version__"])
def test_each_public_name_is_the_object_of_the_module_that_owns_it(name: str) -> None:
    home = importlib.import_module(asherah_django._HOMES[name])
    assert getattr(asherah_django, name) is getattr(home, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'EncryptedTypoField'"):
        asherah_django.EncryptedTypoField  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize("module", sorted(SUBPACKAGES))
def test_each_subpackage_exports_what_it_owns(module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert sorted(exported) == SUBPACKAGES[module]
    assert len(set(exported)) == len(exported)
    for name in exported:
        getattr(importlib.import_module(module), name)


def test_the_readme_lists_the_public_api() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Public API\n", 1)[1].split("\n## ", 1)[0]
    bullets = "\n".join(line for line in section.splitlines() if line.startswith(("- ", "  ")))
    listed = re.findall(r"`(\w+)`", bullets)
    assert sorted(listed) == [n for n in PUBLIC if n != "__version__"]


def test_importing_the_package_imports_no_django() -> None:
    code = (
        "import sys, asherah_django\n"
        "names = dir(asherah_django)\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not bad, bad\n"
        "assert 'session' in names\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr

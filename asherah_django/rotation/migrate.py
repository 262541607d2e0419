"""``asherah_rotate --rewrap --from-kms KIND``: move stored system keys to another KMS.

Each stored system key of this service is unwrapped with the *source* KMS (``KIND``:
``secrets-manager``, ``static``, ``vault`` or ``aws``, built from the same ``ASHERAH``
settings, whose names do not clash) and wrapped again with the configured ``KMS`` (the
target). The system keys themselves do not change, so intermediate keys and values stay
as they are. Each row is updated only if it still holds the record that was read, and a
row the source cannot unwrap is left alone and reported (say, one already moved).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from ..core.errors import AsherahError, KMSError
from ..core.records import EnvelopeKeyRecord, KeyMeta
from ..maintenance.summary import Summary, when
from .keys import KeyChange, RotationError, metastore_of, stored_versions

if TYPE_CHECKING:
    from ..core.protocols import KeyManagementService
    from ..core.session import SessionFactory

logger = logging.getLogger("asherah_django.rotation")

SOURCES: Final = ("secrets-manager", "static", "test-debug-static", "vault", "aws")


def source_kms(kind: str) -> KeyManagementService:
    """The KMS named ``kind``, built from the ASHERAH settings (no network I/O)."""
    from ..conf import asherah_settings as conf

    if kind == "secrets-manager":
        from ..core.kms.secrets_manager import SecretsManagerKMS

        return SecretsManagerKMS(conf.secrets_manager_config())
    if kind in ("static", "test-debug-static"):
        from ..core.kms.static import TEST_MASTER_KEY_HEX, StaticKMS

        value = conf.STATIC_MASTER_KEY_HEX
        if value is None and kind == "static":
            raise RotationError("--from-kms static needs STATIC_MASTER_KEY_HEX")
        return StaticKMS.from_hex(value or TEST_MASTER_KEY_HEX)
    if kind == "vault":
        from ..core.kms.vault import VaultTransitKMS

        return VaultTransitKMS(conf.vault_config())
    if kind == "aws":
        from ..core.kms.aws import AwsKMS

        return AwsKMS(conf.aws_config())
    raise RotationError(f"--from-kms {kind!r} is unknown: expected one of {', '.join(SOURCES)}")


def migrate_system_keys(
    factory: SessionFactory, source: KeyManagementService, summary: Summary, *, dry_run: bool
) -> list[KeyChange]:
    """Rewrap every stored system key from ``source`` to the factory's KMS."""
    from ..models import EncryptionKey
    from .keys import _aware

    target = factory.kms
    if type(target) is type(source) and repr(target) == repr(source):
        raise RotationError(
            "--from-kms names the KMS already configured: set KMS to the new KMS and keep "
            "the old one's settings (e.g. SECRETS_MANAGER_SECRET_ID) for --from-kms"
        )
    sk_id = factory.system_key_id
    stored = stored_versions(factory, sk_id)
    if not stored:
        summary.say(f"No system key ({sk_id}) exists yet: nothing to move.")
        return []
    rows = EncryptionKey.objects.using(metastore_of(factory).using)
    changes: list[KeyChange] = []
    for created, text in stored:
        record = EnvelopeKeyRecord.from_json(text)
        try:
            key = source.decrypt_key(record.encrypted_key)
        except KMSError as exc:
            summary.say(
                f"System key {sk_id} created {when(created)}: the source KMS cannot unwrap it "
                f"({exc.args[0]}); left alone."
            )
            summary.count("system key(s) the source KMS could not unwrap")
            continue
        meta = KeyMeta(sk_id, created)
        if dry_run:
            summary.count("system key(s) moved to the configured KMS")
            continue
        try:
            blob = target.encrypt_key(key)
        except AsherahError as exc:
            raise RotationError(str(exc.args[0]), hint=exc.hint) from exc
        new = EnvelopeKeyRecord(record.created, blob, record.parent, record.revoked)
        if (
            rows.filter(id=sk_id, created=_aware(created), key_record=text).update(
                key_record=new.to_json()
            )
            == 0
        ):
            summary.say(
                f"System key {sk_id} created {when(created)} changed meanwhile: left alone."
            )
            continue
        summary.say(f"Moved system key {sk_id} created {when(created)} to the configured KMS.")
        summary.count("system key(s) moved to the configured KMS")
        changes.append(KeyChange("rewrapped", meta, "moved to the configured KMS"))
        logger.info("asherah_rotate: moved system key %s created %s to %r", sk_id, created, target)
    return changes

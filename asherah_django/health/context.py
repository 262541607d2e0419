"""What the checks of one run share: the factory under test, its KMS, and facts fetched once."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import runtime
from ..conf import asherah_settings
from ..core.errors import AsherahError, MalformedRecordError
from ..core.kms.vault_errors import VaultKMSError
from ..core.records import EnvelopeKeyRecord
from ..models import EncryptionKey
from .model import Data, Status

if TYPE_CHECKING:
    from ..core.kms.vault import VaultTransitKMS
    from ..core.kms.vault_inspect import TransitKeyInfo
    from ..core.session import SessionFactory


@dataclass(frozen=True)
class Outcome:
    """What a check function returns; the runner adds its name and duration."""

    status: Status
    detail: str
    hint: str = ""
    data: Data = field(default_factory=dict)
    skipped: bool = False


def ok(detail: str, **data: Any) -> Outcome:
    return Outcome(Status.OK, detail, data=data)


def warn(detail: str, hint: str, **data: Any) -> Outcome:
    return Outcome(Status.WARN, detail, hint, data)


def fail(detail: str, hint: str, **data: Any) -> Outcome:
    return Outcome(Status.FAIL, detail, hint, data)


def combine(findings: list[Outcome], ok_detail: str, data: Mapping[str, Any]) -> Outcome:
    """The worst of several findings (details and hints joined), or OK."""
    if not findings:
        return Outcome(Status.OK, ok_detail, data=data)
    worst = Status.FAIL if any(f.status is Status.FAIL for f in findings) else Status.WARN
    ordered = sorted(findings, key=lambda f: f.status is not Status.FAIL)
    return Outcome(
        worst,
        "; ".join(f.detail for f in ordered),
        "; ".join(dict.fromkeys(f.hint for f in ordered if f.hint)),
        data,
    )


@dataclass(frozen=True)
class StoredSystemKey:
    """One stored version of this service's system key (no key bytes)."""

    created: int
    record: EnvelopeKeyRecord | None  # None: the row's key_record is malformed


class Context:
    """The state of one run, shared by its checks (thread-safe memoisation)."""

    def __init__(self, *, timeout: float, write: bool, database: bool) -> None:
        self.timeout = timeout
        self.write = write
        #: False when the database must not be touched (system checks without --database).
        self.database = database
        self.factory: SessionFactory | None = None
        self.factory_error: AsherahError | None = None
        self._lock = threading.Lock()
        self._key_info: tuple[TransitKeyInfo | None, VaultKMSError | None] | None = None
        try:
            self.factory = runtime.get_session_factory()
        except AsherahError as exc:
            self.factory_error = exc

    @property
    def vault(self) -> VaultTransitKMS | None:
        """The factory's KMS when it is the Vault Transit KMS."""
        # Imported here: hvac and requests load only in processes that use Vault.
        from ..core.kms.vault import VaultTransitKMS

        kms = self.factory.kms if self.factory is not None else None
        return kms if isinstance(kms, VaultTransitKMS) else None

    @property
    def django_metastore(self) -> bool:
        return asherah_settings.METASTORE == "django"

    @property
    def alias(self) -> str:
        return asherah_settings.DATABASE

    def key_info(self) -> tuple[TransitKeyInfo | None, VaultKMSError | None]:
        """``<mount>/keys/<key>`` read once per run: (info, None) or (None, the error)."""
        with self._lock:
            if self._key_info is None:
                kms = self.vault
                assert kms is not None
                try:
                    self._key_info = kms.transit_key_info(), None
                except VaultKMSError as exc:
                    self._key_info = None, exc
            return self._key_info

    def system_keys(self) -> list[StoredSystemKey]:
        """Every stored version of this service's system key, oldest first."""
        factory = self.factory
        assert factory is not None
        sk_id = factory.system_key_id
        if not self.django_metastore:
            found = [StoredSystemKey(m.created, r) for m, r in factory.load_versions(sk_id).items()]
            return sorted(found, key=lambda key: key.created)
        keys = []
        rows = EncryptionKey.objects.using(self.alias).filter(id=sk_id).order_by("created")
        for row in rows:
            try:
                record: EnvelopeKeyRecord | None = EnvelopeKeyRecord.from_json(row.key_record)
            except MalformedRecordError:
                record = None
            keys.append(StoredSystemKey(row.created_epoch, record))
        return keys

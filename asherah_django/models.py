"""EncryptionKey: Asherah's metastore table, exactly as every Asherah implementation shares it.

``encryption_key(id varchar(255), created timestamp, key_record text, primary key (id, created))``.
An existing Asherah table can be adopted as it is (``migrate asherah_django --fake-initial``).
On MySQL/MariaDB our migration gives ``id`` a binary collation (see :class:`KeyIdField`).

``created`` always holds the UTC wall-clock time of the key's epoch seconds, naive (no time
zone), as Go and the Rust core bind it, whatever ``USE_TZ``, ``TIME_ZONE`` or the database
session's time zone are. Our migration creates it as ``timestamp`` (without time zone) on
PostgreSQL and SQLite and as ``datetime`` on MySQL/MariaDB: a MySQL ``TIMESTAMP`` converts
between the session time zone and UTC and stops in 2038, ``DATETIME`` stores the wall-clock
as written. Adopted ``TIMESTAMP`` tables work as long as every client uses the same session
time zone (the server default, unless a DSN overrides it). The JSON ``Created`` inside
``key_record`` stays authoritative; the column serves lookups and ordering.

Rows whose id starts with ``__asherah_internal_`` are the Rust core's bookkeeping, not keys.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from .core.errors import MalformedRecordError
from .core.key_ids import KeyKind, kind_of
from .core.records import EnvelopeKeyRecord, KeyMeta

UTC = datetime.UTC

if TYPE_CHECKING:
    _CharBase = models.CharField[str, str]
    _DateTimeBase = models.DateTimeField[datetime.datetime | str, datetime.datetime]
else:
    _CharBase = models.CharField
    _DateTimeBase = models.DateTimeField


def to_naive_utc(value: datetime.datetime) -> datetime.datetime:
    """The UTC wall-clock of ``value``; a naive ``value`` is taken to be UTC already."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


class KeyIdField(_CharBase):
    """``varchar(255)`` compared case-sensitively everywhere.

    On MySQL/MariaDB the column gets a binary collation: under the usual case-insensitive
    ones, partitions ``Alice`` and ``alice`` would share one intermediate key row.
    """

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        if connection.vendor == "mysql":
            return f"varchar({self.max_length}) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        return super().db_type(connection)


class UTCDateTimeField(_DateTimeBase):
    """A datetime column holding naive UTC (``timestamp without time zone``).

    Python values are aware UTC datetimes. Writes bind the naive UTC wall-clock and reads
    attach UTC to the wall-clock found, without any time-zone conversion by Django.
    """

    description = "Date and time as naive UTC (timestamp without time zone)"

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        vendor_types = {"postgresql": "timestamp", "sqlite": "timestamp", "mysql": "datetime"}
        return vendor_types.get(connection.vendor) or super().db_type(connection)

    def get_prep_value(self, value: Any) -> Any:
        value = self.to_python(value)
        if isinstance(value, datetime.datetime):
            return to_naive_utc(value)
        return value

    def from_db_value(
        self, value: Any, expression: object, connection: BaseDatabaseWrapper
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value)
        if not isinstance(value, datetime.datetime):
            raise TypeError(f"unexpected value for {self.name}: {type(value).__name__}")
        # The column is UTC wall-clock by definition; a backend converter may have attached
        # the connection's time zone to it, which must not shift it.
        return value.replace(tzinfo=UTC)


class KeyRecordInfo(NamedTuple):
    """What a key record says, without its (wrapped) key bytes."""

    created: int
    revoked: bool
    parent: KeyMeta | None
    encrypted_key_size: int


class EncryptionKey(models.Model):
    """One version of a system (``_SK_...``) or intermediate (``_IK_...``) key."""

    pk = models.CompositePrimaryKey("id", "created")
    id = KeyIdField(max_length=255)
    created = UTCDateTimeField()
    key_record = models.TextField()

    class Meta:
        db_table = "encryption_key"
        verbose_name = "encryption key"
        verbose_name_plural = "encryption keys"
        indexes = [models.Index(fields=["created"], name="encryption_key_created_idx")]
        permissions = [("revoke_encryptionkey", "Can revoke encryption keys")]

    def __str__(self) -> str:
        return f"{self.id} @ {self.created:%Y-%m-%d %H:%M:%S}Z"

    @property
    def kind(self) -> str:
        """``system``, ``intermediate``, ``blind_index``, ``internal`` (Rust core bookkeeping)
        or ``unknown``."""
        return kind_of(self.id)

    @property
    def is_internal(self) -> bool:
        return self.kind is KeyKind.INTERNAL

    @property
    def created_epoch(self) -> int:
        """The ``created`` column as epoch seconds."""
        return int(self.created.replace(tzinfo=UTC).timestamp())

    @property
    def info(self) -> KeyRecordInfo | None:
        """The parsed key record (no key bytes), or ``None`` if it is internal or malformed."""
        if self.is_internal:
            return None
        try:
            record = EnvelopeKeyRecord.from_json(self.key_record)
        except MalformedRecordError:
            return None
        return KeyRecordInfo(
            record.created, record.revoked, record.parent, len(record.encrypted_key)
        )

    @property
    def revoked(self) -> bool:
        info = self.info
        return info is not None and info.revoked


from .erasure_receipts import ErasureReceipt  # noqa: E402, F401 - issue #15's receipts

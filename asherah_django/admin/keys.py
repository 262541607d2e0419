"""Reading the metastore for the admin: what each key row is, filters, and keyset pages.

Nothing here returns or formats key bytes: a row becomes a :class:`KeyRow` that carries
the metadata only (kind, partition, status, parent, Vault key version, size).

Pages are keyset pages ordered by ``(created, id)`` (the ``created`` column is indexed), so
page 1,000 of 100,000 keys costs what page 1 costs; the total is counted only up to
:data:`COUNT_LIMIT`.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from django.db.models import Max, Q, QuerySet

from ..conf import asherah_settings
from ..core.errors import ConfigurationError, MalformedRecordError
from ..core.key_ids import KeyIds, KeyKind, kind_of, prefix_of
from ..core.policy import DEFAULT_CHECK_INTERVAL, DEFAULT_EXPIRE_AFTER
from ..core.records import EnvelopeKeyRecord, KeyMeta
from ..models import EncryptionKey

UTC = datetime.UTC

SYSTEM: Final[str] = KeyKind.SYSTEM
INTERMEDIATE: Final[str] = KeyKind.INTERMEDIATE
BLIND_INDEX: Final[str] = KeyKind.INDEX
INTERNAL: Final[str] = KeyKind.INTERNAL
UNKNOWN: Final[str] = KeyKind.FOREIGN
KINDS: Final = {
    SYSTEM: "System",
    INTERMEDIATE: "Intermediate",
    BLIND_INDEX: "Blind index",
    INTERNAL: "Internal",
}

CURRENT: Final = "current"
SUPERSEDED: Final = "superseded"
EXPIRED: Final = "expired"
REVOKED: Final = "revoked"
MALFORMED: Final = "malformed"
STATUSES: Final = {
    CURRENT: "Current",
    SUPERSEDED: "Superseded",
    EXPIRED: "Expired",
    REVOKED: "Revoked",
}

PAGE_SIZE: Final = 100
#: The list counts matching keys up to this many and then says "more than".
COUNT_LIMIT: Final = 10_000

# "Revoked": true with any JSON whitespace. The literal whitespace characters (not escapes)
# mean the same to SQLite (Python re), PostgreSQL and MySQL/MariaDB regular expressions.
_WS = "[ \t\r\n]*"
_REVOKED_PATTERN: Final = f'"Revoked"{_WS}:{_WS}true'
_VAULT_VERSION = re.compile(rb"vault:v([0-9]{1,9}):")
_CREATED_TOKEN = re.compile(r"(-?[0-9]{1,11})(?:\.([0-9]{6}))?")
_SAFE_JSON_ID = re.compile(r"[A-Za-z0-9_.:@+=-]*")


@dataclass(frozen=True)
class Names:
    """This service's names, when the ASHERAH settings give them."""

    service: str
    product: str

    @property
    def ids(self) -> KeyIds:
        return KeyIds(self.service, self.product)

    @property
    def system_key_id(self) -> str:
        return self.ids.system

    def partition_of(self, key_id: str) -> str | None:
        """The partition of this service's intermediate key ``key_id``, else ``None``."""
        return self.ids.partition_of(key_id)

    def intermediate_key_id(self, partition: str) -> str:
        return self.ids.intermediate(partition)


@dataclass(frozen=True)
class Policy:
    """What the admin needs from the settings; ``problems`` says what could not be read."""

    names: Names | None
    expire_after: int
    database: str
    check_interval: int = DEFAULT_CHECK_INTERVAL
    problems: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls) -> Policy:
        problems: list[str] = []
        names: Names | None = None
        try:
            names = Names(asherah_settings.SERVICE_NAME, asherah_settings.PRODUCT_ID)
        except ConfigurationError as exc:
            problems.append(f"partitions are not shown: {exc}")
        try:
            expire_after = asherah_settings.EXPIRE_AFTER
        except ConfigurationError as exc:
            expire_after = DEFAULT_EXPIRE_AFTER
            problems.append(f"expiry uses the default of 90 days: {exc}")
        try:
            check_interval = asherah_settings.CHECK_INTERVAL
        except ConfigurationError:
            check_interval = DEFAULT_CHECK_INTERVAL
        try:
            database = asherah_settings.DATABASE
        except ConfigurationError as exc:
            database = "default"
            problems.append(f"reading the default database: {exc}")
        return cls(names, expire_after, database, check_interval, tuple(problems))

    def keys(self) -> QuerySet[EncryptionKey]:
        return EncryptionKey.objects.using(self.database).all()


# -- object ids ------------------------------------------------------------------------------


def created_token(created: datetime.datetime) -> str:
    """``created`` as epoch seconds (plus ``.ffffff`` when the column has microseconds)."""
    aware = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
    seconds = int(aware.replace(microsecond=0).timestamp())
    return f"{seconds}.{aware.microsecond:06d}" if aware.microsecond else str(seconds)


def object_id(key_id: str, created: datetime.datetime) -> str:
    """The admin's id for one key row (LogEntry.object_id, URLs): ``{key id}@{epoch}``."""
    return f"{key_id}@{created_token(created)}"


def meta_object_id(meta: KeyMeta) -> str:
    return f"{meta.key_id}@{meta.created}"


def parse_object_id(value: str) -> tuple[str, datetime.datetime]:
    """The ``(id, created)`` an object id names; ValueError if it cannot name a key row."""
    key_id, sep, token = value.rpartition("@")
    match = _CREATED_TOKEN.fullmatch(token)
    if not sep or match is None:
        raise ValueError("not a key reference")
    if not key_id or len(key_id) > 255 or not key_id.isprintable():
        raise ValueError("not a key id")
    seconds, micros = int(match.group(1)), int(match.group(2) or 0)
    try:
        created = datetime.datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)
    except (OverflowError, OSError, ValueError):
        raise ValueError("created is out of range") from None
    if created.year < 1900:
        raise ValueError("created is out of range")
    return key_id, created


# -- rows ------------------------------------------------------------------------------------


def vault_key_version(encrypted_key: bytes) -> int | None:
    """N of a Vault Transit ciphertext ``vault:vN:...`` (what an SK's Key holds with Vault)."""
    match = _VAULT_VERSION.match(encrypted_key)
    return int(match.group(1)) if match else None


def system_key_kms(encrypted_key: bytes) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Which KMS wraps a stored system key, and for AWS the (region, key ARN) pairs."""
    from ..core.kms.aws_envelope import describe

    if vault_key_version(encrypted_key) is not None:
        return "Vault Transit", ()
    regions = describe(encrypted_key)
    if regions is not None:
        return "AWS KMS", tuple((item["region"], item["arn"]) for item in regions)
    if len(encrypted_key) == 60:  # AES-256-GCM of 32 bytes under a master key
        return "a master key (static or Secrets Manager)", ()
    return "another KMS", ()


@dataclass(frozen=True)
class KeyRow:
    """One row of the metastore as the admin shows it: metadata only, never key bytes."""

    key_id: str
    created: datetime.datetime
    kind: str
    partition: str | None
    status: str
    is_latest: bool
    record_created: int | None = None
    parent: KeyMeta | None = None
    vault_version: int | None = None
    #: For system keys: the KMS kind that wraps it, judged from the stored bytes (issue 24).
    kms_kind: str | None = None
    #: For AWS KMS system keys: (region, key ARN) of each regional wrapping. Never bytes.
    kms_regions: tuple[tuple[str, str], ...] = ()
    key_size: int | None = None
    expires: datetime.datetime | None = None
    #: This service's key whose parent is not this service's system key: refused on read
    #: (KeyParentMismatchError), a sign of a substituted row (issue #13).
    foreign_parent: bool = False

    @property
    def object_id(self) -> str:
        return object_id(self.key_id, self.created)

    @property
    def parent_object_id(self) -> str | None:
        return meta_object_id(self.parent) if self.parent else None

    @property
    def parent_created_at(self) -> datetime.datetime | None:
        return _from_epoch(self.parent.created) if self.parent else None

    @property
    def record_created_at(self) -> datetime.datetime | None:
        return None if self.record_created is None else _from_epoch(self.record_created)

    @property
    def created_mismatch(self) -> bool:
        """The record's own Created differs from the column (it should never)."""
        return self.record_created is not None and str(self.record_created) != created_token(
            self.created
        )

    @property
    def revocable(self) -> bool:
        # Blind index key versions are retired by asherah_reindex once no index uses them;
        # retiring one still in use would make its rows unfindable.
        return self.kind not in (INTERNAL, BLIND_INDEX) and self.status not in (
            REVOKED,
            MALFORMED,
        )

    @property
    def kind_label(self) -> str:
        return KINDS.get(self.kind, "Unknown")

    @property
    def kind_title(self) -> str:
        """The kind as a title: System key, Intermediate key, Blind index key, Internal row
        or Unknown row."""
        return {
            SYSTEM: "System key",
            INTERMEDIATE: "Intermediate key",
            BLIND_INDEX: "Blind index key",
        }.get(self.kind, f"{self.kind_label} row")

    @property
    def status_label(self) -> str:
        if self.status == INTERNAL:
            return "Internal"
        if self.status == MALFORMED:
            return "Malformed"
        return STATUSES[self.status]


def _from_epoch(seconds: int) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def to_row(
    key: EncryptionKey, policy: Policy, *, is_latest: bool, now: datetime.datetime
) -> KeyRow:
    """Classify one stored row; its key bytes are parsed but never kept."""
    kind = kind_of(key.id)
    created = key.created if key.created.tzinfo else key.created.replace(tzinfo=UTC)
    partition = policy.names.ids.parse(key.id).partition if policy.names else None
    if kind == INTERNAL:
        return KeyRow(key.id, created, kind, None, INTERNAL, is_latest)
    try:
        record = EnvelopeKeyRecord.from_json(key.key_record)
    except MalformedRecordError:
        return KeyRow(key.id, created, kind, partition, MALFORMED, is_latest)
    expires = created + datetime.timedelta(seconds=policy.expire_after)
    if record.revoked:
        status = REVOKED
    elif kind == BLIND_INDEX:  # never expires: changes only by rotation
        status = CURRENT if is_latest else SUPERSEDED
    elif now > expires:  # Asherah's rule: expired once strictly past created + expiry
        status = EXPIRED
    else:
        status = CURRENT if is_latest else SUPERSEDED
    kms = system_key_kms(record.encrypted_key) if kind == SYSTEM else None
    return KeyRow(
        key_id=key.id,
        created=created,
        kind=kind,
        partition=partition,
        status=status,
        is_latest=is_latest,
        record_created=record.created,
        parent=record.parent,
        vault_version=vault_key_version(record.encrypted_key) if kind == SYSTEM else None,
        kms_kind=kms[0] if kms else None,
        kms_regions=kms[1] if kms else (),
        key_size=len(record.encrypted_key),
        expires=None if kind == BLIND_INDEX else expires,
        foreign_parent=(
            partition is not None
            and policy.names is not None
            and record.parent is not None
            and record.parent.key_id != policy.names.system_key_id
        ),
    )


def to_rows(keys: Sequence[EncryptionKey], policy: Policy, now: datetime.datetime) -> list[KeyRow]:
    """Rows for ``keys``, with "latest for its id" found in one query."""
    latest = latest_created(policy, {key.id for key in keys})
    return [
        to_row(key, policy, is_latest=latest.get(key.id) == key.created, now=now) for key in keys
    ]


def latest_created(policy: Policy, key_ids: Iterable[str]) -> dict[str, datetime.datetime]:
    """The newest ``created`` of each id (one grouped query on the primary key)."""
    ids = sorted(set(key_ids))
    if not ids:
        return {}
    rows = policy.keys().filter(id__in=ids).values_list("id").annotate(latest=Max("created"))
    return {key_id: latest for key_id, latest in rows}


def record_parent(key_record: str) -> KeyMeta | None:
    """The ParentKeyMeta of a stored record (``None`` if it has none or is malformed)."""
    try:
        return EnvelopeKeyRecord.from_json(key_record).parent
    except MalformedRecordError:
        return None


def masked_record(key_record: str) -> str:
    """The stored record as indented JSON with every value but the metadata masked."""
    try:
        obj = json.loads(key_record)
    except (ValueError, TypeError, RecursionError):
        return f"<not JSON: {len(key_record)} characters, not shown>"
    if not isinstance(obj, dict):
        return f"<not a JSON object: {len(key_record)} characters, not shown>"
    return json.dumps(_mask(obj), indent=2, ensure_ascii=False)


def _mask(obj: dict[str, object]) -> dict[str, object]:
    masked: dict[str, object] = {}
    for name, value in obj.items():
        metadata = name in ("Created", "Revoked") and isinstance(value, bool | int | None)
        if metadata or (name == "KeyId" and isinstance(value, str)):
            masked[name] = value
        elif name == "ParentKeyMeta" and isinstance(value, dict):
            masked[name] = _mask(value)
        elif name == "Key" and isinstance(value, str):
            masked[name] = f"<masked: {len(value)} base64 characters>"
        else:
            masked[name] = "<masked>"
    return masked


# -- filters and pages -----------------------------------------------------------------------


def revoked_q() -> Q:
    # The cheap substring test first: the regular expression then runs on few rows.
    return Q(key_record__contains='"Revoked"') & Q(key_record__regex=_REVOKED_PATTERN)


def internal_q() -> Q:
    return Q(id__startswith=prefix_of(KeyKind.INTERNAL))


def newer_exists_q(policy: Policy) -> Q:
    from django.db.models import Exists, OuterRef

    newer = policy.keys().filter(id=OuterRef("id"), created__gt=OuterRef("created"))
    return Q(Exists(newer))


def kind_q(kind: str) -> Q:
    if kind == UNKNOWN:
        known = [k for k in KeyKind if k is not KeyKind.FOREIGN]
        return ~Q(*[Q(id__startswith=prefix_of(k)) for k in known], _connector=Q.OR)
    return Q(id__startswith=prefix_of(KeyKind(kind)))


def status_q(status: str, policy: Policy, now: datetime.datetime) -> Q:
    """Rows with ``status`` (malformed records can only be told apart in Python)."""
    key = ~internal_q()
    if status == REVOKED:
        return key & revoked_q()
    expired = Q(created__lt=now - datetime.timedelta(seconds=policy.expire_after)) & ~Q(
        id__startswith=prefix_of(KeyKind.INDEX)
    )
    if status == EXPIRED:
        return key & ~revoked_q() & expired
    valid = key & ~revoked_q() & ~expired
    if status == CURRENT:
        return valid & ~newer_exists_q(policy)
    if status == SUPERSEDED:
        return valid & newer_exists_q(policy)
    raise ValueError(status)


def parent_q(parent: KeyMeta) -> Q:
    """A superset of the rows whose ParentKeyMeta is ``parent``: the exact test is
    :func:`has_parent`, made on the rows fetched."""
    q = Q(id__startswith=prefix_of(KeyKind.INTERMEDIATE)) & Q(
        key_record__contains=str(parent.created)
    )
    if _SAFE_JSON_ID.fullmatch(parent.key_id):  # spelled the same in every JSON encoder
        q &= Q(key_record__contains=json.dumps(parent.key_id))
    return q


@dataclass(frozen=True)
class ListQuery:
    """What the list shows: filters, search, order and the keyset cursor."""

    kind: str | None = None
    status: str | None = None
    search: str = ""
    partition: str | None = None
    parent: KeyMeta | None = None
    ascending: bool = False
    after: tuple[str, datetime.datetime] | None = None
    before: tuple[str, datetime.datetime] | None = None

    def filtered(self, policy: Policy, now: datetime.datetime) -> QuerySet[EncryptionKey]:
        keys = policy.keys()
        if self.kind:
            keys = keys.filter(kind_q(self.kind))
        if self.status:
            keys = keys.filter(status_q(self.status, policy, now))
        if self.search:
            keys = keys.filter(id__contains=self.search)
        if self.partition is not None:
            wanted = policy.names.intermediate_key_id(self.partition) if policy.names else None
            keys = keys.filter(id=wanted) if wanted else keys.none()
        if self.parent is not None:
            keys = keys.filter(parent_q(self.parent))
        return keys


@dataclass(frozen=True)
class Page:
    rows: list[KeyRow]
    first: KeyRow | None
    last: KeyRow | None
    has_next: bool
    has_previous: bool
    count: int
    count_is_bounded: bool


def page(query: ListQuery, policy: Policy, now: datetime.datetime) -> Page:
    """One keyset page: at most three queries (rows, latest per id, bounded count)."""
    keys = query.filtered(policy, now)
    backwards = query.before is not None
    ascending = query.ascending != backwards
    order = ("created", "id") if ascending else ("-created", "-id")
    cursor = query.before or query.after
    window = keys
    if cursor is not None:
        key_id, created = cursor
        if ascending:
            window = keys.filter(Q(created__gt=created) | Q(created=created, id__gt=key_id))
        else:
            window = keys.filter(Q(created__lt=created) | Q(created=created, id__lt=key_id))
    fetched = list(window.order_by(*order)[: PAGE_SIZE + 1])
    more = len(fetched) > PAGE_SIZE
    fetched = fetched[:PAGE_SIZE]
    if backwards:
        fetched.reverse()
    rows = to_rows(fetched, policy, now)
    first = rows[0] if rows else None
    last = rows[-1] if rows else None
    if query.parent is not None:
        rows = [row for row in rows if row.parent == query.parent]
    count = keys.order_by()[: COUNT_LIMIT + 1].count()
    return Page(
        rows=rows,
        first=first,
        last=last,
        has_next=more if not backwards else True,
        has_previous=more if backwards else query.after is not None,
        count=min(count, COUNT_LIMIT),
        count_is_bounded=count > COUNT_LIMIT,
    )

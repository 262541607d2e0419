"""Key ids: built and parsed in one place, exactly as every Asherah implementation spells them.

``_SK_{service}_{product}`` names the system key shared by a service/product pair;
``_IK_{partition}_{service}_{product}`` one partition's intermediate key chain;
``_BIDX__{service}_{product}`` (global) and ``_BIDX_{partition}_{service}_{product}`` this
package's blind index keys; ``__asherah_internal_...`` rows are the Rust core's bookkeeping.
There is no escaping: ids are plain concatenations, so every id of one service/product ends
with the same ``_{service}_{product}`` suffix (the manner of Go Asherah's ``partition.go``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .errors import ConfigurationError, InvalidPartitionError

#: The canonical SQL schema's ``id`` column is VARCHAR(255).
MAX_KEY_ID_LENGTH: Final = 255
SYSTEM_PREFIX: Final = "_SK_"
INTERMEDIATE_PREFIX: Final = "_IK_"
#: Every blind index key id starts with this.
INDEX_PREFIX: Final = "_BIDX_"
#: Rows with ids starting with this prefix are bookkeeping of the Rust core, never keys.
INTERNAL_PREFIX: Final = "__asherah_internal_"


class KeyKind(StrEnum):
    """What an id names, by its prefix alone (any service). The values are the admin's."""

    SYSTEM = "system"
    INTERMEDIATE = "intermediate"
    INDEX = "blind_index"
    INTERNAL = "internal"
    FOREIGN = "unknown"  # no Asherah prefix: a row some other program put in the table


#: Checked in this order (the internal prefix also starts with an underscore).
_PREFIXES: Final = (
    (INTERNAL_PREFIX, KeyKind.INTERNAL),
    (SYSTEM_PREFIX, KeyKind.SYSTEM),
    (INTERMEDIATE_PREFIX, KeyKind.INTERMEDIATE),
    (INDEX_PREFIX, KeyKind.INDEX),
)


def kind_of(key_id: str) -> KeyKind:
    """The kind of ``key_id`` by its prefix, whichever service it belongs to."""
    for prefix, kind in _PREFIXES:
        if key_id.startswith(prefix):
            return kind
    return KeyKind.FOREIGN


def prefix_of(kind: KeyKind) -> str:
    """The prefix ids of ``kind`` start with (none for FOREIGN)."""
    for prefix, known in _PREFIXES:
        if known is kind:
            return prefix
    raise ValueError(f"{kind} ids have no common prefix")


def is_internal_id(key_id: str) -> bool:
    """True for the Rust core's bookkeeping rows (config drift guard), which are not keys."""
    return key_id.startswith(INTERNAL_PREFIX)


@dataclass(frozen=True, slots=True)
class ParsedKeyId:
    """What :meth:`KeyIds.parse` found: the id's kind, whether it is this service's, and
    the partition of this service's intermediate or blind index key (None for a global
    blind index key, a system key, or an id of another service)."""

    kind: KeyKind
    ours: bool
    partition: str | None = None


class KeyIds:
    """Builds and parses every key id of one service/product pair."""

    __slots__ = ("suffix", "system")

    def __init__(self, service_name: str, product_id: str) -> None:
        #: ``_{service}_{product}``: how every id of this pair ends.
        self.suffix = f"_{service_name}_{product_id}"
        #: ``_SK_{service}_{product}``.
        self.system = f"_SK{self.suffix}"

    @classmethod
    def of_system_key(cls, system_key_id: str) -> KeyIds:
        """The codec of the pair whose system key id is ``system_key_id``."""
        if not system_key_id.startswith(SYSTEM_PREFIX):
            raise ValueError("not a system key id")
        ids = cls.__new__(cls)
        ids.suffix = system_key_id[len("_SK") :]
        ids.system = system_key_id
        return ids

    def __repr__(self) -> str:
        return f"<KeyIds {self.system}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyIds) and other.suffix == self.suffix

    def __hash__(self) -> int:
        return hash(self.suffix)

    # -- building -----------------------------------------------------------------------

    def intermediate(self, partition: str) -> str:
        """``_IK_{partition}_{service}_{product}`` (not validated: see :meth:`check_partition`)."""
        return f"{INTERMEDIATE_PREFIX}{partition}{self.suffix}"

    def index(self, partition: str | None) -> str:
        """``_BIDX__{service}_{product}`` (``partition=None``: global) or
        ``_BIDX_{partition}_{service}_{product}``; raises InvalidPartitionError."""
        if partition is None:
            return f"{INDEX_PREFIX}{self.suffix}"
        if not isinstance(partition, str) or not partition:
            raise InvalidPartitionError("partition id cannot be empty")
        return _checked(f"{INDEX_PREFIX}{partition}{self.suffix}", "blind index")

    def check_partition(self, partition_id: object) -> str:
        """Return ``partition_id`` if usable, else raise :class:`InvalidPartitionError`."""
        if not isinstance(partition_id, str):
            raise InvalidPartitionError(
                f"partition id must be a string, not {type(partition_id).__name__}"
            )
        if not partition_id:
            raise InvalidPartitionError("partition id cannot be empty")
        _checked(self.intermediate(partition_id), "intermediate")
        return partition_id

    # -- parsing ------------------------------------------------------------------------

    def parse(self, key_id: str) -> ParsedKeyId:
        """The kind of ``key_id``, whether it is this pair's, and its partition."""
        kind = kind_of(key_id)
        if kind is KeyKind.SYSTEM:
            return ParsedKeyId(kind, key_id == self.system)
        if kind is KeyKind.INTERMEDIATE or kind is KeyKind.INDEX:
            prefix = prefix_of(kind)
            if not key_id.endswith(self.suffix) or len(key_id) < len(prefix) + len(self.suffix):
                return ParsedKeyId(kind, False)
            return ParsedKeyId(kind, True, key_id[len(prefix) : -len(self.suffix)] or None)
        return ParsedKeyId(kind, False)

    def partition_of(self, key_id: str) -> str | None:
        """The partition of this pair's intermediate key ``key_id``, else None."""
        parsed = self.parse(key_id)
        return parsed.partition if parsed.kind is KeyKind.INTERMEDIATE else None

    # -- SQL filters --------------------------------------------------------------------

    def like(self, kind: KeyKind) -> tuple[str, str]:
        """``(prefix, suffix)`` of this pair's ids of ``kind`` (intermediate or index), for
        ``Q(id__startswith=prefix, id__endswith=suffix)``: a superset of them (a partition
        may itself end with the suffix), to confirm with :meth:`parse`."""
        if kind not in (KeyKind.INTERMEDIATE, KeyKind.INDEX):
            raise ValueError(f"{kind} ids are not filtered by prefix and suffix")
        return prefix_of(kind), self.suffix


def check_names(service_name: object, product_id: object) -> None:
    """Raise :class:`ConfigurationError` unless both names are usable non-empty strings."""
    for setting, value in (("SERVICE_NAME", service_name), ("PRODUCT_ID", product_id)):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{setting} must be a non-empty string")
        if len(KeyIds(value, "").system) > MAX_KEY_ID_LENGTH:
            raise ConfigurationError(f"{setting} is too long for the metastore key id column")


def _checked(key_id: str, kind: str) -> str:
    if len(key_id) > MAX_KEY_ID_LENGTH:
        raise InvalidPartitionError(
            f"partition id is too long: its {kind} key id would exceed "
            f"{MAX_KEY_ID_LENGTH} characters"
        )
    if not key_id.isprintable():
        raise InvalidPartitionError("partition id must not contain control characters")
    return key_id

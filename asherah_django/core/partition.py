"""Partition and name validation, and the two Asherah key ids (see :mod:`.key_ids`)."""

from __future__ import annotations

from .key_ids import (
    INTERNAL_PREFIX as INTERNAL_ID_PREFIX,
)
from .key_ids import (
    MAX_KEY_ID_LENGTH,
    KeyIds,
    check_names,
    is_internal_id,
)

__all__ = [
    "INTERNAL_ID_PREFIX",
    "MAX_KEY_ID_LENGTH",
    "check_names",
    "check_partition_id",
    "intermediate_key_id",
    "is_internal_id",
    "system_key_id",
]


def system_key_id(service_name: str, product_id: str) -> str:
    return KeyIds(service_name, product_id).system


def intermediate_key_id(partition_id: str, service_name: str, product_id: str) -> str:
    return KeyIds(service_name, product_id).intermediate(partition_id)


def check_partition_id(partition_id: object, service_name: str, product_id: str) -> str:
    """Return ``partition_id`` if usable, else raise :class:`InvalidPartitionError`."""
    return KeyIds(service_name, product_id).check_partition(partition_id)

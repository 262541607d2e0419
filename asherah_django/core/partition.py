"""Key-id naming, exactly as every Asherah implementation spells it.

``_SK_{service}_{product}`` names the system key shared by a service/product pair;
``_IK_{partition}_{service}_{product}`` names one partition's intermediate key chain.
There is no escaping: ids are plain concatenations.
"""

from __future__ import annotations

from .errors import ConfigurationError, InvalidPartitionError

#: The canonical SQL schema's ``id`` column is VARCHAR(255).
MAX_KEY_ID_LENGTH = 255
#: Rows with ids starting with this prefix are bookkeeping of the Rust core, never keys.
INTERNAL_ID_PREFIX = "__asherah_internal_"


def system_key_id(service_name: str, product_id: str) -> str:
    return f"_SK_{service_name}_{product_id}"


def intermediate_key_id(partition_id: str, service_name: str, product_id: str) -> str:
    return f"_IK_{partition_id}_{service_name}_{product_id}"


def check_names(service_name: object, product_id: object) -> None:
    """Raise :class:`ConfigurationError` unless both names are usable non-empty strings."""
    for setting, value in (("SERVICE_NAME", service_name), ("PRODUCT_ID", product_id)):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{setting} must be a non-empty string")
        if len(system_key_id(value, "")) > MAX_KEY_ID_LENGTH:
            raise ConfigurationError(f"{setting} is too long for the metastore key id column")


def check_partition_id(partition_id: object, service_name: str, product_id: str) -> str:
    """Return ``partition_id`` if usable, else raise :class:`InvalidPartitionError`."""
    if not isinstance(partition_id, str):
        raise InvalidPartitionError(
            f"partition id must be a string, not {type(partition_id).__name__}"
        )
    if not partition_id:
        raise InvalidPartitionError("partition id cannot be empty")
    key_id = intermediate_key_id(partition_id, service_name, product_id)
    if len(key_id) > MAX_KEY_ID_LENGTH:
        raise InvalidPartitionError(
            f"partition id is too long: its intermediate key id would exceed "
            f"{MAX_KEY_ID_LENGTH} characters"
        )
    if not key_id.isprintable():
        raise InvalidPartitionError("partition id must not contain control characters")
    return partition_id


def is_internal_id(key_id: str) -> bool:
    """True for the Rust core's bookkeeping rows (config drift guard), which are not keys."""
    return key_id.startswith(INTERNAL_ID_PREFIX)

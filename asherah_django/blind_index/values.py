"""The index values of plaintexts: the one written now, and those a lookup compares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import runtime
from .keyring import IndexKeys, KeyVersion, index_keys
from .options import SourceField, index_input


def current_keys() -> IndexKeys:
    """The blind index keys of the process-wide SessionFactory."""
    return index_keys(runtime.get_session_factory())


def write_value(field: SourceField, value: Any, partition: str | None) -> str:
    """The index value of plaintext ``value`` under the current key version."""
    config = field.blind_config
    keys = current_keys()
    version = keys.write_version(keys.key_id(partition if config.scope == "partition" else None))
    return version.index_value(
        config.context, config.profile, index_input(field, value), config.digest_size
    )


def lookup_values(field: SourceField, inputs: Iterable[bytes], partition: str | None) -> list[str]:
    """The index values ``inputs`` may be stored as (one per live key version)."""
    config = field.blind_config
    keys = current_keys()
    versions: tuple[KeyVersion, ...] = keys.lookup_versions(
        keys.key_id(partition if config.scope == "partition" else None)
    )
    found: dict[str, None] = {}
    context, profile, size = config.context, config.profile, config.digest_size
    for data in inputs:
        for version in versions:
            found[version.index_value(context, profile, data, size)] = None
    return list(found)

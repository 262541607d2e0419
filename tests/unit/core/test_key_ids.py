"""The key-id codec: every id kind built and parsed by one object, as Asherah spells them."""

from __future__ import annotations

import pytest

from asherah_django.core.errors import InvalidPartitionError
from asherah_django.core.key_ids import (
    MAX_KEY_ID_LENGTH,
    KeyIds,
    KeyKind,
    ParsedKeyId,
    is_internal_id,
    kind_of,
)

IDS = KeyIds("svc", "prod")


def test_builds_every_kind_as_asherah_spells_it() -> None:
    assert IDS.system == "_SK_svc_prod"
    assert IDS.intermediate("a_b") == "_IK_a_b_svc_prod"
    assert IDS.index(None) == "_BIDX__svc_prod"
    assert IDS.index("t1") == "_BIDX_t1_svc_prod"
    assert IDS.suffix == "_svc_prod"


@pytest.mark.parametrize(
    ("key_id", "parsed"),
    [
        ("_SK_svc_prod", ParsedKeyId(KeyKind.SYSTEM, ours=True)),
        ("_SK_other_prod", ParsedKeyId(KeyKind.SYSTEM, ours=False)),
        ("_IK_a_b_svc_prod", ParsedKeyId(KeyKind.INTERMEDIATE, True, "a_b")),
        ("_IK_a_other_prod", ParsedKeyId(KeyKind.INTERMEDIATE, False)),
        ("_BIDX__svc_prod", ParsedKeyId(KeyKind.INDEX, True, None)),
        ("_BIDX_t1_svc_prod", ParsedKeyId(KeyKind.INDEX, True, "t1")),
        ("_BIDX_t1_svc_other", ParsedKeyId(KeyKind.INDEX, False)),
        ("__asherah_internal_drift", ParsedKeyId(KeyKind.INTERNAL, False)),
        ("something_svc_prod", ParsedKeyId(KeyKind.FOREIGN, False)),
    ],
)
def test_parses_every_kind(key_id: str, parsed: ParsedKeyId) -> None:
    assert IDS.parse(key_id) == parsed
    assert kind_of(key_id) is parsed.kind


def test_parse_inverts_build() -> None:
    for partition in ("t", "a_b", "_", "x_svc_prod", "é"):
        assert IDS.parse(IDS.intermediate(partition)).partition == partition
        assert IDS.parse(IDS.index(partition)).partition == partition
        assert IDS.partition_of(IDS.intermediate(partition)) == partition
    assert IDS.partition_of(IDS.index("t")) is None  # an index key has no intermediate partition


def test_kind_values_are_the_admins_filter_values() -> None:
    assert [k.value for k in KeyKind] == [
        "system",
        "intermediate",
        "blind_index",
        "internal",
        "unknown",
    ]
    assert is_internal_id("__asherah_internal_x") and not is_internal_id("_SK_svc_prod")


def test_like_gives_the_sql_prefix_and_suffix() -> None:
    assert IDS.like(KeyKind.INTERMEDIATE) == ("_IK_", "_svc_prod")
    assert IDS.like(KeyKind.INDEX) == ("_BIDX_", "_svc_prod")
    with pytest.raises(ValueError, match="not filtered"):
        IDS.like(KeyKind.SYSTEM)


def test_of_system_key_is_the_same_codec() -> None:
    assert KeyIds.of_system_key("_SK_svc_prod") == IDS
    assert KeyIds.of_system_key("_SK_svc_prod").intermediate("t") == "_IK_t_svc_prod"
    with pytest.raises(ValueError, match="not a system key id"):
        KeyIds.of_system_key("_IK_t_svc_prod")


def test_validation_refuses_unusable_partitions() -> None:
    assert IDS.check_partition("t") == "t"
    for bad, message in ((3, "must be a string"), ("", "cannot be empty"), ("a\nb", "control")):
        with pytest.raises(InvalidPartitionError, match=message):
            IDS.check_partition(bad)
    with pytest.raises(InvalidPartitionError, match="intermediate key id would exceed"):
        IDS.check_partition("x" * MAX_KEY_ID_LENGTH)
    with pytest.raises(InvalidPartitionError, match="blind index key id would exceed"):
        IDS.index("x" * MAX_KEY_ID_LENGTH)
    with pytest.raises(InvalidPartitionError, match="cannot be empty"):
        IDS.index("")

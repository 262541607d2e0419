"""The read hot paths (issue 21): values opened inline by the descriptor and values()
decrypted with the query's session must decide exactly as the general path does."""

from __future__ import annotations

import json
from typing import Any

import pytest

import asherah_django
from asherah_django.core.errors import DecryptionError, PartitionMismatchError
from asherah_django.fields import SealedValue
from asherah_django.fields.reading import ReadingField
from asherah_django.signals import decryption_failed
from tests.testapp.models import AllTypes, Secret
from tests.unit.fields.conftest import raw_column, unique, write_raw

pytestmark = pytest.mark.django_db


@pytest.fixture
def failures() -> Any:
    seen: list[Exception] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs["error"])

    decryption_failed.connect(receiver)
    yield seen
    decryption_failed.disconnect(receiver)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records opened by the general path (``open_sealed``), in order."""
    seen: list[str] = []
    general = ReadingField.open_sealed

    def spy(self: ReadingField, instance: Any, sealed: SealedValue) -> Any:
        seen.append(sealed.record)
        return general(self, instance, sealed)

    monkeypatch.setattr(ReadingField, "open_sealed", spy)
    return seen


def _tampered(record: str) -> str:
    obj = json.loads(record)
    data = bytearray(obj["Data"].encode())
    data[5] = ord("A") if data[5] != ord("A") else ord("B")
    obj["Data"] = data.decode()
    return json.dumps(obj)


def test_a_query_opens_its_first_value_by_the_general_path_and_the_rest_inline(
    opened: list[str],
) -> None:
    bodies = [f"secret {i}" for i in range(5)]
    with asherah_django.session(unique()):
        Secret.objects.bulk_create([Secret(body=body) for body in bodies])
        assert [s.body for s in Secret.objects.order_by("pk")] == bodies
        assert len(opened) == 1
        opened.clear()
        assert [s.body for s in Secret.objects.order_by("pk").iterator(chunk_size=2)] == bodies
        assert len(opened) == 1  # (iterator: one pending record at a time, nothing to preload)


def test_a_value_is_never_opened_inline_under_another_partition() -> None:
    alice = unique("alice")
    with asherah_django.session(alice):
        Secret.objects.bulk_create([Secret(body="a1"), Secret(body="a2")])
        first, second = Secret.objects.order_by("pk")
        assert first.body == "a1"  # the batch has now opened alice's partition
    with asherah_django.session(unique("bob")), pytest.raises(PartitionMismatchError):
        second.body  # noqa: B018
    assert type(second.__dict__["body"]) is SealedValue  # nothing kept
    with asherah_django.session(alice):
        assert second.body == "a2"


def test_a_tampered_value_met_inline_raises_and_is_reported(
    failures: list[Exception], opened: list[str]
) -> None:
    with asherah_django.session(unique()):
        _, bad = Secret.objects.bulk_create([Secret(body="good"), Secret(body="bad")])
        write_raw(Secret, bad.pk, "body", _tampered(raw_column(Secret, bad.pk, "body")))
        first, second = Secret.objects.order_by("pk")
        assert first.body == "good"
        with pytest.raises(DecryptionError, match="authentication failed"):
            second.body  # noqa: B018
        assert type(second.__dict__["body"]) is SealedValue
    assert len(opened) == 2  # the failure went to the general path, which reported it
    assert [type(error) for error in failures] == [DecryptionError]


def test_values_list_decrypts_with_the_open_partition_and_refuses_what_it_must(
    failures: list[Exception],
) -> None:
    alice, bob = unique("alice"), unique("bob")
    with asherah_django.session(alice):
        Secret.objects.bulk_create([Secret(body="a1"), Secret(body="a2")])
        assert list(Secret.objects.order_by("pk").values_list("body", flat=True)) == ["a1", "a2"]
    with asherah_django.session(bob), pytest.raises(PartitionMismatchError):
        list(Secret.objects.values_list("body", flat=True))
    pk = Secret.objects.order_by("pk").values_list("pk", flat=True)[1]
    write_raw(Secret, pk, "body", _tampered(raw_column(Secret, pk, "body")))
    with asherah_django.session(alice), pytest.raises(DecryptionError, match="authentication"):
        list(Secret.objects.values_list("body", flat=True))
    assert DecryptionError in [type(error) for error in failures]


def test_every_type_reads_alike_through_instances_iterator_and_values() -> None:
    values = {
        "text": "t",
        "char": "c",
        "number": -5,
        "data": {"k": [1, "x"]},
        "day": AllTypes._meta.get_field("day").to_python("2024-02-29"),
    }
    with asherah_django.session(unique()):
        AllTypes.objects.bulk_create([AllTypes(**values), AllTypes(**values)])
        fields = list(values)
        expected = [tuple(values.values())] * 2
        assert [tuple(getattr(o, f) for f in fields) for o in AllTypes.objects.all()] == expected
        got = [tuple(getattr(o, f) for f in fields) for o in AllTypes.objects.iterator()]
        assert got == expected
        assert list(AllTypes.objects.values_list(*fields)) == expected

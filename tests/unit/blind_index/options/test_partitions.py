"""Per-partition index keys: index values of different tenants are unrelated; a lookup
searches the partition ANDed in the same query, else the open session's; unique=True is
unique per partition (database and validation)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

import asherah_django
from asherah_django.core.errors import NoActiveSessionError
from asherah_django.models import EncryptionKey
from tests.bidxapp.models import SessionContact, TenantContact
from tests.unit.blind_index.conftest import digest_of, raw_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def contacts() -> dict[str, TenantContact]:
    return {
        t: TenantContact.objects.create(tenant_id=t, email="same@example.org")
        for t in ("acme", "globex")
    } | {"acme2": TenantContact.objects.create(tenant_id="acme", email="two@example.org")}


def test_equal_values_of_two_tenants_have_unrelated_index_values(contacts: dict) -> None:
    acme = raw_row(TenantContact, contacts["acme"].pk, "email_bidx")[0]
    globex = raw_row(TenantContact, contacts["globex"].pk, "email_bidx")[0]
    assert digest_of(acme) != digest_of(globex)
    ids = set(EncryptionKey.objects.filter(id__startswith="_BIDX_").values_list("id", flat=True))
    assert {"_BIDX_acme_testsvc_testprod", "_BIDX_globex_testsvc_testprod"} <= ids


def test_a_lookup_searches_the_partition_anded_in_the_query(contacts: dict) -> None:
    acme, globex = contacts["acme"], contacts["globex"]
    assert TenantContact.objects.get(tenant_id="acme", email="SAME@example.org") == acme
    assert TenantContact.objects.filter(tenant_id="globex").get(email="same@example.org") == globex
    assert list(TenantContact.objects.filter(Q(tenant_id="acme") & Q(email="two@example.org"))) == [
        contacts["acme2"]
    ]
    assert list(
        TenantContact.objects.filter(tenant_id="acme").exclude(email="same@example.org")
    ) == [contacts["acme2"]]
    assert list(TenantContact.objects.filter(tenant_id="acme", email__in=["same@example.org"])) == [
        acme
    ]
    # two different partitions ANDed: nothing can match
    assert (
        not TenantContact.objects.filter(tenant_id="acme", email="same@example.org")
        .filter(tenant_id="globex")
        .exists()
    )


def test_else_the_open_session_and_else_a_clear_error(contacts: dict) -> None:
    with asherah_django.session("globex"):
        assert TenantContact.objects.get(email="same@example.org") == contacts["globex"]
        assert not TenantContact.objects.filter(email="two@example.org").exists()
    with pytest.raises(NoActiveSessionError, match="filter on tenant_id in the same filter"):
        TenantContact.objects.filter(email="same@example.org").exists()
    with pytest.raises(NoActiveSessionError):  # an OR does not fix the partition
        TenantContact.objects.filter(Q(tenant_id="acme") | Q(email="same@example.org")).count()


def test_unique_is_per_partition(contacts: dict) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        TenantContact.objects.create(tenant_id="acme", email="Same@Example.org")
    clash = TenantContact(tenant_id="globex", email="TWO@example.org")
    clash.full_clean()  # no such value in globex
    clash.tenant_id = "acme"
    with pytest.raises(ValidationError) as info:
        clash.full_clean()  # needs no session: the row's partition is searched
    assert list(info.value.message_dict) == ["email"]
    contacts["acme"].full_clean()  # a row does not clash with itself
    assert not TenantContact._meta.get_field("email").unique


def test_session_partitioned_values_search_the_open_session() -> None:
    with asherah_django.session("s1"):
        one = SessionContact.objects.create(email="x@example.org")
    with asherah_django.session("s2"):
        two = SessionContact.objects.create(email="x@example.org")
        assert SessionContact.objects.get(email="x@example.org") == two
    with asherah_django.session("s1"):
        assert SessionContact.objects.get(email="x@example.org") == one
    with pytest.raises(NoActiveSessionError, match="per partition"):
        SessionContact.objects.filter(email="x@example.org").exists()


def test_shredding_a_partition_destroys_its_index_key_too(contacts: dict) -> None:
    from asherah_django.maintenance.summary import Summary
    from asherah_django.rotation.keys import shred_partition
    from asherah_django.runtime import get_session_factory

    summary = Summary()
    shred_partition(get_session_factory(), "acme", summary)
    ids = set(EncryptionKey.objects.filter(id__startswith="_BIDX_").values_list("id", flat=True))
    assert "_BIDX_acme_testsvc_testprod" not in ids
    assert "_BIDX_globex_testsvc_testprod" in ids
    assert any("blind index key version(s) of _BIDX_acme" in line for line in summary.lines)
    # The shredded tenant's index values can no longer be recomputed: lookups find nothing.
    assert not TenantContact.objects.filter(tenant_id="acme", email="same@example.org").exists()
    assert TenantContact.objects.filter(tenant_id="globex", email="same@example.org").exists()

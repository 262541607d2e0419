"""Shredding clears the blind indexes of the partition's rows (issue #14 item 2).

Before, only partition-scoped index keys were destroyed: a global-scope index still let
anyone who can query confirm a guess (``filter(email="guess@example.org")``) about a
shredded row. Now every blind index column of rows whose value is under a destroyed
intermediate key is NULL, for session-partitioned (global index) and row-partitioned
(partition index) fields alike; other partitions' rows keep theirs.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

import asherah_django
from tests.bidxapp.models import Customer, TenantContact
from tests.unit.management.commands.conftest import run_command, unique


def index_of(model: Any, pk: Any, column: str) -> Any:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(column)} FROM {quote(model._meta.db_table)} WHERE id = %s",
            [pk],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_shred_clears_the_partitions_blind_indexes(settings: Any) -> None:
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": unique("sbi")}
    with asherah_django.session("victim"):
        victim = Customer.objects.create(email="guess@example.org", nickname="nick", account=7)
    with asherah_django.session("other"):
        other = Customer.objects.create(email="keep@example.org", nickname="nick", account=7)
    contacts = {
        t: TenantContact.objects.create(tenant_id=t, email="same@example.org")
        for t in ("victim", "other")
    }
    assert Customer.objects.filter(email="guess@example.org").exists()  # before: it confirms

    status, out, _ = run_command("asherah_rotate", "--shred-partition", "victim", "--yes")
    assert status == 0, out
    assert "blind index value(s) of bidxapp.Customer.email cleared" in out

    assert not Customer.objects.filter(email="guess@example.org").exists()
    assert list(Customer.objects.filter(nickname="nick")) == [other]
    assert list(Customer.objects.filter(account=7)) == [other]
    assert Customer.objects.get(email="keep@example.org") == other
    for column in ("email_bidx", "nickname_bidx", "account_bidx"):
        assert index_of(Customer, victim.pk, column) is None
        assert index_of(Customer, other.pk, column) is not None
    assert index_of(TenantContact, contacts["victim"].pk, "email_bidx") is None
    assert index_of(TenantContact, contacts["other"].pk, "email_bidx") is not None
    assert TenantContact.objects.filter(tenant_id="other", email="same@example.org").exists()

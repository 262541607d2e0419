"""django-filter over encrypted fields: exact/in/iexact through the blind index, a 400
(never a 500) for anything else; DjangoFilterBackend; the admin's search box."""

from __future__ import annotations

from typing import Any

import django_filters
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_filters.exceptions import FieldLookupError

import asherah_django
from asherah_django.contrib.django_filters import EncryptedFilterSet
from tests.hygiene import assert_clean_text
from tests.integration.integrations.urls import ContactFilter
from tests.integrationsapp.models import Contact

pytestmark = pytest.mark.django_db

A = {"HTTP_X_TENANT": "tenant-a"}


@pytest.fixture
def contacts(api: Any) -> Any:
    with asherah_django.session("tenant-a"):
        for name, email, code in [("Ann", "ann@x.org", "K1"), ("Bob", "Bob@X.org", "k1")]:
            Contact.objects.create(name=name, email=email, code=code, bio="secret bio")
        Contact.objects.create(name="Cy", email="cy@x.org")
    return api


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["name"] for row in response.json()]


def test_exact_in_and_iexact_through_the_blind_index(contacts: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert names(contacts.get("/api/contacts/?email=BOB@x.org", **A)) == ["Bob"]
    assert any("email_bidx" in q["sql"] for q in queries.captured_queries)
    assert names(contacts.get("/api/contacts/?email__iexact=ANN@X.ORG", **A)) == ["Ann"]
    assert names(contacts.get("/api/contacts/?email_in=ann@x.org,cy@x.org", **A)) == ["Ann", "Cy"]
    assert names(contacts.get("/api/contacts/?code=K1", **A)) == ["Ann"]  # exact: no casefold
    assert names(contacts.get("/api/contacts/?email=nobody@x.org", **A)) == []
    assert names(contacts.get("/api/contacts/?order=-id", **A)) == ["Cy", "Bob", "Ann"]


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ("bio=secret", "bio", "has no blind index"),
        ("score_gt=3", "score_gt", "has no blind index"),
        ("order=bio", "order", "cannot sort"),
    ],
)
def test_impossible_lookups_are_a_400_that_says_why(
    contacts: Any, query: str, field: str, says: str
) -> None:
    if field == "order":  # OrderingFilter only offers its fields: add an encrypted one

        class Sorting(ContactFilter):
            order = django_filters.OrderingFilter(fields=["bio"])

        filterset = Sorting({"order": "bio"}, queryset=Contact.objects.all())
        assert not filterset.is_valid()
        assert says in filterset.errors["order"][0]
        return
    response = contacts.get(f"/api/contacts/?{query}", **A)
    assert response.status_code == 400
    message = response.json()[field][0]
    assert says in message and "integrations_app.Contact" in message
    assert_clean_text(response.content.decode(), "DRF filter error body")


def test_iexact_on_an_index_that_does_not_casefold_is_refused_when_defined() -> None:
    with pytest.raises(FieldLookupError):

        class Bad(EncryptedFilterSet):
            class Meta:
                model = Contact
                fields = {"code": ["iexact"]}


def test_a_lookup_the_index_cannot_answer_on_a_declared_filter_is_a_400(contacts: Any) -> None:
    class Contains(EncryptedFilterSet):
        email = django_filters.CharFilter(lookup_expr="icontains")

        class Meta:
            model = Contact
            fields: list[str] = []

    filterset = Contains({"email": "ann"}, queryset=Contact.objects.all())
    assert not filterset.is_valid()
    assert "answers only exact matches (exact, in, iexact), not 'icontains'" in str(
        filterset.errors["email"][0]
    )


def test_without_the_mixin_it_is_the_500_of_a_plain_filterset(contacts: Any) -> None:
    contacts.raise_request_exception = False
    response = contacts.get("/api/plain-contacts/?bio=x", **A)
    # DRF's handler gets the FieldError: our exception handler still makes it a 400
    assert response.status_code == 400
    assert "unsupported lookup 'icontains'" in response.json()["detail"]


def test_admin_search_matches_blind_indexed_fields_exactly(contacts: Any) -> None:
    admin_user = User.objects.create_superuser("root", "root@example.org", "pw")
    client = Client()
    client.force_login(admin_user)
    url = "/admin/integrations_app/contact/"
    with asherah_django.session("tenant-a"):
        ann = Contact.objects.get(email="ann@x.org")
    found = client.get(url, {"q": "ANN@x.org"}, **A)
    assert found.status_code == 200
    assert found.context["cl"].search_fields == ["=email", "code", "bio", "id"]  # the box
    assert found.context["cl"].result_count == 1
    by_code = client.get(url, {"q": "k1"}, **A)
    assert by_code.context["cl"].result_count == 1  # code matches exactly ("k1": Bob)
    by_id = client.get(url, {"q": str(ann.pk)}, **A)
    assert by_id.context["cl"].result_count == 1  # the plain field still searched
    nothing = client.get(url, {"q": "secret"}, **A)  # bio: no index, not searched
    assert nothing.status_code == 200 and nothing.context["cl"].result_count == 0

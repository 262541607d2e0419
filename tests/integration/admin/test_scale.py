"""The key list with 100,000 keys: a bounded number of queries and no full-table work per
page (keyset pages on the indexed created column, a bounded count)."""

from __future__ import annotations

import datetime
import html
import re
import time
from typing import Any

import pytest
from django.test import Client

from asherah_django.admin.keys import COUNT_LIMIT, PAGE_SIZE
from asherah_django.models import EncryptionKey

from .conftest import ik_record, vault_sk_record

pytestmark = pytest.mark.slow

KEYS = 100_000
LIST = "/admin/asherah_django/encryptionkey/"
#: Session, user, the user's and groups' permissions, page rows, latest per id, bounded count.
MAX_QUERIES = 7


@pytest.fixture
def many_keys(db: None) -> dict[str, Any]:
    """One system key and 99,999 intermediate keys over 200 days (some expired, some
    revoked, some with two versions), inserted in bulk."""
    now = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
    start = now - datetime.timedelta(days=200)
    sk = ("_SK_testsvc_testprod", start)
    rows = [EncryptionKey(id=sk[0], created=start, key_record=vault_sk_record(start, 4))]
    step = datetime.timedelta(days=200) / KEYS
    for i in range(1, KEYS):
        created = (start + step * i).replace(second=0, microsecond=0)
        partition = f"p{i - 5:06d}" if i % 10 == 0 else f"p{i:06d}"  # some keys: 2 versions
        rows.append(
            EncryptionKey(
                id=f"_IK_{partition}_testsvc_testprod",
                created=created,
                key_record=ik_record(created, sk, revoked=i % 50 == 0),
            )
        )
    began = time.monotonic()
    EncryptionKey.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
    return {"sk": sk, "seconds": time.monotonic() - began}


def staff_client() -> Client:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_encryptionkey"))
    client = Client()
    client.force_login(user)
    return client


def test_list_of_100000_keys_has_bounded_queries(
    many_keys: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    assert EncryptionKey.objects.count() > 0.99 * KEYS
    client = staff_client()
    timings: dict[str, float] = {}

    def get(label: str, url: str) -> str:
        began = time.monotonic()
        with django_assert_max_num_queries(MAX_QUERIES):
            response = client.get(url)
        timings[label] = time.monotonic() - began
        assert response.status_code == 200, url
        return response.content.decode()

    def next_link(text: str) -> str:
        match = re.search(r'href="([^"]*)" id="page-next"', text)
        assert match
        return LIST + html.unescape(match.group(1))

    text = get("first page", LIST)
    assert text.count('class="key-row"') == PAGE_SIZE
    assert f"more than {COUNT_LIMIT} keys" in text
    for page in range(2, 6):
        text = get(f"page {page}", next_link(text))
    assert text.count('class="key-row"') == PAGE_SIZE
    get("oldest first", LIST + "?o=created")
    for query in ("status=current", "status=revoked", "status=expired", "status=superseded"):
        text = get(query, f"{LIST}?{query}")
        assert 'class="key-row"' in text, query
    get("kind=system", LIST + "?kind=system")
    text = get("search", LIST + "?q=p04999")
    assert "_IK_p049991_testsvc_testprod" in text
    text = get("partition", LIST + "?partition=p049995")
    assert text.count('class="key-row"') == 2  # two versions
    sk_detail = "_5FSK_5Ftestsvc_5Ftestprod_40" + str(int(many_keys["sk"][1].timestamp()))
    began = time.monotonic()
    with django_assert_max_num_queries(MAX_QUERIES + 6):
        response = client.get(f"{LIST}{sk_detail}/change/")
    timings["system key detail"] = time.monotonic() - began
    assert response.status_code == 200 and b"Showing the newest 100" in response.content
    print(
        f"\n100,000 keys inserted in {many_keys['seconds']:.1f} s; page times: "
        + ", ".join(f"{label} {seconds * 1000:.0f} ms" for label, seconds in timings.items())
    )
    assert max(timings.values()) < 20  # generous: the machine is shared

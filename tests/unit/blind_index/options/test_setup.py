"""The blind index tests need tests.bidxapp installed; say so instead of failing to import."""

from __future__ import annotations

import pytest

from tests.unit.blind_index.conftest import INSTALLED


def test_bidxapp_is_installed_and_has_its_index_columns() -> None:
    if not INSTALLED:
        pytest.skip(
            "the blind index tests need 'tests.bidxapp' in INSTALLED_APPS (tests/settings.py)"
        )
    from asherah_django.fields import BlindIndexField
    from tests.bidxapp.models import Customer

    assert isinstance(Customer._meta.get_field("email_bidx"), BlindIndexField)

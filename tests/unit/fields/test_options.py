"""Sessions remembered per partition (:func:`asherah_django.fields.options.session_for`)."""

from __future__ import annotations

import pytest

from asherah_django import runtime
from asherah_django.fields import options
from tests.unit.fields.conftest import unique

pytestmark = pytest.mark.django_db


def test_sessions_are_remembered_per_partition_until_the_factory_changes() -> None:
    partition = unique()
    session = options.session_for(partition)
    assert options.session_for(partition) is session
    assert options.session_for(unique()) is not session
    runtime.reset_session_factory()
    again = options.session_for(partition)
    assert again is not session
    assert again._factory is runtime.get_session_factory()


def test_no_session_is_remembered_when_the_policy_caches_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    factory = runtime.get_session_factory()
    monkeypatch.setattr(factory, "policy", type(factory.policy)(cache_sessions=False))
    partition = unique()
    assert options.session_for(partition) is not options.session_for(partition)

"""KeyCache: bounded, CLOCK eviction that spares a key used since it last reached the front."""

from __future__ import annotations

import pytest

from asherah_django.core.cache import KeyCache
from asherah_django.core.keys import CryptoKey
from asherah_django.core.records import KeyMeta


def key(name: str) -> CryptoKey:
    return CryptoKey(KeyMeta(name, 1), bytes(range(32)))


def test_a_cache_holds_at_least_one_key() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        KeyCache(0)


def test_a_key_read_since_it_last_reached_the_front_is_spared_once() -> None:
    cache = KeyCache(2)
    a, b, c, d = key("a"), key("b"), key("c"), key("d")
    cache.put(a)
    cache.put(b)
    cache.put(c)  # every key is new (referenced): one sweep clears them, then a goes
    assert set(cache.entries) == {b.meta, c.meta} and not a.usable
    assert cache.get(b.meta) is b  # b is read again: it gets a second chance
    cache.put(d)
    assert set(cache.entries) == {b.meta, d.meta}, "the read key was evicted"
    assert not c.usable and b.usable

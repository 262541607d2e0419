"""The binding header (asherah_django.core.binding), without Django: canonical, and a
bound record never decrypts under another binding."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asherah_django.core import InMemoryMetastore, SessionFactory, StaticKMS
from asherah_django.core.binding import Binding, has_header, parse_header, unbind
from asherah_django.core.errors import BindingMismatchError, UnboundRecordError

KEY = bytes(range(32))
texts = st.text(max_size=12)
bindings = st.builds(
    lambda label, pairs: (label, tuple(pairs)),
    st.text(min_size=1, max_size=12),
    st.lists(st.tuples(texts, texts), max_size=3),
)


def header(binding: tuple[str, tuple[tuple[str, str], ...]]) -> bytes:
    label, pairs = binding
    return Binding(label, [n for n, _ in pairs]).header([v for _, v in pairs])


@pytest.fixture(scope="module")
def session():  # type: ignore[no-untyped-def]
    factory = SessionFactory("svc", "prod", StaticKMS(KEY), InMemoryMetastore())
    yield factory.get_session("p")
    factory.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=bindings, second=bindings, value=st.binary(max_size=64))
def test_a_bound_record_never_decrypts_under_another_binding(
    session,
    first,
    second,
    value,  # type: ignore[no-untyped-def]
) -> None:
    record = session.encrypt(header(first) + value)
    plaintext = session.decrypt(record)
    assert unbind(header(first), plaintext) == value
    if first == second:
        assert header(first) == header(second)
        return
    assert header(first) != header(second)  # canonical: distinct bindings, distinct headers
    with pytest.raises(BindingMismatchError):
        unbind(header(second), plaintext)
    with pytest.raises(BindingMismatchError):
        unbind(header(second), plaintext, accept_unbound=True)  # bound: never "unbound"


@given(binding=bindings)
def test_the_header_parses_back(binding) -> None:  # type: ignore[no-untyped-def]
    data = header(binding)
    assert has_header(data)
    assert parse_header(data + b"value") == (binding[0], binding[1], len(data))


@given(value=st.binary(max_size=64).filter(lambda v: not v.startswith(b"\xffAB")))
def test_unbound_values(value: bytes) -> None:
    expected = header(("app.model.field", (("id", "1"),)))
    with pytest.raises(UnboundRecordError, match=r"app\.model\.field: the value is not bound"):
        unbind(expected, value)
    assert unbind(expected, value, accept_unbound=True) == value


@given(cut=st.integers(min_value=0, max_value=40), junk=st.binary(max_size=8))
def test_broken_headers_are_refused(cut: int, junk: bytes) -> None:
    expected = header(("app.model.field", (("id", "1"),)))
    other = header(("app.model.field", (("id", "2"),)))
    broken = other[: min(cut, len(other) - 1)] + junk
    if broken.startswith(expected):
        return
    if not has_header(broken):
        with pytest.raises(UnboundRecordError):
            unbind(expected, broken)
        return
    with pytest.raises(BindingMismatchError):
        unbind(expected, broken)


def test_text_never_looks_bound() -> None:
    """\\xff never occurs in UTF-8: no text value written unbound is taken as bound."""
    assert not any(
        has_header(chr(c).encode() + b"AB") for c in range(0x110000) if not 0xD800 <= c < 0xE000
    )
    assert parse_header(header(("l", ())))[:2] == ("l", ())
    with pytest.raises(BindingMismatchError, match="unknown format version"):
        parse_header(b"\xffAB\x02" + bytes(4))

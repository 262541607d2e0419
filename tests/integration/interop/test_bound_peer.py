"""Bound records and the ``asherah`` wheel (Asherah's Rust core), live: the wheel reads a
bound record as a standard DataRowRecord and gets the header followed by the value (what
README says other implementations see); a record the wheel writes is unbound, so a bound
field refuses it unless it accepts unbound values (a column being converted)."""

from __future__ import annotations

import pytest

from asherah_django.core import SessionFactory
from asherah_django.core.binding import Binding, unbind
from asherah_django.core.errors import UnboundRecordError

pytest.importorskip("asherah", reason="the asherah wheel is in the test extras")

from tests.integration.interop.test_asherah_peer import db_path, ours, peer  # noqa: F401

pytestmark = pytest.mark.interop
BINDING = Binding("app.patient.diagnosis", ["id"])


def test_the_peer_decrypts_a_bound_record_to_header_and_value(peer, ours: SessionFactory) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    header = BINDING.header(["0b5c8a4e-0000-4000-8000-000000000001"])
    record = ours.get_session("alice").encrypt(header + b"flu")
    plain = peer.get_session("alice").decrypt_bytes(record)
    assert plain == header + b"flu"
    assert unbind(header, plain) == b"flu"


def test_a_record_the_peer_writes_is_unbound(peer, ours: SessionFactory) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    header = BINDING.header(["1"])
    record = peer.get_session("alice").encrypt_bytes(b"flu")
    plain = ours.get_session("alice").decrypt(record)
    with pytest.raises(UnboundRecordError):
        unbind(header, plain)
    assert unbind(header, plain, accept_unbound=True) == b"flu"

"""asherah_erase refuses, with clear messages and before changing anything that matters:
another service's system key below the new floor, missing Vault permissions, the static
KMS without a new master key, and a writer that keeps creating keys under a retired system
key (a Go/Rust-style writer with a long cache), after which ``--resume`` finishes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.db import connections

from asherah_django import runtime
from asherah_django.core import CryptoPolicy, SessionFactory
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.metastore import DjangoMetastore
from asherah_django.rotation import erase_rows
from tests.unit.management.commands.conftest import Vault, run_command

from .erase_support import erase_policy, signing_key

pytestmark = pytest.mark.django_db(transaction=True)


def _setup(settings: Any, vault: Vault, **overrides: Any) -> dict[str, Any]:
    signer = signing_key(vault)
    asherah = vault.asherah(vault.token(erase_policy(vault, signer)), **overrides)
    settings.ASHERAH = asherah
    settings.ASHERAH = {**settings.ASHERAH, "ERASURE_SIGNING_KEY": signer}
    return asherah


def test_refuses_another_services_system_key_below_the_floor(
    settings: Any, vault: Vault, tmp_path: Path
) -> None:
    asherah = _setup(settings, vault)
    factory = runtime.get_session_factory()
    record = factory.get_session("victim").encrypt(b"x")
    other_store = DjangoMetastore()
    other = SessionFactory(
        f"{vault.service}-other", "prod", VaultTransitKMS.from_mapping(asherah), other_store
    )
    other.get_session("p").encrypt(b"y")  # its system key: the same Transit key, version 1
    with pytest.raises(CommandError, match="another service's system key shares this master key"):
        run_command("asherah_erase", "victim", "--receipt", str(tmp_path / "r.json"))
    assert factory.get_session("victim").decrypt(record) == b"x"  # nothing was erased
    info = vault.bao.api("GET", f"transit/keys/{vault.key}")["data"]
    assert info["latest_version"] == 1 and info["min_decryption_version"] == 1
    other.close()
    other_store.close()


def test_refuses_missing_permissions(settings: Any, vault: Vault, tmp_path: Path) -> None:
    signer = signing_key(vault)
    settings.ASHERAH = vault.asherah(vault.token(erase_policy(vault, signer, sign=False)))
    settings.ASHERAH = {**settings.ASHERAH, "ERASURE_SIGNING_KEY": signer}
    runtime.get_session_factory().get_session("victim").encrypt(b"x")
    with pytest.raises(CommandError, match=f"missing update on transit/sign/{signer}"):
        run_command("asherah_erase", "victim", "--receipt", str(tmp_path / "r.json"))
    assert vault.bao.api("GET", f"transit/keys/{vault.key}")["data"]["latest_version"] == 1


def test_refuses_the_static_kms_without_a_new_master_key(settings: Any, tmp_path: Path) -> None:
    runtime.get_session_factory().get_session("victim").encrypt(b"x")
    with pytest.raises(CommandError, match="pass --new-static-master-key-hex"):
        run_command("asherah_erase", "victim", "--receipt", str(tmp_path / "r.json"))


def test_refuses_a_writer_that_ignores_the_new_system_key_then_resumes(
    settings: Any, vault: Vault, tmp_path: Path
) -> None:
    asherah = _setup(settings, vault)
    factory = runtime.get_session_factory()
    kept = factory.get_session("keep").encrypt(b"kept")
    factory.get_session("victim").encrypt(b"x")
    # A writer that keeps its system key cached for an hour (as a Go or Rust service with
    # a long check interval would): it creates keys under the old one during the erasure.
    foreign_store = DjangoMetastore()
    foreign = SessionFactory(
        vault.service, "prod", VaultTransitKMS.from_mapping(asherah), foreign_store,
        CryptoPolicy(check_interval=3600),
    )  # fmt: skip
    foreign.get_session("warm").encrypt(b"w")
    stop, made = threading.Event(), []

    def write() -> None:
        count = 0
        try:
            while not stop.is_set():
                partition = f"foreign-{count}"
                made.append((partition, foreign.get_session(partition).encrypt(b"f")))
                count += 1
                stop.wait(0.02)
        finally:
            connections.close_all()  # this thread's own (SQLite: the key) connection

    thread = threading.Thread(target=write)
    thread.start()
    receipt = str(tmp_path / "r.json")
    try:
        with pytest.raises(CommandError, match="another Asherah writer is active"):
            run_command(
                "asherah_erase", "victim", "--receipt", receipt, "--grace", "1", "--poll", "1"
            )
    finally:
        stop.set()
        thread.join()
    # Nothing retired yet: the old system key row is still there, the floor unchanged.
    store = DjangoMetastore()
    sk_rows = list(erase_rows.read_rows(store, key_id=factory.system_key_id))
    assert len(sk_rows) == 2
    assert vault.bao.api("GET", f"transit/keys/{vault.key}")["data"]["min_decryption_version"] == 1
    status, _out, err = run_command(
        "asherah_erase", "victim", "--receipt", receipt, "--resume", "--grace", "0", "--poll", "0.2"
    )
    assert status == 0, err
    runtime.reset_session_factory()
    live = runtime.get_session_factory()
    assert live.get_session("keep").decrypt(kept) == b"kept"
    assert all(live.get_session(p).decrypt(r) == b"f" for p, r in made)
    assert len(list(erase_rows.read_rows(store, key_id=factory.system_key_id))) == 1
    foreign.close()
    foreign_store.close()
    store.close()

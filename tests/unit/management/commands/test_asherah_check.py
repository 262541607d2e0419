"""asherah_check against a real OpenBao server and the test database.

Outputs are compared exactly, after replacing what changes from run to run (the server's
address and version, this test's key and service names, times and durations).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from asherah_django import health
from asherah_django.admin import health as admin_health
from asherah_django.testing.openbao import free_port
from tests.unit.management.commands.conftest import Vault, run_command, unique
from tests.unit.management.commands.jsonshape import problems

pytestmark = [pytest.mark.vault, pytest.mark.django_db(transaction=True)]

HINT_CONNECTION = (
    "verify VAULT_ADDR is correct and Vault is reachable; check firewall rules between this "
    "application and Vault"
)


def normalize(text: str, vault: Vault) -> str:
    text = text.replace(vault.bao.addr, "<ADDR>").replace(vault.key, "<KEY>")
    text = text.replace(vault.service, "<SVC>").replace(connection.vendor, "<VENDOR>")
    text = re.sub(r"Vault \d+\.\d+\.\d+\S* at", "Vault <VERSION> at", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", "<TIME>", text)
    text = re.sub(r"crypto=(C accelerator|pure Python)", "crypto=<CRYPTO>", text)
    return re.sub(r"\b\d+[dhms](\d+[hms])?\b", "<DUR>", text)


HEALTHY = """\
settings          OK    KMS=vault (token auth), METASTORE=django (database 'default'), SERVICE_NAME=<SVC>, PRODUCT_ID=prod, crypto=<CRYPTO>
vault.server      OK    Vault <VERSION> at <ADDR>: initialized, unsealed, active; plain http
vault.login       OK    token auth: token TTL <DUR>, renewable; policies default, full-<KEY>
vault.transit_key OK    transit key '<KEY>' on mount 'transit' exists (aes256-gcm96, latest version 1); token may encrypt, decrypt, rewrap
vault.key_config  OK    aes256-gcm96, latest version 1, min_decryption_version 1, auto_rotate_period <DUR>, deletion_allowed=false, exportable=false
kms.round_trip    OK    encrypted and decrypted 32 random bytes with transit key '<KEY>' (key version 1)
metastore         OK    table 'encryption_key' in database 'default' (<VENDOR>): present, migrations applied, readable
"""


def test_healthy_setup_passes_with_exit_status_0(vault: Vault, settings: object) -> None:
    settings.ASHERAH = vault.asherah()  # type: ignore[attr-defined]
    status, out, err = run_command("asherah_check", "--write")
    assert (status, err) == (0, "")
    assert normalize(out, vault) == HEALTHY + (
        "system_key        OK    no system key _SK_<SVC>_prod yet: the first write creates one\n"
        "write             OK    encrypted and decrypted through partition 'asherah-health' "
        "with intermediate key _IK_asherah-health_<SVC>_prod created <TIME>\n"
        "asherah_check: OK: 9 checks, 9 OK, 0 WARN, 0 FAIL\n"
    )
    # The write created the system key; a second run describes it.
    status, out, _ = run_command("asherah_check")
    assert status == 0
    assert normalize(out, vault) == HEALTHY + (
        "system_key        OK    _SK_<SVC>_prod created <TIME> (<DUR> old), expires <TIME> "
        "(in <DUR>), not revoked, wrapped under Vault key version 1; stored versions by Vault "
        "key version: v1: 1\n"
        "asherah_check: OK: 8 checks, 8 OK, 0 WARN, 0 FAIL\n"
    )


def test_json_output_validates_against_the_documented_shape(vault: Vault, settings: object) -> None:
    settings.ASHERAH = vault.asherah(VAULT_TRANSIT_KEY=vault.key)  # type: ignore[attr-defined]
    status, out, _ = run_command("asherah_check", "--json", "--write")
    document = json.loads(out)
    assert status == 0
    assert problems(document, health.REPORT_SCHEMA) == []
    # (key_integrity runs only with KEY_INTEGRITY sign or require: tests/unit/test_key_tags.py;
    # aws.* only with KMS=aws: tests/integration/aws/test_check.py)
    names = [n for n in health.CHECK_NAMES if n != "key_integrity" and not n.startswith("aws.")]
    assert [c["name"] for c in document["checks"]] == names
    assert document["counts"] == {"OK": 9, "WARN": 0, "FAIL": 0}
    assert document["checks"][2]["data"]["renewable"] is True
    # The validator is not vacuous: it rejects a document that breaks the shape.
    broken = {**document, "status": "MAYBE", "checks": [{**document["checks"][0], "x": 1}]}
    assert len(problems(broken, health.REPORT_SCHEMA)) == 2
    # A failing run has the same shape.
    settings.ASHERAH = vault.asherah(VAULT_ADDR="http://127.0.0.1:9")  # type: ignore[attr-defined]
    status, out, _ = run_command("asherah_check", "--json")
    assert status == 1
    assert problems(json.loads(out), health.REPORT_SCHEMA) == []


def test_token_without_decrypt_capability_fails(vault: Vault, settings: object) -> None:
    policy = vault.policy(
        f"encrypt-only-{vault.key}",
        f'path "transit/encrypt/{vault.key}" {{ capabilities = ["update"] }}\n'
        f'path "transit/keys/{vault.key}" {{ capabilities = ["read"] }}\n',
    )
    settings.ASHERAH = vault.asherah(vault.token(policy))  # type: ignore[attr-defined]
    status, out, _ = run_command("asherah_check")
    assert status == 1
    lines = normalize(out, vault).splitlines()
    assert lines[3] == (
        "vault.transit_key FAIL  the token may not decrypt with transit key '<KEY>' "
        "(capabilities transit/decrypt/<KEY>: deny) | hint: the authenticated token doesn't "
        "have the asherah-transit policy; check `vault token capabilities "
        "transit/decrypt/<KEY>`"
    )
    assert lines[5] == (
        "kms.round_trip    FAIL  Vault Transit decrypt failed: 1 error occurred: permission "
        "denied (VAULT_ADDR=<ADDR>, mount=transit, key=<KEY>) | hint: the authenticated "
        "token's policies do not allow this (the asherah-transit policy grants "
        "transit/encrypt/<KEY> and transit/decrypt/<KEY>); check with `vault token "
        "capabilities transit/decrypt/<KEY>`"
    )
    assert lines[-1] == "asherah_check: FAIL: 8 checks, 6 OK, 0 WARN, 2 FAIL"


@pytest.mark.parametrize("readable", [True, False], ids=["key-readable", "transit-policy-only"])
def test_missing_transit_key_fails(vault: Vault, settings: object, readable: bool) -> None:
    missing = f"{vault.key}-missing"
    hcl = transit = f'path "transit/encrypt/{missing}" {{ capabilities = ["update"] }}\n'
    transit += f'path "transit/decrypt/{missing}" {{ capabilities = ["update"] }}\n'
    hcl = transit + (f'path "transit/keys/{missing}" {{ capabilities = ["read"] }}\n' * readable)
    token = vault.token(vault.policy(f"p-{missing}-{readable}", hcl))
    settings.ASHERAH = vault.asherah(token, VAULT_TRANSIT_KEY=missing)  # type: ignore[attr-defined]
    status, out, _ = run_command("asherah_check")
    assert status == 1
    lines = normalize(out, vault).splitlines()
    assert lines[3] == (
        "vault.transit_key FAIL  transit key '<KEY>-missing' does not exist on mount 'transit' "
        "(VAULT_ADDR=<ADDR>) | hint: create it (`vault write transit/keys/<KEY>-missing "
        "type=aes256-gcm96`), or fix VAULT_TRANSIT_KEY and VAULT_TRANSIT_MOUNT"
    )
    if readable:
        assert lines[4] == (
            "vault.key_config  FAIL  not checked: transit key '<KEY>-missing' does not exist "
            "(see vault.transit_key) | hint: fix vault.transit_key first"
        )
    else:
        assert lines[4].startswith(  # least privilege by design: not a warning (issue #14)
            "vault.key_config  OK    not checked: this token may not read the configuration "
            "of transit key '<KEY>-missing'"
        )
    assert lines[5].startswith(
        "kms.round_trip    FAIL  Vault Transit encrypt failed: 1 error occurred: permission denied"
    )


MIGRATIONS = ("0001_initial", "0002_encryptionkey_integrity_tag", "0003_erasurereceipt")


def test_missing_migrations_fail(vault: Vault, settings: object) -> None:
    settings.ASHERAH = vault.asherah()  # type: ignore[attr-defined]
    call_command("migrate", "asherah_django", "zero", verbosity=0)
    try:
        status, out, _ = run_command("asherah_check")
        lines = normalize(out, vault).splitlines()
        assert status == 1
        assert lines[-3:] == [
            "metastore         FAIL  the metastore table 'encryption_key' does not exist in "
            "database 'default' | hint: run manage.py migrate asherah_django --database default",
            "system_key        FAIL  not checked: metastore failed | hint: fix metastore first",
            "asherah_check: FAIL: 8 checks, 6 OK, 0 WARN, 2 FAIL",
        ]
    finally:
        call_command("migrate", "asherah_django", verbosity=0)
    # The table is back but the migration is no longer recorded (e.g. a hand-made table).
    recorder = MigrationRecorder(connection)
    for name in MIGRATIONS:
        recorder.record_unapplied("asherah_django", name)
    try:
        status, out, _ = run_command("asherah_check")
        assert status == 1
        assert normalize(out, vault).splitlines()[-3] == (
            "metastore         FAIL  asherah_django migrations not applied in database "
            f"'default': {', '.join(MIGRATIONS)} | hint: run manage.py "
            "migrate asherah_django --database default (an existing Asherah table is adopted "
            "with --fake-initial)"
        )
    finally:
        for name in MIGRATIONS:
            recorder.record_applied("asherah_django", name)


@pytest.fixture
def hung_vault() -> Iterator[str]:
    """A loopback socket that accepts connections (the kernel does) and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()  # resets the queued connections: the abandoned check ends now
        assert health.wait_for_abandoned(15)


def test_hung_vault_fails_within_the_timeout(
    vault: Vault, settings: object, hung_vault: str
) -> None:
    # Vault's own read timeout is long; only the per-check deadline can end this quickly.
    settings.ASHERAH = vault.asherah(VAULT_ADDR=hung_vault, VAULT_TIMEOUT=60)  # type: ignore[attr-defined]
    started = time.monotonic()
    status, out, _ = run_command("asherah_check", "--timeout", "1")
    elapsed = time.monotonic() - started
    assert status == 1
    assert elapsed < 4, elapsed
    lines = out.replace(hung_vault, "<ADDR>").splitlines()
    assert lines[1:6] == [
        "vault.server      FAIL  no answer within 1s: Vault hangs (vault.server was abandoned) "
        "| hint: Vault did not answer in time: check Vault's health and load and the network "
        "path, or raise VAULT_TIMEOUT / VAULT_CONNECT_TIMEOUT",
        "vault.login       FAIL  not checked: vault.server failed | hint: fix vault.server first",
        "vault.transit_key FAIL  not checked: vault.login failed | hint: fix vault.login first",
        "vault.key_config  FAIL  not checked: vault.login failed | hint: fix vault.login first",
        "kms.round_trip    FAIL  not checked: vault.login failed | hint: fix vault.login first",
    ]
    assert lines[6].startswith("metastore         OK ")


def test_vault_stopped_then_back_check_and_readiness_view(
    vault: Vault, settings: object, client: object
) -> None:
    """asherah_check fails with Vault's connection error while it is stopped; the readiness
    view answers 503 then, and 200 once Vault is back."""
    settings.ASHERAH = vault.asherah()  # type: ignore[attr-defined]
    settings.ROOT_URLCONF = "tests.unit.management.commands.urls"  # type: ignore[attr-defined]
    assert client.get("/ready/").status_code == 200  # type: ignore[attr-defined]
    vault.bao.stop()
    try:
        status, out, _ = run_command("asherah_check")
        lines = normalize(out, vault).splitlines()
        assert status == 1
        assert lines[1] == (
            "vault.server      FAIL  Vault health request failed: connection refused "
            f"(VAULT_ADDR=<ADDR>, mount=transit, key=<KEY>) | hint: {HINT_CONNECTION}"
        )
        assert lines[2] == (
            "vault.login       FAIL  not checked: vault.server failed | hint: fix vault.server first"
        )
        response = client.get("/ready/")  # type: ignore[attr-defined]
        assert (response.status_code, response.json()) == (503, {"status": "FAIL"})
    finally:
        vault.bao.start()
    response = client.get("/ready/")  # type: ignore[attr-defined]
    assert (response.status_code, response.json()) == (200, {"status": "OK"})
    assert response["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    assert run_command("asherah_check")[0] == 0


def test_warnings_only_exit_with_status_2(vault: Vault, settings: object) -> None:
    """The upstream minimal policy cannot read the key's configuration: by design, so not
    a warning (issue #14); with read access, a risky setting is a warning."""
    policy = vault.policy(f"transit-{vault.key}", _transit_only(vault.key))
    settings.ASHERAH = vault.asherah(vault.token(policy))  # type: ignore[attr-defined]
    vault.bao.api("POST", f"transit/keys/{vault.key}/config", {"deletion_allowed": True})
    status, out, _ = run_command("asherah_check")
    lines = normalize(out, vault).splitlines()
    assert status == 0
    assert lines[3] == (
        "vault.transit_key OK    transit key '<KEY>' on mount 'transit' exists (its "
        "configuration is not readable with this token); token may encrypt, decrypt"
    )
    assert lines[4] == (
        "vault.key_config  OK    not checked: this token may not read the configuration of "
        "transit key '<KEY>' (the least-privilege asherah-transit policy); run asherah_check "
        "with a token that also has the asherah-rotate policy to check deletion_allowed, "
        "exportable, min_decryption_version and auto_rotate_period"
    )
    # With read access, the risky setting itself is reported.
    settings.ASHERAH = vault.asherah()  # type: ignore[attr-defined]
    status, out, _ = run_command("asherah_check")
    assert status == 2
    assert normalize(out, vault).splitlines()[4] == (
        "vault.key_config  WARN  deletion_allowed=true: deleting the key would make every "
        "encrypted value unreadable | hint: `vault write transit/keys/<KEY>/config "
        "deletion_allowed=false`"
    )


def _transit_only(key: str) -> str:
    return (
        f'path "transit/encrypt/{key}" {{ capabilities = ["update"] }}\n'
        f'path "transit/decrypt/{key}" {{ capabilities = ["update"] }}\n'
    )


def test_system_check_framework_runs_the_live_checks(vault: Vault, settings: object) -> None:
    """``check --deploy --tag asherah``: live failures are Errors with stable ids."""
    health.register_checks()
    try:
        settings.ASHERAH = vault.asherah()  # type: ignore[attr-defined]
        status, out, _ = run_command(
            "check", "--deploy", "--tag", "asherah", "--database", "default"
        )
        assert (status, out) == (0, "System check identified no issues (0 silenced).\n")
        policy = vault.policy(f"enc-{vault.key}", _transit_only(vault.key).splitlines()[0])
        settings.ASHERAH = vault.asherah(vault.token(policy))  # type: ignore[attr-defined]
        with pytest.raises(Exception, match=r"asherah\.E403") as raised:
            call_command("check", "--deploy", "--tag", "asherah")
        text = normalize(str(raised.value), vault)
        assert "?: (asherah.E403) vault.transit_key: the token may not decrypt" in text
        assert "?: (asherah.E405) kms.round_trip: Vault Transit decrypt failed" in text
        # The key's configuration is not readable, by the policy's design: no warning.
        assert "asherah.W404" not in text
        assert "metastore" not in text  # no --database: the database is left alone
    finally:
        health.unregister_checks()
    assert set(health.LIVE_CHECK_IDS).isdisjoint(_static_ids())


def _static_ids() -> set[str]:
    from asherah_django.checks import CHECK_IDS

    return set(CHECK_IDS) | {f"asherah.E30{n}" for n in range(1, 7)}  # the fields' checks


def test_admin_health_panel_reads_these_results(vault: Vault, settings: object) -> None:
    settings.ASHERAH = vault.asherah()  # type: ignore[attr-defined]
    report = admin_health.run()
    assert report.available
    assert report.error == ""
    vault_run = [  # not write, nor key_integrity (off), nor aws.* (KMS=aws only)
        n for n in health.CHECK_NAMES[:-1] if n != "key_integrity" and not n.startswith("aws.")
    ]
    assert [r.name for r in report.results] == vault_run
    assert report.worst == "OK"


def test_static_kms_has_no_vault_checks_and_fails_the_deploy_rule(settings: object) -> None:
    """tests/settings.py: the static KMS with DEBUG off is the static E101 check's error."""
    service = unique("static")
    settings.ASHERAH = {**settings.ASHERAH, "SERVICE_NAME": service}  # type: ignore[attr-defined]
    status, out, _ = run_command("asherah_check")
    assert status == 1
    assert out.replace(connection.vendor, "<VENDOR>").replace(service, "<SVC>") == (
        "settings          FAIL  KMS=static keeps the master key in process memory; it is for "
        "tests and local development only, and DEBUG is False [asherah.E101] | hint: set "
        "ASHERAH['KMS'] in settings.py or the ASHERAH_KMS (or KMS) environment variable to "
        "vault and configure "
        "Vault Transit (VAULT_ADDR, VAULT_TRANSIT_KEY and an auth method)\n"
        "kms.round_trip    OK    encrypted and decrypted 32 random bytes with the static KMS "
        "(master key in process memory)\n"
        "metastore         OK    table 'encryption_key' in database 'default' (<VENDOR>): "
        "present, migrations applied, readable\n"
        "system_key        OK    no system key _SK_<SVC>_testprod yet: the first write "
        "creates one\n"
        "asherah_check: FAIL: 4 checks, 3 OK, 0 WARN, 1 FAIL\n"
    )
    settings.DEBUG = True  # type: ignore[attr-defined]
    assert run_command("asherah_check")[0] == 0


@pytest.mark.parametrize("dead_first", [True, False], ids=["dead-node-first", "live-node-first"])
def test_a_node_list_names_every_node_tried_and_the_one_that_answered(
    vault: Vault, settings: object, dead_first: bool
) -> None:
    """VAULT_ADDR listing a dead loopback port and the live server: vault.server names the
    node that answered (not just the first listed) and every node it tried."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    live = vault.bao.addr
    nodes = [dead, live] if dead_first else [live, dead]
    settings.ASHERAH = vault.asherah(VAULT_ADDR=",".join(nodes))  # type: ignore[attr-defined]
    status, out, err = run_command("asherah_check")
    assert (status, err) == (0, "")
    tried = f"{dead}, {live}" if dead_first else live
    # (not normalize(): the dead port may start with the live one's digits)
    [line] = [row for row in out.splitlines() if row.startswith("vault.server")]
    assert re.sub(r"Vault \d+\.\d+\.\d+\S* at", "Vault <VERSION> at", line) == (
        f"vault.server      OK    Vault <VERSION> at {live} (VAULT_ADDR lists 2 nodes; tried "
        f"{tried}; {live} answered): initialized, unsealed, active; plain http"
    )
    status, out, _ = run_command("asherah_check", "--json")
    assert status == 0
    document = json.loads(out)
    assert problems(document, health.REPORT_SCHEMA) == []
    [server] = [c for c in document["checks"] if c["name"] == "vault.server"]
    assert server["data"]["nodes"] == nodes
    assert server["data"]["tried"] == ([dead, live] if dead_first else [live])
    assert server["data"]["answered"] == server["data"]["addr"] == live

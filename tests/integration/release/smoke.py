"""Smoke test of an installed asherah_django (sdist or wheel), run by tests/integration/release and by
cibuildwheel in a fresh environment, outside the checkout: a tiny Django project with the
static KMS on SQLite migrates, encrypts and decrypts a value through the ORM, and
``asherah_check`` reports the crypto path, which must be the expected one.

    python smoke.py --expect accelerator|pure
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect", choices=("accelerator", "pure"), required=True)
    expect = parser.parse_args().expect
    workdir = Path(tempfile.mkdtemp(prefix="asherah-smoke-"))
    (workdir / "smoke_settings.py").write_text(
        "SECRET_KEY = 'smoke'\n"
        "INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth', 'asherah_django']\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', "
        f"'NAME': {str(workdir / 'db.sqlite3')!r}}}}}\n"
        "USE_TZ = True\nDEBUG = True  # the static KMS is refused by the deploy checks otherwise\n"
        "ASHERAH = {'SERVICE_NAME': 'smoke', 'PRODUCT_ID': 'release', 'KMS': 'static',\n"
        f"           'STATIC_MASTER_KEY_HEX': {secrets.token_hex(32)!r}}}\n"
    )
    sys.path.insert(0, str(workdir))
    os.environ["DJANGO_SETTINGS_MODULE"] = "smoke_settings"
    import django
    from django.core.management import call_command

    django.setup()
    import asherah_django
    from asherah_django.core.records import looks_like_data_row

    call_command("migrate", verbosity=0)
    factory = asherah_django.get_session_factory()
    with asherah_django.session("tenant-1"):
        record = factory.get_session("tenant-1").encrypt(b"smoke plaintext")
        assert looks_like_data_row(record), "not a DataRowRecord"
        assert factory.get_session("tenant-1").decrypt(record) == b"smoke plaintext"
    out = io.StringIO()
    status: object = 0
    try:
        call_command("asherah_check", stdout=out)
    except SystemExit as exit_:  # exit status 2: warnings only
        status = exit_.code
    assert status in (0, 2), out.getvalue()
    report = out.getvalue()
    wanted = "crypto=C accelerator" if expect == "accelerator" else "crypto=pure Python"
    settings_line = next(line for line in report.splitlines() if line.startswith("settings"))
    assert wanted in settings_line, settings_line
    print(f"asherah_django {asherah_django.__version__} from {asherah_django.__file__}")
    print(settings_line)
    print("smoke OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

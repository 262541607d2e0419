"""The first hour of a new user, end to end (issue 20): a project made from scratch with
``django-admin startproject``, the installed package, and the docs' snippets as written (taken
from README.md and docs/ here, so they cannot drift), against a real OpenBao started by the quick start's own
local-development command.

The path: migrate without warnings (in a hosting platform's environment: ``DATABASE``,
``SERVICE_NAME``, ... set for other purposes); rows of two tenants readable in the admin
(session-partitioned and row-partitioned fields); a plain ModelAdmin's page for a row of
another partition (no 500); ``asherah_encrypt`` of existing plaintext columns, then normal
reads; ``dumpdata``; the local server restarted with the data still readable; and pytest,
with and without the plugin's fixtures, while the server is down.

Every step runs in a subprocess of the project, as a newcomer would run it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from asherah_django.testing.openbao import free_port
from tests.integration.docs import sources

PYTHON = sys.executable
TIMEOUT = 180
pytestmark = [pytest.mark.vault, pytest.mark.slow]

#: What a hosting platform puts in every process's environment, for its own purposes.
PLATFORM = {
    "DATABASE": "postgres://platform:pw@db.platform.internal:5432/app",
    "SERVICE_NAME": "platform-web-7f9c",
    "PRODUCT_ID": "platform",
    "METASTORE": "s3",
    "EXPIRE_AFTER": "soon",
}


def readme_block(lang: str, marker: str) -> str:
    """The one code block of ``lang`` containing ``marker`` in README.md or docs/ (list
    items' blocks too)."""
    return sources.block(lang, marker)


def readme_command(marker: str) -> list[str]:
    """The command line after ``marker`` in a README shell block (comments dropped)."""
    lines = [
        line.split("#", 1)[0].strip()
        for line in readme_block("sh", marker).splitlines()
        if not line.lstrip().startswith("#")
    ]
    return shlex.split(next(line for line in lines if line))


def token_policies(env: dict[str, str]) -> list[str]:
    """The policies of the app's token, as the server reports them (never root)."""
    request = urllib.request.Request(
        f"{env['VAULT_ADDR']}/v1/auth/token/lookup-self",
        headers={"X-Vault-Token": env["VAULT_TOKEN"]},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        policies: list[str] = json.load(response)["data"]["policies"]
    return sorted(policies)


class Project:
    """The new project in ``root``: runs its commands and scripts in subprocesses."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.steps = 0

    def run(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYTHON, *args],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("manage.py", *args, check=check)

    def script(self, code: str) -> Any:
        """Run ``code`` with Django set up; it sets ``result``, returned (through JSON)."""
        self.steps += 1
        path = self.root / f"step_{self.steps}.py"
        path.write_text(
            "import json, django\ndjango.setup()\nresult = None\n"
            + textwrap.dedent(code)
            + "\nprint('RESULT=' + json.dumps(result))\n"
        )
        out = self.run(path.name).stdout
        return json.loads(out.rsplit("RESULT=", 1)[1])

    def write(self, relative: str, text: str, *, append: bool = False) -> None:
        path = self.root / relative
        with path.open("a" if append else "w", encoding="utf-8") as file:
            file.write(("\n" if append else "") + text)


class DevVault:
    """README's local-development server, run as README says (port and dir made unique)."""

    def __init__(self, project: Project) -> None:
        command = readme_command("python -m asherah_django.testing.devvault")
        assert command[:3] == ["python", "-m", "asherah_django.testing.devvault"], command
        command[command.index("--port") + 1] = str(free_port())
        self.command = [PYTHON, *command[1:]]
        self.dir = project.root / command[command.index("--dir") + 1]
        self.project = project
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> dict[str, str]:
        env_file = self.dir / "env"
        env_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            self.command,
            cwd=self.project.root,
            env=self.project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not env_file.exists():
            assert self.process.poll() is None, self.process.communicate()[0]
            assert time.monotonic() < deadline, "the local server did not start"
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written in one go; let it close
        # README: `source .openbao/env`
        assert "source .openbao/env" in readme_block("sh", "point the app at it")
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in env_file.read_text().splitlines()
            if line.startswith("export ")
        )
        assert {"VAULT_ADDR", "VAULT_TRANSIT_KEY", "VAULT_TOKEN"} <= set(exports)
        return exports

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C, as README says
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("VAULT_", "BAO_", "PYTEST_", "DJANGO_"))
        and not (name.startswith("ASHERAH_") and not name.startswith("ASHERAH_DJANGO_"))
        and name not in ("KMS", "DATABASE_URL", "PYTHONPATH", "STATIC_MASTER_KEY_HEX")
    }
    env.update(PLATFORM, DJANGO_SETTINGS_MODULE="mysite.settings", PYTHONWARNINGS="ignore")
    env.pop("PYTHONDEVMODE", None)
    (tmp_path / "mysite").mkdir()
    subprocess.run(
        [PYTHON, "-m", "django", "startproject", "mysite", str(tmp_path / "mysite")],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    made = Project(tmp_path / "mysite", env)
    made.manage("startapp", "notes")
    return made


def test_newcomer_path(project: Project) -> None:
    # -- the project, from README's snippets ------------------------------------------------
    project.write("mysite/settings.py", readme_block("python", "# settings.py"), append=True)
    project.write(
        "mysite/settings.py",
        "INSTALLED_APPS += ['notes']\n"
        "# the project's tenancy middleware (sets request.tenant), before Asherah's\n"
        "MIDDLEWARE.insert(-1, 'mysite.tenancy.TenantMiddleware')\n",
        append=True,
    )
    project.write("mysite/partitions.py", readme_block("python", "def tenant_partition"))
    project.write(
        "mysite/tenancy.py",
        textwrap.dedent(
            """\
            from types import SimpleNamespace


            class TenantMiddleware:  # a stand-in for the project's tenancy (e.g. a subdomain)
                def __init__(self, get_response):
                    self.get_response = get_response

                def __call__(self, request):
                    tenant = request.headers.get("X-Tenant")
                    request.tenant = SimpleNamespace(pk=tenant) if tenant else None
                    return self.get_response(request)
            """
        ),
    )
    models = readme_block("python", "class Note(models.Model)")
    memo_plain = textwrap.dedent(
        """\


        class Memo(models.Model):  # an existing model whose columns hold plaintext
            tenant_id = models.CharField(max_length=64)
            text = models.TextField()
            remark = models.TextField()
        """
    )
    project.write("notes/models.py", models + memo_plain)
    project.write(
        "notes/admin.py",
        readme_block("python", "class NoteAdmin")
        + "\n\nfrom notes.models import Memo  # noqa: E402\n\nadmin.site.register(Memo)  # plain\n",
    )

    vault = DevVault(project)
    project.env.update(vault.start())
    try:
        assert token_policies(project.env) == ["asherah-rotate", "asherah-transit", "default"]
        _first_hour(project, vault, models)
    finally:
        vault.stop()

    # -- pytest while the local server is down ----------------------------------------------
    project.write("pytest.ini", readme_block("ini", "# pytest.ini"))
    project.write("notes/tests.py", readme_block("python", "def test_note_is_encrypted"))
    project.write(
        "notes/tests.py",
        textwrap.dedent(
            """\
            import asherah_django


            @pytest.mark.django_db
            def test_without_the_plugins_fixtures():
                with asherah_django.session("42"):
                    Note.objects.create(tenant_id="42", body="plain test", details={"b": 2})
                    assert Note.objects.get().body == "plain test"


            def test_a_session_fixture_is_isolated_too(sealed_in_a_session_fixture):
                from asherah_django.core.records import looks_like_data_row

                assert looks_like_data_row(sealed_in_a_session_fixture)


            @pytest.mark.asherah_live_kms
            @pytest.mark.django_db
            def test_live_kms():
                with asherah_django.session("42"):
                    Note.objects.create(tenant_id="42", body="needs the server")
            """
        ),
        append=True,
    )
    project.write(
        "conftest.py",
        textwrap.dedent(
            """\
            import pytest

            import asherah_django


            @pytest.fixture(scope="session")
            def sealed_in_a_session_fixture(django_db_setup, django_db_blocker):
                with django_db_blocker.unblock():
                    session = asherah_django.get_session_factory().get_session("42")
                    return session.encrypt(b"made before any test")
            """
        ),
    )
    isolated = project.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not live")
    assert "3 passed" in isolated.stdout, isolated.stdout
    live = project.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "live", check=False)
    assert live.returncode == 1 and "1 failed" in live.stdout, live.stdout
    assert "KMSError" in live.stdout or "Vault" in live.stdout, live.stdout


def _first_hour(project: Project, vault: DevVault, models: str) -> None:
    # -- migrate: no warnings, and the platform's variables change nothing ----------------
    project.manage("makemigrations", "notes")
    migrate = project.manage("migrate")
    assert "WARNING" not in migrate.stdout + migrate.stderr, migrate.stdout + migrate.stderr
    assert "asherah." not in migrate.stdout + migrate.stderr
    check = project.manage("check")
    assert "no issues" in check.stdout, check.stdout + check.stderr

    # -- existing plaintext, then encrypted fields (README's asherah_encrypt order) --------
    project.script(
        """
        from notes.models import Memo
        for tenant in ("42", "7"):
            Memo.objects.create(tenant_id=tenant, text=f"memo {tenant}", remark=f"remark {tenant}")
        """
    )
    project.write(
        "notes/models.py",
        models
        + textwrap.dedent(
            """\


            class Memo(models.Model):
                tenant_id = models.CharField(max_length=64)
                text = EncryptedTextField(partition="tenant_id", legacy="read")
                remark = EncryptedTextField(legacy="read")  # the session's partition
            """
        ),
    )
    project.manage("makemigrations", "notes")
    migrate = project.manage("migrate")
    assert "WARNING" not in migrate.stdout + migrate.stderr
    before = project.script(
        """
        from notes.models import Memo
        result = sorted((m.text, m.remark) for m in Memo.objects.all())  # no session open
        """
    )
    assert before == [["memo 42", "remark 42"], ["memo 7", "remark 7"]]
    project.manage("asherah_encrypt", "notes.Memo.text")
    project.manage("asherah_encrypt", "notes.Memo.remark", "--partition-field", "tenant_id")
    # the sessions snippet (docs/fields.md) as a module of the app (it uses Note, defined above it)
    sessions = readme_block("python", "# as a decorator, for sync or async functions")
    project.write("notes/jobs.py", "from notes.models import Note\n\n" + sessions)
    after = project.script(
        """
        from django.db import connection
        import asherah_django
        from notes import jobs  # runs the snippet: tenant 42's note
        from notes.models import Memo, Note

        with asherah_django.session("7"):
            Note.objects.create(tenant_id="7", body="hello 7", details={"n": 7})
        texts = sorted(m.text for m in Memo.objects.all())  # row partitions: no session
        remarks = {}
        for memo in Memo.objects.all():
            with asherah_django.session(memo.tenant_id):  # what the resolver returns
                remarks[memo.tenant_id] = memo.remark
        with connection.cursor() as cursor:
            cursor.execute("SELECT text, remark FROM notes_memo")
            raw = [value for row in cursor.fetchall() for value in row]
        result = {
            "texts": texts,
            "remarks": remarks,
            "job": jobs.nightly_job(),
            "raw_plaintext": [v for v in raw if "memo" in v or "remark" in v],
        }
        """
    )
    assert after["texts"] == ["memo 42", "memo 7"]
    assert after["remarks"] == {"42": "remark 42", "7": "remark 7"}
    assert after["job"] == ["hello"]
    assert after["raw_plaintext"] == []

    # -- the admin: both partition styles readable; a plain ModelAdmin never answers 500 ----
    pages = project.script(
        """
        from django.contrib.auth.models import User
        from django.test import Client
        from django.test.utils import setup_test_environment
        from notes.models import Memo

        setup_test_environment()
        user = User.objects.create_superuser("admin", password="x")
        client = Client(raise_request_exception=False, headers={"X-Tenant": "42"})
        client.force_login(user)
        other = Memo.objects.get(tenant_id="7")
        notes = client.get("/admin/notes/note/")
        memos = client.get("/admin/notes/memo/")
        change = client.get(f"/admin/notes/memo/{other.pk}/change/")
        result = {
            "notes": [notes.status_code, notes.content.decode()],
            "memos": [memos.status_code, memos.content.decode()],
            "change": [change.status_code, change.content.decode()],
        }
        """
    )
    status, text = pages["notes"]
    assert status == 200
    for shown in ("hello", "hello 7", "&quot;n&quot;: 7"):  # body (mixin) and details (row)
        assert shown in text, shown
    assert "Encrypted:" not in text
    status, text = pages["memos"]
    assert status == 200 and "Memo object" in text
    status, text = pages["change"]
    assert status == 200  # tenant 42's staff on tenant 7's row of a plain ModelAdmin
    assert "memo 7" in text  # partition= field: its row's key
    assert "Encrypted: encrypted for another partition" in text and "remark 7" not in text

    # -- dumpdata: the key table is in it (README says so), and how to leave it out ---------
    dump = json.loads(project.manage("dumpdata").stdout)
    models_dumped = {entry["model"] for entry in dump}
    assert "asherah_django.encryptionkey" in models_dumped
    assert not [e for e in dump if "hello" in json.dumps(e) or "memo 42" in json.dumps(e)]
    keys = {entry["fields"]["id"] for entry in dump if entry["model"].startswith("asherah")}
    assert "_SK_billing_acme" in keys  # README's names, not the platform's SERVICE_NAME
    without = json.loads(project.manage("dumpdata", "-e", "asherah_django").stdout)
    assert "asherah_django.encryptionkey" not in {entry["model"] for entry in without}
    assert "dumpdata -e asherah_django" in sources.page("settings.md")

    health = project.manage("asherah_check", check=False)
    assert health.returncode in (0, 2), health.stdout + health.stderr

    # -- the local server restarted: keys, token and data are still there -----------------
    token = project.env["VAULT_TOKEN"]
    vault.stop()
    project.env.update(vault.start())
    assert project.env["VAULT_TOKEN"] == token  # the same token, still valid
    again = project.script(
        """
        import asherah_django
        from notes.models import Note
        asherah_django.runtime.reset_session_factory()
        with asherah_django.session("42"):
            result = [n.body for n in Note.objects.filter(tenant_id="42")]
        """
    )
    assert again == ["hello"]

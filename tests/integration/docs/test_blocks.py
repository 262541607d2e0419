"""Every Python block of the documentation (README.md and docs/**/*.md) runs or is checked
here, against a real database; every shell block's ``manage.py`` line is parsed by the command
it names, and the other blocks are checked by their kind.

The blocks are taken from the pages themselves (not copied), so an example that stops
working fails this test. Each block has a check below; a new block without one fails too.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import shlex
import sys
import types
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin import AdminSite
from django.contrib.admin import sites as admin_sites
from django.core.management import get_commands, load_command_class
from django.db import connection, connections
from django.test.utils import isolate_apps

from asherah_django.conf import DEFAULTS
from tests.integration.docs import sources

BLOCKS = [body for _, body in sources.blocks("python")]


def _block(marker: str) -> str:
    return sources.block("python", marker)


@pytest.fixture
def readme_models(transactional_db: None) -> Iterator[dict[str, Any]]:
    """The front page's model block, defined in an isolated app registry, with its table."""
    with isolate_apps("tests.testapp"):
        namespace: dict[str, Any] = {"__name__": "tests.testapp.readme_models"}
        exec(_block("class Note(models.Model)"), namespace)
        note = namespace["Note"]
        with connection.schema_editor() as editor:
            editor.create_model(note)
        try:
            yield namespace
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(note)


def test_every_python_block_is_checked() -> None:
    markers = [
        "class Note(models.Model)",
        "# settings.py",
        "def tenant_partition",
        "# anywhere: a job, a shell, a test",
        "# as a decorator, for sync or async functions",
        "class NoteAdmin",
        "def test_note_is_encrypted",
        "from asherah_django.core import",
        "class Customer(models.Model)",
        "class Patient(models.Model)",
        # integrations (#18): checked in tests/integration/docs/test_integration_blocks.py
        "class ContactSerializer(EncryptedModelSerializer)",
        "def contact_email(contact_id)",
        "class SlowKMSWarning(observability.Observer)",
        "class TestMyKMS(KMSConformance)",
        # the tutorial (docs/tutorial.md)
        "# crm/models.py, before",
        "# crm/models.py, during the migration",
        "# crm/models.py, after",
        # production topologies (#23): docs/howto/topologies.md, checked in tests/integration/topology/test_postgres_replica.py
        "class ReplicaRouter",
        'DATABASES["default"] = {',
    ]
    assert len(BLOCKS) == len(markers), "a python block of the docs has no check in this file"
    for marker in markers:
        _block(marker)


#: What ``django-admin startproject`` writes, which the quick start's settings block extends.
STARTPROJECT = {
    "INSTALLED_APPS": [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
    ],
    "MIDDLEWARE": [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
}


@pytest.fixture
def notes_module(readme_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """``notes.models`` (the README's app) holding the README's Note, for blocks importing it."""
    package, models = types.ModuleType("notes"), types.ModuleType("notes.models")
    models.Note = readme_models["Note"]  # type: ignore[attr-defined]
    package.models = models  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "notes", package)
    monkeypatch.setitem(sys.modules, "notes.models", models)


def test_settings_block_names_real_settings_and_middleware() -> None:
    namespace: dict[str, Any] = {name: list(value) for name, value in STARTPROJECT.items()}
    exec(_block("# settings.py"), namespace)
    assert set(namespace["ASHERAH"]) <= set(DEFAULTS)
    assert "asherah_django" in namespace["INSTALLED_APPS"]
    middleware = namespace["MIDDLEWARE"]
    assert middleware.index(
        "asherah_django.middleware.AsherahSessionMiddleware"
    ) > middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware")
    from asherah_django.middleware import AsherahSessionMiddleware

    assert AsherahSessionMiddleware


def test_resolver_block() -> None:
    namespace: dict[str, Any] = {}
    exec(_block("def tenant_partition"), namespace)
    resolver: Callable[[Any], str | None] = namespace["tenant_partition"]
    assert resolver(SimpleNamespace(tenant=SimpleNamespace(pk=7))) == "7"
    assert resolver(SimpleNamespace()) is None


def test_sessions_block(readme_models: dict[str, Any]) -> None:
    namespace = dict(readme_models)
    exec(_block("# as a decorator, for sync or async functions"), namespace)
    assert namespace["nightly_job"]() == ["hello"]

    async def run_handler() -> Any:
        try:
            return await namespace["handler"]()
        finally:  # the ORM ran in asgiref's executor thread: close that thread's connection
            await sync_to_async(connections.close_all)()

    assert asyncio.run(run_handler()) == "hello"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT body FROM {readme_models['Note']._meta.db_table}")
        assert "hello" not in cursor.fetchone()[0]


def test_admin_block(
    readme_models: dict[str, Any], notes_module: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = AdminSite()
    monkeypatch.setattr(admin_sites, "site", site)  # @admin.register's default site
    namespace: dict[str, Any] = {}
    exec(_block("class NoteAdmin"), namespace)
    model_admin = site.get_model_admin(readme_models["Note"])
    assert isinstance(model_admin, namespace["NoteAdmin"])
    assert model_admin.get_asherah_partition(None, SimpleNamespace(tenant_id="t1")) == "t1"


def test_pytest_plugin_block(
    readme_models: dict[str, Any],
    notes_module: None,
    asherah_session: Any,
    asherah_assert_kms_calls: Any,
) -> None:
    namespace: dict[str, Any] = {}
    exec(_block("def test_note_is_encrypted"), namespace)
    namespace["test_note_is_encrypted"](asherah_session, asherah_assert_kms_calls)


def test_core_block() -> None:
    exec(_block("from asherah_django.core import"), {})


def test_blind_index_block(transactional_db: None) -> None:
    with isolate_apps("tests.testapp"):
        namespace: dict[str, Any] = {"__name__": "tests.testapp.readme_customers"}
        exec(_block("class Customer(models.Model)"), namespace)
        customer = namespace["Customer"]
        names = [f.name for f in customer._meta.local_fields]
        assert {"email_bidx", "phone_bidx", "ref_bidx"} <= set(names)
        with connection.schema_editor() as editor:
            editor.create_model(customer)
        try:
            made = namespace["sign_up"]("Ann@Example.org")
            assert namespace["sign_up"]("ann@example.ORG") == made  # unique, casefolded
            assert namespace["find"](" ANN@example.org") == made
            assert namespace["find"]("bob@example.org") is None
            assert namespace["by_ref"]("t1", "A-17") == made
            with connection.cursor() as cursor:
                table = connection.ops.quote_name(customer._meta.db_table)
                cursor.execute(f"SELECT email, email_bidx FROM {table}")
                email, index = cursor.fetchone()
            assert "ann@example.org" not in email.lower()
            assert "ann" not in index
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(customer)


def test_bound_values_block(transactional_db: None) -> None:
    """The README's bind= example: a value copied into another row is refused."""
    from asherah_django.fields import EncryptedField

    with isolate_apps("tests.testapp"):
        namespace: dict[str, Any] = {"__name__": "tests.testapp.readme_patients"}
        exec(_block("class Patient(models.Model)"), namespace)
        patient = namespace["Patient"]
        for name in ("diagnosis", "summary", "history"):
            field = patient._meta.get_field(name)
            assert isinstance(field, EncryptedField) and field.check() == []
        with connection.schema_editor() as editor:
            editor.create_model(patient)
        try:
            one = patient.objects.create(tenant_id="t", diagnosis="flu")
            two = patient.objects.create(tenant_id="t", diagnosis="cold")
            assert namespace["diagnosis_of"](one.pk) == "flu"
            quote = connection.ops.quote_name
            table = quote(patient._meta.db_table)
            pk = patient._meta.pk
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET diagnosis = (SELECT diagnosis FROM {table} WHERE "
                    f"{quote(pk.column)} = %s) WHERE {quote(pk.column)} = %s",
                    [
                        pk.get_db_prep_value(one.pk, connection),
                        pk.get_db_prep_value(two.pk, connection),
                    ],
                )
            assert namespace["diagnosis_of"](two.pk) is None
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(patient)


def test_custom_kms_conformance_block() -> None:
    """Issue 24: the README's conformance-kit example runs against a toy user KMS."""
    from tests.integration.kms_conformance.toy import ToyKMS

    namespace: dict[str, Any] = {"MyKMS": ToyKMS}
    exec(_block("class TestMyKMS(KMSConformance)"), namespace)
    namespace["TestMyKMS"]().test_kms_conformance()


def test_front_page_session_block(readme_models: dict[str, Any]) -> None:
    namespace = dict(readme_models)
    exec(_block("# anywhere: a job, a shell, a test"), namespace)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT body FROM {readme_models['Note']._meta.db_table}")
        assert "hello" not in cursor.fetchone()[0]


def _tutorial_model(marker: str, app: str) -> Any:
    namespace: dict[str, Any] = {"__name__": f"tests.testapp.{app}"}
    exec(_block(marker), namespace)
    return namespace["Contact"]


def test_tutorial_models_are_what_the_tutorial_says() -> None:
    """Before: plain columns; during: encrypted, reading legacy plaintext, email indexed;
    after: no legacy reads, the email unique through its index. Each passes the checks."""
    from asherah_django.fields import EncryptedField

    with isolate_apps("tests.testapp"):
        before = _tutorial_model("# crm/models.py, before", "tutorial_before")
        assert not any(isinstance(f, EncryptedField) for f in before._meta.local_fields)
    with isolate_apps("tests.testapp"):
        during = _tutorial_model("# crm/models.py, during the migration", "tutorial_during")
        email, notes = during._meta.get_field("email"), during._meta.get_field("notes")
        assert isinstance(email, EncryptedField) and isinstance(notes, EncryptedField)
        assert email.legacy == "read" and notes.legacy == "read"
        assert "email_bidx" in {f.name for f in during._meta.local_fields}
        assert email.check() == [] and notes.check() == []
    with isolate_apps("tests.testapp"):
        after = _tutorial_model("# crm/models.py, after", "tutorial_after")
        email = after._meta.get_field("email")
        assert email.legacy == "reject" and email.unique and email.check() == []


#: Programs a shell block may run, and which test checks each when it is not manage.py.
SHELL_PROGRAMS = {
    "python": "manage.py lines parsed here; python -m ... run by tests/integration/docs/test_newcomer.py",
    "make": "the set-up commands (scripts/test.sh, scripts/demo.sh); make c-proof: scripts/c_proof.sh, run quick by scripts/test.sh",
    "pip": "tests/integration/release/test_artifacts.py installs the sdist and the wheel",
    "cd": "the checkout's root",
    "source": "tests/integration/docs/test_newcomer.py",
    "vault": "tests/integration/lifecycle/test_check_least_privilege.py runs the policies",
    "path": "policy heredoc lines (vault policy write)",
    "EOF": "heredoc end",
}


def _shell_lines() -> list[str]:
    lines = []
    for _, body in sources.blocks("sh"):
        for line in body.replace("\\\n", " ").splitlines():  # backslash continuations joined
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_every_manage_py_line_parses() -> None:
    """Each ``python manage.py CMD ...`` of a shell block is accepted by CMD's own parser."""
    commands = get_commands()
    seen = 0
    for line in _shell_lines():
        for part in line.split("&&"):
            words = shlex.split(part)
            if words[:2] != ["python", "manage.py"]:
                continue
            name, *args = words[2:]
            assert name in commands, f"{line}: no command {name!r}"
            command = load_command_class(commands[name], name)
            parser = command.create_parser("manage.py", name)
            try:
                parser.parse_args(args)
            except SystemExit:  # pragma: no cover - the message is the failure
                pytest.fail(f"{line}: {name} refuses these arguments")
            seen += 1
    assert seen >= 20


def test_every_shell_line_runs_a_known_program() -> None:
    for line in _shell_lines():
        program = shlex.split(line.replace("<<EOF", ""))[0]
        assert program in SHELL_PROGRAMS, f"shell line with no check: {line}"


def test_json_and_ini_blocks_parse() -> None:
    for _, body in sources.blocks("json"):
        json.loads(body)
    for _, body in sources.blocks("ini"):
        configparser.ConfigParser().read_string(body)
    assert sources.blocks("json") and sources.blocks("ini")

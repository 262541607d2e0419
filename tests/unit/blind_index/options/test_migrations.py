"""Migrations: the index column is an ordinary migrated field (db_index, or unique instead
of the ciphertext column), makemigrations sees no change afterwards, adding a blind index
to an existing field migrates to AddField + AlterField, and historical models (data
migrations) look up and write through the index like the real ones."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection, models
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.graph import MigrationGraph
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AddField, AlterField
from django.db.migrations.questioner import MigrationQuestioner
from django.db.migrations.state import ModelState, ProjectState
from django.test.utils import isolate_apps

import asherah_django
from asherah_django.fields import BlindIndex, BlindIndexField, EncryptedEmailField
from tests.bidxapp.models import Customer

P = "bidx-migrations"


@pytest.mark.django_db
def test_makemigrations_sees_no_change() -> None:
    out = io.StringIO()
    call_command("makemigrations", "bidxapp", check=True, dry_run=True, stdout=out)
    assert "No changes detected" in out.getvalue()


def test_the_index_column_deconstructs_to_the_schema_it_needs() -> None:
    email = Customer._meta.get_field("email_bidx")
    assert isinstance(email, BlindIndexField)
    assert email.deconstruct()[3] == {"source": "email", "unique": True}
    nickname = Customer._meta.get_field("nickname_bidx")
    assert nickname.deconstruct()[3] == {"source": "nickname"}
    assert Customer._meta.get_field("handle_bidx").deconstruct()[3] == {
        "source": "handle",
        "max_length": 44,
    }
    kwargs = Customer._meta.get_field("email").deconstruct()[3]
    assert kwargs["blind_index"] is True
    assert "unique" not in kwargs  # the UNIQUE is the index column's
    handle = Customer._meta.get_field("handle").deconstruct()[3]
    assert handle["blind_index"] == BlindIndex(casefold=True, digest_size=12)


@pytest.mark.django_db(transaction=True)  # (SQLite's schema editor refuses a transaction)
@isolate_apps("tests.bidxapp")
def test_adding_a_blind_index_migrates_as_add_field_and_alter_field() -> None:
    class Before(models.Model):  # noqa: DJ008
        email = EncryptedEmailField()

        class Meta:
            app_label = "bidxapp"
            db_table = "bidx_thing"

    class After(models.Model):  # noqa: DJ008
        email = EncryptedEmailField(blind_index=True, unique=True)

        class Meta:
            app_label = "bidxapp"
            db_table = "bidx_thing"

    def state(model: type[models.Model]) -> ProjectState:
        project = ProjectState()
        model_state = ModelState.from_model(model)
        model_state.name = "Thing"
        project.add_model(model_state)
        return project

    asked = MigrationQuestioner(specified_apps={"bidxapp"})
    changes = MigrationAutodetector(state(Before), state(After), asked).changes(MigrationGraph())
    operations = changes["bidxapp"][0].operations
    assert {type(op) for op in operations} == {AddField, AlterField}
    added = next(op for op in operations if isinstance(op, AddField))
    assert added.name == "email_bidx"
    assert added.field.deconstruct()[3] == {"source": "email", "unique": True}
    # the state after the migration renders one index column, unique in the schema only
    rendered = state(After).apps.get_model("bidxapp", "Thing")
    names = [f.name for f in rendered._meta.local_fields]
    assert names.count("email_bidx") == 1
    assert rendered._meta.get_field("email_bidx").schema_unique  # (the schema sees it)
    with connection.schema_editor(collect_sql=True) as editor:
        editor.create_model(rendered)
    sql = "\n".join(editor.collected_sql).lower()
    quoted = connection.ops.quote_name("email").lower()
    assert f"{quoted} text" in sql or f"{quoted} longtext" in sql
    assert f"{quoted} text unique" not in sql and f"{quoted} longtext unique" not in sql
    assert "email_bidx" in sql and "unique" in sql


@pytest.mark.django_db
def test_historical_models_look_up_and_write_through_the_index() -> None:
    loader = MigrationLoader(connection)
    apps = loader.project_state(("bidxapp", "0001_initial")).apps
    Historical = apps.get_model("bidxapp", "Customer")
    assert [f.name for f in Historical._meta.local_fields].count("email_bidx") == 1
    with asherah_django.session(P):
        Customer.objects.create(name="real", email="hist@example.org")
        assert Historical.objects.get(email="HIST@example.org").name == "real"
        Historical.objects.create(name="historical", email="made@example.org")
    assert Customer.objects.get(email="made@example.org").name == "historical"


@pytest.mark.django_db(transaction=True)
def test_tables_built_from_the_models_themselves_get_the_same_schema() -> None:
    """As ``migrate --run-syncdb`` and pytest-django's ``--no-migrations`` build them (and
    tests that call ``schema_editor().create_model(Model)``): from the live model."""
    with isolate_apps("tests.bidxapp"):

        class Live(models.Model):  # noqa: DJ008
            email = EncryptedEmailField(blind_index=True, unique=True)
            note = EncryptedEmailField(blind_index=True, null=True)

            class Meta:
                app_label = "bidxapp"
                db_table = "bidx_live"

        assert Live._meta.get_field("email").unique  # for validation
        with connection.schema_editor() as editor:
            editor.create_model(Live)
        try:
            with connection.cursor() as cursor:
                constraints = connection.introspection.get_constraints(cursor, "bidx_live")
            unique = {tuple(c["columns"]) for c in constraints.values() if c["unique"]}
            indexed = {tuple(c["columns"]) for c in constraints.values() if c["index"]}
            assert ("email_bidx",) in unique
            assert ("email",) not in unique and ("email",) not in indexed
            assert ("note_bidx",) in indexed | unique
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(Live)

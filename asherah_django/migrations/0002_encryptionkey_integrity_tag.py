"""The nullable ``integrity_tag`` column for ``KEY_INTEGRITY`` (issue #13).

Other Asherah implementations name their columns in every INSERT and SELECT, so an extra
nullable column is invisible to them. The column is not a model field: with
``KEY_INTEGRITY="off"`` nothing names it, so a table adopted without it keeps working.
A table you manage yourself gets it with the statement in
``asherah_django.core.integrity.ADD_TAG_COLUMN_SQL``; this migration skips a column that
exists already.
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

from asherah_django.core.integrity import TAG_COLUMN, TAG_MAX_LENGTH


def _columns(schema_editor: BaseDatabaseSchemaEditor, table: str) -> set[str]:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if table not in connection.introspection.table_names(cursor):
            return set()
        return {c.name for c in connection.introspection.get_table_description(cursor, table)}


def add_column(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    table = apps.get_model("asherah_django", "EncryptionKey")._meta.db_table
    if TAG_COLUMN in _columns(schema_editor, table):
        return
    quote = schema_editor.quote_name
    schema_editor.execute(
        f"ALTER TABLE {quote(table)} ADD COLUMN {quote(TAG_COLUMN)} VARCHAR({TAG_MAX_LENGTH}) NULL"
    )


def drop_column(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    table = apps.get_model("asherah_django", "EncryptionKey")._meta.db_table
    if TAG_COLUMN in _columns(schema_editor, table):
        quote = schema_editor.quote_name
        schema_editor.execute(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(TAG_COLUMN)}")


class Migration(migrations.Migration):
    # MySQL/MariaDB cannot run DDL inside a transaction; one ALTER needs none.
    atomic = False
    dependencies = [("asherah_django", "0001_initial")]

    operations = [migrations.RunPython(add_column, drop_column, elidable=False)]

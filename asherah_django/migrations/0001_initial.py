"""The canonical Asherah metastore table, ``encryption_key``.

An existing Asherah table (made by Go, Java or the Rust core, or by hand from Asherah's
DDL) is adopted with ``manage.py migrate asherah_django --fake-initial``.
"""

from django.db import migrations, models

import asherah_django.models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="EncryptionKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "id",
                        "created",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("id", asherah_django.models.KeyIdField(max_length=255)),
                ("created", asherah_django.models.UTCDateTimeField()),
                ("key_record", models.TextField()),
            ],
            options={
                "verbose_name": "encryption key",
                "verbose_name_plural": "encryption keys",
                "db_table": "encryption_key",
                "indexes": [models.Index(fields=["created"], name="encryption_key_created_idx")],
                "permissions": [("revoke_encryptionkey", "Can revoke encryption keys")],
            },
        ),
    ]

"""``manage.py asherah_sign_keys``: give this service's existing key rows integrity tags.

For ``KEY_INTEGRITY`` (issue #13; SECURITY.md). Rows created before tags were turned on,
or by another Asherah implementation, have none; ``require`` refuses them. This command
verifies that each row of this service unwraps (its system key through the KMS, one call
per version; the others under this service's own system key) and stores its tag. Rows
that do not unwrap, name another system key as parent, or carry a tag that does not verify
are reported and left alone; the exit status is then 1.

Each tag is committed on its own and only written where none is, so the command can be
stopped and run again: it carries on. ``--dry-run`` verifies and counts, writes nothing.
It vouches for rows as they are: run it while the table is trusted.

A separate command rather than an ``asherah_rotate`` option: it changes no key and
re-encrypts nothing, needs the KMS only to unwrap, and is run once per table.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import asherah_settings
from ...core.errors import AsherahError
from ...key_tags import scan
from ...runtime import get_session_factory


class Command(BaseCommand):
    help = (
        "Verify that each key row of this service unwraps and store its integrity tag "
        "(KEY_INTEGRITY). Resumable; --dry-run writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="verify and count; write no tag")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        try:
            if asherah_settings.METASTORE != "django":
                raise CommandError("asherah_sign_keys needs METASTORE=django")
            factory = get_session_factory()
            using = asherah_settings.DATABASE
            counts = scan(factory, using, sign=True, dry_run=dry_run)
        except AsherahError as exc:
            raise CommandError(str(exc)) from None
        label = f"{factory.service_name}/{factory.product_id} (database '{using}')"
        mode = asherah_settings.KEY_INTEGRITY
        self.stdout.write(f"{label}: {counts.summary(dry_run=dry_run)}.")
        for problem in counts.problems:
            self.stdout.write(f"  {problem}")
        if mode == "off":
            self.stdout.write(
                "KEY_INTEGRITY is 'off': tags are stored but not checked; set it to 'sign' "
                "or 'require'."
            )
        if counts.bad:
            raise CommandError(
                f"{counts.bad} key row(s) were left unsigned; see SECURITY.md "
                "(Tamper-evident key table) before setting KEY_INTEGRITY to 'require'"
            )

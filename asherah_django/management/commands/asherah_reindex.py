"""``manage.py asherah_reindex``: compute blind indexes; rotate and retire their keys.

  asherah_reindex [LABEL ...]     index every row whose blind index is missing, stale
                                  (options or context changed) or under an old key version,
                                  then retire key versions no index uses any more;
                                  LABEL is app_label.Model or app_label.Model.field
                                  (default: every blind-indexed field)
  asherah_reindex --rotate        store a new version of every blind index key, active
                                  after --activate-in seconds (default CHECK_INTERVAL + 60,
                                  so that every running process knows it first); with
                                  --wait, sleep until then and re-index
  --recompute                     recompute every row, current or not
  --batch-size N, --checkpoint FILE, --pause SECONDS, --throttle ROWS_PER_SECOND,
  --shard I/N, --database ALIAS, --dry-run

Exit status 0; 1 with a message on stderr when the run cannot start; 3 when it finished
but met values it could not read (each logged with its primary key and left as it is;
every readable row was indexed).

Progress goes to stderr (a bar on a terminal, a line per batch otherwise, with the rate
and the time left), as ``asherah_encrypt`` does; every run ends with a summary line on
stdout. The logic lives in :mod:`asherah_django.blind_index.reindex`.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import rotation
from ...blind_index import reindex as bidx
from ...maintenance import PassCommand
from ...runtime import get_session_factory
from .asherah_rotate import summarised


class Command(PassCommand, BaseCommand):
    help = (
        "Compute blind indexes of encrypted fields in batches (missing, stale or under an "
        "old key version); rotate blind index keys and retire unused versions."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("labels", nargs="*", metavar="LABEL", help="app_label.Model[.field]")
        parser.add_argument(
            "--rotate", action="store_true", help="store new versions of the blind index keys"
        )
        rotate = "with --rotate: "
        parser.add_argument(
            "--activate-in", type=int, metavar="SECONDS",
            help=rotate + "seconds until the new versions are used (default CHECK_INTERVAL "
            "+ 60; shorter only when every process restarts meanwhile)",
        )  # fmt: skip
        wait = "wait until the new versions are active, then re-index"
        parser.add_argument("--wait", action="store_true", help=rotate + wait)
        parser.add_argument("--recompute", action="store_true", help="recompute every row's index")
        self.add_pass_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        summarised(self, options, self._run, rotation.UNREADABLE)

    def _run(self, summary: rotation.Summary, options: dict[str, Any]) -> None:
        dry_run = options["dry_run"]
        if (options["activate_in"] is not None or options["wait"]) and not options["rotate"]:
            raise CommandError("--activate-in and --wait go with --rotate")
        targets = bidx.indexed_fields(options["labels"])
        factory = get_session_factory()
        if options["rotate"]:
            if options["labels"]:
                raise CommandError(
                    "--rotate rotates the keys of every blind-indexed field: give no LABEL"
                )
            active = bidx.rotate_keys(
                factory, summary, activate_in=options["activate_in"], dry_run=dry_run
            )
            if dry_run:
                return  # (re-indexing could only be counted against the versions in use)
            if active is not None and active > factory.clock():
                if not options["wait"]:
                    return
                delay = active - factory.clock()
                self.stdout.write(f"Waiting {delay:.0f} s for the new key versions...")
                time.sleep(max(delay, 0) + 1)
        if not targets:
            summary.say("No field has a blind index.")
            return
        for target in targets:
            run = self.pass_options(options)
            bidx.reindex(factory, target, summary, recompute=options["recompute"], **run)
            self.end_progress(run)
        bidx.retire_unused(factory, summary, dry_run=dry_run)

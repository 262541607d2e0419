"""``manage.py asherah_rotate``: forced rotation, rewrap, re-encryption, inventory, shredding.

Steps run in this order, any combination (``--shred-partition`` only alone):

  --rewrap                       stored system keys -> Vault's newest key version
  --rewrap --from-kms KIND       stored system keys unwrapped by KIND (secrets-manager,
                                 static, vault, aws) and wrapped by the configured KMS
  --system                       revoke the current system key (next write makes a new one)
  --partition P [P ...]          revoke the current intermediate key of each partition
  --all-partitions               ... of every partition that has one
  --reencrypt [LABEL ...]        re-encrypt values whose keys are revoked, expired or
                                 superseded (or, with --older-than, older than the cutoff);
                                 LABEL is app_label.Model or app_label.Model.field; no
                                 LABEL: every encrypted field
  --bind LABEL [LABEL ...]       convert values of fields with bind= to bound records
                                 (resumable with --checkpoint, like --reencrypt)
  --report [LABEL ...]           values per intermediate key, system key, Vault key version
  --shred-partition P            destroy partition P's intermediate keys (asks, or --yes)

``--dry-run`` reads and counts but changes nothing. Every run ends with a summary line.
Exit status 0; 1 with a message on stderr when a step cannot run; 3 (``EXIT_UNREADABLE``)
when the run finished but met values it could not read (``--reencrypt``, ``--report``:
key missing, malformed or not unwrapped, record corrupt; each logged with its primary
key and left as it is; every readable value was processed) or a current key whose row is
malformed (``--partition``, ``--all-partitions``: left alone, the others are revoked).
The logic lives in :mod:`asherah_django.rotation`.
"""

from __future__ import annotations

import re
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import rotation
from ...core.errors import AsherahError
from ...core.protocols import close_kms
from ...rotation.bind import bind_target, bind_values
from ...runtime import get_session_factory

#: Exit status of a run that finished but met unreadable values (see the module docs).
EXIT_UNREADABLE = 3
_DURATION = re.compile(r"(\d+)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds, as seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise CommandError(
            f"--older-than expects a duration such as 90d, 12h or 3600, not {text!r}"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


class Command(BaseCommand):
    help = (
        "Rotate Asherah keys: revoke system or intermediate keys, rewrap system keys in "
        "Vault, re-encrypt values, report key usage, or crypto-shred a partition."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--system", action="store_true", help="revoke the current system key")
        parser.add_argument(
            "--partition", nargs="+", action="extend", default=[], metavar="P",
            help="revoke the current intermediate key of these partitions",
        )  # fmt: skip
        parser.add_argument(
            "--all-partitions", action="store_true",
            help="revoke the current intermediate key of every partition",
        )  # fmt: skip
        parser.add_argument(
            "--rewrap", action="store_true",
            help="rewrap every stored system key to Vault's newest key version",
        )  # fmt: skip
        parser.add_argument(
            "--from-kms", metavar="KIND",
            help="with --rewrap: move system keys wrapped by KIND (secrets-manager, static, "
            "vault, aws; its settings kept in ASHERAH) to the configured KMS",
        )  # fmt: skip
        parser.add_argument(
            "--reencrypt", nargs="*", metavar="LABEL",
            help="re-encrypt stale values of app_label.Model or app_label.Model.field "
            "(no LABEL: every encrypted field)",
        )  # fmt: skip
        parser.add_argument(
            "--bind", nargs="+", action="extend", default=[], metavar="LABEL",
            help="convert values of bound fields (bind=) of app_label.Model[.field] to "
            "bound records",
        )  # fmt: skip
        parser.add_argument(
            "--older-than", metavar="DURATION",
            help="with --reencrypt: also values whose intermediate key is older (90d, 12h...)",
        )  # fmt: skip
        parser.add_argument("--batch-size", type=int, default=500, help="rows per window")
        parser.add_argument(
            "--checkpoint", metavar="FILE",
            help="record --reencrypt progress in FILE and resume from it",
        )  # fmt: skip
        parser.add_argument(
            "--pause", type=float, default=0.0, metavar="SECONDS",
            help="sleep between windows (to spare the database)",
        )  # fmt: skip
        parser.add_argument("--database", help="database alias of the models (default: router)")
        parser.add_argument(
            "--report", nargs="*", metavar="LABEL",
            help="count values per key (all encrypted fields, or these labels)",
        )  # fmt: skip
        parser.add_argument("--shred-partition", metavar="P", help="destroy P's intermediate keys")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument("--dry-run", action="store_true", help="change nothing; count")

    def handle(self, *args: Any, **options: Any) -> None:
        summary = rotation.Summary(dry_run=options["dry_run"], write=self.stdout.write)
        try:
            self._run(summary, options)
        except AsherahError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(summary.text())
        if summary.counts.get(rotation.UNREADABLE) or summary.counts.get("key(s) unreadable"):
            raise SystemExit(EXIT_UNREADABLE)

    def _run(self, summary: rotation.Summary, options: dict[str, Any]) -> None:
        dry_run = options["dry_run"]
        actions = [
            options[name] for name in ("system", "partition", "all_partitions", "rewrap", "bind")
        ] + [options["reencrypt"] is not None]
        shred = options["shred_partition"]
        if shred is not None:
            if any(actions) or options["report"] is not None:
                raise CommandError("--shred-partition runs alone")
            self._shred(summary, shred, options)
            return
        if not any(actions) and options["report"] is None:
            raise CommandError(
                "nothing to do: give --system, --partition, --all-partitions, --rewrap, "
                "--reencrypt, --bind, --report or --shred-partition"
            )
        if options["partition"] and options["all_partitions"]:
            raise CommandError("give --partition or --all-partitions, not both")
        if options["older_than"] is not None and options["reencrypt"] is None:
            raise CommandError("--older-than goes with --reencrypt")
        targets = []
        if options["reencrypt"]:
            targets = rotation.resolve_targets(options["reencrypt"])
        elif options["reencrypt"] is not None:
            targets = self._every_target(summary)
        to_bind: list[rotation.Target] = [
            bind_target(t) for t in rotation.resolve_targets(options["bind"])
        ]
        factory = get_session_factory()
        rotation.keys.metastore_of(factory)
        if options["from_kms"] and not options["rewrap"]:
            raise CommandError("--from-kms goes with --rewrap")
        if options["rewrap"] and options["from_kms"]:
            from ...rotation.migrate import migrate_system_keys, source_kms

            source = source_kms(options["from_kms"].strip().lower())
            try:
                migrate_system_keys(factory, source, summary, dry_run=dry_run)
            finally:
                close_kms(source)
        elif options["rewrap"]:
            rotation.rewrap_system_keys(factory, summary, dry_run=dry_run)
        if options["system"]:
            rotation.revoke_system_key(factory, summary, dry_run=dry_run)
        partitions = options["partition"]
        if options["all_partitions"]:
            partitions = rotation.all_partitions(factory)
            if not partitions:
                summary.say("No partition has an intermediate key yet: nothing to revoke.")
        if partitions:
            rotation.revoke_partitions(factory, partitions, summary, dry_run=dry_run)
        if targets:
            self._reencrypt(summary, factory, targets, options)
        if to_bind:
            self._bind(summary, factory, to_bind, options)
        if options["report"] is not None:
            labels = options["report"]
            chosen = rotation.resolve_targets(labels) if labels else rotation.every_target()
            inventory = rotation.take_inventory(factory, chosen, using=options["database"])
            rotation.report(inventory, summary)

    @staticmethod
    def _every_target(summary: rotation.Summary) -> list[rotation.Target]:
        found = []
        for target in rotation.every_target():
            try:
                rotation.targets.check_pk(target)
            except AsherahError as exc:
                summary.say(f"{target.label}: skipped: {exc.args[0]}")
                continue
            found.append(target)
        return found

    def _reencrypt(
        self,
        summary: rotation.Summary,
        factory: Any,
        targets: list[rotation.Target],
        options: dict[str, Any],
    ) -> None:
        cutoff = None
        if options["older_than"] is not None:
            cutoff = int(time.time()) - parse_duration(options["older_than"])
        checkpoint = rotation.Checkpoint(options["checkpoint"]) if options["checkpoint"] else None
        verbose = options["verbosity"] >= 2
        for target in targets:
            rotation.reencrypt(
                factory,
                target,
                summary,
                cutoff=cutoff,
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                using=options["database"],
                checkpoint=checkpoint,
                progress=self._progress if self.stderr.isatty() else None,
                log=self.stdout.write if verbose else None,
                pause=options["pause"],
            )
            if self.stderr.isatty():
                self.stderr.write("")

    def _bind(
        self,
        summary: rotation.Summary,
        factory: Any,
        targets: list[rotation.Target],
        options: dict[str, Any],
    ) -> None:
        checkpoint = rotation.Checkpoint(options["checkpoint"]) if options["checkpoint"] else None
        for target in targets:
            bind_values(
                factory,
                target,
                summary,
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                using=options["database"],
                checkpoint=checkpoint,
                progress=self._progress if self.stderr.isatty() else None,
                log=self.stdout.write if options["verbosity"] >= 2 else None,
                pause=options["pause"],
            )
            if self.stderr.isatty():
                self.stderr.write("")

    def _progress(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        bar = "#" * filled + "-" * (width - filled)
        self.stderr.write(f"\r[{bar}] {done}/{total} rows", ending="")
        self.stderr.flush()

    def _shred(self, summary: rotation.Summary, partition: str, options: dict[str, Any]) -> None:
        factory = get_session_factory()
        key_id = factory.intermediate_key_id(partition)
        versions = len(rotation.keys.stored_versions(factory, key_id))
        if not options["dry_run"] and not options["yes"]:
            if versions == 0:
                summary.say(f"Partition '{partition}' has no intermediate key: nothing to shred.")
                return
            self.stdout.write(
                f"This destroys the {versions} intermediate key version(s) of partition "
                f"'{partition}' ({key_id}). Every value encrypted for it becomes undecryptable, "
                "for good; backups of the encryption_key table still hold the keys."
            )
            try:
                answer = input(f"Type the partition id ({partition}) to confirm: ")
            except EOFError:
                answer = ""
            if answer.strip() != partition:
                raise CommandError(
                    "not confirmed: nothing was shredded (pass --yes to skip asking)"
                )
        rotation.shred_partition(factory, partition, summary, dry_run=options["dry_run"])

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

``--reencrypt`` and ``--bind`` read in windows of ``--batch-size`` rows; ``--shard I/N``
runs one of N disjoint parts of each table (N processes at once), ``--throttle`` and
``--pause`` spare the database, ``--checkpoint`` resumes. ``--dry-run`` reads and counts
but changes nothing. Every run ends with a summary line.
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
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import rotation
from ...core.errors import AsherahError
from ...core.protocols import close_kms
from ...maintenance import PassCommand
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


def summarised(
    command: BaseCommand,
    options: dict[str, Any],
    run: Callable[[rotation.Summary, dict[str, Any]], None],
    *unreadable: str,
) -> None:
    """``run(summary, options)``, then the summary on stdout; exit status 3 when one of the
    ``unreadable`` counters is set (shared with ``asherah_reindex``)."""
    summary = rotation.Summary(dry_run=options["dry_run"], write=command.stdout.write)
    try:
        run(summary, options)
    except AsherahError as exc:
        raise CommandError(str(exc)) from exc
    command.stdout.write(summary.text())
    if any(summary.counts.get(what) for what in unreadable):
        raise SystemExit(EXIT_UNREADABLE)


class Command(PassCommand, BaseCommand):
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
        self.add_pass_arguments(parser)
        parser.add_argument(
            "--report", nargs="*", metavar="LABEL",
            help="count values per key (all encrypted fields, or these labels)",
        )  # fmt: skip
        parser.add_argument("--shred-partition", metavar="P", help="destroy P's intermediate keys")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args: Any, **options: Any) -> None:
        summarised(self, options, self._run, rotation.UNREADABLE, "key(s) unreadable")

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
        for target in to_bind:
            self._pass(bind_values, factory, target, summary, options)
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
        for target in targets:
            self._pass(rotation.reencrypt, factory, target, summary, options, cutoff=cutoff)

    def _pass(
        self,
        step: Callable[..., object],
        factory: Any,
        target: rotation.Target,
        summary: rotation.Summary,
        options: dict[str, Any],
        **extra: Any,
    ) -> None:
        """Run ``step`` (``--reencrypt`` or ``--bind``) over ``target``."""
        run = self.pass_options(options, tty_only=True)
        step(factory, target, summary, **run, **extra)
        self.end_progress(run)

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

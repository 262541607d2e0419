"""``manage.py asherah_erase``: erase a partition in every copy of the key table (issue #15).

    asherah_erase PARTITION [--dry-run] [--receipt PATH] [--resume] [--grace SECONDS]
    asherah_erase --verify-receipt PATH

The steps, their order and guarantees are in :mod:`asherah_django.rotation.erase`; the
runbook is docs/howto/erasure.md. Exit status 0 when done (or the receipt verifies), 1 with
a message on stderr when refused or failed (the state file lets ``--resume`` continue).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import asherah_settings
from ...core.errors import AsherahError
from ...core.kms.erase import erase_kms_for
from ...core.kms.vault_erase import SIGNING_KEY_SETTING
from ...rotation import receipt as receipts
from ...rotation.erase import Erasure
from ...rotation.erase_plan import operator
from ...rotation.erase_state import EraseState
from ...runtime import get_session_factory


class Command(BaseCommand):
    help = (
        "Erase a partition for good, backups included: new system key, surviving keys "
        "re-wrapped, the partition's keys destroyed, old master-key versions retired; "
        "writes a signed receipt."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("partition", nargs="?", help="the partition id to erase")
        parser.add_argument("--dry-run", action="store_true", help="list what would change")
        parser.add_argument("--receipt", metavar="PATH", help="where to write the receipt")
        parser.add_argument("--state", metavar="PATH", help="progress file (default: PATH.state)")
        parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
        parser.add_argument(
            "--grace", type=float, metavar="SECONDS",
            help="how long keys created meanwhile are moved (default: CHECK_INTERVAL)",
        )  # fmt: skip
        parser.add_argument("--poll", type=float, default=1.0, help=argparse_hide())
        parser.add_argument(
            "--signing-key", metavar="NAME", help=f"default: the {SIGNING_KEY_SETTING} setting"
        )
        parser.add_argument(
            "--new-static-master-key-hex", metavar="HEX",
            help="static KMS only (testing): the master key replacing STATIC_MASTER_KEY_HEX",
        )  # fmt: skip
        parser.add_argument(
            "--ignore-service", action="append", default=[], metavar="SERVICE",
            help="a service whose system keys use another master key (not checked)",
        )  # fmt: skip
        parser.add_argument(
            "--trim", action="store_true",
            help="also delete the retired master-key versions in Vault (irreversible: a "
            "lowered min_decryption_version cannot bring them back)",
        )  # fmt: skip
        parser.add_argument("--verify-receipt", metavar="PATH", help="verify a receipt")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["verify_receipt"]:
                self._verify(options)
            else:
                self._erase(options)
        except AsherahError as exc:
            raise CommandError(str(exc)) from exc

    def _kms_options(self, options: dict[str, Any]) -> dict[str, str | None]:
        signing = options["signing_key"] or asherah_settings.get("ERASURE_SIGNING_KEY")
        return {
            "signing_key": signing,
            "new_static_master_key_hex": options["new_static_master_key_hex"],
        }

    def _verify(self, options: dict[str, Any]) -> None:
        receipt = receipts.read(options["verify_receipt"])
        kms_options = self._kms_options(options)
        kms_options["signing_key"] = kms_options["signing_key"] or receipts.signer_key(receipt)
        kms = erase_kms_for(get_session_factory().kms, kms_options)
        if not receipts.verify(receipt, kms):
            raise CommandError(
                f"the receipt {options['verify_receipt']} does NOT verify: it was changed after "
                f"signing, or not signed by {kms.signer()}"
            )
        self.stdout.write(
            f"Receipt verified: signed by {kms.signer()}; partition '{receipt['partition']}' "
            f"erased by {receipt['operator']} at {receipt['finished']}, "
            f"{len(receipt['keys_destroyed'])} key(s) destroyed, master-key decryption floor "
            f"{receipt['master_key']['decryption_floor']}."
        )

    def _erase(self, options: dict[str, Any]) -> None:
        partition = options["partition"]
        if not partition:
            raise CommandError("give the PARTITION to erase (or --verify-receipt PATH)")
        factory = get_session_factory()
        factory.intermediate_key_id(partition)
        kms = erase_kms_for(factory.kms, self._kms_options(options))
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", partition)
        receipt_path = options["receipt"] or f"asherah-erasure-{safe}.json"
        state_path = options["state"] or receipt_path + ".state"
        who = (factory.service_name, factory.product_id)
        if options["dry_run"]:
            state = EraseState(state_path, partition, *who)
        elif options["resume"]:
            state = EraseState.resume(state_path, partition, *who)
        else:
            state = EraseState.start(state_path, partition, *who)
            state.trim = options["trim"]
            state.save()
        grace = options["grace"]
        if grace is None:
            grace = float(factory.policy.check_interval)
        erasure = Erasure(
            factory, kms, state, grace=grace, poll=options["poll"],
            ignore_services=tuple(options["ignore_service"]), say=self.stdout.write,
            progress=self._progress if self.stderr.isatty() else None,
        )  # fmt: skip
        if options["dry_run"]:
            plan = erasure.plan()
            for line in plan.lines():
                self.stdout.write(line)
            if options["trim"]:
                self.stdout.write(f"  delete master-key versions below {plan.floor} (trim)")
            erasure.refuse_blockers(plan)
            kms.check_permissions(trim=options["trim"])
            self.stdout.write("Dry run: nothing was changed.")
            return
        if not state.done:
            erasure.run()
        receipt = receipts.sign(receipts.build(state, kms, factory.system_key_id, operator()), kms)
        receipts.write(receipt, receipt_path)
        self._store(receipt, factory)
        state.phase = "done"
        state.save()
        self.stdout.write(
            f"Partition '{partition}' erased: {len(state.destroyed)} key(s) destroyed, "
            f"{state.rewrapped} surviving key(s) re-wrapped ({state.meanwhile} created "
            f"meanwhile), {len(state.retired)} system key(s) retired, master-key decryption "
            f"floor {state.floor}. Receipt: {receipt_path}"
        )

    def _store(self, receipt: dict[str, Any], factory: Any) -> None:
        """Keep the receipt for the admin too (the file stays the primary copy)."""
        from django.db import DatabaseError

        from ...erasure_receipts import ErasureReceipt
        from ...rotation.keys import metastore_of

        try:
            ErasureReceipt.from_receipt(receipt).save(using=metastore_of(factory).using)
        except DatabaseError as exc:
            self.stderr.write(
                f"The receipt was not stored in the database ({type(exc).__name__}): run "
                "manage.py migrate asherah_django; the receipt file is complete."
            )

    def _progress(self, done: int, total: int) -> None:
        self.stderr.write(f"\r{done}/{total} keys", ending="")
        self.stderr.flush()


def argparse_hide() -> str:
    import argparse

    return argparse.SUPPRESS

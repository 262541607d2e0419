"""ErasureReceipt: the signed receipts of ``manage.py asherah_erase``, kept in the database
for the admin (issue #15). The receipt file is the primary copy; this row holds the same
JSON (ids, times, counts, versions and the signature: never key bytes)."""

from __future__ import annotations

import json
from typing import Any

from django.db import models


class ErasureReceipt(models.Model):
    """One finished erasure, with its signed receipt."""

    partition = models.CharField(max_length=255)
    service = models.CharField(max_length=255)
    product = models.CharField(max_length=255)
    operator = models.CharField(max_length=255)
    finished = models.DateTimeField()
    keys_destroyed = models.PositiveIntegerField()
    keys_rewrapped = models.PositiveIntegerField()
    decryption_floor = models.PositiveIntegerField()
    verification = models.CharField(max_length=32)
    signer = models.CharField(max_length=255)
    document = models.TextField(help_text="the signed receipt, as written to its file")

    class Meta:
        app_label = "asherah_django"
        db_table = "asherah_erasure_receipt"
        ordering = ("-finished",)
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"erasure of partition {self.partition!r} ({self.service}/{self.product})"

    @property
    def receipt(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.document)
        return value

    @classmethod
    def from_receipt(cls, receipt: dict[str, Any]) -> ErasureReceipt:
        import datetime

        return cls(
            partition=receipt["partition"],
            service=receipt["service"],
            product=receipt["product"],
            operator=receipt["operator"],
            finished=datetime.datetime.fromisoformat(receipt["finished"]),
            keys_destroyed=len(receipt["keys_destroyed"]),
            keys_rewrapped=receipt["surviving_keys_rewrapped"],
            decryption_floor=receipt["master_key"]["decryption_floor"],
            verification=receipt["verification"]["result"],
            signer=receipt["signature"]["signer"],
            document=json.dumps(receipt, indent=2, ensure_ascii=False),
        )

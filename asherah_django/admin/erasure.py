"""Read-only admin pages of erasure receipts (``manage.py asherah_erase``, issue #15).

List and detail only: receipts are written by the command, never added, changed or
deleted here. They hold ids, times, counts, versions and the signature, never key bytes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from ..erasure_receipts import ErasureReceipt

if TYPE_CHECKING:
    _Base = admin.ModelAdmin[ErasureReceipt]
else:
    _Base = admin.ModelAdmin


class ErasureReceiptAdmin(_Base):
    list_display = (
        "partition", "service", "product", "finished", "operator", "keys_destroyed",
        "keys_rewrapped", "decryption_floor", "verification",
    )  # fmt: skip
    list_filter = ("service", "verification")
    search_fields = ("partition", "operator")
    date_hierarchy = "finished"
    fields = (
        "partition", "service", "product", "operator", "finished", "keys_destroyed",
        "keys_rewrapped", "decryption_floor", "verification", "signer", "receipt_document",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="receipt (verify with manage.py asherah_erase --verify-receipt)")
    def receipt_document(self, obj: ErasureReceipt) -> Any:
        text = json.dumps(obj.receipt, indent=2, ensure_ascii=False)
        return format_html("<pre>{}</pre>", text)

    def _never(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # receipts are written by asherah_erase only

    has_add_permission = has_change_permission = has_delete_permission = _never


def register(site: admin.AdminSite | None = None) -> None:
    """Put the receipt pages on ``site`` (default: ``django.contrib.admin.site``); idempotent."""
    site = site or admin.site
    if not site.is_registered(ErasureReceipt):
        site.register(ErasureReceipt, ErasureReceiptAdmin)

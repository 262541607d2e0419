"""The Django admin for asherah_django (loaded by ``admin.autodiscover()``).

- Key inspection under "Asherah encryption > Encryption keys": list, detail with lineage,
  revoke with confirmation, and a health panel on the app's admin index
  (:mod:`asherah_django.admin.model_admin`). Registered on ``django.contrib.admin.site``; call
  :func:`register` for another AdminSite.
- :class:`EncryptedFieldsAdminMixin` for the ModelAdmins of your models with encrypted
  fields: plaintext where the row's key is available, a placeholder otherwise
  (:mod:`asherah_django.admin.fields`).
"""

from __future__ import annotations

from . import erasure
from .fields import EncryptedFieldsAdminMixin
from .model_admin import REVOKE_PERMISSION, EncryptionKeyAdmin, register

__all__ = ["REVOKE_PERMISSION", "EncryptedFieldsAdminMixin", "EncryptionKeyAdmin", "register"]

register()
erasure.register()  # read-only erasure receipts (issue #15)

"""Blind indexes: exact-match lookups on encrypted fields through a keyed HMAC.

``EncryptedEmailField(blind_index=True)`` stores, beside the ciphertext, a truncated
HMAC-SHA256 of the normalised plaintext in an indexed column of its own (``email_bidx``);
``filter(email=...)``, ``exclude``, ``get``, ``__in``, ``unique=True`` and
``get_or_create`` compare that column. The field side (options, the index column, the
lookups) lives in :mod:`asherah_django.fields.blind`; this package holds the keys
(:mod:`.keyring`: generated once, wrapped by the system key, stored in the metastore,
cached, rotatable) and the batch re-indexing behind ``manage.py asherah_reindex``
(:mod:`.reindex`, imported on demand).
"""

from __future__ import annotations

from .keyring import (
    BIDX_PREFIX,
    IndexKeys,
    KeyRing,
    KeyVersion,
    index_key_id,
    index_keys,
    parse_index_key_id,
)

__all__ = [
    "BIDX_PREFIX",
    "IndexKeys",
    "KeyRing",
    "KeyVersion",
    "index_key_id",
    "index_keys",
    "parse_index_key_id",
]

"""Blind indexes: exact-match lookups on encrypted fields through a keyed HMAC.

    class Customer(models.Model):
        email = EncryptedEmailField(blind_index=True, unique=True)

gives the model a second column, ``email_bidx`` (a :class:`BlindIndexField`, added by the
field and carried by migrations), holding a truncated HMAC-SHA256 of the normalised
plaintext under a key of its own (see :mod:`.keyring`). Then
``filter(email=v)``, ``exclude(email=v)``, ``get``, ``email__in=[...]``, ``get_or_create``,
``update_or_create``, ``in_bulk(field_name="email")``, ``validate_unique`` and a
``UNIQUE`` constraint work, each as one query on that indexed column. ``iexact`` works when
the normalisation casefolds. Nothing else can: ranges, ``contains``, ordering and other
transforms still raise ``FieldError``.

Options (``blind_index=True`` or ``blind_index=BlindIndex(...)``)
-----------------------------------------------------------------
``strip``, ``casefold``
    Text normalisation before hashing; defaults: both on for EncryptedEmailField, both
    off for EncryptedCharField/EncryptedTextField (exact equality, as a plain column).
    ``casefold`` is Unicode caseless matching (NFC of the casefolded NFD): ``filter(email=
    "Ann@X.org")`` then also finds ``ann@x.org``, exactly like a case-insensitive
    collation. The stored value itself is never changed.
``scope``
    ``"global"`` (default): one key for the service; lookups need no partition, and equal
    values of different tenants have equal index values (someone reading the table learns
    that two tenants share a customer, never who). ``"partition"``: one key per partition,
    so index values of different tenants are unrelated; lookups then search one partition:
    the one given by an equality on the field's ``partition=`` field ANDed in the same
    query (``filter(tenant_id=t, email=v)``), else the open session's. ``unique=True`` is
    then unique per partition.
``digest_size``
    Bytes of the HMAC kept, 8 to 32; default 16 (128 bits). The index is compared in SQL
    with no second check, so it must not collide: at 128 bits two distinct values collide
    with probability about n²/2¹²⁹ (nothing for any real n), at 64 bits noticeably from
    billions of rows, which is why ``unique=True`` needs at least 16. Shortening it does
    not hide more: equality of values is visible either way (it is what an index is for);
    the plaintext is not, without the key.
``context``
    The string the field's key is derived from; default ``app_label.model.field``. Pin it
    before renaming a model or field, or run ``asherah_reindex`` after the rename.
``field_name``
    The index column's field; default ``<field>_bidx``.

Stored values look like ``sb8kq0.4c1e:9f86d081884c7d659a2feaa0c55ad015``: the key
version's tag, a 4-hex profile of the options and context, and the digest. Changing an
option or the context changes the profile, so ``asherah_reindex`` finds the rows to redo.

What keeps the index right
--------------------------
``save()``, ``create()``, ``bulk_create()`` and ``get_or_create()`` compute it with the
value. ``QuerySet.update()`` and Django's ``bulk_update()`` would change the value but not
its index, so an UPDATE that sets the field without its index raises ``FieldError``; use
``save()`` or :func:`asherah_django.fields.bulk_update`, which also updates the index
(``save(update_fields=[...])`` must name both). ``asherah_encrypt`` leaves the index empty:
run ``manage.py asherah_reindex`` afterwards, which also moves index values to a new key
after a rotation.

Modules: :mod:`.options` (the options, the bytes hashed), :mod:`.values` (index values
under the current keys), :mod:`.column` (the index column), :mod:`.guard` (the UPDATE
guard), :mod:`.lookups` (``exact``, ``iexact``, ``in``), :mod:`.keyring` (the keys:
generated once, wrapped by the system key, stored in the metastore, cached, rotatable),
:mod:`.reindex` and :mod:`.shred` (``manage.py asherah_reindex``, imported on demand).
This package never imports :mod:`asherah_django.fields` for the field side (an import
contract checks it): an encrypted field is seen through :class:`.options.SourceField`.
"""

from __future__ import annotations

from .column import BlindIndexField
from .keyring import IndexKeys, KeyVersion, index_key_id, index_keys, parse_index_key_id
from .options import BlindIndex

__all__ = [
    "BlindIndex",
    "BlindIndexField",
    "IndexKeys",
    "KeyVersion",
    "index_key_id",
    "index_keys",
    "parse_index_key_id",
]

"""Signals for metrics and auditing. Receivers get key ids and times, never key bytes.

- ``key_created(sender, key_id, created)``: a system or intermediate key was stored.
- ``key_revoked(sender, key_id, created)``: a key was marked revoked.
- ``key_shredded(sender, key_id, count)``: every version of a key id was deleted.
- ``decryption_failed(sender, model, field, error)``: a stored value could not be decrypted.
"""

from __future__ import annotations

from django.dispatch import Signal

key_created = Signal()
key_revoked = Signal()
key_shredded = Signal()
decryption_failed = Signal()

"""Every error the envelope engine raises, under one base class.

Messages name the setting, key id or server involved and never contain plaintext,
key bytes, tokens or secret ids. Lower-level exceptions (cryptography, hvac,
database drivers) are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class AsherahError(Exception):
    """Base class of every error raised by asherah_django."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} (hint: {self.hint})" if self.hint else message


class ConfigurationError(AsherahError):
    """A setting is missing or invalid; the message names the setting to fix."""


class DecryptionError(AsherahError):
    """A DataRowRecord could not be decrypted (wrong key, tampered or corrupted data)."""


class MalformedRecordError(DecryptionError):
    """A DataRowRecord or key record is not valid Asherah JSON (bad shape, types or base64)."""


class PartitionMismatchError(DecryptionError):
    """A value encrypted for one partition was presented to another partition's session."""


class BindingMismatchError(DecryptionError):
    """A bound value was read in another row or column than the one it was written for
    (the message names the differing parts, never their values)."""


class UnboundRecordError(BindingMismatchError):
    """A field with ``bind=`` read a value written without a binding."""


class KeyNotFoundError(DecryptionError):
    """The key a record names is absent from the metastore (never created, or shredded)."""


class KeyTamperedError(DecryptionError):
    """A key row of the metastore is not one this service wrote for the id it is stored
    under: a foreign parent, or (with ``KEY_INTEGRITY``) a missing or wrong integrity tag.
    Honest Asherah data never raises it; a database writer (SQL injection, leaked
    credentials, a restored backup) can. The key is not used."""


class KeyParentMismatchError(KeyTamperedError):
    """An intermediate or blind index key names a parent other than this service's own
    system key ``_SK_{service}_{product}``, or a system key was asked under another id."""


class KeyIntegrityError(KeyTamperedError):
    """A key row's integrity tag is missing (``KEY_INTEGRITY="require"``) or does not
    verify: the row was copied, moved or edited without the key that signs it."""


class InvalidPartitionError(AsherahError, ValueError):
    """A partition id is empty, not a string, or too long for the metastore's key id column."""


class PayloadTooLargeError(AsherahError, ValueError):
    """A plaintext is larger than the 64 MiB every Asherah implementation accepts."""


class KeyCreationError(AsherahError):
    """A new system or intermediate key could not be created or loaded after retrying."""


class KMSError(AsherahError):
    """The key management service refused or failed to wrap or unwrap a system key."""


class MetastoreError(AsherahError):
    """The metastore could not be read or written."""


class NoActiveSessionError(AsherahError):
    """An encrypted value was read or written with no partition session open."""


class SessionClosedError(AsherahError):
    """A session or factory was used after ``close()``."""


class UnreadableKeyError(MetastoreError):
    """A stored key row cannot serve as a key: its record is malformed. Maintenance
    commands count the values that need it as unreadable and go on (issue #14)."""

"""asherah_django: Asherah envelope encryption for Django model fields.

The public API is the names below, each also importable from the module that owns it
(README, "Public API"; tests/integration/docs/test_public_api.py fails when one appears or
disappears).
They are imported lazily, on first use, so that importing this package never configures
Django nor imports it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, Final

__version__ = "0.1.0.dev0"

#: Each public name and the module it comes from.
_HOMES: Final[dict[str, str]] = {
    # partition scopes and the keys behind them
    "session": "asherah_django.context",
    "get_session_factory": "asherah_django.runtime",
    # fields
    "EncryptedBigIntegerField": "asherah_django.fields",
    "EncryptedBinaryField": "asherah_django.fields",
    "EncryptedBooleanField": "asherah_django.fields",
    "EncryptedCharField": "asherah_django.fields",
    "EncryptedDateField": "asherah_django.fields",
    "EncryptedDateTimeField": "asherah_django.fields",
    "EncryptedDecimalField": "asherah_django.fields",
    "EncryptedEmailField": "asherah_django.fields",
    "EncryptedIntegerField": "asherah_django.fields",
    "EncryptedJSONField": "asherah_django.fields",
    "EncryptedTextField": "asherah_django.fields",
    "BlindIndex": "asherah_django.blind_index",
    "Bind": "asherah_django.fields",
    "bulk_update": "asherah_django.fields",
    # the errors a caller catches
    "AsherahError": "asherah_django.core.errors",
    "ConfigurationError": "asherah_django.core.errors",
    "DecryptionError": "asherah_django.core.errors",
    "BindingMismatchError": "asherah_django.core.errors",
    "NoActiveSessionError": "asherah_django.core.errors",
    "PartitionMismatchError": "asherah_django.core.errors",
    "PlaintextValueError": "asherah_django.fields",
    "RowPartitionRequiredError": "asherah_django.fields",
}

#: The same names as _HOMES (a literal list, for type checkers and linters).
__all__ = [
    "AsherahError",
    "Bind",
    "BindingMismatchError",
    "BlindIndex",
    "ConfigurationError",
    "DecryptionError",
    "EncryptedBigIntegerField",
    "EncryptedBinaryField",
    "EncryptedBooleanField",
    "EncryptedCharField",
    "EncryptedDateField",
    "EncryptedDateTimeField",
    "EncryptedDecimalField",
    "EncryptedEmailField",
    "EncryptedIntegerField",
    "EncryptedJSONField",
    "EncryptedTextField",
    "NoActiveSessionError",
    "PartitionMismatchError",
    "PlaintextValueError",
    "RowPartitionRequiredError",
    "__version__",
    "bulk_update",
    "get_session_factory",
    "session",
]

if TYPE_CHECKING:
    from .blind_index import BlindIndex
    from .context import session
    from .core.errors import (
        AsherahError,
        BindingMismatchError,
        ConfigurationError,
        DecryptionError,
        NoActiveSessionError,
        PartitionMismatchError,
    )
    from .fields import (
        Bind,
        EncryptedBigIntegerField,
        EncryptedBinaryField,
        EncryptedBooleanField,
        EncryptedCharField,
        EncryptedDateField,
        EncryptedDateTimeField,
        EncryptedDecimalField,
        EncryptedEmailField,
        EncryptedIntegerField,
        EncryptedJSONField,
        EncryptedTextField,
        PlaintextValueError,
        RowPartitionRequiredError,
        bulk_update,
    )
    from .runtime import get_session_factory


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'asherah_django' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # the next lookup is a plain global read
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

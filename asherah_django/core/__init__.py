"""The Django-free envelope-encryption engine, wire-compatible with Asherah.

Nothing under ``asherah_django.core`` imports Django.
"""

from .errors import (
    AsherahError,
    BindingMismatchError,
    ConfigurationError,
    DecryptionError,
    InvalidPartitionError,
    KeyCreationError,
    KeyIntegrityError,
    KeyNotFoundError,
    KeyParentMismatchError,
    KeyTamperedError,
    KMSError,
    MalformedRecordError,
    MetastoreError,
    NoActiveSessionError,
    PartitionMismatchError,
    PayloadTooLargeError,
    SessionClosedError,
    UnboundRecordError,
)
from .kms.static import StaticKMS
from .metastore.memory import InMemoryMetastore
from .policy import CryptoPolicy
from .protocols import BatchMetastore, KeyManagementService, Metastore
from .records import DataRowRecord, EnvelopeKeyRecord, KeyMeta, parse_data_row
from .session import Session, SessionFactory

__all__ = [
    "AsherahError",
    "BatchMetastore",
    "BindingMismatchError",
    "ConfigurationError",
    "CryptoPolicy",
    "DataRowRecord",
    "DecryptionError",
    "EnvelopeKeyRecord",
    "InMemoryMetastore",
    "InvalidPartitionError",
    "KMSError",
    "KeyCreationError",
    "KeyIntegrityError",
    "KeyManagementService",
    "KeyMeta",
    "KeyNotFoundError",
    "KeyParentMismatchError",
    "KeyTamperedError",
    "MalformedRecordError",
    "Metastore",
    "MetastoreError",
    "NoActiveSessionError",
    "PartitionMismatchError",
    "PayloadTooLargeError",
    "Session",
    "SessionClosedError",
    "SessionFactory",
    "StaticKMS",
    "UnboundRecordError",
    "parse_data_row",
]

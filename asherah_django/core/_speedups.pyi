"""Type stub of the optional C extension (asherah_django/core/_speedups.c)."""

from typing import Final

from _typeshed import ReadableBuffer

#: Values of at least this many bytes are processed with the GIL released.
NOGIL_THRESHOLD: Final[int]
#: 1 when AES-256-GCM is called through OpenSSL 3's provider interface directly (it passed the
#: known-answer test at import), 0 when through EVP (OpenSSL 1.1.1, or
#: ASHERAH_DJANGO_SPEEDUPS_EVP set at import).
PROVIDER_DIRECT: Final[int]
#: The OpenSSL the extension runs with, e.g. "OpenSSL 3.0.19 27 Jan 2026".
OPENSSL_VERSION: Final[str]

class AuthenticationError(ValueError):
    """A blob failed authentication, was too short, or its data row key is not 32 bytes."""

class Base64Error(ValueError):
    """A str is not canonical standard padded base64."""

def encrypt_row(ik_key: bytes, data: ReadableBuffer, /) -> tuple[str, str]:
    """(base64 of the wrapped fresh data row key, base64 of the data sealed under it)."""

def decrypt_row(ik_key: bytes, wrapped_drk_b64: str, data_b64: str, /) -> bytes:
    """The plaintext; AuthenticationError or Base64Error if the blobs do not open."""

def encrypt_record(
    ik_key: bytes, data: ReadableBuffer, created: float, parent_meta_json: str, /
) -> str:
    """The whole compact DataRowRecord JSON of ``data`` sealed as encrypt_row does."""

def decrypt_record(ik_key: bytes, record: str, middle_end: int, /) -> bytes:
    """decrypt_row of the blobs at the canonical offsets of ``record`` (canonical_created)."""

def canonical_created(record: str, middle: str, /) -> int:
    """The IK Created of a record in the canonical compact layout for ``middle``, else -1."""

def forget_key(ik_key: bytes, /) -> None:
    """Scrub the cached key schedule of ik_key, if it is the cached one."""

def b64encode(data: ReadableBuffer, /) -> str:
    """Standard padded base64, as binascii.b2a_base64(data, newline=False).decode()."""

def b64decode(text: str, /) -> bytes:
    """Decode canonical standard padded base64; Base64Error for anything else."""

"""AwsKMS: system keys wrapped by AWS KMS in one or more regions, as Asherah does it.

A new system key is encrypted (AES-256-GCM) under a fresh data key from
``GenerateDataKey`` in the preferred region; the data key is then encrypted for every
other region of ``REGION_MAP`` with ``Encrypt``. The stored bytes are Asherah's envelope
(:mod:`.aws_envelope`), so Go, Java, C# and Rust services sharing the metastore read it.
Decrypting tries the preferred region first, then the others in name order, so a
region outage costs a failed attempt, not the key.

Creating a key needs every region: a key wrapped for fewer regions than configured would
silently lose its failover (upstream Go drops such regions; we refuse, naming them).

Requests have connect and read timeouts (``AWS_CONNECT_TIMEOUT``, ``AWS_TIMEOUT``).
Connection errors, connect timeouts and 5xx answers are retried up to ``AWS_MAX_RETRIES``
times with jittered backoff; 4xx answers (denied, disabled key, bad ciphertext, throttling)
and read timeouts never are. botocore's own retries are off so these rules hold.
This and :mod:`.secrets_manager` are the only modules importing boto3, lazily: the
package imports without it. Building the KMS does no network I/O.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..aead import KEY_SIZE, Cipher
from ..errors import ConfigurationError, DecryptionError
from ..forking import after_fork_in_child
from .aws_config import AwsKMSConfig
from .aws_envelope import (
    HINT_CREDENTIALS,
    AwsEnvelopeError,
    AwsKMSError,
    AwsKMSUnavailableError,
    Envelope,
    RegionalKek,
)

__all__ = ["AwsKMS", "AwsKMSConfig", "AwsStats"]

logger = logging.getLogger("asherah_django.core.kms.aws")
T = TypeVar("T")

BACKOFF_BASE: Final = 0.05
BACKOFF_CAP: Final = 1.0
_OPS: Final = {"GenerateDataKey": "generate", "Encrypt": "encrypt", "Decrypt": "decrypt"}


def import_boto3() -> Any:
    """boto3, or a ConfigurationError saying how to install it."""
    try:
        import boto3
    except ImportError:
        raise ConfigurationError(
            "KMS=aws and KMS=secrets-manager need boto3: pip install 'asherah-django[aws]'"
        ) from None
    return boto3


@dataclass
class AwsStats:
    """AWS requests that got an answer, by operation and by region; retries counted apart."""

    generate: int = 0
    encrypt: int = 0
    decrypt: int = 0
    other: int = 0
    retries: int = 0
    by_region: Counter[str] = field(default_factory=Counter)

    @property
    def kms_calls(self) -> int:
        return self.generate + self.encrypt + self.decrypt


class Unavailable(Exception):
    """A retryable failure (internal): the request never got a usable answer."""


class AwsClients:
    """boto3 clients per (service, region), one set per process, with answer counting."""

    def __init__(
        self,
        profile_name: str | None,
        endpoints: Mapping[str, str],
        endpoint_url: str | None,
        timeout: float,
        connect_timeout: float,
        max_retries: int,
    ) -> None:
        self.profile_name = profile_name
        self.endpoints = dict(endpoints)  # KMS, by region
        self.endpoint_url = endpoint_url  # every other service
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.max_retries = max_retries
        self.stats = AwsStats()
        self._clients: dict[tuple[str, str], Any] = {}
        self._session: Any = None  # one boto3 session: its clients share loaded models
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._closed = False
        _FORK_AWARE.add(self)

    def after_fork(self) -> None:
        """In a forked child: new locks (a parent thread may have held them), no inherited
        clients (never share sockets with the parent), counters from zero."""
        self._lock, self._stats_lock = threading.Lock(), threading.Lock()
        self._clients, self._session = {}, None
        self.stats = AwsStats()

    def client(self, service: str, region: str) -> Any:
        found = self._clients.get((service, region))
        if found is not None:
            return found
        with self._lock:
            if self._closed:
                raise AwsKMSError("the AWS KMS is closed", regions=(region,))
            found = self._clients.get((service, region))
            if found is None:
                found = self._clients[(service, region)] = self._make(service, region)
        return found

    def _make(self, service: str, region: str) -> Any:
        boto3 = import_boto3()
        from botocore.config import Config
        from botocore.exceptions import ProfileNotFound

        try:
            if self._session is None:
                self._session = boto3.session.Session(profile_name=self.profile_name)
            session = self._session
        except ProfileNotFound:
            raise ConfigurationError(
                f"AWS_PROFILE_NAME {self.profile_name!r} is not a profile of the shared "
                "AWS config (~/.aws/config, ~/.aws/credentials)"
            ) from None
        config = Config(
            region_name=region or None,
            connect_timeout=self.connect_timeout,
            read_timeout=self.timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        endpoint = self.endpoints.get(region) if service == "kms" else self.endpoint_url
        client = session.client(service, endpoint_url=endpoint, config=config)
        client.meta.events.register("after-call", self._count_answer(region))
        redact_botocore_debug_logs()
        return client

    def _count_answer(self, region: str) -> Callable[..., None]:
        def count(*, model: Any = None, **kwargs: object) -> None:
            name = _OPS.get(getattr(model, "name", ""), "other")
            with self._stats_lock:
                setattr(self.stats, name, getattr(self.stats, name) + 1)
                self.stats.by_region[region] += 1

        return count

    def call(self, label: str, region: str, send: Callable[[], T]) -> T:
        """``send()`` with the module's retry rules; errors become AwsKMSError subclasses."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return send()
            except ClientError as exc:
                error = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                code = error.get("Code", "error")
                reason = f"{code} (HTTP {status})"
                if status >= 500 and attempt < attempts:
                    self._backoff(label, region, attempt, attempts, reason)
                    continue
                cls = AwsKMSUnavailableError if status >= 500 else AwsKMSError
                raise cls(
                    f"{label} in {region} failed: {reason}: {_short(error.get('Message'))}",
                    hint=_hint(code),
                    regions=(region,),
                ) from None
            except NoCredentialsError:
                raise AwsKMSError(
                    f"{label} in {region}: no AWS credentials found",
                    hint=HINT_CREDENTIALS,
                    regions=(region,),
                ) from None
            except ReadTimeoutError:
                raise AwsKMSUnavailableError(
                    f"{label} in {region}: no answer within AWS_TIMEOUT={self.timeout:g}s",
                    hint="check the KMS endpoint's health, or raise AWS_TIMEOUT",
                    regions=(region,),
                ) from None
            except (EndpointConnectionError, ConnectTimeoutError) as exc:
                reason = (
                    "connect timed out"
                    if isinstance(exc, ConnectTimeoutError)
                    else ("could not connect")
                )
                if attempt < attempts:
                    self._backoff(label, region, attempt, attempts, reason)
                    continue
                raise AwsKMSUnavailableError(
                    f"{label} in {region} failed: {reason} to the KMS endpoint "
                    f"after {attempts} attempt(s)",
                    hint="check network access to KMS in this region (VPC endpoint, proxy, "
                    "AWS_KMS_ENDPOINTS)",
                    regions=(region,),
                ) from None
            except BotoCoreError as exc:
                raise AwsKMSError(
                    f"{label} in {region} failed: {type(exc).__name__}", regions=(region,)
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, label: str, region: str, attempt: int, attempts: int, why: str) -> None:
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        logger.warning(
            "%s in %s: attempt %d of %d failed (%s); retrying in %.2fs",
            label, region, attempt, attempts, why, delay,
        )  # fmt: skip
        with self._stats_lock:
            self.stats.retries += 1
        time.sleep(delay)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, {}
        _FORK_AWARE.discard(self)
        for client in clients.values():
            close = getattr(client, "close", None)
            if callable(close):
                close()


class AwsKMS:
    """Wraps system keys with AWS KMS keys in one or more regions. Thread- and fork-safe."""

    def __init__(self, config: AwsKMSConfig) -> None:
        self.config = config
        self._clients = AwsClients(
            config.profile_name,
            config.endpoints,
            config.endpoint_url,
            config.timeout,
            config.connect_timeout,
            config.max_retries,
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> AwsKMS:
        """Build from settings by name (``REGION_MAP``, ``PREFERRED_REGION``, ...)."""
        return cls(AwsKMSConfig.from_mapping(values))

    def __repr__(self) -> str:
        return f"<AwsKMS regions={list(self.config.regions)!r}>"

    @property
    def regions(self) -> tuple[str, ...]:
        """The preferred region, then the others by name."""
        return self.config.regions

    @property
    def stats(self) -> AwsStats:
        """This process's answered AWS requests (a forked child starts at zero)."""
        return self._clients.stats

    def client(self, service: str, region: str) -> Any:
        """The boto3 client of ``service`` in ``region`` (diagnostics)."""
        return self._clients.client(service, region)

    def call(self, label: str, region: str, send: Callable[[], T]) -> T:
        """Run ``send`` under this KMS's retry rules (diagnostics)."""
        return self._clients.call(label, region, send)

    # -- the KeyManagementService contract ------------------------------------------------

    def encrypt_key(self, key: bytes) -> bytes:
        """Wrap ``key`` for every region; returns Asherah's envelope JSON."""
        if not isinstance(key, bytes | bytearray | memoryview):
            raise TypeError(f"encrypt_key() takes bytes, not {type(key).__name__}")
        preferred = self.config.preferred_region
        arn = self.config.region_map[preferred]
        kms = self._clients.client("kms", preferred)
        reply = self._clients.call(
            "AWS KMS GenerateDataKey",
            preferred,
            lambda: kms.generate_data_key(KeyId=arn, KeySpec="AES_256"),
        )
        data_key, blob = reply.get("Plaintext"), reply.get("CiphertextBlob")
        if not isinstance(data_key, bytes) or len(data_key) != KEY_SIZE or not blob:
            raise AwsKMSError(
                f"AWS KMS GenerateDataKey in {preferred} returned no AES-256 data key",
                regions=(preferred,),
            )
        keks = {preferred: RegionalKek(preferred, arn, bytes(blob))}
        for region in self.regions[1:]:
            keks[region] = RegionalKek(region, self.config.region_map[region],
                                       self._encrypt_in(region, data_key))  # fmt: skip
        encrypted = Cipher(data_key).seal(bytes(key))
        ordered = tuple(keks[r] for r in sorted(keks))  # by region, as the Rust core writes
        return Envelope(encrypted, ordered).to_json()

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        """Unwrap an envelope, preferred region first; AwsKMSError names every region tried."""
        envelope = Envelope.from_json(encrypted_key)
        wrapped = envelope.by_region()
        tried: list[str] = []
        failures: list[str] = []
        unavailable = True
        for region in self.regions:
            kek = wrapped.get(region)
            if kek is None:
                continue
            tried.append(region)
            try:
                data_key = self._decrypt_in(region, kek.encrypted_kek)
                return Cipher(data_key).open(envelope.encrypted_key)
            except AwsKMSUnavailableError as exc:
                failures.append(_reason(exc))
            except AwsKMSError as exc:
                unavailable = False
                failures.append(_reason(exc))
            except (DecryptionError, ValueError):
                unavailable = False
                failures.append(f"{region}: the data key does not open encryptedKey")
        if not tried:
            raise AwsEnvelopeError(
                "the system key is wrapped for regions "
                f"{', '.join(sorted(wrapped)) or 'none'}, none of which is in REGION_MAP "
                f"({', '.join(self.regions)})",
                hint="add one of the key's regions (with its key ARN) to REGION_MAP",
                regions=(),
            )
        cls = AwsKMSUnavailableError if unavailable else AwsKMSError
        raise cls(
            f"AWS KMS could not decrypt the system key in any region "
            f"(tried {', '.join(tried)}): {'; '.join(failures)}",
            hint="check each region's KMS endpoint and the key policies "
            "(kms:Decrypt on the keys in REGION_MAP)",
            regions=tried,
        )

    # -- per region -------------------------------------------------------------------------

    def _encrypt_in(self, region: str, data_key: bytes) -> bytes:
        kms = self._clients.client("kms", region)
        arn = self.config.region_map[region]
        reply = self._clients.call(
            "AWS KMS Encrypt", region, lambda: kms.encrypt(KeyId=arn, Plaintext=data_key)
        )
        blob = reply.get("CiphertextBlob")
        if not blob:
            raise AwsKMSError(f"AWS KMS Encrypt in {region} returned no ciphertext",
                              regions=(region,))  # fmt: skip
        return bytes(blob)

    def _decrypt_in(self, region: str, blob: bytes) -> bytes:
        kms = self._clients.client("kms", region)
        arn = self.config.region_map[region]
        reply = self._clients.call(
            "AWS KMS Decrypt", region, lambda: kms.decrypt(KeyId=arn, CiphertextBlob=blob)
        )
        data_key = reply.get("Plaintext")
        if not isinstance(data_key, bytes) or len(data_key) != KEY_SIZE:
            raise AwsKMSError(f"AWS KMS Decrypt in {region} returned no 32-byte data key",
                              regions=(region,))  # fmt: skip
        return data_key

    def close(self) -> None:
        """Close the HTTP connections of every client. Idempotent."""
        self._clients.close()


class _DropSecretBodies(logging.Filter):
    """botocore logs request parameters and response bodies at DEBUG, which for KMS and
    Secrets Manager hold data keys and master keys: such records are dropped."""

    _MARKERS = ("Plaintext", "SecretString", "SecretBinary")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        try:
            text = record.getMessage()
        except Exception:
            return True
        return not any(marker in text for marker in self._MARKERS)


_FILTER = _DropSecretBodies()


def redact_botocore_debug_logs() -> None:
    """Drop botocore DEBUG records that carry Plaintext or secret values (idempotent)."""
    for name in ("botocore.parsers", "botocore.endpoint", "botocore.hooks", "botocore.auth"):
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)


_FORK_AWARE: weakref.WeakSet[AwsClients] = weakref.WeakSet()


@after_fork_in_child
def _after_fork_in_child() -> None:
    for clients in list(_FORK_AWARE):
        clients.after_fork()


def _reason(exc: AwsKMSError) -> str:
    return str(exc.args[0])


def _short(message: object) -> str:
    text = str(message or "").replace("\n", " ")
    return text[:200]


def _hint(code: str) -> str:
    if code in ("AccessDeniedException", "UnrecognizedClientException",
                "InvalidSignatureException", "ExpiredTokenException"):  # fmt: skip
        return HINT_CREDENTIALS
    if code in ("DisabledException", "KMSInvalidStateException", "NotFoundException"):
        return "check the key in REGION_MAP exists and is enabled in that region"
    if code in ("InvalidCiphertextException", "IncorrectKeyException"):
        return "the stored key was wrapped by a different KMS key; check REGION_MAP"
    if code == "ThrottlingException":
        return "KMS is throttling this account: raise the KMS request quota"
    return ""


if TYPE_CHECKING:  # mypy verifies that AwsKMS fits the contracts
    from ..protocols import ClosableKMS, KeyManagementService

    _kms = AwsKMS(AwsKMSConfig({}, ""))
    _fits: KeyManagementService = _kms
    _closable: ClosableKMS = _kms

"""SecretsManagerKMS: a static master key read from AWS Secrets Manager. For migration only.

As Asherah's ``KMS=secrets-manager``: the secret (``SECRETS_MANAGER_SECRET_ID``) holds a
32-byte master key, as 64 hex characters in ``SecretString`` or as 32 raw bytes in
``SecretBinary``; system keys are wrapped with AES-256-GCM under it exactly as the static
KMS does, so keys written by Asherah's Secrets Manager KMS decrypt here and vice versa.
The key is fetched on first use (building the KMS does no I/O) and then held in process
memory: there is no rotation and no audit of each unwrap. Move to ``KMS=aws`` or
``KMS=vault`` with ``asherah_rotate --rewrap --from-kms secrets-manager``.
"""

from __future__ import annotations

import binascii
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..aead import KEY_SIZE, Cipher
from ..errors import DecryptionError
from .aws import AwsClients
from .aws_config import SecretsManagerConfig
from .aws_envelope import AwsKMSError

logger = logging.getLogger("asherah_django.core.kms.secrets_manager")


class SecretsManagerKMS:
    """Wraps system keys under a master key kept in AWS Secrets Manager."""

    def __init__(self, config: SecretsManagerConfig) -> None:
        self.config = config
        # Unset: boto3's own resolution (AWS_DEFAULT_REGION, the profile's region).
        self.region = config.region or ""
        self._clients = AwsClients(
            config.profile_name,
            {},
            config.endpoint,
            config.timeout,
            config.connect_timeout,
            config.max_retries,
        )
        self._cipher: Cipher | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> SecretsManagerKMS:
        return cls(SecretsManagerConfig.from_mapping(values))

    def __repr__(self) -> str:
        return f"<SecretsManagerKMS secret={self.config.secret_id!r} region={self.region!r}>"

    def encrypt_key(self, key: bytes) -> bytes:
        return self._master().seal(bytes(key))

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        try:
            return self._master().open(bytes(encrypted_key))
        except DecryptionError:
            raise AwsKMSError(
                "the Secrets Manager master key could not decrypt the system key: the key "
                f"in secret {self.config.secret_id!r} differs from the one that wrapped it",
                hint="check SECRETS_MANAGER_SECRET_ID and KMS match the other services",
                regions=(self.region,),
            ) from None

    def load(self) -> None:
        """Fetch the master key now (checks access to the secret)."""
        self._master()

    def _master(self) -> Cipher:
        cipher = self._cipher
        if cipher is None:
            with self._lock:
                cipher = self._cipher
                if cipher is None:
                    cipher = self._cipher = Cipher(self._fetch())
                    logger.warning(
                        "asherah_django is using KMS=secrets-manager: a static master key held "
                        "in process memory, for migration only; move to KMS=aws or KMS=vault"
                    )
        return cipher

    def _fetch(self) -> bytes:
        client = self._clients.client("secretsmanager", self.region)
        secret_id = self.config.secret_id
        reply = self._clients.call(
            "Secrets Manager GetSecretValue",
            self.region or "the default region",
            lambda: client.get_secret_value(SecretId=secret_id),
        )
        text, binary = reply.get("SecretString"), reply.get("SecretBinary")
        where = f"secret {secret_id!r}"
        if isinstance(text, str):
            try:
                key = binascii.unhexlify(text.strip())
            except (binascii.Error, ValueError):
                raise AwsKMSError(
                    f"{where}: SecretString is not hex (expected 64 hex characters)",
                    regions=(self.region,),
                ) from None
        elif isinstance(binary, bytes | bytearray):
            key = bytes(binary)
        else:
            raise AwsKMSError(f"{where} has neither SecretString nor SecretBinary",
                              regions=(self.region,))  # fmt: skip
        if len(key) != KEY_SIZE:
            raise AwsKMSError(
                f"{where} holds {len(key)} bytes; the master key must be {KEY_SIZE}",
                regions=(self.region,),
            )
        return key

    @property
    def stats(self) -> object:
        return self._clients.stats

    def close(self) -> None:
        self._cipher = None
        self._clients.close()


if TYPE_CHECKING:
    from ..protocols import ClosableKMS, KeyManagementService

    _kms = SecretsManagerKMS(SecretsManagerConfig(""))
    _fits: KeyManagementService = _kms
    _closable: ClosableKMS = _kms

"""VaultTransitKMS: system keys wrapped by HashiCorp Vault's (or OpenBao's) Transit engine.

The master key never leaves Vault: a new system key goes to ``<mount>/encrypt/<key>`` and
comes back from ``<mount>/decrypt/<key>``. The stored bytes are the UTF-8 of Vault's
``vault:vN:...`` ciphertext, exactly as Asherah's Rust core stores them, so one metastore
serves both. Beyond upstream: tokens are renewed and logins repeated (``vault_token``),
every request has connect and read timeouts, connection errors and 5xx/sealed answers are
retried a few times with jittered backoff (never 4xx), redirects are not followed (the
token stays with VAULT_ADDR), and a forked child builds its own HTTP session.
This is the only module of the package that imports hvac.

    kms = VaultTransitKMS.from_mapping(os.environ)   # or the ASHERAH settings dict
    factory = SessionFactory("service", "product", kms, metastore)

Building the KMS does no network I/O; the first call logs in (``login()`` does it now).
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import hvac.adapters
import requests

from ..errors import ConfigurationError
from .vault_config import VaultTransitConfig
from .vault_errors import (
    HINT_BLOB,
    VaultBlobError,
    VaultKMSError,
    VaultRequestError,
    context,
    reply_error,
)
from .vault_http import VaultHTTP, VaultReply, VaultStats
from .vault_inspect import (
    TransitKeyInfo,
    VaultHealth,
    VaultTokenInfo,
    check_ciphertext,
    health_from,
    parse_version,
    token_info_from,
    transit_key_from,
)
from .vault_token import TokenManager

__all__ = ["VaultStats", "VaultTransitConfig", "VaultTransitKMS"]

#: Ciphertexts sent per batched rewrap request.
REWRAP_BATCH_SIZE: Final = 100
_TRANSIT_OPS: Final = ("encrypt", "decrypt", "rewrap")
_HEALTH_QUERY: Final = {"standbyok": "true", "sealedcode": "200", "uninitcode": "200"}


class VaultTransitKMS:
    """Wraps system keys with a Vault Transit key. Thread-safe and fork-safe.

    ``stats`` counts this process's requests (a forked child starts from zero).
    """

    def __init__(self, config: VaultTransitConfig) -> None:
        for name, path in (
            ("VAULT_CLIENT_CERT", config.client_cert),
            ("VAULT_CLIENT_KEY", config.client_key),
            ("VAULT_CACERT", config.ca_cert),
        ):
            if path is not None and not os.path.isfile(path):
                raise ConfigurationError(f"{name} is not a readable file: {path}")
        self.config = config
        self._ctx = context(config.addr, config.transit_mount, config.transit_key, config.namespace)
        self._paths = {
            op: f"v1/{config.transit_mount}/{op}/{config.transit_key}" for op in _TRANSIT_OPS
        }
        self._http = VaultHTTP(config, self._ctx, functools.partial(_hvac_adapter, config))
        self._tokens = TokenManager(config, self._http)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> VaultTransitKMS:
        """Build from environment-style settings (see :class:`VaultTransitConfig`)."""
        return cls(VaultTransitConfig.from_mapping(values))

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<VaultTransitKMS addr={c.addr!r} mount={c.transit_mount!r} "
            f"key={c.transit_key!r} auth={c.auth_method}>"
        )

    # -- the KeyManagementService contract ------------------------------------------------

    def encrypt_key(self, key: bytes) -> bytes:
        """Wrap ``key`` with the latest Transit key version; returns ``b"vault:vN:..."``."""
        if not isinstance(key, bytes | bytearray | memoryview):
            raise TypeError(f"encrypt_key() takes bytes, not {type(key).__name__}")
        data = self._transit("encrypt", {"plaintext": base64.b64encode(bytes(key)).decode()})
        return self._ciphertext_out("encrypt", data.get("ciphertext"))

    def decrypt_key(self, encrypted_key: bytes) -> bytes:
        """Unwrap bytes made by :meth:`encrypt_key` (or by asherah-ffi's Vault Transit KMS)."""
        text = check_ciphertext(encrypted_key, "decrypt", self._ctx)
        data = self._transit("decrypt", {"ciphertext": text})
        plaintext = data.get("plaintext")
        try:
            if not isinstance(plaintext, str):
                raise ValueError("no plaintext")
            return base64.b64decode(plaintext, validate=True)
        except (binascii.Error, ValueError):
            raise VaultRequestError(
                f"Vault Transit decrypt: invalid base64 in plaintext {self._ctx}"
            ) from None

    # -- rewrap (rotation) ----------------------------------------------------------------

    def rewrap_key(self, encrypted_key: bytes) -> bytes:
        """Re-encrypt a stored key under the newest Transit key version, inside Vault."""
        text = check_ciphertext(encrypted_key, "rewrap", self._ctx)
        return self._ciphertext_out(
            "rewrap", self._transit("rewrap", {"ciphertext": text}).get("ciphertext")
        )

    def rewrap_keys(self, encrypted_keys: Sequence[bytes]) -> list[bytes]:
        """:meth:`rewrap_key` for many keys, ``REWRAP_BATCH_SIZE`` per request, in order.

        All or nothing: if Vault refuses any key, :class:`VaultRequestError` names the first.
        """
        texts = [check_ciphertext(blob, "rewrap", self._ctx) for blob in encrypted_keys]
        result: list[bytes] = []
        for start in range(0, len(texts), REWRAP_BATCH_SIZE):
            chunk = texts[start : start + REWRAP_BATCH_SIZE]
            body = {"batch_input": [{"ciphertext": text} for text in chunk]}
            reply = self._tokens.call(
                "Vault Transit rewrap", "POST", self._paths["rewrap"], body, "rewrap"
            )
            items = (reply.payload.get("data") or {}).get("batch_results")
            if not isinstance(items, list) or len(items) != len(chunk):
                raise self._error("rewrap", reply, self._paths["rewrap"][3:])
            for index, item in enumerate(items, start):
                if isinstance(item, dict) and item.get("error"):
                    raise VaultRequestError(
                        f"Vault Transit rewrap failed for key {index} of {len(texts)}: "
                        f"{item['error']} {self._ctx}",
                        hint=HINT_BLOB,
                        status=reply.status,
                    )
                result.append(self._ciphertext_out("rewrap", item.get("ciphertext")))
        return result

    @staticmethod
    def key_version(encrypted_key: bytes) -> int:
        """The Vault key version (``N`` of ``vault:vN:``) a stored system key is wrapped under."""
        try:
            version = parse_version(bytes(encrypted_key).decode("utf-8"))
        except UnicodeDecodeError:
            version = None
        if version is None:
            raise VaultBlobError(
                "stored system key is not a Vault Transit ciphertext", hint=HINT_BLOB
            )
        return version

    # -- read-only diagnostics (asherah_check) -------------------------------------------

    def health(self) -> VaultHealth:
        """``sys/health`` (no token needed): initialized, sealed, standby, version."""
        reply = self._http.send(
            "GET", "v1/sys/health", "Vault health", token=None, kind="other",
            params=_HEALTH_QUERY, root_namespace=True,
        )  # fmt: skip
        if not reply.ok:
            raise self._error("health", reply, "sys/health")
        return health_from(reply.payload)

    def token_info(self) -> VaultTokenInfo:
        """``auth/token/lookup-self``: TTL, renewability and policies of the current token."""
        return token_info_from(self._other("lookup-self", "GET", "v1/auth/token/lookup-self", None))

    def capabilities(self, *, key_read: bool = False) -> dict[str, tuple[str, ...]]:
        """``sys/capabilities-self`` for the encrypt, decrypt and rewrap paths, by operation
        (and, with ``key_read``, for the key's configuration ``<mount>/keys/<key>`` as
        ``"keys"``)."""
        paths = {op: path.removeprefix("v1/") for op, path in self._paths.items()}
        if key_read:
            paths["keys"] = f"{self.config.transit_mount}/keys/{self.config.transit_key}"
        body = {"paths": list(paths.values())}
        data = self._other("capabilities-self", "POST", "v1/sys/capabilities-self", body)
        found = {op: data.get(path) for op, path in paths.items()}
        return {op: tuple(caps) if isinstance(caps, list) else () for op, caps in found.items()}

    def transit_key_info(self) -> TransitKeyInfo:
        """``<mount>/keys/<key>``: versions, ``min_decryption_version``, rotation period."""
        path = f"v1/{self.config.transit_mount}/keys/{self.config.transit_key}"
        return transit_key_from(self._other("read key", "GET", path, None))

    def request(self, label: str, method: str, path: str, body: object = None) -> dict[str, Any]:
        """A call to ``v1/<path>`` with this KMS's token; Vault's ``data``, or our error.

        For tooling beyond encrypt/decrypt (``asherah_erase``: rotate, config, sign, verify).
        """
        return self._other(label, method, f"v1/{path}", body)

    def login(self) -> None:
        """Obtain a token now (a login, or a lookup of ``VAULT_TOKEN``): checks credentials."""
        self._tokens.login()

    @property
    def node_in_use(self) -> str:
        """The node of ``VAULT_ADDR`` that answered last (where requests go)."""
        return self._http.node_in_use

    @property
    def nodes_tried(self) -> tuple[str, ...]:
        """Every node of ``VAULT_ADDR`` this KMS sent a request to, in the order first tried."""
        return self._http.nodes_tried

    @property
    def stats(self) -> VaultStats:
        """Requests this process sent that reached Vault, by kind (a forked child starts at 0)."""
        return self._http.stats

    def close(self) -> None:
        """Forget the token and close the HTTP session (the token is not revoked). Idempotent."""
        self._tokens.close()
        self._http.close()

    def __enter__(self) -> VaultTransitKMS:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------

    def _transit(self, op: str, body: object) -> dict[str, Any]:
        reply = self._tokens.call(f"Vault Transit {op}", "POST", self._paths[op], body, op)
        if not reply.ok:
            raise self._error(op, reply, self._paths[op][3:])
        return self._data(op, reply)

    def _other(self, op: str, method: str, path: str, body: object) -> dict[str, Any]:
        reply = self._tokens.call(f"Vault {op}", method, path, body, "other")
        if not reply.ok:
            raise self._error(op, reply, path[3:])
        return self._data(op, reply)

    def _error(self, op: str, reply: VaultReply, path: str) -> VaultKMSError:
        c = self.config
        label = f"Vault Transit {op}" if op in _TRANSIT_OPS else f"Vault {op}"
        mount, key = c.transit_mount, c.transit_key
        text = reply.text()
        return reply_error(
            label, reply.status, text, ctx=self._ctx, mount=mount, key=key, path=path
        )

    def _data(self, op: str, reply: VaultReply) -> dict[str, Any]:
        data = reply.payload.get("data")
        if not isinstance(data, dict):
            label = f"Vault Transit {op}" if op in _TRANSIT_OPS else f"Vault {op}"
            raise VaultRequestError(f"{label} returned no data {self._ctx}", status=reply.status)
        return data

    def _ciphertext_out(self, op: str, ciphertext: object) -> bytes:
        if not isinstance(ciphertext, str) or parse_version(ciphertext) is None:
            raise VaultRequestError(f"Vault Transit {op} returned no ciphertext {self._ctx}")
        return ciphertext.encode("utf-8")


def _hvac_adapter(config: VaultTransitConfig, session: requests.Session) -> Any:
    """hvac's raw adapter: no token of its own (it is sent per request), no redirects."""
    return hvac.adapters.RawAdapter(
        base_uri=config.addr,
        token=None,
        session=session,
        allow_redirects=False,
        timeout=(config.connect_timeout, config.timeout),
    )


if TYPE_CHECKING:  # mypy verifies that VaultTransitKMS fits the contracts
    from ..protocols import ClosableKMS, KeyManagementService

    _kms = VaultTransitKMS(VaultTransitConfig("", ""))
    _fits: KeyManagementService = _kms
    _closable: ClosableKMS = _kms

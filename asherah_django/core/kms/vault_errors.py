"""Errors of the Vault Transit KMS, worded as Asherah's (asherah-ffi) so users can search them.

Every message ends with the context ``(VAULT_ADDR=..., mount=..., key=...)`` and every
error carries a hint taken from the upstream troubleshooting guide. No message ever
contains a token, secret id, JWT, private key or key material: Vault's own error
strings are the only server text copied, and Vault does not echo credentials.
"""

from __future__ import annotations

from typing import Final

from ..errors import KMSError

HINT_CONNECTION: Final = (
    "verify VAULT_ADDR is correct and Vault is reachable; check firewall rules between "
    "this application and Vault"
)
HINT_TIMEOUT: Final = (
    "Vault did not answer in time: check Vault's health and load and the network path, "
    "or raise VAULT_TIMEOUT / VAULT_CONNECT_TIMEOUT"
)
HINT_TLS: Final = (
    "Vault's TLS certificate could not be verified or the handshake failed: set VAULT_CACERT "
    "to the CA bundle that signed Vault's certificate, and check VAULT_CLIENT_CERT/KEY"
)
HINT_UNAVAILABLE: Final = (
    "Vault answered with a server error or is sealed/standby: unseal it, check its logs, or "
    "point VAULT_ADDR at the active node or its load balancer"
)
HINT_REDIRECT: Final = (
    "Vault redirected the request to a node VAULT_ADDR does not list (not followed, so no "
    "token or secret id went there): point VAULT_ADDR at the active node, or list every node "
    "of the cluster, comma-separated, as each node's api_addr"
)
HINT_PERMISSION: Final = (
    "the authenticated token's policies do not allow this (the asherah-transit policy grants "
    "{mount}/encrypt/{key} and {mount}/decrypt/{key}); check with `vault token capabilities {path}`"
)
HINT_BLOB: Final = (
    "the ciphertext in the metastore is corrupted or was encrypted by a different KMS backend; "
    "ensure all instances use the same KMS configuration"
)
HINT_KEY: Final = (
    "check VAULT_TRANSIT_KEY and VAULT_TRANSIT_MOUNT name an existing Transit key "
    "(`vault read {mount}/keys/{key}`), and that min_decryption_version still allows "
    "this ciphertext's version"
)
HINT_TOKEN: Final = (
    "VAULT_TOKEN is invalid, expired or revoked: supply a new token, or use "
    "VAULT_AUTH_METHOD (kubernetes, approle, cert) so the client can log in again"
)
HINT_TOKEN_FILE: Final = (
    "the token in VAULT_TOKEN_FILE is invalid, expired or revoked: check that the process "
    "writing it (a Vault Agent token sink) is running and authenticated, and that the file "
    "is readable by this application"
)
HINT_AGENT: Final = (
    "VAULT_AUTH_METHOD=agent sends no token: VAULT_ADDR must be a Vault Agent or Proxy "
    "listener with api_proxy use_auto_auth_token = true whose auto_auth has logged in"
)
HINT_AUTH: Final = {
    "kubernetes": (
        "verify the service account name and namespace match the Vault role "
        "(bound_service_account_names/namespaces) and VAULT_AUTH_ROLE; check that "
        "auth/{mount}/config has the correct cluster CA and API server URL"
    ),
    "approle": (
        "check VAULT_APPROLE_ROLE_ID and VAULT_APPROLE_SECRET_ID; secret ids expire "
        "(secret_id_ttl) and may be single-use (secret_id_num_uses)"
    ),
    "cert": (
        "check VAULT_CLIENT_CERT and VAULT_CLIENT_KEY, and that the CA that issued the client "
        "certificate is registered under auth/{mount}/certs with the asherah-transit policy"
    ),
    "token": HINT_TOKEN,
    "agent": HINT_AGENT,
}
HINT_FRESH_SECRET_ID: Final = (
    "deliver a fresh secret id (`vault write -f auth/{mount}/role/<role>/secret-id`) as "
    "VAULT_APPROLE_SECRET_ID and restart, or give the role a longer token_max_ttl"
)


class VaultKMSError(KMSError):
    """A Vault Transit KMS failure. ``status`` is Vault's HTTP status, when it answered."""

    status: int | None = None

    def __init__(self, message: str, *, hint: str = "", status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class VaultConnectionError(VaultKMSError):
    """Vault could not be reached, timed out, or the TLS handshake failed."""


class VaultUnavailableError(VaultKMSError):
    """Vault answered 5xx: sealed, standby, not initialized or an internal error."""


class VaultAuthError(VaultKMSError):
    """No token could be obtained, or Vault no longer accepts the token we hold."""


class VaultPermissionError(VaultKMSError):
    """Vault answered 403 to a valid token: its policies do not allow the operation."""


class VaultRequestError(VaultKMSError):
    """Vault rejected a request (4xx other than 403) or answered something unexpected."""


class VaultBlobError(VaultKMSError):
    """A stored system key is not a Vault Transit ciphertext (``vault:vN:...``)."""


def context(addr: str, mount: str, key: str, namespace: str | None = None) -> str:
    """The context every message ends with (the namespace when one is set)."""
    where = f"VAULT_ADDR={addr}, namespace={namespace}" if namespace else f"VAULT_ADDR={addr}"
    return f"({where}, mount={mount}, key={key})"


def vault_errors_text(errors: object) -> str:
    """Vault's ``errors`` array as one line.

    Vault formats several errors as ``"1 error occurred:\\n\\t* permission denied\\n\\n"``;
    that becomes ``"1 error occurred: permission denied"`` as the upstream docs print it.
    """
    if not isinstance(errors, list):
        return ""
    texts = []
    for error in errors:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        if not lines:
            continue
        head, items = lines[0], [line.removeprefix("*").strip() for line in lines[1:]]
        texts.append(f"{head} {'; '.join(items)}" if items else head)
    return "; ".join(texts)[:512]


def reply_error(
    label: str, status: int, text: str, *, ctx: str, mount: str, key: str, path: str
) -> VaultKMSError:
    """Our error for a Vault answer that is not 2xx (after any retries) to ``path``."""
    if status >= 500:
        return VaultUnavailableError(
            f"{label} failed: HTTP {status}: {text} {ctx}", hint=HINT_UNAVAILABLE, status=status
        )
    if status == 403:
        hint = HINT_PERMISSION.format(mount=mount, key=key, path=path)
        return VaultPermissionError(f"{label} failed: {text} {ctx}", hint=hint, status=status)
    if 300 <= status < 400:
        hint = HINT_REDIRECT
    elif status == 404 or "not found" in text or "disallowed by policy" in text:
        hint = HINT_KEY.format(mount=mount, key=key)
    elif "/decrypt/" in path or "/rewrap/" in path:
        hint = HINT_BLOB
    else:
        hint = HINT_KEY.format(mount=mount, key=key)
    return VaultRequestError(f"{label} failed: {text} {ctx}", hint=hint, status=status)

"""Vault tokens and logins for the Vault Transit KMS: what to send and when to renew.

No HTTP here (the KMS in ``vault.py`` does that); this module decides:

* what a login sends: Kubernetes ``{"role", "jwt"}`` with the JWT re-read from its file at
  every login (the kubelet rotates it), AppRole ``{"role_id"[, "secret_id"]}``, cert: no body;
* when a token is due: renewed once two thirds of its TTL have passed while Vault says it
  is renewable; when a renewal no longer extends it (max TTL reached) or it is not
  renewable, a login-based client logs in again before it expires;
* that an AppRole secret id, once Vault refused it after a successful login, is never sent
  again: a fresh one is needed (from ``VAULT_APPROLE_SECRET_ID_FILE``, re-read at each login).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from .vault_config import VaultTransitConfig

#: Fraction of a token's TTL after which it is renewed (or replaced by a new login).
RENEW_AFTER: Final = 2 / 3
#: A token this close to its expiry (at most a tenth of its TTL) is treated as expired.
EXPIRY_MARGIN: Final = 1.0


@dataclass(frozen=True)
class TokenLease:
    """A Vault token and what Vault said about its lifetime (monotonic clock seconds)."""

    token: str = field(repr=False)
    obtained_at: float
    ttl: float
    renewable: bool
    from_login: bool
    #: False for a ``VAULT_TOKEN`` whose TTL has not been looked up yet.
    verified: bool = True

    @property
    def expires_at(self) -> float:
        """When the token stops working; ``inf`` when it has no TTL (root tokens)."""
        return self.obtained_at + self.ttl if self.ttl > 0 else math.inf

    def due(self, now: float) -> bool:
        """True once the token should be renewed or replaced."""
        return self.ttl > 0 and now >= self.obtained_at + self.ttl * RENEW_AFTER

    def expired(self, now: float) -> bool:
        return now >= self.expires_at - min(EXPIRY_MARGIN, self.ttl / 10)


def lease_from_auth(auth: object, now: float, *, from_login: bool) -> TokenLease | None:
    """The lease described by a login or renew-self response's ``auth`` object."""
    if not isinstance(auth, dict):
        return None
    token = auth.get("client_token")
    if not isinstance(token, str) or not token:
        return None
    ttl = auth.get("lease_duration")
    return TokenLease(
        token=token,
        obtained_at=now,
        ttl=float(ttl) if isinstance(ttl, int | float) and ttl > 0 else 0.0,
        renewable=auth.get("renewable") is True,
        from_login=from_login,
    )


class LoginError(Exception):
    """A login cannot even be attempted (unreadable JWT file, spent secret id)."""


class SecretIdSpentError(LoginError):
    """The AppRole secret id was refused after a successful login: it is used up."""


class LoginPlan:
    """Builds login requests and remembers what happened to the AppRole secret id.

    With ``VAULT_APPROLE_SECRET_ID_FILE`` the secret id is read from the file at each
    login; a secret id is "spent" once Vault refused it after a successful login, and a
    spent value is never sent again (a new value in the file is).
    """

    def __init__(self, config: VaultTransitConfig) -> None:
        self.config = config
        self._sent: str | None = None
        self._accepted: str | None = None
        self._spent: str | None = None

    @property
    def path(self) -> str:
        return f"v1/auth/{self.config.login_mount}/login"

    @property
    def sends_secret_id(self) -> bool:
        c = self.config
        return c.auth_method == "approle" and bool(c.approle_secret_id or c.approle_secret_id_file)

    def body(self) -> dict[str, str] | None:
        """The JSON body of the next login (``None``: cert auth sends no body)."""
        config = self.config
        if config.auth_method == "kubernetes":
            return {"role": config.auth_role or "", "jwt": self._read_jwt()}
        if config.auth_method == "approle":
            body = {"role_id": config.approle_role_id or ""}
            secret = self._secret_id()
            if secret is not None:
                if secret == self._spent:
                    raise SecretIdSpentError("secret id already refused after use")
                body["secret_id"] = secret
            self._sent = secret
            return body
        return None

    def accepted(self) -> None:
        if self.sends_secret_id:
            self._accepted = self._sent

    def refused(self) -> bool:
        """Record a refused login; True when it means the secret id is now spent."""
        if self.sends_secret_id and self._sent is not None and self._sent == self._accepted:
            self._spent = self._sent
            return True
        return False

    def fresh_secret_id(self) -> bool:
        """True when ``VAULT_APPROLE_SECRET_ID_FILE`` now holds a value not yet refused."""
        if not self.config.approle_secret_id_file:
            return False
        try:
            secret = self._secret_id()
        except LoginError:
            return False
        return secret is not None and secret != self._spent

    def _secret_id(self) -> str | None:
        path = self.config.approle_secret_id_file
        if not path:
            return self.config.approle_secret_id
        return read_secret_file("VAULT_APPROLE_SECRET_ID_FILE", path, "AppRole secret id")

    def _read_jwt(self) -> str:
        path = self.config.k8s_token_path
        try:
            with open(path, encoding="utf-8") as file:
                jwt = file.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise LoginError(
                f"cannot read the service account token at VAULT_K8S_TOKEN_PATH={path}: {reason}"
            ) from None
        if not jwt:
            raise LoginError(f"the service account token at VAULT_K8S_TOKEN_PATH={path} is empty")
        return jwt


def read_secret_file(setting: str, path: str, what: str) -> str:
    """The stripped content of a credential file; :class:`LoginError` naming ``setting``."""
    try:
        with open(path, encoding="utf-8") as file:
            value = file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise LoginError(f"cannot read the {what} at {setting}={path}: {reason}") from None
    if not value:
        raise LoginError(f"the {what} file {setting}={path} is empty")
    return value

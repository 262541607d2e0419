"""The token the Vault Transit KMS sends, kept valid: login, renewal, re-login on expiry.

Tokens are checked lazily, before each Vault call (no background thread, so nothing to
stop and nothing to fork): a token past two thirds of its TTL is renewed while Vault says
it is renewable; once renewal no longer extends it (max TTL) or it is not renewable, a
login-based client logs in again before it expires. A call answered 403 whose token Vault
no longer knows (lookup-self answers 403 too) logs in again and is repeated once;
through an agent's API proxy (``VAULT_AUTH_METHOD=agent``) it is repeated once the agent
holds a token Vault accepts again.
A static ``VAULT_TOKEN`` is looked up after its first successful call (so that the first
error a user sees is the Transit call's own) and then renewed while renewable.
``VAULT_TOKEN_FILE`` (a Vault Agent token sink) is read at the first call, and read again
once when Vault refuses the token (or it can no longer be renewed): a new token there is
used and the call repeated; the same token refused again is a :class:`VaultAuthError`
naming the file (never its content).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from .vault_auth import (
    LoginError,
    LoginPlan,
    SecretIdSpentError,
    TokenLease,
    lease_from_auth,
    read_secret_file,
)
from .vault_config import VaultTransitConfig
from .vault_errors import (
    HINT_AGENT,
    HINT_AUTH,
    HINT_FRESH_SECRET_ID,
    HINT_REDIRECT,
    HINT_TOKEN,
    HINT_TOKEN_FILE,
    HINT_UNAVAILABLE,
    VaultAuthError,
    VaultKMSError,
    VaultUnavailableError,
    context,
)
from .vault_http import VaultHTTP, VaultReply, on_fork

logger = logging.getLogger("asherah_django.core.kms.vault")

#: How long a refused token's file (or the agent's API proxy) is watched for the agent's
#: next token, and how often.
TOKEN_FILE_GRACE = 5.0
TOKEN_FILE_POLL = 0.05


class TokenManager:
    """Holds the current token; thread-safe (one login or renewal at a time)."""

    def __init__(self, config: VaultTransitConfig, http: VaultHTTP) -> None:
        self.config = config
        self._send = http.send
        self._plan = LoginPlan(config)
        self._lease: TokenLease | None = None
        self._closed = False
        self.lock = threading.RLock()
        mount = config.login_mount if config.logs_in else config.transit_mount
        self._ctx = context(config.addr, mount, config.transit_key, config.namespace)
        on_fork(self)

    def after_fork(self) -> None:
        """In a forked child: the parent's lock may be held by a thread that is not there.

        The token itself is kept: a child must not log in again (a single-use AppRole
        secret id would already be spent).
        """
        self.lock = threading.RLock()

    def token(self) -> str:
        """A token to send now (logs in, renews or re-logs-in first when needed)."""
        lease = self._lease
        if lease is not None and not lease.due(time.monotonic()):
            return lease.token
        with self.lock:
            self._lease = self._refresh()
            return self._lease.token

    def login(self) -> None:
        """Obtain a token now: a login, or for ``VAULT_TOKEN`` a lookup that must succeed."""
        if self.config.auth_method == "agent":
            label = "Vault token lookup-self through the agent"
            reply = self._send("GET", "v1/auth/token/lookup-self", label, token=None, kind="other")
            if not reply.ok:
                raise VaultAuthError(
                    f"{label} failed: {reply.text()} {self._ctx}", hint=HINT_AGENT,
                    status=reply.status,
                )  # fmt: skip
            return
        with self.lock:
            self._lease = None
            self._lease = self._refresh()
            if not self.config.logs_in:
                self._lease = self._verify(self._lease, strict=True)

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self._lease = None

    def call(self, label: str, method: str, path: str, body: object, kind: str) -> VaultReply:
        """A request with the current token; after a 403 from a dead token, once more."""
        if self.config.auth_method == "agent":  # the agent's API proxy adds its token
            reply = self._send(method, path, label, token=None, kind=kind, body=body)
            if reply.status == 403 and self._agent_token_replaced():
                reply = self._send(method, path, label, token=None, kind=kind, body=body)
            return reply
        for attempt in (1, 2):
            token = self.token()
            reply = self._send(method, path, label, token=token, kind=kind, body=body)
            lease = self._lease
            if reply.ok and lease is not None and not lease.verified:
                with self.lock:  # a static token's first success: learn its TTL
                    if self._lease is lease:
                        self._lease = self._verify(lease, strict=False)
            if reply.status != 403 or (attempt == 2 and self.config.logs_in):
                return reply
            if not self._is_dead(token):
                return reply
            if not self.config.logs_in:
                if attempt == 2 or not self._reread_token_file(token):
                    raise self._rejected(label, reply)
                continue
            with self.lock:
                if self._lease is not None and self._lease.token == token:
                    self._lease = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _agent_token_replaced(self) -> bool:
        """After a 403 through the agent: True once the agent holds a token Vault accepts.

        A busy agent may let its token expire before its next login lands; its
        ``lookup-self`` then answers 403 too, and is asked again for up to
        ``TOKEN_FILE_GRACE`` seconds (at most VAULT_TIMEOUT). A 403 with a live token (the
        policy) answers at once, and the request is repeated only once."""
        deadline = time.monotonic() + min(TOKEN_FILE_GRACE, self.config.timeout)
        while True:
            reply = self._lookup_self(None)
            if reply is None:
                return False
            if reply.ok:
                return True
            if reply.status not in (401, 403) or time.monotonic() >= deadline:
                return False
            time.sleep(TOKEN_FILE_POLL)

    def _reread_token_file(self, refused: str) -> bool:
        """``VAULT_TOKEN_FILE`` read again: True when it now holds another token (now used).

        An agent replaces the token in its sink some time after Vault stops accepting the old
        one (re-authentication takes a round trip, longer on a busy host), so the file is
        watched for up to ``TOKEN_FILE_GRACE`` seconds (at most VAULT_TIMEOUT) before giving up.
        """
        if not self.config.token_file:
            return False
        deadline = time.monotonic() + min(TOKEN_FILE_GRACE, self.config.timeout)
        while True:
            with self.lock:
                current = self._lease
                if current is not None and current.token != refused:
                    return True  # another thread already picked up the new token
                lease = self._static_lease()
                if lease.token != refused:
                    self._lease = lease
                    logger.info(
                        "Vault token re-read from VAULT_TOKEN_FILE after Vault refused the old one"
                    )
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(TOKEN_FILE_POLL)

    def _refresh(self) -> TokenLease:
        if self._closed:
            raise VaultKMSError(f"the Vault Transit KMS is closed {self._ctx}")
        lease, now = self._lease, time.monotonic()
        if lease is None:
            return self._login() if self.config.logs_in else self._static_lease()
        if not lease.due(now):
            return lease
        if lease.renewable and not lease.expired(now):
            lease = self._renew(lease)
            if not lease.due(time.monotonic()):
                return lease
        if lease.from_login:  # not renewable (any more): log in before it expires
            return self._login()
        if self.config.token_file:  # an agent may have written a new token by now
            fresh = self._static_lease()
            if fresh.token != lease.token:
                return fresh
        return replace(lease, ttl=0.0)  # a static token we cannot renew: stop tracking it

    def _static_lease(self) -> TokenLease:
        """``VAULT_TOKEN`` (or ``VAULT_TOKEN_FILE``'s), not yet looked up (after a success)."""
        token = self.config.token or ""
        path = self.config.token_file
        if path:
            try:
                token = read_secret_file("VAULT_TOKEN_FILE", path, "Vault token")
            except LoginError as exc:
                raise VaultAuthError(f"{exc} {self._ctx}", hint=HINT_TOKEN_FILE) from None
        return TokenLease(token, time.monotonic(), 0.0, False, from_login=False, verified=False)

    def _verify(self, lease: TokenLease, *, strict: bool) -> TokenLease:
        """``VAULT_TOKEN`` with the TTL lookup-self reports (so it can be renewed)."""
        label = "Vault token lookup-self"
        path = "v1/auth/token/lookup-self"
        try:
            reply = self._send("GET", path, label, token=lease.token, kind="other")
        except VaultKMSError:
            if strict:
                raise
            return replace(lease, verified=True)
        if strict and reply.status in (401, 403):
            raise self._rejected(label, reply)
        data = reply.payload.get("data") if reply.ok else None
        if isinstance(data, dict):
            auth = {"client_token": lease.token, **{k: data.get(v) for k, v in _LOOKUP.items()}}
            verified = lease_from_auth(auth, time.monotonic(), from_login=False)
            if verified is not None:
                return verified
        return replace(lease, verified=True)

    def _rejected(self, label: str, reply: VaultReply) -> VaultAuthError:
        path = self.config.token_file
        if path:
            return VaultAuthError(
                f"{label} failed: {reply.text()}; Vault does not accept the token in "
                f"VAULT_TOKEN_FILE={path} (invalid, expired or revoked; the file was read "
                f"again) {self._ctx}",
                hint=HINT_TOKEN_FILE,
                status=reply.status,
            )
        return VaultAuthError(
            f"{label} failed: {reply.text()}; Vault does not accept VAULT_TOKEN "
            f"(invalid, expired or revoked) {self._ctx}",
            hint=HINT_TOKEN,
            status=reply.status,
        )

    def _login(self) -> TokenLease:
        config, plan = self.config, self._plan
        method, mount = config.auth_method, config.login_mount
        label = f"Vault {method} auth"
        try:
            body = plan.body()
        except SecretIdSpentError:
            raise self._spent(label, None) from None
        except LoginError as exc:
            raise VaultAuthError(
                f"{label} failed: {exc} {self._ctx}", hint=HINT_AUTH[method].format(mount=mount)
            ) from None
        reply = self._send(
            "POST", plan.path, label, token=None, kind="logins", body=body,
            repeatable=not plan.sends_secret_id,
        )  # fmt: skip
        if not reply.ok:
            if reply.status in (400, 403) and plan.refused():
                if plan.fresh_secret_id():  # the file holds a new secret id: one more login
                    return self._login()
                raise self._spent(label, reply)
            server = reply.status >= 500
            hint = HINT_UNAVAILABLE if server else HINT_AUTH[method].format(mount=mount)
            raise (VaultUnavailableError if server else VaultAuthError)(
                f"{label} failed: {reply.text()} {self._ctx}",
                hint=HINT_REDIRECT if 300 <= reply.status < 400 else hint,
                status=reply.status,
            )
        lease = lease_from_auth(reply.payload.get("auth"), time.monotonic(), from_login=True)
        if lease is None:
            raise VaultAuthError(f"{label} returned no token {self._ctx}", status=reply.status)
        plan.accepted()
        logger.info(
            "Vault %s login succeeded: token TTL %ss, renewable=%s",
            method, int(lease.ttl), lease.renewable,
        )  # fmt: skip
        return lease

    def _spent(self, label: str, reply: VaultReply | None) -> VaultAuthError:
        said = f"{reply.text()}; " if reply is not None else ""
        source, path = "VAULT_APPROLE_SECRET_ID", self.config.approle_secret_id_file
        if path:
            source = f"the secret id in VAULT_APPROLE_SECRET_ID_FILE={path}"
        return VaultAuthError(
            f"{label} failed: {said}{source} was already used for a login and "
            f"Vault no longer accepts it (single-use or expired): a fresh secret id is needed "
            f"{self._ctx}",
            hint=HINT_FRESH_SECRET_ID.format(mount=self.config.login_mount),
            status=reply.status if reply is not None else None,
        )

    def _renew(self, lease: TokenLease) -> TokenLease:
        reply = self._send(
            "POST", "v1/auth/token/renew-self", "Vault token renew-self",
            token=lease.token, kind="renewals", body={},
        )  # fmt: skip
        auth = reply.payload.get("auth")
        if reply.ok and isinstance(auth, dict):
            auth = {**auth, "client_token": lease.token}
            renewed = lease_from_auth(auth, time.monotonic(), from_login=lease.from_login)
            if renewed is not None:
                extended = renewed.expires_at > lease.expires_at + 1.0
                return replace(renewed, renewable=renewed.renewable and extended)
        logger.info("Vault token renewal refused (%s)", reply.text())
        return replace(lease, renewable=False)

    def _is_dead(self, token: str) -> bool:
        """After a 403: True when Vault no longer knows the token (expired or revoked)."""
        reply = self._lookup_self(token)
        return reply is not None and reply.status in (401, 403)

    def _lookup_self(self, token: str | None) -> VaultReply | None:
        """``lookup-self`` with ``token`` (None: through the agent); None when it failed."""
        label = "Vault token lookup-self" + (" through the agent" if token is None else "")
        try:
            return self._send("GET", "v1/auth/token/lookup-self", label, token=token, kind="other")
        except VaultKMSError:
            return None


_LOOKUP = {"lease_duration": "ttl", "renewable": "renewable"}

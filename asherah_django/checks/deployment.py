"""``check --deploy``: E101 static KMS, W102 dev-looking Vault token, W103 Vault over
plain http, W121 Secrets Manager KMS, W122 AWS endpoint over plain http."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from ..conf import asherah_settings, where
from ..core.kms.aws_config import endpoint_urls
from ..core.kms.vault_config import redact_userinfo

#: Values people give ``vault server -dev -dev-root-token-id=...``.
_DEV_TOKENS: Final = frozenset(
    {"root", "dev", "devroot", "dev-root", "myroot", "dev-only-token", "token", "test"}
)
_TOKEN_PREFIXES: Final = ("hvs.", "hvb.", "hvr.", "s.", "b.", "r.")
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def check_deployment(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Production safety: no static KMS, no dev token, no plain-http Vault."""
    if settings.DEBUG:
        return []
    conf = asherah_settings
    snapshot = conf.snapshot()
    kms = snapshot.values.get("KMS")
    messages: list[CheckMessage] = []
    if kms in ("static", "test-debug-static"):
        messages.append(
            Error(
                f"KMS={kms} keeps the master key in process memory; it is for tests and local "
                "development only, and DEBUG is False",
                hint=f"set {where('KMS')} to vault and configure Vault Transit (VAULT_ADDR, "
                "VAULT_TRANSIT_KEY and an auth method)",
                id="asherah.E101",
            )
        )
    messages += _aws_deployment_messages(kms)
    if kms != "vault":
        return messages
    token = snapshot.values.get("VAULT_TOKEN")
    if isinstance(token, str) and _looks_like_dev_token(token):
        messages.append(
            Warning(
                "VAULT_TOKEN looks like a Vault dev server root token, and DEBUG is False",
                hint="use a periodic token with only the asherah-transit policy, or "
                f"kubernetes/approle/cert auth ({where('VAULT_AUTH_METHOD')})",
                id="asherah.W102",
            )
        )
    addr = snapshot.values.get("VAULT_ADDR")
    if isinstance(addr, str):
        hint = f"set {where('VAULT_ADDR')} to an https:// URL (and VAULT_CACERT)"
        shown = redact_userinfo(addr)
        for node in addr.split(","):  # every node of a comma-separated VAULT_ADDR counts
            found = _plain_http(
                node, f"VAULT_ADDR {shown!r}", "tokens and system keys", hint, "asherah.W103"
            )
            if found:
                messages += found
                break
    return messages


def _looks_like_dev_token(token: str) -> bool:
    token = token.strip()
    if token.lower() in _DEV_TOKENS:
        return True
    return not token.startswith(_TOKEN_PREFIXES) and len(token) < 40


def _aws_deployment_messages(kms: object) -> list[CheckMessage]:
    if kms not in ("aws", "secrets-manager"):
        return []
    messages: list[CheckMessage] = []
    if kms == "secrets-manager":
        messages.append(
            Warning(
                "KMS=secrets-manager keeps a static master key (read from AWS Secrets Manager) "
                "in process memory: it is for migrating to AWS KMS or Vault only, and DEBUG "
                "is False",
                hint="set KMS=aws (REGION_MAP, PREFERRED_REGION) or KMS=vault, then run "
                "manage.py asherah_rotate --rewrap --from-kms secrets-manager",
                id="asherah.W121",
            )
        )
    hint = (
        "use https:// endpoints (AWS_ENDPOINT_URL, AWS_KMS_ENDPOINTS); they "
        "are for private (VPC) endpoints and local test servers"
    )
    for url in endpoint_urls(asherah_settings.aws_settings()):
        messages += _plain_http(url, f"AWS endpoint {url!r}", "data keys", hint, "asherah.W122")
    return messages


def _plain_http(url: str, what: str, carried: str, hint: str, check_id: str) -> list[CheckMessage]:
    """A ``check_id`` warning when ``url`` is ``http://`` to a host other than this one."""
    parts = urlsplit(url.strip())
    if parts.scheme != "http" or (parts.hostname or "") in _LOOPBACK:
        return []
    message = (
        f"{what} uses plain http: {carried} would cross the network unencrypted, and DEBUG is False"
    )
    return [Warning(message, hint=hint, id=check_id)]

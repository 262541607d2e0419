"""The Vault Transit KMS settings (``KMS=vault``), described once for the registry.

Their names are the ones Asherah's Vault Transit KMS reads from the environment, and
each is also read from the unprefixed variable (``VAULT_ADDR`` as well as
``ASHERAH_VAULT_ADDR``). :class:`~.vault_config.VaultTransitConfig` reads them through
these descriptors; ``asherah_django.conf.registry`` lists them with the others.
"""

from __future__ import annotations

from typing import Final

from ..setting import Setting, by_key, parse_count, parse_seconds

DEFAULT_TRANSIT_MOUNT: Final = "transit"
DEFAULT_K8S_TOKEN_PATH: Final = "/var/run/secrets/kubernetes.io/serviceaccount/token"
DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_CONNECT_TIMEOUT: Final = 3.0
DEFAULT_MAX_RETRIES: Final = 2

_VAULT: Final = ("vault",)


def _vault(key: str, kind: str, doc: str, **extra: object) -> Setting:
    return Setting(key, kind, doc, kms=_VAULT, unprefixed=True, **extra)  # type: ignore[arg-type]


VAULT_SETTINGS: Final = (
    _vault(
        "VAULT_ADDR",
        "URL",
        "The Vault (or OpenBao) server URL, e.g. ``https://vault.example.com:8200``; "
        "``https://`` in production. Required. Several URLs separated by commas name the "
        "nodes of one cluster: they are tried in turn when one cannot be reached, and a "
        "redirect (307/308) is followed only to one of them.",
    ),
    _vault(
        "VAULT_TRANSIT_KEY",
        "name",
        "The name of the Transit key that wraps the system keys, e.g. ``asherah-master``. "
        "Required.",
    ),
    _vault(
        "VAULT_TRANSIT_MOUNT",
        "path",
        "Where the Transit secrets engine is mounted (leading and trailing ``/`` ignored).",
        default=DEFAULT_TRANSIT_MOUNT,
    ),
    _vault(
        "VAULT_TOKEN",
        "secret string",
        "A Vault token, used when no ``VAULT_AUTH_METHOD`` is named (or it is ``token``). "
        "Prefer a periodic token with only the Transit policy, or a login method.",
    ),
    _vault(
        "VAULT_AUTH_METHOD",
        "choice",
        "How to log in: ``token``, ``kubernetes`` (alias ``k8s``), ``approle``, ``cert`` "
        "(alias ``tls``) or ``agent`` (no token sent: ``VAULT_ADDR`` is a Vault Agent or "
        "Proxy that adds its own). A named method wins over ``VAULT_TOKEN``.",
        default_text="unset: VAULT_TOKEN is used",
    ),
    _vault(
        "VAULT_AUTH_ROLE",
        "string",
        "The Vault role to log in as with ``VAULT_AUTH_METHOD=kubernetes`` (required there).",
    ),
    _vault(
        "VAULT_AUTH_MOUNT",
        "path",
        "The mount of the auth method, when it is not mounted under its own name.",
        default_text="the method's name (kubernetes, approle, cert)",
    ),
    _vault(
        "VAULT_K8S_TOKEN_PATH",
        "file path",
        "The Kubernetes service account token presented at a ``kubernetes`` login.",
        default=DEFAULT_K8S_TOKEN_PATH,
    ),
    _vault(
        "VAULT_APPROLE_ROLE_ID",
        "string",
        "The AppRole role id for ``VAULT_AUTH_METHOD=approle`` (required there).",
    ),
    _vault(
        "VAULT_APPROLE_SECRET_ID",
        "secret string",
        "The AppRole secret id, when the role requires one (or ``VAULT_APPROLE_SECRET_ID_FILE``).",
    ),
    _vault(
        "VAULT_CLIENT_CERT",
        "file path",
        "The PEM client certificate for ``VAULT_AUTH_METHOD=cert`` (or mutual TLS); set "
        "with ``VAULT_CLIENT_KEY``.",
    ),
    _vault(
        "VAULT_CLIENT_KEY",
        "file path",
        "The PEM private key of ``VAULT_CLIENT_CERT``; set with it.",
    ),
    _vault(
        "VAULT_CACERT",
        "file path",
        "A PEM bundle of the CAs that verify Vault's certificate.",
        default_text="unset: the system trust store",
    ),
    _vault(
        "VAULT_TIMEOUT",
        "seconds",
        "How long to wait for each Vault answer (the read timeout), above 0 and at most 300.",
        default=DEFAULT_TIMEOUT,
        parse=parse_seconds,
    ),
    _vault(
        "VAULT_CONNECT_TIMEOUT",
        "seconds",
        "How long to wait to open each connection, above 0 and at most 300.",
        default=DEFAULT_CONNECT_TIMEOUT,
        parse=parse_seconds,
    ),
    _vault(
        "VAULT_MAX_RETRIES",
        "whole number",
        "Retries after the first attempt (0-10), with jittered backoff, for connection "
        "errors and 5xx or sealed answers only.",
        default=DEFAULT_MAX_RETRIES,
        parse=parse_count,
    ),
    _vault(
        "VAULT_NAMESPACE",
        "path",
        "The Vault Enterprise / HCP namespace, sent as ``X-Vault-Namespace`` with every "
        "request (HCP Vault: ``admin``).",
        default_text="unset: the root namespace",
    ),
    _vault(
        "VAULT_TOKEN_FILE",
        "file path",
        "A file holding the token (a Vault Agent token sink), read at the first call and "
        "again once when Vault refuses the token. Not with ``VAULT_TOKEN``.",
    ),
    _vault(
        "VAULT_APPROLE_SECRET_ID_FILE",
        "file path",
        "A file holding the AppRole secret id, read at each login (Vault Agent's "
        "``secret_id_file_path`` convention). Not with ``VAULT_APPROLE_SECRET_ID``.",
    ),
)
#: The Vault settings by name.
BY_KEY: Final = by_key(VAULT_SETTINGS)
#: Every setting name ``VaultTransitConfig.from_mapping`` reads.
SETTING_NAMES: Final = tuple(BY_KEY)

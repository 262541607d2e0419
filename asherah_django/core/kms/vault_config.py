"""Settings of the Vault Transit KMS, read from environment-style names.

``VaultTransitConfig.from_mapping`` takes a mapping keyed by the names Asherah's
Vault Transit KMS reads from the environment (``VAULT_ADDR``, ``VAULT_TRANSIT_KEY``,
...), validates them and raises :class:`~asherah_django.core.errors.ConfigurationError`
naming the setting to fix. Unknown keys are ignored, so a whole ``ASHERAH`` settings
dict or ``os.environ`` can be passed. ``None`` and empty strings count as unset.

Each setting is described (default, kind, doc) and parsed by its descriptor in
:mod:`.vault_settings`; :func:`problems` lists the required settings that are missing
(typed :class:`~asherah_django.core.setting.SettingError`: the system checks report them).

Upstream uses ``VAULT_TOKEN`` whenever it is set, whatever ``VAULT_AUTH_METHOD`` says;
here a named method wins, and ``VAULT_TOKEN`` is used when no method is named.
This module does no I/O: certificate and token files are read when the KMS is built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final, Literal
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..setting import SettingError, SettingsReader
from .vault_settings import (
    BY_KEY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_K8S_TOKEN_PATH,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_TRANSIT_MOUNT,
)
from .vault_settings import SETTING_NAMES as SETTING_NAMES

AuthMethod = Literal["token", "kubernetes", "approle", "cert", "agent"]

MAX_RETRIES_LIMIT: Final = 10
MAX_TIMEOUT: Final = 300.0

_METHOD_ALIASES: Final[Mapping[str, AuthMethod]] = {
    "token": "token",
    "kubernetes": "kubernetes",
    "k8s": "kubernetes",
    "approle": "approle",
    "cert": "cert",
    "tls": "cert",
    "agent": "agent",
}
_SEGMENT = re.compile(r"[A-Za-z0-9_.@:+=-]+")
_SECRET_FIELDS: Final = frozenset({"token", "approle_secret_id"})

AUTH_REQUIRED_MESSAGE: Final = (
    "Vault authentication required: set VAULT_TOKEN, or VAULT_AUTH_METHOD "
    "(kubernetes, approle, cert) with the appropriate credentials"
)


@dataclass(frozen=True, repr=False)
class VaultTransitConfig:
    """Validated Vault Transit settings. ``repr()`` never shows the token or secret id."""

    addr: str
    transit_key: str
    transit_mount: str = DEFAULT_TRANSIT_MOUNT
    auth_method: AuthMethod = "token"
    token: str | None = None
    auth_role: str | None = None
    auth_mount: str | None = None
    k8s_token_path: str = DEFAULT_K8S_TOKEN_PATH
    approle_role_id: str | None = None
    approle_secret_id: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    ca_cert: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    namespace: str | None = None
    token_file: str | None = None
    approle_secret_id_file: str | None = None
    #: The other nodes of ``VAULT_ADDR`` when it lists several (after the first, ``addr``).
    other_addrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for addr in (self.addr, *self.other_addrs):
            _check_addr(addr)
        _check_path("VAULT_TRANSIT_KEY", self.transit_key, single_segment=True)
        _check_path("VAULT_TRANSIT_MOUNT", self.transit_mount, single_segment=False)
        if self.auth_mount is not None:
            _check_path("VAULT_AUTH_MOUNT", self.auth_mount, single_segment=False)
        if self.namespace is not None:
            _check_path("VAULT_NAMESPACE", self.namespace, single_segment=False)
        if self.token is not None and self.token_file is not None:
            raise ConfigurationError(
                "set only one of VAULT_TOKEN and VAULT_TOKEN_FILE (the token, or the file "
                "a Vault Agent sink writes it to)"
            )
        if self.approle_secret_id is not None and self.approle_secret_id_file is not None:
            raise ConfigurationError(
                "set only one of VAULT_APPROLE_SECRET_ID and VAULT_APPROLE_SECRET_ID_FILE"
            )
        if self.auth_method not in _METHOD_ALIASES.values():
            raise SettingError(
                _unsupported(str(self.auth_method)), setting="VAULT_AUTH_METHOD", problem="auth"
            )
        present = {name for name, attr in _PRESENCE.items() if getattr(self, attr)}
        for problem in auth_problems(self.auth_method, present):
            raise problem
        if (self.client_cert is None) != (self.client_key is None):
            raise ConfigurationError(
                "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY must be set together "
                "(PEM paths of the client certificate and its private key)"
            )
        if self.auth_method == "cert" and not all(
            addr.startswith("https://") for addr in (self.addr, *self.other_addrs)
        ):
            raise ConfigurationError(
                "VAULT_AUTH_METHOD=cert needs an https:// VAULT_ADDR: the client certificate "
                "is presented during the TLS handshake"
            )
        for name, value, low, high in (
            ("VAULT_TIMEOUT", self.timeout, 0.0, MAX_TIMEOUT),
            ("VAULT_CONNECT_TIMEOUT", self.connect_timeout, 0.0, MAX_TIMEOUT),
        ):
            if not (
                isinstance(value, int | float) and math.isfinite(value) and low < value <= high
            ):
                raise ConfigurationError(
                    f"{name} must be a number of seconds above {low:g} and at most {high:g}"
                )
        retries = self.max_retries
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise ConfigurationError("VAULT_MAX_RETRIES must be a whole number")
        if not 0 <= retries <= MAX_RETRIES_LIMIT:
            raise ConfigurationError(f"VAULT_MAX_RETRIES must be between 0 and {MAX_RETRIES_LIMIT}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> VaultTransitConfig:
        """Build from environment-style names (``VAULT_ADDR`` ...); see the module docs."""
        for problem in problems(values):
            raise problem
        get = SettingsReader(values, BY_KEY)
        listed = [a.strip().rstrip("/") for a in (get.text("VAULT_ADDR") or "").split(",")]
        addrs = list(dict.fromkeys(a for a in listed if a))  # in order, without repeats
        key = get.text("VAULT_TRANSIT_KEY")
        if not addrs:
            raise ConfigurationError(
                "VAULT_ADDR lists no address: give one URL, or several separated by commas"
            )
        addr = addrs[0]
        assert key is not None
        auth_mount = get.text("VAULT_AUTH_MOUNT")
        return cls(
            addr=addr,
            other_addrs=tuple(addrs[1:]),
            transit_key=key,
            transit_mount=(get.text("VAULT_TRANSIT_MOUNT") or DEFAULT_TRANSIT_MOUNT).strip("/"),
            auth_method=_method(get.text("VAULT_AUTH_METHOD")) or "token",
            token=get.text("VAULT_TOKEN"),
            auth_role=get.text("VAULT_AUTH_ROLE"),
            auth_mount=auth_mount.strip("/") if auth_mount is not None else None,
            k8s_token_path=get.text("VAULT_K8S_TOKEN_PATH") or DEFAULT_K8S_TOKEN_PATH,
            approle_role_id=get.text("VAULT_APPROLE_ROLE_ID"),
            approle_secret_id=get.text("VAULT_APPROLE_SECRET_ID"),
            client_cert=get.text("VAULT_CLIENT_CERT"),
            client_key=get.text("VAULT_CLIENT_KEY"),
            ca_cert=get.text("VAULT_CACERT"),
            timeout=get.number("VAULT_TIMEOUT"),
            connect_timeout=get.number("VAULT_CONNECT_TIMEOUT"),
            max_retries=get.integer("VAULT_MAX_RETRIES"),
            namespace=_strip_slashes(get.text("VAULT_NAMESPACE")),
            token_file=get.text("VAULT_TOKEN_FILE"),
            approle_secret_id_file=get.text("VAULT_APPROLE_SECRET_ID_FILE"),
        )

    @property
    def login_mount(self) -> str:
        """The auth mount a login goes to (``VAULT_AUTH_MOUNT`` or the method's name)."""
        return self.auth_mount or self.auth_method

    @property
    def logs_in(self) -> bool:
        """True when the token comes from a login (and can be obtained again)."""
        return self.auth_method not in ("token", "agent")

    def __repr__(self) -> str:
        parts = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in _SECRET_FIELDS and value is not None:
                parts.append(f"{field.name}='<redacted>'")
            else:
                parts.append(f"{field.name}={value!r}")
        return f"VaultTransitConfig({', '.join(parts)})"


#: Which field of the config says a setting is present (for :func:`auth_problems`).
_PRESENCE: Final = {
    "VAULT_TOKEN": "token",
    "VAULT_TOKEN_FILE": "token_file",
    "VAULT_AUTH_ROLE": "auth_role",
    "VAULT_APPROLE_ROLE_ID": "approle_role_id",
    "VAULT_CLIENT_CERT": "client_cert",
    "VAULT_CLIENT_KEY": "client_key",
}
#: What each auth method needs (VAULT_TOKEN_FILE stands in for VAULT_TOKEN).
_AUTH_NEEDS: Final[Mapping[AuthMethod, tuple[str, ...]]] = {
    "token": ("VAULT_TOKEN",),
    "kubernetes": ("VAULT_AUTH_ROLE",),
    "approle": ("VAULT_APPROLE_ROLE_ID",),
    "cert": ("VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"),
    "agent": (),
}
#: The server settings every method needs, and what they hold.
_SERVER: Final = (
    ("VAULT_ADDR", "the Vault server URL, e.g. https://vault.example.com:8200"),
    ("VAULT_TRANSIT_KEY", "the name of the Transit key, e.g. asherah-master"),
)


def problems(values: Mapping[str, object]) -> list[SettingError]:
    """Every required setting ``values`` lacks: the server (``problem="missing"``) and
    the chosen auth method's (``problem="auth"``). Empty: :meth:`VaultTransitConfig.from_mapping`
    goes on to validate the values themselves."""
    get = SettingsReader(values, BY_KEY)
    found = [
        SettingError(
            f"{name} is required for the Vault Transit KMS ({what})",
            setting=name,
            problem="missing",
            fix=f"to {what}",
        )
        for name, what in _SERVER
        if get.text(name) is None
    ]
    raw_method = get.text("VAULT_AUTH_METHOD")
    method = _method(raw_method)
    if raw_method is not None and method is None:
        found.append(
            SettingError(
                _unsupported(raw_method.lower()),
                setting="VAULT_AUTH_METHOD",
                problem="auth",
                fix="to kubernetes, approle or cert, or unset it and set VAULT_TOKEN",
            )
        )
        return found
    present = {name for name in _PRESENCE if get.text(name) is not None}
    return found + auth_problems(method, present, shown=raw_method)


def auth_problems(
    method: AuthMethod | None, present: set[str], *, shown: str | None = None
) -> list[SettingError]:
    """The settings ``method`` needs that are not ``present`` (``None``: no method named)."""
    if method is None:
        if present & {"VAULT_TOKEN", "VAULT_TOKEN_FILE"}:
            return []
        return [
            SettingError(
                AUTH_REQUIRED_MESSAGE,
                setting="VAULT_TOKEN",
                problem="auth",
                fix="or VAULT_AUTH_METHOD (kubernetes, approle, cert) and that method's settings",
            )
        ]
    if "VAULT_TOKEN_FILE" in present:
        present = present | {"VAULT_TOKEN"}
    return [
        SettingError(
            f"{name} is required for Vault {method} auth "
            f"(VAULT_AUTH_METHOD={(shown or method).lower()})",
            setting=name,
            problem="auth",
        )
        for name in _AUTH_NEEDS[method]
        if name not in present
    ]


def _method(raw: str | None) -> AuthMethod | None:
    return None if raw is None else _METHOD_ALIASES.get(raw.lower())


def _strip_slashes(value: str | None) -> str | None:
    """``/admin/team/`` -> ``admin/team``; only slashes -> unset (the root namespace)."""
    if value is None:
        return None
    return value.strip("/") or None


def _unsupported(method: str) -> str:
    return f"unsupported VAULT_AUTH_METHOD '{method}': expected kubernetes, approle, or cert"


def redact_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for messages (issue #14)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}***@{host}{slash}{tail}"


def _check_addr(addr: object) -> None:
    if not isinstance(addr, str) or not addr:
        raise ConfigurationError("VAULT_ADDR is required for the Vault Transit KMS")
    try:
        parts = urlsplit(addr)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
        or (port is not None and not 0 < port < 65536)
    ):
        shown = redact_userinfo(addr)
        raise ConfigurationError(
            f"VAULT_ADDR must be an http:// or https:// URL such as "
            f"https://vault.example.com:8200, got {shown!r}"
            + (" (credentials in it are never used: remove them)" if shown != addr else "")
        )


def _check_path(name: str, value: object, *, single_segment: bool) -> None:
    if not isinstance(value, str) or not value.strip("/"):
        raise ConfigurationError(f"{name} must not be empty")
    segments = value.split("/")
    if (single_segment and len(segments) != 1) or not all(
        segment not in (".", "..") and _SEGMENT.fullmatch(segment) for segment in segments
    ):
        kind = "a name" if single_segment else "a path"
        raise ConfigurationError(
            f"{name} must be {kind} made of letters, digits and _ . - characters, got {value!r}"
        )

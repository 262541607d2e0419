"""The ASHERAH settings: one typed property per key, environment fallback, read lazily.

    # settings.py
    ASHERAH = {"SERVICE_NAME": "billing", "PRODUCT_ID": "acme", "KMS": "vault", ...}

    from asherah_django.conf import asherah_settings
    asherah_settings.SERVICE_NAME

Every key is looked up in this order (the first that is set wins):

1. ``settings.ASHERAH[key]`` (``None`` or a blank string counts as not set);
2. the environment variable ``ASHERAH_<key>`` (every key);
3. for the names Asherah's own documentation gives (``unprefixed`` in the registry:
   ``VAULT_*``, ``STATIC_MASTER_KEY_HEX``, ``KMS``, and for AWS ``REGION_MAP``,
   ``PREFERRED_REGION``, ``KMS_KEY_ID``, ``SECRETS_MANAGER_SECRET_ID``, ``AWS_REGION``,
   ``AWS_ENDPOINT_URL``), the unprefixed variable; ``KMS`` only when
   its value names one of our KMS backends (:data:`KMS_ALIASES`): hosting platforms and
   other tools set ``KMS`` too, and their value must not switch the backend (a value we do
   not know is ignored, and ``manage.py check`` says so: asherah.W002). Generic names
   (``DATABASE``, ``SERVICE_NAME``, ``METASTORE``, ...) are never read unprefixed;
4. the setting's default.

The keys, their environment names, defaults and parsers are those of
:data:`asherah_django.conf.registry.SETTINGS` (:data:`DEFAULTS` is derived from it); a
setting is added there, once. Environment values are read with django-environ (an empty
value counts as not set; a value starting with ``$`` is a django-environ proxy for
another variable).

Values are read and validated on first use and cached. The cache is dropped when
``ASHERAH`` or ``DATABASES`` change (``setting_changed``, e.g. ``override_settings``) and by
:meth:`AsherahSettings.reload` (``asherah_django.runtime.reset_session_factory()`` calls it);
changes to ``os.environ`` are seen only then. An invalid value raises
:class:`~asherah_django.core.errors.ConfigurationError` naming the setting and where it
came from, when that setting is read or when the whole configuration is validated.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, overload

import environ
from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ..core.errors import ConfigurationError
from ..core.kms.aws_settings import SETTING_NAMES as AWS_SETTING_NAMES
from ..core.kms.static import TEST_MASTER_KEY_HEX
from ..core.kms.vault_settings import SETTING_NAMES as VAULT_SETTING_NAMES
from ..core.setting import reworded
from .parsing import KMS_ALIASES, METASTORES
from .registry import BY_KEY, ENV_PREFIX, SETTINGS, env_names, hint_for, well_known, where

if TYPE_CHECKING:
    from ..core.kms.aws_config import AwsKMSConfig, SecretsManagerConfig
    from ..core.kms.vault_config import VaultTransitConfig
    from ..core.protocols import KeyManagementService

__all__ = [
    "DEFAULTS",
    "ENV_PREFIX",
    "KMS_ALIASES",
    "METASTORES",
    "AsherahSettings",
    "asherah_settings",
    "env_names",
    "well_known",
    "where",
]

T = TypeVar("T")

#: Where the KMS settings are set, for their error messages.
_VAULT: Final = (
    "set Vault settings in the ASHERAH dict in settings.py or as environment variables: "
    "ASHERAH_VAULT_..., or the unprefixed VAULT_..."
)
_AWS: Final = (
    "set AWS settings in the ASHERAH dict in settings.py or as environment variables of the "
    "same names"
)

#: Every key of ``ASHERAH`` and its default (``None``: no default, unset).
DEFAULTS: Final[Mapping[str, object]] = {setting.key: setting.default for setting in SETTINGS}


@dataclass
class _Snapshot:
    """The settings as read once: values, where each came from, and what is wrong."""

    values: dict[str, object] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    #: The environment variable each value read from the environment came from.
    variables: dict[str, str] = field(default_factory=dict)
    #: Unprefixed well-known variables that were set but ignored (``KMS`` of another tool).
    ignored: list[str] = field(default_factory=list)
    errors: dict[str, ConfigurationError] = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)


class _Setting(Generic[T]):
    """A typed, read-only view of one key: ``asherah_settings.SERVICE_NAME``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.__doc__ = f"{BY_KEY[name].doc} ({where(name)})"  # KeyError: not in the registry

    @overload
    def __get__(self, obj: None, owner: type[AsherahSettings]) -> _Setting[T]: ...
    @overload
    def __get__(self, obj: AsherahSettings, owner: type[AsherahSettings]) -> T: ...
    def __get__(self, obj: AsherahSettings | None, owner: type[AsherahSettings]) -> _Setting[T] | T:
        if obj is None:
            return self
        value: T = obj.get(self.name)  # type: ignore[assignment]
        return value


class AsherahSettings:
    """The ``ASHERAH`` settings with environment fallback; see the module docs."""

    SERVICE_NAME = _Setting[str]("SERVICE_NAME")
    PRODUCT_ID = _Setting[str]("PRODUCT_ID")
    #: ``vault`` (also for ``vault-transit``), ``aws``, ``secrets-manager``, ``static``,
    #: ``test-debug-static``, or the dotted path of your own KMS class.
    KMS = _Setting[str]("KMS")
    STATIC_MASTER_KEY_HEX = _Setting[str | None]("STATIC_MASTER_KEY_HEX")
    VAULT_ADDR = _Setting[str | None]("VAULT_ADDR")
    VAULT_TRANSIT_KEY = _Setting[str | None]("VAULT_TRANSIT_KEY")
    VAULT_TRANSIT_MOUNT = _Setting[str | None]("VAULT_TRANSIT_MOUNT")
    VAULT_TOKEN = _Setting[str | None]("VAULT_TOKEN")
    VAULT_AUTH_METHOD = _Setting[str | None]("VAULT_AUTH_METHOD")
    VAULT_AUTH_ROLE = _Setting[str | None]("VAULT_AUTH_ROLE")
    VAULT_AUTH_MOUNT = _Setting[str | None]("VAULT_AUTH_MOUNT")
    VAULT_K8S_TOKEN_PATH = _Setting[str | None]("VAULT_K8S_TOKEN_PATH")
    VAULT_APPROLE_ROLE_ID = _Setting[str | None]("VAULT_APPROLE_ROLE_ID")
    VAULT_APPROLE_SECRET_ID = _Setting[str | None]("VAULT_APPROLE_SECRET_ID")
    VAULT_CLIENT_CERT = _Setting[str | None]("VAULT_CLIENT_CERT")
    VAULT_CLIENT_KEY = _Setting[str | None]("VAULT_CLIENT_KEY")
    VAULT_CACERT = _Setting[str | None]("VAULT_CACERT")
    VAULT_TIMEOUT = _Setting[float | None]("VAULT_TIMEOUT")
    VAULT_CONNECT_TIMEOUT = _Setting[float | None]("VAULT_CONNECT_TIMEOUT")
    VAULT_MAX_RETRIES = _Setting[int | None]("VAULT_MAX_RETRIES")
    VAULT_NAMESPACE = _Setting[str | None]("VAULT_NAMESPACE")
    VAULT_TOKEN_FILE = _Setting[str | None]("VAULT_TOKEN_FILE")
    VAULT_APPROLE_SECRET_ID_FILE = _Setting[str | None]("VAULT_APPROLE_SECRET_ID_FILE")
    EXPIRE_AFTER = _Setting[int]("EXPIRE_AFTER")
    CHECK_INTERVAL = _Setting[int]("CHECK_INTERVAL")
    SESSION_CACHE_SIZE = _Setting[int]("SESSION_CACHE_SIZE")
    SESSION_CACHE_DURATION = _Setting[int]("SESSION_CACHE_DURATION")
    SYSTEM_KEY_CACHE_SIZE = _Setting[int]("SYSTEM_KEY_CACHE_SIZE")
    INTERMEDIATE_KEY_CACHE_SIZE = _Setting[int]("INTERMEDIATE_KEY_CACHE_SIZE")
    #: ``django`` (the EncryptionKey table) or ``memory`` (tests and development only).
    METASTORE = _Setting[str]("METASTORE")
    #: The database alias holding the ``encryption_key`` table.
    DATABASE = _Setting[str]("DATABASE")
    #: Dotted path of ``resolver(request) -> partition id or None``, used by the middleware.
    PARTITION_RESOLVER = _Setting[str]("PARTITION_RESOLVER")
    #: ``off``, ``sign`` or ``require``: integrity tags on key rows (issue #13; SECURITY.md).
    KEY_INTEGRITY = _Setting[str]("KEY_INTEGRITY")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._resolver: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return "<AsherahSettings>"

    # -- reading -----------------------------------------------------------------------

    def get(self, name: str) -> object:
        """The validated value of ``name``; ConfigurationError if it is invalid or missing."""
        snapshot = self.snapshot()
        error = snapshot.errors.get(name)
        if error is not None:
            raise error.with_traceback(None)
        return snapshot.values[name]

    def source(self, name: str) -> str:
        """Where the value of ``name`` came from: ``settings``, ``environment`` or ``default``."""
        return self.snapshot().sources[name]

    def variable(self, name: str) -> str | None:
        """The environment variable the value of ``name`` came from, if it came from one."""
        return self.snapshot().variables.get(name)

    def snapshot(self) -> _Snapshot:
        """The settings as read once (read now if they are not cached)."""
        cached = self._snapshot
        if cached is not None:
            return cached
        with self._lock:  # one thread reads; the others wait for its snapshot
            if self._snapshot is None:
                self._snapshot = _read()
            return self._snapshot

    def reload(self) -> None:
        """Forget the cached values: the next read sees settings and environment anew."""
        with self._lock:
            self._snapshot = None
            self._resolver = None

    def errors(self) -> dict[str, ConfigurationError]:
        """Every invalid setting and why (used by the system checks)."""
        return dict(self.snapshot().errors)

    def validate(self) -> None:
        """Raise the first problem of the configuration needed to build the SessionFactory."""
        snapshot = self.snapshot()
        if "ASHERAH" in snapshot.errors:
            raise snapshot.errors["ASHERAH"].with_traceback(None)
        kms = snapshot.values.get("KMS")
        for name in DEFAULTS:
            if name == "PARTITION_RESOLVER" or name in VAULT_SETTING_NAMES:
                continue  # the resolver is checked on use; Vault below, only when used
            if name in AWS_SETTING_NAMES:
                continue  # checked below, only when an AWS KMS is used
            if name == "DATABASE" and snapshot.values.get("METASTORE") != "django":
                continue
            if name == "STATIC_MASTER_KEY_HEX" and kms not in ("static", "test-debug-static"):
                continue
            if name in snapshot.errors:
                raise snapshot.errors[name].with_traceback(None)
        if kms == "vault":
            self.vault_config()
        elif kms == "aws":
            self.aws_config()
        elif kms == "secrets-manager":
            self.secrets_manager_config()
        elif isinstance(kms, str) and "." in kms:
            self.kms_class()

    # -- derived values --------------------------------------------------------------------

    @property
    def static_master_key_hex(self) -> str:
        """The static KMS master key: STATIC_MASTER_KEY_HEX, or Asherah's public test key
        for ``KMS=test-debug-static``."""
        value = self.STATIC_MASTER_KEY_HEX
        if value is not None:
            return value
        if self.KMS == "test-debug-static":
            return TEST_MASTER_KEY_HEX
        raise ConfigurationError(
            f"STATIC_MASTER_KEY_HEX is required with KMS={self.KMS}: "
            f"set {where('STATIC_MASTER_KEY_HEX')} to 64 hex characters",
            hint='generate one with: python -c "import secrets; print(secrets.token_hex(32))"',
        )

    def vault_settings(self) -> dict[str, object]:
        """The VAULT_* settings that are set, by name (for ``VaultTransitConfig``)."""
        return self._set_values(VAULT_SETTING_NAMES)

    def vault_config(self) -> VaultTransitConfig:
        """The validated Vault Transit configuration (no network I/O)."""
        from ..core.kms.vault_config import VaultTransitConfig

        return self._kms_config(VAULT_SETTING_NAMES, VaultTransitConfig.from_mapping, _VAULT)

    # -- AWS and custom KMSs (issue 24) --------------------------------------------------

    def aws_settings(self) -> dict[str, object]:
        """The AWS settings that are set, by name (for ``AwsKMSConfig``)."""
        return self._set_values(AWS_SETTING_NAMES)

    def aws_config(self) -> AwsKMSConfig:
        """The validated ``KMS=aws`` configuration (no network I/O, boto3 not needed)."""
        from ..core.kms.aws_config import AwsKMSConfig

        return self._kms_config(AWS_SETTING_NAMES, AwsKMSConfig.from_mapping, _AWS)

    def secrets_manager_config(self) -> SecretsManagerConfig:
        """The validated ``KMS=secrets-manager`` configuration (no network I/O)."""
        from ..core.kms.aws_config import SecretsManagerConfig

        return self._kms_config(AWS_SETTING_NAMES, SecretsManagerConfig.from_mapping, _AWS)

    def _set_values(self, names: tuple[str, ...]) -> dict[str, object]:
        values = self.snapshot().values
        return {name: values[name] for name in names if values.get(name) is not None}

    def _kms_config(
        self, names: tuple[str, ...], build: Callable[[Mapping[str, object]], T], where: str
    ) -> T:
        """``build`` from the settings ``names`` (each valid); errors say where to set them."""
        try:
            for name in names:
                self.get(name)
            return build(self._set_values(names))
        except ConfigurationError as exc:
            raise reworded(exc, f"{exc.args[0]} ({where})") from None

    def kms_class(self) -> Callable[[], KeyManagementService]:
        """The class a dotted-path ``KMS`` names, imported and checked (not instantiated).

        It is called with no arguments (read your own settings in ``__init__``) and must
        have ``encrypt_key(bytes) -> bytes`` and ``decrypt_key(bytes) -> bytes``.
        """
        path = self.KMS
        try:
            cls = import_string(path)
        except ImportError as exc:
            raise ConfigurationError(
                f"KMS {path!r} cannot be imported ({exc}); set {where('KMS')} to vault, aws, "
                "secrets-manager, static or the dotted path of your KMS class"
            ) from None
        missing = [m for m in ("encrypt_key", "decrypt_key") if not callable(getattr(cls, m, None))]
        if not callable(cls) or missing:
            raise ConfigurationError(
                f"KMS {path!r} does not implement the KMS protocol "
                f"(missing {', '.join(missing) or '__call__'}): see "
                "asherah_django.core.protocols.KeyManagementService"
            )
        return cls  # type: ignore[no-any-return]

    @property
    def partition_resolver(self) -> Callable[..., Any]:
        """The callable PARTITION_RESOLVER names, imported on first use."""
        resolver = self._resolver
        if resolver is None:
            path = self.PARTITION_RESOLVER
            try:
                resolver = import_string(path)
            except ImportError as exc:
                raise ConfigurationError(
                    f"PARTITION_RESOLVER {path!r} cannot be imported ({exc}); "
                    f"set {where('PARTITION_RESOLVER')} to the dotted path of a function"
                ) from None
            if not callable(resolver):
                raise ConfigurationError(f"PARTITION_RESOLVER {path!r} is not callable")
            self._resolver = resolver
        return resolver


def _read() -> _Snapshot:
    snapshot = _Snapshot()
    configured: object = getattr(settings, "ASHERAH", None)
    if configured is None:
        configured = {}
    if not isinstance(configured, Mapping):
        configured = {}
        snapshot.errors["ASHERAH"] = ConfigurationError(
            "settings.ASHERAH must be a dict of Asherah settings, "
            f"not {type(getattr(settings, 'ASHERAH', None)).__name__}"
        )
    snapshot.unknown_keys = sorted(str(key) for key in configured if key not in DEFAULTS)
    env = environ.Env()
    for name, default in DEFAULTS.items():
        raw: object = configured.get(name)
        source = "settings"
        if isinstance(raw, str) and not raw.strip():
            raw = None  # blank counts as unset, as in the environment
        if raw is None:
            raw = _from_environment(env, name, snapshot)
            source = "environment"
        if raw is None:
            raw, source = default, "default"
        snapshot.sources[name] = source
        try:
            snapshot.values[name] = _parse(name, raw)
        except ConfigurationError as exc:
            snapshot.values[name] = None
            origin = {
                "settings": f"ASHERAH[{name!r}] in settings.py",
                "environment": f"the {snapshot.variables.get(name)} environment variable",
                "default": "the default",
            }[source]
            error = reworded(exc, f"{exc.args[0]} (from {origin})", setting=name)
            error.hint = hint_for(exc, name)
            snapshot.errors[name] = error
    _check_kms_keys(snapshot)
    return snapshot


def _from_environment(env: environ.Env, name: str, snapshot: _Snapshot) -> str | None:
    """The first of :func:`env_names` that is set; records which (or an ignored ``KMS``)."""
    for variable in env_names(name):
        raw: str | None = env.str(variable, default=None)
        if raw is None or not raw.strip():
            continue
        if variable == "KMS" and raw.strip().lower() not in KMS_ALIASES:
            snapshot.ignored.append(variable)
            continue  # another tool's KMS: not ours to interpret
        snapshot.variables[name] = variable
        return raw
    return None


def _parse(name: str, raw: object) -> object:
    """Validate and convert one raw value with its registry parser."""
    return BY_KEY[name].parse(name, raw)


def _check_kms_keys(snapshot: _Snapshot) -> None:
    if (
        snapshot.values.get("KMS") == "static"
        and snapshot.values.get("STATIC_MASTER_KEY_HEX") is None
        and "STATIC_MASTER_KEY_HEX" not in snapshot.errors
    ):
        snapshot.errors["STATIC_MASTER_KEY_HEX"] = ConfigurationError(
            "STATIC_MASTER_KEY_HEX is required with KMS=static: "
            f"set {where('STATIC_MASTER_KEY_HEX')} to 64 hex characters",
            hint='generate one with: python -c "import secrets; print(secrets.token_hex(32))"',
        )


asherah_settings = AsherahSettings()


def _reload_on_change(*, setting: str, **kwargs: object) -> None:
    if setting in ("ASHERAH", "DATABASES"):
        asherah_settings.reload()


setting_changed.connect(_reload_on_change, dispatch_uid="asherah_django.conf.reload")

"""The crypto policy: key lifetimes, revoke-check interval and cache sizes.

Defaults are Asherah's: keys expire after 90 days, caches re-check the metastore
for revocations every 60 minutes, new system and intermediate keys get creation
times truncated to the minute.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import ConfigurationError

DEFAULT_EXPIRE_AFTER = 90 * 24 * 60 * 60
DEFAULT_CHECK_INTERVAL = 60 * 60
DEFAULT_CREATE_DATE_PRECISION = 60
DEFAULT_SYSTEM_KEY_CACHE_SIZE = 1000
DEFAULT_INTERMEDIATE_KEY_CACHE_SIZE = 10_000
DEFAULT_SESSION_CACHE_SIZE = 1000
DEFAULT_SESSION_CACHE_DURATION = 2 * 60 * 60
#: What ``key_integrity`` (the ``KEY_INTEGRITY`` setting) accepts.
KEY_INTEGRITY_MODES = ("off", "sign", "require")


@dataclass(frozen=True, slots=True)
class CryptoPolicy:
    """How long keys live and how much the factory caches. All durations are seconds."""

    expire_after: int = DEFAULT_EXPIRE_AFTER
    check_interval: int = DEFAULT_CHECK_INTERVAL
    create_date_precision: int = DEFAULT_CREATE_DATE_PRECISION
    cache_system_keys: bool = True
    cache_intermediate_keys: bool = True
    system_key_cache_size: int = DEFAULT_SYSTEM_KEY_CACHE_SIZE
    intermediate_key_cache_size: int = DEFAULT_INTERMEDIATE_KEY_CACHE_SIZE
    cache_sessions: bool = True
    session_cache_size: int = DEFAULT_SESSION_CACHE_SIZE
    session_cache_duration: int = DEFAULT_SESSION_CACHE_DURATION
    #: ``off``, ``sign`` or ``require``: integrity tags on key rows (see core/integrity.py).
    key_integrity: str = "off"

    def __post_init__(self) -> None:
        if self.key_integrity not in KEY_INTEGRITY_MODES:
            raise ConfigurationError(
                f"crypto policy key_integrity must be one of {', '.join(KEY_INTEGRITY_MODES)}, "
                f"got {self.key_integrity!r}"
            )
        for field in fields(self):
            if field.name == "key_integrity":
                continue
            value = getattr(self, field.name)
            if field.type == "bool" or isinstance(value, bool):
                if not isinstance(value, bool):
                    raise ConfigurationError(f"crypto policy {field.name} must be true or false")
                continue
            if not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"crypto policy {field.name} must be a positive whole number, got {value!r}"
                )

    @property
    def effective_precision(self) -> int:
        """The create-date precision, clamped to the key lifetime so creation never stalls."""
        return min(self.create_date_precision, self.expire_after)

    def truncate(self, now: float) -> int:
        """``now`` truncated to the create-date precision, as SK and IK ``Created`` values are."""
        precision = self.effective_precision
        seconds = int(now)
        return seconds - seconds % precision

    def is_expired(self, created: int, now: float) -> bool:
        """Asherah Go's rule: a key is expired once ``now`` is strictly past created + expiry."""
        return now > created + self.expire_after

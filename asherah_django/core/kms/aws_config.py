"""Settings of the AWS KMS and Secrets Manager KMSs, validated offline (no boto3, no I/O).

The names are the ones Asherah's implementations read (asherah-ffi's environment, the
``asherah`` wheel's ``RegionMap``/``PreferredRegion``):

* ``REGION_MAP``: region -> KMS key ARN, a dict or a JSON object string;
* ``PREFERRED_REGION``: the region tried first; required when the map has several regions;
* ``KMS_KEY_ID`` with ``AWS_REGION``: the one-region shorthand when ``REGION_MAP`` is unset;
* ``SECRETS_MANAGER_SECRET_ID`` (with ``AWS_REGION``) for ``KMS=secrets-manager``;
* ``AWS_PROFILE_NAME``: a named profile of the shared AWS config (``AwsProfileName``).

Ours, for private endpoints and local test servers: ``AWS_ENDPOINT_URL`` (one endpoint for
every region, as the wheel reads it) and ``AWS_KMS_ENDPOINTS`` (region -> URL, wins over
``AWS_ENDPOINT_URL``); ``AWS_TIMEOUT``, ``AWS_CONNECT_TIMEOUT`` and ``AWS_MAX_RETRIES``.
Credentials come from the usual AWS chain (environment, shared config, IRSA/instance
roles) and never from these settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypedDict

from ..errors import ConfigurationError
from ..setting import SettingsReader
from .aws_settings import (
    BY_KEY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
)
from .aws_settings import SETTING_NAMES as SETTING_NAMES

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
#: ``arn:<partition>:kms:<region>:<12-digit account>:key/<id>`` or ``.../alias/<name>``.
_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"(?P<kind>key|alias)/(?P<id>[A-Za-z0-9/_+=,.@:-]+)"
)
_URL = re.compile(r"https?://[^\s/]+(/[^\s]*)?")
HINT_REGION_MAP: Final = (
    'set REGION_MAP to {"us-west-2": "arn:aws:kms:us-west-2:111122223333:key/...", ...} '
    "(a dict in ASHERAH, a JSON object in the environment)"
)


@dataclass(frozen=True, kw_only=True)
class _Connection:
    """What both AWS KMSs share: the profile, timeouts and retries (keyword-only)."""

    profile_name: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES


@dataclass(frozen=True)
class AwsKMSConfig(_Connection):
    """The validated settings of ``KMS=aws``: regions in order (preferred first)."""

    region_map: Mapping[str, str]
    preferred_region: str
    #: KMS endpoint by region (AWS_KMS_ENDPOINTS, else AWS_ENDPOINT_URL).
    endpoints: Mapping[str, str] = field(default_factory=dict)
    #: AWS_ENDPOINT_URL: the endpoint of every other service (STS for asherah_check).
    endpoint_url: str | None = None

    @property
    def regions(self) -> tuple[str, ...]:
        """The preferred region, then the others sorted by name (Asherah's order)."""
        others = sorted(r for r in self.region_map if r != self.preferred_region)
        return (self.preferred_region, *others)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> AwsKMSConfig:
        """Build from settings by name; :class:`ConfigurationError` says what to fix."""
        get = SettingsReader(values, BY_KEY)
        region_map = _region_map(get)
        preferred = get.text("PREFERRED_REGION")
        if preferred is None:
            if len(region_map) > 1:
                raise ConfigurationError(
                    "PREFERRED_REGION must be set when REGION_MAP has several regions "
                    f"(known: {', '.join(sorted(region_map))})"
                )
            preferred = next(iter(region_map))
        if preferred not in region_map:
            raise ConfigurationError(
                f"PREFERRED_REGION {preferred!r} is not in REGION_MAP "
                f"(known: {', '.join(sorted(region_map))})"
            )
        return cls(
            region_map=dict(region_map),
            preferred_region=preferred,
            endpoints=_endpoints(get, tuple(region_map)),
            endpoint_url=get.text("AWS_ENDPOINT_URL"),
            **_common(get),
        )


@dataclass(frozen=True)
class SecretsManagerConfig(_Connection):
    """The validated settings of ``KMS=secrets-manager``."""

    secret_id: str
    region: str | None = None
    endpoint: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> SecretsManagerConfig:
        get = SettingsReader(values, BY_KEY)
        secret_id = get.text("SECRETS_MANAGER_SECRET_ID")
        if secret_id is None:
            raise ConfigurationError(
                "SECRETS_MANAGER_SECRET_ID is required with KMS=secrets-manager "
                "(the name or ARN of the secret holding the 32-byte master key)"
            )
        region = get.text("AWS_REGION")
        if region is not None and not _REGION.fullmatch(region):
            raise ConfigurationError(f"AWS_REGION {region!r} is not an AWS region name")
        url = get.text("AWS_ENDPOINT_URL")
        if url is not None:
            _check_url("AWS_ENDPOINT_URL", url)
        return cls(secret_id=secret_id, region=region, endpoint=url, **_common(get))


def parse_arn(arn: str) -> dict[str, str] | None:
    """The parts of a KMS key or alias ARN (partition, region, account, kind, id), or None."""
    match = _ARN.fullmatch(arn)
    return match.groupdict() if match else None


class _Common(TypedDict):
    profile_name: str | None
    timeout: float
    connect_timeout: float
    max_retries: int


def _common(get: SettingsReader) -> _Common:
    """The settings both AWS KMSs share: profile, timeouts and retries."""
    return {
        "profile_name": get.text("AWS_PROFILE_NAME"),
        "timeout": get.number("AWS_TIMEOUT"),
        "connect_timeout": get.number("AWS_CONNECT_TIMEOUT"),
        "max_retries": get.integer("AWS_MAX_RETRIES"),
    }


def _region_map(get: SettingsReader) -> dict[str, str]:
    raw = get.mapping("REGION_MAP")
    if raw is None:
        key_id, region = get.text("KMS_KEY_ID"), get.text("AWS_REGION")
        if key_id is None:
            raise ConfigurationError(
                "REGION_MAP (or KMS_KEY_ID with AWS_REGION) is required with KMS=aws",
                hint=HINT_REGION_MAP,
            )
        parts = parse_arn(key_id)
        region = region or (parts or {}).get("region")
        if region is None:
            raise ConfigurationError(
                "AWS_REGION is required with KMS_KEY_ID when the key id is not an ARN"
            )
        raw = {region: key_id}
    if not raw:
        raise ConfigurationError(
            "REGION_MAP is empty: name at least one region", hint=HINT_REGION_MAP
        )
    result: dict[str, str] = {}
    for name, arn in raw.items():
        if not isinstance(name, str) or not _REGION.fullmatch(name.strip()):
            raise ConfigurationError(
                f"REGION_MAP has {name!r}, which is not an AWS region name (e.g. us-west-2)"
            )
        if not isinstance(arn, str) or not arn.strip():
            raise ConfigurationError(f"REGION_MAP entry for region {name!r} has no key ARN")
        parts = parse_arn(arn.strip())
        if parts is None:
            raise ConfigurationError(
                f"REGION_MAP entry for {name!r} is not a KMS key ARN: expected "
                "arn:aws:kms:<region>:<account>:key/<key id> (or alias/<name>)",
                hint=HINT_REGION_MAP,
            )
        if parts["region"] != name.strip():
            raise ConfigurationError(
                f"REGION_MAP entry for {name!r} names a key in region {parts['region']!r}: "
                "each region must map to a key of that region"
            )
        result[name.strip()] = arn.strip()
    return result


def _endpoints(get: SettingsReader, regions: tuple[str, ...]) -> dict[str, str]:
    """Endpoint URL by region: AWS_KMS_ENDPOINTS, else AWS_ENDPOINT_URL for every region."""
    common = get.text("AWS_ENDPOINT_URL")
    if common is not None:
        _check_url("AWS_ENDPOINT_URL", common)
    result = dict.fromkeys(regions, common) if common else {}
    for region, url in (get.mapping("AWS_KMS_ENDPOINTS") or {}).items():
        if region not in regions:
            raise ConfigurationError(
                f"AWS_KMS_ENDPOINTS names region {region!r}, which is not in REGION_MAP"
            )
        if not isinstance(url, str):
            raise ConfigurationError(f"AWS_KMS_ENDPOINTS[{region!r}] must be a URL string")
        _check_url(f"AWS_KMS_ENDPOINTS[{region!r}]", url.strip())
        result[str(region)] = url.strip()
    return {r: u for r, u in result.items() if u}


def endpoint_urls(values: Mapping[str, object]) -> list[str]:
    """Every endpoint URL set (AWS_ENDPOINT_URL, then AWS_KMS_ENDPOINTS), unvalidated:
    for the deployment checks; a value that does not parse is left out (the config says why)."""
    get = SettingsReader(values, BY_KEY)
    urls: list[object] = []
    for read in (lambda: [get.text("AWS_ENDPOINT_URL")], lambda: get.mapping("AWS_KMS_ENDPOINTS")):
        try:
            found = read()
        except ConfigurationError:
            continue
        urls += list(found.values() if isinstance(found, Mapping) else found or ())
    return [url for url in urls if isinstance(url, str)]


def _check_url(name: str, url: str) -> None:
    if not _URL.fullmatch(url):
        raise ConfigurationError(f"{name} must be an http(s) URL, got {url!r}")

"""The AWS KMS and Secrets Manager settings (``KMS=aws``, ``KMS=secrets-manager``).

Described once for the registry; :mod:`.aws_config` reads them through these
descriptors. The names asherah-ffi documents (and the AWS SDKs' ``AWS_REGION`` and
``AWS_ENDPOINT_URL``) are also read from the unprefixed environment variable.
"""

from __future__ import annotations

from typing import Final

from ..setting import Setting, SettingError, by_key, parse_mapping

DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_CONNECT_TIMEOUT: Final = 1.0
DEFAULT_MAX_RETRIES: Final = 2
MAX_SECONDS: Final = 600
MAX_RETRIES: Final = 10

_AWS: Final = ("aws",)
_SM: Final = ("secrets-manager",)
_BOTH: Final = ("aws", "secrets-manager")


def _number(name: str, raw: object) -> float:
    try:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError
        return float(raw)
    except ValueError:
        raise SettingError(f"{name} must be a number, got {raw!r}", setting=name) from None


def parse_seconds(name: str, raw: object) -> float:
    """Seconds above 0 and at most :data:`MAX_SECONDS`."""
    number = _number(name, raw)
    if not 0 < number <= MAX_SECONDS:
        raise SettingError(
            f"{name} must be between 0 and {MAX_SECONDS} seconds, got {raw!r}", setting=name
        )
    return number


def parse_retries(name: str, raw: object) -> int:
    """A whole number 0 to :data:`MAX_RETRIES`."""
    number = _number(name, raw)
    if number < 0 or number != int(number) or number > MAX_RETRIES:
        raise SettingError(
            f"{name} must be a whole number 0-{MAX_RETRIES}, got {raw!r}", setting=name
        )
    return int(number)


AWS_SETTINGS: Final = (
    Setting(
        "REGION_MAP",
        "JSON object",
        'AWS region -> KMS key ARN of that region, e.g. ``{"us-west-2": '
        '"arn:aws:kms:us-west-2:111122223333:key/..."}`` (a dict in ``ASHERAH``, a JSON '
        "object in the environment). Each system key is wrapped in every region. Required "
        "with ``KMS=aws`` unless ``KMS_KEY_ID`` is set.",
        kms=_AWS,
        unprefixed=True,
        parse=parse_mapping,
    ),
    Setting(
        "PREFERRED_REGION",
        "region",
        "The region tried first; required when ``REGION_MAP`` has several regions.",
        default_text="the only region of REGION_MAP",
        kms=_AWS,
        unprefixed=True,
    ),
    Setting(
        "KMS_KEY_ID",
        "ARN or key id",
        "The one-region shorthand for ``REGION_MAP``: a key ARN, or a key id with "
        "``AWS_REGION``. Used when ``REGION_MAP`` is unset.",
        kms=_AWS,
        unprefixed=True,
    ),
    Setting(
        "AWS_REGION",
        "region",
        "The region of ``KMS_KEY_ID`` (when it is not an ARN) and of the Secrets Manager secret.",
        kms=_BOTH,
        unprefixed=True,
    ),
    Setting(
        "AWS_PROFILE_NAME",
        "string",
        "A named profile of the shared AWS config; credentials otherwise come from the "
        "usual AWS chain (environment, shared config, IRSA or instance roles).",
        kms=_BOTH,
    ),
    Setting(
        "AWS_ENDPOINT_URL",
        "URL",
        "One endpoint for every region and service: private (VPC) endpoints and local "
        "test servers.",
        kms=_BOTH,
        unprefixed=True,
    ),
    Setting(
        "AWS_KMS_ENDPOINTS",
        "JSON object",
        "Region -> KMS endpoint URL; wins over ``AWS_ENDPOINT_URL`` for the regions it names "
        "(each must be in ``REGION_MAP``).",
        kms=_AWS,
        parse=parse_mapping,
    ),
    Setting(
        "AWS_TIMEOUT",
        "seconds",
        f"How long to wait for each AWS answer, above 0 and at most {MAX_SECONDS}.",
        default=DEFAULT_TIMEOUT,
        kms=_BOTH,
        parse=parse_seconds,
    ),
    Setting(
        "AWS_CONNECT_TIMEOUT",
        "seconds",
        f"How long to wait to open each connection, above 0 and at most {MAX_SECONDS}.",
        default=DEFAULT_CONNECT_TIMEOUT,
        kms=_BOTH,
        parse=parse_seconds,
    ),
    Setting(
        "AWS_MAX_RETRIES",
        "whole number",
        f"Retries of a failed AWS call (0-{MAX_RETRIES}).",
        default=DEFAULT_MAX_RETRIES,
        kms=_BOTH,
        parse=parse_retries,
    ),
    Setting(
        "SECRETS_MANAGER_SECRET_ID",
        "string",
        "The name or ARN of the AWS Secrets Manager secret holding the 32-byte master key, "
        "for ``KMS=secrets-manager`` (for migrating away from it only). Required there.",
        kms=_SM,
        unprefixed=True,
    ),
)
#: The AWS settings by name.
BY_KEY: Final = by_key(AWS_SETTINGS)
#: Every AWS-related key of ``ASHERAH`` (also read from the environment).
SETTING_NAMES: Final = tuple(BY_KEY)

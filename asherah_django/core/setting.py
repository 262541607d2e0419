"""One setting described once: its name, environment names, default, kind, KMS and doc.

:class:`Setting` is the descriptor the settings registry (``asherah_django.conf.registry``)
is made of; its ``parse`` validates one raw value (from ``settings.ASHERAH``, the
environment or the default) and is the only code that does. :class:`SettingsReader` reads a
mapping of raw values by name through those descriptors; the KMS configurations
(``VaultTransitConfig``, ``AwsKMSConfig``) are built with it. :class:`SettingError` is a
:class:`ConfigurationError` that names the setting to fix and what kind of problem it is,
so the system checks can report it under their stable ids. Django-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from .errors import ConfigurationError

#: Prefix of the environment variable read for every setting.
ENV_PREFIX: Final = "ASHERAH_"

#: ``missing``: a required setting is unset; ``auth``: the Vault auth settings do not fit
#: together; ``invalid``: a value is wrong.
Problem = Literal["missing", "auth", "invalid"]


class SettingError(ConfigurationError):
    """A :class:`ConfigurationError` naming ``setting`` (the one to fix) and its ``problem``.

    ``fix`` completes "set <where the setting is set> ..." (e.g. ``"to an https:// URL"``);
    the Django layer adds where, since only it knows the settings dict and environment.
    """

    def __init__(
        self,
        message: str,
        *,
        setting: str,
        problem: Problem = "invalid",
        fix: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.setting = setting
        self.problem: Problem = problem
        self.fix = fix


def reworded(error: ConfigurationError, message: str, *, setting: str = "") -> ConfigurationError:
    """``error`` with a new message (e.g. where the value came from), still typed: a
    :class:`SettingError` keeps its setting, problem and fix; a plain one becomes a
    SettingError naming ``setting`` when given."""
    if isinstance(error, SettingError):
        return SettingError(
            message, setting=error.setting, problem=error.problem, fix=error.fix, hint=error.hint
        )
    if setting:
        return SettingError(message, setting=setting, hint=error.hint)
    return ConfigurationError(message, hint=error.hint)


Parser = Callable[[str, object], object]


def parse_text(name: str, raw: object) -> str | None:
    """A string (or path), stripped; ``None`` or blank: unset."""
    if raw is None:
        return None
    if isinstance(raw, os.PathLike):
        raw = os.fspath(raw)
    if not isinstance(raw, str):
        raise SettingError(f"{name} must be a string, not {type(raw).__name__}", setting=name)
    return raw.strip() or None


def parse_seconds(name: str, raw: object) -> float | None:
    """A number of seconds (range checked where it is used)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise SettingError(f"{name} must be a number of seconds, not a boolean", setting=name)
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            pass
    raise SettingError(f"{name} must be a number of seconds, got {raw!r}", setting=name)


def parse_count(name: str, raw: object) -> int | None:
    """A whole number, 0 or more (range checked where it is used)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    raise SettingError(f"{name} must be a whole number, got {raw!r}", setting=name)


def parse_mapping(name: str, raw: object) -> Mapping[object, object] | None:
    """A mapping, or a JSON object string (as the environment gives it)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SettingError(
                f'{name} is not valid JSON: expected an object such as {{"us-west-2": "..."}}',
                setting=name,
            ) from None
    if not isinstance(raw, Mapping):
        raise SettingError(f"{name} must be a mapping of region to value", setting=name)
    return raw


@dataclass(frozen=True)
class Setting:
    """One key of ``settings.ASHERAH``; see ``asherah_django.conf.registry``."""

    #: The ``ASHERAH`` dict key, e.g. ``VAULT_ADDR``.
    key: str
    #: What kind of value it takes, for people: ``string``, ``seconds``, ``JSON object``...
    kind: str
    #: One paragraph for the settings reference.
    doc: str
    #: The value used when it is unset (``None``: unset, no value).
    default: object = None
    #: How the default is shown when ``default`` alone would not say it (e.g. ``None``).
    default_text: str = ""
    #: The KMS names (``KMS`` values) it applies to; empty: every KMS.
    kms: tuple[str, ...] = ()
    #: Also read from the unprefixed environment variable (Asherah's documented names).
    unprefixed: bool = False
    #: Validates and converts one raw value; raises :class:`ConfigurationError`.
    parse: Parser = field(default=parse_text, repr=False, compare=False)
    #: The environment variables read, in order of precedence (derived).
    env: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        env = (ENV_PREFIX + self.key, self.key) if self.unprefixed else (ENV_PREFIX + self.key,)
        object.__setattr__(self, "env", env)

    @property
    def shown_default(self) -> str:
        """The default as the reference shows it."""
        if self.default_text:
            return self.default_text
        return "unset" if self.default is None else str(self.default)

    def read(self, raw: object) -> object:
        """``parse`` of ``raw``; ``None`` or blank give the default (parsed too)."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raw = self.default
        return self.parse(self.key, raw)


def by_key(settings: Iterable[Setting]) -> dict[str, Setting]:
    """The settings by ``key`` (each key once)."""
    found: dict[str, Setting] = {}
    for setting in settings:
        if setting.key in found:
            raise ValueError(f"setting {setting.key} is described twice")
        found[setting.key] = setting
    return found


class SettingsReader:
    """Reads raw values by name through their :class:`Setting` (unknown names: KeyError).

    Accessors (``text``, ``number``, ``integer``, ``mapping``, ``value``) take the setting
    name as a string literal: the registry test finds the settings the code reads by them.
    """

    def __init__(self, values: Mapping[str, object], settings: Mapping[str, Setting]) -> None:
        self._values = values
        self._settings = settings

    def value(self, name: str) -> object:
        return self._settings[name].read(self._values.get(name))

    def text(self, name: str) -> str | None:
        value = self.value(name)
        assert value is None or isinstance(value, str), name
        return value

    def number(self, name: str) -> float:
        value = self.value(name)
        assert isinstance(value, float), name
        return value

    def integer(self, name: str) -> int:
        value = self.value(name)
        assert isinstance(value, int), name
        return value

    def mapping(self, name: str) -> Mapping[object, object] | None:
        value = self.value(name)
        assert value is None or isinstance(value, Mapping), name
        return value

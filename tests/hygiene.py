"""Secrets hygiene for the whole test run: no log record may carry a secret.

A pytest plugin (``pytest_plugins = ["tests.hygiene"]`` in tests/conftest.py). At start it
puts a handler on the root logger, sets the root logger (and ``asherah_django``,
``django``, ``hvac``, ``urllib3``, ``requests``) to DEBUG so that every record propagates
(except ``django.template``'s DEBUG records, see ``_QUIET``),
and keeps the formatted message (with its exception and stack text) of every record
emitted during the run, each distinct text once. At the end it fails the run (exit
status 1) if any of them contains a registered secret:

* key material: every :class:`asherah_django.core.keys.CryptoKey` (system and intermediate
  keys, as the engine holds them) and every static master key registers itself, as
  lowercase hex, standard or URL-safe base64, ``repr()`` of the bytes and Latin-1 text;
* Vault credentials: tokens the KMS holds (every ``TokenLease``), ``VAULT_TOKEN`` and
  ``VAULT_APPROLE_SECRET_ID`` of every ``VaultTransitConfig``, every ``client_token``,
  ``root_token`` and ``secret_id`` an ``OpenBaoServer`` API call returns (tokens made by
  ``create_token``, root tokens, AppRole secret ids), service-account JWTs issued by the
  test Kubernetes API;
* anything a fixture passes to :func:`register_secret`;
* the plaintext marker :data:`MARKER`, which tests put in the plaintexts they encrypt.

Texts that are not log records go through the same check: the integration tests (#18)
pass every span name and attribute, every metric label and exposition line, and DRF error
bodies to :func:`record_text` / :func:`assert_clean_text`.

The report names the logger, level and test of each offending record and shows the
message with the secret replaced by ``<KIND>``; never the secret itself.

Cost: one ``getMessage()`` per record while the tests run; the search at the end looks
only at candidate runs of characters (regular expressions), not at every substring.
Secrets shorter than 16 characters are not registered (they would match innocent text).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

#: Put this in test plaintexts: a log record that contains it fails the run.
MARKER = "PLAINTEXT-MARKER-"
MIN_SECRET_LENGTH = 16
_LOGGERS = ("asherah_django", "django", "hvac", "urllib3", "requests")
#: Kept above DEBUG: django.template's DEBUG records carry whole template contexts, and
#: formatting them evaluates the querysets inside (extra queries, tens of KB per record).
_QUIET = {"django.template": logging.INFO}
_REPR_PREFIX = 20  # characters of repr(key bytes) that identify a key
_LATIN_PREFIX = 16  # characters of the key bytes read as Latin-1
_B64_PREFIX = 43  # base64 of 32 bytes, without its padding
_HEX_LENGTH = 64
_SECRET_FIELDS = frozenset({"client_token", "root_token", "secret_id", "token"})
_TOKEN_RUN = re.compile(r"[A-Za-z0-9._~+/=:\-]{16,}")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{43,}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{64,}")
_URLSAFE = str.maketrans("-_", "+/")


@dataclass
class _Registry:
    """What must never appear in a log record, by the form it would take there."""

    texts: dict[str, str] = field(default_factory=dict)  # token, secret id... -> kind
    lengths: set[int] = field(default_factory=set)
    hex: set[str] = field(default_factory=set)
    b64: set[str] = field(default_factory=set)
    reprs: set[str] = field(default_factory=set)
    latin: set[str] = field(default_factory=set)
    keys: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def text(self, value: str, kind: str) -> None:
        if len(value) < MIN_SECRET_LENGTH:
            return
        with self.lock:
            self.texts.setdefault(value, kind)
            self.lengths.add(len(value))

    def key(self, secret: bytes) -> None:
        b64 = base64.b64encode(secret).decode()
        with self.lock:
            self.keys += 1
            self.hex.add(secret.hex())
            self.b64.add(b64[:_B64_PREFIX])
            self.reprs.add(repr(secret)[2 : 2 + _REPR_PREFIX])
            self.latin.add(secret[:_LATIN_PREFIX].decode("latin-1"))


_registry = _Registry()


def register_secret(value: str | bytes, kind: str = "secret") -> None:
    """Fail the run if ``value`` appears in any log record. Bytes count as key material
    (checked as hex, base64, repr and Latin-1); text as it is."""
    if isinstance(value, bytes | bytearray | memoryview):
        _registry.key(bytes(value))
    elif isinstance(value, str):
        _registry.text(value, kind)


def record_text(text: str, source: str) -> None:
    """Add a text that is not a log record (a span, a metric label, an HTTP error body) to
    the end-of-run check, under ``source`` (#18)."""
    if _state is not None:
        handler = _state.handler
        seen = handler.seen.get(text)
        if seen is None:
            handler.seen[text] = _Seen(source, "TEXT", handler.test)
        else:
            seen.count += 1


def assert_clean_text(text: str, source: str) -> None:
    """Fail at once if ``text`` holds a registered secret or the plaintext marker (and keep
    it for the end-of-run check too)."""
    record_text(text, source)
    kinds = sorted({kind for _, kind in _hits(text)})
    assert not kinds, f"{source} contains {', '.join(kinds)}"


# -- capture -----------------------------------------------------------------------------------


@dataclass
class _Seen:
    logger: str
    level: str
    test: str
    count: int = 1


class _CaptureHandler(logging.Handler):
    """Keeps each distinct formatted text once (with where it was first seen)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: dict[str, _Seen] = {}
        self.records = 0
        self.test = "(collection)"
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception as exc:  # a bad format string: keep what we have
            text = f"{record.msg!r} % {record.args!r} ({type(exc).__name__})"
        if record.exc_info:
            text += "\n" + self._formatter.formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        self.records += 1
        seen = self.seen.get(text)
        if seen is None:
            self.seen[text] = _Seen(record.name, record.levelname, self.test)
        else:
            seen.count += 1

    # Never let logging's error reporting print a record (it could hold a secret).
    def handleError(self, record: logging.LogRecord) -> None:
        pass


@dataclass
class _State:
    handler: _CaptureHandler
    levels: dict[str, int]
    propagate: dict[str, bool]
    offenders: list[str] = field(default_factory=list)
    seconds: float = 0.0
    known_loggers: int = 0
    undo: list[Any] = field(default_factory=list)


_state: _State | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _state
    if _state is not None:
        return
    handler = _CaptureHandler()
    root = logging.getLogger()
    names = ["", *_LOGGERS, *_QUIET]
    levels = {name: logging.getLogger(name).level for name in names}
    _state = _State(handler, levels, {})
    root.addHandler(handler)
    _apply_levels()
    _instrument()


def pytest_sessionstart(session: pytest.Session) -> None:
    _apply_levels()  # again: Django's logging configuration may have run since


def _apply_levels() -> None:
    assert _state is not None
    for name in ["", *_LOGGERS]:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)
    if _state.handler not in logging.getLogger().handlers:
        logging.getLogger().addHandler(_state.handler)
    _attach_to_non_propagating()


def _attach_to_non_propagating() -> None:
    """Loggers that do not propagate to the root get the handler directly."""
    assert _state is not None
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            isinstance(logger, logging.Logger)
            and not logger.propagate
            and _state.handler not in logger.handlers
        ):
            logger.addHandler(_state.handler)
            _state.propagate[name] = False


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    if _state is not None:
        _state.handler.test = nodeid
        root = logging.getLogger()
        if _state.handler not in root.handlers:  # a dictConfig of the root removed it
            root.addHandler(_state.handler)
        if len(logging.Logger.manager.loggerDict) != _state.known_loggers:
            _attach_to_non_propagating()
            _state.known_loggers = len(logging.Logger.manager.loggerDict)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _state is None:
        return
    started = time.monotonic()
    _state.offenders = find_leaks(_state.handler.seen)
    _state.seconds = time.monotonic() - started
    if _state.offenders and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _state is None:
        return
    handler = _state.handler
    summary = (
        f"secrets hygiene: {handler.records} log records ({len(handler.seen)} distinct) "
        f"checked against {_registry.keys} keys, {len(_registry.texts)} tokens/secret ids "
        f"and the plaintext marker in {_state.seconds:.2f}s"
    )
    if not _state.offenders:
        terminalreporter.write_line(summary + ": clean")
        return
    terminalreporter.section("secrets hygiene: FAILED", sep="=", red=True, bold=True)
    terminalreporter.write_line(summary)
    for line in _state.offenders[:50]:
        terminalreporter.write_line(line, red=True)
    if len(_state.offenders) > 50:
        terminalreporter.write_line(f"... and {len(_state.offenders) - 50} more")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _state
    if _state is None:
        return
    logging.getLogger().removeHandler(_state.handler)
    for name, level in _state.levels.items():
        logging.getLogger(name).setLevel(level)
    for name in _state.propagate:
        logging.getLogger(name).removeHandler(_state.handler)
    for undo in reversed(_state.undo):
        undo()
    _state = None


# -- the search --------------------------------------------------------------------------------


def find_leaks(seen: dict[str, _Seen]) -> list[str]:
    """One line per offending record text: where, what kind, the text redacted."""
    found: list[str] = []
    for text, where in seen.items():
        hits = list(_hits(text))
        if hits:
            redacted = text
            for secret, kind in hits:
                redacted = redacted.replace(secret, f"<{kind}>")
            redacted = redacted[:300].replace("\n", "\\n")
            found.append(
                f"{where.logger} {where.level} x{where.count} in {where.test}: "
                f"{', '.join(sorted({kind for _, kind in hits}))}: {redacted}"
            )
    return found


def _hits(text: str) -> Iterator[tuple[str, str]]:
    """(the offending substring, its kind) for every secret found in ``text``."""
    reg = _registry
    if MARKER in text:
        yield MARKER, "PLAINTEXT MARKER"
    if reg.texts:
        lengths = sorted(reg.lengths)
        for run in _TOKEN_RUN.findall(text):
            for length in lengths:
                for start in range(len(run) - length + 1):
                    kind = reg.texts.get(run[start : start + length])
                    if kind is not None:
                        yield run[start : start + length], kind
    for run in _HEX_RUN.findall(text):
        lowered = run.lower()
        for start in range(len(lowered) - _HEX_LENGTH + 1):
            if lowered[start : start + _HEX_LENGTH] in reg.hex:
                yield run[start : start + _HEX_LENGTH], "KEY HEX"
    for run in _B64_RUN.findall(text):
        normal = run.translate(_URLSAFE)
        for start in range(len(normal) - _B64_PREFIX + 1):
            if normal[start : start + _B64_PREFIX] in reg.b64:
                yield run[start : start + _B64_PREFIX], "KEY BASE64"
    if "\\x" in text:  # repr() of bytes
        yield from _windows(text, _REPR_PREFIX, reg.reprs, "KEY BYTES")
    if not text.isascii():  # bytes decoded as text
        yield from _windows(text, _LATIN_PREFIX, reg.latin, "KEY BYTES")


def _windows(text: str, length: int, wanted: set[str], kind: str) -> Iterator[tuple[str, str]]:
    for start in range(len(text) - length + 1):
        if text[start : start + length] in wanted:
            yield text[start : start + length], kind


# -- instrumentation ---------------------------------------------------------------------------


def _wrap(owner: Any, name: str, after: Any) -> None:
    """Replace ``owner.name`` by a function that calls it, then ``after(result, *args)``."""
    assert _state is not None
    original = owner.__dict__[name]

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        with contextlib.suppress(Exception):  # instrumentation must never break a test
            after(result, *args, **kwargs)
        return result

    setattr(owner, name, wrapper)
    _state.undo.append(lambda: setattr(owner, name, original))


def _instrument() -> None:
    from asherah_django.core.keys import CryptoKey
    from asherah_django.core.kms import static, vault_auth, vault_config
    from asherah_django.testing import openbao

    def key_created(result: Any, key: CryptoKey, *args: Any, **kwargs: Any) -> None:
        _registry.key(bytes(key._secret))

    def master_key(result: Any, kms: Any, master_key: bytes, *args: Any, **kw: Any) -> None:
        register_secret(master_key)

    def lease(result: Any, lease: Any, *args: Any, **kwargs: Any) -> None:
        register_secret(lease.token, "VAULT TOKEN")

    def config(result: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        for name, kind in (("token", "VAULT TOKEN"), ("approle_secret_id", "SECRET ID")):
            value = getattr(config, name, None)
            if isinstance(value, str):
                register_secret(value, kind)

    def answer(result: Any, *args: Any, **kwargs: Any) -> None:
        _register_fields(result)

    _wrap(CryptoKey, "__init__", key_created)
    _wrap(static.StaticKMS, "__init__", master_key)
    _wrap(vault_auth.TokenLease, "__init__", lease)
    _wrap(vault_config.VaultTransitConfig, "__init__", config)
    _wrap(openbao.OpenBaoServer, "request", answer)
    try:
        from tests.support.kubernetes import TokenReviewServer
    except ImportError:  # pragma: no cover - the support package is always there
        return

    def jwt(result: Any, *args: Any, **kwargs: Any) -> None:
        register_secret(result, "JWT")
        register_secret(result.rsplit(".", 1)[-1], "JWT SIGNATURE")

    _wrap(TokenReviewServer, "issue", jwt)


def _register_fields(value: Any, depth: int = 0) -> None:
    """Register every ``client_token``/``root_token``/``secret_id``/``token`` in an answer."""
    if depth > 6:
        return
    if isinstance(value, tuple | list):
        for item in value:
            _register_fields(item, depth + 1)
    elif isinstance(value, dict):
        for name, item in value.items():
            if name in _SECRET_FIELDS and isinstance(item, str):
                register_secret(item, "SECRET ID" if name == "secret_id" else "VAULT TOKEN")
            else:
                _register_fields(item, depth + 1)

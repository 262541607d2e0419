"""Every function of asherah_django.core._speedups, its error paths included, for memcheck.

    python tests/cproof/speedups_driver.py PATH_OF_THE_EXTENSION [CORPUS_DIR]

scripts/c_proof.sh runs it under valgrind (and under ASan/UBSan). It loads the extension
from the given file alone (no package import: nothing but CPython and OpenSSL run, so
valgrind reports stay about our code) and calls each case of :func:`cases`; a case's
result is checked, and a case that must fail must raise exactly its error. It fails when
a public function of the module has no cases: a new function gets its cases here, in the
table of :func:`cases` (one entry per function name, each a list of :class:`Case`).
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.util
import sys
import threading
import types
from binascii import a2b_base64, b2a_base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
#: Under KEY, with the nonce bytes(range(100, 112)): a 16-byte "data row key"
#: (bytes(range(200, 216))) that authenticates but is not 32 bytes (made with cryptography).
SHORT_DRK = "gNIUrbUkmFHus407DrC8KnxoVW9ZcdvKROID8gipEghkZWZnaGlqa2xtbm8="
#: The layout canonical_created reads, with a 10-digit Created for the intermediate key.
MIDDLE = '","ParentKeyMeta":{"KeyId":"_IK_p_s_p","Created":'
WRAPPED = "A" * 80


def record(created: str = "1795866780", middle: str = MIDDLE, data: str = "AAAA") -> str:
    return f'{{"Key":{{"Created":1795866781,"Key":"{WRAPPED}{middle}{created}}}}},"Data":"{data}"}}'


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[ModuleType], object]
    #: None: the call succeeds (and ``check`` holds); else the error's name, on the module
    #: (Base64Error, AuthenticationError) or a builtin (TypeError, ValueError).
    raises: str | None = None
    check: Callable[[object], bool] = lambda result: True


def sizes(m: ModuleType) -> list[int]:
    """Around the stack buffer (2048-byte blobs) and the GIL-released threshold (32 KiB)."""
    n = int(m.NOGIL_THRESHOLD)
    return [0, 1, 2, 3, 31, 32, 33, 2020, 2021, 4096, n - 1, n, n + 1, 100_000]


def roundtrip(m: ModuleType, size: int, make: Callable[[bytes], object] = bytes) -> bool:
    payload = bytes((i * 7) & 255 for i in range(size))
    key_b64, data_b64 = m.encrypt_row(KEY, make(payload))
    return bool(m.decrypt_row(KEY, key_b64, data_b64) == payload)


def record_roundtrip(m: ModuleType, size: int, middle: str = MIDDLE) -> bool:
    """encrypt_record, then decrypt_record at the record's canonical offsets."""
    payload = bytes((i * 5) & 255 for i in range(size))
    meta = '{"KeyId":"' + middle.split('"KeyId":"', 1)[1] + "1795866780}"
    text = m.encrypt_record(KEY, payload, 1795866781, meta)
    middle_end = 116 + len(middle)
    return bool(
        m.canonical_created(text, middle) == 1795866780
        and m.decrypt_record(KEY, text, middle_end) == payload
    )


def tampered(m: ModuleType, size: int, edit: Callable[[str, str], tuple[str, str]]) -> object:
    key_b64, data_b64 = m.encrypt_row(KEY, bytes(size))
    return m.decrypt_row(KEY, *edit(key_b64, data_b64))


def flip(text: str, at: int) -> str:
    """One base64 character changed (still canonical unless it is the last)."""
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :]


def threads(m: ModuleType) -> bool:
    """Both paths from several threads: the shared contexts and the GIL-released calls."""
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(6):
                size = (0, 100, int(m.NOGIL_THRESHOLD) + seed)[i % 3]
                assert roundtrip(m, size)
                if i == 3:
                    m.forget_key(KEY)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return not errors


def cases(m: ModuleType) -> dict[str, list[Case]]:
    """The table: for each public function of the module, its cases."""
    ascii_b64 = m.b64encode(b"\x00\xffabc")
    big = int(m.NOGIL_THRESHOLD) + 1
    return {
        "encrypt_row": [
            *(
                Case(f"round trip, {n} bytes", lambda m, n=n: roundtrip(m, n), check=bool)
                for n in sizes(m)
            ),
            Case("bytearray", lambda m: roundtrip(m, 50, bytearray), check=bool),
            Case("memoryview", lambda m: roundtrip(m, 50, memoryview), check=bool),
            Case("memoryview slice", lambda m: m.encrypt_row(KEY, memoryview(b"xabcx")[1:4])),
            Case("key None", lambda m: m.encrypt_row(None, b"x"), "TypeError"),
            Case("key 16 bytes", lambda m: m.encrypt_row(KEY[:16], b"x"), "ValueError"),
            Case("data str", lambda m: m.encrypt_row(KEY, "text"), "TypeError"),
            Case(
                "non-contiguous",
                lambda m: m.encrypt_row(KEY, memoryview(bytes(8))[::2]),
                "BufferError",
            ),
            Case("one argument", lambda m: m.encrypt_row(KEY), "TypeError"),
            Case("three arguments", lambda m: m.encrypt_row(KEY, b"", b""), "TypeError"),
        ],
        "encrypt_record": [
            *(
                Case(f"round trip, {n} bytes", lambda m, n=n: record_roundtrip(m, n), check=bool)
                for n in sizes(m)
            ),
            Case(
                "non-ASCII parent",
                lambda m: m.encrypt_record(KEY, b"x", 1, '{"KeyId":"_IK_🔑","Created":1}'),
                check=lambda r: '"ParentKeyMeta":{"KeyId":"_IK_🔑","Created":1}}' in str(r),
            ),
            Case(
                "extreme Created",
                lambda m: [m.encrypt_record(KEY, b"", c, "{}") for c in (-(2**63), 2**63 - 1)],
                check=lambda r: '"Created":-9223372036854775808,' in r[0],  # type: ignore[index]
            ),
            Case(
                "Created NaN",
                lambda m: m.encrypt_record(KEY, b"", float("nan"), "{}"),
                "ValueError",
            ),
            Case(
                "Created 2**64", lambda m: m.encrypt_record(KEY, b"", 2**64, "{}"), "OverflowError"
            ),
            Case("Created str", lambda m: m.encrypt_record(KEY, b"", "1", "{}"), "TypeError"),
            Case("meta bytes", lambda m: m.encrypt_record(KEY, b"", 1, b"{}"), "TypeError"),
            Case("key None", lambda m: m.encrypt_record(None, b"", 1, "{}"), "TypeError"),
            Case("data str", lambda m: m.encrypt_record(KEY, "x", 1, "{}"), "TypeError"),
            Case("three arguments", lambda m: m.encrypt_record(KEY, b"", 1), "TypeError"),
        ],
        "decrypt_record": [
            Case(
                "UCS-4 record",
                lambda m: record_roundtrip(m, 100, MIDDLE + "🔑"),
                check=bool,
            ),
            *(
                Case(
                    f"offset {label}",
                    lambda m, at=at: m.decrypt_record(KEY, record(), at(len(record()))),
                    "Base64Error",
                )
                for label, at in (
                    ("negative", lambda n: -1),
                    ("before the key's end", lambda n: 115),
                    ("past the end", lambda n: n - 22),
                    ("far past the end", lambda n: 2**40),
                )
            ),
            Case(
                "offset too large for C",
                lambda m: m.decrypt_record(KEY, record(), 2**80),
                "OverflowError",
            ),
            Case("record bytes", lambda m: m.decrypt_record(KEY, b"{}", 150), "TypeError"),
            Case("two arguments", lambda m: m.decrypt_record(KEY, record()), "TypeError"),
        ],
        "decrypt_row": [
            Case(
                "wrong key",
                lambda m: m.decrypt_row(OTHER, *m.encrypt_row(KEY, b"x")),
                "AuthenticationError",
            ),
            Case(
                "wrong key, GIL released",
                lambda m: m.decrypt_row(OTHER, *m.encrypt_row(KEY, bytes(big))),
                "AuthenticationError",
            ),
            Case(
                "flipped data",
                lambda m: tampered(m, 40, lambda k, d: (k, flip(d, 5))),
                "AuthenticationError",
            ),
            Case(
                "flipped data, GIL released",
                lambda m: tampered(m, big, lambda k, d: (k, flip(d, 5))),
                "AuthenticationError",
            ),
            Case(
                "flipped key",
                lambda m: tampered(m, 40, lambda k, d: (flip(k, 5), d)),
                "AuthenticationError",
            ),
            Case(
                "truncated data", lambda m: tampered(m, 40, lambda k, d: (k, d[:-1])), "Base64Error"
            ),
            Case(
                "data cut by a quad",
                lambda m: tampered(m, 40, lambda k, d: (k, d[:-8])),
                "AuthenticationError",
            ),
            Case(
                "data shorter than a tag",
                lambda m: tampered(m, 40, lambda k, d: (k, "AAAA")),
                "AuthenticationError",
            ),
            Case(
                "empty data", lambda m: tampered(m, 40, lambda k, d: (k, "")), "AuthenticationError"
            ),
            Case(
                "short wrapped key",
                lambda m: tampered(m, 40, lambda k, d: (k[:4], d)),
                "AuthenticationError",
            ),
            Case(
                "long wrapped key",
                lambda m: tampered(m, 40, lambda k, d: (k * 3, d)),
                "AuthenticationError",
            ),
            Case(
                "16-byte data row key",
                lambda m: m.decrypt_row(KEY, SHORT_DRK, "A" * 40),
                "AuthenticationError",
            ),
            Case(
                "non-zero padding bits",
                lambda m: m.decrypt_row(KEY, WRAPPED, "QR=="),
                "Base64Error",
            ),
            Case("length not 4n", lambda m: m.decrypt_row(KEY, WRAPPED, "QUJD="), "Base64Error"),
            Case("non-ASCII", lambda m: m.decrypt_row(KEY, WRAPPED, "é" * 4), "Base64Error"),
            Case("astral", lambda m: m.decrypt_row(KEY, "🔑" * 80, "AAAA"), "Base64Error"),
            Case("bytes argument", lambda m: m.decrypt_row(KEY, WRAPPED, b"AAAA"), "TypeError"),
            Case(
                "key bytearray",
                lambda m: m.decrypt_row(bytearray(KEY), WRAPPED, "AAAA"),
                "TypeError",
            ),
            Case("two arguments", lambda m: m.decrypt_row(KEY, WRAPPED), "TypeError"),
        ],
        "canonical_created": [
            Case(
                "canonical",
                lambda m: m.canonical_created(record(), MIDDLE),
                check=lambda r: r == 1795866780,
            ),
            Case(
                "other middle",
                lambda m: m.canonical_created(record(), MIDDLE + "x"),
                check=lambda r: r == -1,
            ),
            Case(
                "leading zero",
                lambda m: m.canonical_created(record("0795866780"), MIDDLE),
                check=lambda r: r == -1,
            ),
            Case(
                "non-digit",
                lambda m: m.canonical_created(record("17958667a0"), MIDDLE),
                check=lambda r: r == -1,
            ),
            Case(
                "non-ASCII digit",
                lambda m: m.canonical_created(record("179586678\u0660"), MIDDLE),
                check=lambda r: r == -1,
            ),
            Case(
                "UCS-2 record",
                lambda m: m.canonical_created(record(data="é"), MIDDLE),
                check=lambda r: r == 1795866780,
            ),
            Case(
                "UCS-4 middle",
                lambda m: m.canonical_created(record(middle=MIDDLE + "🔑"), MIDDLE + "🔑"),
                check=lambda r: r == 1795866780,
            ),
            Case(
                "every truncation",
                lambda m: [m.canonical_created(record()[:i], MIDDLE) for i in range(len(record()))],
                check=lambda r: set(r) == {-1},
            ),  # type: ignore[arg-type]
            Case("empty", lambda m: m.canonical_created("", ""), check=lambda r: r == -1),
            Case(
                "bytes record",
                lambda m: m.canonical_created(record().encode(), MIDDLE),
                "TypeError",
            ),
            Case("one argument", lambda m: m.canonical_created(record()), "TypeError"),
        ],
        "forget_key": [
            Case(
                "the cached key",
                lambda m: (m.encrypt_row(KEY, b"x"), m.forget_key(KEY), roundtrip(m, 10))[2],
                check=bool,
            ),
            Case("another key", lambda m: (m.forget_key(OTHER), roundtrip(m, 10))[1], check=bool),
            Case("short key", lambda m: m.forget_key(b"short"), "ValueError"),
            Case("str key", lambda m: m.forget_key("k" * 32), "TypeError"),
            Case("threads", threads, check=bool),
        ],
        "b64encode": [
            *(
                Case(
                    f"{n} bytes",
                    lambda m, n=n: m.b64encode(bytes(range(256)) * (n // 256) + bytes(n % 256)),
                    check=lambda r, n=n: (
                        a2b_base64(r) == bytes(range(256)) * (n // 256) + bytes(n % 256)
                    ),
                )
                for n in (0, 1, 2, 3, 4, 1000, big)
            ),
            Case("bytearray", lambda m: m.b64encode(bytearray(b"ab")), check=lambda r: r == "YWI="),
            Case("str", lambda m: m.b64encode("ab"), "TypeError"),
        ],
        "b64decode": [
            Case(
                "canonical", lambda m: m.b64decode(ascii_b64), check=lambda r: r == b"\x00\xffabc"
            ),
            Case(
                "large",
                lambda m: m.b64decode(b2a_base64(bytes(big), newline=False).decode()),
                check=lambda r: r == bytes(big),
            ),
            *(
                Case(f"refuses {text!r}", lambda m, text=text: m.b64decode(text), "Base64Error")
                for text in (
                    "QR==",
                    "QY==",
                    "QUJ=",
                    "QUJD=",
                    "QQ=",
                    "=",
                    "====",
                    "A===",
                    "AB=C",
                    "QQ==QQ==",
                    "é===",
                    "A\nA=",
                )
            ),
            Case("empty", lambda m: m.b64decode(""), check=lambda r: r == b""),
            Case("bytes", lambda m: m.b64decode(b"QQ=="), "TypeError"),
        ],
    }


def corpus_cases(folder: Path) -> list[Case]:
    """The fuzz seeds' texts through the parser functions (outcomes only, no oracle)."""
    found = []
    for path in sorted(folder.iterdir()):
        text = path.read_bytes()[1:].decode("utf-8", "surrogateescape")
        found.append(Case(f"seed {path.name}", lambda m, t=text: (
            m.canonical_created(t, MIDDLE), _quiet(m, m.b64decode, t),
            _quiet(m, m.decrypt_row, KEY, t[36:116], t[185:-2])
        )))  # fmt: skip
    return found


def _quiet(m: ModuleType, function: Callable[..., object], *args: object) -> object:
    try:
        return function(*args)
    except (m.Base64Error, m.AuthenticationError):
        return None


def load(path: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader("asherah_django.core._speedups", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def run(module: ModuleType, table: dict[str, list[Case]], extra: list[Case]) -> list[str]:
    public = {
        name for name, value in vars(module).items()
        if not name.startswith("_") and isinstance(value, types.BuiltinFunctionType)
    }  # fmt: skip
    failures = [
        f"{name}: no cases in tests/cproof/speedups_driver.py"
        for name in sorted(public - set(table))
    ]
    failures += [f"{name}: not a function of the module" for name in sorted(set(table) - public)]
    for function, function_cases in [*sorted(table.items()), ("corpus", extra)]:
        for case in function_cases:
            expected = None
            if case.raises is not None:
                expected = getattr(module, case.raises, None) or getattr(builtins, case.raises)
            try:
                result = case.call(module)
            except Exception as exc:
                if expected is None or type(exc) is not expected:
                    failures.append(f"{function}: {case.name}: raised {type(exc).__name__}: {exc}")
                continue
            if expected is not None:
                failures.append(f"{function}: {case.name}: did not raise {case.raises}")
            elif not case.check(result):
                failures.append(f"{function}: {case.name}: wrong result")
    return failures


def main(argv: list[str]) -> int:
    module = load(argv[0])
    table = cases(module)
    extra = corpus_cases(Path(argv[1])) if len(argv) > 1 else []
    failures = run(module, table, extra)
    for failure in failures:
        print(f"driver: FAIL {failure}", file=sys.stderr)
    total = sum(len(c) for c in table.values()) + len(extra)
    route = "provider direct" if module.PROVIDER_DIRECT else "EVP"
    print(f"driver: {len(table)} functions, {total} cases ({len(extra)} corpus texts), "
          f"{len(failures)} failures, AES-GCM via {route}; module {module.__file__}")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

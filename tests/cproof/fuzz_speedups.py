"""Coverage-guided fuzzing of the C accelerator's record parser (tests/cproof/speedups_targets.py).

python -m tests.cproof.fuzz_speedups fuzz [libFuzzer flags] CORPUS_DIR...
    atheris (libFuzzer) on the targets, the package's Python code instrumented too; with
    the extension built by clang -fsanitize=fuzzer-no-link,address,undefined and atheris's
    asan_with_fuzzer.so preloaded (scripts/c_proof.sh), the C code's edges guide it and
    ASan/UBSan watch it. A disagreement with the reference is a crash: libFuzzer writes
    the input (-artifact_prefix) and exits non-zero.
python -m tests.cproof.fuzz_speedups replay PATH...
    every input file (or every file of a folder) once, without atheris: a corpus as a test.
python -m tests.cproof.fuzz_speedups seeds DIR
    (re)write the generated seed files (tests/cproof/corpus/speedups/).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus" / "speedups"


def inputs(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        found.extend(sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path])
    return found


def replay(paths: list[str]) -> int:
    from tests.cproof import speedups_targets as targets

    files = inputs(paths or [str(CORPUS)])
    counts: dict[str, int] = {}
    for path in files:
        data = path.read_bytes()
        if not data:
            continue
        target = targets.target_of(data)
        try:
            targets.one_input(data)
        except BaseException:
            print(f"replay: {path} ({target.name}) failed", file=sys.stderr)
            raise
        counts[target.letter] = counts.get(target.letter, 0) + 1
    per_target = ", ".join(f"{letter}={n}" for letter, n in sorted(counts.items()))
    print(f"replay: {len(files)} inputs agree ({per_target}); module {targets.module().__file__}")
    return 0


def fuzz(argv: list[str]) -> int:
    import atheris  # the cproof extra; only this mode needs it

    with atheris.instrument_imports(include=["asherah_django", "tests.cproof"]):
        from tests.cproof import speedups_targets as targets
    print(f"fuzz: module {targets.module().__file__}", flush=True)
    atheris.Setup([sys.argv[0], *argv], targets.one_input)
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits the process


def seeds(folder: Path) -> int:
    """The generated seeds: the vectors' records, each kind of damage, the edge sizes."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from tests.cproof import speedups_targets as targets
    from tests.unit.core import vectors as v

    payload, empty = v.DRR_PAYLOAD, v.DRR_EMPTY
    data = targets.VECTOR_DATA_B64
    flipped = payload.replace(data, data[:10] + ("A" if data[10] != "A" else "B") + data[11:])
    obj = json.loads(payload)
    records = {
        "vector-payload": payload,
        "vector-empty": empty,
        "escaped-slash": payload.replace("/", "\\/"),
        "indented": json.dumps(obj, indent=2),
        "reordered": json.dumps(dict(reversed(obj.items())), separators=(",", ":")),
        "truncated": payload[:-5],
        "flipped-data": flipped,
        "padding-bits": empty.replace("gg==", "gh=="),
        "other-partition": payload.replace("_IK_partition", "_IK_other"),
        "unknown-created": payload.replace('"Created":1795866780', '"Created":1795866781'),
        "leading-zero-created": payload.replace('"Created":1795866781', '"Created":0795866781'),
        "non-ascii-data": payload.replace(data, "é" + data[1:]),
        "astral-key-id": payload.replace("_IK_partition", "_IK_🔑"),
        "not-json": "not json",
        "deep-nesting": "[" * 64,
        "null-key": '{"Key":null,"Data":"AAAA"}',
        "big-created": payload.replace('"Created":1795866781', '"Created":99999999999'),
    }
    files: dict[str, str] = {}
    for name, record in records.items():
        files[f"d-{name}"] = "d" + record
        files[f"c-{name}"] = "c" + record
    middle = targets.SESSION._middle
    for name, mid in {"session": middle, "empty": "", "quote": '"', "astral": "🔑"}.items():
        files[f"m-{name}"] = f"m{mid}\n{payload}"
    b64 = {
        "one-byte": "QQ==",
        "trailing-bits": "QR==",
        "trailing-bit-3": "QY==",
        "trailing-bit-1": "QUJ=",
        "stray-pad": "QUJD=",
        "short-pad": "QQ=",
        "pad-only": "====",
        "empty": "",
        "newline": "QUJD\nQUJD",
        "non-ascii": "é===",
        "vector-data": data,
        "vector-key": targets.VECTOR_KEY_B64,
    }
    files.update({f"b-{name}": "b" + text for name, text in b64.items()})
    files.update({"e-text": "ehello, world", "e-empty": "e", "e-two": "eab"})
    key, ik = targets.VECTOR_KEY_B64, targets.IK
    nonce = bytes(range(12))  # fixed: the seed files stay the same
    short_drk = base64.b64encode(AESGCM(ik).encrypt(nonce, bytes(16), None) + nonce).decode()
    for flags in "0123":
        files[f"r-vector-{flags}"] = f"r{flags}{key}\n{data}"
    files["r-short-drk"] = f"r0{short_drk}\n{data}"
    files["r-data-only"] = "r0" + data
    files["r-empty-data"] = f"r0{key}\n"
    files["r-empty-key"] = f"r0\n{data}"
    for size in (0, 1, 2020, 2021, 4096, 32767, 32768, 65536):
        files[f"w-{size}"] = f"w{size}:ab"
    middle_end = len(targets.SESSION._middle) + 116
    files["x-vector"] = f"x{middle_end}:{payload}"
    files["x-vector-empty"] = f"x{middle_end}:{empty}"
    files["x-off-by-one"] = f"x{middle_end + 1}:{payload}"
    files["x-past-the-end"] = f"x{len(payload) - 22}:{payload}"
    files["x-before-the-key"] = f"x115:{payload}"
    files["x-astral-data"] = f"x{middle_end}:{payload.replace(data, '🔑' + data[1:])}"
    for name, created in {"now": 1795866781, "zero": 0, "negative": -5, "max": 2**63 - 1}.items():
        files[f"y-{name}"] = f"y{created}:64:"
    files["y-gil-released"] = "y1795866781:40000:"
    files["y-created-past-64-bits"] = "y9223372036854775837264:"  # found by the fuzzer
    files["y-astral-meta"] = 'y1795866781:3:{"KeyId":"_IK_🔑_s_p","Created":1}'
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8", newline="")
    print(f"seeds: {len(files)} files in {folder}")
    return 0


def main(argv: list[str]) -> int:
    mode, *rest = argv or ["replay"]
    if mode == "replay":
        return replay(rest)
    if mode == "fuzz":
        return fuzz(rest)
    if mode == "seeds":
        return seeds(Path(rest[0]) if rest else CORPUS)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

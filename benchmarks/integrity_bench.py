"""KEY_INTEGRITY's cost (issue #13): warm encrypt/decrypt with tags off and required, and
the extra cost of a cold key load, in interleaved rounds in one process.

    python benchmarks/integrity_bench.py [--payload 64] [--rounds 15] [--number 20000]
                                         [--cold 400] [--json PATH]

Warm: one session per mode with its keys cached; each round times ``--number`` encrypts
and decrypts per mode, modes alternating, and the best round counts. Tags are checked
when a key is loaded, never per value, so the ratios should be 1.00 within noise.

Cold: a fresh factory per sample decrypts one value: the system key is unwrapped by the
(static, in-process) KMS and the intermediate key by the system key, plus, with
``require``, one HKDF and one HMAC per key. With Vault Transit the KMS call (a network
round trip, milliseconds) dominates a cold load; the extra microseconds stay the same.

``--json PATH`` writes the figures (benchmarks/figures.py) for ``make bench``'s table, which
runs it with fewer rounds (``benchmarks/run_all.py --quick``). The ratios are reported,
with no target.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asherah_django.core import CryptoPolicy, InMemoryMetastore, SessionFactory, StaticKMS
from asherah_django.core import session as session_module
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from benchmarks.figures import Figure, add_json_argument, emit

MODES = ("off", "require")


#: Warm-path sessions: a second "off" one is the control, whose ratio to the first shows
#: the noise of the machine (the same code measured twice).
WARM = {"off": "off", "control": "off", "require": "require"}


def warm(payload: bytes, rounds: int, number: int) -> dict[str, dict[str, float]]:
    kms = StaticKMS.from_hex(TEST_MASTER_KEY_HEX)
    ops = {}
    for label, mode in WARM.items():
        factory = SessionFactory(
            "bench", "bench", kms, InMemoryMetastore(), CryptoPolicy(key_integrity=mode)
        )
        session = factory.get_session("partition")
        record = session.encrypt(payload)
        assert session.decrypt(record) == payload
        ops[label] = {
            "encrypt": lambda s=session: s.encrypt(payload),
            "decrypt": lambda s=session, r=record: s.decrypt(r),
        }
    best = {label: {"encrypt": float("inf"), "decrypt": float("inf")} for label in WARM}
    labels = list(WARM)
    for index in range(rounds):
        order = labels[index % 3 :] + labels[: index % 3]  # each one goes first in turn
        for op in ("encrypt", "decrypt"):
            for label in order:
                seconds = timeit.timeit(ops[label][op], number=number)
                best[label][op] = min(best[label][op], seconds / number * 1e6)
    return best


def cold(payload: bytes, samples: int) -> dict[str, float]:
    """Median microseconds of one decrypt with a fresh factory (nothing cached)."""
    kms = StaticKMS.from_hex(TEST_MASTER_KEY_HEX)
    stores, values = {}, {}
    for mode in MODES:
        stores[mode] = InMemoryMetastore()
        with SessionFactory(
            "bench", "bench", kms, stores[mode], CryptoPolicy(key_integrity=mode)
        ) as factory:
            values[mode] = factory.get_session("partition").encrypt(payload)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(samples):
        for mode in MODES:
            factory = SessionFactory(
                "bench", "bench", kms, stores[mode], CryptoPolicy(key_integrity=mode)
            )
            session = factory.get_session("partition")
            start = time.perf_counter()
            session.decrypt(values[mode])
            times[mode].append((time.perf_counter() - start) * 1e6)
            factory.close()
    return {mode: statistics.median(values) for mode, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payload", type=int, default=64, help="payload size in bytes")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=20000, help="operations per round")
    parser.add_argument("--cold", type=int, default=400, help="cold-load samples per mode")
    add_json_argument(parser)
    args = parser.parse_args()
    logging.getLogger("asherah_django").setLevel(logging.ERROR)  # the static KMS warning
    payload = b"x" * args.payload
    path = "C accelerator" if session_module.SPEEDUPS else "pure Python"
    print(f"KEY_INTEGRITY off vs require, {args.payload}-byte payload, {path}")
    best = warm(payload, args.rounds, args.number)
    for op in ("encrypt", "decrypt"):
        off, req, control = best["off"][op], best["require"][op], best["control"][op]
        print(
            f"  warm {op}: off {off:.2f} us, require {req:.2f} us, ratio {req / off:.3f} "
            f"(control: off again {control:.2f} us, ratio {control / off:.3f})"
        )
    medians = cold(payload, args.cold)
    off, req = medians["off"], medians["require"]
    print(
        f"  cold decrypt (SK + IK loaded): off {off:.1f} us, require {req:.1f} us, "
        f"extra {req - off:+.1f} us (median of {args.cold})"
    )
    figures = []
    for op in ("encrypt", "decrypt"):
        off = best["off"][op]
        figures += [
            Figure(f"KEY_INTEGRITY require, warm {op}", best["require"][op], "KEY_INTEGRITY off",
                   off, "us/op"),
            Figure(f"control: off again, warm {op}", best["control"][op], "KEY_INTEGRITY off",
                   off, "us/op"),
        ]  # fmt: skip
    figures.append(
        Figure("KEY_INTEGRITY require, cold decrypt", medians["require"], "KEY_INTEGRITY off",
               medians["off"], "us/op")
    )  # fmt: skip
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

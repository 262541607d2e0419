"""The warm-path cost of observability: OpenTelemetry and Prometheus on vs. off.

Two factories in one process, same KMS kind and metastore kind, warm caches: one never
instrumented (what runs when no observer is registered), one instrumented while the
OpenTelemetry observer (SDK TracerProvider, no exporter) and the Prometheus observer are
registered. Each operation is what an encrypted field does per value:
``factory.get_session(partition).encrypt(data)`` and ``...decrypt(record)``. Rounds of the
two alternate (off, on, off, on...) so that machine noise hits both alike; the figures per
side are its best and median rounds, and the ratio on/off is printed.

    python benchmarks/observability_bench.py [--payload 64] [--rounds 15] [--number 20000]

Target (issue 18): on/off < 1.05 for encrypt and decrypt.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from asherah_django.core import InMemoryMetastore, SessionFactory, StaticKMS
from asherah_django.core import observability as hook
from asherah_django.core.kms.static import TEST_MASTER_KEY_HEX
from asherah_django.core.session import SPEEDUPS

Op = Callable[[], object]


def operations(factory: SessionFactory, payload: bytes) -> tuple[Op, Op]:
    get = factory.get_session
    record = get("partition").encrypt(payload)
    assert get("partition").decrypt(record) == payload
    return (lambda: get("partition").encrypt(payload)), (lambda: get("partition").decrypt(record))


def build() -> SessionFactory:
    return SessionFactory(
        "bench", "bench", StaticKMS.from_hex(TEST_MASTER_KEY_HEX), InMemoryMetastore()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--number", type=int, default=5000)
    args = parser.parse_args()
    payload = b"x" * args.payload

    off = build()  # never attached: no observer code runs for it
    from asherah_django.contrib.otel import OpenTelemetryObserver
    from asherah_django.contrib.prometheus import PrometheusObserver

    hook.register(OpenTelemetryObserver(TracerProvider()))
    prometheus = PrometheusObserver(CollectorRegistry())
    hook.register(prometheus)
    on = build()
    hook.attach(on)
    assert type(on.get_session("partition")) is hook.ObservedSession
    assert type(off.get_session("partition")) is not hook.ObservedSession

    sides = {"off": operations(off, payload), "on": operations(on, payload)}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for side, (encrypt, decrypt) in sides.items():
            for name, op in (("encrypt", encrypt), ("decrypt", decrypt)):
                seconds = timeit.Timer(op, timer=time.thread_time).timeit(args.number)
                times.setdefault((side, name), []).append(seconds / args.number * 1e6)

    print(
        f"payload {args.payload} B, {args.rounds} interleaved rounds x {args.number} ops, "
        f"C speedups: {SPEEDUPS}"
    )
    print(f"{'operation':<18}{'off (us/op)':>14}{'on (us/op)':>14}{'on/off':>10}")
    worst = 0.0
    for name in ("encrypt", "decrypt"):
        for label, pick in (("best", min), ("median", statistics.median)):
            a = pick(times[("off", name)])
            b = pick(times[("on", name)])
            if label == "best":
                worst = max(worst, b / a)
            print(f"{name + ' ' + label:<18}{a:>14.3f}{b:>14.3f}{b / a:>10.3f}")
    counted = prometheus.encrypts + prometheus.decrypts
    print(f"values counted by the Prometheus observer: {counted}")
    verdict = "OK" if worst < 1.05 else "ABOVE"
    print(f"worst best-round ratio {worst:.3f}: {verdict} the 1.05 target")


if __name__ == "__main__":
    main()

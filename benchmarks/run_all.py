"""Every benchmark, each in a process of its own, as one table (``make bench``).

    python benchmarks/run_all.py [--full] [--only NAME[,NAME...]] [--markdown PATH]
                                 [--check] [--timeout SECONDS]

Runs each script of :data:`BENCHMARKS` with ``--json <tmpfile>`` (Django can be configured
once per process, so never two in one), collects their figures (benchmarks/figures.py) and
prints one table, grouped by script, after a description of the machine: CPU model, cores,
Python, Django, OpenSSL, SQLite, PostgreSQL server, the ``asherah`` wheel, and whether the C
accelerator is in use. The same table goes, as Markdown, to ``--markdown`` (default
benchmarks/results.md) for the documentation to quote.

By default the scripts run in a quick mode (fewer rounds and samples, the table-scale run at
20,000 rows), so that the whole run takes a few minutes on a 2-core machine; ``--full``
runs them with their own defaults (still 20,000 rows for the table scale: the
1,000,000-row run is ``make bench-scale``). ``--only cold_start,integrity`` runs a subset.

A script that fails, times out (``--timeout``, default 900 s) or writes no figures is shown
as "not reported" with its exit status, and the others still run. ``--check`` exits 1 when
a figure misses its target or a script did not report. PostgreSQL figures use
``$DATABASE_URL`` (default postgres://postgres@127.0.0.1:5432/test); the scripts that need
it create and drop databases of their own next to it, named after it (``<name>_cold_start``,
``<name>_table_scale``), so on a shared server give it a name of your own.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, format_row, header, load  # noqa: E402


@dataclass(frozen=True)
class Benchmark:
    """A script and its arguments in the quick and full modes (``--json`` is added)."""

    name: str
    script: str
    quick: tuple[str, ...] = ()
    full: tuple[str, ...] = ()


BENCHMARKS = (
    # core_bench.py and orm_bench.py choose their own rounds: only --json is passed.
    Benchmark("core", "core_bench.py"),
    Benchmark("orm", "orm_bench.py"),
    Benchmark(
        "integrity", "integrity_bench.py", ("--rounds", "5", "--number", "5000", "--cold", "100")
    ),
    Benchmark("observability", "observability_bench.py", ("--rounds", "11", "--number", "2000")),
    Benchmark("cold_start", "cold_start.py", ("--samples", "3"), ("--samples", "7")),
    Benchmark(
        "cold_start_vault",
        "cold_start.py",
        ("--kms", "vault", "--samples", "3"),
        ("--kms", "vault", "--samples", "7"),
    ),
    Benchmark("table_scale", "table_scale.py", ("--rows", "20000"), ("--rows", "20000")),
)


@dataclass
class Outcome:
    benchmark: Benchmark
    seconds: float
    figures: list[Figure] = field(default_factory=list)
    #: Why no figures, when there are none.
    failure: str = ""


def run(benchmark: Benchmark, full: bool, timeout: float) -> Outcome:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDEVMODE", None)
    extra = benchmark.full if full else benchmark.quick
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        path = Path(tmp) / "figures.json"
        command = [sys.executable, str(HERE / benchmark.script), *extra, "--json", str(path)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return Outcome(
                benchmark, time.perf_counter() - start, failure=f"timed out ({timeout:g} s)"
            )
        seconds = time.perf_counter() - start
        if proc.returncode != 0 or not path.exists():
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            last = lines[-1][:120] if lines else ""
            why = f"exit {proc.returncode}" if proc.returncode else "no --json output"
            return Outcome(benchmark, seconds, failure=f"{why}: {last}" if last else why)
        return Outcome(benchmark, seconds, load(path, benchmark.name))


# -- the machine ----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def postgres_version() -> str:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    if not url.startswith("postgres"):
        return "not used"
    try:
        import psycopg

        server = url.rpartition("/")[0] + "/postgres"  # (the named database may not exist)
        with psycopg.connect(server, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]).split()[0] if row else "unknown"
    except Exception as exc:
        return f"unreachable ({type(exc).__name__})"


def machine() -> list[tuple[str, str]]:
    import sqlite3

    from cryptography.hazmat.backends.openssl.backend import backend

    from asherah_django.core.session import SPEEDUPS

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("CPU", f"{cpu_model()}, {os.cpu_count()} cores ({usable} usable)"),
        ("OS", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("Django", version("django")),
        ("OpenSSL", f"{ssl.OPENSSL_VERSION}; cryptography {version('cryptography')} with "
                    f"{backend.openssl_version_text()}"),
        ("C accelerator", "in use" if SPEEDUPS else "not in use (pure Python)"),
        ("asherah wheel", version("asherah")),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", postgres_version()),
    ]  # fmt: skip


# -- the table -------------------------------------------------------------------------------


def verdict(figure: Figure) -> str:
    if figure.target is None:
        return "(reported)"
    sign = ">=" if figure.higher_is_better else "<="
    return f"{sign} {figure.target:g}x {'ok' if figure.met else 'MISSED'}"


def text_table(outcomes: list[Outcome]) -> str:
    lines = [header()]
    for outcome in outcomes:
        source = f"{outcome.benchmark.name} ({outcome.benchmark.script}, {outcome.seconds:.0f} s)"
        lines.append(f"-- {source}")
        if outcome.failure:
            lines.append(f"   not reported: {outcome.failure}")
        lines += [format_row(figure) for figure in outcome.figures]
    return "\n".join(lines)


def markdown(outcomes: list[Outcome], described: list[tuple[str, str]], when: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"`python benchmarks/run_all.py` ({when}). Ratio = ours / baseline; lower is better "
        "unless the target says >=.",
        "",
        *[f"- {name}: {value}" for name, value in described],
        "",
        "| source | figure | ours | baseline | unit | baseline is | ratio | target |",
        "|---|---|---:|---:|---|---|---:|---|",
    ]
    for outcome in outcomes:
        name = outcome.benchmark.name
        if outcome.failure:
            lines.append(f"| {name} | not reported: {outcome.failure.replace('|', '/')} "
                         "| | | | | | |")  # fmt: skip
        for f in outcome.figures:
            lines.append(
                f"| {name} | {f.name} | {f.ours:.4g} | {f.baseline_value:.4g} | {f.unit} "
                f"| {f.baseline} | {f.ratio:.2f}x | {verdict(f)} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the scripts' own rounds")
    parser.add_argument("--only", help="comma-separated benchmark names: " + ", ".join(
        b.name for b in BENCHMARKS))  # fmt: skip
    parser.add_argument("--markdown", type=Path, default=HERE / "results.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per script")
    options = parser.parse_args()
    chosen: tuple[Benchmark, ...] = BENCHMARKS
    if options.only:
        names = set(options.only.split(","))
        unknown = names - {b.name for b in BENCHMARKS}
        if unknown:
            parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
        chosen = tuple(b for b in BENCHMARKS if b.name in names)
    mode = "full" if options.full else "quick"
    outcomes = []
    for benchmark in chosen:
        print(f"running {benchmark.script} ({mode})...", file=sys.stderr, flush=True)
        outcomes.append(run(benchmark, options.full, options.timeout))
    described = machine()
    when = f"{mode} mode, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    print(f"\nBenchmarks, {when}")
    for name, value in described:
        print(f"  {name}: {value}")
    print()
    print(text_table(outcomes))
    options.markdown.write_text(markdown(outcomes, described, when))
    print(f"\n(also written to {options.markdown})")
    figures = [f for outcome in outcomes for f in outcome.figures]
    missed = [f for f in figures if f.met is False]
    silent = [o.benchmark.name for o in outcomes if o.failure]
    if missed:
        print(f"targets missed: {', '.join(f.name for f in missed)}")
    if silent:
        print(f"not reported: {', '.join(silent)}")
    return 1 if options.check and (missed or silent) else 0


if __name__ == "__main__":
    raise SystemExit(main())

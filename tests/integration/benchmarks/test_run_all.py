"""benchmarks/run_all.py (``make bench``): a script's figures reach the one table and its
Markdown copy with the machine described, and a script that reports nothing is shown as
"not reported" with the reason. Correctness only: no figure's value is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from benchmarks import run_all  # noqa: E402
from benchmarks.figures import Figure  # noqa: E402


def test_a_failing_script_is_not_reported_and_the_table_says_why(tmp_path: Path) -> None:
    missing = run_all.Benchmark("missing", "no_such_bench.py")
    outcome = run_all.run(missing, full=False, timeout=60)
    assert outcome.figures == []
    assert outcome.failure.startswith("exit 2")
    figure = Figure("x op", 2.0, "peer", 1.0, "us/op", target=1.5)
    fine = run_all.Outcome(run_all.Benchmark("fine", "fine.py"), 1.0, [figure])
    table = run_all.text_table([outcome, fine])
    assert "not reported: exit 2" in table
    assert "x op" in table and "MISSED" in table
    markdown = run_all.markdown([outcome, fine], [("CPU", "test")], "now")
    assert "| missing | not reported: exit 2" in markdown
    assert "| fine | x op | 2 | 1 | us/op | peer | 2.00x | <= 1.5x MISSED |" in markdown


@pytest.mark.slow
def test_make_bench_puts_a_scripts_figures_in_the_table_and_the_markdown(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDEVMODE", None)
    markdown = tmp_path / "results.md"
    command = [sys.executable, "benchmarks/run_all.py", "--markdown", str(markdown)]
    ok = subprocess.run(
        [*command, "--only", "integrity", "--check"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "KEY_INTEGRITY require, cold decrypt" in ok.stdout
    assert "Python:" in ok.stdout and "asherah wheel:" in ok.stdout
    assert "| integrity | KEY_INTEGRITY require, warm encrypt |" in markdown.read_text()

#!/usr/bin/env python3
"""Mutation testing for the security-critical modules: break one thing, run the tests
that should notice, and report the mutants that no test kills.

A small, offline, purpose-built mutator (the standard library's ``ast`` only). Its
configuration is ``mutation.toml`` at the repository root: the modules and the tests run
for each (in stages: a fast selection first, the rest only if the mutant survives it),
and the hand-written mutants of issue #22 (``[[table]]``: one-line bugs that once passed
the whole suite). ``mutation-allowlist.toml`` lists survivors known and accepted, each
with its reason.

    python scripts/mutate.py ci              # table + a sample of the core's; strict
    python scripts/mutate.py table [--id X]  # the hand-written mutants only
    python scripts/mutate.py full [--sample N] [--seed S] [--module PATH ...]
                                  [--tests-from GIT_REV] [--jobs N] [--strict]
    python scripts/mutate.py list [--module PATH ...]

Each mutant runs in a throw-away copy of the package and the tests (the working tree is
never modified), with bytecode writing off; a C mutant rebuilds the extension there. A
mutant is killed when its tests fail (or error, or time out), and survives when they
pass. Exit status: 1 when a survivor is not in the allow-list (``ci``, or ``--strict``),
or when a table mutant survives; 2 when the unmutated tests fail in the copy (nothing
could be concluded).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "mutation.toml"
ALLOWLIST = ROOT / "mutation-allowlist.toml"
LOGGING_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
FLIP = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt,
    ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip
BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Mult}


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository root
    line: int
    description: str
    source: bytes  # the whole mutated file
    stages: tuple[tuple[str, ...], ...]
    table: bool = False


@dataclass
class Outcome:
    mutant: Mutant
    killed: bool
    by: str  # the failing test, "timeout", "build failed", or "" for a survivor
    seconds: float


@dataclass
class Config:
    modules: dict[str, tuple[tuple[str, ...], ...]]
    ci_sample_modules: list[str]
    ci_sample: int
    seed: int
    timeout: int
    table: list[dict[str, object]] = field(default_factory=list)


def load_config() -> Config:
    raw = tomllib.loads(CONFIG.read_text())
    modules: dict[str, tuple[tuple[str, ...], ...]] = {}
    for module in raw["module"]:
        stages = tuple(tuple(stage) for stage in module["stages"])
        for path in module["paths"]:
            modules[path] = stages
    run = raw["run"]
    return Config(
        modules=modules,
        ci_sample_modules=list(run["ci_sample_modules"]),
        ci_sample=int(os.environ.get("MUTATE_CI_SAMPLE", run["ci_sample"])),
        seed=int(os.environ.get("MUTATE_SEED", run["seed"])),
        timeout=int(run["timeout"]),
        table=list(raw.get("table", [])),
    )


def load_allowlist() -> dict[str, str]:
    if not ALLOWLIST.exists():
        return {}
    entries = tomllib.loads(ALLOWLIST.read_text()).get("survivor", [])
    allowed = {}
    for entry in entries:
        if not str(entry.get("reason", "")).strip():
            raise SystemExit(f"{ALLOWLIST.name}: {entry.get('id')!r} has no reason")
        allowed[entry["id"]] = entry["reason"]
    return allowed


# ruff: noqa: S603, S607 (runs git, tar, pytest and setup.py on purpose)

# -- generating mutants ---------------------------------------------------------------------


class _Finder(ast.NodeVisitor):
    """Collects (node, replacement text, operator) for one module."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.AST, str, str, str]] = []
        self.scope: list[str] = []

    def _add(self, node: ast.AST, new: str, op: str) -> None:
        self.found.append((node, new, op, ".".join(self.scope) or "<module>"))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        body = node.body
        if body and _is_docstring(body[0]):
            body = body[1:]
        for statement in body:
            self.visit(statement)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            return
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return  # message text

    def visit_Expr(self, node: ast.Expr) -> None:
        call = node.value
        if isinstance(call, ast.Call) and not _is_logging(call):
            self._add(node, "pass", "delete-call")
        if not (isinstance(call, ast.Call) and _is_logging(call)):
            self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        self._add(node, "pass", "delete-raise")

    def visit_Compare(self, node: ast.Compare) -> None:
        if len(node.ops) == 1 and type(node.ops[0]) in FLIP:
            flipped = ast.Compare(node.left, [FLIP[type(node.ops[0])]()], node.comparators)
            self._add(node, f"({ast.unparse(flipped)})", "flip-compare")
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._add(node, f"({ast.unparse(ast.BoolOp(other, node.values))})", "swap-boolop")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self._add(node, f"({ast.unparse(node.operand)})", "drop-not")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) in BINOP and not _stringy(node):
            swapped = ast.BinOp(node.left, BINOP[type(node.op)](), node.right)
            self._add(node, f"({ast.unparse(swapped)})", "swap-arith")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if node.value is True or node.value is False:
            self._add(node, str(not node.value), "flip-bool")
        elif type(node.value) is int:
            self._add(node, str(node.value + 1), "int-plus-one")

    def visit_Call(self, node: ast.Call) -> None:
        if _is_logging(node):
            return
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name in {"urandom", "token_bytes", "new_key", "RAND_bytes"}:
            zeros = ast.Call(ast.Name("bytes"), node.args or [ast.Constant(32)], [])
            self._add(node, ast.unparse(zeros), "constant-random")
        self.generic_visit(node)


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _is_logging(call: ast.Call) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in LOGGING_METHODS
        and (isinstance(func.value, ast.Name) and func.value.id in {"logger", "logging", "log"})
    )


def _stringy(node: ast.BinOp) -> bool:
    return any(
        (isinstance(side, ast.Constant) and isinstance(side.value, str | bytes))
        or isinstance(side, ast.JoinedStr)
        for side in (node.left, node.right)
    )


def _offsets(source: bytes) -> list[int]:
    starts, total = [0], 0
    for line in source.splitlines(keepends=True):
        total += len(line)
        starts.append(total)
    return starts


def python_mutants(path: str, stages: tuple[tuple[str, ...], ...]) -> list[Mutant]:
    source = (ROOT / path).read_bytes()
    tree = ast.parse(source)
    body = tree.body[1:] if tree.body and _is_docstring(tree.body[0]) else tree.body
    finder = _Finder()
    for statement in body:
        finder.visit(statement)
    starts = _offsets(source)
    seen: Counter[str] = Counter()
    mutants = []
    for node, new, op, scope in finder.found:
        start = starts[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]
        end = starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[attr-defined]
        old = source[start:end]
        mutated = source[:start] + new.encode() + source[end:]
        try:
            ast.parse(mutated)
        except SyntaxError:
            continue
        key = f"{scope}|{op}|{old.decode()}|{new}"
        seen[key] += 1
        digest = hashlib.sha1(f"{key}|{seen[key]}".encode()).hexdigest()[:8]  # noqa: S324
        short = " ".join(old.decode().split())[:60]
        mutants.append(
            Mutant(
                id=f"{path}::{scope}::{op}::{digest}",
                path=path,
                line=node.lineno,  # type: ignore[attr-defined]
                description=f"{op}: {short!r} -> {new[:40]!r}",
                source=mutated,
                stages=stages,
            )
        )
    return mutants


def table_mutants(config: Config) -> list[Mutant]:
    mutants = []
    for entry in config.table:
        path = str(entry["file"])
        source = (ROOT / path).read_text()
        old, new = str(entry["old"]), str(entry["new"])
        if source.count(old) != 1:
            raise SystemExit(f"table mutant {entry['id']}: the text to replace is not found "
                             f"exactly once in {path}; update mutation.toml")  # fmt: skip
        line = source[: source.index(old)].count("\n") + 1
        tests = tuple(str(t) for t in entry["tests"])  # type: ignore[attr-defined]
        mutants.append(
            Mutant(
                id=f"table::{entry['id']}",
                path=path,
                line=line,
                description=str(entry["what"]),
                source=source.replace(old, new).encode(),
                stages=(tests,),
                table=True,
            )
        )
    return mutants


def all_mutants(config: Config, modules: list[str] | None = None) -> list[Mutant]:
    found = []
    for path, stages in config.modules.items():
        if modules and not any(path.startswith(m) for m in modules):
            continue
        found += python_mutants(path, stages)
    return found


# -- running them -------------------------------------------------------------------------------


class Sandbox:
    """A throw-away copy of the package and the tests, where mutants are applied."""

    def __init__(self, tests_from: str | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="asherah-mutate-"))
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "build")
        shutil.copytree(ROOT / "asherah_django", self.dir / "asherah_django", ignore=ignore)
        for name in ("pyproject.toml", "setup.py"):
            shutil.copy2(ROOT / name, self.dir / name)
        if tests_from:
            archive = subprocess.run(
                ["git", "archive", tests_from, "tests"], cwd=ROOT, check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(self.dir)], input=archive, check=True)
        else:
            shutil.copytree(ROOT / "tests", self.dir / "tests", ignore=ignore)
        self.env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        self.env.update(TZ="UTC", ASHERAH_DJANGO_REQUIRE_SPEEDUPS="1")
        for name in ("COVERAGE_PROCESS_START", "DATABASE_URL", "PYTHONDEVMODE"):
            self.env.pop(name, None)

    def existing(self, tests: tuple[str, ...]) -> tuple[str, ...]:
        """The selections whose file exists here (``--tests-from`` an older revision)."""
        return tuple(t for t in tests if (self.dir / t.split("::")[0]).exists())

    def pytest(self, tests: tuple[str, ...], timeout: int) -> tuple[int | None, str]:
        command = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:randomly"]
        command += ["--no-header", "-o", "console_output_style=classic", f"--timeout={timeout}"]
        try:
            done = subprocess.run(
                command, cwd=self.dir, env=self.env, capture_output=True, text=True,
                timeout=timeout + 30,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return None, ""
        return done.returncode, done.stdout + done.stderr

    def _extension(self) -> Path:
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        return self.dir / "asherah_django" / "core" / f"_speedups{suffix}"

    def build_extension(self) -> None:
        """Compile the C extension in place, as setup.py does (the compiler directly: the
        sandbox's pyproject.toml may need a newer setuptools than the virtualenv has)."""
        core = self.dir / "asherah_django" / "core"
        target = self._extension()
        compiler = (sysconfig.get_config_var("CC") or "cc").split()
        include = sysconfig.get_paths()["include"]
        command = [*compiler, "-O2", "-shared", "-fPIC", f"-I{include}"]
        command += [str(core / "_speedups.c"), "-lcrypto", "-o", str(target)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:  # a mutant must compile to mean anything: fix the table
            raise SystemExit(f"the C mutant does not compile:\n{done.stderr[-3000:]}")

    def run(self, mutant: Mutant, timeout: int) -> Outcome:
        started = time.monotonic()
        target = self.dir / mutant.path
        original = target.read_bytes()
        # This interpreter's build only: a checkout can hold one per Python of the test matrix.
        extension: Path | None = self._extension()
        if extension is not None and not extension.exists():
            extension = None
        saved = extension.read_bytes() if extension is not None else None
        target.write_bytes(mutant.source)
        try:
            if mutant.path.endswith(".c"):
                self.build_extension()
            for stage in mutant.stages:
                tests = self.existing(stage)
                if not tests:
                    continue
                code, output = self.pytest(tests, timeout)
                if code is None:
                    return Outcome(mutant, True, "timeout", time.monotonic() - started)
                if code in (4, 5):
                    raise SystemExit(f"{mutant.id}: pytest could not run {tests}:\n{output}")
                if code != 0:
                    return Outcome(mutant, True, _first_failure(output), time.monotonic() - started)
            return Outcome(mutant, False, "", time.monotonic() - started)
        finally:
            target.write_bytes(original)
            if extension is not None and saved is not None:
                extension.write_bytes(saved)

    def baseline(self, selections: set[tuple[str, ...]], timeout: int) -> None:
        """The unmutated tests must pass here, or no mutant result would mean anything
        (one pytest run for all of them)."""
        tests = tuple(sorted({t for stage in selections for t in self.existing(stage)}))
        if not tests:
            return
        code, output = self.pytest(tests, timeout * 4)
        if code != 0:
            print(output[-4000:], file=sys.stderr)
            print(f"the unmutated tests fail in the sandbox: {tests}", file=sys.stderr)
            raise SystemExit(2)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0].split(" ", 1)[1]
    return "tests failed (no test named in the output)"


def run_all(mutants: list[Mutant], args: argparse.Namespace, config: Config) -> list[Outcome]:
    sandbox = Sandbox(args.tests_from)
    try:
        if not args.no_baseline:
            sandbox.baseline({stage for m in mutants for stage in m.stages}, config.timeout)
        outcomes = []
        for number, mutant in enumerate(mutants, 1):
            outcome = sandbox.run(mutant, config.timeout)
            outcomes.append(outcome)
            verdict = f"killed by {outcome.by}" if outcome.killed else "SURVIVED"
            where = f"{mutant.path}:{mutant.line} {mutant.description}"
            print(f"[{number}/{len(mutants)}] {mutant.id} ({where}): {verdict} "
                  f"({outcome.seconds:.1f}s)", flush=True)  # fmt: skip
        return outcomes
    finally:
        sandbox.close()


def report(outcomes: list[Outcome], allowed: dict[str, str], strict: bool) -> int:
    by_module: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_module.setdefault(outcome.mutant.path, []).append(outcome)
    print("\nmutation score by module (killed / mutants):")
    for path, group in sorted(by_module.items()):
        killed = sum(o.killed for o in group)
        print(f"  {path:48} {killed:4d} / {len(group):4d}  {100 * killed / len(group):5.1f}%")
    killed = sum(o.killed for o in outcomes)
    if outcomes:
        print(f"  {'total':48} {killed:4d} / {len(outcomes):4d}  "
              f"{100 * killed / len(outcomes):5.1f}%")  # fmt: skip
    survivors = [o.mutant for o in outcomes if not o.killed]
    unlisted = [m for m in survivors if m.id not in allowed or m.table]
    if survivors:
        print("\nsurvivors:")
        for m in survivors:
            note = f"allowed: {allowed[m.id]}" if m.id in allowed and not m.table else "NOT ALLOWED"
            print(f"  {m.id}\n      {m.path}:{m.line} {m.description}\n      {note}")
    if any(m.table for m in survivors):
        print("\nFAIL: a mutant of the table survived", file=sys.stderr)
        return 1
    if strict and unlisted:
        print(f"\nFAIL: {len(unlisted)} survivor(s) not in {ALLOWLIST.name}; add a test that "
              "kills each, or list it there with the reason it cannot be killed",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def sample(mutants: list[Mutant], count: int, seed: int) -> list[Mutant]:
    ordered = sorted(mutants, key=lambda m: m.id)
    if count <= 0 or count >= len(ordered):
        return ordered
    return sorted(random.Random(seed).sample(ordered, count), key=lambda m: (m.path, m.line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["ci", "table", "full", "list"])
    parser.add_argument("--id", action="append", help="only these mutant ids (substring)")
    parser.add_argument("--module", action="append", help="only modules under this path")
    parser.add_argument("--sample", type=int, default=0, help="this many mutants, at random")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--tests-from", help="run the tests of this git revision instead")
    parser.add_argument("--strict", action="store_true", help="fail on unlisted survivors")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    # A terminated run still removes its sandbox (the finally clauses run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    config = load_config()
    seed = config.seed if args.seed is None else args.seed
    if args.command == "list":
        for m in all_mutants(config, args.module):
            print(f"{m.id}  {m.path}:{m.line}  {m.description}")
        return 0
    if args.command == "table":
        mutants = table_mutants(config)
    elif args.command == "ci":
        pool = all_mutants(config, config.ci_sample_modules)
        mutants = table_mutants(config) + sample(pool, config.ci_sample, seed)
        args.strict = True
    else:
        mutants = sample(all_mutants(config, args.module), args.sample, seed)
    if args.id:
        mutants = [m for m in mutants if any(i in m.id for i in args.id)]
    started = time.monotonic()
    outcomes = run_all(mutants, args, config)
    status = report(outcomes, load_allowlist(), args.strict)
    print(f"\n{len(outcomes)} mutants in {time.monotonic() - started:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""The tested matrix is stated once per place and the places agree: scripts/matrix.sh (what
`make test` runs), tox.ini, and pyproject.toml's bounds and classifiers; this run is one of
its combinations; a missing interpreter fails with its name and how to get it."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import tomllib

import django

from tests.support.common import ROOT


def _matrix() -> list[str]:
    text = (ROOT / "scripts" / "matrix.sh").read_text()
    found = re.search(r'^MATRIX_ALL="([^"]+)"', text, re.MULTILINE)
    assert found
    return found.group(1).split()


def _split(combo: str) -> tuple[str, str]:
    found = re.fullmatch(r"py(\d)(\d+)-django(\d)(\d)", combo)
    assert found, combo
    return f"{found[1]}.{found[2]}", f"{found[3]}.{found[4]}"


def test_tox_lists_the_same_combinations_as_make_test() -> None:
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    envs = [e.strip() for e in tox["tox"]["envlist"].split() if e.strip()]
    combos = {re.sub(r"-(\{.*\}|sqlite|postgres|mysql)$", "", e) for e in envs} - {"lint"}
    assert combos == set(_matrix())
    main = _matrix()[0]
    assert f"{main}-{{sqlite,postgres,mysql}}" in envs  # the main one on every database
    assert "lint" in envs


def test_pyproject_claims_exactly_the_tested_releases() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pythons = {_split(c)[0] for c in _matrix()}
    djangos = {_split(c)[1] for c in _matrix()}
    classifiers = project["classifiers"]
    assert {
        c.rsplit(" ", 1)[1] for c in classifiers if c.startswith("Framework :: Django :: ")
    } == (djangos)
    assert {
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.match(r"Programming Language :: Python :: 3\.\d+$", c)
    } == pythons
    lowest = min(djangos, key=lambda v: tuple(map(int, v.split("."))))
    major, minor = max(tuple(map(int, v.split("."))) for v in djangos)
    assert f"django>={lowest},<{major}.{minor + 1}" in project["dependencies"]
    assert project["requires-python"] == f">={min(pythons, key=lambda v: int(v.split('.')[1]))}"


def test_this_run_is_a_combination_of_the_matrix() -> None:
    here = (
        f"py{sys.version_info[0]}{sys.version_info[1]}-django{django.VERSION[0]}{django.VERSION[1]}"
    )
    assert here in _matrix()


def test_a_missing_interpreter_fails_naming_it_and_how_to_get_it() -> None:
    result = subprocess.run(
        ["bash", "-c", ". scripts/matrix.sh && python_of 3.99"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHON_3_99": "/nonexistent/python3.99"},
    )
    assert result.returncode == 1
    assert "Python 3.99 is needed" in result.stderr
    assert "pyenv install 3.99" in result.stderr
    unknown = subprocess.run(
        ["bash", "-c", ". scripts/matrix.sh && matrix_combos"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "ASHERAH_MATRIX": "py399-django99"},
    )
    assert unknown.returncode != 0 and "unknown combination 'py399-django99'" in unknown.stderr

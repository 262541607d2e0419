"""The release artifacts, built from this checkout as a user would get them (issue 19).

``python -m build`` makes an sdist and a wheel once per run (module fixture); ``twine check
--strict`` passes on both; the sdist installs into a fresh venv with no C compiler on PATH
(the optional extension is skipped with a warning: the pure-Python path) and the wheel into
another (the C accelerator); tests/integration/release/smoke.py runs in each, and ``asherah_check``
reports which crypto path is active. ``auditwheel show`` describes the Linux wheel. Build
dependencies come from PyPI (pip's index), nothing else from the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import asherah_django
from tests.support.common import ROOT

SMOKE = Path(__file__).with_name("smoke.py")
pytestmark = [pytest.mark.release, pytest.mark.slow]
TIMEOUT = 600


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
        cwd=cwd,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on the path and without the suite's settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "PYTHONDEVMODE")
        and not k.startswith(("ASHERAH_", "PYTEST_"))
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An sdist and a wheel built once, from a copy of the checkout's tracked files."""
    base = tmp_path_factory.mktemp("release")
    source = base / "src"
    files = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = base / "dist"
    run(sys.executable, "-m", "build", "--outdir", out, source, env=clean_env())
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0], "base": base}


def test_version_is_single_sourced(dist: dict[str, Path]) -> None:
    version = asherah_django.__version__
    assert dist["sdist"].name == f"asherah_django-{version}.tar.gz"
    assert dist["wheel"].name.startswith(f"asherah_django-{version}-")
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and 'attr = "asherah_django.__version__"' in text


def test_twine_check_strict(dist: dict[str, Path]) -> None:
    out = run(sys.executable, "-m", "twine", "check", "--strict", dist["sdist"], dist["wheel"])
    print(out)
    assert out.count("PASSED") == 2, out


def test_artifacts_hold_the_package_and_the_extension_source(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = sdist.getnames()
    assert any(n.endswith("asherah_django/core/_speedups.c") for n in names)
    assert any(n.endswith("asherah_django/py.typed") for n in names)
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        members = wheel.namelist()
    assert any(
        n.startswith("asherah_django/core/_speedups.") and n.endswith(".so") for n in members
    )
    assert "asherah_django/migrations/0001_initial.py" in members
    assert not [n for n in members if n.startswith(("tests/", "docs/", "example_project/"))]


def _venv(base: Path, name: str) -> Path:
    venv = base / name
    run(sys.executable, "-m", "venv", venv)
    return venv / "bin" / "python"


def _no_compiler_path(base: Path) -> str:
    """PATH with every directory holding a C compiler replaced by a copy without them."""
    compilers = {"cc", "gcc", "c89", "c99", "clang", "x86_64-linux-gnu-gcc", "tcc"}
    shadow = base / "nocc-bin"
    shadow.mkdir(exist_ok=True)
    kept = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(directory)
        if not path.is_dir():
            continue
        if not any((path / c).exists() for c in compilers):
            kept.append(directory)
            continue
        for entry in path.iterdir():  # the directory's other programs, linked
            if entry.name not in compilers and not entry.name.startswith(("gcc", "clang", "cc")):
                target = shadow / entry.name
                if not target.exists():
                    target.symlink_to(entry)
        kept.append(str(shadow))
    return os.pathsep.join(dict.fromkeys(kept))


def test_sdist_without_a_compiler_installs_the_pure_python_path(dist: dict[str, Path]) -> None:
    base = dist["base"]
    path = _no_compiler_path(base)
    assert shutil.which("cc", path=path) is None and shutil.which("gcc", path=path) is None
    python = _venv(base, "venv-sdist")
    env = clean_env(PATH=path, CC="cc")  # setuptools would also honour $CC: point it nowhere
    out = run(python, "-m", "pip", "install", "-v", dist["sdist"], env=env)
    assert "building 'asherah_django.core._speedups' extension" in out
    # setuptools' warning for an optional extension (setup.py: optional=True), not an error
    warning = 'building extension "asherah_django.core._speedups" failed'
    assert warning in out, out[-3000:]
    smoke = run(python, SMOKE, "--expect", "pure", env=clean_env(), cwd=base)
    assert "crypto=pure Python" in smoke and "smoke OK" in smoke
    print(smoke)


def test_wheel_installs_the_accelerator(dist: dict[str, Path]) -> None:
    python = _venv(dist["base"], "venv-wheel")
    run(python, "-m", "pip", "install", dist["wheel"], env=clean_env())
    smoke = run(python, SMOKE, "--expect", "accelerator", env=clean_env(), cwd=dist["base"])
    assert "crypto=C accelerator" in smoke and "smoke OK" in smoke
    print(smoke)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auditwheel is Linux's")
def test_auditwheel_show_on_the_linux_wheel(dist: dict[str, Path]) -> None:
    out = run(sys.executable, "-m", "auditwheel", "show", dist["wheel"])
    print(out)
    # A wheel built here links the system's libcrypto: auditwheel names it as an external
    # library (cibuildwheel's repair step vendors it for the published manylinux wheels).
    assert "libcrypto" in out
    assert "platform tag" in out or "is consistent with" in out

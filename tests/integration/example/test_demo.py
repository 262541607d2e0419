"""The README's demo command works headless: ``example_project/demo.py --check`` starts
OpenBao, migrates, seeds, then verifies a Vault round trip, the encrypted columns, the
staff view and the admin pages. Run twice on the same directory: re-running works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.common import ROOT

pytestmark = pytest.mark.vault


def test_demo_check_passes_and_can_run_again(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "example_project" / "demo.py"), "--check"]
    command += ["--demo-dir", str(tmp_path / "demo")]
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    for run in (1, 2):
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=240, env=env, check=False
        )
        assert result.returncode == 0, f"run {run}:\n{result.stdout}\n{result.stderr}"
        assert "demo check: OK" in result.stdout
        assert '"ParentKeyMeta":{"KeyId":"_IK_1_clinics_demo"' in result.stdout
    # The server's data survived the first run: the second found the same keys.
    assert (tmp_path / "demo" / "openbao" / "root-token").stat().st_mode & 0o077 == 0


def test_demo_check_passes_with_kms_aws_and_asherah_check_passes_there(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "example_project" / "demo.py"), "--check"]
    command += ["--kms", "aws", "--demo-dir", str(tmp_path / "demo")]
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=240, env=env, check=False
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "demo check: OK (KMS=aws round trip" in result.stdout
    lines = {
        line.split()[0]: line for line in result.stdout.splitlines() if line[:4] in ("aws.", "kms.")
    }
    assert " OK " in lines["aws.identity"] and " OK " in lines["aws.keys"], result.stdout
    assert "2 region(s) (us-west-2, us-east-1" in lines["aws.keys"]
    assert "AWS KMS (regions us-west-2, us-east-1)" in lines["kms.round_trip"]
    assert "asherah_check: FAIL" not in result.stdout

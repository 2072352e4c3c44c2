"""The geosr command has torch's OpenMP threads sleep while they wait, unless the user chose;
the Python API leaves its host process's OpenMP as it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMAND = """
import os, sys
sys.argv = ["geosr", "--version"]
from geosr.entry import main
try:
    main()
except SystemExit:
    pass
print("policy", os.environ.get("OMP_WAIT_POLICY"))
"""
LIBRARY = "import os, geosr.api; print('policy', os.environ.get('OMP_WAIT_POLICY'))"


def policy(code: str, env: dict[str, str]) -> str:
    """``OMP_WAIT_POLICY`` as a fresh Python process running ``code`` has it at the end."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1].removeprefix("policy ")


def test_the_command_has_openmp_threads_sleep_while_they_wait() -> None:
    assert policy(COMMAND, {}) == "PASSIVE"


@pytest.mark.parametrize(
    ("env", "expected"), [({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"), ({"GOMP_SPINCOUNT": "30000"}, "None")]
)
def test_a_policy_the_user_chose_is_kept(env: dict[str, str], expected: str) -> None:
    assert policy(COMMAND, env) == expected


def test_the_python_api_leaves_its_hosts_openmp_alone() -> None:
    assert policy(LIBRARY, {}) == "None"

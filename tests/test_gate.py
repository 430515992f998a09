"""The gate that keeps the codebase as it is: lint, format and types (settings in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["fluorojax", "tests", "benchmarks", "scripts"]


def _run(*args):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [("check",), ("format", "--check")], ids=["lint", "format"])
def test_ruff(command):
    ruff = shutil.which("ruff") or pytest.fail("ruff is missing: pip install -e '.[test]'")
    result = _run(ruff, *command, *SOURCES)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy():
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

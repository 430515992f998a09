"""The gate that keeps the codebase as it is: lint, format and types (settings in pyproject.toml).

Each check runs the tool the ``test`` extra installs, from the repository root, and fails with
the tool's own report. A missing tool fails too (it is part of the test extra), never skips.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("fluorojax", "tests", "benchmarks", "scripts")


def _check(*args: str) -> None:
    """Run ``args`` in the repository root; fail with the tool's output unless it exits with 0."""
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(args[:3])} ... exited with {result.returncode}:\n{result.stdout[-8000:]}{result.stderr[-2000:]}",
            pytrace=False,
        )


@pytest.mark.parametrize(
    "command", [("check", "--output-format", "concise"), ("format", "--check")], ids=["lint", "format"]
)
def test_ruff(command):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is missing: pip install -e '.[test]'", pytrace=False)
    _check(ruff, *command, *SOURCES)


def test_mypy():
    _check(sys.executable, "-m", "mypy")

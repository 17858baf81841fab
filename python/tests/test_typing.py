"""The package's type hints hold: mypy over it, every definition typed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mypy():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (Debian: python3-mypy)")
    with tempfile.TemporaryDirectory(prefix="pgm-mypy-") as cache:
        r = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", cache,
                            "--disallow-untyped-defs", "--disallow-incomplete-defs",
                            "--warn-unused-ignores", "--ignore-missing-imports", "pgmarket"],
                           cwd=PYTHON_DIR, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr

"""The package's type hints hold: mypy over it, every definition typed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


FLAGS = ["--disallow-untyped-defs", "--disallow-incomplete-defs", "--warn-unused-ignores",
         "--ignore-missing-imports"]


@pytest.mark.parametrize("targets", [
    # the package as its users see it (client.pyi for client.py), and a sample of use
    ["pgmarket", os.path.join("tests", "typing_sample.py")],
    # client.py itself, which the stub hides from the first pass
    [os.path.join("pgmarket", "client.py")],
])
def test_mypy(targets, mypy_cache):
    r = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", mypy_cache] + FLAGS + targets,
                       cwd=PYTHON_DIR, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def mypy_cache():
    """One cache for both passes: the second reads psycopg's types from it."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (Debian: python3-mypy)")
    with tempfile.TemporaryDirectory(prefix="pgm-mypy-") as cache:
        yield cache


def test_the_stub_is_current():
    r = subprocess.run([sys.executable, os.path.join(PYTHON_DIR, "tools", "gen_client_stub.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

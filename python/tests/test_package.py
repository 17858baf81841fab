"""Packaging: pip installs it offline; help() and type hints; the examples run."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

import pgmarket
from pgmarket import compat

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pip_installs_it_offline():
    if shutil.which("pip3") is None and subprocess.run([sys.executable, "-m", "pip", "--version"],
                                                       capture_output=True).returncode != 0:
        pytest.skip("pip is not installed (Debian: python3-pip)")
    tmp = tempfile.mkdtemp(prefix="pgm-pip-")
    try:
        src = os.path.join(tmp, "src")
        shutil.copytree(PYTHON_DIR, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], check=True)
        env = dict(os.environ, PIP_NO_INDEX="1", PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                   PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)
        py = os.path.join(venv, "bin", "python")
        r = subprocess.run([py, "-m", "pip", "install", "--no-deps", src], env=env, capture_output=True,
                           text=True, timeout=300, cwd=tmp)
        assert r.returncode == 0, r.stdout + r.stderr
        r = subprocess.run([py, "-c", "import pgmarket, os; print(pgmarket.__file__);"
                            "print(os.path.exists(os.path.join(os.path.dirname(pgmarket.__file__), 'py.typed')))"],
                           env=env, capture_output=True, text=True, cwd=tmp)
        out = r.stdout.split()
        assert r.returncode == 0 and out[0].startswith(venv) and out[1] == "True", r.stdout + r.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_help_and_type_hints():
    assert os.path.exists(os.path.join(os.path.dirname(pgmarket.__file__), "py.typed"))
    text = pydoc_text(pgmarket.Client.deduct_balance)
    assert "InsufficientFunds" in text and "idempotency_key" in text
    for cls in (pgmarket.Client, pgmarket.AsyncClient, compat.DatabaseService):
        for name, fn in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("_"):
                continue
            assert fn.__doc__, f"{cls.__name__}.{name}"
            sig = inspect.signature(fn)
            for p in list(sig.parameters.values())[1:]:
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    assert p.annotation is not p.empty, f"{cls.__name__}.{name}({p.name})"


def pydoc_text(obj) -> str:
    import pydoc
    return pydoc.render_doc(obj, renderer=pydoc.plaintext)


def test_flask_example(client):
    pytest.importorskip("flask")
    import flask_app
    app = flask_app.create_app().test_client()
    tag = uuid.uuid4().hex[:8]
    r = app.post("/register", json={"email": f"f{tag}@example.com", "username": f"f{tag}", "password": "flask-pass"})
    assert r.status_code == 201
    uid = r.get_json()["user_id"]
    assert app.post("/login", json={"email": f"f{tag}@example.com", "password": "flask-pass"}).status_code == 200
    assert app.post("/login", json={"email": f"f{tag}@example.com", "password": "nope"}).status_code == 401
    r = app.post("/funds", json={"user_id": uid, "amount": "1.50", "transaction_id": "pay-1"})
    assert r.get_json()["available_balance"] == "1.500000"
    r = app.post("/chat", json={"user_id": uid, "model_id": "gpt-4", "prompt": "hi there", "cost": "0.25"})
    assert r.status_code == 200
    sid = r.get_json()["session_id"]
    assert r.get_json()["charge"]["available_balance"] == "1.250000"
    assert [m["role"] for m in app.get(f"/history/{sid}").get_json()] == ["user", "assistant"]
    r = app.post("/chat", json={"user_id": uid, "model_id": "gpt-4", "prompt": "again", "cost": "5"})
    assert r.status_code == 402 and r.get_json()["sqlstate"] == "PM001"
    assert app.get(f"/balance/{uuid.uuid4()}").status_code == 404
    assert app.get(f"/balance/{uid}").get_json()["available_balance"] == "1.250000"

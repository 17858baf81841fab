"""Fixtures of the pgmarket package's tests.

They run against the server PGHOST/PGPORT/PGUSER/PGDATABASE name, as a
superuser, in a database with the extension and a master key file
(tests/run.sh makes one and drops it; scripts/test.sh runs it).  The
package is imported from the tree.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any, Callable, Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))                       # python/ : pgmarket
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

import pgmarket  # noqa: E402


@pytest.fixture(scope="session")
def client() -> Iterator[pgmarket.Client]:
    c = pgmarket.Client()
    yield c
    c.close()


@pytest.fixture
def make_user(client: pgmarket.Client) -> Callable[..., uuid.UUID]:
    """make_user(funds=None, password=None): a fresh user, funded when asked."""

    def make(funds: Any = None, password: Any = None) -> uuid.UUID:
        tag = uuid.uuid4().hex[:12]
        uid = client.create_user(f"u{tag}@example.com", f"u{tag}", password)
        if funds is not None:
            client.add_funds(uid, funds)
        return uid

    return make


@pytest.fixture
def user(make_user: Callable[..., uuid.UUID]) -> uuid.UUID:
    return make_user(100)


def sql(client: pgmarket.Client, text: str, params: Any = (), shape: str = "rows") -> Any:
    """Run a statement through the client's own machinery (for set-up)."""
    from pgmarket._core import Call
    return client._call(Call("test", [], shape, sql=text, params=list(params)))

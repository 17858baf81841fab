"""pgmarket.actor: one transaction acting for one user."""

from __future__ import annotations

import psycopg
import pytest

import pgmarket
from conftest import sql


def test_actor_block_is_one_transaction(client, make_user):
    a, b = make_user(10), make_user(10)
    with pgmarket.actor(client, a) as c:
        assert c.current_actor() == a
        c.deduct_balance(a, 1, "m")
        with pytest.raises(pgmarket.PermissionDenied):
            c.deduct_balance(b, 1, "m")            # refused in a savepoint
        c.deduct_balance(a, 2, "m")
    assert client.get_balance(a)["available_balance"] == 7
    assert client.get_balance(b)["available_balance"] == 10
    assert client.current_actor() is None          # SET LOCAL ended with the block
    with pytest.raises(ValueError):
        with pgmarket.actor(client, a) as c:
            c.deduct_balance(a, 5, "m")
            raise ValueError("undo")
    assert client.get_balance(a)["available_balance"] == 7


def test_actor_hides_other_users_rows(client, make_user):
    a, b = make_user(1), make_user(1)
    with pgmarket.actor(client, str(a)) as c:
        sql(c, "SET LOCAL ROLE pgmarket_app", shape="void")
        ids = [r["id"] for r in sql(c, "SELECT id FROM pgmarket.users")]
    assert ids == [a]
    assert b in [r["id"] for r in sql(client, "SELECT id FROM pgmarket.users")]


def test_actor_on_a_callers_connection_and_pool(client, make_user):
    a = make_user(3)
    with psycopg.connect("") as conn:                # not autocommit
        c = pgmarket.Client(conn)
        with pgmarket.actor(c, a) as ca:
            ca.deduct_balance(a, 1, "m")
        conn.commit()
        conn.execute("SELECT 1")                     # the caller opens a transaction
        c.deduct_balance(a, 1, "m")                  # which the call joins (a savepoint)
        conn.rollback()
        assert c.get_balance(a)["available_balance"] == 2
        c.deduct_balance(a, 1, "m")                  # idle: a transaction of its own
        conn.rollback()
        assert c.get_balance(a)["available_balance"] == 1
        conn.commit()
    from psycopg_pool import ConnectionPool
    with ConnectionPool("", min_size=1, max_size=2) as pool:
        c = pgmarket.Client(pool)
        with pgmarket.actor(c, a) as ca:
            ca.add_funds(a, 1)
        assert c.get_balance(a)["available_balance"] == 2


def test_actor_refuses_a_bad_user(client):
    with pytest.raises(pgmarket.InvalidValue):
        pgmarket.actor(client, "not a uuid")
    with pytest.raises(TypeError):
        with pgmarket.actor(pgmarket.AsyncClient(), "00000000-0000-0000-0000-000000000001"):
            pass


def test_permission_denied_for_the_app_role(client):
    with psycopg.connect("", autocommit=True) as conn:
        conn.execute("SET ROLE pgmarket_app")
        c = pgmarket.Client(conn)
        with pytest.raises(pgmarket.PermissionDenied):
            c.rotate_master_key()
        with pytest.raises(pgmarket.PermissionDenied):
            c.seal_audit()
        assert c.health()["ok"] is True

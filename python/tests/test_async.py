"""AsyncClient: the same API as coroutines, under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import psycopg
import pytest

import pgmarket

pytestmark = pytest.mark.asyncio


async def test_100_concurrent_charges_never_overspend(client, make_user):
    uid = make_user(50)
    ac = pgmarket.AsyncClient(pool_size=8)
    try:
        async def charge(i: int):
            try:
                return await ac.deduct_balance(uid, 1, "gpt-4", 10)
            except pgmarket.InsufficientFunds as e:
                return e
        results = await asyncio.gather(*(charge(i) for i in range(100)))
    finally:
        await ac.close()
    ok = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, pgmarket.InsufficientFunds)]
    assert len(ok) == 50 and len(refused) == 50
    assert all(r["available_balance"] >= 0 for r in ok)
    assert sorted(r["available_balance"] for r in ok) == [Decimal(i) for i in range(50)]
    b = client.get_balance(uid)
    assert b["available_balance"] == 0 and b["spent_balance"] == 50
    assert client.verify_ledger() == []


async def test_concurrent_repeats_of_one_key_apply_once(client, make_user):
    uid = make_user(10)
    ac = pgmarket.AsyncClient(pool_size=5)
    try:
        results = await asyncio.gather(*(ac.deduct_balance(uid, 3, "gpt-4", 1, "same-key") for _ in range(20)))
    finally:
        await ac.close()
    assert len({r["entry_id"] for r in results}) == 1
    assert sum(not r["replayed"] for r in results) == 1
    assert client.get_balance(uid)["available_balance"] == 7


async def test_async_client_on_a_callers_connection_and_pool(client, make_user):
    uid = make_user(5)
    conn = await psycopg.AsyncConnection.connect("", autocommit=True)
    try:
        ac = pgmarket.AsyncClient(conn)
        assert (await ac.get_balance(uid))["available_balance"] == 5
        r = await ac.charge_api_key((await ac.create_api_key(uid, "k"))["api_key"], "0.5", "m")
        assert r["amount"] == Decimal("0.5")
        assert (await ac.verify_api_key("nope")) is None
        with pytest.raises(pgmarket.InvalidValue):
            await ac.deduct_balance(uid, float("nan"), "m")
        with pytest.raises(pgmarket.InsufficientFunds):
            await ac.deduct_balance(uid, 100, "m")
        await ac.close()                       # the caller's connection stays open
        assert not conn.closed
    finally:
        await conn.close()
    from psycopg_pool import AsyncConnectionPool
    pool = AsyncConnectionPool("", min_size=1, max_size=3, open=False)
    await pool.open()
    try:
        ac = pgmarket.AsyncClient(pool)
        h = await ac.health()
        assert h["ok"] is True and await ac.ping()
        tag = uuid.uuid4().hex[:10]
        u2 = await ac.create_user(f"as{tag}@example.com", f"as{tag}", "async pass")
        assert await ac.authenticate(f"as{tag}", "async pass") == u2
        await ac.put_provider_key(u2, "openai", "sk-async-000000")
        assert await ac.get_provider_key(u2, "openai") == "sk-async-000000"
    finally:
        await pool.close()


async def test_async_actor(client, make_user):
    a, b = make_user(5), make_user(5)
    async with pgmarket.AsyncClient() as ac:
        async with pgmarket.actor(ac, a) as c:
            assert await c.current_actor() == a
            await c.deduct_balance(a, 1, "m")
            with pytest.raises(pgmarket.PermissionDenied):
                await c.get_balance(b)              # in a savepoint: the block goes on
            await c.deduct_balance(a, 1, "m")
        assert (await ac.get_balance(a))["available_balance"] == 3
        with pytest.raises(RuntimeError):
            async with pgmarket.actor(ac, a) as c:
                await c.deduct_balance(a, 1, "m")
                raise RuntimeError("rolled back")
        assert (await ac.get_balance(a))["available_balance"] == 3
        assert await ac.current_actor() is None

"""Checked by mypy in test_typing.py, never run: the clients as a type
checker sees them."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Dict, List, Optional

import pgmarket
from pgmarket.compat import DatabaseService


def sync_use(client: pgmarket.Client, uid: uuid.UUID) -> Decimal:
    r: Dict[str, Any] = client.deduct_balance(uid, "0.5", "gpt-4")
    hold: int = client.reserve(uid, 1)
    owner: Optional[uuid.UUID] = client.chat_session_owner(uid)
    with pgmarket.actor(client, uid) as c:
        c.add_funds(uid, 1)
    assert hold and owner is None
    return Decimal(r["available_balance"])


async def async_use(client: pgmarket.AsyncClient, uid: uuid.UUID) -> int:
    r: Dict[str, Any] = await client.deduct_balance(uid, 0.5, "gpt-4")
    rows: List[Dict[str, Any]] = await client.ledger_entries(uid)
    async with pgmarket.actor(client, uid) as c:
        await c.add_funds(uid, 1)
    assert r
    return len(rows)


def compat_use(db: DatabaseService, uid: str) -> bool:
    return db.add_funds(uid, 100.0, "txn_001") and db.deduct_balance(uid, 25.0, "gpt-4", 5000)

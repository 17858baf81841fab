"""compat.DatabaseService: the marketplace's interface, and its own two
example tests run unchanged against an AuthService built on it."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

import pgmarket
from auth_service import AuthService, hash_password
from pgmarket.compat import DatabaseService


@pytest.fixture
def db():
    d = DatabaseService()
    yield d
    d.close()


def _new(db):
    tag = uuid.uuid4().hex[:10]
    uid = str(uuid.uuid4())
    assert db.create_user(uid, f"c{tag}@example.com", f"c{tag}", hash_password("pass-" + tag)) is True
    return uid, f"c{tag}@example.com", f"c{tag}", "pass-" + tag


# --- the marketplace's own example tests, as they are ---------------------------

def test_user_registration_persists():
    auth_service = AuthService()
    email = f"test_{uuid.uuid4().hex[:8]}@example.com"
    result = auth_service.register(email, f"testuser_{uuid.uuid4().hex[:8]}", "password123")
    assert result["success"]

    # a new service object: the user is still there
    new_auth_service = AuthService()
    user = new_auth_service.db.get_user_by_email(email)
    assert user is not None
    assert user["email"] == email


def test_balance_operations():
    auth_service = AuthService()
    result = auth_service.register(f"bal_{uuid.uuid4().hex[:8]}@example.com",
                                   f"baluser_{uuid.uuid4().hex[:8]}", "password123")
    user_id = result["user_id"]
    db = auth_service.db

    db.add_funds(user_id, 100.0, "txn_001")
    db.deduct_balance(user_id, 25.0, "gpt-4", 5000)

    balance = db.get_user_balance(user_id)
    assert balance["total_balance"] == 100.0
    assert balance["spent_balance"] == 25.0
    assert balance["available_balance"] == 75.0

    transactions = db.get_balance_transactions(user_id)
    assert len(transactions) >= 2


# --- every method ----------------------------------------------------------------

def test_users(db):
    uid, email, username, password = _new(db)
    assert db.create_user(uid, "other@example.com", "otheruser", hash_password("x")) is False  # taken id
    assert db.create_user(str(uuid.uuid4()), email.upper(), "someone_else", hash_password("x")) is False
    assert db.create_user(str(uuid.uuid4()), "not an email", "someone_else", hash_password("x")) is False
    u = db.get_user_by_email("  " + email.upper())
    assert u["user_id"] == uid and u["username"] == username and u["is_active"] is True
    assert "password_hash" not in u
    assert db.get_user_by_username(username.upper())["user_id"] == uid
    assert db.get_user_by_email("nobody@example.com") is None
    assert db.get_user_by_username("nobody_here") is None
    assert db.get_user(uid)["email"] == email and db.get_user("junk") is None
    assert db.authenticate(email, "wrong") is None
    logged = db.authenticate(username, password)          # verifies pbkdf2, upgrades it
    assert logged["user_id"] == uid and logged["last_login"] is not None
    assert db.authenticate(email, password)["user_id"] == uid
    assert db.update_last_login(uid) is True
    assert db.update_last_login(str(uuid.uuid4())) is False


def test_auth_service_login(db):
    auth = AuthService(db)
    email = f"l{uuid.uuid4().hex[:8]}@example.com"
    assert auth.register(email, "l" + uuid.uuid4().hex[:8], "longpassword")["success"]
    assert auth.register(email, "l" + uuid.uuid4().hex[:8], "longpassword") == \
        {"success": False, "error": "email already registered"}
    assert auth.login(email, "longpassword")["success"] is True
    assert auth.login(email, "wrongpassword")["success"] is False


def test_provider_keys(db):
    uid = _new(db)[0]
    assert db.add_api_key("key-1", uid, "openai", "gAAAAB-encrypted-by-the-app", "hash-ignored") is True
    assert db.get_provider_key(uid, "openai") == "gAAAAB-encrypted-by-the-app"
    keys = db.get_api_keys_for_user(uid)
    assert [(k["key_id"], k["provider"], k["is_active"]) for k in keys] == [("key-1", "openai", True)]
    assert "gAAAAB" not in repr(keys)
    assert db.add_api_key("key-2", uid, "openai", "sk-new", "h") is True        # revokes key-1
    assert [k["key_id"] for k in db.get_api_keys_for_user(uid)] == ["key-2"]
    assert db.revoke_api_key(uid, "key-1") is False
    assert db.revoke_api_key(uid, "key-2") is True
    assert db.get_provider_key(uid, "openai") is None
    assert db.get_api_keys_for_user(uid) == []
    assert db.add_api_key("k", str(uuid.uuid4()), "openai", "x", "h") is False  # unknown user
    assert db.add_api_key("k", uid, "bad provider!", "x", "h") is False


def test_balances(db):
    uid = _new(db)[0]
    assert db.get_user_balance(uid) == {"total_balance": 0, "spent_balance": 0,
                                        "available_balance": 0, "reserved_balance": 0}
    assert db.add_funds(uid, 10, "t-1") is True
    assert db.add_funds(uid, 10, "t-1") is True                    # the same transaction once
    assert db.add_funds(uid, "0.0000001", "t-2") is False
    assert db.deduct_balance(uid, 0.1, "gpt-4", 10) is True
    assert db.deduct_balance(uid, 1000, "gpt-4", 10) is False      # insufficient: nothing charged
    b = db.get_user_balance(uid)
    assert b["total_balance"] == 10 and b["available_balance"] == Decimal("9.9")
    assert isinstance(b["available_balance"], Decimal)
    tx = db.get_balance_transactions(uid)
    assert [t["type"] for t in tx] == ["deduction", "deposit"]
    assert tx[1]["transaction_id"] == "t-1" and tx[0]["model_id"] == "gpt-4" and tx[0]["tokens_used"] == 10
    assert len(db.get_balance_transactions(uid, limit=1)) == 1
    assert db.get_user_balance(str(uuid.uuid4())) is None
    assert db.add_funds(str(uuid.uuid4()), 1, "t") is False
    assert db.get_balance_transactions(str(uuid.uuid4())) == []


def test_chat(db):
    uid = _new(db)[0]
    sid = str(uuid.uuid4())
    assert db.create_chat_session(sid, uid, "gpt-4", "first chat") is True
    assert db.create_chat_session(sid, uid, "gpt-4", "first chat") is True
    assert db.save_chat_message("m-1", uid, sid, "gpt-4", "user", "hello", 5, 0) is True
    assert db.save_chat_message("m-1", uid, sid, "gpt-4", "user", "hello", 5, 0) is True   # stored once
    mid = str(uuid.uuid4())
    assert db.save_chat_message(mid, uid, sid, "gpt-4", "assistant", "hi!", 7, 0.0021) is True
    assert db.save_chat_message("m-3", uid, sid, "gpt-4", "robot", "?", 0, 0) is False
    h = db.get_chat_history(sid)
    assert [(m["role"], m["content"]) for m in h] == [("user", "hello"), ("assistant", "hi!")]
    assert h[1]["message_id"] == mid and h[1]["cost"] == Decimal("0.0021") and h[0]["user_id"] == uid
    assert db.get_chat_history(str(uuid.uuid4())) == []
    assert db.create_chat_session(sid, str(uuid.uuid4()), "gpt-4", "x") is False


def test_database_url_first_then_pg_variables(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "host=/nonexistent-dir port=1 connect_timeout=2")
    d = DatabaseService()
    with pytest.raises(pgmarket.ConnectionFailed):
        d.get_user_balance(str(uuid.uuid4()))
    monkeypatch.delenv("DATABASE_URL")
    d = DatabaseService()
    assert d.get_user_balance(str(uuid.uuid4())) is None
    d.close()

"""Every method of the client against the server, with typed results."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import pgmarket
from conftest import sql


def test_accounts(client):
    tag = uuid.uuid4().hex[:10]
    uid = client.create_user(f"A{tag}@Example.com ", f"a{tag}", "correct horse")
    assert isinstance(uid, uuid.UUID)
    assert client.authenticate(f"a{tag}@example.com", "correct horse") == uid
    assert client.authenticate(f"A{tag}", "correct horse") == uid
    assert client.authenticate(f"a{tag}", "wrong") is None
    assert client.authenticate("nobody@example.com", "x") is None
    mine = uuid.uuid4()
    assert client.create_user(f"b{tag}@example.com", f"b{tag}", id=str(mine), roles=["user", "developer"]) == mine
    h = client.hash_password("s3cret-pass")
    assert h.startswith("$argon2id$")
    assert client.verify_password("s3cret-pass", h) is True
    assert client.verify_password("other", h) is False
    c2 = pgmarket.Client(plain_secrets=True)
    try:
        assert c2.verify_password("s3cret-pass", c2.hash_password("s3cret-pass"))
        u2 = c2.create_user(f"c{tag}@example.com", f"c{tag}", "plain pass")
        assert c2.authenticate(f"c{tag}", "plain pass") == u2
    finally:
        c2.close()
    client.deactivate_user(mine)
    with pytest.raises(pgmarket.UnknownAccount):
        client.get_balance(mine)
    imported = client.import_user(uuid.uuid4(), f"i{tag}@example.com", f"i{tag}", None,
                                  datetime(2025, 1, 31, 12, tzinfo=timezone.utc))
    assert isinstance(imported, uuid.UUID)
    assert client.current_actor() is None
    assert client.credits(1500000) == Decimal("1.5")


def test_sealed_forms_taken_directly(client):
    from pgmarket._core import Sealed
    tag = uuid.uuid4().hex[:10]
    pk = client.vault_public_key()
    assert isinstance(pk, bytes) and len(pk) == 32
    uid = client.create_user_sealed(f"s{tag}@example.com", f"s{tag}", Sealed(b"P", "pw-123456").seal(pk))
    assert client.authenticate_sealed(f"s{tag}", Sealed(b"P", "pw-123456").seal(pk)) == uid
    h = client.hash_password_sealed(Sealed(b"P", "pw-123456").seal(pk))
    assert client.verify_password_sealed(Sealed(b"P", "pw-123456").seal(pk), h) is True
    client.add_funds(uid, 10)
    key = client.create_api_key(uid, "k")["api_key"]
    prefix = key[:24]
    assert client.verify_api_key_sealed(prefix, Sealed(b"K", key).seal(pk))["user_id"] == uid
    r = client.charge_api_key_sealed(prefix, Sealed(b"K", key).seal(pk), 1, "gpt-4", 10)
    assert r["kind"] == "charge"
    hold = client.reserve_api_key_sealed(prefix, Sealed(b"K", key).seal(pk), 2)
    assert client.release(uid, hold)["available_balance"] == 9
    kid = client.put_provider_key_sealed(uid, "openai", Sealed(None, "sk-direct-sealed").seal(pk))
    assert isinstance(kid, uuid.UUID)
    assert client.get_provider_key(uid, "openai") == "sk-direct-sealed"


def test_ledger(client, user):
    r = client.add_funds(user, "20.5", "dep-1", note="top-up")
    assert r["kind"] == "deposit" and r["replayed"] is False and r["amount"] == Decimal("20.5")
    again = client.add_funds(user, "20.5", "dep-1", note="top-up")
    assert again["replayed"] is True and again["entry_id"] == r["entry_id"]
    c = client.deduct_balance(user, "0.0042", "gpt-4o", 1234, "req-1")
    assert c["available_balance"] == Decimal("120.4958")
    part = client.refund(user, c["entry_id"], "0.0002")
    assert part["kind"] == "refund" and part["amount"] == Decimal("0.0002")
    rest = client.refund(user, c["entry_id"])
    assert rest["amount"] == Decimal("0.004")
    b = client.get_balance(user)
    assert set(b) == {"user_id", "total_balance", "spent_balance", "reserved_balance",
                      "available_balance", "updated_at"}
    assert b["user_id"] == user and isinstance(b["updated_at"], datetime)
    assert b["total_balance"] == Decimal("120.5") and b["spent_balance"] == 0
    entries = client.ledger_entries(user, 2)
    assert len(entries) == 2 and entries[0]["entry_id"] > entries[1]["entry_id"]
    older = client.ledger_entries(user, 10, before_id=entries[-1]["entry_id"])
    assert all(e["entry_id"] < entries[-1]["entry_id"] for e in older)
    assert any(e["note"] == "top-up" for e in client.ledger_entries(user))
    hold = client.reserve(user, 10, timedelta(minutes=5), "hold-1")
    assert client.reserve(user, 10, timedelta(minutes=5), "hold-1") == hold
    assert client.get_balance(user)["reserved_balance"] == 10
    s = client.settle(user, hold, 4, "claude", 99)
    assert s["amount"] == 4 and client.get_balance(user)["reserved_balance"] == 0
    h2 = client.reserve(user, 1, "1 minute")
    assert client.release(user, h2)["reserved_balance"] == 0
    assert isinstance(client.expire_reservations(), int)
    assert client.verify_ledger() == []


def test_generated_idempotency_keys(client, user):
    client.deduct_balance(user, 1, "gpt-4")
    client.add_funds(user, 1)
    keys = [e["idempotency_key"] for e in client.ledger_entries(user, 2)]
    assert all(k and k.startswith("py-") for k in keys) and keys[0] != keys[1]


def test_deduct_batch(client, make_user):
    a, b = make_user(5), make_user(1)
    rows = client.deduct_batch([
        (a, 2, "gpt-4", 10, "b-1"),
        {"user_id": b, "amount": "1.5", "model_id": "gpt-4"},
        (a, "0.5", "gpt-4"),
        (b, "1e-7", "gpt-4"),
    ])
    assert [r["ordinal"] for r in rows] == [1, 2, 3, 4]
    assert [r["sqlstate"] for r in rows] == ["00000", "PM001", "00000", "22023"]
    assert rows[2]["available_balance"] == Decimal("2.5")
    assert client.deduct_batch([]) == []
    assert client.deduct_batch([(a, 2, "gpt-4", 10, "b-1")])[0]["entry_id"] == rows[0]["entry_id"]


def test_vault(client, user):
    kid = client.put_provider_key(user, "OpenAI", "sk-secret-abcd1234", "work")
    assert client.get_provider_key(user, "openai") == "sk-secret-abcd1234"
    keys = client.list_provider_keys(user)
    assert keys[0]["key_id"] == kid and keys[0]["hint"] == "1234" and keys[0]["label"] == "work"
    assert client.revoke_provider_key(user, kid) is True
    assert client.revoke_provider_key(user, kid) is False
    with pytest.raises(pgmarket.KeyNotFound):
        client.get_provider_key(user, "openai")
    assert client.rotate_master_key(10) == 0
    assert client.rotate_all_keys(10) is None
    c2 = pgmarket.Client(plain_secrets=True)
    try:
        c2.put_provider_key(user, "anthropic", "sk-ant-plain-0000")
        assert c2.get_provider_key(user, "anthropic") == "sk-ant-plain-0000"
    finally:
        c2.close()


def test_platform_keys(client, user):
    k = client.create_api_key(user, "gateway", ["read", "write"], "free",
                              datetime.now(timezone.utc) + timedelta(days=1), "test", 50, "month")
    assert k["api_key"].startswith("sk_test_") and isinstance(k["key_id"], uuid.UUID)
    v = client.verify_api_key(k["api_key"])
    assert v["user_id"] == user and v["scopes"] == ["read", "write"]
    assert client.verify_api_key("garbage") is None
    assert client.verify_api_key(k["api_key"][:-2] + "xx") is None
    r = client.charge_api_key(k["api_key"], "0.25", "gpt-4", 100, "gw-1")
    assert r["amount"] == Decimal("0.25")
    assert client.charge_api_key(k["api_key"], "0.25", "gpt-4", 100, "gw-1")["replayed"] is True
    hold = client.reserve_api_key(k["api_key"], 1, "2 minutes")
    assert isinstance(hold, int)
    listed = client.list_api_keys(user)
    assert listed[0]["spent"] == Decimal("1.25") and "hash" not in str(listed[0].keys())
    assert client.api_key_partition(k["api_key"]) == client.api_key_partition(k["api_key"][:24])
    assert client.revoke_api_key(user, k["key_id"]) is True
    assert client.verify_api_key(k["api_key"]) is None
    with pytest.raises(pgmarket.InvalidApiKey):
        client.charge_api_key(k["api_key"], 1, "gpt-4")
    c2 = pgmarket.Client(plain_secrets=True)
    try:
        k2 = client.create_api_key(user, "plain")
        assert c2.verify_api_key(k2["api_key"])["key_id"] == k2["key_id"]
        assert c2.charge_api_key(k2["api_key"], 1, "m")["kind"] == "charge"
        assert isinstance(c2.reserve_api_key(k2["api_key"], 1), int)
    finally:
        c2.close()


def test_chat(client, user):
    sid = uuid.uuid4()
    assert client.create_chat_session(user, "gpt-4", "hello", "agent-1", id=sid) == sid
    assert client.create_chat_session(user, "gpt-4", "hello", "agent-1", id=sid) == sid
    m1 = client.save_chat_message(user, sid, "user", "hi", 2, 0, {"tool": "x"})
    mu = uuid.uuid4()
    m2 = client.save_chat_message(user, sid, "assistant", "hey", 3, "0.001", None, mu, "gpt-4o")
    assert client.save_chat_message(user, sid, "assistant", "hey", 3, "0.001", None, mu, "gpt-4o") == m2
    r = client.record_completion(user, sid, "answer", 10, "0.02")
    assert r["kind"] == "charge" and r["amount"] == Decimal("0.02")
    hist = client.get_chat_history(user, sid)
    assert [h["message_id"] for h in hist][::-1] == sorted(h["message_id"] for h in hist)
    assert hist[-1]["tool_calls"] == {"tool": "x"} and hist[-1]["message_id"] == m1
    oldest = client.get_chat_history(user, sid, 3, None, True)
    assert [h["content"] for h in oldest] == ["hi", "hey", "answer"] and oldest[1]["message_uuid"] == mu
    assert [h["content"] for h in client.get_chat_history(user, sid, 2, None, True)] == ["hey", "answer"]
    assert oldest[1]["model_id"] == "gpt-4o" and oldest[0]["model_id"] == "gpt-4"
    client.update_chat_context(user, sid, {"a": 1})
    client.update_chat_context(user, sid, {"b": 2})
    sessions = client.list_chat_sessions(user)
    assert sessions[0]["context"] == {"a": 1, "b": 2} and sessions[0]["message_count"] == 3
    client.update_chat_context(user, sid, {"c": 3}, merge=False)
    assert client.list_chat_sessions(user, "active", 10)[0]["context"] == {"c": 3}
    assert client.chat_session_owner(sid) == user
    assert client.chat_session_owner(uuid.uuid4()) is None
    client.end_chat_session(user, sid, "completed", "done")
    assert client.list_chat_sessions(user, "completed")[0]["session_id"] == sid
    s2 = client.create_chat_session(user, "gpt-4")
    client.delete_chat_session(user, s2)
    assert client.chat_session_owner(s2) is None
    client.rate_model(user, "gpt-4", 5, "great")
    client.set_preference(user, "theme", {"dark": True})
    client.set_preference(user, "lang", "en")
    prefs = {p["key"]: p["value"] for p in client.get_preferences(user)}
    assert prefs == {"theme": {"dark": True}, "lang": "en"}
    assert client.delete_preference(user, "lang") is True
    assert client.delete_preference(user, "lang") is False


def test_audit(client, user):
    sql(client, "CREATE TABLE IF NOT EXISTS py_audited (id int PRIMARY KEY, secret text)", shape="void")
    client.enable_audit("py_audited", ["secret"])
    sql(client, "INSERT INTO py_audited VALUES (1, 'x') ON CONFLICT DO NOTHING", shape="void")
    assert client.seal_audit() >= 1
    head = client.audit_head()
    assert head["last_id"] >= 1 and isinstance(head["chain_hash"], bytes)
    anchor = head["last_id"].to_bytes(8, "big") + head["chain_hash"]
    v = client.verify_audit(True, anchor)
    assert v["first_bad_id"] is None and v["checked"] >= 1
    client.disable_audit("py_audited")


def test_projects(client, user):
    p = client.save_project(user, "shop", "web", {"language": "python"}, ["flask"], {"PY": "3.11"})
    assert isinstance(p, uuid.UUID)
    row = client.get_project(user, p)
    assert row["name"] == "shop" and row["dependencies"] == ["flask"] and row["codebase"] == {"language": "python"}
    assert client.save_project(user, "shop2", "web", id=p, test_coverage=81.5) == p
    assert client.get_project(user, p)["test_coverage"] == Decimal("81.5")
    assert [x["id"] for x in client.list_projects(user)] == [p]
    m = client.request_modification(user, p, "add a cart", {"risk": "low"}, ["app.py"])
    client.set_modification_status(user, m, "approved")
    client.set_modification_status(user, m, "applied", {"tests": "passed"}, ["app.py"])
    with pytest.raises(pgmarket.InvalidValue):
        client.set_modification_status(user, m, "requested")
    mods = client.list_modifications(user, p)
    assert mods[0]["status"] == "applied" and mods[0]["results"] == {"tests": "passed"}
    client.archive_project(user, p)
    assert client.list_projects(user) == [] and len(client.list_projects(user, None)) == 1
    with pytest.raises(pgmarket.AppendOnly):
        client.archive_project(user, p)
    name = "tpl-" + uuid.uuid4().hex[:8]
    t = client.save_template(name, "api", {"main.py": "..."}, "a template", ["DATABASE_URL"], ["python"],
                             {"PORT": "8000"}, ["fastapi"], 5, "beginner")
    assert isinstance(t, uuid.UUID)
    assert client.get_template(name)["files"] == {"main.py": "..."}
    assert name in [x["name"] for x in client.list_templates("api")]
    assert name in [x["name"] for x in client.list_templates()]


def test_health(client):
    h = client.health()
    assert h["ok"] is True and h["version"] == pgmarket.__version__
    assert h["vault"]["loaded"] is True and isinstance(h["problems"], list)
    assert h["logs_bind_parameters"] is True        # run.sh sets log_statement = all
    assert client.ping() is True


def test_a_lost_connection_is_replaced_and_a_charge_retried_once(client, user):
    c = pgmarket.Client()
    try:
        c.get_balance(user)
        pid = sql(c, "SELECT pg_backend_pid() AS pid")[0]["pid"]
        sql(client, "SELECT pg_terminate_backend(%s, 5000)", [pid], shape="void")
        r = c.deduct_balance(user, 1, "gpt-4", 1, "after-loss")       # retried on a new connection
        assert r["replayed"] is False and r["available_balance"] == 99
        assert sql(c, "SELECT pg_backend_pid() AS pid")[0]["pid"] != pid
        pid = sql(c, "SELECT pg_backend_pid() AS pid")[0]["pid"]
        sql(client, "SELECT pg_terminate_backend(%s, 5000)", [pid], shape="void")
        assert c.health()["ok"] is True
    finally:
        c.close()


def test_a_lost_connection_is_not_retried_for_a_write_without_a_key(client, user):
    c = pgmarket.Client()
    try:
        s = c.create_chat_session(user, "gpt-4")
        pid = sql(c, "SELECT pg_backend_pid() AS pid")[0]["pid"]
        sql(client, "SELECT pg_terminate_backend(%s, 5000)", [pid], shape="void")
        with pytest.raises(pgmarket.ConnectionFailed):
            c.save_chat_message(user, s, "user", "once")
        assert c.save_chat_message(user, s, "user", "twice") > 0        # reconnected
    finally:
        c.close()


def test_secrets_never_reach_the_server_log(client, user):
    log = os.environ.get("PGMARKET_SERVER_LOG")
    if not log or not os.access(log, os.R_OK):
        pytest.skip("no readable server log")
    tag = uuid.uuid4().hex
    password, provider_secret = "pw-" + tag, "sk-prov-" + tag
    u = client.create_user(f"l{tag[:10]}@example.com", f"l{tag[:10]}", password)
    assert client.authenticate(f"l{tag[:10]}", password) == u
    client.verify_password(password, client.hash_password(password))
    client.put_provider_key(u, "openai", provider_secret)
    client.add_funds(u, 5)
    key = client.create_api_key(u, "k")["api_key"]
    client.verify_api_key(key)
    client.charge_api_key(key, 1, "gpt-4")
    client.reserve_api_key(key, 1)
    client.check_rate_limit(key)
    sql(client, "SELECT 'log-marker-" + tag + "'")
    with open(log, encoding="utf-8", errors="replace") as f:
        text = f.read()
    assert "log-marker-" + tag in text                          # the log does keep statements
    assert password not in text and provider_secret not in text
    assert key not in text and key[24:] not in text

"""Every exception class, raised by the server for what causes it, with
its SQLSTATE."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

import pgmarket
from conftest import sql

CLASSES = {
    "PM001": pgmarket.InsufficientFunds, "PM002": pgmarket.UnknownAccount,
    "PM003": pgmarket.IdempotencyConflict, "PM004": pgmarket.ReservationState,
    "PM005": pgmarket.RateLimited, "PM010": pgmarket.VaultUnavailable,
    "PM011": pgmarket.DecryptionFailed, "PM012": pgmarket.KeyNotFound,
    "PM013": pgmarket.AuditChainBroken, "28000": pgmarket.InvalidApiKey,
    "42501": pgmarket.PermissionDenied, "22023": pgmarket.InvalidValue,
    "22021": pgmarket.InvalidText, "22004": pgmarket.NullValue, "22003": pgmarket.OutOfRange,
    "23505": pgmarket.Duplicate, "55000": pgmarket.AppendOnly,
}


@pytest.mark.parametrize("state", sorted(CLASSES))
def test_each_sqlstate_raises_its_class(client, state):
    text = ("DO $$ BEGIN RAISE EXCEPTION 'raised for %%' , 'test' USING ERRCODE = '" + state +
            "', DETAIL = 'the detail', HINT = 'the hint'; END $$")
    with pytest.raises(CLASSES[state]) as e:
        sql(client, text, shape="void")
    assert e.value.sqlstate == state == CLASSES[state].SQLSTATE
    assert e.value.message == "raised for test"
    assert e.value.detail == "the detail" and e.value.hint == "the hint"
    assert isinstance(e.value, pgmarket.Error)
    assert isinstance(e.value.__cause__, psycopg.Error)
    assert state in str(e.value)


def test_other_sqlstates_raise_the_base_class(client):
    with pytest.raises(pgmarket.Error) as e:
        sql(client, "SELECT 1/0", shape="scalar")
    assert type(e.value) is pgmarket.Error and e.value.sqlstate == "22012"


def test_insufficient_funds(client, user):
    with pytest.raises(pgmarket.InsufficientFunds) as e:
        client.deduct_balance(user, "100.000001", "gpt-4")
    assert "100.000001" in e.value.message


def test_unknown_account(client):
    with pytest.raises(pgmarket.UnknownAccount):
        client.get_balance(uuid.uuid4())


def test_idempotency_conflict(client, user):
    client.deduct_balance(user, 1, "gpt-4", idempotency_key="k-1")
    with pytest.raises(pgmarket.IdempotencyConflict):
        client.deduct_balance(user, 2, "gpt-4", idempotency_key="k-1")


def test_reservation_state(client, user):
    hold = client.reserve(user, 5)
    client.release(user, hold)
    with pytest.raises(pgmarket.ReservationState):
        client.settle(user, hold, 1, "gpt-4")


def test_rate_limited(client, user):
    tier = "err-" + uuid.uuid4().hex[:12]
    client.set_tier(tier, 2, None)
    key = client.create_api_key(user, "limited", rate_limit_tier=tier)["api_key"]
    client.charge_api_key(key, 1, "gpt-4")
    client.charge_api_key(key, 1, "gpt-4")
    with pytest.raises(pgmarket.RateLimited) as e:
        client.charge_api_key(key, 1, "gpt-4")
    assert e.value.sqlstate == "PM005" and f'tier "{tier}"' in e.value.message
    assert 0 < e.value.retry_after_ms <= 61000
    assert "2 requests" in e.value.detail
    assert client.get_balance(user)["available_balance"] == 98     # the refused call charged nothing


def test_vault_unavailable(client, user):
    key = os.environ["PGMARKET_TEST_KEYFILE"]
    sql(client, f"COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && mv {key} {key}.away'", shape="void")
    try:
        with pytest.raises(pgmarket.VaultUnavailable):
            client.put_provider_key(user, "openai", "sk-test-1234567890")
    finally:
        sql(client, f"COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && mv {key}.away {key}'", shape="void")
    assert client.put_provider_key(user, "openai", "sk-test-1234567890")


def test_decryption_failed(client, user):
    from nacl.public import PrivateKey, SealedBox
    other = PrivateKey.generate().public_key
    with pytest.raises(pgmarket.DecryptionFailed):
        client.put_provider_key_sealed(user, "openai", SealedBox(other).encrypt(b"sk-elsewhere"))


def test_key_not_found(client, user):
    with pytest.raises(pgmarket.KeyNotFound):
        client.get_provider_key(user, "mistral")


def test_audit_chain_broken(client, user):
    client.seal_audit()
    with pytest.raises(pgmarket.AuditChainBroken):
        client.verify_audit(True, (1).to_bytes(8, "big") + bytes(32) + b"")
    assert client.verify_audit()["first_bad_id"] is None


def test_invalid_api_key(client):
    with pytest.raises(pgmarket.InvalidApiKey):
        client.charge_api_key("sk_live_0000000000000000_" + "A" * 43, 1, "gpt-4")
    with pytest.raises(pgmarket.InvalidApiKey):
        client.charge_api_key("not a key", 1, "gpt-4")      # refused without being sent
    with pytest.raises(pgmarket.InvalidApiKey):
        client.reserve_api_key("not a key", 1)


def test_permission_denied(client, make_user):
    a, b = make_user(10), make_user(10)
    with pytest.raises(pgmarket.PermissionDenied):
        with pgmarket.actor(client, a) as c:
            c.deduct_balance(b, 1, "gpt-4")
    k = client.create_api_key(a, "read only", scopes=["read"])
    with pytest.raises(pgmarket.PermissionDenied):
        client.charge_api_key(k["api_key"], 1, "gpt-4")


def test_invalid_null_out_of_range(client, user):
    with pytest.raises(pgmarket.InvalidValue):
        client.create_user("not an email", "someone")
    with pytest.raises(pgmarket.InvalidValue):
        client.get_balance("not-a-uuid")                       # refused on the client
    with pytest.raises(pgmarket.NullValue):
        client.deduct_balance(user, 1, None)
    with pytest.raises(pgmarket.NullValue):
        client.get_balance(None)
    with pytest.raises(pgmarket.OutOfRange):
        client.add_funds(user, "9000000000000")


def test_duplicate(client, user):
    tag = uuid.uuid4().hex[:10]
    client.create_user(f"{tag}@example.com", f"d{tag}")
    with pytest.raises(pgmarket.Duplicate):
        client.create_user(f"{tag}@EXAMPLE.com", f"e{tag}")


def test_append_only(client, user):
    s = client.create_chat_session(user, "gpt-4")
    client.end_chat_session(user, s, "completed")
    with pytest.raises(pgmarket.AppendOnly):
        client.save_chat_message(user, s, "user", "too late")
    with pytest.raises(pgmarket.AppendOnly):
        sql(client, "DELETE FROM pgmarket.ledger", shape="void")


def test_connection_failed():
    c = pgmarket.Client("host=/nonexistent-socket-dir port=1 connect_timeout=2")
    with pytest.raises(pgmarket.ConnectionFailed) as e:
        c.get_balance(uuid.uuid4())
    assert e.value.sqlstate is None
    assert c.ping() is False
    c = pgmarket.Client("dbname=no_such_database_here")
    with pytest.raises(pgmarket.ConnectionFailed) as e:
        c.health()
    assert "no_such_database_here" in e.value.message


def test_invalid_text(client):
    import time
    from nacl.public import PublicKey, SealedBox
    blob = SealedBox(PublicKey(client.vault_public_key())).encrypt(
        b"\x01P" + int(time.time()).to_bytes(8, "big") + b"\xff\xfe not utf-8")
    with pytest.raises(pgmarket.InvalidText) as e:
        client.authenticate_sealed("someone", blob)
    assert e.value.sqlstate == "22021" and isinstance(e.value, pgmarket.InvalidValue)

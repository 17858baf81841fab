"""The account surface: lookups, updates, passwords and resets, roles,
identities."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

import pgmarket
from conftest import sql


def test_lookups_and_updates(client):
    tag = uuid.uuid4().hex[:10]
    uid = client.create_user(f"Look{tag}@Example.com", f"look{tag}", "pw-lookups")
    u = client.get_user(uid)
    assert u["id"] == uid and u["email"] == f"look{tag}@example.com" and u["is_active"] is True
    assert "password_hash" not in u
    assert client.get_user_by_email(f"  LOOK{tag}@example.COM")["id"] == uid
    assert client.get_user_by_username(f"LOOK{tag}")["id"] == uid
    assert client.get_user(uuid.uuid4()) is None
    assert client.get_user_by_email("nobody@example.com") is None
    assert isinstance(client.update_last_login(uid), datetime)
    client.update_user(uid, email=f"new{tag}@example.com")
    client.update_user(uid, username=f"new{tag}")
    assert client.get_user_by_username(f"new{tag}")["email"] == f"new{tag}@example.com"
    client.deactivate_user(uid)
    assert client.get_user(uid)["is_active"] is False
    client.reactivate_user(uid)
    assert client.get_user(uid)["is_active"] is True


def test_passwords_and_resets(client):
    tag = uuid.uuid4().hex[:10]
    uid = client.create_user(f"pw{tag}@example.com", f"pw{tag}", "first-password")
    assert client.change_password(uid, "wrong", "second-password") is False
    assert client.change_password(uid, "first-password", "second-password") is True
    assert client.authenticate(f"pw{tag}", "second-password") == uid
    token = client.create_password_reset(uid, "10 minutes")
    assert isinstance(client.reset_token_partition(token), int)
    assert client.reset_password(token, "third-password") == uid
    assert client.reset_password(token, "fourth-password") is None
    assert client.authenticate(f"pw{tag}", "third-password") == uid
    with pytest.raises(pgmarket.InvalidValue):
        client.create_password_reset(uid, "8 days")
    from pgmarket._core import Sealed
    pk = client.vault_public_key()
    assert client.change_password_sealed(uid, Sealed(b"P", "third-password").seal(pk),
                                         Sealed(b"P", "fifth-password").seal(pk)) is True
    t2 = client.create_password_reset(uid)
    assert client.reset_password_sealed(t2, Sealed(b"P", "sixth-password").seal(pk)) == uid
    plain = pgmarket.Client(plain_secrets=True)
    try:
        assert plain.change_password(uid, "sixth-password", "seventh-password") is True
        assert plain.reset_password(plain.create_password_reset(uid), "eighth-password") == uid
    finally:
        plain.close()
    assert client.authenticate(f"pw{tag}", "eighth-password") == uid


def test_roles_and_identities(client):
    tag = uuid.uuid4().hex[:8]
    uid = client.create_user(f"r{tag}@example.com", f"r{tag}")
    client.add_account_role(f"tester-{tag}", "for the python tests")
    assert client.has_role(uid, f"tester-{tag}") is False
    client.grant_user_role(uid, f"tester-{tag}")
    assert client.has_role(uid, f"tester-{tag}") is True
    client.revoke_user_role(uid, f"tester-{tag}")
    assert client.has_role(uid, f"tester-{tag}") is False
    with pytest.raises(pgmarket.InvalidValue):
        client.grant_user_role(uid, "no-such-role-" + tag)
    client.link_identity(uid, "github", f"gh-{tag}")
    assert client.user_by_identity("github", f"gh-{tag}") == uid
    assert client.unlink_identity(uid, "github") is True
    assert client.unlink_identity(uid, "github") is False
    assert client.user_by_identity("github", f"gh-{tag}") is None


def _django_pbkdf2(password: str, iterations: int = 1000) -> str:
    import base64
    import hashlib
    salt = uuid.uuid4().hex[:16]
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations, 32)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(dk).decode()}"


def test_create_user_hashed_then_authenticate(client):
    tag = uuid.uuid4().hex[:10]
    h = _django_pbkdf2("django-password")
    uid = client.create_user_hashed(f"dj{tag}@example.com", f"dj{tag}", h)
    assert isinstance(uid, uuid.UUID)
    assert client.get_user(uid)["roles"] == ["user"]
    assert client.authenticate(f"dj{tag}", "wrong-password") is None
    assert client.authenticate(f"dj{tag}@example.com", "django-password") == uid
    # the first login replaced the hash with Argon2id; the password still works
    stored = sql(client, "SELECT password_hash FROM pgmarket.accounts WHERE id = %s", [uid], "scalar")
    assert stored.startswith("$argon2id$")
    assert client.authenticate(f"dj{tag}", "django-password") == uid
    own = uuid.uuid4()
    assert client.create_user_hashed(f"dk{tag}@example.com", f"dk{tag}", _django_pbkdf2("x"),
                                     roles=["user", "admin"], id=own) == own
    plain = pgmarket.Client(plain_secrets=True)
    try:
        assert plain.authenticate(f"dk{tag}", "x") == own
    finally:
        plain.close()
    with pytest.raises(pgmarket.Duplicate):
        client.create_user_hashed(f"dj{tag}@example.com", f"other{tag}", h)
    with pytest.raises(pgmarket.InvalidValue):
        client.create_user_hashed(f"bad{tag}@example.com", f"bad{tag}", "md5$not$a$format")
    with pytest.raises(pgmarket.NullValue):
        client.create_user_hashed(f"nul{tag}@example.com", f"nul{tag}", None)


def test_erase_user_leaves_a_tombstone(client):
    tag = uuid.uuid4().hex[:10]
    uid = client.create_user(f"er{tag}@example.com", f"er{tag}", "pw-erase")
    client.add_funds(uid, 5)
    client.set_preference(uid, "theme", "dark")
    client.erase_user(uid)
    u = client.get_user(uid)
    assert u["id"] == uid and u["is_active"] is False
    assert u["email"] == f"{uid}@erased.invalid" and u["username"] == f"erased-{uid.hex}"
    assert client.get_user_by_email(f"er{tag}@example.com") is None
    assert client.authenticate(f"er{tag}", "pw-erase") is None
    with pytest.raises(pgmarket.UnknownAccount):
        client.get_balance(uid)
    client.erase_user(uid)                                       # again: not an error
    assert client.verify_ledger() == []


def test_audit_open_reads_personal_values_until_erasure(client):
    tag = uuid.uuid4().hex[:10]
    email = f"au{tag}@example.com"
    uid = client.create_user(email, f"au{tag}", "pw-audit")
    q = ("SELECT row_key, new_values FROM pgmarket.audit_log WHERE table_name = 'pgmarket.accounts'"
         " AND operation = 'INSERT' AND row_key ->> 'id' = %s")
    row = sql(client, q, [str(uid)])[0]
    assert row["new_values"]["email"] != email                   # kept under the user's key
    opened = client.audit_open(row["new_values"])
    assert opened["email"] == email and opened["username"] == f"au{tag}"
    assert client.audit_open_value("email", row["new_values"]["email"]) == email
    assert client.audit_open(row["row_key"]) == row["row_key"]
    assert client.audit_open_value("note", "plain text") == "plain text"
    assert client.audit_open([1, 2]) == [1, 2]
    client.erase_user(uid)
    assert client.audit_open(row["new_values"])["email"] == "[erased]"
    assert client.verify_audit()["first_bad_id"] is None


def test_import_batch_then_export_accounts(client):
    tag = uuid.uuid4().hex[:10]
    a, b = uuid.uuid4(), uuid.uuid4()
    created = datetime(2024, 1, 2, 3, 4, 5).astimezone()
    records = [
        {"id": a, "email": f"ia{tag}@example.com", "username": f"ia{tag}",
         "password_hash": _django_pbkdf2("imported-a"), "created_at": created},
        {"id": str(b), "email": f"ib{tag}@example.com", "username": f"ib{tag}"},
    ]
    rows = client.import_batch("users", records)
    assert [(r["idx"], r["outcome"]) for r in rows] == [(1, "created"), (2, "created")]
    again = client.import_batch("users", records + [
        {"id": str(uuid.uuid4()), "email": "not an email", "username": f"ic{tag}"}])
    assert [r["outcome"] for r in again] == ["present", "present", "rejected"]
    assert again[2]["reasons"] and any("22023" in x for x in again[2]["reasons"])
    by_id = {r["id"]: r for r in client.export_accounts()}
    assert by_id[a]["email"] == f"ia{tag}@example.com" and by_id[a]["created_at"] == created
    assert by_id[a]["password_hash"].startswith("pbkdf2_sha256$")
    assert by_id[b]["username"] == f"ib{tag}" and by_id[b]["password_hash"] is None
    assert client.authenticate(f"ia{tag}", "imported-a") == a
    with pytest.raises(pgmarket.Error):
        client.import_batch("nothing", [])
    assert client.import_batch("users", []) == []

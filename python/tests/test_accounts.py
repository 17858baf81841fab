"""The account surface: lookups, updates, passwords and resets, roles,
identities."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

import pgmarket
from conftest import sql


@pytest.fixture(autouse=True)
def _account_surface(client):
    if not sql(client, "SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n"
                       " ON n.oid = p.pronamespace WHERE n.nspname = 'pgmarket'"
                       " AND p.proname = 'reset_token_partition'"):
        pytest.skip("the installed extension has no account surface yet")


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

"""Every SQL function of pgmarket as a method, written once for both clients.

Each method builds a :class:`~pgmarket._core.Call` and hands it to
``self._call``: the sync client runs it and returns the answer, the async
one returns a coroutine.  Names and arguments are the SQL function's
(tests/test_catalog.py checks this against the installed extension).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from psycopg.types.json import Jsonb

from ._core import (OMIT, OPT_ROW, PROCEDURE, ROW, ROWS, SCALAR, VOID, AmountLike,
                    Call, IntervalLike, Row, Sealed, UUIDLike, new_idempotency_key,
                    or_omit, to_amount, to_uuid)
from .errors import InvalidApiKey

_KEY_PREFIX = re.compile(r"\Ask_(live|test)_[0-9a-f]{16}")
_PASSWORD, _API_KEY = b"P", b"K"


def _args(*spec: Tuple[str, str, Any]) -> List[Tuple[str, str, Any]]:
    """(name, sqltype, value) with uuids and amounts checked on the client."""
    out: List[Tuple[str, str, Any]] = []
    for name, sqltype, value in spec:
        if value is not OMIT and not isinstance(value, Sealed):
            if sqltype == "uuid":
                value = to_uuid(value, name)
            elif sqltype == "numeric":
                value = to_amount(value, name)
        out.append((name, sqltype, value))
    return out


def _json_default(value: Any) -> Any:
    """JSON for the values a record of an import holds besides JSON's own:
    uuids and amounts as their text (an amount is exact text), times in ISO 8601."""
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _key(value: Optional[str]) -> str:
    return new_idempotency_key() if value is None else value


def _key_prefix(api_key: Optional[str]) -> Optional[str]:
    m = _KEY_PREFIX.match(api_key) if isinstance(api_key, str) else None
    return m.group(0) if m else None


class Methods:
    """The pgmarket API; see :class:`pgmarket.Client`."""

    plain_secrets: bool = False

    def _call(self, call: Call) -> Any:  # pragma: no cover - the clients define it
        raise NotImplementedError

    # ----------------------------------------------------------------- accounts

    def create_user(self, email: str, username: str, password: Optional[str] = None,
                    roles: Sequence[str] = ("user",), id: Optional[UUIDLike] = None) -> uuid.UUID:
        """Register a user; returns the new user's id.

        The password, if given, travels sealed (``create_user_sealed``) and is
        stored as an Argon2id hash.  ``id`` None lets the server choose.
        Raises Duplicate (23505) for a taken email or username, InvalidValue
        for a malformed one.
        """
        if password is not None and not self.plain_secrets:
            return self._call(Call("create_user_sealed", _args(
                ("email", "text", email), ("username", "text", username),
                ("sealed_password", "bytea", Sealed(_PASSWORD, password)),
                ("roles", "text[]", list(roles)), ("id", "uuid", or_omit(id))), SCALAR))
        return self._call(Call("create_user", _args(
            ("email", "text", email), ("username", "text", username),
            ("password", "text", password), ("roles", "text[]", list(roles)),
            ("id", "uuid", or_omit(id))), SCALAR))

    def create_user_sealed(self, email: str, username: str, sealed_password: Optional[bytes] = None,
                           roles: Sequence[str] = ("user",), id: Optional[UUIDLike] = None) -> uuid.UUID:
        """``create_user`` with a password the caller sealed itself."""
        return self._call(Call("create_user_sealed", _args(
            ("email", "text", email), ("username", "text", username),
            ("sealed_password", "bytea", sealed_password), ("roles", "text[]", list(roles)),
            ("id", "uuid", or_omit(id))), SCALAR))

    def authenticate(self, login: str, password: str) -> Optional[uuid.UUID]:
        """The user id for a login (email or username) and password, or None
        for a wrong password, an unknown login or a deactivated user alike.
        Stamps ``last_login_at``.  The password travels sealed."""
        if password is not None and not self.plain_secrets:
            return self._call(Call("authenticate_sealed", _args(
                ("login", "text", login), ("sealed_password", "bytea", Sealed(_PASSWORD, password))), SCALAR))
        return self._call(Call("authenticate", _args(("login", "text", login), ("password", "text", password)), SCALAR))

    def authenticate_sealed(self, login: str, sealed_password: bytes) -> Optional[uuid.UUID]:
        """``authenticate`` with a password the caller sealed itself."""
        return self._call(Call("authenticate_sealed", _args(
            ("login", "text", login), ("sealed_password", "bytea", sealed_password)), SCALAR))

    def deactivate_user(self, user_id: UUIDLike) -> None:
        """Soft-delete a user: later calls for them raise UnknownAccount."""
        return self._call(Call("deactivate_user", _args(("user_id", "uuid", user_id)), VOID))

    def hash_password(self, password: str) -> str:
        """An Argon2id hash of the password (sent sealed)."""
        if password is not None and not self.plain_secrets:
            return self._call(Call("hash_password_sealed", _args(
                ("sealed_password", "bytea", Sealed(_PASSWORD, password))), SCALAR, retry=True))
        return self._call(Call("hash_password", _args(("password", "text", password)), SCALAR, retry=True))

    def hash_password_sealed(self, sealed_password: bytes) -> str:
        """``hash_password`` of a password the caller sealed itself."""
        return self._call(Call("hash_password_sealed", _args(("sealed_password", "bytea", sealed_password)), SCALAR))

    def verify_password(self, password: str, hash: str) -> bool:
        """Whether the password matches a stored hash (any format pgmarket keeps).

        Sealed, the server checks it only against hashes at least as costly
        as its own (InvalidValue for a cheaper one); ``plain_secrets=True``
        checks any."""
        if password is not None and not self.plain_secrets:
            return self._call(Call("verify_password_sealed", _args(
                ("sealed_password", "bytea", Sealed(_PASSWORD, password)), ("hash", "text", hash)), SCALAR, retry=True))
        return self._call(Call("verify_password", _args(("password", "text", password), ("hash", "text", hash)), SCALAR, retry=True))

    def verify_password_sealed(self, sealed_password: bytes, hash: str) -> bool:
        """``verify_password`` of a password the caller sealed itself."""
        return self._call(Call("verify_password_sealed", _args(
            ("sealed_password", "bytea", sealed_password), ("hash", "text", hash)), SCALAR))

    def import_user(self, id: UUIDLike, email: str, username: str, password_hash: Optional[str] = None,
                    created_at: Optional[datetime] = None) -> uuid.UUID:
        """Create an account with a hash made elsewhere (``pgmarket_admin``)."""
        return self._call(Call("import_user", _args(
            ("id", "uuid", id), ("email", "text", email), ("username", "text", username),
            ("password_hash", "text", password_hash), ("created_at", "timestamptz", created_at)), SCALAR))

    def create_user_hashed(self, email: str, username: str, password_hash: str,
                           roles: Sequence[str] = ("user",), id: Optional[UUIDLike] = None) -> uuid.UUID:
        """Register a user with a password hash made elsewhere; the new id.

        The hash must be in a format pgmarket keeps (Django / passlib
        ``pbkdf2_sha256$...``, Argon2id, and the others README's Accounts
        lists), else InvalidValue; ``authenticate`` verifies it and replaces
        it with Argon2id at the first login.  Checked as ``create_user``
        checks its arguments (Duplicate for a taken email, username or id).
        ``id`` None lets the server choose."""
        return self._call(Call("create_user_hashed", _args(
            ("email", "text", email), ("username", "text", username),
            ("password_hash", "text", password_hash), ("roles", "text[]", list(roles)),
            ("id", "uuid", or_omit(id))), SCALAR))

    def erase_user(self, user_id: UUIDLike) -> None:
        """Forget a user (``pgmarket_admin``): the account becomes a
        tombstone without email, username or hash, and the user's key of the
        audit trail's personal values is destroyed, so that those values
        read ``[erased]`` from then on while the chain still verifies.
        Erasing an erased user again is no error (so it is retried after a
        lost connection)."""
        return self._call(Call("erase_user", _args(("user_id", "uuid", user_id)), VOID, retry=True))

    # --------------------------------------------------------------- migration

    def import_batch(self, section: str, records: Iterable[Mapping[str, Any]]) -> List[Row]:
        """Apply a batch of at most 10,000 records of one section of an
        import (``users``, ``entries``, ``provider_keys``, ``chats``; README
        lists each record's members) in one statement (``pgmarket_admin``).

        One row per record, in order: idx (from 1), outcome (``created``,
        ``present`` or ``rejected``) and reasons (the server's message and
        SQLSTATE of a rejected record).  uuids, Decimals and datetimes in
        the records are sent as their text.  A bad batch raises and applies
        nothing."""
        return self._call(Call("import_batch", _args(
            ("section", "text", section),
            ("records", "jsonb", None if records is None else Jsonb(list(records), dumps=_json_dumps))), ROWS))

    def export_accounts(self) -> List[Row]:
        """The active accounts with their password hashes (id, email,
        username, password_hash, created_at), for an export that gives every
        login back (``pgmarket_admin``)."""
        return self._call(Call("export_accounts", [], ROWS, retry=True))

    def health(self) -> Dict[str, Any]:
        """The server's ``health()`` as a dict: ok, version, vault, audit,
        holds, connections, logs_bind_parameters, problems.  A lost
        connection of the client's own is opened again first; a server
        that cannot be reached raises ConnectionFailed."""
        return self._call(Call("health", [], SCALAR, retry=True))

    def current_actor(self) -> Optional[uuid.UUID]:
        """The user ``pgmarket.actor`` names in this transaction, or None."""
        return self._call(Call("current_actor", [], SCALAR, retry=True))

    def credits(self, micro: int) -> Decimal:
        """Micro-credits as credits (a display helper)."""
        return self._call(Call("credits", _args(("micro", "bigint", micro)), SCALAR, retry=True))

    # ------------------------------------------------------- account surface

    def get_user(self, user_id: UUIDLike) -> Optional[Row]:
        """The user's row of view ``users`` (id, email, username, roles,
        is_active, created_at, last_login_at; never the hash), or None."""
        return self._call(Call("get_user", _args(("user_id", "uuid", user_id)), OPT_ROW, retry=True))

    def get_user_by_email(self, email: str) -> Optional[Row]:
        """The user with this email (any spelling: trimmed, any case), or None."""
        return self._call(Call("get_user_by_email", _args(("email", "text", email)), OPT_ROW, retry=True))

    def get_user_by_username(self, username: str) -> Optional[Row]:
        """The user with this username (without regard to case), or None."""
        return self._call(Call("get_user_by_username", _args(("username", "text", username)), OPT_ROW, retry=True))

    def update_last_login(self, user_id: UUIDLike) -> datetime:
        """Stamp ``last_login_at`` now (for logins that skip authenticate); the time."""
        return self._call(Call("update_last_login", _args(("user_id", "uuid", user_id)), SCALAR, retry=True))

    def update_user(self, user_id: UUIDLike, email: Optional[str] = None,
                    username: Optional[str] = None) -> None:
        """Change the email and/or the username, checked as create_user checks them."""
        return self._call(Call("update_user", _args(
            ("user_id", "uuid", user_id), ("email", "text", email), ("username", "text", username)), VOID))

    def reactivate_user(self, user_id: UUIDLike) -> None:
        """Undo deactivate_user."""
        return self._call(Call("reactivate_user", _args(("user_id", "uuid", user_id)), VOID, retry=True))

    def change_password(self, user_id: UUIDLike, old_password: str, new_password: str) -> bool:
        """Change the password; False (and no change) when the old one is
        wrong.  Both travel sealed (``change_password_sealed``)."""
        if old_password is not None and new_password is not None and not self.plain_secrets:
            return self._call(Call("change_password_sealed", _args(
                ("user_id", "uuid", user_id),
                ("sealed_old_password", "bytea", Sealed(_PASSWORD, old_password)),
                ("sealed_new_password", "bytea", Sealed(_PASSWORD, new_password))), SCALAR))
        return self._call(Call("change_password", _args(
            ("user_id", "uuid", user_id), ("old_password", "text", old_password),
            ("new_password", "text", new_password)), SCALAR))

    def change_password_sealed(self, user_id: UUIDLike, sealed_old_password: bytes,
                               sealed_new_password: bytes) -> bool:
        """``change_password`` with passwords the caller sealed itself."""
        return self._call(Call("change_password_sealed", _args(
            ("user_id", "uuid", user_id), ("sealed_old_password", "bytea", sealed_old_password),
            ("sealed_new_password", "bytea", sealed_new_password)), SCALAR))

    def create_password_reset(self, user_id: UUIDLike, ttl: IntervalLike = "1 hour") -> str:
        """A single-use reset token (1 second to 7 days), returned this once."""
        return self._call(Call("create_password_reset", _args(
            ("user_id", "uuid", user_id), ("ttl", "interval", ttl)), SCALAR))

    def reset_password(self, token: str, new_password: str) -> Optional[uuid.UUID]:
        """Use a reset token: the user, or None for an unknown, used or
        expired token.  The new password travels sealed."""
        if new_password is not None and not self.plain_secrets:
            return self._call(Call("reset_password_sealed", _args(
                ("token", "text", token), ("sealed_new_password", "bytea", Sealed(_PASSWORD, new_password))),
                SCALAR))
        return self._call(Call("reset_password", _args(
            ("token", "text", token), ("new_password", "text", new_password)), SCALAR))

    def reset_password_sealed(self, token: str, sealed_new_password: bytes) -> Optional[uuid.UUID]:
        """``reset_password`` with a password the caller sealed itself."""
        return self._call(Call("reset_password_sealed", _args(
            ("token", "text", token), ("sealed_new_password", "bytea", sealed_new_password)), SCALAR))

    def reset_token_partition(self, token: str) -> Optional[int]:
        """The routing partition of a reset token (None when it is not shaped like one)."""
        return self._call(Call("reset_token_partition", _args(("token", "text", token)), SCALAR, retry=True))

    def add_account_role(self, name: str, description: Optional[str] = None) -> None:
        """Register an account role (``pgmarket_admin``)."""
        return self._call(Call("add_account_role", _args(
            ("name", "text", name), ("description", "text", description)), VOID, retry=True))

    def grant_user_role(self, user_id: UUIDLike, role: str) -> None:
        """Give a user a registered role (not while an actor is set)."""
        return self._call(Call("grant_user_role", _args(
            ("user_id", "uuid", user_id), ("role", "text", role)), VOID, retry=True))

    def revoke_user_role(self, user_id: UUIDLike, role: str) -> None:
        """Take a role from a user."""
        return self._call(Call("revoke_user_role", _args(
            ("user_id", "uuid", user_id), ("role", "text", role)), VOID, retry=True))

    def has_role(self, user_id: UUIDLike, role: str) -> bool:
        """Whether the user has the role."""
        return self._call(Call("has_role", _args(
            ("user_id", "uuid", user_id), ("role", "text", role)), SCALAR, retry=True))

    def link_identity(self, user_id: UUIDLike, provider: str, subject: str) -> None:
        """Link an external identity (single sign-on) to the user."""
        return self._call(Call("link_identity", _args(
            ("user_id", "uuid", user_id), ("provider", "text", provider), ("subject", "text", subject)), VOID))

    def unlink_identity(self, user_id: UUIDLike, provider: str) -> bool:
        """Unlink the user's identity at a provider; whether there was one."""
        return self._call(Call("unlink_identity", _args(
            ("user_id", "uuid", user_id), ("provider", "text", provider)), SCALAR))

    def user_by_identity(self, provider: str, subject: str) -> Optional[uuid.UUID]:
        """The user an external identity is linked to, or None."""
        return self._call(Call("user_by_identity", _args(
            ("provider", "text", provider), ("subject", "text", subject)), SCALAR, retry=True))

    # ------------------------------------------------------------------- ledger

    def add_funds(self, user_id: UUIDLike, amount: AmountLike, idempotency_key: Optional[str] = None,
                  note: Optional[str] = None) -> Row:
        """Credit a deposit; returns the ledger result (entry_id, user_id, kind,
        amount, available_balance, replayed).  Without an idempotency key
        the client makes one, so that a retry after a lost connection
        deposits once."""
        return self._call(Call("add_funds", _args(
            ("user_id", "uuid", user_id), ("amount", "numeric", amount),
            ("idempotency_key", "text", _key(idempotency_key)), ("note", "text", note)), ROW, retry=True))

    def deduct_balance(self, user_id: UUIDLike, amount: AmountLike, model_id: str, tokens_used: int = 0,
                       idempotency_key: Optional[str] = None) -> Row:
        """Charge a user atomically; returns the ledger result.  Raises
        InsufficientFunds (PM001) and changes nothing when available <
        amount.  Without an idempotency key the client makes one (a retry
        after a lost connection charges once)."""
        return self._call(Call("deduct_balance", _args(
            ("user_id", "uuid", user_id), ("amount", "numeric", amount), ("model_id", "text", model_id),
            ("tokens_used", "bigint", tokens_used), ("idempotency_key", "text", _key(idempotency_key))),
            ROW, retry=True))

    def refund(self, user_id: UUIDLike, entry_id: int, amount: Optional[AmountLike] = None,
               idempotency_key: Optional[str] = None) -> Row:
        """Refund all (amount None) or part of a charge; returns the ledger
        result.  A key is made when none is given."""
        return self._call(Call("refund", _args(
            ("user_id", "uuid", user_id), ("entry_id", "bigint", entry_id), ("amount", "numeric", amount),
            ("idempotency_key", "text", _key(idempotency_key))), ROW, retry=True))

    def get_balance(self, user_id: UUIDLike) -> Row:
        """The balance: user_id, total_balance, spent_balance,
        reserved_balance, available_balance (Decimal), updated_at."""
        return self._call(Call("get_balance", _args(("user_id", "uuid", user_id)), ROW, retry=True))

    def ledger_entries(self, user_id: UUIDLike, max_rows: int = 50, before_id: Optional[int] = None) -> List[Row]:
        """A page of entries, newest first; the next page is ``before_id=``
        the last entry_id of this one."""
        return self._call(Call("ledger_entries", _args(
            ("user_id", "uuid", user_id), ("max_rows", "integer", max_rows),
            ("before_id", "bigint", before_id)), ROWS, retry=True))

    def reserve(self, user_id: UUIDLike, amount: AmountLike, ttl: IntervalLike = "15 minutes",
                idempotency_key: Optional[str] = None) -> int:
        """Hold an amount out of available for ``ttl``; returns the
        reservation id.  A key is made when none is given."""
        return self._call(Call("reserve", _args(
            ("user_id", "uuid", user_id), ("amount", "numeric", amount), ("ttl", "interval", ttl),
            ("idempotency_key", "text", _key(idempotency_key))), SCALAR, retry=True))

    def settle(self, user_id: UUIDLike, reservation_id: int, amount: AmountLike, model_id: str,
               tokens_used: int = 0) -> Row:
        """Charge amount (at most the hold) and free the rest; the ledger result."""
        return self._call(Call("settle", _args(
            ("user_id", "uuid", user_id), ("reservation_id", "bigint", reservation_id),
            ("amount", "numeric", amount), ("model_id", "text", model_id),
            ("tokens_used", "bigint", tokens_used)), ROW))

    def release(self, user_id: UUIDLike, reservation_id: int) -> Row:
        """Free a hold; returns the balance after it."""
        return self._call(Call("release", _args(
            ("user_id", "uuid", user_id), ("reservation_id", "bigint", reservation_id)), ROW))

    def expire_reservations(self) -> int:
        """Sweep every user's expired holds; how many."""
        return self._call(Call("expire_reservations", [], SCALAR, retry=True))

    def deduct_batch(self, charges: Iterable[Any]) -> List[Row]:
        """Apply many charges in one call, each on its own terms.

        Each charge is a mapping with user_id, amount, model_id and optional
        tokens_used, idempotency_key, or a tuple in that order.  Returns one
        row per charge: ordinal (from 1), sqlstate (``00000`` when it
        applied), entry_id, available_balance.  A charge without a key gets
        one made by the client, so that the batch may be sent again after a
        lost connection."""
        users, amounts, models, tokens, keys = [], [], [], [], []
        for c in charges:
            if isinstance(c, Mapping):
                u, a, m = c.get("user_id"), c.get("amount"), c.get("model_id")
                t, k = c.get("tokens_used", 0), c.get("idempotency_key")
            else:
                t, k = 0, None
                u, a, m, *rest = c
                if rest:
                    t = rest[0]
                if len(rest) > 1:
                    k = rest[1]
            users.append(to_uuid(u, "user_id"))
            amounts.append(to_amount(a))
            models.append(m)
            tokens.append(t)
            keys.append(_key(k))
        sql = ("SELECT * FROM pgmarket.deduct_batch(charges => (SELECT coalesce("
               "array_agg(ROW(u, a, m, t, k)::pgmarket.charge ORDER BY o), '{}')"
               " FROM unnest(%s::uuid[], %s::numeric[], %s::text[], %s::bigint[], %s::text[])"
               " WITH ORDINALITY AS x(u, a, m, t, k, o)))")
        return self._call(Call("deduct_batch", [], ROWS, retry=True, sql=sql,
                               params=[users, amounts, models, tokens, keys]))

    def verify_ledger(self) -> List[Row]:
        """(user_id, problem) for every broken invariant; empty when all hold."""
        return self._call(Call("verify_ledger", [], ROWS, retry=True))

    # -------------------------------------------------------------------- vault

    def put_provider_key(self, user_id: UUIDLike, provider: str, secret: str,
                         label: Optional[str] = None) -> uuid.UUID:
        """Store a user's key for a provider (revoking the active one); the
        secret is sealed on the client (``put_provider_key_sealed``)."""
        if secret is not None and not self.plain_secrets:
            return self._call(Call("put_provider_key_sealed", _args(
                ("user_id", "uuid", user_id), ("provider", "text", provider),
                ("sealed", "bytea", Sealed(None, secret)), ("label", "text", label)), SCALAR))
        return self._call(Call("put_provider_key", _args(
            ("user_id", "uuid", user_id), ("provider", "text", provider),
            ("secret", "text", secret), ("label", "text", label)), SCALAR))

    def put_provider_key_sealed(self, user_id: UUIDLike, provider: str, sealed: bytes,
                                label: Optional[str] = None) -> uuid.UUID:
        """``put_provider_key`` with a secret the caller sealed itself."""
        return self._call(Call("put_provider_key_sealed", _args(
            ("user_id", "uuid", user_id), ("provider", "text", provider),
            ("sealed", "bytea", sealed), ("label", "text", label)), SCALAR))

    def vault_public_key(self) -> bytes:
        """The vault's X25519 public key (what secrets are sealed to)."""
        return self._call(Call("vault_public_key", [], SCALAR, retry=True, convert=bytes))

    def get_provider_key(self, user_id: UUIDLike, provider: str) -> str:
        """Decrypt the user's active key for provider (``pgmarket_keyreader``);
        KeyNotFound (PM012) when there is none.  Recorded in the audit trail."""
        return self._call(Call("get_provider_key", _args(
            ("user_id", "uuid", user_id), ("provider", "text", provider)), SCALAR))

    def list_provider_keys(self, user_id: UUIDLike) -> List[Row]:
        """key_id, provider, label, hint, key_version, created_at,
        last_used_at, revoked_at of every key, revoked ones included."""
        return self._call(Call("list_provider_keys", _args(("user_id", "uuid", user_id)), ROWS, retry=True))

    def revoke_provider_key(self, user_id: UUIDLike, key_id: UUIDLike) -> bool:
        """Revoke a provider key; False if it was revoked already."""
        return self._call(Call("revoke_provider_key", _args(
            ("user_id", "uuid", user_id), ("key_id", "uuid", key_id)), SCALAR, retry=True))

    def rotate_master_key(self, batch_size: int = 1000) -> int:
        """Re-encrypt up to batch_size keys under the newest master key; 0 means done."""
        return self._call(Call("rotate_master_key", _args(("batch_size", "integer", batch_size)), SCALAR, retry=True))

    def rotate_all_keys(self, batch_size: int = 1000) -> None:
        """``CALL rotate_all_keys``: loop over rotate_master_key, a commit per
        batch (needs a connection outside a transaction)."""
        return self._call(Call("rotate_all_keys", _args(("batch_size", "integer", batch_size)), PROCEDURE, retry=True))

    # ---------------------------------------------------------- platform keys

    def create_api_key(self, user_id: UUIDLike, name: str, scopes: Sequence[str] = ("read", "write"),
                       rate_limit_tier: str = "free", expires_at: Optional[datetime] = None,
                       environment: str = "live", spend_limit: Optional[AmountLike] = None,
                       spend_period: Optional[str] = None) -> Row:
        """Issue a platform key: {key_id, api_key}; the raw key is returned
        this once and never stored."""
        return self._call(Call("create_api_key", _args(
            ("user_id", "uuid", user_id), ("name", "text", name), ("scopes", "text[]", list(scopes)),
            ("rate_limit_tier", "text", rate_limit_tier), ("expires_at", "timestamptz", expires_at),
            ("environment", "text", environment), ("spend_limit", "numeric", spend_limit),
            ("spend_period", "text", spend_period)), ROW))

    def verify_api_key(self, api_key: str) -> Optional[Row]:
        """{key_id, user_id, scopes, rate_limit_tier} of a valid key, or None
        for a malformed, unknown, revoked or expired key or a deactivated
        user.  The key travels sealed; a text not shaped like a key is not
        sent at all."""
        if api_key is not None and not self.plain_secrets:
            prefix = _key_prefix(api_key)
            if prefix is None:
                return self._call(Call("verify_api_key", [], OPT_ROW, local=None))
            return self._call(Call("verify_api_key_sealed", _args(
                ("key_prefix", "text", prefix), ("sealed_key", "bytea", Sealed(_API_KEY, api_key))),
                OPT_ROW, retry=True))
        return self._call(Call("verify_api_key", _args(("api_key", "text", api_key)), OPT_ROW, retry=True))

    def verify_api_key_sealed(self, key_prefix: str, sealed_key: bytes) -> Optional[Row]:
        """``verify_api_key`` of a key the caller sealed itself."""
        return self._call(Call("verify_api_key_sealed", _args(
            ("key_prefix", "text", key_prefix), ("sealed_key", "bytea", sealed_key)), OPT_ROW, retry=True))

    def charge_api_key(self, api_key: str, amount: AmountLike, model_id: str, tokens_used: int = 0,
                       idempotency_key: Optional[str] = None) -> Row:
        """Verify a platform key, check its scope and spend limit, and charge
        its user, in one round trip; the ledger result.  InvalidApiKey
        (28000) for a key that does not verify (a text not shaped like a key
        is refused without being sent), PermissionDenied without ``write``.
        A key is made when none is given."""
        if api_key is not None and not self.plain_secrets:
            prefix = _key_prefix(api_key)
            if prefix is None:
                return self._call(Call("charge_api_key", [], ROW, local_error=InvalidApiKey("invalid API key")))
            return self._call(Call("charge_api_key_sealed", _args(
                ("key_prefix", "text", prefix), ("sealed_key", "bytea", Sealed(_API_KEY, api_key)),
                ("amount", "numeric", amount), ("model_id", "text", model_id),
                ("tokens_used", "bigint", tokens_used), ("idempotency_key", "text", _key(idempotency_key))),
                ROW, retry=True))
        return self._call(Call("charge_api_key", _args(
            ("api_key", "text", api_key), ("amount", "numeric", amount), ("model_id", "text", model_id),
            ("tokens_used", "bigint", tokens_used), ("idempotency_key", "text", _key(idempotency_key))),
            ROW, retry=True))

    def charge_api_key_sealed(self, key_prefix: str, sealed_key: bytes, amount: AmountLike, model_id: str,
                              tokens_used: int = 0, idempotency_key: Optional[str] = None) -> Row:
        """``charge_api_key`` with a key the caller sealed itself."""
        return self._call(Call("charge_api_key_sealed", _args(
            ("key_prefix", "text", key_prefix), ("sealed_key", "bytea", sealed_key),
            ("amount", "numeric", amount), ("model_id", "text", model_id),
            ("tokens_used", "bigint", tokens_used), ("idempotency_key", "text", _key(idempotency_key))),
            ROW, retry=True))

    def reserve_api_key(self, api_key: str, amount: AmountLike, ttl: IntervalLike = "15 minutes",
                        idempotency_key: Optional[str] = None) -> int:
        """``charge_api_key`` for a two-phase hold; the reservation id."""
        if api_key is not None and not self.plain_secrets:
            prefix = _key_prefix(api_key)
            if prefix is None:
                return self._call(Call("reserve_api_key", [], SCALAR, local_error=InvalidApiKey("invalid API key")))
            return self._call(Call("reserve_api_key_sealed", _args(
                ("key_prefix", "text", prefix), ("sealed_key", "bytea", Sealed(_API_KEY, api_key)),
                ("amount", "numeric", amount), ("ttl", "interval", ttl),
                ("idempotency_key", "text", _key(idempotency_key))), SCALAR, retry=True))
        return self._call(Call("reserve_api_key", _args(
            ("api_key", "text", api_key), ("amount", "numeric", amount), ("ttl", "interval", ttl),
            ("idempotency_key", "text", _key(idempotency_key))), SCALAR, retry=True))

    def reserve_api_key_sealed(self, key_prefix: str, sealed_key: bytes, amount: AmountLike,
                               ttl: IntervalLike = "15 minutes", idempotency_key: Optional[str] = None) -> int:
        """``reserve_api_key`` with a key the caller sealed itself."""
        return self._call(Call("reserve_api_key_sealed", _args(
            ("key_prefix", "text", key_prefix), ("sealed_key", "bytea", sealed_key),
            ("amount", "numeric", amount), ("ttl", "interval", ttl),
            ("idempotency_key", "text", _key(idempotency_key))), SCALAR, retry=True))

    def revoke_api_key(self, user_id: UUIDLike, key_id: UUIDLike) -> bool:
        """Revoke a platform key (effective on the next call); False if it was already."""
        return self._call(Call("revoke_api_key", _args(
            ("user_id", "uuid", user_id), ("key_id", "uuid", key_id)), SCALAR, retry=True))

    def list_api_keys(self, user_id: UUIDLike) -> List[Row]:
        """The user's platform keys with their spend (never the hash)."""
        return self._call(Call("list_api_keys", _args(("user_id", "uuid", user_id)), ROWS, retry=True))

    def set_tier(self, name: str, requests_per_minute: Optional[int], tokens_per_minute: Optional[int],
                 burst: int = 0) -> None:
        """Create or change a tier of platform keys (``pgmarket_admin``): in
        any 60 seconds at most requests_per_minute + burst calls and
        tokens_per_minute tokens; None is no limit.  Takes effect at the
        next call of every key of the tier; InvalidValue for a limit below 1
        or a burst below 0."""
        return self._call(Call("set_tier", _args(
            ("name", "text", name), ("requests_per_minute", "integer", requests_per_minute),
            ("tokens_per_minute", "bigint", tokens_per_minute), ("burst", "integer", burst)), VOID, retry=True))

    def check_rate_limit(self, api_key: str) -> Dict[str, Any]:
        """What the key's tier says to a call now, consuming nothing:
        {allowed, retry_after_ms, remaining_requests} (remaining_requests
        None when the tier has no request limit).  InvalidApiKey (28000) for
        a key that does not verify.  The key travels sealed; a text not
        shaped like a key is not sent at all."""
        if api_key is not None and not self.plain_secrets:
            prefix = _key_prefix(api_key)
            if prefix is None:
                return self._call(Call("check_rate_limit", [], ROW, local_error=InvalidApiKey("invalid API key")))
            return self._call(Call("check_rate_limit_sealed", _args(
                ("key_prefix", "text", prefix), ("sealed_key", "bytea", Sealed(_API_KEY, api_key))),
                ROW, retry=True))
        return self._call(Call("check_rate_limit", _args(("api_key", "text", api_key)), ROW, retry=True))

    def check_rate_limit_sealed(self, key_prefix: str, sealed_key: bytes) -> Dict[str, Any]:
        """``check_rate_limit`` of a key the caller sealed itself."""
        return self._call(Call("check_rate_limit_sealed", _args(
            ("key_prefix", "text", key_prefix), ("sealed_key", "bytea", sealed_key)), ROW, retry=True))

    def api_key_partition(self, api_key: str) -> int:
        """The routing partition in a key's public part (send the prefix, not the key)."""
        prefix = _key_prefix(api_key)
        return self._call(Call("api_key_partition", _args(("api_key", "text", prefix or api_key)), SCALAR, retry=True))

    # --------------------------------------------------------------------- chat

    def create_chat_session(self, user_id: UUIDLike, model_id: str, title: Optional[str] = None,
                            agent_id: Optional[str] = None, id: Optional[UUIDLike] = None) -> uuid.UUID:
        """A chat session (under the application's own id when given; the same
        id again for the same user and model returns it)."""
        return self._call(Call("create_chat_session", _args(
            ("user_id", "uuid", user_id), ("model_id", "text", model_id), ("title", "text", title),
            ("agent_id", "text", agent_id), ("id", "uuid", or_omit(id))), SCALAR, retry=id is not None))

    def save_chat_message(self, user_id: UUIDLike, session_id: UUIDLike, role: str, content: str,
                          tokens: int = 0, cost: AmountLike = 0, tool_calls: Any = None,
                          message_uuid: Optional[UUIDLike] = None, model_id: Optional[str] = None) -> int:
        """Store a message (cost recorded, not charged); its message_id."""
        return self._call(Call("save_chat_message", _args(
            ("user_id", "uuid", user_id), ("session_id", "uuid", session_id), ("role", "text", role),
            ("content", "text", content), ("tokens", "integer", tokens), ("cost", "numeric", cost),
            ("tool_calls", "jsonb", tool_calls), ("message_uuid", "uuid", message_uuid),
            ("model_id", "text", model_id)), SCALAR, retry=message_uuid is not None))

    def record_completion(self, user_id: UUIDLike, session_id: UUIDLike, content: str, tokens: int,
                          cost: AmountLike, idempotency_key: Optional[str] = None,
                          message_uuid: Optional[UUIDLike] = None, model_id: Optional[str] = None) -> Row:
        """Store the assistant's message and charge its cost in one step; the
        ledger result.  A key is made when none is given."""
        return self._call(Call("record_completion", _args(
            ("user_id", "uuid", user_id), ("session_id", "uuid", session_id), ("content", "text", content),
            ("tokens", "integer", tokens), ("cost", "numeric", cost),
            ("idempotency_key", "text", _key(idempotency_key)), ("message_uuid", "uuid", message_uuid),
            ("model_id", "text", model_id)), ROW, retry=True))

    def get_chat_history(self, user_id: UUIDLike, session_id: UUIDLike, max_rows: int = 100,
                         before_id: Optional[int] = None, oldest_first: bool = False) -> List[Row]:
        """A page of messages, newest first unless oldest_first."""
        return self._call(Call("get_chat_history", _args(
            ("user_id", "uuid", user_id), ("session_id", "uuid", session_id), ("max_rows", "integer", max_rows),
            ("before_id", "bigint", before_id), ("oldest_first", "boolean", oldest_first)), ROWS, retry=True))

    def end_chat_session(self, user_id: UUIDLike, session_id: UUIDLike, status: str,
                         reason: Optional[str] = None) -> None:
        """End a session as ``completed`` or ``failed``."""
        return self._call(Call("end_chat_session", _args(
            ("user_id", "uuid", user_id), ("session_id", "uuid", session_id), ("status", "text", status),
            ("reason", "text", reason)), VOID))

    def update_chat_context(self, user_id: UUIDLike, session_id: UUIDLike, context: Mapping[str, Any],
                            merge: bool = True) -> None:
        """Merge keys into the session's context (replace it with merge=False)."""
        return self._call(Call("update_chat_context", _args(
            ("user_id", "uuid", user_id), ("session_id", "uuid", session_id), ("context", "jsonb", context),
            ("merge", "boolean", merge)), VOID, retry=True))

    def list_chat_sessions(self, user_id: UUIDLike, status: Optional[str] = None, max_rows: int = 50,
                           before: Optional[datetime] = None,
                           before_session_id: Optional[UUIDLike] = None) -> List[Row]:
        """A page of sessions, newest first (next page: before= the last
        row's created_at, before_session_id= its session_id)."""
        return self._call(Call("list_chat_sessions", _args(
            ("user_id", "uuid", user_id), ("status", "text", status), ("max_rows", "integer", max_rows),
            ("before", "timestamptz", before), ("before_session_id", "uuid", before_session_id)), ROWS, retry=True))

    def delete_chat_session(self, user_id: UUIDLike, session_id: UUIDLike) -> None:
        """Soft-delete a session."""
        return self._call(Call("delete_chat_session", _args(
            ("user_id", "uuid", user_id), ("session_id", "uuid", session_id)), VOID))

    def chat_session_owner(self, session_id: UUIDLike) -> Optional[uuid.UUID]:
        """The user a session belongs to, or None."""
        return self._call(Call("chat_session_owner", _args(("session_id", "uuid", session_id)), SCALAR, retry=True))

    def rate_model(self, user_id: UUIDLike, model_id: str, stars: int, review: Optional[str] = None) -> None:
        """Rate a model 1 to 5 (one rating per user and model, changeable)."""
        return self._call(Call("rate_model", _args(
            ("user_id", "uuid", user_id), ("model_id", "text", model_id), ("stars", "integer", stars),
            ("review", "text", review)), VOID, retry=True))

    def set_preference(self, user_id: UUIDLike, key: str, value: Any) -> None:
        """Set a per-user setting to a JSON value."""
        return self._call(Call("set_preference", _args(
            ("user_id", "uuid", user_id), ("key", "text", key), ("value", "jsonb", value)), VOID, retry=True))

    def get_preferences(self, user_id: UUIDLike) -> List[Row]:
        """(key, value, updated_at) of every setting."""
        return self._call(Call("get_preferences", _args(("user_id", "uuid", user_id)), ROWS, retry=True))

    def delete_preference(self, user_id: UUIDLike, key: str) -> bool:
        """Remove a setting; whether it was there."""
        return self._call(Call("delete_preference", _args(
            ("user_id", "uuid", user_id), ("key", "text", key)), SCALAR))

    # -------------------------------------------------------------------- audit

    def enable_audit(self, target: str, redact: Sequence[str] = ()) -> None:
        """Attach the audit trigger to a table you own."""
        return self._call(Call("enable_audit", _args(
            ("target", "regclass", target), ("redact", "text[]", list(redact))), VOID))

    def disable_audit(self, target: str) -> None:
        """Detach the audit trigger."""
        return self._call(Call("disable_audit", _args(("target", "regclass", target)), VOID))

    def seal_audit(self) -> int:
        """Extend the hash chain over unsealed rows; how many it sealed."""
        return self._call(Call("seal_audit", [], SCALAR))

    def verify_audit(self, strict: bool = False, anchor: Optional[bytes] = None) -> Row:
        """{first_bad_id, checked}; AuditChainBroken under strict when broken."""
        return self._call(Call("verify_audit", _args(
            ("strict", "boolean", strict), ("anchor", "bytea", anchor)), ROW, retry=True))

    def audit_head(self) -> Row:
        """{last_id, chain_hash, sealed_at}: the anchor to keep outside."""
        return self._call(Call("audit_head", [], ROW, retry=True))

    def audit_open_value(self, col: str, value: Any) -> Any:
        """A value of the audit trail as it was written: a personal value
        (one kept under its user's key) opened, ``"[erased]"`` once the user
        is erased, any other value as it is (``pgmarket_auditor``)."""
        return self._call(Call("audit_open_value", _args(
            ("col", "text", col), ("value", "jsonb", value)), SCALAR, retry=True))

    def audit_open(self, vals: Any) -> Any:
        """``audit_open_value`` of every member of an object of the trail
        (an audit_log row's row_key, old_values or new_values); anything
        but an object comes back as it is (``pgmarket_auditor``)."""
        return self._call(Call("audit_open", _args(("vals", "jsonb", vals)), SCALAR, retry=True))

    # ----------------------------------------------------------------- projects

    def save_project(self, user_id: UUIDLike, name: str, type: str, codebase: Any = None,
                     dependencies: Optional[Sequence[str]] = None, environment: Any = None,
                     deployment: Any = None, id: Optional[UUIDLike] = None,
                     test_coverage: Optional[AmountLike] = None, scores: Any = None,
                     last_deployed_at: Optional[datetime] = None) -> uuid.UUID:
        """Insert a project, or update the user's project of that id.
        codebase, dependencies, environment and deployment None take the SQL
        defaults (empty)."""
        return self._call(Call("save_project", _args(
            ("user_id", "uuid", user_id), ("name", "text", name), ("type", "text", type),
            ("codebase", "jsonb", or_omit(codebase)),
            ("dependencies", "text[]", OMIT if dependencies is None else list(dependencies)),
            ("environment", "jsonb", or_omit(environment)), ("deployment", "jsonb", or_omit(deployment)),
            ("id", "uuid", id), ("test_coverage", "numeric", test_coverage), ("scores", "jsonb", scores),
            ("last_deployed_at", "timestamptz", last_deployed_at)), SCALAR))

    def get_project(self, user_id: UUIDLike, project_id: UUIDLike) -> Row:
        """The project's row; UnknownAccount (PM002) for an unknown or another user's."""
        return self._call(Call("get_project", _args(
            ("user_id", "uuid", user_id), ("project_id", "uuid", project_id)), ROW, retry=True))

    def list_projects(self, user_id: UUIDLike, status: Optional[str] = "active", max_rows: int = 50,
                      before: Optional[datetime] = None) -> List[Row]:
        """The user's projects, newest first (status None: every status)."""
        return self._call(Call("list_projects", _args(
            ("user_id", "uuid", user_id), ("status", "text", status), ("max_rows", "integer", max_rows),
            ("before", "timestamptz", before)), ROWS, retry=True))

    def archive_project(self, user_id: UUIDLike, project_id: UUIDLike) -> None:
        """Archive a project (AppendOnly when it is archived already)."""
        return self._call(Call("archive_project", _args(
            ("user_id", "uuid", user_id), ("project_id", "uuid", project_id)), VOID))

    def save_template(self, name: str, category: str, files: Any, description: Optional[str] = None,
                      required_vars: Sequence[str] = (), tags: Sequence[str] = (),
                      optional_vars: Any = None, tech_stack: Sequence[str] = (),
                      setup_minutes: Optional[int] = None, complexity: Optional[str] = None) -> uuid.UUID:
        """Insert or replace a template by name (``pgmarket_admin``)."""
        return self._call(Call("save_template", _args(
            ("name", "text", name), ("category", "text", category), ("files", "jsonb", files),
            ("description", "text", description), ("required_vars", "text[]", list(required_vars)),
            ("tags", "text[]", list(tags)), ("optional_vars", "jsonb", or_omit(optional_vars)),
            ("tech_stack", "text[]", list(tech_stack)), ("setup_minutes", "integer", setup_minutes),
            ("complexity", "text", complexity)), SCALAR, retry=True))

    def get_template(self, name: str) -> Row:
        """A template's row; UnknownAccount (PM002) when unknown."""
        return self._call(Call("get_template", _args(("name", "text", name)), ROW, retry=True))

    def list_templates(self, category: Optional[str] = None) -> List[Row]:
        """Templates by name, of one category when given."""
        return self._call(Call("list_templates", _args(("category", "text", category)), ROWS, retry=True))

    def request_modification(self, user_id: UUIDLike, project_id: UUIDLike, request: str,
                             impact: Any = None, affected_files: Sequence[str] = (),
                             requested_by: Optional[str] = None) -> uuid.UUID:
        """A change request against a project; its id."""
        return self._call(Call("request_modification", _args(
            ("user_id", "uuid", user_id), ("project_id", "uuid", project_id), ("request", "text", request),
            ("impact", "jsonb", or_omit(impact)), ("affected_files", "text[]", list(affected_files)),
            ("requested_by", "text", requested_by)), SCALAR))

    def set_modification_status(self, user_id: UUIDLike, modification_id: UUIDLike, status: str,
                                results: Any = None, modified_files: Optional[Sequence[str]] = None) -> None:
        """Move a change request forward (requested, approved, applied /
        failed / rejected); InvalidValue for any other move."""
        return self._call(Call("set_modification_status", _args(
            ("user_id", "uuid", user_id), ("modification_id", "uuid", modification_id),
            ("status", "text", status), ("results", "jsonb", results),
            ("modified_files", "text[]", None if modified_files is None else list(modified_files))), VOID))

    def list_modifications(self, user_id: UUIDLike, project_id: UUIDLike) -> List[Row]:
        """A project's change requests, newest first."""
        return self._call(Call("list_modifications", _args(
            ("user_id", "uuid", user_id), ("project_id", "uuid", project_id)), ROWS, retry=True))

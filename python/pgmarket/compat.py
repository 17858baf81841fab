"""``DatabaseService``: the marketplace's own storage interface on pgmarket.

The AI marketplace keeps its users, balances, provider keys and chats in a
``DatabaseService`` whose methods its AuthService and chat code call.  This
class has the same methods, arguments and return shapes, so that a service
moves from its dictionaries to pgmarket by changing the one line that
builds it::

    from pgmarket.compat import DatabaseService
    db = DatabaseService()          # DATABASE_URL, else the PG* variables

What changes underneath (each method's docstring says it too):

- passwords: pgmarket never hands a password hash back, so the user dicts
  have no ``password_hash``; check a login with :meth:`authenticate`
  (email or username and the password), which also upgrades an imported
  hash to Argon2id;
- provider keys: the vault encrypts what ``add_api_key`` is given under the
  server's master key (sealed on the way); ``encrypted_key`` is stored as
  it is and ``get_provider_key`` gives it back the same, so a key the
  application encrypted itself still decrypts with its own key, and a
  plaintext key is simply kept secret by the vault instead.  ``key_hash``
  is not kept (the vault keeps its own);
- amounts are ``Decimal`` (exact; ``Decimal('75.000000') == 75.0``), and
  floats are read through their shortest decimal text;
- a transaction id given to ``add_funds`` is its idempotency key: the same
  id twice deposits once.
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal
from typing import Any, Dict, List, Optional

from . import _core
from ._core import Call, UUIDLike
from .client import Client
from .errors import (Duplicate, IdempotencyConflict, InsufficientFunds, InvalidValue,
                     KeyNotFound, NullValue, OutOfRange, UnknownAccount)

__all__ = ["DatabaseService"]

# Errors a caller's bad input or a missing row cause: the old service
# answered those with False or None, and so does this one.
_REFUSED = (UnknownAccount, InvalidValue, NullValue, OutOfRange, IdempotencyConflict, Duplicate)

def _user(row: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if row is None:
        return None
    return {
        "user_id": str(row["id"]),
        "email": row["email"],
        "username": row["username"],
        "roles": row.get("roles"),
        "is_active": row["is_active"],
        "created_at": row["created_at"],
        "last_login": row["last_login_at"],
    }


def _message_uuid(message_id: Any, session_id: Any) -> Optional[uuid.UUID]:
    """The application's message id as the message's uuid: itself when it
    is a uuid, else a uuid5 of the session and its text (stable, so a retry
    is a replay; the same text in two sessions names two messages)."""
    if message_id is None:
        return None
    if isinstance(message_id, uuid.UUID):
        return message_id
    try:
        return uuid.UUID(str(message_id))
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"pgmarket-message:{session_id}:{message_id}")


class DatabaseService:
    """The marketplace's DatabaseService, kept in pgmarket.

    ``DatabaseService()`` connects through ``DATABASE_URL``, else the
    ``PG*`` variables; ``DatabaseService(dsn)`` through a conninfo or URI;
    ``DatabaseService(client=pgmarket.Client(...))`` shares a client (a
    pool, say).  Methods that the old service answered with True/False or
    None still do for refused input or a missing row; a server that cannot
    be reached raises :class:`pgmarket.ConnectionFailed`.
    """

    def __init__(self, dsn: Optional[str] = None, *, client: Optional[Client] = None) -> None:
        if client is None:
            if dsn is None:
                dsn = os.environ.get("DATABASE_URL", "")
            client = Client(dsn)
        self.client = client

    def close(self) -> None:
        """Close the connection the service opened."""
        self.client.close()

    # -- helpers -------------------------------------------------------------

    def _sql(self, sql: str, params: List[Any], shape: str, retry: bool = True) -> Any:
        return self.client._call(Call("compat", [], shape, retry=retry, sql=sql, params=params))

    # -- users -----------------------------------------------------------------

    def create_user(self, user_id: UUIDLike, email: str, username: str, password_hash: str) -> bool:
        """Register a user under the application's id with the hash it made.

        True when created; False for a taken email, username or id, or one
        that is malformed.  The hash must be in a format pgmarket keeps
        (Django / passlib ``pbkdf2_sha256$...``, Argon2id, and the others
        README's Accounts lists); ``authenticate`` verifies it and replaces
        it with Argon2id at the first login.  Stored through
        ``create_user_hashed`` (``pgmarket_app``).
        """
        try:
            uid = _core.to_uuid(user_id, "user_id")
            if uid is None:
                return False
            self.client.create_user_hashed(email, username, password_hash, id=uid)
            return True
        except _REFUSED:
            return False

    def authenticate(self, login: str, password: str) -> Optional[Dict[str, Any]]:
        """The user dict for a correct login (email or username) and password,
        else None; stamps ``last_login``.  (An addition: the old service
        gave the hash back for the caller to compare, which pgmarket never
        does.  The password travels sealed.)"""
        try:
            uid = self.client.authenticate(login, password)
        except _REFUSED:
            return None
        return self.get_user(uid) if uid is not None else None

    def get_user(self, user_id: UUIDLike) -> Optional[Dict[str, Any]]:
        """The user dict (user_id, email, username, roles, is_active,
        created_at, last_login) or None."""
        try:
            uid = _core.to_uuid(user_id, "user_id")
        except InvalidValue:
            return None
        if uid is None:
            return None
        return _user(self.client.get_user(uid))

    def get_user_by_email(self, email: str) -> Optional[Dict[str, Any]]:
        """The user dict for an email (any spelling of it: trimmed, any case), or None.
        No ``password_hash``: see :meth:`authenticate`."""
        try:
            return None if email is None else _user(self.client.get_user_by_email(email))
        except _REFUSED:
            return None

    def get_user_by_username(self, username: str) -> Optional[Dict[str, Any]]:
        """The user dict for a username (without regard to case), or None."""
        try:
            return None if username is None else _user(self.client.get_user_by_username(username))
        except _REFUSED:
            return None

    def update_last_login(self, user_id: UUIDLike) -> bool:
        """Stamp the user's last login now; False for an unknown user.
        (:meth:`authenticate` stamps it already; this is for logins that
        do not go through it.)"""
        try:
            self.client.update_last_login(user_id)
            return True
        except _REFUSED:
            return False

    # -- provider keys -----------------------------------------------------------

    def add_api_key(self, key_id: Any, user_id: UUIDLike, provider: str, encrypted_key: str,
                    key_hash: Optional[str] = None) -> bool:
        """Store a user's key for a provider in the vault; True when stored.

        ``encrypted_key`` is kept as given (encrypted again under the
        master key, sealed on the way) and returned the same by
        :meth:`get_provider_key`.  ``key_id`` is kept as the key's label,
        so :meth:`revoke_api_key` and :meth:`get_api_keys_for_user` know it;
        ``key_hash`` is not kept.  A new key for a provider revokes the old.
        """
        try:
            self.client.put_provider_key(user_id, provider, encrypted_key,
                                         None if key_id is None else str(key_id))
            return True
        except _REFUSED:
            return False

    def get_api_keys_for_user(self, user_id: UUIDLike) -> List[Dict[str, Any]]:
        """The user's active provider keys: key_id (the id given to
        add_api_key), provider, hint, created_at, last_used, is_active.
        Never the key."""
        try:
            rows = self.client.list_provider_keys(user_id)
        except _REFUSED:
            return []
        return [{
            "key_id": r["label"] if r["label"] is not None else str(r["key_id"]),
            "vault_key_id": str(r["key_id"]),
            "user_id": str(user_id),
            "provider": r["provider"],
            "hint": r["hint"],
            "created_at": r["created_at"],
            "last_used": r["last_used_at"],
            "is_active": r["revoked_at"] is None,
        } for r in rows if r["revoked_at"] is None]

    def get_provider_key(self, user_id: UUIDLike, provider: str) -> Optional[str]:
        """The user's active key for a provider, as add_api_key was given it,
        or None.  Needs ``pgmarket_keyreader``; every read is audited."""
        try:
            return self.client.get_provider_key(user_id, provider)
        except (KeyNotFound,) + _REFUSED:
            return None

    def revoke_api_key(self, user_id: UUIDLike, key_id: Any) -> bool:
        """Revoke the user's key with that id (the id given to add_api_key, or
        the vault's); False when there is no such active key."""
        try:
            rows = self.client.list_provider_keys(user_id)
        except _REFUSED:
            return False
        for r in rows:
            if r["revoked_at"] is None and str(key_id) in (r["label"], str(r["key_id"])):
                return bool(self.client.revoke_provider_key(user_id, r["key_id"]))
        return False

    # -- balances -------------------------------------------------------------

    def get_user_balance(self, user_id: UUIDLike) -> Optional[Dict[str, Decimal]]:
        """{'total_balance', 'spent_balance', 'available_balance'} as Decimal
        (also 'reserved_balance'), or None for an unknown user."""
        try:
            b = self.client.get_balance(user_id)
        except _REFUSED:
            return None
        return {
            "total_balance": b["total_balance"],
            "spent_balance": b["spent_balance"],
            "available_balance": b["available_balance"],
            "reserved_balance": b["reserved_balance"],
        }

    def add_funds(self, user_id: UUIDLike, amount: _core.AmountLike,
                  transaction_id: Optional[str] = None) -> bool:
        """Deposit; True when done (or already done under this transaction
        id, which is the idempotency key), False for an unknown user or a
        bad amount (not a whole number of micro-credits, zero, negative)."""
        try:
            self.client.add_funds(user_id, amount, None if transaction_id is None else str(transaction_id))
            return True
        except _REFUSED:
            return False

    def deduct_balance(self, user_id: UUIDLike, amount: _core.AmountLike, model_id: str,
                       tokens_used: int = 0) -> bool:
        """Charge atomically; False (and nothing charged) when the available
        balance is short, the user unknown or the amount bad.  Never below
        zero, however many calls race."""
        try:
            self.client.deduct_balance(user_id, amount, model_id, tokens_used)
            return True
        except (InsufficientFunds,) + _REFUSED:
            return False

    def get_balance_transactions(self, user_id: UUIDLike, limit: int = 50) -> List[Dict[str, Any]]:
        """The newest ``limit`` ledger entries: transaction_id (the
        idempotency key, else the entry id), user_id, type (deposit,
        deduction, refund), amount, balance_after, model_id, tokens_used,
        note, timestamp."""
        try:
            rows = self.client.ledger_entries(user_id, max(1, min(int(limit), 1000)))
        except _REFUSED:
            return []
        kinds = {"deposit": "deposit", "charge": "deduction", "refund": "refund"}
        return [{
            "transaction_id": r["idempotency_key"] or str(r["entry_id"]),
            "entry_id": r["entry_id"],
            "user_id": str(user_id),
            "type": kinds.get(r["kind"], r["kind"]),
            "amount": r["amount"],
            "balance_after": r["available_balance"],
            "model_id": r["model_id"],
            "tokens_used": r["tokens_used"],
            "note": r["note"],
            "timestamp": r["created_at"],
        } for r in rows]

    # -- chat -----------------------------------------------------------------

    def create_chat_session(self, session_id: UUIDLike, user_id: UUIDLike, model_id: str,
                            title: Optional[str] = None) -> bool:
        """A session under the application's id; True when created (or it was
        already, for this user and model), False otherwise."""
        try:
            self.client.create_chat_session(user_id, model_id, title, id=session_id)
            return True
        except _REFUSED:
            return False

    def save_chat_message(self, message_id: Any, user_id: UUIDLike, session_id: UUIDLike, model_id: str,
                          role: str, content: str, tokens: int = 0, cost: _core.AmountLike = 0) -> bool:
        """Store a message (cost recorded, not charged: charge with
        deduct_balance, or use Client.record_completion for both at once).
        ``message_id`` becomes the message's uuid (itself if it is one, else
        a uuid5 of it), so saving the same message twice stores it once."""
        try:
            self.client.save_chat_message(user_id, session_id, role, content, tokens, cost,
                                          message_uuid=_message_uuid(message_id, session_id), model_id=model_id)
            return True
        except _REFUSED:
            return False

    def get_chat_history(self, session_id: UUIDLike) -> List[Dict[str, Any]]:
        """Every message of a session in the order said: message_id, session_id,
        user_id, model_id, role, content, tokens, cost, timestamp ([] for an
        unknown session)."""
        try:
            owner = self.client.chat_session_owner(session_id)
        except _REFUSED:
            return []
        if owner is None:
            return []
        out: List[Dict[str, Any]] = []
        before: Optional[int] = None
        while True:
            page = self.client.get_chat_history(owner, session_id, 1000, before)
            out.extend(page)
            if len(page) < 1000:
                break
            before = min(r["message_id"] for r in page)
        out.sort(key=lambda r: int(r["message_id"]))
        return [{
            "message_id": str(r["message_uuid"]) if r["message_uuid"] else str(r["message_id"]),
            "session_id": str(session_id),
            "user_id": str(owner),
            "model_id": r["model_id"],
            "role": r["role"],
            "content": r["content"],
            "tokens": r["tokens"],
            "cost": r["cost"],
            "timestamp": r["created_at"],
        } for r in out]

"""The marketplace's AuthService, as its integration guide writes it, on
``pgmarket.compat.DatabaseService``.

The one line that moves it from dictionaries to PostgreSQL is the
``DatabaseService()`` in ``__init__``.  ``login`` asks the database to check
the password (``db.authenticate``), since pgmarket never hands a stored
hash back; the hash made at registration is Django's ``pbkdf2_sha256``,
which pgmarket verifies and upgrades to Argon2id at the first login.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from typing import Any, Dict, Optional

from pgmarket.compat import DatabaseService

PBKDF2_ROUNDS = 260_000


def hash_password(password: str) -> str:
    """``pbkdf2_sha256$ROUNDS$SALT$B64``, as Django and passlib write it."""
    salt = base64.b64encode(os.urandom(12)).decode().rstrip("=").replace("+", "a").replace("/", "b")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), PBKDF2_ROUNDS)
    return f"pbkdf2_sha256${PBKDF2_ROUNDS}${salt}${base64.b64encode(digest).decode()}"


class AuthService:
    """Registration and login over a DatabaseService."""

    def __init__(self, db: Optional[DatabaseService] = None) -> None:
        self.db = db if db is not None else DatabaseService()   # was: a dictionary store

    def register(self, email: str, username: str, password: str) -> Dict[str, Any]:
        """{'success': True, 'user_id': ...} or {'success': False, 'error': ...}."""
        if len(password) < 8:
            return {"success": False, "error": "password too short"}
        if self.db.get_user_by_email(email) is not None:
            return {"success": False, "error": "email already registered"}
        if self.db.get_user_by_username(username) is not None:
            return {"success": False, "error": "username taken"}
        user_id = str(uuid.uuid4())
        if not self.db.create_user(user_id, email, username, hash_password(password)):
            return {"success": False, "error": "could not create user"}
        return {"success": True, "user_id": user_id}

    def login(self, email: str, password: str) -> Dict[str, Any]:
        """{'success': True, 'user': {...}} or {'success': False, 'error': ...}."""
        user = self.db.authenticate(email, password)
        if user is None:
            return {"success": False, "error": "invalid credentials"}
        return {"success": True, "user": user}

"""The exceptions of pgmarket: one class per SQLSTATE the API raises.

Every error a pgmarket call raises is a :class:`pgmarket.Error`; the server's
SQLSTATE is in ``.sqlstate`` and its words in ``.message``, ``.detail`` and
``.hint``.  The psycopg exception, when there was one, is ``__cause__``.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Type

__all__ = [
    "Error", "InsufficientFunds", "UnknownAccount", "IdempotencyConflict",
    "ReservationState", "RateLimited", "VaultUnavailable", "DecryptionFailed",
    "KeyNotFound", "AuditChainBroken", "InvalidApiKey", "PermissionDenied",
    "InvalidValue", "NullValue", "OutOfRange", "Duplicate", "AppendOnly",
    "InvalidText", "ConnectionFailed", "error_class",
]


class Error(Exception):
    """Base class of every pgmarket error.

    ``sqlstate`` is the five-character SQLSTATE (``None`` when the server
    never answered), ``message`` the server's primary message (or the
    client's, for a value refused before it was sent), ``detail`` and
    ``hint`` the server's DETAIL and HINT lines when it sent them.
    """

    #: the SQLSTATE this class stands for (``None`` for the base class)
    SQLSTATE: Optional[str] = None

    def __init__(self, message: str, sqlstate: Optional[str] = None,
                 detail: Optional[str] = None, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate if sqlstate is not None else self.SQLSTATE
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        if self.sqlstate:
            return f"{self.message} (SQLSTATE {self.sqlstate})"
        return self.message


class InsufficientFunds(Error):
    """PM001: a charge or hold exceeds the available balance (or a key's spend limit)."""
    SQLSTATE = "PM001"


class UnknownAccount(Error):
    """PM002: no such user, a deactivated user, or a chat session or project that is not the user's."""
    SQLSTATE = "PM002"


class IdempotencyConflict(Error):
    """PM003: an idempotency key (or a message uuid) reused with other arguments."""
    SQLSTATE = "PM003"


class ReservationState(Error):
    """PM004: settle or release of a hold that is unknown, expired, settled or released, or a settle above it."""
    SQLSTATE = "PM004"


class RateLimited(Error):
    """PM005: a platform key's tier allows no more requests or tokens now;
    ``retry_after_ms`` is when to retry, as the server's DETAIL says it."""
    SQLSTATE = "PM005"

    #: the fixed form the server's DETAIL begins with
    _DETAIL = re.compile(r"^retry_after_ms=(\d+)(?::|$)")
    #: the message's words, for a server older than 0.8.0
    _MESSAGE = re.compile(r"retry after (\d+) ms")

    @property
    def retry_after_ms(self) -> Optional[int]:
        """Milliseconds until a retry is admitted (the DETAIL's
        ``retry_after_ms=N``; from a server before 0.8.0, the message's "retry
        after N ms"), or None when the error names no wait."""
        m = self._DETAIL.match(self.detail or "")
        if m is None:
            m = self._MESSAGE.search(self.message or "")
        return int(m.group(1)) if m else None


class VaultUnavailable(Error):
    """PM010: no usable master key on the server."""
    SQLSTATE = "PM010"


class DecryptionFailed(Error):
    """PM011: a ciphertext or sealed secret that fails authentication."""
    SQLSTATE = "PM011"


class KeyNotFound(Error):
    """PM012: no active provider key for that user and provider."""
    SQLSTATE = "PM012"


class AuditChainBroken(Error):
    """PM013: ``verify_audit(strict=True)`` found the chain broken or without its anchor."""
    SQLSTATE = "PM013"


class InvalidApiKey(Error):
    """28000: a platform key that does not verify."""
    SQLSTATE = "28000"


class PermissionDenied(Error):
    """42501: the role may not do this, a key without the scope, or a user other than the actor."""
    SQLSTATE = "42501"


class InvalidValue(Error, ValueError):
    """22023: a bad amount, email, username, ttl, page size, ...; also raised by
    the client, before anything is sent, for an amount that is NaN or
    infinite, a text that is no number or a malformed uuid."""
    SQLSTATE = "22023"


class InvalidText(InvalidValue):
    """22021: a sealed secret that is not valid UTF-8 text."""
    SQLSTATE = "22021"


class NullValue(Error, ValueError):
    """22004: a required argument is None."""
    SQLSTATE = "22004"


class OutOfRange(Error, ValueError):
    """22003: an amount or balance at or beyond 9,000,000,000,000 credits."""
    SQLSTATE = "22003"


class Duplicate(Error):
    """23505: a taken email, username, user id or chat session id."""
    SQLSTATE = "23505"


class AppendOnly(Error):
    """55000: a change of an append-only table, a message to an ended session,
    an archived project, or an extension older than its library."""
    SQLSTATE = "55000"


class ConnectionFailed(Error):
    """The server could not be reached, or the connection was lost (SQLSTATE
    class 08, or none at all)."""


_BY_SQLSTATE: Dict[str, Type[Error]] = {
    cls.SQLSTATE: cls
    for cls in (InsufficientFunds, UnknownAccount, IdempotencyConflict,
                ReservationState, RateLimited, VaultUnavailable,
                DecryptionFailed, KeyNotFound, AuditChainBroken, InvalidApiKey,
                PermissionDenied, InvalidValue, InvalidText, NullValue,
                OutOfRange, Duplicate, AppendOnly)
    if cls.SQLSTATE is not None
}


def error_class(sqlstate: Optional[str]) -> Type[Error]:
    """The pgmarket exception class for a SQLSTATE (:class:`Error` for any other)."""
    if sqlstate is None or sqlstate.startswith("08"):
        return ConnectionFailed
    return _BY_SQLSTATE.get(sqlstate, Error)

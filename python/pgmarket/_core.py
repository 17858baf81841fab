"""The machinery under every client method: arguments, sealing, one call.

A method of :class:`pgmarket.Client` describes its SQL call as a
:class:`Call` (the function, its arguments by name with their SQL types,
the shape of its result); the client runs it.  The sync and the async
client differ only in how they run a call, so every method is written once.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import psycopg
from psycopg.types.json import Jsonb

from .errors import Error, InvalidValue, error_class

AmountLike = Union[Decimal, int, str, float]
"""An amount of credits: ``Decimal``, ``int``, ``str`` or ``float``."""

UUIDLike = Union[uuid.UUID, str]
"""A uuid, as ``uuid.UUID`` or its text."""

IntervalLike = Union[timedelta, str]
"""A PostgreSQL interval: ``timedelta`` or interval text (``'15 minutes'``)."""

Row = Dict[str, Any]
"""One result row, column name to value."""


class _Omit:
    """The marker of an argument left out, so that the SQL default applies."""

    _instance: Optional["_Omit"] = None

    def __new__(cls) -> "_Omit":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "OMIT"


OMIT = _Omit()


def or_omit(value: Any) -> Any:
    """``value``, or OMIT when it is None (the SQL default then applies)."""
    return OMIT if value is None else value


def to_amount(value: Any, name: str = "amount") -> Optional[Decimal]:
    """An amount as an exact Decimal, or None.

    A float goes through its shortest decimal text (``repr``), so 0.1 is
    exactly 0.1; NaN, infinities, booleans and text that is no number are
    refused with :class:`InvalidValue` before anything is sent.  Whether the
    amount is a whole number of micro-credits, above zero and in range is
    the server's to say, with the same answer on every path.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidValue(f"{name} must be a number, not {value!r}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise InvalidValue(f"{name} must be a finite number, not {value!r}")
        d = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidValue(f'{name} is not a number: "{value}"') from None
    else:
        raise InvalidValue(f"{name} must be a Decimal, int, str or float, not {type(value).__name__}")
    if not d.is_finite():
        raise InvalidValue(f"{name} must be a finite number, not {value!r}")
    return d


def to_uuid(value: Any, name: str) -> Optional[uuid.UUID]:
    """A uuid from ``uuid.UUID`` or its text; malformed text is InvalidValue."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            raise InvalidValue(f'{name} is not a uuid: "{value}"') from None
    raise InvalidValue(f"{name} must be a uuid.UUID or str, not {type(value).__name__}")


@dataclass
class Sealed:
    """A secret to send sealed to the vault's public key.

    ``tag`` is ``b"P"`` (password) or ``b"K"`` (platform key) for the
    extension's sealed format (version 1, tag, big-endian seconds since
    1970, the secret); None seals the bare secret (provider keys).
    """

    tag: Optional[bytes]
    secret: str

    def seal(self, public_key: bytes) -> bytes:
        from nacl.public import PublicKey, SealedBox  # python3-nacl

        data = self.secret.encode("utf-8")
        if self.tag is not None:
            data = b"\x01" + self.tag + int(time.time()).to_bytes(8, "big") + data
        return SealedBox(PublicKey(public_key)).encrypt(data)


def new_idempotency_key() -> str:
    """A fresh idempotency key (``py-`` and 32 hex digits), for a call the
    caller gave none, so that the client may send it again after a lost
    connection without charging twice."""
    return "py-" + uuid.uuid4().hex


SCALAR, VOID, ROW, OPT_ROW, ROWS, PROCEDURE = "scalar", "void", "row", "opt_row", "rows", "procedure"


@dataclass
class Call:
    """One SQL call: ``pgmarket.fn(name => %s::type, ...)``.

    ``args`` are (name, SQL type, value); a value of OMIT is left out.
    ``shape`` says how the result is read; ``retry`` that the call may be
    sent again on a new connection when the first one was lost before its
    answer arrived (reads, and writes under an idempotency key);
    ``local`` is an answer known without asking the server (a platform key
    with no public part, say); ``sql`` replaces the generated text.
    """

    fn: str
    args: Sequence[Tuple[str, str, Any]]
    shape: str
    retry: bool = False
    convert: Optional[Callable[[Any], Any]] = None
    sql: Optional[str] = None
    params: Optional[List[Any]] = None
    local: Any = OMIT
    local_error: Optional[Error] = None

    @property
    def has_sealed(self) -> bool:
        return any(isinstance(v, Sealed) for _, _, v in self.args)

    def render(self, public_key: Optional[bytes]) -> Tuple[str, List[Any]]:
        """The SQL text and its parameters; sealed values sealed to public_key."""
        if self.sql is not None:
            return self.sql, list(self.params or [])
        parts: List[str] = []
        params: List[Any] = []
        for name, sqltype, value in self.args:
            if value is OMIT:
                continue
            if isinstance(value, Sealed):
                assert public_key is not None
                value = value.seal(public_key)
            elif sqltype == "jsonb" and value is not None and not isinstance(value, Jsonb):
                value = Jsonb(value)
            parts.append(f'"{name}" => %s::{sqltype}')
            params.append(value)
        arglist = ", ".join(parts)
        if self.shape == PROCEDURE:
            return f"CALL pgmarket.{self.fn}({arglist})", params
        if self.shape in (SCALAR, VOID):
            return f"SELECT pgmarket.{self.fn}({arglist})", params
        return f"SELECT * FROM pgmarket.{self.fn}({arglist})", params

    def result(self, rows: List[Row]) -> Any:
        """The method's answer from the rows the call returned."""
        if self.shape in (VOID, PROCEDURE):
            out: Any = None
        elif self.shape == SCALAR:
            out = next(iter(rows[0].values())) if rows else None
        elif self.shape == ROW:
            out = rows[0] if rows else None
        elif self.shape == OPT_ROW:
            out = rows[0] if rows else None
        else:
            out = rows
        return self.convert(out) if self.convert else out


def translate(exc: BaseException) -> Error:
    """The pgmarket exception for a psycopg one (chained by the caller)."""
    if isinstance(exc, Error):
        return exc
    if isinstance(exc, psycopg.Error):
        sqlstate = exc.sqlstate
        diag = exc.diag
        message = (diag.message_primary if sqlstate else None) or str(exc).strip()
        if sqlstate is None and not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            cls = Error
        else:
            cls = error_class(sqlstate)
        return cls(message, sqlstate, diag.message_detail if sqlstate else None,
                   diag.message_hint if sqlstate else None)
    return Error(str(exc))


def connection_lost(exc: BaseException, conn: Any) -> bool:
    """Whether exc means the connection is gone (the call's outcome unknown)."""
    if isinstance(exc, psycopg.Error) and not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    if conn is not None and (getattr(conn, "broken", False) or getattr(conn, "closed", False)):
        return True
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


@dataclass
class KeyCache:
    """The vault's public key, fetched once per client and again after PM011."""

    public_key: Optional[bytes] = None
    fetched: int = field(default=0)

"""``pgmarket.Client`` and ``pgmarket.AsyncClient``: the API over psycopg 3.

Both take what the application already has: a psycopg connection, a
psycopg_pool pool, or a conninfo string / URI (with none, the ``PG*``
variables as psql reads them).  Every call is one transaction of its own,
unless the connection is already in one (a caller's open transaction, or
:func:`pgmarket.actor`): then it runs in a savepoint of it, so that a
refused call does not abort the caller's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from typing import Any, AsyncIterator, Dict, Iterator, Optional, Union

import psycopg
from psycopg import pq
from psycopg.rows import dict_row

from . import _core
from ._api import Methods
from ._core import Call, KeyCache, UUIDLike, connection_lost, to_uuid, translate
from .errors import ConnectionFailed, DecryptionFailed, Error, InvalidValue

__all__ = ["Client", "AsyncClient", "actor"]

try:  # python3-psycopg-pool; optional
    import psycopg_pool as _pool_mod
except ImportError:  # pragma: no cover - the pool is packaged by Debian
    _pool_mod = None  # type: ignore[assignment]


def _connect_failed(e: psycopg.Error) -> ConnectionFailed:
    """A failed connection attempt, whatever its SQLSTATE (28P01, 3D000, ...)."""
    err = translate(e)
    return ConnectionFailed(err.message, e.sqlstate, err.detail, err.hint)


def _is_pool(obj: Any) -> bool:
    return hasattr(obj, "connection") and hasattr(obj, "getconn") and hasattr(obj, "putconn")


class Client(Methods):
    """The pgmarket API on a synchronous psycopg 3 connection or pool.

    ``source`` is a ``psycopg.Connection`` (the application's own; the
    client never closes it), a ``psycopg_pool.ConnectionPool``, or a
    conninfo / URI (``"dbname=market"``, ``"postgresql://..."``); with
    None, libpq reads the ``PG*`` variables.  With a conninfo the client
    opens one connection of its own, or a pool of ``pool_size`` when given,
    and :meth:`close` closes it.

    ``plain_secrets=True`` sends passwords, platform keys and provider keys
    as text to the plain SQL functions instead of sealed, for a server
    without a vault (they then reach a server log that keeps bind
    parameters); by default they are sealed and a server without a vault
    answers :class:`VaultUnavailable`.

    Methods are named after the SQL functions and take the same arguments
    (``help(pgmarket.Client.deduct_balance)``).  A client is safe to share
    between threads (psycopg serialises the use of one connection; use a
    pool for parallel calls).
    """

    def __init__(self, source: Union[None, str, "psycopg.Connection[Any]", Any] = None, *,
                 plain_secrets: bool = False, pool_size: Optional[int] = None,
                 connect_timeout: Optional[int] = None) -> None:
        self.plain_secrets = plain_secrets
        self._keys = KeyCache()
        self._lock = threading.Lock()
        self._conn: Optional[psycopg.Connection[Any]] = None
        self._pool: Any = None
        self._fixed: Optional[psycopg.Connection[Any]] = None
        self._owns = False
        self._conninfo = ""
        self._kwargs: Dict[str, Any] = {}
        if connect_timeout is not None:
            self._kwargs["connect_timeout"] = connect_timeout
        if isinstance(source, psycopg.Connection):
            self._fixed = source
        elif source is not None and not isinstance(source, str) and _is_pool(source):
            self._pool = source
        elif source is None or isinstance(source, str):
            self._conninfo = source or ""
            self._owns = True
            if pool_size is not None:
                if _pool_mod is None:
                    raise Error("pool_size needs psycopg_pool (Debian: python3-psycopg-pool)")
                self._pool = _pool_mod.ConnectionPool(
                    self._conninfo, min_size=1, max_size=pool_size, open=True,
                    kwargs=dict(autocommit=True, **self._kwargs))
        else:
            raise TypeError("Client takes a psycopg.Connection, a ConnectionPool, a conninfo string or None")

    # -- connections -------------------------------------------------------

    @property
    def may_reconnect(self) -> bool:
        """Whether a lost connection can be replaced (not the caller's own)."""
        return self._fixed is None

    @contextlib.contextmanager
    def connection(self) -> Iterator["psycopg.Connection[Any]"]:
        """A connection to run a call on: the fixed one, one of the pool's,
        or the client's own (opened again if it was lost)."""
        if self._fixed is not None:
            yield self._fixed
        elif self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
        else:
            with self._lock:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    if self._conn is not None:
                        self._conn.close()
                    try:
                        self._conn = psycopg.connect(self._conninfo, autocommit=True, **self._kwargs)
                    except psycopg.Error as e:
                        raise _connect_failed(e) from e
            yield self._conn

    def close(self) -> None:
        """Close what the client opened (never the caller's connection or pool)."""
        if self._owns:
            if self._pool is not None:
                self._pool.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _bound(self, conn: "psycopg.Connection[Any]") -> "Client":
        c = Client(conn, plain_secrets=self.plain_secrets)
        c._keys = self._keys
        return c

    # -- one call ----------------------------------------------------------

    def _public_key(self, conn: "psycopg.Connection[Any]") -> bytes:
        if self._keys.public_key is None:
            with conn.cursor() as cur:
                cur.execute("SELECT pgmarket.vault_public_key()")
                row = cur.fetchone()
            self._keys.public_key = bytes(row[0]) if row else b""
        return self._keys.public_key

    def _run(self, conn: "psycopg.Connection[Any]", call: Call) -> Any:
        for attempt in range(2):
            try:
                direct = conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE
                if call.shape == _core.PROCEDURE or direct:
                    pk = self._public_key(conn) if call.has_sealed else None
                    sql, params = call.render(pk)
                    with conn.cursor(row_factory=dict_row) as cur:
                        cur.execute(sql, params)
                        rows = cur.fetchall() if cur.description else []
                else:
                    with conn.transaction():
                        pk = self._public_key(conn) if call.has_sealed else None
                        sql, params = call.render(pk)
                        with conn.cursor(row_factory=dict_row) as cur:
                            cur.execute(sql, params)
                            rows = cur.fetchall() if cur.description else []
                return call.result(rows)
            except psycopg.Error as e:
                err = translate(e)
                if isinstance(err, DecryptionFailed) and call.has_sealed and attempt == 0:
                    self._keys.public_key = None   # the master key changed: seal again
                    continue
                raise err from e
        raise AssertionError("unreachable")

    def _call(self, call: Call) -> Any:
        if call.local_error is not None:
            raise call.local_error
        if call.local is not _core.OMIT:
            return call.local
        attempts = 2 if call.retry and self.may_reconnect else 1
        for attempt in range(attempts):
            conn = None
            try:
                with self.connection() as conn:
                    return self._run(conn, call)
            except Error as e:
                cause = e.__cause__
                if attempt + 1 < attempts and cause is not None and connection_lost(cause, conn):
                    continue
                raise

    # -- health ------------------------------------------------------------

    def ping(self) -> bool:
        """True when a trivial query gets an answer (after reconnecting if the
        client's own connection was lost); never raises."""
        try:
            return self._call(Call("ping", [], _core.SCALAR, retry=True, sql="SELECT true")) is True
        except Error:
            return False


class AsyncClient(Methods):
    """The pgmarket API on an asyncio psycopg 3 connection or pool.

    The same as :class:`Client` (the same methods, arguments and results),
    with every method a coroutine: ``await client.deduct_balance(...)``.
    ``source`` is a ``psycopg.AsyncConnection``, a
    ``psycopg_pool.AsyncConnectionPool``, or a conninfo (None: the ``PG*``
    variables); with a conninfo, ``pool_size`` opens a pool of that many
    connections for concurrent calls (one connection serialises them).
    Call ``await client.close()`` (or ``async with``) when done.
    """

    def __init__(self, source: Union[None, str, "psycopg.AsyncConnection[Any]", Any] = None, *,
                 plain_secrets: bool = False, pool_size: Optional[int] = None,
                 connect_timeout: Optional[int] = None) -> None:
        self.plain_secrets = plain_secrets
        self._keys = KeyCache()
        self._lock: Optional[asyncio.Lock] = None
        self._conn: Optional[psycopg.AsyncConnection[Any]] = None
        self._pool: Any = None
        self._fixed: Optional[psycopg.AsyncConnection[Any]] = None
        self._owns = False
        self._conninfo = ""
        self._pool_size = pool_size
        self._kwargs: Dict[str, Any] = {}
        if connect_timeout is not None:
            self._kwargs["connect_timeout"] = connect_timeout
        if isinstance(source, psycopg.AsyncConnection):
            self._fixed = source
        elif source is not None and not isinstance(source, str) and _is_pool(source):
            self._pool = source
        elif source is None or isinstance(source, str):
            self._conninfo = source or ""
            self._owns = True
            if pool_size is not None and _pool_mod is None:
                raise Error("pool_size needs psycopg_pool (Debian: python3-psycopg-pool)")
        else:
            raise TypeError("AsyncClient takes a psycopg.AsyncConnection, an AsyncConnectionPool, a conninfo string or None")

    @property
    def may_reconnect(self) -> bool:
        """Whether a lost connection can be replaced (not the caller's own)."""
        return self._fixed is None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator["psycopg.AsyncConnection[Any]"]:
        """A connection to run a call on (see :meth:`Client.connection`)."""
        if self._fixed is not None:
            yield self._fixed
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        if self._owns and self._pool_size is not None and self._pool is None:
            async with self._lock:
                if self._pool is None:
                    pool = _pool_mod.AsyncConnectionPool(
                        self._conninfo, min_size=1, max_size=self._pool_size, open=False,
                        kwargs=dict(autocommit=True, **self._kwargs))
                    await pool.open()
                    self._pool = pool
        if self._pool is not None:
            async with self._pool.connection() as conn:
                yield conn
            return
        async with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                if self._conn is not None:
                    await self._conn.close()
                try:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, **self._kwargs)
                except psycopg.Error as e:
                    raise _connect_failed(e) from e
        conn = self._conn
        assert conn is not None
        yield conn

    async def close(self) -> None:
        """Close what the client opened (never the caller's connection or pool)."""
        if self._owns:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _bound(self, conn: "psycopg.AsyncConnection[Any]") -> "AsyncClient":
        c = AsyncClient(conn, plain_secrets=self.plain_secrets)
        c._keys = self._keys
        return c

    async def _public_key(self, conn: "psycopg.AsyncConnection[Any]") -> bytes:
        if self._keys.public_key is None:
            async with conn.cursor() as cur:
                await cur.execute("SELECT pgmarket.vault_public_key()")
                row = await cur.fetchone()
            self._keys.public_key = bytes(row[0]) if row else b""
        return self._keys.public_key

    async def _run(self, conn: "psycopg.AsyncConnection[Any]", call: Call) -> Any:
        for attempt in range(2):
            try:
                direct = conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE
                if call.shape == _core.PROCEDURE or direct:
                    pk = await self._public_key(conn) if call.has_sealed else None
                    sql, params = call.render(pk)
                    async with conn.cursor(row_factory=dict_row) as cur:
                        await cur.execute(sql, params)
                        rows = await cur.fetchall() if cur.description else []
                else:
                    async with conn.transaction():
                        pk = await self._public_key(conn) if call.has_sealed else None
                        sql, params = call.render(pk)
                        async with conn.cursor(row_factory=dict_row) as cur:
                            await cur.execute(sql, params)
                            rows = await cur.fetchall() if cur.description else []
                return call.result(rows)
            except psycopg.Error as e:
                err = translate(e)
                if isinstance(err, DecryptionFailed) and call.has_sealed and attempt == 0:
                    self._keys.public_key = None
                    continue
                raise err from e
        raise AssertionError("unreachable")

    async def _acall(self, call: Call) -> Any:
        if call.local_error is not None:
            raise call.local_error
        if call.local is not _core.OMIT:
            return call.local
        attempts = 2 if call.retry and self.may_reconnect else 1
        for attempt in range(attempts):
            conn = None
            try:
                async with self.connection() as conn:
                    return await self._run(conn, call)
            except Error as e:
                cause = e.__cause__
                if attempt + 1 < attempts and cause is not None and connection_lost(cause, conn):
                    continue
                raise

    def _call(self, call: Call) -> Any:
        return self._acall(call)

    async def ping(self) -> bool:
        """True when a trivial query gets an answer; never raises."""
        try:
            return (await self._acall(Call("ping", [], _core.SCALAR, retry=True, sql="SELECT true"))) is True
        except Error:
            return False


def _asyncify(name: str, fn: Any) -> Any:
    @functools.wraps(fn)
    async def method(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
        out = fn(self, *args, **kwargs)
        if inspect.isawaitable(out):
            out = await out
        return out
    method.__doc__ = (fn.__doc__ or "") + "\n\n(A coroutine on AsyncClient.)"
    return method


for _name, _fn in list(vars(Methods).items()):
    if not _name.startswith("_") and inspect.isfunction(_fn):
        setattr(AsyncClient, _name, _asyncify(_name, _fn))


class actor:
    """Run a transaction acting for one user: ``pgmarket.actor`` set locally.

    ::

        with pgmarket.actor(client, user_id) as c:
            c.deduct_balance(user_id, "0.002", "gpt-4o")
            c.save_chat_message(user_id, session_id, "assistant", text)

        async with pgmarket.actor(aclient, user_id) as c:
            await c.deduct_balance(user_id, "0.002", "gpt-4o")

    The block is one transaction on one connection (committed at its end,
    rolled back when it raises); every call inside runs in a savepoint, so
    a refused call (caught) leaves the others.  With the actor set, the
    server refuses any other user (PermissionDenied) and row-level security
    shows only this user's rows.
    """

    def __init__(self, client: Union[Client, AsyncClient], user_id: UUIDLike) -> None:
        uid = to_uuid(user_id, "user_id")
        if uid is None:
            raise InvalidValue("user_id must not be None", "22004")
        self.client = client
        self.user_id = uid
        self._stack: Any = None

    _SET = "SELECT set_config('pgmarket.actor', %s, true)"

    def __enter__(self) -> Client:
        if not isinstance(self.client, Client):
            raise TypeError("use `async with pgmarket.actor(...)` with an AsyncClient")
        stack = contextlib.ExitStack()
        try:
            conn = stack.enter_context(self.client.connection())
            stack.enter_context(conn.transaction())
            conn.execute(self._SET, [str(self.user_id)])
        except psycopg.Error as e:
            stack.__exit__(type(e), e, e.__traceback__)
            raise translate(e) from e
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self.client._bound(conn)

    def __exit__(self, *exc: Any) -> Optional[bool]:
        stack, self._stack = self._stack, None
        try:
            return bool(stack.__exit__(*exc))
        except psycopg.Error as e:
            raise translate(e) from e

    async def __aenter__(self) -> AsyncClient:
        if not isinstance(self.client, AsyncClient):
            raise TypeError("use `with pgmarket.actor(...)` with a Client")
        stack = contextlib.AsyncExitStack()
        try:
            conn = await stack.enter_async_context(self.client.connection())
            await stack.enter_async_context(conn.transaction())
            await conn.execute(self._SET, [str(self.user_id)])
        except psycopg.Error as e:
            await stack.__aexit__(type(e), e, e.__traceback__)
            raise translate(e) from e
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self.client._bound(conn)

    async def __aexit__(self, *exc: Any) -> Optional[bool]:
        stack, self._stack = self._stack, None
        try:
            return bool(await stack.__aexit__(*exc))
        except psycopg.Error as e:
            raise translate(e) from e

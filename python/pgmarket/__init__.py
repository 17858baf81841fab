"""pgmarket: the Python client of the pgmarket PostgreSQL extension.

::

    import pgmarket
    client = pgmarket.Client("dbname=market")        # or a psycopg connection / pool
    uid = client.create_user("alice@example.com", "alice", "correct horse")
    client.add_funds(uid, "20.00", "stripe-pi_3Nx")
    client.deduct_balance(uid, 0.0042, "gpt-4o", 1234)   # a float through its shortest text
    client.get_balance(uid)["available_balance"]          # Decimal('19.995800')

:class:`Client` and :class:`AsyncClient` have one method per SQL function of
schema ``pgmarket``, with the same names and arguments; results are dicts
(``Decimal`` amounts, ``uuid.UUID`` ids, ``datetime`` times).  Errors are
:class:`Error` subclasses named after their SQLSTATE.  :func:`actor` runs a
transaction acting for one user; :mod:`pgmarket.compat` has the
marketplace's ``DatabaseService``.
"""

from ._core import AmountLike, IntervalLike, Row, UUIDLike, new_idempotency_key, to_amount
from .client import AsyncClient, Client, actor
from .errors import (AppendOnly, AuditChainBroken, ConnectionFailed, DecryptionFailed, Duplicate,
                     Error, IdempotencyConflict, InsufficientFunds, InvalidApiKey, InvalidText,
                     InvalidValue, KeyNotFound, NullValue, OutOfRange, PermissionDenied,
                     RateLimited, ReservationState, UnknownAccount, VaultUnavailable, error_class)

__version__ = "0.11.0"

__all__ = [
    "Client", "AsyncClient", "actor", "Error", "InsufficientFunds", "UnknownAccount",
    "IdempotencyConflict", "ReservationState", "RateLimited", "VaultUnavailable",
    "DecryptionFailed", "KeyNotFound", "AuditChainBroken", "InvalidApiKey", "PermissionDenied",
    "InvalidValue", "InvalidText", "NullValue", "OutOfRange", "Duplicate", "AppendOnly",
    "ConnectionFailed", "error_class", "to_amount", "new_idempotency_key",
    "AmountLike", "UUIDLike", "IntervalLike", "Row", "__version__",
]

"""Every SQL function a pgmarket role may call has a method of that name,
with the same arguments in the same order, on both clients."""

from __future__ import annotations

import inspect

import pgmarket
from conftest import sql

# Functions a role may call that are not part of the API an application
# calls: the PL/Proxy front's forwarding of the actor.
NOT_METHODS = {"proxy_actor"}

CATALOG = """
SELECT p.proname AS name, p.prokind AS kind,
       coalesce(p.proargnames[1:p.pronargs], '{}') AS args,
       p.pronargs - p.pronargdefaults AS required
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'pgmarket'
   AND (has_function_privilege('pgmarket_app', p.oid, 'EXECUTE')
        OR has_function_privilege('pgmarket_keyreader', p.oid, 'EXECUTE')
        OR has_function_privilege('pgmarket_auditor', p.oid, 'EXECUTE')
        OR has_function_privilege('pgmarket_admin', p.oid, 'EXECUTE'))
 ORDER BY 1
"""


def _params(fn):
    return [n for n in inspect.signature(fn).parameters if n != "self"]


def test_every_function_has_a_method(client):
    rows = sql(client, CATALOG)
    assert len(rows) > 60
    missing, wrong = [], []
    for r in rows:
        if r["name"] in NOT_METHODS:
            continue
        m = getattr(pgmarket.Client, r["name"], None)
        if m is None:
            missing.append(r["name"])
            continue
        if _params(m) != list(r["args"]):
            wrong.append((r["name"], list(r["args"]), _params(m)))
        else:
            ps = list(inspect.signature(m).parameters.values())[1:]
            own = [p.default is inspect.Parameter.empty for p in ps]
            if own != [i < r["required"] for i in range(len(ps))]:
                wrong.append((r["name"], "required arguments differ", r["required"]))
    assert missing == [], f"functions without a Client method: {missing}"
    assert wrong == [], f"methods whose arguments differ from the function's: {wrong}"


def test_async_client_has_the_same_methods_as_coroutines(client):
    for r in sql(client, CATALOG):
        if r["name"] in NOT_METHODS:
            continue
        am = getattr(pgmarket.AsyncClient, r["name"])
        assert inspect.iscoroutinefunction(am), r["name"]
        assert _params(am) == _params(getattr(pgmarket.Client, r["name"]))


def test_no_method_without_a_function(client):
    names = {r["name"] for r in sql(client, CATALOG)}
    own = {"ping", "connection", "close", "may_reconnect"}
    for name, fn in inspect.getmembers(pgmarket.Client, inspect.isfunction):
        if name.startswith("_") or name in own:
            continue
        assert name in names, f"Client.{name} names no SQL function a role may call"


def test_every_method_has_a_docstring():
    for name, fn in inspect.getmembers(pgmarket.Client, inspect.isfunction):
        if not name.startswith("_"):
            assert fn.__doc__ and fn.__doc__.strip(), name
            assert inspect.signature(fn).return_annotation is not inspect.Signature.empty, name

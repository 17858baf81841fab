"""A small marketplace service in Flask on pgmarket.

    DATABASE_URL=postgresql:///market flask --app examples/flask_app.py run

POST /register {email, username, password}     -> {user_id}
POST /login    {email, password}               -> {user_id}
POST /funds    {user_id, amount, transaction_id} -> the balance
POST /chat     {user_id, session_id?, model_id, prompt, cost}
               stores the prompt, then the answer and its charge in one step
GET  /balance/<user_id>, GET /history/<session_id>

Amounts travel as JSON strings or numbers; the answers give them as
strings, exactly ("75.000000").  PM001 is a 402, an unknown user a 404.
"""

from __future__ import annotations

import os
import sys
import uuid
from decimal import Decimal
from typing import Any, Optional

from flask import Flask, jsonify, request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pgmarket  # noqa: E402
from auth_service import AuthService  # noqa: E402
from pgmarket.compat import DatabaseService  # noqa: E402


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def create_app(db: Optional[DatabaseService] = None) -> Flask:
    """The application; db defaults to DatabaseService() (DATABASE_URL)."""
    app = Flask(__name__)
    db = db if db is not None else DatabaseService()
    auth = AuthService(db)
    client = db.client

    @app.errorhandler(pgmarket.Error)
    def pgmarket_error(e: pgmarket.Error):  # type: ignore[no-untyped-def]
        status = {"PM001": 402, "PM002": 404, "22023": 400, "22004": 400, "22003": 400,
                  "PM003": 409, "23505": 409, "42501": 403}.get(e.sqlstate or "", 500)
        return jsonify(error=e.message, sqlstate=e.sqlstate), status

    @app.post("/register")
    def register():  # type: ignore[no-untyped-def]
        body = request.get_json(force=True)
        r = auth.register(body.get("email", ""), body.get("username", ""), body.get("password", ""))
        return jsonify(r), (201 if r["success"] else 400)

    @app.post("/login")
    def login():  # type: ignore[no-untyped-def]
        body = request.get_json(force=True)
        r = auth.login(body.get("email", ""), body.get("password", ""))
        return jsonify(_json(r)), (200 if r["success"] else 401)

    @app.post("/funds")
    def funds():  # type: ignore[no-untyped-def]
        body = request.get_json(force=True)
        client.add_funds(body["user_id"], body["amount"], body.get("transaction_id"))
        return jsonify(_json(db.get_user_balance(body["user_id"])))

    @app.get("/balance/<user_id>")
    def balance(user_id: str):  # type: ignore[no-untyped-def]
        return jsonify(_json(client.get_balance(user_id)))

    @app.post("/chat")
    def chat():  # type: ignore[no-untyped-def]
        body = request.get_json(force=True)
        uid, model = body["user_id"], body["model_id"]
        session = body.get("session_id") or str(uuid.uuid4())
        with pgmarket.actor(client, uid) as c:       # one transaction, acting for the user
            c.create_chat_session(uid, model, body.get("title"), id=session)
            c.save_chat_message(uid, session, "user", body["prompt"])
            answer = f"echo: {body['prompt']}"          # the model call goes here
            result = c.record_completion(uid, session, answer, len(answer.split()), body["cost"],
                                         idempotency_key=body.get("request_id"))
        return jsonify(_json({"session_id": session, "answer": answer, "charge": result}))

    @app.get("/history/<session_id>")
    def history(session_id: str):  # type: ignore[no-untyped-def]
        return jsonify(_json(db.get_chat_history(session_id)))

    return app


if __name__ == "__main__":
    create_app().run(port=int(os.environ.get("PORT", "8000")))

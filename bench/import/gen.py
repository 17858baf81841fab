#!/usr/bin/env python3
"""bench/import/gen.py USERS FILE: an import document of USERS users and
7 records each (the user, its balance, three transactions, a provider key,
a chat session of two messages), amounts exact, timestamps in 2025."""
import json, sys, uuid

users = int(sys.argv[1])
out = open(sys.argv[2], "w")
doc_users, balances, txs, keys, chats = {}, {}, [], {}, {}
for i in range(users):
    uid = str(uuid.UUID(int=(0x0b << 120) | i, version=4))
    ts = "2025-%02d-%02dT%02d:%02d:00Z" % (1 + i % 12, 1 + i % 28, i % 24, i % 60)
    doc_users[uid] = {"email": "u%d@bench.example" % i, "username": "user%d" % i,
                      "password_hash": "pbkdf2_sha256$600000$c2FsdHNhbHQ$7LcoLLDoOR+i1EdoTP3UQVVbggscifbc8tiVaw4unJw=",
                      "created_at": ts}
    balances[uid] = {"total": "100.5", "spent": "7.25"}
    txs.append({"id": "d-%d" % i, "user_id": uid, "type": "deposit", "amount": "50.25",
                "model_id": None, "tokens": 0, "timestamp": ts})
    txs.append({"id": "c-%d-a" % i, "user_id": uid, "type": "charge", "amount": "1.000001",
                "model_id": "gpt-4o", "tokens": 1200, "timestamp": ts})
    txs.append({"id": "c-%d-b" % i, "user_id": uid, "type": "charge", "amount": "0.25",
                "model_id": "claude-3", "tokens": 300, "timestamp": ts})
    keys[uid] = {"openai": "sk-bench-%08d-secret" % i}
    sid = str(uuid.UUID(int=(0x0c << 120) | i, version=4))
    chats[sid] = {"user_id": uid, "model_id": "gpt-4o", "title": "chat %d" % i,
                  "messages": [{"role": "user", "content": "hello %d" % i, "tokens": 3,
                                "cost": "0", "timestamp": ts},
                               {"role": "assistant", "content": "hi there", "tokens": 5,
                                "cost": "0.000125", "timestamp": ts}]}
json.dump({"users": doc_users, "balance_tracker": balances, "transactions": txs,
           "api_keys": keys, "chat_history": chats}, out, indent=1)

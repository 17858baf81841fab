"""Tiers and rate limits: set_tier, check_rate_limit (sealed and plain),
and PM005 from a key's calls once its tier allows no more."""

from __future__ import annotations

import uuid

import pytest

import pgmarket


def _tier(prefix: str = "t") -> str:
    return prefix + "-" + uuid.uuid4().hex[:12]


def test_set_tier_then_charge_until_rate_limited(client, user):
    tier = _tier()
    client.set_tier(tier, 3, None, burst=1)                 # 3 + 1 calls in any 60 seconds
    key = client.create_api_key(user, "tiered", rate_limit_tier=tier)["api_key"]
    assert client.verify_api_key(key)["rate_limit_tier"] == tier
    assert client.check_rate_limit(key) == {"allowed": True, "retry_after_ms": 0, "remaining_requests": 4}
    for i in range(4):
        client.charge_api_key(key, 1, "gpt-4")
    with pytest.raises(pgmarket.RateLimited) as e:
        client.charge_api_key(key, 1, "gpt-4")
    assert isinstance(e.value.retry_after_ms, int) and 0 < e.value.retry_after_ms <= 61000
    # the wait comes in the DETAIL's fixed form, the same as the message's
    assert e.value.detail.startswith("retry_after_ms=%d:" % e.value.retry_after_ms)
    assert ("retry after %d ms" % e.value.retry_after_ms) in e.value.message
    with pytest.raises(pgmarket.RateLimited):
        client.reserve_api_key(key, 1)
    r = client.check_rate_limit(key)
    assert r["allowed"] is False and r["remaining_requests"] == 0
    assert 0 < r["retry_after_ms"] <= 61000
    assert client.get_balance(user)["available_balance"] == 96
    # the tier changed takes effect at the key's next call
    client.set_tier(tier, None, None)
    assert client.check_rate_limit(key) == {"allowed": True, "retry_after_ms": 0, "remaining_requests": None}
    assert client.charge_api_key(key, 1, "gpt-4")["kind"] == "charge"


def test_check_rate_limit_consumes_nothing(client, user):
    tier = _tier()
    client.set_tier(tier, 1, None)
    key = client.create_api_key(user, "peek", rate_limit_tier=tier)["api_key"]
    for _ in range(5):
        assert client.check_rate_limit(key)["allowed"] is True
    client.charge_api_key(key, 1, "gpt-4")
    assert client.check_rate_limit(key)["allowed"] is False


def test_tokens_per_minute(client, user):
    tier = _tier()
    client.set_tier(tier, None, 100)
    key = client.create_api_key(user, "tokens", rate_limit_tier=tier)["api_key"]
    client.charge_api_key(key, 1, "gpt-4", tokens_used=100)
    with pytest.raises(pgmarket.RateLimited) as e:
        client.charge_api_key(key, 1, "gpt-4", tokens_used=1)
    assert "tokens" in e.value.message and e.value.retry_after_ms > 0
    with pytest.raises(pgmarket.InvalidValue):                   # no window could ever admit it
        client.charge_api_key(key, 1, "gpt-4", tokens_used=101)
    assert pgmarket.RateLimited("rate limited").retry_after_ms is None


def test_retry_after_ms_is_read_from_the_detail():
    # the DETAIL's fixed form wins over anything the message says
    e = pgmarket.RateLimited("rate limited: ... retry after 99 ms",
                             detail="retry_after_ms=1234: the tier allows 1 requests and unlimited tokens in any 60 seconds.")
    assert e.retry_after_ms == 1234
    assert pgmarket.RateLimited("x", detail="retry_after_ms=7").retry_after_ms == 7
    # a server before 0.8.0: only the message names the wait
    e = pgmarket.RateLimited("rate limited: ... retry after 250 ms",
                             detail="The tier allows 1 requests and unlimited tokens in any 60 seconds.")
    assert e.retry_after_ms == 250
    # a DETAIL of another shape is not read as a wait
    assert pgmarket.RateLimited("rate limited", detail="retry_after_ms=12x").retry_after_ms is None


def test_check_rate_limit_plain_and_sealed_by_hand(client, user):
    key = client.create_api_key(user, "plain")["api_key"]        # tier free
    plain = pgmarket.Client(plain_secrets=True)
    try:
        r = plain.check_rate_limit(key)
        assert r["allowed"] is True and r["remaining_requests"] == 70
        with pytest.raises(pgmarket.InvalidApiKey):
            plain.check_rate_limit("sk_live_0000000000000000" + "x" * 40)
    finally:
        plain.close()
    from pgmarket._core import Sealed
    sealed = Sealed(b"K", key).seal(client.vault_public_key())
    assert client.check_rate_limit_sealed(key[:24], sealed) == client.check_rate_limit(key)
    with pytest.raises(pgmarket.InvalidApiKey):
        client.check_rate_limit("not a key")                     # refused without being sent
    with pytest.raises(pgmarket.InvalidApiKey):
        client.check_rate_limit(key[:-1] + ("0" if key[-1] != "0" else "1"))


def test_set_tier_refuses_bad_limits(client):
    with pytest.raises(pgmarket.InvalidValue):
        client.set_tier(_tier(), 0, None)
    with pytest.raises(pgmarket.InvalidValue):
        client.set_tier(_tier(), None, None, burst=-1)
    with pytest.raises(pgmarket.InvalidValue):
        client.set_tier("Not A Tier", 1, 1)
    with pytest.raises(pgmarket.NullValue):
        client.set_tier(None, 1, 1)


@pytest.mark.asyncio
async def test_async_rate_limit(client, user):
    tier = _tier("a")
    ac = pgmarket.AsyncClient()
    try:
        await ac.set_tier(tier, 1, None)
        key = (await ac.create_api_key(user, "async", rate_limit_tier=tier))["api_key"]
        assert (await ac.check_rate_limit(key))["remaining_requests"] == 1
        await ac.charge_api_key(key, 1, "gpt-4")
        with pytest.raises(pgmarket.RateLimited) as e:
            await ac.charge_api_key(key, 1, "gpt-4")
        assert e.value.retry_after_ms > 0
    finally:
        await ac.close()

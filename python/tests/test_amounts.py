"""Amounts: Decimal, int, str and float in; exact Decimal out."""

from __future__ import annotations

from decimal import Decimal

import pytest

import pgmarket
from pgmarket import to_amount


@pytest.mark.parametrize("value, expected", [
    (Decimal("1.5"), Decimal("1.5")), (3, Decimal(3)), ("0.000001", Decimal("0.000001")),
    (" 2.25 ", Decimal("2.25")), (0.1, Decimal("0.1")), (1e-6, Decimal("0.000001")),
    (19.99, Decimal("19.99")), ("1.5e3", Decimal("1500")),
])
def test_to_amount(value, expected):
    assert to_amount(value) == expected
    assert isinstance(to_amount(value), Decimal)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), Decimal("NaN"),
                                   Decimal("Infinity"), "NaN", "abc", "", True, [1], object()])
def test_to_amount_refuses(value):
    with pytest.raises(pgmarket.InvalidValue) as e:
        to_amount(value)
    assert e.value.sqlstate == "22023"


def test_float_goes_through_its_shortest_text(client, user):
    r = client.deduct_balance(user, 0.1, "gpt-4")
    assert r["amount"] == Decimal("0.1")
    assert r["available_balance"] == Decimal("99.9")
    assert str(r["amount"]) == "0.100000"


def test_a_float_that_is_no_whole_micro_credit_is_refused(client, user):
    with pytest.raises(pgmarket.InvalidValue) as e:
        client.deduct_balance(user, 0.1 + 0.2, "gpt-4")
    assert "0.30000000000000004" in e.value.message
    assert client.get_balance(user)["spent_balance"] == 0


@pytest.mark.parametrize("value, cls", [
    (0, pgmarket.InvalidValue), (-1, pgmarket.InvalidValue), ("1.0000001", pgmarket.InvalidValue),
    (9e12, pgmarket.OutOfRange), ("1e1000", pgmarket.OutOfRange), (float("nan"), pgmarket.InvalidValue),
])
def test_the_server_rules_on_every_other_amount(client, user, value, cls):
    with pytest.raises(cls):
        client.add_funds(user, value)
    assert client.get_balance(user)["total_balance"] == 100


def test_int_str_and_decimal_amounts(client, user):
    client.deduct_balance(user, 1, "m")
    client.deduct_balance(user, "2.5", "m")
    client.deduct_balance(user, Decimal("0.000001"), "m")
    assert client.get_balance(user)["available_balance"] == Decimal("96.499999")

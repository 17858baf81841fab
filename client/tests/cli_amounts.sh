# cli_amounts.sh: integers and sums in the pgmarket tool never wrap; sourced
# by run.sh after cli.sh (which defines pgm, q and has).
# shellcheck shell=bash disable=SC2154

echo "# the pgmarket tool: integer options and import sums"

# exits NAME STATUS COMMAND...: COMMAND exits with exactly STATUS
exits() {
    local name=$1 want=$2 rc
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -eq "$want" ]; then
        ok "cli: $name"
    else
        notok "cli: $name (exit $rc, not $want)"
        sed 's/^/#   /' "$tmp/out" "$tmp/err"
    fi
}

amt_user=0f000000-0000-4000-8000-000000000001
cat >"$tmp/amounts.json" <<EOF
{
  "users": {
    "$amt_user": {"email": "amounts@example.com", "username": "amounts"}
  },
  "balance_tracker": {
    "$amt_user": {"total": 8999999999999, "spent": 0}
  },
  "transactions": [
    {"id": "amt-1", "user_id": "$amt_user", "type": "deposit", "amount": 5000000000000},
    {"id": "amt-2", "user_id": "$amt_user", "type": "deposit", "amount": 5000000000000},
    {"id": "amt-3", "user_id": "$amt_user", "type": "deposit", "amount": 8999999999999.999999,
     "tokens": 0}
  ]
}
EOF
cat >"$tmp/tokens.json" <<EOF
{"transactions": [
  {"id": "amt-4", "user_id": "$amt_user", "type": "charge", "amount": 1,
   "tokens": 99999999999999999999}]}
EOF
# two deposits of 5e12 sum past int64 micro-credits: the second is rejected,
# not wrapped into a negative sum that would look consistent
exits "import with deposits that sum past the limit" 1 pgm import "$tmp/amounts.json"
has "the deposit that would pass the limit is rejected" "$tmp/err" \
    'rejected transactions\[1, id amt-2\]: amount would take the user.s listed deposits to 9000000000000 credits or more'
has "and the next one too" "$tmp/err" 'rejected transactions\[2, id amt-3\]'
[ "$(q "SELECT total_balance || ' ' || spent_balance FROM pgmarket.get_balance('$amt_user')")" = \
  "8999999999999.000000 0.000000" ] &&
    ok "cli: the balance is the balance_tracker's" ||
    notok "cli: balance $(q "SELECT total_balance || ' ' || spent_balance FROM pgmarket.get_balance('$amt_user')")"
[ "$(q "SELECT count(*) FROM pgmarket.ledger WHERE user_id = '$amt_user' AND idempotency_key IN ('amt-2', 'amt-3', 'amt-4')")" = 0 ] &&
    ok "cli: no rejected transaction became an entry" || notok "cli: a rejected transaction became an entry"
# (strtoll clamped them to its maximum; now the reader refuses the whole
# document with the place of the integer, and nothing is loaded)
exits "import with tokens that do not fit in int64" 2 pgm import "$tmp/tokens.json"
has "the document is refused where the integer is" "$tmp/err" 'line 3, column 14: integer 99999999999999999999 does not fit in 64 bits'
[ "$(q "SELECT count(*) FROM pgmarket.ledger WHERE idempotency_key = 'amt-4'")" = 0 ] &&
    ok "cli: tokens that do not fit are refused" || notok "cli: tokens 99999999999999999999 were taken"

# integer options: a malformed number, one out of range, a missing value:
# exit 2, nothing charged
entries() { q "SELECT count(*) FROM pgmarket.ledger WHERE user_id = '$amt_user'"; }
before=$(entries)
exits "charge --tokens 10abc" 2 pgm charge "$amt_user" 1 m-int --tokens 10abc
exits "charge --tokens past int64" 2 pgm charge "$amt_user" 1 m-int --tokens 99999999999999999999
exits "charge --tokens -5" 2 pgm charge "$amt_user" 1 m-int --tokens -5
exits "charge --tokens without a value" 2 pgm charge "$amt_user" 1 m-int --tokens
has "the message names the value" "$tmp/err" 'option "--tokens" needs a value'
[ "$(entries)" = "$before" ] && ok "cli: nothing charged by a bad --tokens" ||
    notok "cli: a bad --tokens charged"
exits "charge --tokens at int64's maximum" 0 pgm charge "$amt_user" 1 m-int --tokens 9223372036854775807
[ "$(q "SELECT tokens_used FROM pgmarket.ledger WHERE user_id = '$amt_user' AND model_id = 'm-int'")" = 9223372036854775807 ] &&
    ok "cli: --tokens carried exactly" || notok "cli: --tokens not carried exactly"
exits "rotate-keys --batch 4294967297" 2 pgm rotate-keys --batch 4294967297
exits "rotate-keys --batch 0" 2 pgm rotate-keys --batch 0
exits "rotate-keys --batch x" 2 pgm rotate-keys --batch x

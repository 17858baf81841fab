# cli.sh: the pgmarket tool's tests, sourced by run.sh (which defines ok,
# notok, vg, tmp and db, and exports PGDATABASE).
# shellcheck shell=bash disable=SC2154

pgm() { "${vg[@]}" ./pgmarket "$@"; }
q() { psql -X -qAt -d "${2:-$db}" -c "$1"; }
counts() {
    q "SELECT (SELECT count(*) FROM pgmarket.users) || '/' ||
              (SELECT count(*) FROM pgmarket.ledger) || '/' ||
              (SELECT count(*) FROM pgmarket.provider_keys) || '/' ||
              (SELECT count(*) FROM pgmarket.chat_sessions) || '/' ||
              (SELECT count(*) FROM pgmarket.chat_messages)" "${1:-$db}"
}
# expect NAME STATUS(0|nonzero) COMMAND... ; output in $tmp/out, $tmp/err
expect() {
    local name=$1 want=$2 rc
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if { [ "$want" = 0 ] && [ "$rc" -eq 0 ]; } || { [ "$want" != 0 ] && [ "$rc" -ne 0 ]; }; then
        ok "cli: $name"
    else
        notok "cli: $name (exit $rc)"
        sed 's/^/#   /' "$tmp/out" "$tmp/err"
    fi
}
has() {   # has NAME FILE PATTERN
    if grep -qE -- "$3" "$2"; then ok "cli: $1"; else notok "cli: $1: no /$3/ in"; sed 's/^/#   /' "$2"; fi
}

echo "# the pgmarket tool"
ada=0a000000-0000-4000-8000-000000000001
grace=0a000000-0000-4000-8000-000000000002
linus=0a000000-0000-4000-8000-000000000003

# import: the good file, twice
expect "import the good file" 0 pgm import examples/import-good.json
cp "$tmp/out" "$tmp/import1.out"
has "import reports what it created" "$tmp/out" '^users: 3 created'
has "import reports the chat sessions" "$tmp/out" '^chat sessions: 3 created \(5 messages\), 0 already present'
if grep -q 'chat_history skipped' "$tmp/err"; then notok "cli: chat_history was skipped"; else ok "cli: chat_history not skipped"; fi
[ "$(q "SELECT count(*) FROM pgmarket.chat_sessions WHERE session_id::text LIKE '0b000000-%'")" = 3 ] &&
    ok "cli: chat sessions keep the source session id" || notok "cli: chat sessions"
imported_msgs="SELECT count(*) || ' ' || sum(m.cost) FROM pgmarket.chat_messages m
                 JOIN pgmarket.chat_sessions s USING (session_id) WHERE s.session_id::text LIKE '0b000000-%'"
[ "$(q "$imported_msgs")" = "5 5245901" ] &&
    ok "cli: chat messages stored with their cost" || notok "cli: chat messages: $(q "$imported_msgs")"
[ "$(q "SELECT m.content FROM pgmarket.chat_messages m JOIN pgmarket.chat_sessions s USING (session_id)
        WHERE s.session_id = '0b000000-0000-4000-8000-000000000001'")" = "Hi é😀" ] &&
    ok "cli: chat content kept exactly" || notok "cli: chat content"
[ "$(q "SELECT m.tool_calls->0->'arguments'->>'expr' FROM pgmarket.chat_messages m JOIN pgmarket.chat_sessions s USING (session_id)
        WHERE s.session_id = '0b000000-0000-4000-8000-000000000002' AND m.role = 'tool'")" = "2+2" ] &&
    ok "cli: tool_calls kept" || notok "cli: tool_calls"
[ "$(q "SELECT string_agg(role, ',' ORDER BY message_id) FROM pgmarket.chat_messages m JOIN pgmarket.chat_sessions s USING (session_id)
        WHERE s.session_id = '0b000000-0000-4000-8000-000000000002'")" = "system,user,tool,assistant" ] &&
    ok "cli: chat messages in their order" || notok "cli: chat message order"
[ "$(q "SELECT count(*) FROM pgmarket.ledger WHERE model_id = 'claude-3'")" = 1 ] &&
    ok "cli: a message's cost is recorded, not charged" || notok "cli: chat cost charged"
[ "$(q "SELECT password_hash FROM pgmarket.accounts WHERE id = '$ada'")" = 'pbkdf2_sha256$600000$c2FsdHNhbHQ$7LcoLLDoOR+i1EdoTP3UQVVbggscifbc8tiVaw4unJw=' ] &&
    ok "cli: a pbkdf2_sha256 password hash is kept as it is" || notok "cli: password hash not kept"
bal() { q "SELECT total_balance || ' ' || spent_balance FROM pgmarket.get_balance('$1')"; }
[ "$(bal $ada)" = "100.000000 5.250000" ] && ok "cli: ada's balance is her balance_tracker" || notok "cli: ada: $(bal $ada)"
[ "$(bal $grace)" = "0.300000 0.100001" ] && ok "cli: grace's balance, to the micro-credit" || notok "cli: grace: $(bal $grace)"
[ "$(bal $linus)" = "12345678.123456 0.000000" ] && ok "cli: linus's balance" || notok "cli: linus: $(bal $linus)"
[ "$(q "SELECT count(*) FROM pgmarket.ledger WHERE idempotency_key LIKE 'tx-%'")" = 5 ] &&
    ok "cli: transactions are ledger entries under their ids" || notok "cli: transactions"
[ "$(q "SELECT count(*) FROM pgmarket.provider_keys WHERE user_id = '$ada' AND revoked_at IS NULL")" = 2 ] &&
    ok "cli: provider keys stored" || notok "cli: provider keys"
c1=$(counts)
expect "import the good file again" 0 pgm import examples/import-good.json
has "the second import creates nothing" "$tmp/out" '^users: 0 created, 3 already present'
has "the second import adds no entry" "$tmp/out" '^ledger entries: 0 new'
has "the second import stores no key" "$tmp/out" '^provider keys: 0 stored'
has "the second import adds no chat session" "$tmp/out" '^chat sessions: 0 created \(0 messages\), 3 already present'
[ "$(counts)" = "$c1" ] && ok "cli: the second import changed nothing ($c1)" || notok "cli: counts $c1 -> $(counts)"

# import: the broken file
expect "import the broken file fails" 1 pgm import examples/import-broken.json
cp "$tmp/err" "$tmp/broken.err"
has "malformed uuid reported" "$tmp/broken.err" 'rejected users\[not-a-uuid\]: malformed uuid'
has "inexact amount reported" "$tmp/broken.err" 'total is not a whole number of micro-credits'
has "negative amount reported" "$tmp/broken.err" 'amount is negative'
has "spent above total reported" "$tmp/broken.err" 'spent 7 exceeds total 5'
has "unknown user reported" "$tmp/broken.err" 'does not exist or is deactivated \(PM002\)'
has "duplicate email reported" "$tmp/broken.err" 'duplicate email or username'
has "inconsistent user reported" "$tmp/broken.err" 'inconsistent: listed deposits'
has "duplicate transaction id reported" "$tmp/broken.err" 'duplicate id'
has "exponent reported" "$tmp/broken.err" 'exponent'
has "server-side rejection reported" "$tmp/broken.err" 'rejected users\[0c000000-0000-4000-8000-000000000003\]'
has "malformed key reported" "$tmp/broken.err" 'malformed key'
has "bad chat role reported" "$tmp/broken.err" 'rejected chat_history\[0d000000-0000-4000-8000-000000000001\]: message 0: role must be'
has "inexact chat cost reported" "$tmp/broken.err" 'rejected chat_history\[0d000000-0000-4000-8000-000000000002\]: message 0: cost is not a whole'
has "malformed session id reported" "$tmp/broken.err" 'rejected chat_history\[not-a-session\]: malformed uuid'
[ "$(q "SELECT count(*) FROM pgmarket.chat_sessions WHERE session_id::text LIKE '0d000000-%'")" = 0 ] &&
    ok "cli: no rejected chat session stored" || notok "cli: a rejected chat session was stored"
has "the rejections are summed up" "$tmp/broken.err" 'records rejected'
printf '{"users": {\n  "x": [1, 2,\n' >"$tmp/notjson.json"
expect "import of a file that is not JSON fails" 1 pgm import "$tmp/notjson.json"
has "and says where" "$tmp/err" 'not valid JSON: line 3'
expect "import of a missing file fails" 1 pgm import "$tmp/nonexistent.json"
# refused as a whole (exit 2), with line and column, and nothing loaded
c0=$(counts)
printf '{"users": {"0e000000-0000-4000-8000-000000000001":\n {"email": "nul@example.com", "username": "nul\\u0000x"}}}' >"$tmp/nul.json"
printf '{"users": {},\n "users": {"0e000000-0000-4000-8000-000000000002": {"email": "dup@example.com", "username": "dup"}}}' >"$tmp/dup.json"
printf '{"transactions": [{"id": "big", "user_id": "0a000000-0000-4000-8000-000000000001", "type": "charge",\n "amount": 1, "tokens": 99999999999999999999}]}' >"$tmp/bigint.json"
pgm import "$tmp/nul.json" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] && ok "cli: a document with \\u0000 is refused (exit 2)" || notok "cli: \\u0000 not refused"
has "and says where" "$tmp/err" 'line 2, column 47: \\u0000 in a string'
pgm import "$tmp/dup.json" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] && ok "cli: a repeated member name is refused (exit 2)" || notok "cli: repeated name not refused"
has "and says where" "$tmp/err" 'line 2, column 2: member name "users" repeated'
pgm import "$tmp/bigint.json" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] && ok "cli: an integer beyond 64 bits is refused (exit 2)" || notok "cli: big integer not refused"
has "and says where" "$tmp/err" 'line 2, column 25: integer 99999999999999999999 does not fit'
[ "$(counts)" = "$c0" ] && ok "cli: a refused document loads nothing" || notok "cli: counts $c0 -> $(counts)"

# every strictness rule, generated: refused as a whole (exit 2) with line and
# column, nothing loaded
strict_case() {   # NAME TEXT PATTERN
    printf '%b' "$2" >"$tmp/strict.json"
    pgm import "$tmp/strict.json" >"$tmp/out" 2>"$tmp/err"
    if [ $? -eq 2 ] && grep -qE -- "line [0-9]+, column [0-9]+: .*$3" "$tmp/err"; then
        ok "cli: strict: $1"
    else
        notok "cli: strict: $1"; sed 's/^/#   /' "$tmp/err"
    fi
}
strict_case "\\u0000 in a member name" '{"users": {"a\\u0000b": {}}}' '\\u0000'
strict_case "\\u0000 deep in a message" '{"chat_history": {"0e000000-0000-4000-8000-000000000009": {"messages": [{"content": "x\\u0000"}]}}}' '\\u0000'
strict_case "a repeated name in a record" '{"users": {"0e000000-0000-4000-8000-000000000003":\n  {"email": "a@b.io", "username": "abc", "email": "c@d.io"}}}' 'member name "email" repeated'
strict_case "a repeated name in a balance" '{"balance_tracker": {"0e000000-0000-4000-8000-000000000003": {"total": 1, "total": 2}}}' 'member name "total" repeated'
strict_case "an integer below int64" '{"transactions": [{"tokens": -9223372036854775809}]}' 'does not fit'
strict_case "an integer above int64" '{"transactions": [{"tokens": 9223372036854775808}]}' 'does not fit'
strict_case "invalid UTF-8" '{"users": {"\xff": {}}}' 'UTF-8'
strict_case "a trailing comma" '{"users": {},}' ''
strict_case "text after the document" '{"users": {}} x' ''
strict_case "a lone surrogate" '{"users": {"\\ud800": {}}}' ''
[ "$(counts)" = "$c0" ] && ok "cli: no refused document loaded anything" || notok "cli: counts $c0 -> $(counts)"

# --dry-run: everything checked, nothing written (every table's row count)
rows="SELECT string_agg(c.relname || '=' || (xpath('/row/n/text()', query_to_xml(
          'SELECT count(*) AS n FROM pgmarket.' || quote_ident(c.relname), false, true, '')))[1]::text,
          ',' ORDER BY c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'pgmarket' AND c.relkind IN ('r', 'p')"
cat >"$tmp/fresh.json" <<'JSON'
{"users": {"0f200000-0000-4000-8000-000000000001": {"email": "dry@example.com", "username": "dryrun",
   "created_at": "2024-01-02T03:04:05Z"},
  "0f200000-0000-4000-8000-000000000002": {"email": "dry@example.com", "username": "dryrun2"}},
 "balance_tracker": {"0f200000-0000-4000-8000-000000000001": {"total": 5, "spent": 1},
   "0f200000-0000-4000-8000-000000000003": {"total": -1, "spent": 7.0000001}},
 "transactions": [{"id": "dry-1", "user_id": "0f200000-0000-4000-8000-000000000001", "type": "deposit",
   "amount": 2, "timestamp": "2024-01-03T00:00:00Z"},
  {"id": "dry-2", "user_id": "0f200000-0000-4000-8000-0000000000ff", "type": "deposit", "amount": 1},
  {"id": "dry-3", "user_id": "bad", "type": "x", "amount": "1e3"}],
 "chat_history": {"0f300000-0000-4000-8000-000000000001": {"user_id": "0f200000-0000-4000-8000-000000000001",
   "model_id": "gpt-4", "messages": [{"role": "user", "content": "hi", "timestamp": "2024-01-04T00:00:00Z"}]}}}
JSON
r0=$(q "$rows")
expect "import --dry-run of a file with bad records" 1 pgm import "$tmp/fresh.json" --dry-run --report "$tmp/report.json"
has "the dry run says so" "$tmp/out" '^dry run: nothing was written'
has "the dry run counts what it would create" "$tmp/out" '^users: 1 created'
has "and the entries (a deposit, the opening deposit and charge)" "$tmp/out" '^ledger entries: 3 new'
[ "$(q "$rows")" = "$r0" ] && ok "cli: --dry-run changed no table" || notok "cli: --dry-run changed rows: $r0 -> $(q "$rows")"
if grep -q 'rejected' "$tmp/out"; then
    grep -q '^rejected records: ' "$tmp/out" && ! grep -q '^rejected [a-z_]*\[' "$tmp/out" &&
        ok "cli: rejections are not on standard output" || notok "cli: rejections on standard output"
fi
# the report's lines, as the tool writes them (one record a line)
has "--report counts users" "$tmp/report.json" '"users": \{"created": 1, "present": 0, "rejected": 1\}'
has "--report gives every reason of a record" "$tmp/report.json" \
    '"key": "0f200000-0000-4000-8000-000000000003", "reasons": \["total is negative", "spent is not a whole number of micro-credits"\]'
has "--report: a transaction's three reasons" "$tmp/report.json" \
    '"key": "2, id dry-3", "reasons": \["malformed user_id", "type must be deposit or charge, not x", "amount is in exponent notation"\]'
has "--report holds the server's rejections" "$tmp/report.json" '"key": "dry-2", "reasons": \[".*\(PM002\)"\]'
has "--report says it was a dry run" "$tmp/report.json" '"dry_run": true'
[ "$(stat -c %a "$tmp/report.json")" = 600 ] && ok "cli: the report is 0600 (it names users)" ||
    notok "cli: the report's mode is $(stat -c %a "$tmp/report.json")"
ln -s "$tmp/report-target.json" "$tmp/report-link.json"
pgm import "$tmp/fresh.json" --dry-run --report "$tmp/report-link.json" >"$tmp/out" 2>"$tmp/err"
[ ! -e "$tmp/report-target.json" ] && grep -q 'symbolic link' "$tmp/err" &&
    ok "cli: a report through a symbolic link is refused" || notok "cli: a report was written through a symbolic link"
expect "import it for real" 1 pgm import "$tmp/fresh.json" --report "$tmp/report2.json"
[ "$(q "SELECT created_at AT TIME ZONE 'UTC' FROM pgmarket.ledger WHERE idempotency_key = 'dry-1'")" = "2024-01-03 00:00:00" ] &&
    ok "cli: a transaction keeps its timestamp" || notok "cli: transaction timestamp not kept"
[ "$(q "SELECT m.created_at AT TIME ZONE 'UTC' FROM pgmarket.chat_messages m WHERE session_id = '0f300000-0000-4000-8000-000000000001'")" = "2024-01-04 00:00:00" ] &&
    ok "cli: a message keeps its timestamp" || notok "cli: message timestamp not kept"
[ "$(q "SELECT count(*) FROM pgmarket.model_usage WHERE model_id IS NULL OR model_id = 'import'")" = 0 ] &&
    ok "cli: opening entries are outside metering" || notok "cli: opening entries in model_usage"
r1=$(q "$rows")
expect "a re-run" 1 pgm import "$tmp/fresh.json"
has "adds no entry" "$tmp/out" '^ledger entries: 0 new'
[ "$(q "$rows")" = "$r1" ] && ok "cli: a re-run adds nothing to any table" || notok "cli: re-run changed rows"

# balance, add-funds, charge
expect "balance" 0 pgm balance "$linus"
has "balance shows available" "$tmp/out" 'available +12345678\.123456'
expect "add-funds" 0 pgm add-funds "$linus" 1.5 --key cli-dep-1 --note "by hand"
has "add-funds shows the entry" "$tmp/out" 'deposit of 1\.500000'
expect "add-funds again" 0 pgm add-funds "$linus" 1.5 --key cli-dep-1 --note "by hand"
has "add-funds replays" "$tmp/out" 'replayed'
expect "charge" 0 pgm charge "$linus" 0.25 gpt-4 --tokens 10 --key cli-chg-1
has "charge shows the entry" "$tmp/out" 'charge of 0\.250000'
expect "charge beyond the balance fails" 1 pgm charge "$linus" 99999999 gpt-4
has "and says PM001" "$tmp/err" 'PM001'
pgm charge "$linus" 99999999 gpt-4 >/dev/null 2>&1
[ $? -eq 3 ] && ok "cli: a call the server refuses exits 3" || notok "cli: a call the server refuses exits 3"
has "with the SQLSTATE" "$tmp/err" 'PM001'
expect "add-funds of an inexact amount fails" 1 pgm add-funds "$linus" 1.0000001
expect "balance of an unknown user fails" 1 pgm balance 0a000000-0000-4000-8000-0000000000ff
has "with PM002" "$tmp/err" 'PM002'

# keys
expect "keys create" 0 pgm keys create "$linus" gateway --scopes read,write --limit 5 --period day
has "keys create shows the key" "$tmp/out" '^api_key sk_live_'
kid=$(awk '/^key_id/ { print $2 }' "$tmp/out")
expect "keys list" 0 pgm keys list "$linus"
has "keys list shows it" "$tmp/out" "$kid"
expect "keys revoke" 0 pgm keys revoke "$linus" "$kid"
has "keys revoke says so" "$tmp/out" '^revoked'
expect "keys put" 0 sh -c "echo sk-cli-secret-abcd5678 | ${VALGRIND} ./pgmarket keys put $linus openai --label cli"
expect "keys providers" 0 pgm keys providers "$linus"
has "keys providers shows the hint" "$tmp/out" 'openai +5678'
expect "keys create with a bad scope fails" 1 pgm keys create "$linus" x --scopes root

# verify, rotate-keys
expect "verify" 0 pgm verify
has "verify checks the ledger" "$tmp/out" 'every balance equals'
has "verify checks the audit trail" "$tmp/out" 'audit trail: [0-9]+ sealed rows verified'
# verify --anchor: created on the first run, checked and advanced after
rm -f "$tmp/anchor"
expect "verify --anchor creates the file" 0 pgm verify --anchor "$tmp/anchor"
has "verify --anchor says so" "$tmp/out" 'audit anchor: .* created at id [0-9]+'
has "the anchor file holds 80 hex digits" "$tmp/anchor" '^[0-9a-f]{80}$'
q "SELECT pgmarket.seal_audit()" >/dev/null
expect "verify --anchor checks and advances" 0 pgm verify --anchor "$tmp/anchor"
has "verify --anchor advanced" "$tmp/out" 'verified, advanced to id'
has "the file is the head" "$tmp/anchor" "^$(q "SELECT encode(int8send(last_id) || chain_hash, 'hex') FROM pgmarket.audit_head()")\$"
echo 0000000000000001abababababababababababababababababababababababababababababababab >"$tmp/anchor"
expect "verify --anchor fails on a foreign anchor" 1 pgm verify --anchor "$tmp/anchor"
has "and does not advance it" "$tmp/anchor" '^0000000000000001abab'
echo junk >"$tmp/anchor"
expect "verify --anchor refuses a file that is no anchor" 2 pgm verify --anchor "$tmp/anchor"
expect "verify refuses another option" 2 pgm verify --nosuch
expect "rotate-keys" 0 pgm rotate-keys --batch 2
has "rotate-keys reports" "$tmp/out" 'rotation done'

# the agent platform's store: templates and projects
store="SELECT (SELECT string_agg(name || ':' || category || ':' || files::text || ':' ||
                              required_vars::text || ':' || optional_vars::text || ':' ||
                              coalesce(setup_minutes::text, '-'), ';' ORDER BY name)
                 FROM pgmarket.templates) || '/' ||
              (SELECT string_agg(id || ':' || user_id || ':' || name || ':' || status || ':' ||
                                 codebase::text || ':' || dependencies::text || ':' ||
                                 coalesce(test_coverage::text, '-') || ':' || scores::text || ':' ||
                                 coalesce(last_deployed_at::text, '-'), ';' ORDER BY id)
                 FROM pgmarket.projects)"
expect "import the store's sections (two records are bad)" 1 pgm import examples/import-store.json
has "templates are created" "$tmp/out" '^templates: 2 created, 0 already present'
has "projects are created" "$tmp/out" '^projects: 2 created, 0 already present'
has "a template without files is rejected" "$tmp/err" 'rejected templates\[broken-template\]'
has "a coverage over 100 is rejected by the server" "$tmp/err" 'rejected projects\[0d000000-0000-4000-8000-000000000003\]: .*test_coverage.*22023'
has "a malformed project id is rejected" "$tmp/err" 'rejected projects\[not-a-uuid\]: malformed uuid'
[ "$(q "SELECT status FROM pgmarket.projects WHERE id = '0d000000-0000-4000-8000-000000000002'")" = archived ] &&
    ok "cli: an archived project stays archived" || notok "cli: the archived project is not archived"
[ "$(q "SELECT dependencies[3] FROM pgmarket.projects WHERE id = '0d000000-0000-4000-8000-000000000001'")" = 'a "quoted" one' ] &&
    ok "cli: a dependency with quotes is kept" || notok "cli: the quoted dependency was changed"
st1=$(q "$store")
expect "import the store's sections again" 1 pgm import examples/import-store.json
has "which creates no template" "$tmp/out" '^templates: 0 created, 2 already present'
has "and no project" "$tmp/out" '^projects: 0 created, 2 already present'
[ "$(q "$store")" = "$st1" ] && ok "cli: the second import changed no project or template" ||
    notok "cli: the second import changed the store"

# export, and import the export into a second database
expect "export" 0 pgm export "$tmp/export-plain.json"
if grep -q password_hash "$tmp/export-plain.json"; then notok "cli: a plain export holds hashes"; else ok "cli: a plain export holds no hash"; fi
expect "export --with-secrets" 0 pgm export --with-secrets "$tmp/export.json"
[ "$(stat -c %a "$tmp/export.json")" = 600 ] && ok "cli: the export with secrets is mode 0600" || notok "cli: mode $(stat -c %a "$tmp/export.json")"
if grep -qE '"timestamp": "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"' "$tmp/export.json" &&
   ! grep -qE '"(timestamp|created_at)": "[^"]*[^Z"]"' "$tmp/export.json"; then
    ok "cli: every exported time is ISO 8601 UTC in one format"
else
    notok "cli: exported times"; grep -oE '"(timestamp|created_at)": "[^"]*"' "$tmp/export.json" | sort -u | head -5 | sed 's/^/#   /'
fi
db2=${db}_b
if psql -X -q -d postgres -c "CREATE DATABASE $db2" && psql -X -q -d "$db2" -c "CREATE EXTENSION pgmarket"; then
    expect "import the export elsewhere" 0 env PGDATABASE="$db2" "${vg[@]}" ./pgmarket import "$tmp/export.json"
    sums="SELECT string_agg(u.id || ' ' || b.total_balance || ' ' || b.spent_balance, ',' ORDER BY u.id)
            FROM pgmarket.users u, pgmarket.get_balance(u.id) b WHERE u.is_active"
    s1=$(q "$sums")
    s2=$(q "$sums" "$db2")
    [ -n "$s1" ] && [ "$s1" = "$s2" ] && ok "cli: every balance survives export and import" ||
        notok "cli: balances differ after export and import"
    # every table the document covers, compared row for row
    for what in \
        "SELECT string_agg(id || '|' || email || '|' || username || '|' || coalesce(password_hash, '-') || '|' || created_at, ',' ORDER BY id) FROM pgmarket.accounts WHERE deleted_at IS NULL" \
        "SELECT string_agg(user_id || '|' || kind || '|' || amount || '|' || coalesce(model_id, '-') || '|' || tokens_used || '|' || created_at, ',' ORDER BY user_id, created_at, kind, amount, model_id, tokens_used) FROM pgmarket.ledger l WHERE kind <> 'refund' AND coalesce(idempotency_key, '') NOT LIKE 'import-opening-%' AND NOT EXISTS (SELECT 1 FROM pgmarket.ledger r WHERE r.user_id = l.user_id AND r.refund_of = l.entry_id)" \
        "SELECT string_agg(user_id || '|' || provider || '|' || coalesce(hint, '-'), ',' ORDER BY user_id, provider) FROM pgmarket.provider_keys WHERE revoked_at IS NULL" \
        "SELECT string_agg(session_id || '|' || user_id || '|' || model_id || '|' || coalesce(title, '-'), ',' ORDER BY session_id) FROM pgmarket.chat_sessions WHERE deleted_at IS NULL" \
        "SELECT string_agg(session_id || '|' || role || '|' || content || '|' || tokens || '|' || cost || '|' || coalesce(tool_calls::text, '-') || '|' || m.created_at, ',' ORDER BY session_id, message_id) FROM pgmarket.chat_messages m JOIN pgmarket.chat_sessions s USING (session_id) WHERE s.deleted_at IS NULL"; do
        w1=$(q "$what"); w2=$(q "$what" "$db2")
        [ -n "$w1" ] && [ "$w1" = "$w2" ] && ok "cli: round trip: ${what:0:60}..." ||
            { notok "cli: round trip differs: ${what:0:60}..."; diff <(tr ',' '\n' <<<"$w1") <(tr ',' '\n' <<<"$w2") | head -8 | sed 's/^/#   /'; }
    done
    [ "$(q "SELECT count(*) FROM pgmarket.model_usage WHERE model_id = 'import'" "$db2")" = 0 ] &&
        ok "cli: the round trip meters nothing under an import model" || notok "cli: model import metered"
    [ -n "$st1" ] && [ "$(q "$store" "$db2")" = "$st1" ] &&
        ok "cli: every project and template survives export and import" ||
        notok "cli: the store differs after export and import: '$st1' vs '$(q "$store" "$db2")'"
    expect "import the export there again" 0 env PGDATABASE="$db2" "${vg[@]}" ./pgmarket import "$tmp/export.json"
    has "which adds nothing" "$tmp/out" '^ledger entries: 0 new'
    has "and no chat session" "$tmp/out" '^chat sessions: 0 created \(0 messages\), [1-9][0-9]* already present'
    # per session, its messages in order; sessions as a sorted set
    chats="SELECT count(*) || ' ' || string_agg(x, ';' ORDER BY x) FROM (
             SELECT s.user_id || '|' || s.model_id || '|' || coalesce(s.title, '-') || '|' ||
                    coalesce(string_agg(m.role || ':' || m.content || ':' || m.tokens || ':' || m.cost ||
                                        ':' || coalesce(m.tool_calls::text, '-'), ',' ORDER BY m.message_id), '') AS x
               FROM pgmarket.chat_sessions s LEFT JOIN pgmarket.chat_messages m USING (session_id)
              WHERE s.deleted_at IS NULL GROUP BY s.session_id) t"
    c1=$(q "$chats")
    c2=$(q "$chats" "$db2")
    [ -n "$c1" ] && [ "$c1" = "$c2" ] && ok "cli: chat sessions and messages survive export and import" ||
        notok "cli: chat differs after export and import: '$c1' vs '$c2'"
    psql -X -q -d postgres -c "DROP DATABASE $db2 WITH (FORCE)"
else
    notok "cli: create a second database"
fi

# usage errors, connection errors
# Every option of every command: without its value, twice, and an unknown
# one beside it; each exits 2 before connecting (the connection given cannot
# be reached: a 3 would mean it tried) and changes nothing.
before=$(counts)
usage_cases=(
    "balance $linus --bogus"
    "add-funds $linus 1 --key" "add-funds $linus 1 --note" "add-funds $linus 1 --key a --key b"
    "add-funds $linus 1 --bogus x" "add-funds $linus" "add-funds $linus 1 2"
    "charge $linus 1 m --key" "charge $linus 1 m --tokens" "charge $linus 1 m --tokens abc"
    "charge $linus 1 m --tokens 1e3" "charge $linus 1 m --tokens -1"
    "charge $linus 1 m --tokens 99999999999999999999" "charge $linus 1 m --tokens 1 --tokens 2"
    "charge $linus 1 m --bogus" "charge $linus 1"
    "keys list" "keys list $linus extra" "keys create $linus n --scopes" "keys create $linus n --tier"
    "keys create $linus n --env" "keys create $linus n --limit" "keys create $linus n --period"
    "keys create $linus n --expires" "keys create $linus n --bogus 1" "keys create $linus"
    "keys revoke $linus" "keys revoke-provider $linus" "keys put $linus openai --label"
    "keys providers" "keys frobnicate" "keys"
    "rotate-keys --batch" "rotate-keys --batch 0" "rotate-keys --batch x" "rotate-keys extra"
    "verify --anchor" "verify extra" "verify --bogus"
    "import" "import a.json b.json" "import a.json --report" "import a.json --bogus"
    "import a.json --dry-run --dry-run" "export a.json b.json" "export --with-secrets=yes"
    "export --bogus" "tiers set" "tiers set t1 --rpm" "tiers set t1 --rpm x" "tiers set t1 --burst -1"
    "tiers list extra" "tiers check extra" "tiers frob" "health extra"
    "user erase $linus" "user erase $linus --yes extra"
)
for c in "${usage_cases[@]}"; do
    # shellcheck disable=SC2086
    pgm -d "host=/nonexistent port=1" $c </dev/null >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -eq 2 ] && ! grep -q 'cannot connect' "$tmp/err"; then
        ok "cli: usage error exits 2 without connecting: $c"
    else
        notok "cli: usage error exits 2 without connecting: $c (exit $rc)"
        sed 's/^/#   /' "$tmp/err"
    fi
done
[ "$(counts)" = "$before" ] && ok "cli: and the usage errors changed nothing" || notok "cli: a usage error changed something"
# the same arguments made good reach the server: --opt=VALUE as well
expect "charge with --key=K --tokens=N" 0 pgm charge "$linus" 0.01 gpt-4 --key=cli-eq-1 --tokens=3
has "and the key is the one given" "$tmp/out" 'charge of 0\.010000'
expect "options before the arguments" 0 pgm charge --tokens 3 --key cli-eq-1 "$linus" 0.01 gpt-4
has "a repeat under that key replays" "$tmp/out" 'replayed'
expect "an unknown command fails" 2 pgm frobnicate
expect "a missing argument fails" 2 pgm balance
expect "a bad connection fails" 1 pgm -d "host=/nonexistent port=1" balance "$linus"
has "and says why" "$tmp/err" 'cannot connect'
pgm -d "host=/nonexistent port=1" balance "$linus" >/dev/null 2>&1
[ $? -eq 3 ] && ok "cli: a server that cannot be reached exits 3" || notok "cli: a server that cannot be reached exits 3"
# psql's connection options: -d takes a database name (or a conninfo), and
# -h/-p/-U override the environment (PGDATABASE unset: only -d names it)
expect "-d DBNAME" 0 env -u PGDATABASE ./pgmarket -d "$db" balance "$linus"
has "-d DBNAME reads that database" "$tmp/out" '[0-9]'
expect "-h/-p/-U as psql's" 0 env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE \
    ./pgmarket -h "${PGHOST:-/tmp}" -p "${PGPORT:-5432}" -U "${PGUSER:-$(id -un)}" \
    --dbname="$db" balance "$linus"
expect "-p overrides the port of a conninfo in -d" 1 pgm -d "host=${PGHOST:-/tmp} port=${PGPORT:-5432} dbname=$db" -p 1 balance "$linus"
has "the overriding port is the one tried" "$tmp/err" 'PGSQL\.1"|port 1 '
for o in -d -h -p -U --actor; do
    pgm "$o" >"$tmp/out" 2>"$tmp/err"
    if [ $? -eq 2 ]; then ok "cli: $o without a value exits 2"; else notok "cli: $o without a value exits 2"; fi
done
expect "-V" 0 pgm -V
expect "help" 0 pgm --help
# COMMAND --help: the command's usage, exit 0, no connection and no change
# (the connection given cannot be reached)
for c in balance add-funds charge keys user tiers rotate-keys verify health import export demo; do
    expect "$c --help" 0 pgm -d "host=/nonexistent port=1" "$c" --help
    has "$c --help shows its usage" "$tmp/out" "^  $c( |\$)"
done
expect "rotate-keys -h" 0 pgm -d "host=/nonexistent port=1" rotate-keys -h
expect "an unknown command's --help fails" 2 pgm frobnicate --help
# pgmarket demo from an installed tool: it finds the demo installed beside
# it and says what it lacks (here: a PostgreSQL, then the extension in one)
if make -s install PREFIX="$tmp/inst" >/dev/null 2>&1; then
    ok "cli: make install into a prefix"
    printf '#!/bin/sh\necho %s/inst/fake-share\n' "$tmp" >"$tmp/fake_pg_config"
    chmod +x "$tmp/fake_pg_config"
    (cd "$tmp" && PGMARKET_PG_CONFIG=/nonexistent/pg_config inst/bin/pgmarket demo) >"$tmp/out" 2>"$tmp/err"
    [ $? -eq 1 ] && ok "cli: installed demo without PostgreSQL exits 1" || notok "cli: installed demo without PostgreSQL exits 1"
    has "and names what it needs" "$tmp/err" 'needs PostgreSQL 15'
    (cd "$tmp" && PGMARKET_PG_CONFIG="$tmp/fake_pg_config" inst/bin/pgmarket demo) >"$tmp/out" 2>"$tmp/err"
    [ $? -eq 1 ] && ok "cli: installed demo without the extension exits 1" || notok "cli: installed demo without the extension exits 1"
    has "and says how to install it" "$tmp/err" 'fake-share/extension/pgmarket.control is missing'
else
    notok "cli: make install into a prefix"
fi
# one version: the tool's is the extension's
expect "version" 0 pgm --version
has "the tool's version is the extension's" "$tmp/out" "^pgmarket $(q "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'")\$"

# --- user: the account surface ------------------------------------------------
echo "# pgmarket user"
uid=0a000000-0000-4000-8000-0000000000c1
q "SELECT pgmarket.create_user('cli.user@example.com', 'cli_user', NULL, '{user}', '$uid')" >/dev/null
expect "user --help" 0 pgm user --help
has "user --help lists the subcommands" "$tmp/out" 'user reset-password USER_ID'
expect "user show by id" 0 pgm user show "$uid"
has "user show prints the email" "$tmp/out" '^email +cli\.user@example\.com$'
has "user show prints the roles" "$tmp/out" '^roles +\{user\}$'
expect "user show by email, any spelling" 0 pgm user show --email ' CLI.User@Example.com'
has "user show finds the user by email" "$tmp/out" "^id +$uid\$"
expect "user show by username" 0 pgm user show --username CLI_USER
expect "user show of nobody exits 1" 1 pgm user show --username nobody_here
has "user show says no such user" "$tmp/err" 'no such user'
expect "user set" 0 pgm user set "$uid" --username cli_user2 --email cli.user2@example.com
[ "$(q "SELECT username || ' ' || email FROM pgmarket.users WHERE id = '$uid'")" = "cli_user2 cli.user2@example.com" ] &&
    ok "cli: user set changes email and username" || notok "cli: user set"
expect "user set a malformed email fails" 1 pgm user set "$uid" --email not-an-email
has "user set names the bad email" "$tmp/err" 'not a valid address'
expect "user grant" 0 pgm user grant "$uid" developer
expect "user grant an unknown role fails" 1 pgm user grant "$uid" wizard
expect "user revoke" 0 pgm user revoke "$uid" user
[ "$(q "SELECT roles FROM pgmarket.users WHERE id = '$uid'")" = "{developer}" ] &&
    ok "cli: grant and revoke change the roles" || notok "cli: user grant/revoke"
expect "user grant with --actor is refused" 1 pgm --actor "$uid" user grant "$uid" admin
has "user grant with an actor: permission denied" "$tmp/err" '42501'
expect "user reset-password" 0 pgm user reset-password "$uid" --ttl '10 minutes'
token=$(cat "$tmp/out")
[[ $token =~ ^pwr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$ ]] && ok "cli: reset-password prints a token" ||
    notok "cli: reset-password token: $token"
[ "$(q "SELECT pgmarket.reset_password('$token', 'cli new password')")" = "$uid" ] &&
    ok "cli: the printed token resets the password" || notok "cli: token does not reset"
expect "user reset-password with a bad ttl fails" 1 pgm user reset-password "$uid" --ttl '8 days'
expect "user link" 0 pgm user link "$uid" GitHub cli-octocat
[ "$(q "SELECT pgmarket.user_by_identity('github', 'cli-octocat')")" = "$uid" ] &&
    ok "cli: user link links the identity" || notok "cli: user link"
expect "user link of a taken identity fails" 1 pgm user link "$grace" github cli-octocat
expect "user unlink" 0 pgm user unlink "$uid" github
expect "user unlink again exits 1" 1 pgm user unlink "$uid" github
# user erase: only with --yes; then the account is a tombstone
gone=$(q "SELECT pgmarket.create_user('cli.erase@example.com', 'cli_erase', 'erase me pw')")
pgm user erase "$gone" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] && ok "cli: user erase without --yes exits 2" || notok "cli: user erase without --yes exits 2"
[ "$(q "SELECT email FROM pgmarket.users WHERE id = '$gone'")" = cli.erase@example.com ] &&
    ok "cli: and erases nothing" || notok "cli: user erase without --yes erased"
expect "user erase --yes" 0 pgm user erase "$gone" --yes
[ "$(q "SELECT count(*) FROM pgmarket.users WHERE id = '$gone' AND NOT is_active AND email LIKE '%@erased.invalid'")" = 1 ] &&
    ok "cli: user erase leaves a tombstone" || notok "cli: user erase"
expect "user erase of nobody fails" 1 pgm user erase 0a000000-0000-4000-8000-0000000000fe --yes
# usage errors: exit 2 and nothing done, without asking the server
before=$(q "SELECT count(*) FROM pgmarket.audit_log")
for args in "user" "user frob" "user show" "user show $uid --email x@example.com" \
            "user show --bogus x" "user set $uid" "user set $uid --email" \
            "user grant $uid" "user grant $uid admin extra" "user reset-password $uid --ttl" \
            "user reset-password $uid --days 3" "user link $uid github" "user unlink $uid"; do
    # shellcheck disable=SC2086
    pgm $args >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq 2 ] && ok "cli: pgmarket $args exits 2" || notok "cli: pgmarket $args exits $rc"
done
# shellcheck disable=SC2086
pgm -d "host=/nonexistent port=1" user grant "$uid" --bogus >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] && ok "cli: a bad option exits 2 before connecting" || notok "cli: bad option with no server"
[ "$(q "SELECT count(*) FROM pgmarket.audit_log")" = "$before" ] &&
    ok "cli: the usage errors changed nothing" || notok "cli: a usage error changed something"

# --- import and export: what a hostile or careless document or path can do ---
echo "# import and export: files, documents, exit codes"
# export writes secrets only into a file of mode 0600, its own, not through a link
: >"$tmp/exp-old.json"; chmod 644 "$tmp/exp-old.json"
expect "export --with-secrets into an existing 0644 file" 0 pgm export --with-secrets "$tmp/exp-old.json"
[ "$(stat -c %a "$tmp/exp-old.json")" = 600 ] && ok "cli: an existing file ends mode 0600" ||
    notok "cli: an existing file keeps mode $(stat -c %a "$tmp/exp-old.json")"
chmod 600 "$tmp/exp-old.json"
expect "export without secrets into an existing 0600 file" 0 pgm export "$tmp/exp-old.json"
[ "$(stat -c %a "$tmp/exp-old.json")" = 644 ] && ok "cli: a plain export is mode 0644" ||
    notok "cli: a plain export is mode $(stat -c %a "$tmp/exp-old.json")"
ln -s "$tmp/exp-target.json" "$tmp/exp-link.json"
pgm export --with-secrets "$tmp/exp-link.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 0 ] && [ ! -e "$tmp/exp-target.json" ]; then ok "cli: export refuses a symlink (exit $rc)"
else notok "cli: export followed a symlink (exit $rc)"; fi
has "and says it is a link" "$tmp/err" 'symbolic link'
ln -s "$tmp/exp-old.json" "$tmp/exp-link2.json"
pgm export --with-secrets "$tmp/exp-link2.json" >"$tmp/out" 2>"$tmp/err"
[ $? -ne 0 ] && [ "$(stat -c %a "$tmp/exp-old.json")" = 644 ] &&
    ok "cli: export writes nothing through a link to an existing file" || notok "cli: export wrote through a link"
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    : >"$tmp/exp-theirs.json"; chmod 666 "$tmp/exp-theirs.json"; chown nobody "$tmp/exp-theirs.json"
    pgm export --with-secrets "$tmp/exp-theirs.json" >"$tmp/out" 2>"$tmp/err"
    [ $? -ne 0 ] && [ ! -s "$tmp/exp-theirs.json" ] && ok "cli: export refuses a file of another user" ||
        notok "cli: export wrote into a file of another user"
fi
# the report is never the document
cp examples/import-good.json "$tmp/same.json"
ln "$tmp/same.json" "$tmp/same-link.json"
for r in "$tmp/same.json" "$tmp/same-link.json"; do
    pgm import "$tmp/same.json" --report "$r" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    cmp -s examples/import-good.json "$tmp/same.json" && [ "$rc" -eq 2 ] &&
        ok "cli: import refuses the document as its report ($(basename "$r"))" ||
        notok "cli: import --report over its document (exit $rc)"
done
# exit codes: an unreadable file 2, a refused call 3; uuids and --actor checked first
expect "import of a missing file" 2 pgm import "$tmp/no-such-file.json"
pgm import "$tmp/no-such-file.json" >/dev/null 2>&1
[ $? -eq 2 ] && ok "cli: a missing import file exits 2" || notok "cli: a missing import file does not exit 2"
PGOPTIONS="-c role=pgmarket_app" pgm import examples/import-good.json >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 3 ] && grep -q 42501 "$tmp/err" && ok "cli: an import the server refuses (42501: not pgmarket_admin) exits 3" ||
    { notok "cli: an import the server refuses exits $rc"; sed 's/^/#   /' "$tmp/err"; }
for c in "--actor bogus balance $ada" "balance not-a-uuid" "add-funds x 1" "charge x 1 m" \
         "keys list x" "user show x" "user erase x --yes" "user erase $ada --y" "user erase $ada --ye" \
         "export --with" "import a.json --dry" "charge $ada 1 m --tok 3"; do
    # shellcheck disable=SC2086
    pgm -d "host=/nonexistent port=1" $c </dev/null >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq 2 ] && ok "cli: $c exits 2 before connecting" || notok "cli: $c exits $rc"
done
gone2=$(q "SELECT pgmarket.create_user('cli.erase2@example.com', 'cli_erase2', 'erase me pw')")
pgm user erase "$gone2" --y >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && [ "$(q "SELECT email FROM pgmarket.users WHERE id = '$gone2'")" = cli.erase2@example.com ] &&
    ok "cli: user erase --y (a prefix of --yes) erases nothing, exit 2" || notok "cli: user erase --y (exit $rc)"
printf '' | pgm tiers check >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] && ok "cli: tiers check with no key on stdin exits 2" || notok "cli: tiers check with no key"
printf 'pgm_key\nextra\n' | pgm tiers check >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] && ok "cli: tiers check with more than the key on stdin exits 2" || notok "cli: tiers check with junk after the key"
# a user listed twice (uuids in two cases): balance_tracker and api_keys
cat >"$tmp/twice.json" <<'JSON'
{"users": {"0a000000-0000-4000-8000-0000000000d1": {"email": "twice@example.com", "username": "twice_user"}},
 "balance_tracker": {
    "0a000000-0000-4000-8000-0000000000d1": {"total": 100, "spent": 0},
    "0A000000-0000-4000-8000-0000000000D1": {"total": 1000, "spent": 0}},
 "api_keys": {
    "0a000000-0000-4000-8000-0000000000d2": {"openai": "sk-one-1234567890"},
    "0A000000-0000-4000-8000-0000000000D2": {"openai": "sk-two-1234567890"}},
 "transactions": [{"id": "tw1", "user_id": "0A000000-0000-4000-8000-0000000000D1", "type": "deposit",
                   "amount": 5, "model_id": null, "tokens": 0}]}
JSON
expect "import of a document listing a user twice exits 1" 1 pgm import "$tmp/twice.json" --report "$tmp/twice-report.json"
has "the balance listed twice is rejected" "$tmp/err" '^rejected balance_tracker\[0A000000-0000-4000-8000-0000000000D1\]: listed twice'
has "the api_keys listed twice are rejected" "$tmp/err" '^rejected api_keys\[0a000000-0000-4000-8000-0000000000d2\]: listed twice'
has "the user of the rejected balance is listed" "$tmp/err" '^rejected users\[0a000000-0000-4000-8000-0000000000d1\]: its balance_tracker record was rejected'
has "and its transaction" "$tmp/err" '^rejected transactions\[0, id tw1\]: its user was rejected'
[ "$(q "SELECT count(*) FROM pgmarket.users WHERE id = '0a000000-0000-4000-8000-0000000000d1'")" = 0 ] &&
    ok "cli: no money loaded for a user listed twice" || notok "cli: a user listed twice was loaded"
# the counts add up: 1 user, 2 balances, 2 api_keys, 1 transaction, all rejected
has "the rejected records add up to the document" "$tmp/out" '^rejected records: 6$'
python3 - "$tmp/twice-report.json" <<'PY' && ok "cli: the report's counts add up" || notok "cli: the report's counts"
import json, sys
c = json.load(open(sys.argv[1]))["counts"]
assert (c["users"]["rejected"], c["balance_tracker"]["rejected"], c["api_keys"]["rejected"],
        c["transactions"]["rejected"]) == (1, 2, 2, 1), c
PY
# text of the document on stderr: control characters escaped
cat >"$tmp/esc.json" <<'JSON'
{"transactions":[{"id":"\u001b]0;pwned\u0007\u001b[2J","user_id":"not-a-uuid","type":"deposit","amount":1}]}
JSON
expect "import of a document with escapes in its keys" 1 pgm import "$tmp/esc.json"
if grep -q $'\x1b' "$tmp/err" || grep -q $'\x07' "$tmp/err"; then notok "cli: a terminal escape reached stderr"
else ok "cli: no control character reaches stderr"; fi
has "the escape is shown escaped" "$tmp/err" '\\u001b\]0;pwned\\u0007'
# times: ISO 8601 with an offset, finite, not in the future
cat >"$tmp/times.json" <<'JSON'
{"users": {"0a000000-0000-4000-8000-0000000000d3": {"email": "times@example.com", "username": "times_user",
                                                    "created_at": "infinity"},
           "0a000000-0000-4000-8000-0000000000d4": {"email": "times2@example.com", "username": "times_user2",
                                                    "created_at": "2024-02-29T12:00:00.5+02:00"}},
 "transactions": [
  {"id": "tt1", "user_id": "0a000000-0000-4000-8000-0000000000d4", "type": "deposit", "amount": 1, "timestamp": "infinity"},
  {"id": "tt2", "user_id": "0a000000-0000-4000-8000-0000000000d4", "type": "deposit", "amount": 1, "timestamp": "-infinity"},
  {"id": "tt3", "user_id": "0a000000-0000-4000-8000-0000000000d4", "type": "deposit", "amount": 1, "timestamp": "yesterday"},
  {"id": "tt4", "user_id": "0a000000-0000-4000-8000-0000000000d4", "type": "deposit", "amount": 1,
   "timestamp": "2025-01-01 00:00:00 America/New_York"},
  {"id": "tt5", "user_id": "0a000000-0000-4000-8000-0000000000d4", "type": "deposit", "amount": 1, "timestamp": "2999-01-01T00:00:00Z"},
  {"id": "tt6", "user_id": "0a000000-0000-4000-8000-0000000000d4", "type": "deposit", "amount": 1, "timestamp": "2025-02-29T00:00:00Z"},
  {"id": "tt7", "user_id": "0a000000-0000-4000-8000-0000000000d4", "type": "deposit", "amount": 1, "timestamp": "2025-01-01T00:00:00"},
  {"id": "tt8", "user_id": "0a000000-0000-4000-8000-0000000000d4", "type": "deposit", "amount": 1, "timestamp": "2025-01-01T05:00:00-05:00"}],
 "chat_history": {"0b000000-0000-4000-8000-0000000000d4": {"user_id": "0a000000-0000-4000-8000-0000000000d4", "model_id": "m",
   "messages": [{"role": "user", "content": "x", "timestamp": "-infinity"}]}}}
JSON
expect "import of bad times exits 1" 1 pgm import "$tmp/times.json"
has "a user's created_at infinity is rejected" "$tmp/err" '^rejected users\[0a000000-0000-4000-8000-0000000000d3\]: created_at must be ISO 8601'
for t in tt1 tt2 tt3 tt4 tt6 tt7; do
    has "transaction $t's time is rejected" "$tmp/err" "^rejected transactions\\[[0-9]+, id $t\\]: timestamp (must be ISO|is not a date)"
done
has "a time in the future is rejected" "$tmp/err" '^rejected transactions\[[0-9]+, id tt5\]: timestamp is in the future'
has "a message's time is checked" "$tmp/err" '^rejected chat_history\[0b000000-0000-4000-8000-0000000000d4\]: message 0: timestamp must be ISO'
[ "$(q "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM pgmarket.ledger
        WHERE user_id = '0a000000-0000-4000-8000-0000000000d4' AND idempotency_key = 'tt8'")" = "2025-01-01 10:00" ] &&
    ok "cli: a time with its offset is loaded as it says" || notok "cli: the time with an offset"
[ "$(q "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM pgmarket.users
        WHERE id = '0a000000-0000-4000-8000-0000000000d4'")" = "2024-02-29 10:00:00" ] &&
    ok "cli: a user's created_at with an offset is kept" || notok "cli: the user's created_at"

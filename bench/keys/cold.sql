-- bench/keys.sh, before the "cold" verify_api_key run: no key used yet this
-- minute, so the first verification of each key stamps last_used_at (a
-- write, and a WAL flush at commit)
UPDATE pgmarket.api_keys SET last_used_at = NULL;

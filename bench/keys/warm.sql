-- bench/keys.sh, before a run: every key used once this minute, so that
-- neither verify_api_key (last_used_at to the minute) nor get_provider_key
-- (at most once a minute) stamps last_used_at during the run
SELECT count(*) FROM bench.raw_keys r, LATERAL pgmarket.verify_api_key(r.api_key) v;
SELECT count(pgmarket.get_provider_key(bench.uid(g), 'openai')) FROM generate_series(1, :users) g;

\set n random(1, :users)
SELECT entry_id FROM pgmarket.record_completion(
    ('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid,
    ('00000000-0000-4000-9000-' || lpad(:n::text, 12, '0'))::uuid,
    'The answer, as the model wrote it, in a few sentences of ordinary length.',
    120, 0.000123);

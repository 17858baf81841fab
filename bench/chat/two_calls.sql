\set n random(1, :users)
BEGIN;
SELECT pgmarket.save_chat_message(
    ('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid,
    ('00000000-0000-4000-9000-' || lpad(:n::text, 12, '0'))::uuid,
    'assistant',
    'The answer, as the model wrote it, in a few sentences of ordinary length.',
    120, 0.000123);
SELECT entry_id FROM pgmarket.deduct_balance(
    ('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid,
    0.000123, 'gpt-4', 120);
COMMIT;

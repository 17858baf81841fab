\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.11.0'" to load this file. \quit

-- pgmarket 0.11.0: a platform key carries its user's active flag.
--
-- verify_api_key read two rows per call: the key by its prefix, then the
-- user's balance row for the active flag (deactivate_user, erase_user).
-- The second index probe was about a fifth of the call.  Now the key row
-- holds the flag itself (user_active), kept in step with balances.active by
-- deactivate_user, reactivate_user and erase_user in the same transaction,
-- under the balance row's lock (extension/apikeys.c,
-- pgm_api_keys_follow_user); create_api_key takes that lock too.  The column
-- is audited like the rest of the key row.  No function changes.
--
-- balances is locked against writes first, so that a deactivation or
-- reactivation in flight (which on 0.10.0's schema writes no key row)
-- commits before the flags are copied, or waits for the update.  The
-- column is added without a default and filled for every key: a key row
-- version from before the update (which a REPEATABLE READ snapshot older
-- than the update may still see) reads NULL, and verify_api_key then asks
-- the balance row under that snapshot, as 0.10.0 did.

LOCK TABLE @extschema@.balances IN SHARE MODE;

ALTER TABLE @extschema@.api_keys ADD COLUMN user_active boolean;

UPDATE @extschema@.api_keys k
   SET user_active = coalesce((SELECT b.active FROM @extschema@.balances b
                                WHERE b.user_id = k.user_id), false);

ALTER TABLE @extschema@.api_keys
    ALTER COLUMN user_active SET DEFAULT true,
    ALTER COLUMN user_active SET NOT NULL;

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

ALTER TABLE @extschema@.api_keys
    ADD COLUMN user_active boolean NOT NULL DEFAULT true;

-- the keys of users deactivated or erased before this version
UPDATE @extschema@.api_keys k SET user_active = false
  FROM @extschema@.balances b
 WHERE b.user_id = k.user_id AND NOT b.active;

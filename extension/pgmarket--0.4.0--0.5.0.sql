\echo Use "ALTER EXTENSION pgmarket UPDATE TO '0.5.0'" to load this file. \quit

-- pgmarket 0.5.0: money and the audit trail hold against an adversary.
--
-- Sections, one per area, in the order the areas are described in the
-- README.

-------------------------------------------------------------------------------
-- Amounts and batches
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Accounts: passwords, hashes and emails
-------------------------------------------------------------------------------

-- Emails are stored and compared in Unicode NFC from 0.5.0 on (accounts.c):
-- bring the stored ones to that form, so that a login or an import spelling
-- them either way still finds them.  Only a UTF8 database can hold non-ASCII
-- emails.  Two accounts whose emails differ only in normalisation stop this
-- update on the unique index, which names the address: rename one of them
-- and update again.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.=) 'UTF8' THEN
        UPDATE @extschema@.accounts
           SET email = pg_catalog.normalize(email, 'NFC')
         WHERE NOT pg_catalog.is_normalized(email, 'NFC');
    END IF;
END $$;


-------------------------------------------------------------------------------
-- Secrets kept out of the server log, and health
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Audit trail: who may attach it, what no wrapper can bypass, the anchor
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Scaling out: the actor forwarded by the proxy
-------------------------------------------------------------------------------


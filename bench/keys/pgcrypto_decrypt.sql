-- pgcrypto: the same secret under pgp_sym_encrypt (default options), by
-- primary key, decrypted with pgp_sym_decrypt
\set i random(1, :users)
SELECT pgp_sym_decrypt(ciphertext, 'bench passphrase') FROM bench.pgp_secrets WHERE user_id = bench.uid(:i);

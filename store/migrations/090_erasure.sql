-- Erasure (docs/erasure.md): the keys personal fields are sealed with, the erasures scheduled, the handles of
-- deleted accounts held back, and the mapping from a GitHub account to its opaque user id.
--
-- A key row outlives its key: once erased, `key` is NULL and `erased_at` set, so a reader can tell an erased
-- event (skipped) from a key that is missing (the key store was lost or restored from an old backup: an outage).
CREATE TABLE IF NOT EXISTS erasure_keys (
    key_id text PRIMARY KEY,          -- 'u:<user id>' or 'p:<post id>' (schemas/personal.py)
    owner_id text NOT NULL,           -- the user whose account deletion erases it
    key bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz
);
CREATE INDEX IF NOT EXISTS erasure_keys_owner ON erasure_keys (owner_id) WHERE key IS NOT NULL;

-- One row per erasure asked for (an account or a post); the erasure consumer deletes the keys once due.
CREATE TABLE IF NOT EXISTS erasures (
    target text PRIMARY KEY,          -- a key id: 'u:<user id>' (the account) or 'p:<post id>'
    requested_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    done_at timestamptz,
    keys_erased integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS erasures_due ON erasures (due_at) WHERE done_at IS NULL;

-- A deleted account's handle may not be registered again until `until` (impersonation); kept as a SHA-256 of
-- the lower-cased handle, never the handle itself.
CREATE TABLE IF NOT EXISTS handle_quarantine (
    handle_sha256 text PRIMARY KEY,
    until timestamptz NOT NULL
);

-- New accounts get opaque user ids; a GitHub login finds its user here. Deleted with the account.
CREATE TABLE IF NOT EXISTS login_accounts (
    login_kind text NOT NULL,         -- 'github' (the GitHub id) or 'dev' (the lower-cased dev login)
    login_id text NOT NULL,
    user_id text NOT NULL UNIQUE,
    PRIMARY KEY (login_kind, login_id)
);

-- `chirp erasure migrate` (docs/erasure.md): the log rewritten once into sealed form under opaque user ids.
--
-- Each legacy id (`gh-<github id>`, `dev-<login>`) gets one opaque id, kept here while the migration runs so that
-- a re-run maps it the same way; the rows are deleted when the migration completes (the login mapping then lives
-- in `login_accounts`, deleted with the account).
CREATE TABLE IF NOT EXISTS legacy_user_ids (
    legacy_id text PRIMARY KEY,
    user_id text NOT NULL UNIQUE
);

-- Where each topic's rewrite stands: 'staged' (its rewritten copy is complete in `<topic>.migrating`, and the topic
-- then ended at `source_ends`), 'swapping' (the topic is being deleted and refilled from the copy), 'swapped'.
CREATE TABLE IF NOT EXISTS log_migration (
    topic text PRIMARY KEY,
    phase text NOT NULL,
    source_ends jsonb NOT NULL DEFAULT '{}',
    records bigint NOT NULL DEFAULT 0,
    rewritten bigint NOT NULL DEFAULT 0,
    dropped bigint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);

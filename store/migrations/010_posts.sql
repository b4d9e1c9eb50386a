-- Posts read model, additions to 001_core.sql.
-- parsed_at: occurred_at of the post-parsed event the row holds, so a re-rendered post (a newer post-parsed, e.g.
-- after a sanitizer fix) replaces the html while a redelivered older one does not (last writer wins).
ALTER TABLE posts ADD COLUMN IF NOT EXISTS parsed_at timestamptz;

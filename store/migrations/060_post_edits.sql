-- Edits (post-edited, rendered by preparse into a post-parsed carrying edited_at).
-- edited_at: the time of the version a row holds (NULL: the first one). A row takes a post-parsed when its version
-- (coalesce(edited_at, -infinity), parsed_at) is newer, so the newest edit wins whatever order the renders arrive in,
-- and a re-render of the same version still replaces the html.
ALTER TABLE posts ADD COLUMN IF NOT EXISTS edited_at timestamptz;
ALTER TABLE search_posts ADD COLUMN IF NOT EXISTS edited_at timestamptz;

-- Every version of every live post (the posts consumer's, beside `posts`): `at` is the version's time (created_at
-- for the first, edited_at for an edit). A delete removes a post's versions; a late render of a deleted post adds none.
CREATE TABLE IF NOT EXISTS post_versions (
    post_id text NOT NULL,
    at      timestamptz NOT NULL,
    body    text NOT NULL,
    html    text NOT NULL,
    PRIMARY KEY (post_id, at)
);
-- Posts projected before this table existed have one version: the one they show.
INSERT INTO post_versions (post_id, at, body, html)
SELECT post_id, coalesce(edited_at, created_at), body, html FROM posts WHERE deleted_at IS NULL
ON CONFLICT DO NOTHING;

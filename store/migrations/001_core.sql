-- Read models built by the consumers. Every row can be dropped and rebuilt by replaying the topics.

CREATE TABLE IF NOT EXISTS users (
    user_id         text PRIMARY KEY,
    github_id       bigint UNIQUE,
    handle          text NOT NULL,
    display_name    text NOT NULL DEFAULT '',
    bio             text NOT NULL DEFAULT '',
    avatar_url      text NOT NULL DEFAULT '',
    joined_at       timestamptz NOT NULL,
    profile_at      timestamptz NOT NULL,  -- occurred_at of the newest profile event applied (last writer wins)
    followers_count integer NOT NULL DEFAULT 0,
    following_count integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS users_handle_ci ON users (lower(handle));

-- A deleted post keeps its row as a tombstone (deleted_at set, content cleared), so a late post-parsed
-- event can never bring it back. Post ids are ULIDs: ordering by id is ordering by creation time.
CREATE TABLE IF NOT EXISTS posts (
    post_id    text PRIMARY KEY,
    author_id  text NOT NULL,
    body       text NOT NULL DEFAULT '',
    html       text NOT NULL DEFAULT '',
    text       text NOT NULL DEFAULT '',
    hashtags   text[] NOT NULL DEFAULT '{}',
    mentions   text[] NOT NULL DEFAULT '{}',
    links      text[] NOT NULL DEFAULT '{}',
    reply_to   text,
    created_at timestamptz NOT NULL,
    deleted_at timestamptz
);
CREATE INDEX IF NOT EXISTS posts_live ON posts (post_id DESC) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS posts_by_author ON posts (author_id, post_id DESC) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS posts_replies ON posts (reply_to, post_id) WHERE deleted_at IS NULL AND reply_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS posts_hashtags ON posts USING gin (hashtags) WHERE deleted_at IS NULL;

-- One row per (follower, followee); `active` is the state after the newest event by occurred_at.
CREATE TABLE IF NOT EXISTS follows (
    follower_id text NOT NULL,
    followee_id text NOT NULL,
    active      boolean NOT NULL,
    changed_at  timestamptz NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);
CREATE INDEX IF NOT EXISTS follows_by_followee ON follows (followee_id, follower_id) WHERE active;

-- Users projection (consumers/users.py): per-field last-writer-wins timestamps and the follow-list indexes.
--
-- Each profile field remembers the occurred_at of the event that last set it, so an older event arriving late
-- changes nothing and an event carrying only some fields (a bio edit) never blocks an older one carrying others
-- (a registration's avatar). `profile_at` stays the newest of them. `registered_at` is NULL until the
-- user-registered event is applied: a profile event arriving first creates a stub row whose `joined_at` is
-- provisional and whose handle is the placeholder '~' || user_id (never a valid handle, so never found by one).
ALTER TABLE users ADD COLUMN IF NOT EXISTS handle_at timestamptz;
ALTER TABLE users ADD COLUMN IF NOT EXISTS display_name_at timestamptz;
ALTER TABLE users ADD COLUMN IF NOT EXISTS bio_at timestamptz;
ALTER TABLE users ADD COLUMN IF NOT EXISTS avatar_at timestamptz;
ALTER TABLE users ADD COLUMN IF NOT EXISTS registered_at timestamptz;

-- Followers / following pages: newest follow first, keyset-paginated on (changed_at, user id).
CREATE INDEX IF NOT EXISTS follows_followers_page ON follows (followee_id, changed_at DESC, follower_id DESC) WHERE active;
CREATE INDEX IF NOT EXISTS follows_following_page ON follows (follower_id, changed_at DESC, followee_id DESC) WHERE active;

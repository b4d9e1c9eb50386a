-- A display name the user chose (user-profile-updated) outranks one that came from GitHub (user-registered,
-- user-profile-synced), whatever their times: GitHub's name is shown until the user picks one, and a later login
-- never overwrites it. Among names of the same kind the newest wins, so any arrival order gives the same row.
ALTER TABLE users ADD COLUMN IF NOT EXISTS display_name_chosen boolean NOT NULL DEFAULT false;
ALTER TABLE search_users ADD COLUMN IF NOT EXISTS display_name_chosen boolean NOT NULL DEFAULT false;

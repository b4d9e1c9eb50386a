-- An account the operators suspended is left out of user search (the search consumer reads report-decisions).
-- A file of its own: databases that applied 070 before this column existed get it too.
ALTER TABLE search_users ADD COLUMN IF NOT EXISTS suspended boolean NOT NULL DEFAULT false;

-- Addition: the activity log's hash chain (issue 3, item 12). Each row carries
-- the hash of the row before it (prev_hash) and its own hash, computed by the
-- store over prev_hash and every stored column, so that editing, deleting,
-- inserting or reordering rows shows in "upanel audit verify".
--
-- Both columns are nullable so that the seed's columns keep their shape; every
-- row UPanel writes sets both. SQLite's ALTER TABLE ADD COLUMN cannot add a
-- UNIQUE column (nor a NOT NULL one without a default), so uniqueness comes
-- from separate indexes:
--   hash      unique: two rows with one hash would make the chain ambiguous;
--   prev_hash unique: a row has at most one successor, so two appends that read
--             the same head cannot both commit; the chain cannot fork even if
--             the append lock were ever bypassed (the second append fails).
-- NULLs do not collide in a unique index on either database.
ALTER TABLE activity_log ADD COLUMN prev_hash CHAR(64) NULL;
ALTER TABLE activity_log ADD COLUMN hash CHAR(64) NULL;
CREATE UNIQUE INDEX activity_log_uk_hash ON activity_log (hash);
CREATE UNIQUE INDEX activity_log_uk_prev_hash ON activity_log (prev_hash);

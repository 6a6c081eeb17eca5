-- Addition: which app keys the data depends on. Never the keys themselves: the
-- id is derived from the key, and check_value is a known text sealed with it, so
-- that serve can tell a missing or wrong key before it touches anything.
CREATE TABLE encryption_keys (
    id VARCHAR(16) NOT NULL PRIMARY KEY,
    check_value TEXT NOT NULL,
    retired_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);

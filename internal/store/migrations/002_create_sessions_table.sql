-- Server-side sessions. The cookie carries a random secret; only its SHA-256 is
-- stored, so a copy of the database cannot be replayed as a login. The id is a
-- public handle for listing and revoking a session.
CREATE TABLE sessions (
    id CHAR(26) NOT NULL PRIMARY KEY,
    user_id CHAR(26) NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash CHAR(64) NOT NULL UNIQUE,
    two_factor_pending BOOLEAN NOT NULL DEFAULT FALSE,
    ip_address VARCHAR(45) NULL,
    user_agent TEXT NULL,
    last_activity_at {{ts}} NOT NULL DEFAULT {{now}},
    expires_at {{ts}} NOT NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX sessions_idx_user ON sessions (user_id);
CREATE INDEX sessions_idx_expires ON sessions (expires_at);
CREATE INDEX sessions_idx_last_activity ON sessions (last_activity_at);

-- One row per reset request. The emailed token is random; only its SHA-256 is
-- stored. used_at makes it single-use; expires_at bounds it to 60 minutes.
CREATE TABLE password_reset_tokens (
    id CHAR(26) NOT NULL PRIMARY KEY,
    user_id CHAR(26) NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash CHAR(64) NOT NULL UNIQUE,
    ip_address VARCHAR(45) NULL,
    expires_at {{ts}} NOT NULL,
    used_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX password_reset_tokens_idx_user ON password_reset_tokens (user_id);
CREATE INDEX password_reset_tokens_idx_expires ON password_reset_tokens (expires_at);

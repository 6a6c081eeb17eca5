-- Additions for accounts.
-- two_factor_last_step: the last TOTP time step accepted for the user. A code is
-- consumed with a conditional UPDATE that only moves it forward, so a code can
-- never be used twice, even by two requests at once.
-- password_changed_at: shown to the user and used to end older sessions.
ALTER TABLE users ADD COLUMN two_factor_last_step BIGINT NULL;
ALTER TABLE users ADD COLUMN password_changed_at {{ts}} NULL;

-- API tokens for /api/v1: shown once, stored as SHA-256. role may be lower than
-- the owner's; the effective role is the lower of the two at each request.
CREATE TABLE api_tokens (
    id CHAR(26) NOT NULL PRIMARY KEY,
    user_id CHAR(26) NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    role VARCHAR(10) NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    token_hash CHAR(64) NOT NULL UNIQUE,
    token_prefix VARCHAR(16) NOT NULL,
    expires_at {{ts}} NULL,
    last_used_at {{ts}} NULL,
    revoked_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX api_tokens_idx_user ON api_tokens (user_id);
{{updatedAt "api_tokens"}}

-- Panel-wide settings an admin changes in the UI (require_two_factor, ...).
CREATE TABLE settings (
    id VARCHAR(100) NOT NULL PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
{{updatedAt "settings"}}

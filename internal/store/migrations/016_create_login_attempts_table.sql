-- Every password, TOTP or recovery-code attempt, kept for throttling by account
-- and by IP. email is normalised and recorded even when no such user exists, so
-- that guessing unknown accounts is throttled the same way.
CREATE TABLE login_attempts (
    id CHAR(26) NOT NULL PRIMARY KEY,
    email VARCHAR(255) NOT NULL,
    user_id CHAR(26) NULL REFERENCES users(id) ON DELETE SET NULL,
    ip_address VARCHAR(45) NOT NULL,
    kind VARCHAR(15) NOT NULL DEFAULT 'password' CHECK (kind IN ('password', 'totp', 'recovery_code')),
    succeeded BOOLEAN NOT NULL DEFAULT FALSE,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX login_attempts_idx_email_created ON login_attempts (email, created_at);
CREATE INDEX login_attempts_idx_ip_created ON login_attempts (ip_address, created_at);
CREATE INDEX login_attempts_idx_user ON login_attempts (user_id);
CREATE INDEX login_attempts_idx_created ON login_attempts (created_at);

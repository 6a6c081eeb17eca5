-- Admin-issued invitations. The role is fixed by the inviter and copied to the
-- new user on acceptance; the emailed token is stored only as its SHA-256.
CREATE TABLE user_invites (
    id CHAR(26) NOT NULL PRIMARY KEY,
    email VARCHAR(255) NOT NULL,
    role VARCHAR(10) NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    token_hash CHAR(64) NOT NULL UNIQUE,
    invited_by CHAR(26) NULL REFERENCES users(id) ON DELETE SET NULL,
    accepted_user_id CHAR(26) NULL REFERENCES users(id) ON DELETE SET NULL,
    expires_at {{ts}} NOT NULL,
    accepted_at {{ts}} NULL,
    revoked_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX user_invites_idx_email ON user_invites (email);
CREATE INDEX user_invites_idx_expires ON user_invites (expires_at);
CREATE INDEX user_invites_idx_invited_by ON user_invites (invited_by);
CREATE INDEX user_invites_idx_accepted_user ON user_invites (accepted_user_id);
{{updatedAt "user_invites"}}

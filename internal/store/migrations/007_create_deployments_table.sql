CREATE TABLE deployments (
    id CHAR(26) NOT NULL PRIMARY KEY,
    app_id CHAR(26) NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    user_id CHAR(26) NULL REFERENCES users(id) ON DELETE SET NULL,
    commit_hash VARCHAR(40) NOT NULL,
    commit_message TEXT NULL,
    branch VARCHAR(100) NOT NULL,
    environment VARCHAR(10) NOT NULL CHECK (environment IN ('production', 'staging')),
    status VARCHAR(10) NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'success', 'failed', 'cancelled')),
    started_at {{ts}} NULL,
    finished_at {{ts}} NULL,
    duration_seconds INT NULL,
    log TEXT NULL,
    error_message TEXT NULL,
    is_rollback BOOLEAN NOT NULL DEFAULT FALSE,
    rollback_from_id CHAR(26) NULL REFERENCES deployments(id) ON DELETE SET NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX deployments_idx_app_created ON deployments (app_id, created_at DESC);
CREATE INDEX deployments_idx_status ON deployments (status);
CREATE INDEX deployments_idx_user ON deployments (user_id);
CREATE INDEX deployments_idx_rollback_from ON deployments (rollback_from_id);

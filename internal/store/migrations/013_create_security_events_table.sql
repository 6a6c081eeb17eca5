CREATE TABLE security_events (
    id CHAR(26) NOT NULL PRIMARY KEY,
    user_id CHAR(26) NULL REFERENCES users(id) ON DELETE SET NULL,
    server_id CHAR(26) NULL REFERENCES servers(id) ON DELETE SET NULL,
    event_type VARCHAR(50) NOT NULL,
    severity VARCHAR(10) NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'critical')),
    ip_address VARCHAR(45) NULL,
    user_agent TEXT NULL,
    details {{json "details"}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX security_events_idx_type_created ON security_events (event_type, created_at DESC);
CREATE INDEX security_events_idx_severity ON security_events (severity);
CREATE INDEX security_events_idx_user ON security_events (user_id);
CREATE INDEX security_events_idx_server ON security_events (server_id);
CREATE INDEX security_events_idx_created ON security_events (created_at DESC);

CREATE TABLE backups (
    id CHAR(26) NOT NULL PRIMARY KEY,
    app_id CHAR(26) NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    backup_destination_id CHAR(26) NOT NULL REFERENCES backup_destinations(id) ON DELETE CASCADE,
    type VARCHAR(10) NOT NULL CHECK (type IN ('database', 'files', 'full')),
    status VARCHAR(10) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'success', 'failed')),
    started_at {{ts}} NULL,
    finished_at {{ts}} NULL,
    size_bytes BIGINT NULL,
    file_path VARCHAR(500) NULL,
    checksum VARCHAR(64) NULL,
    error_message TEXT NULL,
    expires_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX backups_idx_app_created ON backups (app_id, created_at DESC);
CREATE INDEX backups_idx_status ON backups (status);
CREATE INDEX backups_idx_expires ON backups (expires_at);
CREATE INDEX backups_idx_destination ON backups (backup_destination_id);

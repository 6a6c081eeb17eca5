CREATE TABLE backup_schedules (
    id CHAR(26) NOT NULL PRIMARY KEY,
    app_id CHAR(26) NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    backup_destination_id CHAR(26) NOT NULL REFERENCES backup_destinations(id) ON DELETE CASCADE,
    type VARCHAR(10) NOT NULL CHECK (type IN ('database', 'files', 'full')),
    cron_expression VARCHAR(100) NOT NULL,
    timezone VARCHAR(50) NOT NULL DEFAULT 'UTC',
    retention_count INT NOT NULL DEFAULT 7 CHECK (retention_count >= 1),
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    last_run_at {{ts}} NULL,
    next_run_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX backup_schedules_idx_next_run ON backup_schedules (next_run_at);
CREATE INDEX backup_schedules_idx_active ON backup_schedules (is_active);
CREATE INDEX backup_schedules_idx_app ON backup_schedules (app_id);
CREATE INDEX backup_schedules_idx_destination ON backup_schedules (backup_destination_id);
{{updatedAt "backup_schedules"}}

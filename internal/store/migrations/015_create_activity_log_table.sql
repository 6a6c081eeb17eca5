CREATE TABLE activity_log (
    id CHAR(26) NOT NULL PRIMARY KEY,
    user_id CHAR(26) NULL REFERENCES users(id) ON DELETE SET NULL,
    action VARCHAR(50) NOT NULL,
    subject_type VARCHAR(50) NOT NULL,
    subject_id CHAR(26) NOT NULL,
    description TEXT NULL,
    changes {{json "changes"}} NULL,
    ip_address VARCHAR(45) NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX activity_log_idx_subject ON activity_log (subject_type, subject_id);
CREATE INDEX activity_log_idx_created ON activity_log (created_at DESC);
CREATE INDEX activity_log_idx_user ON activity_log (user_id);

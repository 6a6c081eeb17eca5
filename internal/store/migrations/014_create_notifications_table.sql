CREATE TABLE notifications (
    id CHAR(26) NOT NULL PRIMARY KEY,
    user_id CHAR(26) NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    type VARCHAR(50) NOT NULL,
    title VARCHAR(255) NOT NULL,
    message TEXT NOT NULL,
    notifiable_type VARCHAR(50) NULL,
    notifiable_id CHAR(26) NULL,
    read_at {{ts}} NULL,
    email_sent_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX notifications_idx_user_unread ON notifications (user_id, read_at);
CREATE INDEX notifications_idx_created ON notifications (created_at DESC);

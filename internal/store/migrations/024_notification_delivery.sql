-- Additions for notifications (issue 6).
-- email_wanted: the recipient wanted this one by email when it was created;
--   the mailer picks up rows that want mail and have none yet.
-- mail_outbox_id: the mail (one message, or a digest) that carries it;
--   email_sent_at is set when that mail is accepted by the SMTP server, and its
--   failure shows on the notification.
ALTER TABLE notifications ADD COLUMN email_wanted BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE notifications ADD COLUMN mail_outbox_id CHAR(26) NULL REFERENCES mail_outbox(id) ON DELETE SET NULL;
CREATE INDEX notifications_idx_mail ON notifications (mail_outbox_id);
CREATE INDEX notifications_idx_email_due ON notifications (email_wanted, mail_outbox_id, created_at);
CREATE INDEX notifications_idx_notifiable ON notifications (notifiable_id, type, created_at);

-- What each user wants of each notification type: in_app only, email (in-app
-- and email), or off. No row means the default of the user's role.
CREATE TABLE notification_preferences (
    id CHAR(26) NOT NULL PRIMARY KEY,
    user_id CHAR(26) NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    type VARCHAR(50) NOT NULL,
    channel VARCHAR(10) NOT NULL CHECK (channel IN ('in_app', 'email', 'off')),
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE UNIQUE INDEX notification_preferences_uk_user_type ON notification_preferences (user_id, type);
{{updatedAt "notification_preferences"}}

-- Maintenance mode: while set, a server raises no notifications.
ALTER TABLE servers ADD COLUMN maintenance_since {{ts}} NULL;

-- Outgoing webhooks: admin-defined targets that get every notification event
-- of the types they chose, signed with HMAC-SHA256.
CREATE TABLE webhook_targets (
    id CHAR(26) NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    url TEXT NOT NULL,
    format VARCHAR(10) NOT NULL CHECK (format IN ('generic', 'slack', 'discord')),
    secret TEXT NOT NULL,
    types TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    last_status VARCHAR(10) NULL CHECK (last_status IN ('delivered', 'failed')),
    last_error TEXT NULL,
    last_delivery_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
{{updatedAt "webhook_targets"}}

-- One delivery of one event to one target, tried by a job with retries.
CREATE TABLE webhook_deliveries (
    id CHAR(26) NOT NULL PRIMARY KEY,
    target_id CHAR(26) NOT NULL REFERENCES webhook_targets(id) ON DELETE CASCADE,
    event_type VARCHAR(50) NOT NULL,
    payload {{json "payload"}} NOT NULL,
    status VARCHAR(10) NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'delivered', 'failed')),
    attempts INT NOT NULL DEFAULT 0,
    response_code INT NULL,
    last_error TEXT NULL,
    delivered_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX webhook_deliveries_idx_target ON webhook_deliveries (target_id, created_at DESC);
{{updatedAt "webhook_deliveries"}}

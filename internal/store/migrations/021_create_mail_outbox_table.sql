-- Addition: outgoing email (issue 3: password reset and invites; issue 6:
-- notifications). Mail is never sent inside a request: the row is written, and a
-- mail.send job enqueued, in the caller's transaction, and the job delivers it
-- with retries. body holds the text and HTML parts, encrypted like every secret
-- column (the links in it carry reset and invite tokens); it is NULL once purged.
-- sent_at is set only after the SMTP server accepted the message; last_error
-- keeps the latest failure visible while retries go on.
CREATE TABLE mail_outbox (
    id CHAR(26) NOT NULL PRIMARY KEY,
    kind VARCHAR(50) NOT NULL,
    to_address VARCHAR(255) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    body TEXT NULL,
    status VARCHAR(10) NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT NULL,
    sent_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX mail_outbox_idx_status ON mail_outbox (status, created_at);
CREATE INDEX mail_outbox_idx_to ON mail_outbox (to_address, created_at);
{{updatedAt "mail_outbox"}}

-- Additions for servers and the agent link (issue 4).
-- ssh_host_keys: the server's SSH host public keys, one authorized_keys line
--   each, pinned when its bootstrap script reports them or when the user
--   confirms the fingerprint; every SSH connection must present one of them.
-- ssh_host_keys_seen: keys seen at a first contact, shown for confirmation.
-- bootstrap_token_hash/expires_at: the one-time token of the bootstrap command.
-- agent_cert_sha256: the agent's TLS certificate, pinned at install.
-- agent_seq: the last message sequence number accepted from the agent; a
--   message with a lower or equal one is a replay.
-- status_reason: why the server is in error, shown to the user.
ALTER TABLE servers ADD COLUMN ssh_host_keys TEXT NULL;
ALTER TABLE servers ADD COLUMN ssh_host_keys_seen TEXT NULL;
ALTER TABLE servers ADD COLUMN bootstrap_token_hash CHAR(64) NULL;
ALTER TABLE servers ADD COLUMN bootstrap_expires_at {{ts}} NULL;
ALTER TABLE servers ADD COLUMN agent_cert_sha256 CHAR(64) NULL;
ALTER TABLE servers ADD COLUMN agent_version VARCHAR(50) NULL;
ALTER TABLE servers ADD COLUMN agent_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE servers ADD COLUMN arch VARCHAR(20) NULL;
ALTER TABLE servers ADD COLUMN status_reason TEXT NULL;
ALTER TABLE servers ADD COLUMN provisioned_at {{ts}} NULL;
CREATE UNIQUE INDEX servers_uk_bootstrap_token ON servers (bootstrap_token_hash);
CREATE UNIQUE INDEX servers_uk_agent_token ON servers (agent_token);

-- The panel's own credentials, one row per purpose: "agent_client" is the
-- client certificate the panel presents to agents, which they pin. The private
-- key is a secret column.
CREATE TABLE panel_credentials (
    id VARCHAR(50) NOT NULL PRIMARY KEY,
    cert_pem TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);

-- Lines of output of a job (provisioning steps, hardening), in order.
CREATE TABLE job_logs (
    id CHAR(26) NOT NULL PRIMARY KEY,
    job_id CHAR(26) NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    line TEXT NOT NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX job_logs_idx_job ON job_logs (job_id, id);

-- Security audits reported by agents; servers.security_score is the latest.
CREATE TABLE server_audits (
    id CHAR(26) NOT NULL PRIMARY KEY,
    server_id CHAR(26) NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    score INT NOT NULL CHECK (score BETWEEN 0 AND 100),
    checks {{json "checks"}} NOT NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX server_audits_idx_server_created ON server_audits (server_id, created_at DESC);

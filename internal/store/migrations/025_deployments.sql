-- Additions for apps and deployments (issue 5).
-- git_credentials.public_key: the public half of an ssh_key credential, shown
--   to add as a deploy key (the private key is in the encrypted credentials).
-- git_credentials.known_hosts: the pinned SSH host keys of the git server
--   (known_hosts lines); ssh remotes are refused without them.
ALTER TABLE git_credentials ADD COLUMN public_key TEXT NULL;
ALTER TABLE git_credentials ADD COLUMN known_hosts TEXT NULL;

-- apps.slug: the app's name as used on the server (compose project
--   upanel-<slug>-<environment>, directories); unique per server.
-- apps.deploy_hook_id: the unguessable part of the push-to-deploy URL.
-- apps.deploy_hook_secret: its HMAC secret / token (encrypted, shown once).
-- apps.keep_releases: how many successful releases keep their images.
ALTER TABLE apps ADD COLUMN slug VARCHAR(63) NULL;
ALTER TABLE apps ADD COLUMN deploy_hook_id CHAR(32) NULL;
ALTER TABLE apps ADD COLUMN deploy_hook_secret TEXT NULL;
ALTER TABLE apps ADD COLUMN keep_releases INT NOT NULL DEFAULT 5 CHECK (keep_releases BETWEEN 1 AND 50);
CREATE UNIQUE INDEX apps_uk_server_slug ON apps (server_id, slug);
CREATE UNIQUE INDEX apps_uk_deploy_hook ON apps (deploy_hook_id);

-- deployments.triggered_by: what asked (manual, api, webhook, rollback); queued
--   webhook deployments of an app and environment collapse into one.
-- deployments.requested_commit: the commit asked for (a rollback's, or a
--   push's head); commit_hash is what was actually checked out.
-- deployments.log_seq: the last log line stored, so a panel that restarts
--   pulls the rest of the log from the agent without gaps or repeats.
-- deployments.job_id: the job that runs it.
ALTER TABLE deployments ADD COLUMN triggered_by VARCHAR(10) NOT NULL DEFAULT 'manual' CHECK (triggered_by IN ('manual', 'api', 'webhook', 'rollback'));
ALTER TABLE deployments ADD COLUMN requested_commit VARCHAR(40) NULL;
ALTER TABLE deployments ADD COLUMN log_seq INT NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN job_id CHAR(26) NULL;

-- Push-to-deploy deliveries seen, per app, so a replayed delivery id is
-- refused. Kept 30 days.
CREATE TABLE deploy_hook_deliveries (
    id CHAR(26) NOT NULL PRIMARY KEY,
    app_id CHAR(26) NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    delivery_id VARCHAR(100) NOT NULL,
    provider VARCHAR(10) NOT NULL CHECK (provider IN ('github', 'gitlab', 'gitea', 'generic')),
    event VARCHAR(50) NOT NULL,
    outcome VARCHAR(20) NOT NULL,
    deployment_id CHAR(26) NULL REFERENCES deployments(id) ON DELETE SET NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE UNIQUE INDEX deploy_hook_deliveries_uk ON deploy_hook_deliveries (app_id, delivery_id);
CREATE INDEX deploy_hook_deliveries_idx_deployment ON deploy_hook_deliveries (deployment_id);
CREATE INDEX deploy_hook_deliveries_idx_created ON deploy_hook_deliveries (created_at);

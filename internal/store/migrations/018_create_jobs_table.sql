-- Addition: the durable job queue (DESIGN.md, decided 5). A job is claimed by
-- taking a lease that its worker renews; an expired lease is rescued and retried.
-- unique_key keeps at most one queued-or-running job per key; concurrency_key
-- lets many jobs queue but only one run at a time per key.
CREATE TABLE jobs (
    id CHAR(26) NOT NULL PRIMARY KEY,
    kind VARCHAR(50) NOT NULL,
    payload {{json "payload"}} NOT NULL DEFAULT '{}',
    status VARCHAR(10) NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    unique_key VARCHAR(191) NULL,
    concurrency_key VARCHAR(191) NULL,
    subject_type VARCHAR(50) NULL,
    subject_id CHAR(26) NULL,
    attempts INT NOT NULL DEFAULT 0,
    max_attempts INT NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_at {{ts}} NOT NULL DEFAULT {{now}},
    lease_owner VARCHAR(64) NULL,
    lease_expires_at {{ts}} NULL,
    cancel_requested_at {{ts}} NULL,
    last_error TEXT NULL,
    started_at {{ts}} NULL,
    finished_at {{ts}} NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE UNIQUE INDEX jobs_uk_active_unique_key ON jobs (unique_key) WHERE unique_key IS NOT NULL AND status IN ('queued', 'running');
CREATE UNIQUE INDEX jobs_uk_running_concurrency_key ON jobs (concurrency_key) WHERE concurrency_key IS NOT NULL AND status = 'running';
CREATE INDEX jobs_idx_claim ON jobs (status, run_at);
CREATE INDEX jobs_idx_lease ON jobs (status, lease_expires_at);
CREATE INDEX jobs_idx_subject ON jobs (subject_type, subject_id);
CREATE INDEX jobs_idx_finished ON jobs (finished_at);
{{updatedAt "jobs"}}

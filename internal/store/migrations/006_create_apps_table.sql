CREATE TABLE apps (
    id CHAR(26) NOT NULL PRIMARY KEY,
    server_id CHAR(26) NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    git_repository VARCHAR(500) NOT NULL,
    git_branch VARCHAR(100) NOT NULL DEFAULT 'main',
    git_credentials_id CHAR(26) NULL REFERENCES git_credentials(id) ON DELETE SET NULL,
    deploy_path VARCHAR(255) NOT NULL,
    docker_compose_file VARCHAR(100) NOT NULL DEFAULT 'docker-compose.yml',
    env_vars TEXT NULL,
    env_production TEXT NULL,
    env_staging TEXT NULL,
    primary_domain VARCHAR(255) NULL,
    staging_domain VARCHAR(255) NULL,
    status VARCHAR(10) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'deploying', 'running', 'stopped', 'failed')),
    current_commit VARCHAR(40) NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX apps_idx_server ON apps (server_id);
CREATE INDEX apps_idx_status ON apps (status);
CREATE INDEX apps_idx_git_credentials ON apps (git_credentials_id);
{{updatedAt "apps"}}

CREATE TABLE servers (
    id CHAR(26) NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    host VARCHAR(255) NOT NULL,
    port INT NOT NULL DEFAULT 22 CHECK (port BETWEEN 1 AND 65535),
    username VARCHAR(50) NOT NULL DEFAULT 'upanel',
    ssh_private_key TEXT NOT NULL,
    ssh_public_key TEXT NOT NULL,
    agent_token VARCHAR(255) NULL,
    agent_port INT NOT NULL DEFAULT 8443 CHECK (agent_port BETWEEN 1 AND 65535),
    status VARCHAR(10) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'online', 'offline', 'error')),
    last_seen_at {{ts}} NULL,
    os_version VARCHAR(50) NULL,
    cpu_cores INT NULL,
    ram_mb INT NULL,
    disk_gb INT NULL,
    hardened_at {{ts}} NULL,
    security_score INT NULL CHECK (security_score IS NULL OR security_score BETWEEN 0 AND 100),
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX servers_idx_status ON servers (status);
CREATE INDEX servers_idx_last_seen ON servers (last_seen_at);
{{updatedAt "servers"}}

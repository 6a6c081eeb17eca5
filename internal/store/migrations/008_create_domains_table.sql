CREATE TABLE domains (
    id CHAR(26) NOT NULL PRIMARY KEY,
    app_id CHAR(26) NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    server_id CHAR(26) NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    domain VARCHAR(255) NOT NULL,
    environment VARCHAR(10) NOT NULL DEFAULT 'production' CHECK (environment IN ('production', 'staging')),
    ssl_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    ssl_auto_renew BOOLEAN NOT NULL DEFAULT TRUE,
    ssl_expires_at {{ts}} NULL,
    upstream_port INT NOT NULL CHECK (upstream_port BETWEEN 1 AND 65535),
    status VARCHAR(10) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'error')),
    caddy_configured BOOLEAN NOT NULL DEFAULT FALSE,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE UNIQUE INDEX domains_uk_domain ON domains (domain);
CREATE INDEX domains_idx_app ON domains (app_id);
CREATE INDEX domains_idx_server ON domains (server_id);
{{updatedAt "domains"}}

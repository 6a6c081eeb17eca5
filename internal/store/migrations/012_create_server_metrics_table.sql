CREATE TABLE server_metrics (
    id CHAR(26) NOT NULL PRIMARY KEY,
    server_id CHAR(26) NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    cpu_percent DECIMAL(5,2) NOT NULL,
    ram_used_mb INT NOT NULL,
    ram_total_mb INT NOT NULL,
    disk_used_gb INT NOT NULL,
    disk_total_gb INT NOT NULL,
    network_in_bytes BIGINT NULL,
    network_out_bytes BIGINT NULL,
    recorded_at {{ts}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX server_metrics_idx_server_recorded ON server_metrics (server_id, recorded_at DESC);
-- Addition: the 7-day retention job deletes by recorded_at across all servers.
CREATE INDEX server_metrics_idx_recorded ON server_metrics (recorded_at);

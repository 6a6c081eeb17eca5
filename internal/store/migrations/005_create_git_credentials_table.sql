CREATE TABLE git_credentials (
    id CHAR(26) NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    type VARCHAR(10) NOT NULL CHECK (type IN ('ssh_key', 'token', 'basic')),
    credentials TEXT NOT NULL,
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
{{updatedAt "git_credentials"}}

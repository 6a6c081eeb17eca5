{{updatedAtFunction}}

CREATE TABLE users (
    id CHAR(26) NOT NULL PRIMARY KEY,
    email VARCHAR(255) NOT NULL UNIQUE,
    password VARCHAR(255) NOT NULL,
    two_factor_secret TEXT NULL,
    two_factor_confirmed_at {{ts}} NULL,
    recovery_codes TEXT NULL,
    role VARCHAR(10) NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'operator', 'viewer')),
    timezone VARCHAR(50) NOT NULL DEFAULT 'UTC',
    created_at {{ts}} NOT NULL DEFAULT {{now}},
    updated_at {{ts}} NOT NULL DEFAULT {{now}}
);
{{updatedAt "users"}}

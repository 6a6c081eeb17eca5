-- Git credentials bound to a host, so a write-only token cannot be sent elsewhere.
-- git_credentials.host: the https host a token or basic credential may be
--   sent to, lower-cased, with :port when not 443 (an IPv6 address in
--   brackets). Repositories on any other host are refused. NULL for ssh_key
--   credentials (known_hosts binds them) and for token and basic credentials
--   written before 026, which https repositories refuse until an admin sets it.
ALTER TABLE git_credentials ADD COLUMN host VARCHAR(255) NULL;

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"upanel/internal/apperr"
)

// Server is a row of servers, without its private key and token hash.
type Server struct {
	ID              string
	Name            string
	Host            string
	Port            int
	Username        string
	SSHPublicKey    string
	AgentPort       int
	Status          string
	StatusReason    string
	LastSeenAt      *time.Time
	OSVersion       string
	CPUCores        *int
	RAMMB           *int
	DiskGB          *int
	HardenedAt      *time.Time
	SecurityScore   *int
	SSHHostKeys     []string // pinned, authorized_keys lines
	SSHHostKeysSeen []string // seen at first contact, awaiting confirmation
	AgentCertSHA256 string
	AgentVersion    string
	Arch            string
	ProvisionedAt   *time.Time
	BootstrapOpen   bool // a bootstrap token is waiting to be used
	// MaintenanceSince is set while the server is in maintenance mode, when
	// it raises no notifications.
	MaintenanceSince *time.Time
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Server statuses, as the seed lists them.
const (
	ServerPending = "pending"
	ServerOnline  = "online"
	ServerOffline = "offline"
	ServerError   = "error"
)

var colSSHPrivateKey = SecretColumn{"servers", "ssh_private_key"}

const serverColumns = `id, name, host, port, username, ssh_public_key, agent_port, status, COALESCE(status_reason, ''),
	last_seen_at, COALESCE(os_version, ''), cpu_cores, ram_mb, disk_gb, hardened_at, security_score,
	COALESCE(ssh_host_keys, ''), COALESCE(ssh_host_keys_seen, ''), COALESCE(agent_cert_sha256, ''),
	COALESCE(agent_version, ''), COALESCE(arch, ''), provisioned_at, bootstrap_token_hash IS NOT NULL, maintenance_since, created_at, updated_at`

func scanServer(s interface{ Scan(...any) error }) (*Server, error) {
	var x Server
	var lastSeen, hardened, provisioned, maintenance, created, updated nullTime
	var cores, ram, disk, score sql.NullInt64
	var keys, seen string
	err := s.Scan(&x.ID, &x.Name, &x.Host, &x.Port, &x.Username, &x.SSHPublicKey, &x.AgentPort, &x.Status, &x.StatusReason,
		&lastSeen, &x.OSVersion, &cores, &ram, &disk, &hardened, &score, &keys, &seen, &x.AgentCertSHA256,
		&x.AgentVersion, &x.Arch, &provisioned, &x.BootstrapOpen, &maintenance, &created, &updated)
	if err != nil {
		return nil, err
	}
	x.AgentCertSHA256 = strings.TrimSpace(x.AgentCertSHA256)
	x.LastSeenAt, x.HardenedAt, x.ProvisionedAt, x.MaintenanceSince = lastSeen.ptr(), hardened.ptr(), provisioned.ptr(), maintenance.ptr()
	x.CreatedAt, x.UpdatedAt = created.Time, updated.Time
	x.CPUCores, x.RAMMB, x.DiskGB, x.SecurityScore = intPtr(cores), intPtr(ram), intPtr(disk), intPtr(score)
	x.SSHHostKeys, x.SSHHostKeysSeen = lines(keys), lines(seen)
	return &x, nil
}

func intPtr(n sql.NullInt64) *int {
	if !n.Valid {
		return nil
	}
	v := int(n.Int64)
	return &v
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// NewServer is what creating a server takes; values are validated by the
// caller, the key pair and bootstrap token made by it.
type NewServer struct {
	Name, Host, Username string
	Port, AgentPort      int
	SSHPrivateKey        []byte // PEM; sealed here
	SSHPublicKey         string
	BootstrapHash        string
	BootstrapExpires     time.Time
}

// CreateServer inserts a server, its private key sealed in the same statement.
func (tx *Tx) CreateServer(ctx context.Context, n NewServer) (*Server, error) {
	id, now := NewID(), tx.Now()
	key, err := tx.Seal(colSSHPrivateKey, id, n.SSHPrivateKey)
	if err != nil {
		return nil, err
	}
	_, err = tx.exec(ctx, `INSERT INTO servers (id, name, host, port, username, ssh_private_key, ssh_public_key, agent_port,
		status, bootstrap_token_hash, bootstrap_expires_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)`,
		id, n.Name, n.Host, n.Port, n.Username, key, n.SSHPublicKey, n.AgentPort, nullString(n.BootstrapHash), n.BootstrapExpires, now, now)
	if err != nil {
		return nil, fmt.Errorf("store: create server: %w", err)
	}
	return tx.GetServer(ctx, id)
}

// GetServer returns a server.
func (tx *Tx) GetServer(ctx context.Context, id string) (*Server, error) {
	s, err := scanServer(tx.queryRow(ctx, "SELECT "+serverColumns+" FROM servers WHERE id = ?", id))
	return s, notFound(err, "server")
}

// GetServer returns a server.
func (db *DB) GetServer(ctx context.Context, id string) (*Server, error) {
	s, err := scanServer(db.queryRow(ctx, "SELECT "+serverColumns+" FROM servers WHERE id = ?", id))
	return s, notFound(err, "server")
}

// ListServers returns every server, by name.
func (db *DB) ListServers(ctx context.Context) ([]*Server, error) {
	rows, err := db.query(ctx, "SELECT "+serverColumns+" FROM servers ORDER BY name, id")
	if err != nil {
		return nil, fmt.Errorf("store: list servers: %w", err)
	}
	defer rows.Close()
	var out []*Server
	for rows.Next() {
		s, err := scanServer(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ServerSSHKey decrypts a server's private key.
func (db *DB) ServerSSHKey(ctx context.Context, id string) ([]byte, error) {
	k, ok, err := db.GetSecret(ctx, colSSHPrivateKey, id)
	if err == nil && !ok {
		err = errors.New("store: server has no private key")
	}
	return k, err
}

func (tx *Tx) updateServer(ctx context.Context, id, set string, args ...any) error {
	res, err := tx.exec(ctx, "UPDATE servers SET "+set+" WHERE id = ?", append(args, id)...)
	if err != nil {
		return fmt.Errorf("store: update server: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "server not found")
	}
	return nil
}

// UpdateServerSettings changes what a user may edit.
func (tx *Tx) UpdateServerSettings(ctx context.Context, id, name, host string, port int, username string, agentPort int) error {
	return tx.updateServer(ctx, id, "name = ?, host = ?, port = ?, username = ?, agent_port = ?", name, host, port, username, agentPort)
}

// DeleteServer deletes a server and, by cascade, its apps, domains and metrics.
func (tx *Tx) DeleteServer(ctx context.Context, id string) error {
	res, err := tx.exec(ctx, "DELETE FROM servers WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("store: delete server: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "server not found")
	}
	return nil
}

// ServerByBootstrapToken finds the server an unexpired bootstrap token names.
func (db *DB) ServerByBootstrapToken(ctx context.Context, hash string) (*Server, error) {
	s, err := scanServer(db.queryRow(ctx, "SELECT "+serverColumns+" FROM servers WHERE bootstrap_token_hash = ? AND bootstrap_expires_at > ?", hash, db.Now()))
	return s, notFound(err, "bootstrap token")
}

// ConsumeBootstrap pins host keys reported by a bootstrap script and ends the
// token, if the token is still valid; false otherwise.
func (tx *Tx) ConsumeBootstrap(ctx context.Context, hash string, hostKeys []string) (string, bool, error) {
	var id string
	now := tx.Now()
	err := tx.queryRow(ctx, `UPDATE servers SET ssh_host_keys = ?, ssh_host_keys_seen = NULL, bootstrap_token_hash = NULL, bootstrap_expires_at = NULL
		WHERE bootstrap_token_hash = ? AND bootstrap_expires_at > ? RETURNING id`, strings.Join(hostKeys, "\n"), hash, now).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return id, err == nil, err
}

// SetBootstrapToken gives a server a new one-time bootstrap token.
func (tx *Tx) SetBootstrapToken(ctx context.Context, id, hash string, expires time.Time) error {
	return tx.updateServer(ctx, id, "bootstrap_token_hash = ?, bootstrap_expires_at = ?", hash, expires)
}

// SetSeenHostKeys records host keys seen at a first contact, for the user to confirm.
func (tx *Tx) SetSeenHostKeys(ctx context.Context, id string, keys []string) error {
	return tx.updateServer(ctx, id, "ssh_host_keys_seen = ?", strings.Join(keys, "\n"))
}

// PinHostKeys pins host keys (replacing any): after the user confirmed a
// fingerprint, or after an admin accepted a changed key.
func (tx *Tx) PinHostKeys(ctx context.Context, id string, keys []string) error {
	return tx.updateServer(ctx, id, "ssh_host_keys = ?, ssh_host_keys_seen = NULL", strings.Join(keys, "\n"))
}

// SetAgentCredentials records the agent's pinned certificate and its token hash.
func (tx *Tx) SetAgentCredentials(ctx context.Context, id, certSHA256, tokenHash string) error {
	return tx.updateServer(ctx, id, "agent_cert_sha256 = ?, agent_token = ?, agent_seq = 0", certSHA256, tokenHash)
}

// SetAgentToken records a new agent token hash, before the agent is installed.
func (tx *Tx) SetAgentToken(ctx context.Context, id, tokenHash string) error {
	return tx.updateServer(ctx, id, "agent_token = ?, agent_seq = 0", tokenHash)
}

// MarkProvisioned records a finished provisioning.
func (tx *Tx) MarkProvisioned(ctx context.Context, id, arch string) error {
	return tx.updateServer(ctx, id, "provisioned_at = ?, arch = ?, status_reason = NULL, status = CASE WHEN status = 'error' THEN 'pending' ELSE status END", tx.Now(), arch)
}

// SetServerError puts a server in error, with the reason shown to users.
func (db *DB) SetServerError(ctx context.Context, id, reason string) error {
	_, err := db.exec(ctx, "UPDATE servers SET status = 'error', status_reason = ? WHERE id = ?", truncate(reason, 2000), id)
	return err
}

// MarkHardened records a finished hardening.
func (tx *Tx) MarkHardened(ctx context.Context, id string) error {
	return tx.updateServer(ctx, id, "hardened_at = ?", tx.Now())
}

// ServerIDByAgentToken finds the server an agent token belongs to. It reads
// only the id: it runs on every agent request.
func (db *DB) ServerIDByAgentToken(ctx context.Context, hash string) (string, error) {
	var id string
	err := db.queryRow(ctx, "SELECT id FROM servers WHERE agent_token = ?", hash).Scan(&id)
	return id, notFound(err, "server")
}

// AcceptAgentSeq records an agent message's sequence number if it is newer
// than every one before; false means a replay.
func (db *DB) AcceptAgentSeq(ctx context.Context, id string, seq uint64) (bool, error) {
	if seq > 1<<62 {
		return false, nil
	}
	res, err := db.exec(ctx, "UPDATE servers SET agent_seq = ? WHERE id = ? AND agent_seq < ?", int64(seq), id, int64(seq))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// ServerHeartbeat is what a heartbeat updates.
type ServerHeartbeat struct {
	OSVersion    string
	CPUCores     int
	RAMMB        int
	DiskGB       int
	AgentVersion string
	Arch         string
}

// RecordHeartbeat marks a server seen with its inventory. It returns the
// status before, so the caller can tell a server that just came back.
func (db *DB) RecordHeartbeat(ctx context.Context, id string, h ServerHeartbeat) (previous string, err error) {
	err = db.InTx(ctx, func(tx *Tx) error {
		if err := tx.queryRow(ctx, "SELECT status FROM servers WHERE id = ?", id).Scan(&previous); err != nil {
			return notFound(err, "server")
		}
		status := ServerOnline
		if previous == ServerError {
			status = ServerError // an error stands until a provisioning fixes it
		}
		_, err := tx.exec(ctx, `UPDATE servers SET status = ?, last_seen_at = ?, os_version = ?, cpu_cores = ?, ram_mb = ?, disk_gb = ?,
			agent_version = ?, arch = ? WHERE id = ?`, status, tx.Now(), truncate(h.OSVersion, 50), h.CPUCores, h.RAMMB, h.DiskGB,
			truncate(h.AgentVersion, 50), truncate(h.Arch, 20), id)
		return err
	})
	return previous, err
}

// MarkOfflineServers turns online servers not seen since cutoff offline and
// returns them. The update is conditional, so with several panels each
// outage is found once.
func (db *DB) MarkOfflineServers(ctx context.Context, cutoff time.Time) ([]*Server, error) {
	var out []*Server
	err := db.InTx(ctx, func(tx *Tx) error {
		rows, err := tx.query(ctx, "UPDATE servers SET status = 'offline' WHERE status = 'online' AND last_seen_at < ? RETURNING id", cutoff)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			s, err := tx.GetServer(ctx, id)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	return out, err
}

// RecordAudit stores an audit and the server's new score.
func (db *DB) RecordAudit(ctx context.Context, serverID string, score int, checks []byte) error {
	return db.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, "INSERT INTO server_audits (id, server_id, score, checks, created_at) VALUES (?, ?, ?, ?, ?)",
			NewID(), serverID, score, string(checks), tx.Now()); err != nil {
			return err
		}
		return tx.updateServer(ctx, serverID, "security_score = ?", score)
	})
}

// LatestAudit returns a server's latest audit checks (JSON) and when it ran.
func (db *DB) LatestAudit(ctx context.Context, serverID string) (score int, checks []byte, at time.Time, err error) {
	var c string
	var t nullTime
	err = db.queryRow(ctx, "SELECT score, checks, created_at FROM server_audits WHERE server_id = ? ORDER BY created_at DESC, id DESC LIMIT 1", serverID).Scan(&score, &c, &t)
	if err != nil {
		return 0, nil, time.Time{}, notFound(err, "audit")
	}
	return score, []byte(c), t.Time, nil
}

// AppendJobLog adds a line of output to a job's log.
func (db *DB) AppendJobLog(ctx context.Context, jobID, line string) error {
	_, err := db.exec(ctx, "INSERT INTO job_logs (id, job_id, line, created_at) VALUES (?, ?, ?, ?)", NewID(), jobID, cleanText(line, 8000), db.Now())
	return err
}

// JobLog returns a job's log lines in order.
func (db *DB) JobLog(ctx context.Context, jobID string) ([]string, error) {
	rows, err := db.query(ctx, "SELECT line FROM job_logs WHERE job_id = ? ORDER BY id", jobID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// LatestJobFor returns the newest job of kind about a subject.
func (db *DB) LatestJobFor(ctx context.Context, subjectType, subjectID, kind string) (*Job, error) {
	j, err := scanJob(db.queryRow(ctx, "SELECT "+jobColumns+" FROM jobs WHERE subject_type = ? AND subject_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
		subjectType, subjectID, kind))
	return j, notFound(err, "job")
}

// PanelCredential returns a stored panel credential (certificate PEM and
// decrypted key PEM), or not found.
func (db *DB) PanelCredential(ctx context.Context, id string) (certPEM string, keyPEM []byte, err error) {
	if err := db.queryRow(ctx, "SELECT cert_pem FROM panel_credentials WHERE id = ?", id).Scan(&certPEM); err != nil {
		return "", nil, notFound(err, "panel credential")
	}
	key, _, err := db.GetSecret(ctx, SecretColumn{"panel_credentials", "private_key"}, id)
	return certPEM, key, err
}

// CreatePanelCredential stores a panel credential unless one exists; it
// returns whether it did, so concurrent panels agree on one.
func (db *DB) CreatePanelCredential(ctx context.Context, id, certPEM string, keyPEM []byte) (bool, error) {
	created := false
	err := db.InTx(ctx, func(tx *Tx) error {
		key, err := tx.Seal(SecretColumn{"panel_credentials", "private_key"}, id, keyPEM)
		if err != nil {
			return err
		}
		res, err := tx.exec(ctx, "INSERT INTO panel_credentials (id, cert_pem, private_key, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
			id, certPEM, key, tx.Now())
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		created = n == 1
		return nil
	})
	return created, err
}

// ServerInMaintenance reports whether a server is in maintenance mode.
func (tx *Tx) ServerInMaintenance(ctx context.Context, id string) (bool, error) {
	var since nullTime
	err := tx.queryRow(ctx, "SELECT maintenance_since FROM servers WHERE id = ?", id).Scan(&since)
	if err != nil {
		return false, notFound(err, "server")
	}
	return since.Valid, nil
}

// SetServerMaintenance turns maintenance mode on (from now) or off, and
// reports whether it changed.
func (tx *Tx) SetServerMaintenance(ctx context.Context, id string, on bool) (bool, error) {
	q := "UPDATE servers SET maintenance_since = ? WHERE id = ? AND maintenance_since IS NULL"
	args := []any{tx.Now(), id}
	if !on {
		q, args = "UPDATE servers SET maintenance_since = NULL WHERE id = ? AND maintenance_since IS NOT NULL", []any{id}
	}
	res, err := tx.exec(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("store: server maintenance: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

package store

// The audit trail: security_events (who tried what, from where, and how it
// went) and activity_log (what changed in a domain object, as a field diff),
// whose rows form a hash chain so that tampering shows.
//
// The chain. Each activity row stores prev_hash, the hash of the row before
// it (64 zeros for the first row), and hash, SHA-256 over prev_hash and an
// unambiguous encoding of every stored column of the row (activityHash). The
// order of the chain is the order of the ids: the store assigns each row's id
// while it holds the append lock and makes it greater than every id before it,
// so "the head" is simply the row with the greatest id, and VerifyActivityChain
// walks the rows by ascending id with a keyset cursor. There is no separate
// head table to keep in step with the log, and the newest-first lists page
// through the same order the chain has.
//
// Appends never fork the chain. An append reads the head and inserts its
// successor in one transaction that holds the append lock: on PostgreSQL a
// transaction-scoped advisory lock (activityChainLock), taken before the head
// is read and released at commit, so a second panel process appending at the
// same moment reads the first one's row as its head; on SQLite the IMMEDIATE
// write transaction already holds the database's single write lock. Behind the
// lock, a unique index on prev_hash makes a fork impossible at the database
// level: two rows claiming the same predecessor cannot both commit.
//
// The lock is held until the caller's transaction ends, so domain code should
// record activity as the last write of its transaction; holding it while
// waiting on other row locks serialises unrelated writers and can deadlock
// (PostgreSQL would then abort one of them).
//
// What the chain cannot show: anyone who can write to the database can
// recompute every hash after the row they change, and deleting rows from the
// end of the log leaves a shorter chain that is still whole. Anchoring the
// head outside the database (a copy of the latest hash in a log or a backup)
// is what closes those; the chain makes every other edit visible.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"upanel/internal/apperr"
)

// Security event severities.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// activityChainLock is the PostgreSQL advisory lock key that serialises
// activity log appends across panel processes (see the top of this file).
const activityChainLock = 7_411_025_003

// GenesisHash is the prev_hash of the first activity row.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Column limits: the seed's VARCHAR(45) for addresses, and a cap on user
// agents, which are client-controlled and otherwise unbounded TEXT.
const (
	maxIPAddress  = 45
	maxUserAgent  = 1000
	maxNameLength = 50 // event_type, action, subject_type: VARCHAR(50)
	defaultLimit  = 50
	maxLimit      = 500
	verifyBatch   = 500
)

// SecurityEvent is a row of security_events.
type SecurityEvent struct {
	// ID and CreatedAt are assigned by the store; leave them empty.
	ID       string
	UserID   string // optional: the account concerned, if known
	ServerID string // optional: the managed server concerned
	// EventType is 1-50 characters of [a-z0-9_.], such as login_failed.
	EventType string
	// Severity is info, warning or critical; empty means info.
	Severity string
	// IPAddress and UserAgent come from the request. They are client-controlled:
	// the store makes them valid UTF-8 and cuts them to 45 and 1000 characters.
	IPAddress string
	UserAgent string
	// Details is stored as JSON. Never put a secret in it.
	Details   map[string]any
	CreatedAt time.Time
}

// SecurityEventFilter selects security events. Empty fields match everything.
type SecurityEventFilter struct {
	EventType string
	Severity  string
	UserID    string
	Since     time.Time // created at or after
	Until     time.Time // created before
	// Before is a keyset cursor: the id of the last event of the previous page.
	Before string
	// Limit defaults to 50 and is capped at 500.
	Limit int
}

// Activity is a row of activity_log: one create, update or delete of a domain
// object.
type Activity struct {
	// ID and CreatedAt are assigned by the store; leave them empty. The id
	// orders the hash chain, so it must be chosen under the append lock.
	ID          string
	UserID      string // optional: who did it; empty for the system
	Action      string // 1-50 characters of [a-z0-9_.]: created, updated, deleted, deployed...
	SubjectType string // 1-50 characters of [a-z0-9_.]: app, server, backup...
	SubjectID   string // the object's id, a ULID
	Description string
	// Changes is the field diff. A Change marked Secret is stored as
	// {"changed": true}, never with its values.
	Changes   map[string]Change
	IPAddress string
	CreatedAt time.Time
	// PrevHash and Hash are the row's links in the hash chain; the store sets them.
	PrevHash, Hash string
}

// Change is one field of an activity diff.
type Change struct {
	Old, New any
	// Secret marks a field whose values must never be stored: the change is
	// recorded as {"changed": true} and Old and New are dropped.
	Secret bool
}

// MarshalJSON writes {"old": ..., "new": ...}, or {"changed": true} for a
// secret field. It is the one place a Change becomes JSON, so a secret value
// cannot reach the log whoever marshals the diff.
func (c Change) MarshalJSON() ([]byte, error) {
	if c.Secret {
		return []byte(`{"changed":true}`), nil
	}
	return json.Marshal(struct {
		Old any `json:"old"`
		New any `json:"new"`
	}{c.Old, c.New})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Change) UnmarshalJSON(b []byte) error {
	var v struct {
		Old     any  `json:"old"`
		New     any  `json:"new"`
		Changed bool `json:"changed"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.Changed {
		*c = Change{Secret: true}
		return nil
	}
	*c = Change{Old: v.Old, New: v.New}
	return nil
}

// ActivityFilter selects activity rows. Empty fields match everything.
type ActivityFilter struct {
	UserID      string
	SubjectType string
	SubjectID   string
	Action      string
	// ExcludeSubjectTypes hides entries about these kinds of object, for
	// viewers who may not see them (accounts, for non-admins).
	ExcludeSubjectTypes []string
	// Before is a keyset cursor: the id of the last row of the previous page.
	Before string
	// Limit defaults to 50 and is capped at 500.
	Limit int
}

// ChainBreakKind says what is wrong with a link of the activity chain.
type ChainBreakKind string

const (
	// ChainHashMismatch: the row's contents no longer hash to its stored
	// hash, so the row was edited after it was written.
	ChainHashMismatch ChainBreakKind = "hash_mismatch"
	// ChainPrevHashMismatch: the row does not point at the row before it, so a
	// row was deleted, inserted or reordered just before this one.
	ChainPrevHashMismatch ChainBreakKind = "prev_hash_mismatch"
	// ChainMissingHash: the row has no hash. UPanel writes one on every row
	// (the chain's migration runs before any activity exists), so the row was
	// written or altered outside UPanel.
	ChainMissingHash ChainBreakKind = "missing_hash"
)

// ChainBreak is the first broken link found.
type ChainBreak struct {
	ID     string // the row at which the chain breaks
	Kind   ChainBreakKind
	Reason string // a sentence for people
}

// ChainReport is the result of VerifyActivityChain.
type ChainReport struct {
	// Rows is how many rows were checked and found intact: every row when the
	// chain is whole, those before the break otherwise.
	Rows int64
	// Break is the first broken link, or nil.
	Break *ChainBreak
}

// Intact reports whether the whole chain verified.
func (r ChainReport) Intact() bool { return r.Break == nil }

// validName checks event types, actions and subject types: short, lower-case
// identifiers, so that they can be filtered on and never carry free text.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validSubjectType accepts the seed's model names ("Server", "App",
// "Backup"): a letter, then letters, digits, underscores or dots.
func validSubjectType(s string) bool {
	if s == "" || len(s) > maxNameLength || !(s[0] >= 'A' && s[0] <= 'Z' || s[0] >= 'a' && s[0] <= 'z') {
		return false
	}
	return validName(strings.ToLower(s))
}

func validSeverity(s string) bool {
	return s == SeverityInfo || s == SeverityWarning || s == SeverityCritical
}

// cleanText makes client-controlled text storable on both databases and
// bounded: PostgreSQL rejects invalid UTF-8 and NUL bytes in text, and a
// request header must not be able to fail the write of its own security
// event. max counts characters, as VARCHAR(n) does; 0 means no limit.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if max > 0 && utf8.RuneCountInString(s) > max {
		n := 0
		for i := range s {
			if n == max {
				return s[:i]
			}
			n++
		}
	}
	return s
}

func validID(what, id string) error {
	if _, err := ulid.ParseStrict(id); err != nil {
		return apperr.New(apperr.Invalid, "%s must be a ULID", what)
	}
	return nil
}

// newIDAt returns a ULID stamped with t, the store's clock, so that ids and
// created_at agree (and a test clock orders both).
func newIDAt(t time.Time) (ulid.ULID, error) {
	id, err := ulid.New(ulid.Timestamp(t), ulid.DefaultEntropy())
	if err != nil {
		return ulid.ULID{}, fmt.Errorf("store: new id: %w", err)
	}
	return id, nil
}

func listLimit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > maxLimit:
		return maxLimit
	}
	return n
}

// InsertSecurityEvent records a security event in the caller's transaction,
// so that the event exists exactly when the change it reports commits (a
// role change and its role_changed event, say).
func (tx *Tx) InsertSecurityEvent(ctx context.Context, e SecurityEvent) (id string, err error) {
	if e.ID != "" || !e.CreatedAt.IsZero() {
		return "", apperr.New(apperr.Invalid, "security event id and time are assigned by the store")
	}
	if !validName(e.EventType) {
		return "", apperr.New(apperr.Invalid, "security event type must be 1-50 characters of a-z, 0-9, _ and .")
	}
	if e.Severity == "" {
		e.Severity = SeverityInfo
	}
	if !validSeverity(e.Severity) {
		return "", apperr.New(apperr.Invalid, "security event severity must be info, warning or critical")
	}
	for _, f := range [...]struct{ what, v string }{{"user id", e.UserID}, {"server id", e.ServerID}} {
		if f.v != "" {
			if err := validID("security event "+f.what, f.v); err != nil {
				return "", err
			}
		}
	}
	var details any
	if len(e.Details) > 0 {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return "", fmt.Errorf("store: security event %s details: %w", e.EventType, err)
		}
		details = string(b)
	}
	now := tx.Now()
	uid, err := newIDAt(now)
	if err != nil {
		return "", err
	}
	id = uid.String()
	_, err = tx.exec(ctx, `INSERT INTO security_events (id, user_id, server_id, event_type, severity, ip_address, user_agent, details, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		id, nullString(e.UserID), nullString(e.ServerID), e.EventType, e.Severity,
		nullString(cleanText(e.IPAddress, maxIPAddress)), nullString(cleanText(e.UserAgent, maxUserAgent)), details, now)
	if err != nil {
		return "", fmt.Errorf("store: insert security event %s: %w", e.EventType, err)
	}
	return id, nil
}

// InsertSecurityEvent records a security event in a transaction of its own,
// for events that must be kept even when the action they report fails (a
// failed login, a denied request).
func (db *DB) InsertSecurityEvent(ctx context.Context, e SecurityEvent) (id string, err error) {
	err = db.InTx(ctx, func(tx *Tx) error {
		id, err = tx.InsertSecurityEvent(ctx, e)
		return err
	})
	return id, err
}

const securityEventColumns = `id, user_id, server_id, event_type, severity, ip_address, user_agent, details, created_at`

func scanSecurityEvent(s interface{ Scan(...any) error }) (SecurityEvent, error) {
	var e SecurityEvent
	var user, server, ip, agent, details sql.NullString
	var created nullTime
	if err := s.Scan(&e.ID, &user, &server, &e.EventType, &e.Severity, &ip, &agent, &details, &created); err != nil {
		return e, err
	}
	e.UserID, e.ServerID, e.IPAddress, e.UserAgent = user.String, server.String, ip.String, agent.String
	e.CreatedAt = created.Time
	if details.Valid {
		if err := json.Unmarshal([]byte(details.String), &e.Details); err != nil {
			return e, fmt.Errorf("security event %s details: %w", e.ID, err)
		}
	}
	return e, nil
}

// ListSecurityEvents returns matching events, newest first. Ids are stamped
// with the insert time (newIDAt), so id order is time order and the id of the
// last event of a page is the cursor of the next.
func (db *DB) ListSecurityEvents(ctx context.Context, f SecurityEventFilter) ([]SecurityEvent, error) {
	var where []string
	var args []any
	if f.EventType != "" {
		if !validName(f.EventType) {
			return nil, apperr.New(apperr.Invalid, "bad security event type filter")
		}
		where, args = append(where, "event_type = ?"), append(args, f.EventType)
	}
	if f.Severity != "" {
		if !validSeverity(f.Severity) {
			return nil, apperr.New(apperr.Invalid, "severity must be info, warning or critical")
		}
		where, args = append(where, "severity = ?"), append(args, f.Severity)
	}
	if f.UserID != "" {
		where, args = append(where, "user_id = ?"), append(args, f.UserID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "created_at >= ?"), append(args, f.Since)
	}
	if !f.Until.IsZero() {
		where, args = append(where, "created_at < ?"), append(args, f.Until)
	}
	if f.Before != "" {
		if err := validID("cursor", f.Before); err != nil {
			return nil, err
		}
		where, args = append(where, "id < ?"), append(args, f.Before)
	}
	q := "SELECT " + securityEventColumns + " FROM security_events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, listLimit(f.Limit))
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list security events: %w", err)
	}
	defer rows.Close()
	var out []SecurityEvent
	for rows.Next() {
		e, err := scanSecurityEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list security events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list security events: %w", err)
	}
	return out, nil
}

// activityRow is an activity_log row exactly as stored: NULL and empty are
// different values to the hash.
type activityRow struct {
	id, action, subjectType, subjectID string
	userID, description, changes, ip   sql.NullString
	createdAt                          time.Time
	prevHash, hash                     sql.NullString
}

// activityHashTime is the fixed encoding of created_at in the hash: UTC with
// milliseconds, which both databases keep exactly.
const activityHashTime = "2006-01-02T15:04:05.000Z"

// activityHash is SHA-256 over a version tag, prevHash and every stored
// column of the row. Each field is written as one byte (0 for NULL, 1 for a
// value) followed, for a value, by its length as 8 bytes big-endian and its
// bytes, so that no two different rows encode alike (moving text from one
// column to the next, or turning an empty string into NULL, changes the
// hash). changes is hashed as the stored JSON text: the column is JSON, not
// JSONB, on PostgreSQL so that those bytes come back unchanged.
func activityHash(prevHash string, r *activityRow) string {
	h := sha256.New()
	h.Write([]byte("upanel activity_log v1\n"))
	field := func(h hash.Hash, s string, valid bool) {
		if !valid {
			h.Write([]byte{0})
			return
		}
		var n [9]byte
		n[0] = 1
		binary.BigEndian.PutUint64(n[1:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	str := func(s string) { field(h, s, true) }
	null := func(s sql.NullString) { field(h, s.String, s.Valid) }
	str(prevHash)
	str(r.id)
	null(r.userID)
	str(r.action)
	str(r.subjectType)
	str(r.subjectID)
	null(r.description)
	null(r.changes)
	null(r.ip)
	str(r.createdAt.UTC().Format(activityHashTime))
	return hex.EncodeToString(h.Sum(nil))
}

func nullStr(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// lockActivityChain takes the append lock; see the top of this file.
func (tx *Tx) lockActivityChain(ctx context.Context) error {
	if tx.db.d.name != "postgres" {
		return nil // SQLite: the IMMEDIATE transaction already holds the write lock
	}
	if _, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(?)", activityChainLock); err != nil {
		return fmt.Errorf("store: lock activity log: %w", err)
	}
	return nil
}

// activityHead returns the id and hash of the chain's last row, or ok false
// for an empty log. Call it holding the append lock.
func (tx *Tx) activityHead(ctx context.Context) (id, hash string, ok bool, err error) {
	var h sql.NullString
	err = tx.queryRow(ctx, "SELECT id, hash FROM activity_log ORDER BY id DESC LIMIT 1").Scan(&id, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("store: activity log head: %w", err)
	}
	if !h.Valid {
		// Only possible when the log was written outside UPanel. Chaining on
		// would hide the damage behind a valid-looking link.
		return "", "", false, apperr.New(apperr.Internal, "activity log head %s has no hash; run upanel audit verify", id)
	}
	return id, h.String, true, nil
}

// successor returns the smallest ULID greater than id. An append whose own
// ULID is not past the head (two panels' clocks disagree, or the same
// millisecond in two processes) takes it instead, so ids follow chain order.
func successor(id ulid.ULID) (ulid.ULID, error) {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			return id, nil
		}
	}
	return ulid.ULID{}, errors.New("store: activity log ids exhausted")
}

// InsertActivity appends a row to the activity log in the caller's
// transaction, so the record commits exactly with the change it describes.
// It takes the chain's append lock until the transaction ends: make it the
// transaction's last write.
func (tx *Tx) InsertActivity(ctx context.Context, a Activity) (string, error) {
	if a.ID != "" || !a.CreatedAt.IsZero() || a.PrevHash != "" || a.Hash != "" {
		return "", apperr.New(apperr.Invalid, "activity id, time and hashes are assigned by the store")
	}
	if !validName(a.Action) {
		return "", apperr.New(apperr.Invalid, "activity action must be 1-50 characters of a-z, 0-9, _ and .")
	}
	if !validSubjectType(a.SubjectType) {
		return "", apperr.New(apperr.Invalid, "activity subject type must be 1-50 characters of a-z, 0-9, _ and .")
	}
	// Ids are ULIDs (DESIGN.md); insisting on it also keeps the CHAR(26)
	// columns unpadded, so PostgreSQL returns exactly the bytes that were hashed.
	if err := validID("activity subject id", a.SubjectID); err != nil {
		return "", err
	}
	if a.UserID != "" {
		if err := validID("activity user id", a.UserID); err != nil {
			return "", err
		}
	}
	r := activityRow{
		action:      a.Action,
		subjectType: a.SubjectType,
		subjectID:   a.SubjectID,
		userID:      nullStr(a.UserID),
		description: nullStr(cleanText(a.Description, 0)),
		ip:          nullStr(cleanText(a.IPAddress, maxIPAddress)),
	}
	if len(a.Changes) > 0 {
		b, err := json.Marshal(a.Changes)
		if err != nil {
			return "", fmt.Errorf("store: activity %s %s changes: %w", a.Action, a.SubjectType, err)
		}
		r.changes = sql.NullString{String: string(b), Valid: true}
	}

	if err := tx.lockActivityChain(ctx); err != nil {
		return "", err
	}
	headID, prev, ok, err := tx.activityHead(ctx)
	if err != nil {
		return "", err
	}
	r.createdAt = tx.Now()
	id, err := newIDAt(r.createdAt)
	if err != nil {
		return "", err
	}
	if !ok {
		prev = GenesisHash
	} else if head, err := ulid.ParseStrict(headID); err != nil {
		return "", fmt.Errorf("store: activity log head id %q: %w", headID, err)
	} else if id.Compare(head) <= 0 {
		if id, err = successor(head); err != nil {
			return "", err
		}
	}
	r.id = id.String()
	r.hash = nullStr(activityHash(prev, &r))
	_, err = tx.exec(ctx, `INSERT INTO activity_log (id, user_id, action, subject_type, subject_id, description, changes, ip_address, created_at, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.id, r.userID, r.action, r.subjectType, r.subjectID, r.description, r.changes, r.ip, r.createdAt, prev, r.hash)
	if err != nil {
		if isUniqueViolation(err) {
			// The prev_hash index refused a fork: the append lock was bypassed.
			return "", apperr.Wrap(err, apperr.Conflict, "activity log: another append took the same place in the chain")
		}
		return "", fmt.Errorf("store: insert activity %s %s: %w", a.Action, a.SubjectType, err)
	}
	return r.id, nil
}

const activityColumns = `id, user_id, action, subject_type, subject_id, description, changes, ip_address, created_at, prev_hash, hash`

func scanActivityRow(s interface{ Scan(...any) error }) (activityRow, error) {
	var r activityRow
	var created nullTime
	err := s.Scan(&r.id, &r.userID, &r.action, &r.subjectType, &r.subjectID, &r.description, &r.changes, &r.ip, &created, &r.prevHash, &r.hash)
	r.createdAt = created.Time
	return r, err
}

// ListActivity returns matching activity rows, newest (latest in the chain)
// first. Page with Before set to the id of the last row of the previous page.
func (db *DB) ListActivity(ctx context.Context, f ActivityFilter) ([]Activity, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{
		{"user_id", f.UserID}, {"subject_type", f.SubjectType}, {"subject_id", f.SubjectID}, {"action", f.Action},
	} {
		if c.v != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	if len(f.ExcludeSubjectTypes) > 0 {
		where = append(where, "subject_type NOT IN ("+placeholders(len(f.ExcludeSubjectTypes))+")")
		for _, t := range f.ExcludeSubjectTypes {
			args = append(args, t)
		}
	}
	if f.Before != "" {
		if err := validID("cursor", f.Before); err != nil {
			return nil, err
		}
		where, args = append(where, "id < ?"), append(args, f.Before)
	}
	q := "SELECT " + activityColumns + " FROM activity_log"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, listLimit(f.Limit))
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list activity: %w", err)
	}
	defer rows.Close()
	var out []Activity
	for rows.Next() {
		r, err := scanActivityRow(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list activity: %w", err)
		}
		a := Activity{
			ID: r.id, UserID: r.userID.String, Action: r.action, SubjectType: r.subjectType, SubjectID: r.subjectID,
			Description: r.description.String, IPAddress: r.ip.String, CreatedAt: r.createdAt,
			PrevHash: r.prevHash.String, Hash: r.hash.String,
		}
		if r.changes.Valid {
			if err := json.Unmarshal([]byte(r.changes.String), &a.Changes); err != nil {
				return nil, fmt.Errorf("store: activity %s changes: %w", r.id, err)
			}
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list activity: %w", err)
	}
	return out, nil
}

// VerifyActivityChain walks the activity log in chain order, a batch at a
// time, recomputing every hash, and reports how many rows are intact and the
// first broken link. Rows appended while it runs are checked too, if they
// commit before the walk reaches the end. A chain that ends early (rows
// deleted from its end) still verifies: see the top of this file.
func (db *DB) VerifyActivityChain(ctx context.Context) (ChainReport, error) {
	var rep ChainReport
	prev, after := GenesisHash, ""
	for {
		rows, err := db.query(ctx, "SELECT "+activityColumns+" FROM activity_log WHERE id > ? ORDER BY id LIMIT ?", after, verifyBatch)
		if err != nil {
			return rep, fmt.Errorf("store: verify activity log: %w", err)
		}
		n := 0
		for rows.Next() {
			r, err := scanActivityRow(rows)
			if err != nil {
				rows.Close()
				return rep, fmt.Errorf("store: verify activity log after %d rows: %w", rep.Rows, err)
			}
			n++
			if b := checkLink(prev, &r); b != nil {
				rows.Close()
				rep.Break = b
				return rep, nil
			}
			rep.Rows++
			prev, after = r.hash.String, r.id
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return rep, fmt.Errorf("store: verify activity log after %d rows: %w", rep.Rows, err)
		}
		if n < verifyBatch {
			return rep, nil
		}
	}
}

// checkLink checks one row against the hash of the row before it. The row's
// own hash is checked first: an edited row is reported as edited, and the row
// after it still links to its stored hash, so only a missing or added row
// shows as a prev_hash mismatch (on the row after the gap).
func checkLink(prev string, r *activityRow) *ChainBreak {
	if !r.hash.Valid || !r.prevHash.Valid {
		return &ChainBreak{ID: r.id, Kind: ChainMissingHash,
			Reason: "the row has no hash, so it was written or altered outside UPanel"}
	}
	if activityHash(r.prevHash.String, r) != r.hash.String {
		return &ChainBreak{ID: r.id, Kind: ChainHashMismatch,
			Reason: "hash mismatch: the row's contents were changed after it was written"}
	}
	if r.prevHash.String != prev {
		return &ChainBreak{ID: r.id, Kind: ChainPrevHashMismatch,
			Reason: "prev_hash mismatch: the row before it was deleted, inserted or reordered"}
	}
	return nil
}

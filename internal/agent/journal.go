package agent

// The deployment journal: what the agent knows of every deployment, on disk,
// so that it can answer "what happened to deployment X" after a restart.
//
// <state_dir>/deploys/<id>.json holds the record (its wire.DeployState and
// where it deployed); it is replaced atomically and fsynced on every state
// transition. <id>.log holds the log, one JSON wire.LogLine a line, appended
// as the output comes (no fsync: a crash may lose the last lines, which the
// reconciliation then notes). <id>.env is a copy of the .env the deployment
// found, kept until it ends so that a restore can put it back. All are 0600
// in a 0700 directory.
//
// The record also says how far the deployment got (restoreInfo, UpStarted):
// a deployment found running at start-up that had changed the tree or the
// containers has its previous release put back (resume.go) before it ends.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"upanel/internal/wire"
)

const (
	// journalKeep is how many journals the agent keeps per project.
	journalKeep = 100
	// maxJournalLines and maxJournalBytes bound one deployment's log; past
	// them a last line says so and the rest of the output is dropped (the
	// error of a failed step still names what went wrong).
	maxJournalLines = 20000
	maxJournalBytes = 8 << 20

	restartedMessage = "the agent restarted during the deployment"
	// restoreFailedMessage ends the error of a deployment that changed the
	// containers and could not put the previous release back.
	restoreFailedMessage = "the previous release could not be restored"
)

// journalRecord is the <id>.json file.
type journalRecord struct {
	State           wire.DeployState `json:"state"`
	Project         string           `json:"project"`
	Dir             string           `json:"dir"` // resolved, under <deploy_root>/apps
	ComposeFile     string           `json:"compose_file"`
	RequestedCommit string           `json:"requested_commit,omitempty"`
	// UpStarted: the deployment had begun to change the containers.
	UpStarted bool `json:"up_started,omitempty"`
	// Restore is what putting the previous release back needs, written
	// before the deployment changes anything; nil in the records of older
	// agents and of deployments that ended before their checkout.
	Restore *restoreInfo `json:"restore,omitempty"`
}

// restoreInfo is what a deployment found before it changed the tree, so that
// an agent that starts again after dying in the middle of it can put the
// previous release back.
type restoreInfo struct {
	PrevHead string `json:"prev_head,omitempty"` // the checkout before, if any
	HadEnv   bool   `json:"had_env,omitempty"`
	// EnvBackup is the copy of the previous .env (journal.envBackupPath),
	// removed when the deployment ends.
	EnvBackup string `json:"env_backup,omitempty"`
	// PrevRelease is the newest kept release when the deployment began.
	PrevRelease *release `json:"prev_release,omitempty"`
	// CheckedOut: the working tree and .env may have changed.
	CheckedOut bool `json:"checked_out,omitempty"`
}

// needsRestore says whether a record left running may have changed the tree
// or the containers and carries what is needed to put them back.
func (rec *journalRecord) needsRestore() bool {
	return rec.Restore != nil && (rec.Restore.CheckedOut || rec.UpStarted)
}

// journal is the deploys directory.
type journal struct {
	dir string

	mu        sync.Mutex
	byProject map[string][]string // ids (ULIDs), oldest first

	// resume are the records found running that need their previous
	// release put back (needsRestore), oldest first: they stay running
	// until the Deployer has done it.
	resume []journalRecord
}

// openJournal reads the journal directory, creating it if needed, and ends
// every deployment still marked running: the agent that ran it is gone.
// Those that may have changed the tree or the containers stay running, in
// j.resume, for the Deployer to put their previous release back.
func openJournal(dir string, now time.Time) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("deploy journal: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("deploy journal: %w", err)
	}
	j := &journal{dir: dir, byProject: map[string][]string{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("deploy journal: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !ulidRe.MatchString(id) {
			if strings.HasSuffix(e.Name(), ".tmp") {
				os.Remove(filepath.Join(dir, e.Name()))
			}
			continue
		}
		rec, err := j.read(id)
		if err != nil {
			// A record that cannot be read is useless and would fail
			// every later read the same way.
			j.remove(id)
			continue
		}
		if rec.State.Status == wire.DeployRunning {
			if rec.needsRestore() {
				j.resume = append(j.resume, rec)
			} else if err := j.reconcile(&rec, now); err != nil {
				return nil, err
			}
		}
		j.byProject[rec.Project] = append(j.byProject[rec.Project], id)
	}
	slices.SortFunc(j.resume, func(a, b journalRecord) int { return strings.Compare(a.State.ID, b.State.ID) })
	resuming := func(id string) bool {
		return slices.ContainsFunc(j.resume, func(r journalRecord) bool { return r.State.ID == id })
	}
	// The .env backups of deployments that ended: they hold secrets.
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".env"); ok && ulidRe.MatchString(id) && !resuming(id) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for p := range j.byProject {
		slices.Sort(j.byProject[p])
		j.prune(p, resuming)
	}
	return j, nil
}

func (j *journal) statePath(id string) string { return filepath.Join(j.dir, id+".json") }
func (j *journal) logPath(id string) string   { return filepath.Join(j.dir, id+".log") }

// envBackupPath is where a deployment keeps the previous .env until it ends.
func (j *journal) envBackupPath(id string) string { return filepath.Join(j.dir, id+".env") }

// reconcile ends a deployment the previous agent process left running.
func (j *journal) reconcile(rec *journalRecord, now time.Time) error {
	last, err := repairLog(j.logPath(rec.State.ID))
	if err != nil {
		return fmt.Errorf("deploy journal %s: %w", rec.State.ID, err)
	}
	line := wire.LogLine{Seq: last + 1, At: now, Text: "==> " + restartedMessage}
	if err := appendLogLine(j.logPath(rec.State.ID), line); err != nil {
		return fmt.Errorf("deploy journal %s: %w", rec.State.ID, err)
	}
	rec.State.LastSeq = line.Seq
	rec.State.Status = wire.DeployFailed
	rec.State.Error = restartedMessage
	if rec.UpStarted {
		// It died while the containers changed: what runs now may be
		// neither release.
		rec.State.RestoreFailed = true
		rec.State.Error += "; " + restoreFailedMessage
	}
	t := now
	rec.State.FinishedAt = &t
	if err := j.write(rec); err != nil {
		return err
	}
	os.Remove(j.envBackupPath(rec.State.ID))
	return nil
}

// read loads a record.
func (j *journal) read(id string) (journalRecord, error) {
	var rec journalRecord
	b, err := os.ReadFile(j.statePath(id))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, err
	}
	if rec.State.ID != id {
		return rec, fmt.Errorf("deploy journal %s names deployment %q", id, rec.State.ID)
	}
	return rec, nil
}

// exists says whether the journal knows id.
func (j *journal) exists(id string) bool {
	_, err := os.Stat(j.statePath(id))
	return err == nil
}

// write replaces a record atomically and durably.
func (j *journal) write(rec *journalRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return writeFileAtomic(j.statePath(rec.State.ID), b, 0o600)
}

// add notes a new deployment of project, after its record was written.
func (j *journal) add(project, id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	ids := j.byProject[project]
	if !slices.Contains(ids, id) {
		ids = append(ids, id)
		slices.Sort(ids)
		j.byProject[project] = ids
	}
}

// newest returns the newest record of project.
func (j *journal) newest(project string) (journalRecord, bool) {
	j.mu.Lock()
	ids := slices.Clone(j.byProject[project])
	j.mu.Unlock()
	for i := len(ids) - 1; i >= 0; i-- {
		if rec, err := j.read(ids[i]); err == nil {
			return rec, true
		}
	}
	return journalRecord{}, false
}

// prune drops the oldest journals of project beyond journalKeep, except
// those keep says are in use.
func (j *journal) prune(project string, keep func(id string) bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	ids := j.byProject[project]
	excess := len(ids) - journalKeep
	if excess <= 0 {
		return
	}
	var kept []string
	for _, id := range ids {
		if excess > 0 && (keep == nil || !keep(id)) {
			j.remove(id)
			excess--
			continue
		}
		kept = append(kept, id)
	}
	j.byProject[project] = kept
}

func (j *journal) remove(id string) {
	os.Remove(j.statePath(id))
	os.Remove(j.logPath(id))
	os.Remove(j.envBackupPath(id))
}

// readLines returns the lines of id's log with seq > after, at most max,
// reading from offset (the start of line after+1, or 0 to scan from the
// beginning) up to end bytes (or to the end of the file when end < 0).
func readLines(path string, after int, offset, end int64, max int) ([]wire.LogLine, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return nil, err
		}
	}
	if end >= 0 {
		r = io.LimitReader(f, end-offset)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var lines []wire.LogLine
	for sc.Scan() && len(lines) < max {
		var l wire.LogLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Seq <= after {
			continue
		}
		lines = append(lines, l)
	}
	return lines, sc.Err()
}

// repairLog cuts a torn last line (a crash in the middle of a write) and
// returns the seq of the last whole line.
func repairLog(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if i := bytes.LastIndexByte(b, '\n'); i+1 != len(b) {
		if err := os.Truncate(path, int64(i+1)); err != nil {
			return 0, err
		}
		b = b[:i+1]
	}
	last := 0
	for line := range bytes.Lines(b) {
		var l wire.LogLine
		if json.Unmarshal(line, &l) == nil && l.Seq > last {
			last = l.Seq
		}
	}
	return last, nil
}

// indexLog returns where each line of a (repaired) log starts, by seq
// (offsets[i] is where the line with seq i+1 starts, or a place before it),
// the size of the log and the seq of its last line.
func indexLog(path string) (offsets []int64, size int64, last int, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, 0, nil
	}
	if err != nil {
		return nil, 0, 0, err
	}
	var at int64
	for line := range bytes.Lines(b) {
		var l wire.LogLine
		if json.Unmarshal(line, &l) == nil && l.Seq > last {
			for len(offsets) < l.Seq {
				offsets = append(offsets, at)
			}
			last = l.Seq
		}
		at += int64(len(line))
	}
	return offsets, at, last, nil
}

func appendLogLine(path string, l wire.LogLine) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(l)
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileAtomic writes b to a temporary file next to path, syncs it and
// renames it over path, then syncs the directory.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// cutLine shortens a log line to wire.MaxLineBytes, on a rune boundary.
func cutLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= wire.MaxLineBytes {
		return s
	}
	const mark = " …"
	n := wire.MaxLineBytes - len(mark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}

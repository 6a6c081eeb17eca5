package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"upanel/internal/wire"
)

// testULID makes distinct, ordered ULID-shaped ids.
func testULID(n int) string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	b := []byte("01J0000000000000000000000")
	for i := len(b) - 1; n > 0 && i >= 0; i-- {
		b[i] = alphabet[n%32]
		n /= 32
	}
	return "0" + string(b)
}

func writeRecord(t *testing.T, j *journal, rec journalRecord, lines ...string) {
	t.Helper()
	for i, l := range lines {
		if err := appendLogLine(j.logPath(rec.State.ID), wire.LogLine{Seq: i + 1, At: time.Now().UTC(), Text: l}); err != nil {
			t.Fatal(err)
		}
	}
	rec.State.LastSeq = len(lines)
	if err := j.write(&rec); err != nil {
		t.Fatal(err)
	}
	j.add(rec.Project, rec.State.ID)
}

// A deployment the previous agent process left running ends failed, with a
// log line that says why; a torn last log line is cut; finished ones stay as
// they are.
func TestJournalReconcilesRunningDeployments(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deploys")
	j, err := openJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	running, done, upStarted := testULID(1), testULID(2), testULID(3)
	writeRecord(t, j, journalRecord{State: wire.DeployState{ID: running, Status: wire.DeployRunning, StartedAt: time.Now()}, Project: "upanel-a-production"},
		"one", "two")
	// One that had begun changing the containers: the previous release may
	// not run any more.
	writeRecord(t, j, journalRecord{State: wire.DeployState{ID: upStarted, Status: wire.DeployRunning, StartedAt: time.Now()}, Project: "upanel-b-production",
		UpStarted: true}, "up")
	writeRecord(t, j, journalRecord{State: wire.DeployState{ID: done, Status: wire.DeploySuccess, StartedAt: time.Now()}, Project: "upanel-a-production"},
		"ok")
	// A crash in the middle of a line.
	f, err := os.OpenFile(j.logPath(running), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":3,"at":"2026-01-01T00:00:00Z","te`)
	f.Close()

	j2, err := openJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := j2.read(running)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State.Status != wire.DeployFailed || rec.State.Error != restartedMessage || rec.State.FinishedAt == nil || rec.State.LastSeq != 3 {
		t.Fatalf("reconciled state = %+v", rec.State)
	}
	lines, err := readLines(j2.logPath(running), 0, 0, -1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || lines[0].Text != "one" || lines[2].Seq != 3 || !strings.Contains(lines[2].Text, restartedMessage) {
		t.Fatalf("lines = %+v", lines)
	}
	if rec.State.RestoreFailed {
		t.Fatal("a deployment that never touched the containers is marked not restored")
	}
	if rec, _ := j2.read(upStarted); rec.State.Status != wire.DeployFailed || !rec.State.RestoreFailed || !strings.Contains(rec.State.Error, restoreFailedMessage) {
		t.Fatalf("reconciled after up started: %+v", rec.State)
	}
	if rec, _ := j2.read(done); rec.State.Status != wire.DeploySuccess {
		t.Fatalf("a finished deployment changed: %+v", rec.State)
	}
	for _, name := range []string{running + ".json", running + ".log"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, fi.Mode(), err)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("journal dir mode %v", fi.Mode())
	}
}

// The journal keeps the newest journalKeep deployments of each project, and
// never drops one in use.
func TestJournalPrunes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deploys")
	j, err := openJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= journalKeep+5; i++ {
		writeRecord(t, j, journalRecord{State: wire.DeployState{ID: testULID(i), Status: wire.DeploySuccess}, Project: "upanel-a-production"}, "x")
	}
	writeRecord(t, j, journalRecord{State: wire.DeployState{ID: testULID(1000), Status: wire.DeploySuccess}, Project: "upanel-b-staging"}, "x")
	j.prune("upanel-a-production", func(id string) bool { return id == testULID(2) })
	for i, want := range map[int]bool{1: false, 2: true, 3: false, 6: false, 7: true, journalKeep + 5: true} {
		if j.exists(testULID(i)) != want {
			t.Errorf("deployment %d kept = %v, want %v", i, !want, want)
		}
		if _, err := os.Stat(j.logPath(testULID(i))); (err == nil) != want {
			t.Errorf("log of deployment %d: %v", i, err)
		}
	}
	if !j.exists(testULID(1000)) {
		t.Error("another project's journal was dropped")
	}
	if n := len(j.byProject["upanel-a-production"]); n != journalKeep {
		t.Fatalf("%d journals left, want %d", n, journalKeep)
	}
	// Opening the directory prunes too.
	for i := 200; i < 210; i++ {
		writeRecord(t, j, journalRecord{State: wire.DeployState{ID: testULID(i), Status: wire.DeploySuccess}, Project: "upanel-a-production"}, "x")
	}
	j2, err := openJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(j2.byProject["upanel-a-production"]); n != journalKeep {
		t.Fatalf("%d journals after reopening, want %d", n, journalKeep)
	}
	if rec, ok := j2.newest("upanel-a-production"); !ok || rec.State.ID != testULID(209) {
		t.Fatalf("newest = %+v %v", rec.State, ok)
	}
}

// A long poll returns as soon as a line comes, and a poll of a deployment
// that ended is served from disk.
func TestPollWakesOnNewLines(t *testing.T) {
	d := newTestDeployer(t)
	id := testULID(7)
	dep := &deployment{mask: newMasker([]string{"hunter22"}), done: make(chan struct{}), changed: make(chan struct{}),
		rec: journalRecord{State: wire.DeployState{ID: id, Status: wire.DeployRunning}, Project: "upanel-x-production"}, path: d.journal.logPath(id)}
	f, err := os.OpenFile(dep.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	dep.logf = f
	defer f.Close()
	dep.addLine("first")
	d.mu.Lock()
	d.active[id] = dep
	d.mu.Unlock()

	got := make(chan wire.DeployLog, 1)
	go func() {
		out, _, err := d.poll(context.Background(), id, 1, time.Hour)
		if err != nil {
			t.Error(err)
		}
		got <- out
	}()
	dep.addLine("password is hunter22\x1b[31m red\x1b[0m")
	out := <-got
	if len(out.Lines) != 1 || out.Lines[0].Seq != 2 || out.Lines[0].Text != "password is "+maskText+" red" {
		t.Fatalf("poll = %+v", out)
	}
	// A long line is cut to MaxLineBytes.
	dep.addLine(strings.Repeat("é", wire.MaxLineBytes))
	out, _, _ = d.poll(context.Background(), id, 2, 0)
	if len(out.Lines) != 1 || len(out.Lines[0].Text) > wire.MaxLineBytes {
		t.Fatalf("long line: %d bytes", len(out.Lines[0].Text))
	}
	// Lines after 0, from the index.
	out, _, _ = d.poll(context.Background(), id, 0, 0)
	if len(out.Lines) != 3 || out.Lines[0].Text != "first" {
		t.Fatalf("all lines: %+v", out.Lines)
	}
	// Ended: the state and lines come from disk.
	dep.update(d.journal, func(s *wire.DeployState) { s.Status = wire.DeploySuccess })
	d.mu.Lock()
	delete(d.active, id)
	d.mu.Unlock()
	out, ok, err := d.poll(context.Background(), id, 1, time.Hour)
	if !ok || err != nil || out.State.Status != wire.DeploySuccess || len(out.Lines) != 2 || out.State.LastSeq != 3 {
		t.Fatalf("from disk: %+v %v %v", out, ok, err)
	}
	if _, ok, _ := d.poll(context.Background(), testULID(8), 0, 0); ok {
		t.Fatal("an unknown deployment was found")
	}
}

// The log of a deployment is bounded in lines.
func TestJournalLogLimit(t *testing.T) {
	d := newTestDeployer(t)
	id := testULID(9)
	dep := &deployment{mask: newMasker(nil), changed: make(chan struct{}), path: d.journal.logPath(id),
		rec: journalRecord{State: wire.DeployState{ID: id, Status: wire.DeployRunning}}}
	f, err := os.OpenFile(dep.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	dep.logf = f
	defer f.Close()
	for i := range maxJournalLines + 50 {
		dep.addLine(fmt.Sprint("line ", i))
	}
	if dep.rec.State.LastSeq != maxJournalLines {
		t.Fatalf("last seq %d", dep.rec.State.LastSeq)
	}
	lines, _ := readLines(dep.path, maxJournalLines-1, 0, -1, 10)
	if len(lines) != 1 || !strings.Contains(lines[0].Text, "over its limit") {
		t.Fatalf("last line %+v", lines)
	}
	if tail := dep.stepTail(1); len(tail) != 1 || tail[0] != fmt.Sprint("line ", maxJournalLines+49) {
		t.Fatalf("the error tail stops with the log: %q", tail)
	}
	var l wire.LogLine
	b, _ := os.ReadFile(dep.path)
	if err := json.Unmarshal(b[:strings.IndexByte(string(b), '\n')], &l); err != nil || l.Seq != 1 {
		t.Fatalf("first line %+v %v", l, err)
	}
}

package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"upanel/internal/apperr"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// auditUser inserts a user so that user_id foreign keys have a target.
func auditUser(t *testing.T, db *store.DB) string {
	t.Helper()
	id := store.NewID()
	storetest.Exec(t, db, "INSERT INTO users (id, email, password) VALUES (?, ?, 'x')", id, "u-"+strings.ToLower(id)+"@example.test")
	return id
}

func TestSecurityEventValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for _, tc := range []struct {
			name string
			e    store.SecurityEvent
			ok   bool
		}{
			{"minimal", store.SecurityEvent{EventType: "login_failed"}, true},
			{"dotted type", store.SecurityEvent{EventType: "ssh.host_key_changed", Severity: "critical"}, true},
			{"50 characters", store.SecurityEvent{EventType: strings.Repeat("a", 50)}, true},
			{"empty type", store.SecurityEvent{}, false},
			{"51 characters", store.SecurityEvent{EventType: strings.Repeat("a", 51)}, false},
			{"upper case", store.SecurityEvent{EventType: "Login_failed"}, false},
			{"space", store.SecurityEvent{EventType: "login failed"}, false},
			{"bad severity", store.SecurityEvent{EventType: "x", Severity: "fatal"}, false},
			{"id given", store.SecurityEvent{ID: store.NewID(), EventType: "x"}, false},
			{"time given", store.SecurityEvent{EventType: "x", CreatedAt: time.Now()}, false},
			{"bad user id", store.SecurityEvent{EventType: "x", UserID: "alice"}, false},
			{"unmarshalable details", store.SecurityEvent{EventType: "x", Details: map[string]any{"c": make(chan int)}}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id, err := db.InsertSecurityEvent(ctx, tc.e)
				if tc.ok && (err != nil || id == "") {
					t.Fatalf("got %q, %v; want an id", id, err)
				}
				if !tc.ok && err == nil {
					t.Fatalf("got %q, want an error", id)
				}
			})
		}
		// Validation errors are the user-facing kind.
		if _, err := db.InsertSecurityEvent(ctx, store.SecurityEvent{EventType: "NO"}); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("bad type: %v, want an Invalid error", err)
		}
	})
}

func TestSecurityEventsFilterAndPage(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			clock := storetest.NewClock(start)
			db := storetest.NewWithClock(t, d, clock).DB
			alice, bob := auditUser(t, db), auditUser(t, db)

			// Ten events, one minute apart: i even is alice's, i%3 == 0 a warning.
			var ids []string
			for i := range 10 {
				e := store.SecurityEvent{EventType: "login_failed", UserID: alice, IPAddress: "192.0.2.1",
					Details: map[string]any{"i": float64(i), "email": "a@example.test"}}
				if i%2 == 1 {
					e.EventType, e.UserID = "login_success", bob
				}
				if i%3 == 0 {
					e.Severity = store.SeverityWarning
				}
				id, err := db.InsertSecurityEvent(ctx, e)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
				clock.Add(time.Minute)
			}
			at := func(i int) time.Time { return start.Add(time.Duration(i) * time.Minute) }
			// want lists indexes into ids, newest first.
			for _, tc := range []struct {
				name string
				f    store.SecurityEventFilter
				want []int
			}{
				{"all", store.SecurityEventFilter{}, []int{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
				{"type", store.SecurityEventFilter{EventType: "login_success"}, []int{9, 7, 5, 3, 1}},
				{"severity", store.SecurityEventFilter{Severity: "warning"}, []int{9, 6, 3, 0}},
				{"user", store.SecurityEventFilter{UserID: alice}, []int{8, 6, 4, 2, 0}},
				{"since is inclusive", store.SecurityEventFilter{Since: at(7)}, []int{9, 8, 7}},
				{"until is exclusive", store.SecurityEventFilter{Until: at(2)}, []int{1, 0}},
				{"window", store.SecurityEventFilter{Since: at(3), Until: at(6)}, []int{5, 4, 3}},
				{"type and severity", store.SecurityEventFilter{EventType: "login_failed", Severity: "warning"}, []int{6, 0}},
				{"limit", store.SecurityEventFilter{Limit: 3}, []int{9, 8, 7}},
				{"cursor", store.SecurityEventFilter{Before: ids[7], Limit: 3}, []int{6, 5, 4}},
				{"cursor and type", store.SecurityEventFilter{Before: ids[7], EventType: "login_success"}, []int{5, 3, 1}},
				{"cursor at the start", store.SecurityEventFilter{Before: ids[0]}, nil},
				{"no match", store.SecurityEventFilter{EventType: "lockout"}, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					got, err := db.ListSecurityEvents(ctx, tc.f)
					if err != nil {
						t.Fatal(err)
					}
					var gotIdx []int
					for _, e := range got {
						gotIdx = append(gotIdx, indexOf(ids, e.ID))
					}
					if fmt.Sprint(gotIdx) != fmt.Sprint(tc.want) {
						t.Fatalf("got events %v, want %v", gotIdx, tc.want)
					}
				})
			}

			// Paging with the cursor visits every event once, newest first.
			var paged []string
			for cursor := ""; ; {
				page, err := db.ListSecurityEvents(ctx, store.SecurityEventFilter{Before: cursor, Limit: 4})
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				for _, e := range page {
					paged = append(paged, e.ID)
				}
				cursor = page[len(page)-1].ID
			}
			if len(paged) != 10 || paged[0] != ids[9] || paged[9] != ids[0] {
				t.Fatalf("paged %v", paged)
			}

			// One event read back whole.
			got, err := db.ListSecurityEvents(ctx, store.SecurityEventFilter{Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			e := got[0]
			if e.EventType != "login_success" || e.UserID != bob || e.Severity != "warning" || e.IPAddress != "192.0.2.1" ||
				!e.CreatedAt.Equal(at(9)) || e.Details["i"] != float64(9) || e.Details["email"] != "a@example.test" {
				t.Fatalf("read back %+v", e)
			}

			for _, f := range []store.SecurityEventFilter{{Severity: "loud"}, {EventType: "Bad Type"}, {Before: "not-a-ulid"}} {
				if _, err := db.ListSecurityEvents(ctx, f); !apperr.Is(err, apperr.Invalid) {
					t.Errorf("filter %+v: %v, want an Invalid error", f, err)
				}
			}
		})
	}
}

func indexOf(ids []string, id string) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return -1
}

// Request headers are client-controlled: whatever they hold, the event is
// stored, bounded, and in valid UTF-8.
func TestSecurityEventCleansClientText(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for _, tc := range []struct {
			name          string
			ip, agent     string
			wantIP        string
			wantAgentRune int
		}{
			{"long agent", "192.0.2.1", strings.Repeat("é", 1500), "192.0.2.1", 1000},
			{"long ip", strings.Repeat("f", 60), "curl/8", strings.Repeat("f", 45), 6},
			{"invalid utf-8 and NUL", "192.0.2.1\x00", "bad\xff\xfe\x00agent", "192.0.2.1", len([]rune("bad\uFFFDagent"))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id, err := db.InsertSecurityEvent(ctx, store.SecurityEvent{EventType: "login_failed", IPAddress: tc.ip, UserAgent: tc.agent})
				if err != nil {
					t.Fatal(err)
				}
				var ip, agent string
				if err := db.QueryRowRaw(ctx, "SELECT ip_address, user_agent FROM security_events WHERE id = ?", id).Scan(&ip, &agent); err != nil {
					t.Fatal(err)
				}
				if ip != tc.wantIP || utf8.RuneCountInString(agent) != tc.wantAgentRune || !utf8.ValidString(agent) || strings.ContainsRune(agent, 0) {
					t.Fatalf("stored ip %q, agent %q (%d runes)", ip, agent, utf8.RuneCountInString(agent))
				}
			})
		}
	})
}

// appendActivity adds one activity row in a transaction of its own.
func appendActivity(t *testing.T, db *store.DB, a store.Activity) string {
	t.Helper()
	var id string
	err := db.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		id, err = tx.InsertActivity(context.Background(), a)
		return err
	})
	if err != nil {
		t.Fatalf("insert activity: %v", err)
	}
	return id
}

func verify(t *testing.T, db *store.DB) store.ChainReport {
	t.Helper()
	rep, err := db.VerifyActivityChain(context.Background())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

func TestActivityValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		subject := store.NewID()
		for _, tc := range []struct {
			name string
			a    store.Activity
			ok   bool
		}{
			{"minimal", store.Activity{Action: "created", SubjectType: "app", SubjectID: subject}, true},
			{"empty action", store.Activity{SubjectType: "app", SubjectID: subject}, false},
			{"bad action", store.Activity{Action: "Created!", SubjectType: "app", SubjectID: subject}, false},
			{"bad subject type", store.Activity{Action: "created", SubjectType: "App; DROP", SubjectID: subject}, false},
			{"seed-style subject type", store.Activity{Action: "created", SubjectType: "Server", SubjectID: subject}, true},
			{"subject id not a ulid", store.Activity{Action: "created", SubjectType: "app", SubjectID: "42"}, false},
			{"user id not a ulid", store.Activity{Action: "created", SubjectType: "app", SubjectID: subject, UserID: "bob"}, false},
			{"id given", store.Activity{ID: store.NewID(), Action: "created", SubjectType: "app", SubjectID: subject}, false},
			{"hash given", store.Activity{Hash: strings.Repeat("a", 64), Action: "created", SubjectType: "app", SubjectID: subject}, false},
			{"unmarshalable change", store.Activity{Action: "updated", SubjectType: "app", SubjectID: subject,
				Changes: map[string]store.Change{"x": {Old: 1, New: func() {}}}}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var id string
				err := db.InTx(ctx, func(tx *store.Tx) error {
					var err error
					id, err = tx.InsertActivity(ctx, tc.a)
					return err
				})
				if tc.ok && err != nil {
					t.Fatal(err)
				}
				if !tc.ok && err == nil {
					t.Fatalf("got %q, want an error", id)
				}
			})
		}
		if rep := verify(t, db); !rep.Intact() || rep.Rows != 2 {
			t.Fatalf("after two valid rows: %+v", rep)
		}
	})
}

func TestActivityInsertAndList(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		alice := auditUser(t, db)
		app, server := store.NewID(), store.NewID()
		rows := []store.Activity{
			{UserID: alice, Action: "created", SubjectType: "app", SubjectID: app, Description: "created app shop", IPAddress: "192.0.2.7"},
			{UserID: alice, Action: "updated", SubjectType: "app", SubjectID: app,
				Changes: map[string]store.Change{"branch": {Old: "main", New: "prod"}, "port": {Old: float64(80), New: float64(8080)}}},
			{Action: "created", SubjectType: "server", SubjectID: server, Description: "bad\xffbyte\x00"},
			{UserID: alice, Action: "deleted", SubjectType: "app", SubjectID: app},
		}
		var ids []string
		for _, a := range rows {
			ids = append(ids, appendActivity(t, db, a))
		}
		for _, tc := range []struct {
			name string
			f    store.ActivityFilter
			want []int
		}{
			{"all", store.ActivityFilter{}, []int{3, 2, 1, 0}},
			{"user", store.ActivityFilter{UserID: alice}, []int{3, 1, 0}},
			{"subject", store.ActivityFilter{SubjectType: "app", SubjectID: app}, []int{3, 1, 0}},
			{"subject type", store.ActivityFilter{SubjectType: "server"}, []int{2}},
			{"action", store.ActivityFilter{Action: "created"}, []int{2, 0}},
			{"cursor", store.ActivityFilter{Before: ids[2]}, []int{1, 0}},
			{"limit", store.ActivityFilter{Limit: 2}, []int{3, 2}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := db.ListActivity(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				var gotIdx []int
				for _, a := range got {
					gotIdx = append(gotIdx, indexOf(ids, a.ID))
				}
				if fmt.Sprint(gotIdx) != fmt.Sprint(tc.want) {
					t.Fatalf("got rows %v, want %v", gotIdx, tc.want)
				}
			})
		}
		all, err := db.ListActivity(ctx, store.ActivityFilter{})
		if err != nil {
			t.Fatal(err)
		}
		// Newest first, and each row links to the next one down.
		for i, a := range all {
			want := store.GenesisHash
			if i+1 < len(all) {
				want = all[i+1].Hash
			}
			if a.PrevHash != want || len(a.Hash) != 64 {
				t.Fatalf("row %d: prev %s hash %s, want prev %s", i, a.PrevHash, a.Hash, want)
			}
		}
		upd := all[2]
		if upd.Changes["branch"].Old != "main" || upd.Changes["branch"].New != "prod" || upd.Changes["port"].New != float64(8080) || upd.UserID != alice {
			t.Fatalf("update read back as %+v", upd)
		}
		if c := all[3]; c.Description != "created app shop" || c.IPAddress != "192.0.2.7" || c.CreatedAt.IsZero() || c.Changes != nil {
			t.Fatalf("create read back as %+v", c)
		}
		if d := all[1].Description; d != "bad\uFFFDbyte" {
			t.Fatalf("description stored as %q", d)
		}
		if _, err := db.ListActivity(ctx, store.ActivityFilter{Before: "x"}); !apperr.Is(err, apperr.Invalid) {
			t.Fatalf("bad cursor: %v", err)
		}
		if rep := verify(t, db); !rep.Intact() || rep.Rows != 4 {
			t.Fatalf("verify: %+v", rep)
		}
	})
}

// A secret field's change is stored as {"changed": true}: checked on the JSON
// text in the database and on every byte the database keeps.
func TestSecretChangeNeverStoresAValue(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			env := storetest.New(t, d)
			const oldCanary, newCanary = "old-canary-4b1d9c", "new-canary-77e0aa"
			id := appendActivity(t, env.DB, store.Activity{Action: "updated", SubjectType: "server", SubjectID: store.NewID(),
				Changes: map[string]store.Change{
					"ssh_private_key": {Old: oldCanary, New: newCanary, Secret: true},
					"name":            {Old: "web-1", New: "web-2"},
				}})
			var stored string
			if err := env.DB.QueryRowRaw(ctx, "SELECT changes FROM activity_log WHERE id = ?", id).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if want := `{"name":{"old":"web-1","new":"web-2"},"ssh_private_key":{"changed":true}}`; stored != want {
				t.Fatalf("stored changes %s, want %s", stored, want)
			}
			storetest.AssertNotStored(t, env.DB, env.URL, oldCanary)
			storetest.AssertNotStored(t, env.DB, env.URL, newCanary)
			got, err := env.DB.ListActivity(ctx, store.ActivityFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if c := got[0].Changes["ssh_private_key"]; !c.Secret || c.Old != nil || c.New != nil {
				t.Fatalf("secret change read back as %+v", c)
			}
		})
	}
}

// The rule holds wherever a Change is marshalled, not only in the store.
func TestChangeJSON(t *testing.T) {
	for _, tc := range []struct {
		c    store.Change
		want string
	}{
		{store.Change{Old: "a", New: "b"}, `{"old":"a","new":"b"}`},
		{store.Change{Old: nil, New: 3}, `{"old":null,"new":3}`},
		{store.Change{Old: "hunter2", New: "hunter3", Secret: true}, `{"changed":true}`},
		{store.Change{Secret: true}, `{"changed":true}`},
	} {
		b, err := json.Marshal(tc.c)
		if err != nil || string(b) != tc.want {
			t.Errorf("%+v marshals to %s, %v; want %s", tc.c, b, err, tc.want)
		}
		var back store.Change
		if err := json.Unmarshal(b, &back); err != nil || back.Secret != tc.c.Secret {
			t.Errorf("%s unmarshals to %+v, %v", b, back, err)
		}
	}
}

// Enough rows for several verification batches, some appended several to a
// transaction.
func TestActivityChainVerifiesAfterManyAppends(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const txs, perTx = 130, 9 // 1170 rows: more than two batches
		for i := range txs {
			err := db.InTx(ctx, func(tx *store.Tx) error {
				for j := range perTx {
					_, err := tx.InsertActivity(ctx, store.Activity{Action: "updated", SubjectType: "app", SubjectID: store.NewID(),
						Description: fmt.Sprintf("row %d.%d", i, j),
						Changes:     map[string]store.Change{"n": {Old: float64(j), New: float64(j + 1)}}})
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if rep := verify(t, db); !rep.Intact() || rep.Rows != txs*perTx {
			t.Fatalf("verify: %+v, want %d intact rows", rep, txs*perTx)
		}
	})
}

// Ids follow the chain even when the clock goes back (a second panel process
// whose clock is behind): the head stays the greatest id.
func TestActivityChainSurvivesAClockGoingBack(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			clock := storetest.NewClock(time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC))
			db := storetest.NewWithClock(t, d, clock).DB
			var ids []string
			for _, step := range []time.Duration{0, -time.Hour, 0, 0, 2 * time.Hour, -3 * time.Hour} {
				clock.Add(step)
				ids = append(ids, appendActivity(t, db, store.Activity{Action: "updated", SubjectType: "app", SubjectID: store.NewID()}))
			}
			for i := 1; i < len(ids); i++ {
				if ids[i] <= ids[i-1] {
					t.Fatalf("id %d (%s) is not after id %d (%s)", i, ids[i], i-1, ids[i-1])
				}
			}
			got, err := db.ListActivity(ctx, store.ActivityFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(ids) || got[0].ID != ids[len(ids)-1] || !got[0].CreatedAt.Equal(clock.Now()) {
				t.Fatalf("newest row %+v", got[0])
			}
			if rep := verify(t, db); !rep.Intact() || rep.Rows != int64(len(ids)) {
				t.Fatalf("verify: %+v", rep)
			}
		})
	}
}

// Several goroutines on two handles (two panel processes) append at once. The
// append lock must order them: every append succeeds (the unique prev_hash
// index would refuse a fork rather than let it through), and the chain is one
// line.
func TestConcurrentActivityAppendsNeverFork(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			env := storetest.New(t, d)
			handles := []*store.DB{env.DB, env.Reopen(t, store.Options{})}
			const workers, each = 8, 25
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					db := handles[w%len(handles)]
					for i := range each {
						err := db.InTx(ctx, func(tx *store.Tx) error {
							_, err := tx.InsertActivity(ctx, store.Activity{Action: "updated", SubjectType: "app", SubjectID: store.NewID(),
								Description: fmt.Sprintf("worker %d row %d", w, i)})
							return err
						})
						if err != nil {
							errs <- err
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("append: %v", err)
			}
			rep := verify(t, env.DB)
			if !rep.Intact() || rep.Rows != workers*each {
				t.Fatalf("verify: %+v, want %d intact rows", rep, workers*each)
			}
			var rows, hashes, prevs int
			if err := env.DB.QueryRowRaw(ctx, "SELECT COUNT(*), COUNT(DISTINCT hash), COUNT(DISTINCT prev_hash) FROM activity_log").Scan(&rows, &hashes, &prevs); err != nil {
				t.Fatal(err)
			}
			if rows != workers*each || hashes != rows || prevs != rows {
				t.Fatalf("%d rows, %d distinct hashes, %d distinct prev_hashes: the chain forked", rows, hashes, prevs)
			}
		})
	}
}

// The database itself refuses a second row claiming the same predecessor, so
// a fork cannot be committed even by code that skips the append lock.
func TestActivityPrevHashIsUnique(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		id := appendActivity(t, db, store.Activity{Action: "created", SubjectType: "app", SubjectID: store.NewID()})
		err := db.ExecRaw(context.Background(), `INSERT INTO activity_log (id, action, subject_type, subject_id, created_at, prev_hash, hash)
			VALUES (?, 'created', 'app', ?, ?, ?, ?)`, store.NewID(), store.NewID(), db.Now(), store.GenesisHash, strings.Repeat("b", 64))
		if err == nil {
			t.Fatalf("a second row after the genesis (beside %s) was accepted", id)
		}
	})
}

func TestVerifyFindsTheFirstBrokenLink(t *testing.T) {
	const n = 6
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, db *store.DB, ids []string)
		at     int // index of the row reported
		kind   store.ChainBreakKind
		rows   int64 // rows intact before it
	}{
		{"description edited", func(t *testing.T, db *store.DB, ids []string) {
			storetest.Exec(t, db, "UPDATE activity_log SET description = 'nothing to see' WHERE id = ?", ids[2])
		}, 2, store.ChainHashMismatch, 2},
		{"description set to NULL", func(t *testing.T, db *store.DB, ids []string) {
			storetest.Exec(t, db, "UPDATE activity_log SET description = NULL WHERE id = ?", ids[3])
		}, 3, store.ChainHashMismatch, 3},
		{"changes edited", func(t *testing.T, db *store.DB, ids []string) {
			storetest.Exec(t, db, `UPDATE activity_log SET changes = '{"role":{"old":"viewer","new":"viewer"}}' WHERE id = ?`, ids[1])
		}, 1, store.ChainHashMismatch, 1},
		{"changes reformatted", func(t *testing.T, db *store.DB, ids []string) {
			// The same JSON value with other bytes: the stored text is what is hashed.
			storetest.Exec(t, db, `UPDATE activity_log SET changes = '{"role": {"old":"viewer","new":"admin"}}' WHERE id = ?`, ids[4])
		}, 4, store.ChainHashMismatch, 4},
		{"user removed", func(t *testing.T, db *store.DB, ids []string) {
			storetest.Exec(t, db, "UPDATE activity_log SET user_id = NULL WHERE id = ?", ids[5])
		}, 5, store.ChainHashMismatch, 5},
		{"backdated", func(t *testing.T, db *store.DB, ids []string) {
			storetest.Exec(t, db, "UPDATE activity_log SET created_at = ? WHERE id = ?", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), ids[2])
		}, 2, store.ChainHashMismatch, 2},
		{"middle row deleted", func(t *testing.T, db *store.DB, ids []string) {
			storetest.Exec(t, db, "DELETE FROM activity_log WHERE id = ?", ids[3])
		}, 4, store.ChainPrevHashMismatch, 3},
		{"first row deleted", func(t *testing.T, db *store.DB, ids []string) {
			storetest.Exec(t, db, "DELETE FROM activity_log WHERE id = ?", ids[0])
		}, 1, store.ChainPrevHashMismatch, 0},
		{"two rows swapped", func(t *testing.T, db *store.DB, ids []string) {
			// Move rows 2 and 3 to each other's place in the order, links and all.
			storetest.Exec(t, db, "UPDATE activity_log SET id = ? WHERE id = ?", "TMP"+ids[2][3:], ids[2])
			storetest.Exec(t, db, "UPDATE activity_log SET id = ? WHERE id = ?", ids[2], ids[3])
			storetest.Exec(t, db, "UPDATE activity_log SET id = ? WHERE id = ?", ids[3], "TMP"+ids[2][3:])
		}, 2, store.ChainHashMismatch, 2},
		{"hash removed", func(t *testing.T, db *store.DB, ids []string) {
			storetest.Exec(t, db, "UPDATE activity_log SET hash = NULL WHERE id = ?", ids[2])
		}, 2, store.ChainMissingHash, 2},
		{"two edits: the first is reported", func(t *testing.T, db *store.DB, ids []string) {
			storetest.Exec(t, db, "UPDATE activity_log SET description = 'x' WHERE id = ?", ids[4])
			storetest.Exec(t, db, "UPDATE activity_log SET description = 'x' WHERE id = ?", ids[1])
		}, 1, store.ChainHashMismatch, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, db *store.DB) {
				user := auditUser(t, db)
				var ids []string
				for i := range n {
					ids = append(ids, appendActivity(t, db, store.Activity{UserID: user, Action: "updated", SubjectType: "user", SubjectID: user,
						Description: fmt.Sprintf("change %d", i),
						Changes:     map[string]store.Change{"role": {Old: "viewer", New: "admin"}}}))
				}
				if rep := verify(t, db); !rep.Intact() || rep.Rows != n {
					t.Fatalf("before tampering: %+v", rep)
				}
				tc.tamper(t, db, ids)
				rep := verify(t, db)
				if rep.Intact() {
					t.Fatalf("tampering not detected: %+v", rep)
				}
				if rep.Break.ID != ids[tc.at] || rep.Break.Kind != tc.kind || rep.Break.Reason == "" {
					t.Fatalf("break %+v (row %d), want row %d (%s) with %s", *rep.Break, indexOf(ids, rep.Break.ID), tc.at, ids[tc.at], tc.kind)
				}
				if rep.Rows != tc.rows {
					t.Fatalf("%d rows reported intact, want %d", rep.Rows, tc.rows)
				}
			})
		})
	}
}

// An append never chains on a head that has no hash: that would dress the
// damage up as a valid link.
func TestAppendRefusesAHeadWithoutHash(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		id := appendActivity(t, db, store.Activity{Action: "created", SubjectType: "app", SubjectID: store.NewID()})
		storetest.Exec(t, db, "UPDATE activity_log SET hash = NULL WHERE id = ?", id)
		err := db.InTx(context.Background(), func(tx *store.Tx) error {
			_, err := tx.InsertActivity(context.Background(), store.Activity{Action: "created", SubjectType: "app", SubjectID: store.NewID()})
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "no hash") {
			t.Fatalf("append after a hashless head: %v", err)
		}
	})
}

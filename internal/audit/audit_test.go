package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"upanel/internal/audit"
	"upanel/internal/logging"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new map[string]any
		secret   []string
		want     string // the diff as the store would write it
	}{
		{"nothing changed", map[string]any{"a": 1, "b": "x"}, map[string]any{"a": 1, "b": "x"}, nil, "null"},
		{"both empty", nil, nil, nil, "null"},
		{"one field", map[string]any{"a": 1, "b": "x"}, map[string]any{"a": 1, "b": "y"}, nil,
			`{"b":{"old":"x","new":"y"}}`},
		{"added and removed", map[string]any{"gone": true}, map[string]any{"new": "v"}, nil,
			`{"gone":{"old":true,"new":null},"new":{"old":null,"new":"v"}}`},
		{"numbers compare as stored", map[string]any{"port": int64(80), "ratio": 0.5}, map[string]any{"port": 80, "ratio": float32(0.5)}, nil, "null"},
		{"times compare as stored", map[string]any{"at": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
			map[string]any{"at": time.Date(2026, 1, 1, 1, 0, 0, 0, time.FixedZone("CET", 3600))}, nil, "null"},
		{"nested", map[string]any{"tags": []string{"a"}}, map[string]any{"tags": []string{"a", "b"}}, nil,
			`{"tags":{"old":["a"],"new":["a","b"]}}`},
		{"nil and missing are the same", map[string]any{"a": nil}, map[string]any{}, nil, "null"},
		{"secret field changed", map[string]any{"env_vars": "A=1", "name": "shop"}, map[string]any{"env_vars": "A=2", "name": "shop"},
			[]string{"env_vars"}, `{"env_vars":{"changed":true}}`},
		{"secret field unchanged", map[string]any{"env_vars": "A=1"}, map[string]any{"env_vars": "A=1"}, []string{"env_vars"}, "null"},
		{"secret field set", map[string]any{}, map[string]any{"credentials": "tok-123456"}, []string{"credentials"}, `{"credentials":{"changed":true}}`},
		{"secret by its name", map[string]any{"password": "old-pass-1"}, map[string]any{"password": "new-pass-2"}, nil, `{"password":{"changed":true}}`},
		{"secret by its suffix", map[string]any{"ssh_private_key": "k1"}, map[string]any{"ssh_private_key": "k2"}, nil, `{"ssh_private_key":{"changed":true}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := audit.Diff(tc.old, tc.new, tc.secret...)
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("diff %s, want %s", b, tc.want)
			}
			for k, c := range d {
				if c.Secret && (c.Old != nil || c.New != nil) {
					t.Errorf("secret field %s carries values %+v", k, c)
				}
			}
		})
	}
}

func TestEventTypes(t *testing.T) {
	types := audit.EventTypes()
	if len(types) != 25 {
		t.Fatalf("%d event types, want the 19 of issue 3, recovery_codes_regenerated and 5 for servers", len(types))
	}
	seen := map[string]bool{}
	for _, ty := range types {
		if seen[ty] {
			t.Errorf("%s listed twice", ty)
		}
		seen[ty] = true
	}
	for ty, want := range map[string]string{
		audit.Lockout: "warning", audit.TwoFactorReplayed: "warning", audit.PermissionDenied: "warning",
		audit.LoginSuccess: "info", audit.LoginFailed: "info", audit.PasswordChanged: "info", audit.RoleChanged: "info",
		"something_else": "info",
	} {
		if got := audit.DefaultSeverity(ty); got != want {
			t.Errorf("DefaultSeverity(%s) = %s, want %s", ty, got, want)
		}
	}
}

func TestRecorder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rec := audit.New(db)
		// Every event type is accepted by the store, with its default severity.
		for _, ty := range audit.EventTypes() {
			if _, err := rec.Security(ctx, store.SecurityEvent{EventType: ty, IPAddress: "192.0.2.9"}); err != nil {
				t.Fatalf("%s: %v", ty, err)
			}
		}
		got, err := db.ListSecurityEvents(ctx, store.SecurityEventFilter{Severity: store.SeverityWarning, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var warned []string
		for _, e := range got {
			warned = append(warned, e.EventType)
		}
		slices.Sort(warned)
		var want []string
		for _, ty := range audit.EventTypes() {
			if audit.DefaultSeverity(ty) == store.SeverityWarning {
				want = append(want, ty)
			}
		}
		slices.Sort(want)
		if !slices.Equal(warned, want) {
			t.Fatalf("warnings %v, want %v", warned, want)
		}

		// A chosen severity wins; details that name a secret are masked.
		const canary = "hunter2-canary-5f1c"
		if _, err := rec.Security(ctx, store.SecurityEvent{EventType: "ssh.host_key_changed", Severity: store.SeverityCritical,
			Details: map[string]any{"fingerprint": "SHA256:abc", "password": canary, "api_token": canary}}); err != nil {
			t.Fatal(err)
		}
		got, err = db.ListSecurityEvents(ctx, store.SecurityEventFilter{Severity: store.SeverityCritical})
		// ssh_host_key_changed, recorded above, is critical by default.
		got = slices.DeleteFunc(got, func(e store.SecurityEvent) bool { return e.EventType == audit.HostKeyChanged })
		if err != nil || len(got) != 1 {
			t.Fatalf("critical events: %v, %v", got, err)
		}
		if d := got[0].Details; d["fingerprint"] != "SHA256:abc" || d["password"] != logging.Redacted || d["api_token"] != logging.Redacted {
			t.Fatalf("details stored as %v", d)
		}

		// In the caller's transaction: rolled back with it.
		boom := fmt.Errorf("boom")
		subject := store.NewID()
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := rec.SecurityTx(ctx, tx, store.SecurityEvent{EventType: audit.RoleChanged}); err != nil {
				return err
			}
			if _, err := rec.Activity(ctx, tx, store.Activity{Action: "updated", SubjectType: "user", SubjectID: subject,
				Changes: audit.Diff(map[string]any{"role": "viewer"}, map[string]any{"role": "admin"})}); err != nil {
				return err
			}
			return boom
		})
		if err != boom {
			t.Fatalf("InTx: %v", err)
		}
		if ev, _ := db.ListSecurityEvents(ctx, store.SecurityEventFilter{EventType: audit.RoleChanged}); len(ev) != 1 {
			t.Fatalf("%d role_changed events after a rollback, want the 1 recorded above", len(ev))
		}
		if act, _ := db.ListActivity(ctx, store.ActivityFilter{SubjectID: subject}); len(act) != 0 {
			t.Fatalf("activity survived a rollback: %+v", act)
		}

		// And committed with it.
		err = db.InTx(ctx, func(tx *store.Tx) error {
			_, err := rec.Activity(ctx, tx, store.Activity{Action: "updated", SubjectType: "server", SubjectID: subject,
				Changes: audit.Diff(map[string]any{"ssh_private_key": canary, "name": "a"}, map[string]any{"ssh_private_key": canary + "x", "name": "b"})})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var stored string
		if err := db.QueryRowRaw(ctx, "SELECT changes FROM activity_log WHERE subject_id = ?", subject).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stored, canary) || stored != `{"name":{"old":"a","new":"b"},"ssh_private_key":{"changed":true}}` {
			t.Fatalf("stored changes %s", stored)
		}
	})
}

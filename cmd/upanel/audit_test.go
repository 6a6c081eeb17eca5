package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// auditVerify runs "upanel audit verify" against dbURL. It calls the command
// directly: the command table is wired in run.go.
func auditVerify(t *testing.T, dbURL string) (string, error) {
	t.Helper()
	var out, errb syncBuffer
	e := newEnv(envFunc(nil), strings.NewReader(""), &out, &errb)
	err := cmdAuditVerify(context.Background(), e, []string{"--database-url", dbURL, "--data-dir", t.TempDir()})
	return out.String(), err
}

func TestAuditVerify(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			env := storetest.New(t, d)

			out, err := auditVerify(t, env.URL)
			if err != nil || !strings.Contains(out, "activity log intact: 0 rows") {
				t.Fatalf("empty log: %v\n%s", err, out)
			}

			var ids []string
			for _, desc := range []string{"created app shop", "changed branch", "deployed"} {
				err := env.DB.InTx(ctx, func(tx *store.Tx) error {
					id, err := tx.InsertActivity(ctx, store.Activity{Action: "updated", SubjectType: "app", SubjectID: store.NewID(), Description: desc})
					ids = append(ids, id)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			out, err = auditVerify(t, env.URL)
			if err != nil || !strings.Contains(out, "activity log intact: 3 rows") {
				t.Fatalf("good log: %v\n%s", err, out)
			}

			storetest.Exec(t, env.DB, "UPDATE activity_log SET description = 'nothing happened' WHERE id = ?", ids[1])
			out, err = auditVerify(t, env.URL)
			var u usageError
			if err == nil || errors.As(err, &u) {
				t.Fatalf("tampered log: err = %v, want a failure (exit 1)\n%s", err, out)
			}
			if want := "activity log broken at " + ids[1] + ": hash mismatch"; !strings.Contains(out, want) {
				t.Fatalf("output %q lacks %q", out, want)
			}
		})
	}
}

func TestAuditVerifyNeedsACurrentSchema(t *testing.T) {
	out, err := auditVerify(t, storetest.URL(t, "sqlite"))
	if err == nil || !strings.Contains(err.Error(), "migrate up") {
		t.Fatalf("unmigrated database: %v\n%s", err, out)
	}
}

func TestAuditVerifyFlags(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		usage bool
	}{
		{[]string{"--help"}, false},
		{[]string{"--bogus"}, true},
		{[]string{"extra"}, true},
	} {
		var out, errb syncBuffer
		err := cmdAuditVerify(context.Background(), newEnv(envFunc(nil), strings.NewReader(""), &out, &errb), tc.args)
		var u usageError
		if errors.As(err, &u) != tc.usage || (!tc.usage && err != nil) {
			t.Errorf("%v: err = %v, usage error wanted: %v", tc.args, err, tc.usage)
		}
		if !tc.usage && !strings.Contains(out.String(), "upanel audit verify") {
			t.Errorf("%v: help %q", tc.args, out.String())
		}
	}
}

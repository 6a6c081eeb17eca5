package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"upanel/internal/store/storetest"
)

// runStdin runs the command line with standard input.
func runStdin(t *testing.T, vars map[string]string, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb syncBuffer
	err := run(context.Background(), args, envFunc(vars), strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestUserAndTokenCommands(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			vars, _, _ := panelEnv(t, d)
			out, _, err := runStdin(t, vars, "quartz falcon ribbon 88\n", "user", "create", "--email", "Ops@Example.test", "--role", "admin")
			if err != nil || !strings.Contains(out, "created ops@example.test (admin)") || strings.Contains(out, "password:") {
				t.Fatalf("user create with a piped password: %v\n%s", err, out)
			}
			out, _, err = runStdin(t, vars, "", "user", "create", "--email", "viewer@example.test", "--role", "viewer")
			if err != nil || !strings.Contains(out, "password: ") {
				t.Fatalf("user create with a generated password: %v\n%s", err, out)
			}
			generated := strings.TrimSpace(strings.SplitN(strings.SplitN(out, "password: ", 2)[1], "\n", 2)[0])
			if len(generated) != 24 {
				t.Fatalf("generated password %q", generated)
			}
			for _, bad := range [][]string{
				{"user", "create", "--email", "x@example.test"},                         // no role
				{"user", "create", "--role", "admin"},                                   // no email
				{"user", "create", "--email", "x@example.test", "--role", "root"},       // bad role
				{"user", "reset-2fa"},                                                   // no email
				{"token", "create", "--user", "ops@example.test"},                       // no name
				{"token", "create", "--user", "a@b.test", "--name", "n", "--role", "x"}, // bad role
			} {
				if _, _, err := runStdin(t, vars, "", bad...); err == nil {
					t.Errorf("%v accepted", bad)
				}
			}
			if _, _, err := runStdin(t, vars, "short\n", "user", "create", "--email", "weak@example.test", "--role", "viewer"); err == nil ||
				!strings.Contains(err.Error(), "at least 12") {
				t.Errorf("weak piped password: %v", err)
			}
			if _, _, err := runStdin(t, vars, "quartz falcon ribbon 88\n", "user", "create", "--email", "ops@example.test", "--role", "viewer"); err == nil {
				t.Error("a second user with the same email was created")
			}
			out, _, err = runCmd(t, vars, "user", "list")
			if err != nil || !strings.Contains(out, "ops@example.test") || !strings.Contains(out, "viewer@example.test") {
				t.Fatalf("user list: %v\n%s", err, out)
			}
			out, _, err = runCmd(t, vars, "user", "reset-2fa", "ops@example.test")
			if err != nil || !strings.Contains(out, "two-factor authentication is off for ops@example.test") {
				t.Fatalf("reset-2fa: %v\n%s", err, out)
			}
			if _, _, err := runCmd(t, vars, "user", "reset-2fa", "nobody@example.test"); err == nil {
				t.Fatal("reset-2fa of an unknown user succeeded")
			}
			out, _, err = runCmd(t, vars, "token", "create", "--user", "ops@example.test", "--name", "ci", "--role", "viewer", "--expires-days", "30")
			token := strings.TrimSpace(out)
			if err != nil || !strings.HasPrefix(token, "upt_") {
				t.Fatalf("token create: %v\n%s", err, out)
			}
			p := startServe(t, vars)
			req, _ := http.NewRequest("GET", p.base+"/api/v1/me", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var me map[string]any
			json.NewDecoder(resp.Body).Decode(&me)
			if resp.StatusCode != 200 || me["email"] != "ops@example.test" || me["effective_role"] != "viewer" {
				t.Fatalf("/api/v1/me with the token: %d %v", resp.StatusCode, me)
			}
		})
	}
}

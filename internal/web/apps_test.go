package web

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// secretWatch collects every answer a test gets, so that it can check at
// the end that no secret was in any of them.
type secretWatch struct {
	t       *testing.T
	bodies  []string
	secrets []string
}

func (sw *secretWatch) add(secrets ...string) { sw.secrets = append(sw.secrets, secrets...) }

func (sw *secretWatch) keep(what string, res *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	sw.bodies = append(sw.bodies, what+"\n"+res.Body.String()+"\n"+res.Header().Get("Location"))
	return res
}

func (sw *secretWatch) api(c *client, method, path string, body any) *httptest.ResponseRecorder {
	return sw.keep(method+" "+path, c.api(method, path, body))
}

func (sw *secretWatch) get(c *client, path string) *httptest.ResponseRecorder {
	return sw.keep("GET "+path, c.get(path))
}

func (sw *secretWatch) postForm(c *client, path string, form url.Values) *httptest.ResponseRecorder {
	return sw.keep("POST "+path, c.postForm(path, form))
}

// check fails for every answer holding a secret.
func (sw *secretWatch) check() {
	sw.t.Helper()
	if len(sw.bodies) == 0 || len(sw.secrets) == 0 {
		sw.t.Fatal("nothing watched")
	}
	for _, b := range sw.bodies {
		for _, s := range sw.secrets {
			if strings.Contains(b, s) {
				what, _, _ := strings.Cut(b, "\n")
				sw.t.Errorf("%s: the answer holds the secret %.20q…", what, s)
			}
		}
	}
}

// testPrivateKey returns a fresh OpenSSH private key and the lines of its
// body, each a canary.
func testPrivateKey(t *testing.T) (string, []string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "canary")
	if err != nil {
		t.Fatal(err)
	}
	text := string(pem.EncodeToMemory(block))
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if len(l) >= 16 && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	return text, lines
}

func wantStatus(t *testing.T, what string, res *httptest.ResponseRecorder, code int) {
	t.Helper()
	if res.Code != code {
		t.Fatalf("%s: %d %s, want %d", what, res.Code, res.Body, code)
	}
}

type credJSONT struct {
	ID, Name, Type string
	PublicKey      *string `json:"public_key"`
	KnownHosts     *string `json:"known_hosts"`
	Host           *string `json:"host"`
	Apps           int
}

type appJSONT struct {
	ID               string  `json:"id"`
	ServerID         string  `json:"server_id"`
	Name             string  `json:"name"`
	Slug             string  `json:"slug"`
	GitRepository    string  `json:"git_repository"`
	GitBranch        string  `json:"git_branch"`
	GitCredentialsID *string `json:"git_credentials_id"`
	DeployPath       string  `json:"deploy_path"`
	Compose          string  `json:"docker_compose_file"`
	PrimaryDomain    *string `json:"primary_domain"`
	Status           string  `json:"status"`
	KeepReleases     int     `json:"keep_releases"`
	HookURL          string  `json:"hook_url"`
	HasHookSecret    bool    `json:"has_hook_secret"`
}

// TestAppsAndCredentialsAPI drives credentials and apps through the API as
// an operator, checks what a viewer may do, and that no answer ever holds a
// secret.
func TestAppsAndCredentialsAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAppEnv(t, db)
		e.user("operator@example.test", auth.Operator)
		e.user("viewer@example.test", auth.Viewer)
		op := e.withToken("operator@example.test", auth.Operator)
		browser := e.loggedIn("operator@example.test")
		viewer := e.loggedIn("viewer@example.test")
		viewerTok := e.withToken("operator@example.test", auth.Viewer)
		sw := &secretWatch{t: t}
		serverID := e.app.ServerID

		const token, token2, password = "ghp_CANARYtoken0123456789abcdef", "ghp_CANARYrotated9876543210", "CANARY-pass-word-42"
		keyText, keyLines := testPrivateKey(t)
		sw.add(token, token2, password)
		sw.add(keyLines...)

		// Credentials.
		res := sw.api(op, "POST", "/api/v1/git-credentials", map[string]any{"name": "GitHub token", "type": "token", "token": token, "username": "ci-bot",
			"host": "https://git.example.test/org/shop.git"})
		wantStatus(t, "create token credential", res, http.StatusCreated)
		tokCred := decode[credJSONT](t, res)
		if tokCred.ID == "" || tokCred.Type != "token" || tokCred.PublicKey != nil || tokCred.Apps != 0 || tokCred.Host == nil || *tokCred.Host != "git.example.test" {
			t.Fatalf("token credential: %+v", tokCred)
		}
		res = sw.api(browser, "POST", "/api/v1/git-credentials", map[string]any{"name": "Pasted key", "type": "ssh_key", "private_key": keyText})
		wantStatus(t, "create pasted key credential", res, http.StatusCreated)
		keyCred := decode[credJSONT](t, res)
		if keyCred.PublicKey == nil || !strings.HasPrefix(*keyCred.PublicKey, "ssh-ed25519 ") || keyCred.Host != nil {
			t.Fatalf("pasted key credential: %+v", keyCred)
		}
		res = sw.api(op, "POST", "/api/v1/git-credentials", map[string]any{"name": "Generated", "type": "ssh_key", "generate": true})
		wantStatus(t, "create generated key credential", res, http.StatusCreated)
		genCred := decode[credJSONT](t, res)
		if genCred.PublicKey == nil || !strings.HasPrefix(*genCred.PublicKey, "ssh-ed25519 ") || *genCred.PublicKey == *keyCred.PublicKey {
			t.Fatalf("generated key credential: %+v", genCred)
		}
		res = sw.api(op, "POST", "/api/v1/git-credentials", map[string]any{"name": "Basic", "type": "basic", "username": "deploy", "password": password,
			"host": "git.example.test:3000"})
		wantStatus(t, "create basic credential", res, http.StatusCreated)
		basicCred := decode[credJSONT](t, res)

		for _, bad := range []map[string]any{
			{"name": "x", "type": "token"},                                                   // no token
			{"name": "x", "type": "password", "password": "p"},                               // no such type
			{"name": "x", "type": "ssh_key", "private_key": "not a key"},                     // not a key
			{"name": "x", "type": "token", "token": "a b"},                                   // space in token
			{"name": "x", "type": "token", "token": "t", "secret": "y"},                      // unknown field
			{"name": "", "type": "token", "token": "t"},                                      // no name
			{"name": "x", "type": "basic", "username": "-oProxyCommand=id", "password": "p"}, // option-like user
			{"name": "x", "type": "ssh_key", "generate": true, "known_hosts": "$(id)"},       // not known_hosts
			{"name": "x", "type": "token", "token": "t"},                                     // no host
			{"name": "x", "type": "basic", "username": "u", "password": "p"},                 // no host
			{"name": "x", "type": "token", "token": "t", "host": "evil.example/x.git"},       // a path
			{"name": "x", "type": "token", "token": "t", "host": "u@evil.example"},           // a user
			{"name": "x", "type": "ssh_key", "generate": true, "host": "git.example.test"},   // ssh keys have known_hosts
		} {
			res := sw.api(op, "POST", "/api/v1/git-credentials", bad)
			if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), `"code":"invalid"`) {
				t.Errorf("credential %v: %d %s", bad, res.Code, res.Body)
			}
		}

		res = sw.api(viewer, "GET", "/api/v1/git-credentials", nil)
		wantStatus(t, "list credentials as viewer", res, http.StatusOK)
		if list := decode[struct{ Credentials []credJSONT }](t, res); len(list.Credentials) != 4 {
			t.Fatalf("credentials: %+v", list)
		}
		res = sw.api(viewerTok, "GET", "/api/v1/git-credentials/"+tokCred.ID, nil)
		wantStatus(t, "get credential as viewer token", res, http.StatusOK)
		for _, c := range []*client{viewer, viewerTok} {
			for _, req := range []struct {
				method, path string
				body         any
			}{
				{"POST", "/api/v1/git-credentials", map[string]any{"name": "v", "type": "token", "token": "abc"}},
				{"PATCH", "/api/v1/git-credentials/" + tokCred.ID, map[string]any{"name": "v"}},
				{"DELETE", "/api/v1/git-credentials/" + tokCred.ID, nil},
				{"POST", "/api/v1/git-credentials/" + tokCred.ID + "/test", map[string]any{"server_id": serverID, "git_repository": "https://git.example.test/a.git"}},
			} {
				if res := sw.api(c, req.method, req.path, req.body); res.Code != http.StatusForbidden {
					t.Errorf("viewer %s %s: %d %s", req.method, req.path, res.Code, res.Body)
				}
			}
		}

		res = sw.api(op, "PATCH", "/api/v1/git-credentials/"+tokCred.ID, map[string]any{"name": "GitHub bot", "token": token2})
		wantStatus(t, "rotate token", res, http.StatusOK)
		if c := decode[credJSONT](t, res); c.Name != "GitHub bot" {
			t.Fatalf("patched credential: %+v", c)
		}
		if sec, err := db.GitCredentialSecret(t.Context(), tokCred.ID); err != nil || sec.Secret != token2 || sec.Username != "" {
			t.Fatalf("stored secret after rotation: %v (user %q)", err, sec.Username)
		}
		res = sw.api(op, "PATCH", "/api/v1/git-credentials/"+tokCred.ID, map[string]any{"known_hosts": "git.example.test ssh-ed25519 AAAA"})
		if res.Code != http.StatusBadRequest {
			t.Fatalf("known_hosts on a token credential: %d %s", res.Code, res.Body)
		}
		res = sw.api(op, "GET", "/api/v1/git-credentials/"+store.NewID(), nil)
		wantStatus(t, "missing credential", res, http.StatusNotFound)

		// The token goes to git.example.test and nowhere else, and only an
		// admin can change that.
		res = sw.api(op, "POST", "/api/v1/git-credentials/"+tokCred.ID+"/test",
			map[string]any{"server_id": serverID, "git_repository": "https://evil.example/org/shop.git", "git_branch": "main"})
		if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "may only be sent to git.example.test, and this repository is on evil.example") {
			t.Fatalf("test the token against another host: %d %s", res.Code, res.Body)
		}
		res = sw.api(op, "POST", "/api/v1/apps", map[string]any{"server_id": serverID, "name": "Evil", "git_repository": "https://evil.example/org/shop.git",
			"git_credentials_id": tokCred.ID})
		if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "may only be sent to git.example.test") {
			t.Fatalf("an app on another host: %d %s", res.Code, res.Body)
		}
		res = sw.api(op, "PATCH", "/api/v1/git-credentials/"+tokCred.ID, map[string]any{"host": "evil.example"})
		if res.Code != http.StatusForbidden || !strings.Contains(res.Body.String(), `"code":"forbidden"`) || !strings.Contains(res.Body.String(), "only an admin") {
			t.Fatalf("operator moves the token: %d %s", res.Code, res.Body)
		}
		res = sw.api(op, "PATCH", "/api/v1/git-credentials/"+tokCred.ID, map[string]any{"host": "GIT.example.test:443"})
		wantStatus(t, "operator resends the same host", res, http.StatusOK)
		e.user("admin@example.test", auth.Admin)
		adminTok := e.withToken("admin@example.test", auth.Admin)
		res = sw.api(adminTok, "PATCH", "/api/v1/git-credentials/"+basicCred.ID, map[string]any{"host": "https://git2.example.test/org/x.git"})
		wantStatus(t, "admin moves the basic credential", res, http.StatusOK)
		if c := decode[credJSONT](t, res); c.Host == nil || *c.Host != "git2.example.test" {
			t.Fatalf("moved credential: %+v", c)
		}
		acts, err := db.ListActivity(t.Context(), store.ActivityFilter{SubjectType: "GitCredential", SubjectID: basicCred.ID, Limit: 1})
		if err != nil || len(acts) != 1 || acts[0].Changes["host"].Old != "git.example.test:3000" || acts[0].Changes["host"].New != "git2.example.test" {
			t.Fatalf("host change activity: %+v %v", acts, err)
		}
		res = sw.api(op, "POST", "/api/v1/git-credentials/"+tokCred.ID+"/test",
			map[string]any{"server_id": serverID, "git_repository": "https://git.example.test/org/shop.git", "git_branch": "main"})
		wantStatus(t, "test credential", res, http.StatusOK)
		if chk := decode[struct {
			OK    bool
			Error string
		}](t, res); chk.OK || chk.Error == "" {
			t.Fatalf("check through an agent that does not answer: %+v", chk)
		}
		res = sw.api(op, "POST", "/api/v1/git-credentials/"+tokCred.ID+"/test", map[string]any{"server_id": serverID, "git_repository": "ext::sh -c id"})
		wantStatus(t, "test credential with ext::", res, http.StatusBadRequest)

		// Apps.
		envVals := map[string]string{"DATABASE_URL": "postgres://app:CANARY-db-pass@db/app", "API_KEY": "CANARY-api-key-0001"}
		prodVals := map[string]string{"API_KEY": "CANARY-prod-key-0002"}
		for _, v := range envVals {
			sw.add(v)
		}
		sw.add(prodVals["API_KEY"])
		res = sw.api(op, "POST", "/api/v1/apps", map[string]any{"server_id": serverID, "name": "Blog", "git_repository": "https://git.example.test/org/blog.git",
			"git_credentials_id": tokCred.ID, "primary_domain": "Blog.Example.TEST", "env_vars": envVals, "env_production": prodVals})
		wantStatus(t, "create app", res, http.StatusCreated)
		created := decode[struct {
			App        appJSONT `json:"app"`
			HookSecret string   `json:"hook_secret"`
		}](t, res)
		a := created.App
		if a.ID == "" || a.Slug != "blog" || a.GitBranch != "main" || a.DeployPath != "/srv/upanel/apps/blog" || a.Compose != "docker-compose.yml" ||
			a.KeepReleases != 5 || a.Status != store.AppPending || a.GitCredentialsID == nil || *a.GitCredentialsID != tokCred.ID ||
			a.PrimaryDomain == nil || *a.PrimaryDomain != "blog.example.test" || !a.HasHookSecret ||
			!strings.HasPrefix(a.HookURL, "https://panel.example.test/hooks/deploy/") || !strings.HasPrefix(created.HookSecret, "udh_") {
			t.Fatalf("created app: %+v", created)
		}
		hookSecrets := []string{created.HookSecret}

		res = sw.api(viewer, "GET", "/api/v1/apps", nil)
		wantStatus(t, "list apps", res, http.StatusOK)
		if list := decode[struct{ Apps []appJSONT }](t, res); len(list.Apps) != 2 {
			t.Fatalf("apps: %+v", list)
		}
		res = sw.api(viewer, "GET", "/api/v1/apps?server_id="+store.NewID(), nil)
		if list := decode[struct{ Apps []appJSONT }](t, res); res.Code != http.StatusOK || len(list.Apps) != 0 {
			t.Fatalf("apps of another server: %d %+v", res.Code, list)
		}
		res = sw.api(viewerTok, "GET", "/api/v1/apps/"+a.ID, nil)
		wantStatus(t, "get app", res, http.StatusOK)
		if got := decode[appJSONT](t, res); got.ID != a.ID || got.Name != "Blog" {
			t.Fatalf("got app %+v", got)
		}
		res = sw.api(op, "GET", "/api/v1/apps/"+store.NewID(), nil)
		wantStatus(t, "missing app", res, http.StatusNotFound)

		res = sw.api(op, "PATCH", "/api/v1/apps/"+a.ID, map[string]any{"git_branch": "release/1.x", "keep_releases": 9, "primary_domain": ""})
		wantStatus(t, "patch app", res, http.StatusOK)
		if got := decode[appJSONT](t, res); got.GitBranch != "release/1.x" || got.KeepReleases != 9 || got.PrimaryDomain != nil {
			t.Fatalf("patched app %+v", got)
		}
		for _, bad := range []map[string]any{{"slug": "other"}, {"server_id": serverID}, {"keep_releases": 0}, {"keep_releases": 51}, {"git_branch": ""}, {"env_vars": map[string]string{}}} {
			if res := sw.api(op, "PATCH", "/api/v1/apps/"+a.ID, bad); res.Code != http.StatusBadRequest {
				t.Errorf("patch %v: %d %s", bad, res.Code, res.Body)
			}
		}
		if res := sw.api(op, "PATCH", "/api/v1/apps/"+a.ID, map[string]any{"git_credentials_id": keyCred.ID}); res.Code != http.StatusBadRequest {
			t.Errorf("an ssh key credential on an https repository: %d %s", res.Code, res.Body)
		}

		// Env: keys with masked values only.
		type envEntry struct{ Key, Value string }
		res = sw.api(viewer, "GET", "/api/v1/apps/"+a.ID+"/env", nil)
		wantStatus(t, "env", res, http.StatusOK)
		env := decode[map[string][]envEntry](t, res)
		if len(env["base"]) != 2 || env["base"][0].Key != "API_KEY" || env["base"][1].Key != "DATABASE_URL" || len(env["production"]) != 1 ||
			len(env["staging"]) != 0 || env["staging"] == nil {
			t.Fatalf("env: %+v", env)
		}
		for _, xs := range env {
			for _, x := range xs {
				if x.Value != "••••" {
					t.Fatalf("env value not masked: %+v", x)
				}
			}
		}
		stagingVal := "CANARY-staging ; (id) `id` | value"
		sw.add(stagingVal)
		res = sw.api(op, "PATCH", "/api/v1/apps/"+a.ID+"/env/staging", map[string]any{"set": map[string]string{"API_KEY": stagingVal, "DEBUG": "1"}})
		wantStatus(t, "set staging env", res, http.StatusOK)
		if keys := decode[struct{ Keys []string }](t, res).Keys; strings.Join(keys, ",") != "API_KEY,DEBUG" {
			t.Fatalf("staging keys %v", keys)
		}
		res = sw.api(op, "PATCH", "/api/v1/apps/"+a.ID+"/env/base", map[string]any{"unset": []string{"DATABASE_URL"}})
		wantStatus(t, "unset base env", res, http.StatusOK)
		if keys := decode[struct{ Keys []string }](t, res).Keys; strings.Join(keys, ",") != "API_KEY" {
			t.Fatalf("base keys %v", keys)
		}
		if eff, err := e.srv.Deploy.EffectiveEnv(t.Context(), a.ID, "staging"); err != nil || eff["API_KEY"] != stagingVal || eff["DEBUG"] != "1" || len(eff) != 2 {
			t.Fatalf("effective staging env: %v %v", len(eff), err)
		}
		for _, bad := range []struct {
			scope string
			body  any
		}{
			{"base", map[string]any{}},
			{"base", map[string]any{"set": map[string]string{"1ABC": "x"}}},
			{"base", map[string]any{"set": map[string]string{"A;B": "x"}}},
			{"base", map[string]any{"set": map[string]string{"$(id)": "x"}}},
			{"base", map[string]any{"set": map[string]string{"-X": "x"}}},
			{"base", map[string]any{"set": map[string]string{"COMPOSE_FILE": "/etc/passwd"}}},
			{"base", map[string]any{"set": map[string]string{"DOCKER_HOST": "tcp://evil:2375"}}},
			{"base", map[string]any{"set": map[string]string{"A": "line\nINJECTED=1"}}},
			{"base", map[string]any{"set": map[string]string{"A": "cr\rx"}}},
			{"base", map[string]any{"set": map[string]string{"A": "nul\x00x"}}},
			{"base", map[string]any{"set": map[string]string{"A": "$(id)"}}},
			{"base", map[string]any{"set": map[string]string{"A": "x ${HOME}"}}},
			{"base", map[string]any{"set": map[string]string{"A": " padded"}}},
			{"base", map[string]any{"set": map[string]string{"A": "'quoted'"}}},
			{"base", map[string]any{"set": map[string]string{"A": "cut #comment"}}},
			{"base", map[string]any{"set": map[string]string{"A": strings.Repeat("x", 33<<10)}}},
			{"base", map[string]any{"set": map[string]string{"A": "1"}, "unset": []string{"A"}}},
			{"base", map[string]any{"unset": []string{"BAD KEY"}}},
			{"base", map[string]any{"set": map[string]string{"A": "1"}, "extra": true}},
			{"dev", map[string]any{"set": map[string]string{"A": "1"}}},
			{"base/..", map[string]any{"set": map[string]string{"A": "1"}}},
		} {
			res := sw.api(op, "PATCH", "/api/v1/apps/"+a.ID+"/env/"+url.PathEscape(bad.scope), bad.body)
			if res.Code < 400 || res.Code >= 500 {
				t.Errorf("env %s %v: %d %s", bad.scope, bad.body, res.Code, res.Body)
			}
		}
		if keys, _ := db.AppEnvKeys(t.Context(), a.ID, "base"); strings.Join(keys, ",") != "API_KEY" {
			t.Fatalf("base keys after refused changes: %v", keys)
		}
		res = sw.api(viewerTok, "PATCH", "/api/v1/apps/"+a.ID+"/env/base", map[string]any{"set": map[string]string{"A": "1"}})
		wantStatus(t, "env as viewer token", res, http.StatusForbidden)
		res = sw.api(op, "PATCH", "/api/v1/apps/"+store.NewID()+"/env/base", map[string]any{"set": map[string]string{"A": "1"}})
		wantStatus(t, "env of a missing app", res, http.StatusNotFound)

		// Push-to-deploy secret: shown by rotation, once.
		res = sw.api(op, "POST", "/api/v1/apps/"+a.ID+"/rotate-hook-secret", nil)
		wantStatus(t, "rotate hook secret", res, http.StatusOK)
		rot := decode[map[string]string](t, res)
		if rot["hook_secret"] == "" || rot["hook_secret"] == created.HookSecret || rot["hook_url"] != a.HookURL {
			t.Fatalf("rotation: %v", rot)
		}
		hookSecrets = append(hookSecrets, rot["hook_secret"])
		if s, err := db.AppHookSecret(t.Context(), a.ID); err != nil || s != rot["hook_secret"] {
			t.Fatalf("stored hook secret: %v", err)
		}
		res = sw.api(viewer, "POST", "/api/v1/apps/"+a.ID+"/rotate-hook-secret", nil)
		wantStatus(t, "rotate as viewer", res, http.StatusForbidden)

		// Repository check through an agent that does not answer.
		res = sw.api(op, "POST", "/api/v1/apps/"+a.ID+"/test", nil)
		wantStatus(t, "test app", res, http.StatusOK)
		if chk := decode[struct {
			OK    bool
			Error string
		}](t, res); chk.OK || chk.Error == "" {
			t.Fatalf("app check: %+v", chk)
		}

		// Deleting.
		res = sw.api(op, "DELETE", "/api/v1/git-credentials/"+tokCred.ID, nil)
		if res.Code != http.StatusConflict || !strings.Contains(res.Body.String(), "Blog") {
			t.Fatalf("delete a credential in use: %d %s", res.Code, res.Body)
		}
		res = sw.api(viewer, "DELETE", "/api/v1/apps/"+a.ID, nil)
		wantStatus(t, "delete app as viewer", res, http.StatusForbidden)
		res = sw.api(op, "DELETE", "/api/v1/apps/"+a.ID, nil)
		wantStatus(t, "delete app", res, http.StatusNoContent)
		res = sw.api(op, "GET", "/api/v1/apps/"+a.ID, nil)
		wantStatus(t, "deleted app", res, http.StatusNotFound)
		for _, id := range []string{tokCred.ID, basicCred.ID} {
			res = sw.api(op, "DELETE", "/api/v1/git-credentials/"+id, nil)
			wantStatus(t, "delete credential", res, http.StatusNoContent)
		}
		res = sw.api(op, "GET", "/api/v1/git-credentials/"+tokCred.ID, nil)
		wantStatus(t, "deleted credential", res, http.StatusNotFound)
		res = sw.api(op, "DELETE", "/api/v1/git-credentials/"+tokCred.ID, nil)
		wantStatus(t, "delete again", res, http.StatusNotFound)

		// The activity log names what changed, never a value.
		res = sw.api(op, "GET", "/api/v1/activity?limit=200", nil)
		wantStatus(t, "activity", res, http.StatusOK)
		if !strings.Contains(res.Body.String(), "env.staging.API_KEY") {
			t.Errorf("the activity log does not name the changed key: %s", res.Body)
		}

		// The push-to-deploy secrets were only in the answers that made them.
		sw.check()
		for _, b := range sw.bodies {
			what, _, _ := strings.Cut(b, "\n")
			for i, s := range hookSecrets {
				if strings.Contains(b, s) && !(i == 0 && what == "POST /api/v1/apps" || i == 1 && strings.HasSuffix(what, "/rotate-hook-secret")) {
					t.Errorf("%s shows a push-to-deploy secret", what)
				}
			}
		}
	})
}

// TestAppFieldsRefuseHostileValues sends values that a shell, git or a path
// could misread through every field of an app, on create and on change: each
// is refused with a 4xx and nothing is stored.
func TestAppFieldsRefuseHostileValues(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAppEnv(t, db)
		e.user("operator@example.test", auth.Operator)
		op := e.withToken("operator@example.test", auth.Operator)
		hostile := []string{";id", "x;id", "$(id)", "x$(touch /tmp/pwned)", "`id`", "x`id`", "x\nid", "x\r\nid", "-x", "--upload-pack=touch /tmp/pwned",
			"ext::sh -c touch% /tmp/pwned", "file:///etc/passwd", "../etc", "../../../../etc/passwd", "x|id", "x&id", "x>y", "x y", "x\x00y"}
		// Each field's hostile values: as given, and spliced into a value
		// the field would otherwise take.
		fields := map[string]func(h string) []string{
			"git_repository": func(h string) []string {
				return []string{h, "https://git.example.test/org/" + h, "https://git.example.test/" + h + "/x.git", "git@git.example.test:org/" + h,
					"ssh://git.example.test/org/" + h, "https://" + h + "/org/x.git"}
			},
			"git_branch": func(h string) []string {
				if strings.HasPrefix(h, "-") {
					return []string{h} // "release/-x" is a branch like any other: git reads no option in it
				}
				return []string{h, "main" + h, "release/" + h}
			},
			"deploy_path":         func(h string) []string { return []string{h, "/srv/upanel/apps/" + h, "/srv/upanel/apps/x/" + h} },
			"docker_compose_file": func(h string) []string { return []string{h, h + ".yml", "compose" + h + ".yml"} },
			"primary_domain":      func(h string) []string { return []string{h, h + ".example.test", "www.example.test" + h} },
			"staging_domain":      func(h string) []string { return []string{h, h + ".example.test"} },
			"git_credentials_id":  func(h string) []string { return []string{h} },
		}
		createOnly := map[string]func(h string) []string{
			"slug":      func(h string) []string { return []string{h, "app" + h} },
			"server_id": func(h string) []string { return []string{h} },
		}
		valid := func() map[string]any {
			return map[string]any{"server_id": e.app.ServerID, "name": "Target", "slug": "target", "git_repository": "https://git.example.test/org/target.git"}
		}
		before, _ := db.ListApps(t.Context(), "")
		refused := func(what string, res *httptest.ResponseRecorder) {
			t.Helper()
			if res.Code < 400 || res.Code >= 500 || !strings.Contains(res.Body.String(), `"error"`) {
				t.Errorf("%s: %d %s", what, res.Code, res.Body)
			}
		}
		for _, set := range []map[string]func(string) []string{fields, createOnly} {
			for field, wrap := range set {
				for _, h := range hostile {
					for _, v := range wrap(h) {
						if spliceMeaningless(h, v) {
							continue
						}
						in := valid()
						in[field] = v
						refused("create with "+field+"="+strconvQuote(v), op.api("POST", "/api/v1/apps", in))
					}
				}
			}
		}
		for field, wrap := range fields {
			for _, h := range hostile {
				for _, v := range wrap(h) {
					if spliceMeaningless(h, v) {
						continue
					}
					refused("patch "+field+"="+strconvQuote(v), op.api("PATCH", "/api/v1/apps/"+e.app.ID, map[string]any{field: v}))
				}
			}
		}
		// A name is only shown, never used on a server: shell characters in
		// it are kept as text, and the slug made from it has none of them.
		// Control characters are refused.
		for _, name := range []string{"x\nid", "x\rid", "x\x00y", "x\x1b[2Jy", ""} {
			in := valid()
			in["name"] = name
			refused("create with name "+strconvQuote(name), op.api("POST", "/api/v1/apps", in))
			refused("patch name "+strconvQuote(name), op.api("PATCH", "/api/v1/apps/"+e.app.ID, map[string]any{"name": name}))
		}
		after, _ := db.ListApps(t.Context(), "")
		if len(after) != len(before) {
			t.Fatalf("%d apps after refused input, %d before", len(after), len(before))
		}
		got, err := db.GetApp(t.Context(), e.app.ID)
		if err != nil || *got != *e.app {
			t.Fatalf("the app changed after refused input:\n%+v\n%+v", got, e.app)
		}
		res := op.api("POST", "/api/v1/apps", map[string]any{"server_id": e.app.ServerID, "name": "Evil; $(rm -rf /) `id` -x",
			"git_repository": "https://git.example.test/org/evil.git"})
		wantStatus(t, "create with a shell-like name", res, http.StatusCreated)
		if a := decode[struct{ App appJSONT }](t, res).App; a.Slug != "evil-rm-rf-id-x" || a.Name != "Evil; $(rm -rf /) `id` -x" {
			t.Fatalf("app from a shell-like name: %+v", a)
		}
	})
}

// spliceMeaningless says whether v holds the option-like h in the middle
// of a value ("main-x"), where a dash means nothing: h must lead the value or
// one of its path segments to be read as an option.
func spliceMeaningless(h, v string) bool {
	return strings.HasPrefix(h, "-") && !strings.HasPrefix(v, h) && !strings.Contains(v, "/"+h) && !strings.Contains(v, ":"+h)
}

func strconvQuote(s string) string {
	if len(s) > 60 {
		s = s[:60]
	}
	return "\"" + strings.NewReplacer("\n", `\n`, "\r", `\r`, "\x00", `\0`).Replace(s) + "\""
}

// TestAppAndCredentialPages drives the pages: forms with CSRF tokens as an
// operator, reading as a viewer, and no secret in any page.
func TestAppAndCredentialPages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		e := newAppEnv(t, db)
		e.user("operator@example.test", auth.Operator)
		e.user("viewer@example.test", auth.Viewer)
		e.user("admin@example.test", auth.Admin)
		op := e.loggedIn("operator@example.test")
		viewer := e.loggedIn("viewer@example.test")
		admin := e.loggedIn("admin@example.test")
		sw := &secretWatch{t: t}
		const token, badToken = "glpat-CANARYpageToken0001", "CANARY bad token with spaces"
		keyText, keyLines := testPrivateKey(t)
		sw.add(token, badToken)
		sw.add(keyLines...)
		follow := func(c *client, what string, res *httptest.ResponseRecorder) *httptest.ResponseRecorder {
			t.Helper()
			if res.Code != http.StatusSeeOther {
				t.Fatalf("%s: %d %s", what, res.Code, res.Body)
			}
			return sw.get(c, res.Header().Get("Location"))
		}

		// Credentials.
		for _, c := range []*client{op, viewer, admin} {
			wantStatus(t, "credentials page", sw.get(c, "/credentials"), http.StatusOK)
		}
		wantStatus(t, "new credential page", sw.get(op, "/credentials/new"), http.StatusOK)
		wantStatus(t, "new credential page as viewer", sw.get(viewer, "/credentials/new"), http.StatusForbidden)
		res := sw.postForm(viewer, "/credentials", url.Values{"name": {"x"}, "type": {"token"}, "token": {"abcd"}})
		wantStatus(t, "add credential as viewer", res, http.StatusForbidden)

		res = sw.postForm(op, "/credentials", url.Values{"name": {"Broken"}, "type": {"token"}, "token": {badToken}, "private_key": {keyText}})
		wantStatus(t, "add a bad token", res, http.StatusBadRequest)
		if !strings.Contains(res.Body.String(), "printable ASCII") || !strings.Contains(res.Body.String(), `value="Broken"`) {
			t.Fatalf("bad token form: %s", res.Body)
		}
		res = sw.postForm(op, "/credentials", url.Values{"name": {"No host"}, "type": {"token"}, "token": {token}})
		wantStatus(t, "add a token without a host", res, http.StatusBadRequest)
		if !strings.Contains(res.Body.String(), "needs the host") || !strings.Contains(res.Body.String(), `value="No host"`) {
			t.Fatalf("token without a host: %s", res.Body)
		}
		res = sw.postForm(op, "/credentials", url.Values{"name": {"GitLab"}, "type": {"token"}, "token": {token}, "username": {"oauth2"},
			"private_key": {keyText}, "password": {"ignored"}, "host": {" https://git.example.test/org/shop.git "}})
		page := follow(op, "add token credential", res)
		wantStatus(t, "token credential page", page, http.StatusOK)
		tokID := strings.TrimPrefix(res.Header().Get("Location"), "/credentials/")
		if sec, err := db.GitCredentialSecret(ctx, tokID); err != nil || sec.Secret != token || sec.Username != "oauth2" || sec.PrivateKey != "" {
			t.Fatalf("stored token credential: %v %q", err, sec.Username)
		}
		if c, err := db.GetGitCredential(ctx, tokID); err != nil || c.Host != "git.example.test" {
			t.Fatalf("token credential's host: %+v %v", c, err)
		}
		// The page shows the host; only an admin is offered to change it,
		// and an operator who sends another anyway is refused.
		if !strings.Contains(page.Body.String(), "<code>git.example.test</code>") || strings.Contains(page.Body.String(), `name="host"`) {
			t.Fatalf("token credential page as operator: %s", page.Body)
		}
		res = sw.postForm(op, "/credentials/"+tokID, url.Values{"name": {"GitLab"}, "host": {"evil.example"}})
		if res.Code != http.StatusForbidden || !strings.Contains(res.Body.String(), "nly an admin can change the host") {
			t.Fatalf("operator moves the token: %d %s", res.Code, res.Body)
		}
		adminPage := sw.get(admin, "/credentials/"+tokID)
		if !strings.Contains(adminPage.Body.String(), `name="host"`) || !strings.Contains(adminPage.Body.String(), `value="git.example.test"`) {
			t.Fatalf("token credential page as admin: %s", adminPage.Body)
		}
		res = sw.postForm(admin, "/credentials/"+tokID, url.Values{"name": {"GitLab"}, "host": {"git.example.test:8443"}})
		if page := follow(admin, "admin moves the token", res); !strings.Contains(page.Body.String(), "<code>git.example.test:8443</code>") {
			t.Fatalf("moved token page: %s", page.Body)
		}
		res = sw.postForm(admin, "/credentials/"+tokID, url.Values{"name": {"GitLab"}, "host": {"https://git.example.test/org/shop.git"}})
		follow(admin, "admin moves the token back", res)
		if c, _ := db.GetGitCredential(ctx, tokID); c.Host != "git.example.test" {
			t.Fatalf("host after moving back: %q", c.Host)
		}
		res = sw.postForm(op, "/credentials/"+tokID+"/test", url.Values{"server_id": {e.app.ServerID}, "git_repository": {"https://evil.example/org/shop.git"}})
		if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "may only be sent to git.example.test") {
			t.Fatalf("check against another host: %d %s", res.Code, res.Body)
		}
		res = sw.postForm(op, "/credentials", url.Values{"name": {"Deploy key"}, "type": {"ssh_key"}, "private_key": {keyText},
			"known_hosts": {"git.example.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}, "token": {token}})
		page = follow(op, "add pasted key", res)
		keyID := strings.TrimPrefix(res.Header().Get("Location"), "/credentials/")
		if !strings.Contains(page.Body.String(), "ssh-ed25519 AAAA") || !strings.Contains(page.Body.String(), "SHA256:") ||
			!strings.Contains(page.Body.String(), "deploy key") {
			t.Fatalf("key credential page shows no public key or host key: %s", page.Body)
		}
		res = sw.postForm(op, "/credentials", url.Values{"name": {"Generated"}, "type": {"ssh_key"}})
		page = follow(op, "generate key", res)
		genID := strings.TrimPrefix(res.Header().Get("Location"), "/credentials/")
		if !strings.Contains(page.Body.String(), `id="pubkey"`) || !strings.Contains(page.Body.String(), "known_hosts") {
			t.Fatalf("generated key page: %s", page.Body)
		}
		wantStatus(t, "credential page as viewer", sw.get(viewer, "/credentials/"+keyID), http.StatusOK)
		if strings.Contains(sw.bodies[len(sw.bodies)-1], `action="/credentials/`+keyID+`"`) {
			t.Fatal("a viewer is offered the edit form")
		}
		wantStatus(t, "missing credential page", sw.get(op, "/credentials/"+store.NewID()), http.StatusNotFound)

		res = sw.postForm(op, "/credentials/"+genID, url.Values{"name": {"Generated 2"}, "known_hosts": {"$(id)"}})
		wantStatus(t, "edit with bad known_hosts", res, http.StatusBadRequest)
		res = sw.postForm(op, "/credentials/"+genID, url.Values{"name": {"Generated 2"}, "known_hosts": {""}, "generate": {"on"}})
		follow(op, "rename and new key", res)
		if c, err := db.GetGitCredential(ctx, genID); err != nil || c.Name != "Generated 2" {
			t.Fatalf("renamed credential: %+v %v", c, err)
		}
		res = sw.postForm(op, "/credentials/"+tokID+"/test", url.Values{"server_id": {e.app.ServerID}, "git_repository": {"https://git.example.test/org/shop.git"}, "git_branch": {"main"}})
		wantStatus(t, "check a repository", res, http.StatusOK)
		if !strings.Contains(res.Body.String(), "could not reach the repository") {
			t.Fatalf("check result: %s", res.Body)
		}
		res = sw.postForm(op, "/credentials/"+tokID+"/test", url.Values{"server_id": {e.app.ServerID}, "git_repository": {"ext::sh -c id"}})
		wantStatus(t, "check ext::", res, http.StatusBadRequest)

		// Apps.
		const envVal, envVal2 = "CANARY-env-value-page-01", "CANARY-staging;(id)`x`&y"
		sw.add(envVal, envVal2)
		for _, c := range []*client{op, viewer, admin} {
			res := sw.get(c, "/apps")
			wantStatus(t, "apps page", res, http.StatusOK)
			if !strings.Contains(res.Body.String(), `href="/apps" aria-current="page"`) || !strings.Contains(res.Body.String(), "Shop") {
				t.Fatalf("apps page: %s", res.Body)
			}
		}
		wantStatus(t, "new app page", sw.get(op, "/apps/new"), http.StatusOK)
		wantStatus(t, "new app page as viewer", sw.get(viewer, "/apps/new"), http.StatusForbidden)
		appForm := url.Values{"server_id": {e.app.ServerID}, "name": {"Web shop"}, "git_repository": {"https://git.example.test/org/web.git"},
			"git_branch": {"main"}, "git_credentials_id": {tokID}, "docker_compose_file": {"docker-compose.yml"}, "keep_releases": {"5"},
			"env": {"# comment\r\nAPI_TOKEN=" + envVal + "\r\n\r\nDEBUG=0\r\n"}}
		clone := func(v url.Values) url.Values {
			out := url.Values{}
			for k, xs := range v {
				if k != "csrf_token" {
					out[k] = append([]string{}, xs...)
				}
			}
			return out
		}
		res = sw.postForm(viewer, "/apps", clone(appForm))
		wantStatus(t, "add app as viewer", res, http.StatusForbidden)
		bad := clone(appForm)
		bad.Set("deploy_path", "/etc/$(id)")
		res = sw.postForm(op, "/apps", bad)
		wantStatus(t, "add app with a bad path", res, http.StatusBadRequest)
		if !strings.Contains(res.Body.String(), `value="Web shop"`) {
			t.Fatalf("the form lost what was typed: %s", res.Body)
		}
		bad.Set("deploy_path", "")
		bad.Set("env", "NOT A LINE "+envVal)
		res = sw.postForm(op, "/apps", bad)
		if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "Line 1 is not KEY=value") {
			t.Fatalf("add app with a bad env line: %d %s", res.Code, res.Body)
		}
		res = sw.postForm(op, "/apps", appForm)
		wantStatus(t, "add app", res, http.StatusOK)
		body := res.Body.String()
		apps, _ := db.ListApps(ctx, "")
		var app *store.App
		for _, a := range apps {
			if a.Name == "Web shop" {
				app = a
			}
		}
		if app == nil || app.Slug != "web-shop" || app.GitCredentialsID != tokID {
			t.Fatalf("added app: %+v", app)
		}
		secret, err := db.AppHookSecret(ctx, app.ID)
		if err != nil || !strings.Contains(body, `id="new-secret" class="wrap">`+secret+`<`) || !strings.Contains(body, "/hooks/deploy/"+app.DeployHookID) {
			t.Fatalf("the new app's page does not show its secret and URL once: %v", err)
		}
		sw.bodies = sw.bodies[:len(sw.bodies)-1] // the one answer that shows the hook secret
		sw.add(secret)
		if env, _ := db.AppEnv(ctx, app.ID, "base"); env["API_TOKEN"] != envVal || env["DEBUG"] != "0" || len(env) != 2 {
			t.Fatalf("base env: %d keys", len(env))
		}
		appPath := "/apps/" + app.ID
		for _, c := range []*client{op, viewer, admin} {
			res := sw.get(c, appPath)
			wantStatus(t, "app page", res, http.StatusOK)
			b := res.Body.String()
			for _, want := range []string{"API_TOKEN", "DEBUG", "••••", appPath + "/deployments", appPath + "/running", "/hooks/deploy/" + app.DeployHookID} {
				if !strings.Contains(b, want) {
					t.Errorf("app page lacks %q", want)
				}
			}
			if operate := strings.Contains(b, `action="`+appPath+`/env"`); operate != (c != viewer) {
				t.Errorf("env form offered: %v", operate)
			}
		}

		res = sw.postForm(op, appPath+"/env", url.Values{"action": {"set"}, "scope": {"staging"}, "vars": {"API_TOKEN=" + envVal2 + "\r\nEXTRA=1"}})
		page = follow(op, "set staging env", res)
		if !strings.Contains(page.Body.String(), "Set in staging: API_TOKEN, EXTRA.") {
			t.Fatalf("env flash: %s", page.Body)
		}
		if env, _ := db.AppEnv(ctx, app.ID, "staging"); env["API_TOKEN"] != envVal2 || len(env) != 2 {
			t.Fatalf("staging env: %d keys", len(env))
		}
		for _, form := range []url.Values{
			{"action": {"set"}, "scope": {"base"}, "vars": {"1BAD=" + envVal}},
			{"action": {"set"}, "scope": {"base"}, "vars": {envVal}},
			{"action": {"set"}, "scope": {"base"}, "vars": {"COMPOSE_FILE=x"}},
			{"action": {"set"}, "scope": {"base"}, "vars": {"A=$(id)"}},
			{"action": {"set"}, "scope": {"base"}, "vars": {""}},
			{"action": {"set"}, "scope": {"dev"}, "vars": {"A=1"}},
			{"action": {"unset"}, "scope": {"base"}, "key": {"$(id)"}},
			{"action": {"drop"}, "scope": {"base"}},
		} {
			res := sw.postForm(op, appPath+"/env", form)
			page := follow(op, "bad env change", res)
			if !strings.Contains(page.Body.String(), "Not saved:") {
				t.Errorf("env change %v: no error shown", form)
			}
		}
		res = sw.postForm(viewer, appPath+"/env", url.Values{"action": {"unset"}, "scope": {"base"}, "key": {"DEBUG"}})
		wantStatus(t, "env as viewer", res, http.StatusForbidden)
		res = sw.postForm(op, appPath+"/env", url.Values{"action": {"unset"}, "scope": {"base"}, "key": {"DEBUG"}})
		follow(op, "unset", res)
		if keys, _ := db.AppEnvKeys(ctx, app.ID, "base"); strings.Join(keys, ",") != "API_TOKEN" {
			t.Fatalf("base keys: %v", keys)
		}

		edit := url.Values{"name": {"Web shop"}, "git_repository": {"https://git.example.test/org/web.git"}, "git_branch": {"develop"},
			"git_credentials_id": {tokID}, "deploy_path": {app.DeployPath}, "docker_compose_file": {"compose.yaml"}, "keep_releases": {"3"},
			"primary_domain": {"shop.example.test"}, "staging_domain": {""}}
		follow(op, "edit app", sw.postForm(op, appPath, clone(edit)))
		if a, _ := db.GetApp(ctx, app.ID); a.GitBranch != "develop" || a.DockerComposeFile != "compose.yaml" || a.KeepReleases != 3 || a.PrimaryDomain != "shop.example.test" {
			t.Fatalf("edited app: %+v", a)
		}
		edit.Set("git_branch", "--upload-pack=id")
		res = sw.postForm(op, appPath, clone(edit))
		wantStatus(t, "edit with a bad branch", res, http.StatusBadRequest)
		if !strings.Contains(res.Body.String(), "upload-pack") {
			t.Fatalf("the form lost what was typed: %s", res.Body)
		}
		wantStatus(t, "edit as viewer", sw.postForm(viewer, appPath, clone(edit)), http.StatusForbidden)

		res = sw.postForm(op, appPath+"/test", nil)
		if page := follow(op, "check app", res); !strings.Contains(page.Body.String(), "could not reach the repository") {
			t.Fatalf("app check: %s", page.Body)
		}
		res = sw.postForm(op, appPath+"/rotate-hook-secret", nil)
		wantStatus(t, "rotate", res, http.StatusOK)
		newSecret, err := db.AppHookSecret(ctx, app.ID)
		if err != nil || newSecret == secret || !strings.Contains(res.Body.String(), newSecret) {
			t.Fatalf("rotated secret not shown: %v", err)
		}
		sw.bodies = sw.bodies[:len(sw.bodies)-1]
		sw.add(newSecret)
		wantStatus(t, "rotate as viewer", sw.postForm(viewer, appPath+"/rotate-hook-secret", nil), http.StatusForbidden)
		wantStatus(t, "app page again", sw.get(op, appPath), http.StatusOK)

		res = sw.postForm(op, "/credentials/"+tokID+"/delete", nil)
		if page := follow(op, "delete a credential in use", res); !strings.Contains(page.Body.String(), "Not deleted") {
			t.Fatalf("deleting a credential in use: %s", page.Body)
		}
		wantStatus(t, "delete app as viewer", sw.postForm(viewer, appPath+"/delete", nil), http.StatusForbidden)
		res = sw.postForm(op, appPath+"/delete", nil)
		if res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/apps" {
			t.Fatalf("delete app: %d %s", res.Code, res.Header().Get("Location"))
		}
		follow(op, "delete credential", sw.postForm(op, "/credentials/"+tokID+"/delete", nil))
		if _, err := db.GetGitCredential(ctx, tokID); err == nil {
			t.Fatal("the credential was not deleted")
		}
		wantStatus(t, "deleted app page", sw.get(op, appPath), http.StatusNotFound)
		wantStatus(t, "activity page", sw.get(admin, "/activity"), http.StatusOK)
		sw.check()
	})
}

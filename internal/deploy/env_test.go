package deploy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"upanel/internal/apperr"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestEnvSetKeysAndEffectiveMerge(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			f := newFixture(t, d)
			ctx := context.Background()
			app, _, err := f.svc.CreateApp(ctx, f.p, AppInput{ServerID: f.serverID, Name: "api", GitRepository: "https://github.com/o/api.git"}, f.m)
			if err != nil {
				t.Fatal(err)
			}
			const pw, prodPW = "base-password-canary-111", "prod-password-canary-222"
			keys, err := f.svc.SetEnv(ctx, f.p, app.ID, store.EnvBase, map[string]string{"DB_PASSWORD": pw, "MODE": "dev", "SHARED": "base", "EMPTY": ""}, nil, f.m)
			if err != nil || strings.Join(keys, ",") != "DB_PASSWORD,EMPTY,MODE,SHARED" {
				t.Fatalf("set base: %v %v", keys, err)
			}
			if _, err := f.svc.SetEnv(ctx, f.p, app.ID, store.EnvProduction, map[string]string{"DB_PASSWORD": prodPW, "MODE": "prod"}, nil, f.m); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.SetEnv(ctx, f.p, app.ID, store.EnvStaging, map[string]string{"MODE": "staging", "DEBUG": "1"}, nil, f.m); err != nil {
				t.Fatal(err)
			}
			prod, err := f.svc.EffectiveEnv(ctx, app.ID, Production)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"DB_PASSWORD": prodPW, "MODE": "prod", "SHARED": "base", "EMPTY": ""}
			if len(prod) != len(want) {
				t.Fatalf("production env %v", prod)
			}
			for k, v := range want {
				if prod[k] != v {
					t.Fatalf("production %s = %q, want %q", k, prod[k], v)
				}
			}
			if def, _ := f.svc.EffectiveEnv(ctx, app.ID, ""); def["MODE"] != "prod" {
				t.Fatalf("default environment: %v", def)
			}
			st, err := f.svc.EffectiveEnv(ctx, app.ID, Staging)
			if err != nil || st["DB_PASSWORD"] != pw || st["MODE"] != "staging" || st["DEBUG"] != "1" || st["SHARED"] != "base" || len(st) != 5 {
				t.Fatalf("staging env %v %v", st, err)
			}
			if _, err := f.svc.EffectiveEnv(ctx, app.ID, "base"); !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("environment base: %v", err)
			}

			// Replace one, delete one; keys only come back.
			keys, err = f.svc.SetEnv(ctx, f.p, app.ID, store.EnvBase, map[string]string{"MODE": "test"}, []string{"SHARED", "ABSENT"}, f.m)
			if err != nil || strings.Join(keys, ",") != "DB_PASSWORD,EMPTY,MODE" {
				t.Fatalf("replace and unset: %v %v", keys, err)
			}
			if k, err := f.svc.Keys(ctx, app.ID, store.EnvStaging); err != nil || strings.Join(k, ",") != "DEBUG,MODE" {
				t.Fatalf("staging keys %v %v", k, err)
			}
			if _, err := f.svc.Keys(ctx, app.ID, "env_vars"); !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("bad scope: %v", err)
			}
			if _, err := f.svc.Keys(ctx, store.NewID(), store.EnvBase); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("no app: %v", err)
			}

			// The activity log names keys, never values.
			var envActs []store.Activity
			for _, a := range f.activity("App", app.ID) {
				if a.Action == "env_updated" {
					envActs = append(envActs, a)
				}
			}
			if len(envActs) != 4 {
				t.Fatalf("%d env activities: %+v", len(envActs), envActs)
			}
			last := envActs[3]
			if last.Description != "env base of app api: changed MODE; removed SHARED" || last.UserID != f.p.User.ID {
				t.Fatalf("last env activity %+v", last)
			}
			if len(last.Changes) != 2 || !last.Changes["env.base.MODE"].Secret || !last.Changes["env.base.SHARED"].Secret {
				t.Fatalf("changes %+v", last.Changes)
			}
			text := f.allActivityText()
			for _, v := range []string{pw, prodPW, `"dev"`, `"test"`, `"staging"`} {
				if strings.Contains(text, v) {
					t.Errorf("the activity log holds %s", v)
				}
			}
			storetest.AssertNotStored(t, f.db, f.url, pw)
			storetest.AssertNotStored(t, f.db, f.url, prodPW)

			// Setting a value to what it is changes and logs nothing.
			n := len(f.activity("App", app.ID))
			if _, err := f.svc.SetEnv(ctx, f.p, app.ID, store.EnvBase, map[string]string{"MODE": "test"}, []string{"ABSENT"}, f.m); err != nil {
				t.Fatal(err)
			}
			if len(f.activity("App", app.ID)) != n {
				t.Fatal("a no-op env change was logged")
			}
			// Refusals.
			for _, tc := range []struct {
				set   map[string]string
				unset []string
				text  string
			}{
				{nil, nil, "nothing to change"},
				{map[string]string{"A": "1"}, []string{"A"}, "both set and unset"},
				{map[string]string{"A": "x\ny"}, nil, "portable quoting"},
				{map[string]string{"COMPOSE_FILE": "../x.yml"}, nil, "reserved"},
				{map[string]string{"DOCKER_HOST": "tcp://evil:2375"}, nil, "reserved"},
				{map[string]string{"9X": "1"}, nil, "not a valid variable name"},
			} {
				if _, err := f.svc.SetEnv(ctx, f.p, app.ID, store.EnvBase, tc.set, tc.unset, f.m); !apperr.Is(err, apperr.Invalid) ||
					!strings.Contains(apperr.MessageOf(err), tc.text) {
					t.Errorf("SetEnv(%v, %v): %v, want %q", tc.set, tc.unset, err, tc.text)
				}
			}
			many := map[string]string{}
			for i := 0; i < maxEnvVars; i++ {
				many[fmt.Sprintf("K%d", i)] = "v"
			}
			if _, err := f.svc.SetEnv(ctx, f.p, app.ID, store.EnvStaging, many, nil, f.m); !apperr.Is(err, apperr.Invalid) || !strings.Contains(apperr.MessageOf(err), "at most") {
				t.Fatalf("more than %d variables: %v", maxEnvVars, err)
			}
			// 40 values of 31 KiB each pass one by one, not together.
			big := map[string]string{}
			for i := 0; i < 40; i++ {
				big[fmt.Sprintf("BIG%d", i)] = strings.Repeat("v", 31<<10)
			}
			if _, err := f.svc.SetEnv(ctx, f.p, app.ID, store.EnvStaging, big, nil, f.m); !apperr.Is(err, apperr.Invalid) || !strings.Contains(apperr.MessageOf(err), "KiB of variables") {
				t.Fatalf("a set over %d KiB: %v", maxEnvBytes>>10, err)
			}
		})
	}
}

package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"upanel/internal/store"
)

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		args    []string
		usage   bool   // a usage error (exit 2)
		failure bool   // another error (exit 1)
		out     string // in stdout
		errText string // in the error
	}{
		{name: "no command", args: nil, usage: true, errText: "a command is required"},
		{name: "help", args: []string{"help"}, out: "serve"},
		{name: "--help", args: []string{"--help"}, out: "migrate"},
		{name: "unknown command", args: []string{"frobnicate"}, usage: true, errText: `unknown command "frobnicate"`},
		{name: "serve --help", args: []string{"serve", "--help"}, out: "-addr"},
		{name: "serve -h", args: []string{"serve", "-h"}, out: "-data-dir"},
		{name: "migrate help", args: []string{"migrate", "--help"}, out: "status"},
		{name: "migrate unknown", args: []string{"migrate", "sideways"}, usage: true},
		{name: "migrate up --help", args: []string{"migrate", "up", "--help"}, out: "-database-url"},
		{name: "key rotate --help", args: []string{"key", "rotate", "--help"}, out: "-batch"},
		{name: "key generate --help", args: []string{"key", "generate", "-help"}, out: "Usage: upanel key generate"},
		{name: "version --help", args: []string{"version", "--help"}, out: "Usage"},
		{name: "version", args: []string{"version"}, out: "upanel "},
		{name: "unknown flag", args: []string{"serve", "--bogus"}, usage: true, errText: "bogus"},
		{name: "stray argument", args: []string{"version", "extra"}, usage: true, errText: "extra"},
		{name: "bad addr", args: []string{"serve", "--addr", "nope", "--data-dir", dir}, usage: true, errText: "addr"},
		{name: "bad port", args: []string{"serve", "--addr", "127.0.0.1:99999", "--data-dir", dir}, usage: true, errText: "port"},
		{name: "bad url", args: []string{"serve", "--url", "ftp://x"}, usage: true, errText: "http"},
		{name: "url with credentials", args: []string{"serve", "--url", "https://u:p@x"}, usage: true, errText: "credentials"},
		{name: "bad database url", args: []string{"migrate", "status", "--database-url", "mysql://x", "--data-dir", dir}, usage: true, errText: "database url"},
		{name: "bad env duration", vars: map[string]string{"UPANEL_JOB_LEASE": "soon"}, args: []string{"migrate", "status", "--data-dir", dir}, usage: true, errText: "UPANEL_JOB_LEASE"},
		{name: "bad env number", vars: map[string]string{"UPANEL_JOB_WORKERS": "many"}, args: []string{"migrate", "status", "--data-dir", dir}, usage: true, errText: "UPANEL_JOB_WORKERS"},
		{name: "bad log level", vars: map[string]string{"UPANEL_LOG_LEVEL": "loud"}, args: []string{"migrate", "status", "--data-dir", dir}, usage: true, errText: "UPANEL_LOG_LEVEL"},
		{name: "key and key file", vars: map[string]string{"UPANEL_APP_KEY": "base64:x", "UPANEL_APP_KEY_FILE": "/x"}, args: []string{"migrate", "status", "--data-dir", dir}, usage: true, errText: "not both"},
		{name: "bad batch", args: []string{"key", "rotate", "--batch", "0", "--data-dir", dir}, usage: true, errText: "batch"},
		{name: "bad app key", vars: map[string]string{"UPANEL_APP_KEY": "base64:short"}, args: []string{"key", "rotate", "--data-dir", filepath.Join(dir, "k")}, failure: true, errText: "UPANEL_APP_KEY"},
		{name: "migrate status", args: []string{"migrate", "status", "--data-dir", filepath.Join(dir, "s")}, out: "001_create_users_table"},
		{name: "migrate up", args: []string{"migrate", "up", "--data-dir", filepath.Join(dir, "s")}, out: "database is at version"},
		{name: "key generate", args: []string{"key", "generate"}, out: "base64:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCmd(t, tc.vars, tc.args...)
			var u usageError
			isUsage := errors.As(err, &u)
			switch {
			case tc.usage && !isUsage:
				t.Fatalf("err = %v, want a usage error", err)
			case tc.failure && (err == nil || isUsage):
				t.Fatalf("err = %v, want a non-usage error", err)
			case !tc.usage && !tc.failure && err != nil:
				t.Fatalf("err = %v", err)
			}
			if tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText)) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.errText)
			}
			if !strings.Contains(out, tc.out) {
				t.Fatalf("stdout %q lacks %q", out, tc.out)
			}
		})
	}
}

func TestMigrateStatusShowsPendingThenApplied(t *testing.T) {
	dir := t.TempDir()
	out, _, err := runCmd(t, nil, "migrate", "status", "--data-dir", dir)
	if err != nil || !strings.Contains(out, fmt.Sprintf("%d pending", store.LatestVersion())) {
		t.Fatalf("fresh status: %v\n%s", err, out)
	}
	if _, _, err := runCmd(t, nil, "migrate", "up", "--data-dir", dir); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCmd(t, nil, "migrate", "status", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "0 pending") || strings.Contains(out, "pending\n0") {
		t.Fatalf("status after up: %v\n%s", err, out)
	}
}

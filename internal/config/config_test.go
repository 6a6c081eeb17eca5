package config

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

func TestDefaultsAndDerivedFields(t *testing.T) {
	c, err := FromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || !filepath.IsAbs(c.DataDir) || c.DatabaseURL != "sqlite:"+filepath.Join(c.DataDir, "upanel.db") {
		t.Fatalf("defaults: %+v", c)
	}
	if c.URL.String() != "http://127.0.0.1:8080" {
		t.Fatalf("default URL = %s", c.URL)
	}
	if src := c.KeySource(); !src.Create || src.File != filepath.Join(c.DataDir, "app.key") {
		t.Fatalf("default key source = %+v", src)
	}
}

func TestEnvAndFlags(t *testing.T) {
	c, err := FromEnv(env(map[string]string{
		"UPANEL_ADDR": "0.0.0.0:9000", "UPANEL_URL": "https://panel.example.com/", "UPANEL_JOB_LEASE": "45s",
		"UPANEL_JOB_WORKERS": "8", "UPANEL_LOG_LEVEL": "debug", "UPANEL_DATABASE_URL": "postgres://u@db/upanel",
	}))
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.ServeFlags(fs)
	if err := fs.Parse([]string{"--addr", "127.0.0.1:9001"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9001" || c.URL.String() != "https://panel.example.com" || c.JobLease != 45*time.Second || c.JobWorkers != 8 {
		t.Fatalf("config = %+v", c)
	}
	if !strings.HasPrefix(c.DatabaseURL, "postgres://") {
		t.Fatalf("database url = %s", c.DatabaseURL)
	}
}

func TestRejections(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"lease too short":      {"UPANEL_JOB_LEASE": "1s"},
		"zero workers":         {"UPANEL_JOB_WORKERS": "0"},
		"idle above absolute":  {"UPANEL_SESSION_IDLE_TIMEOUT": "10h", "UPANEL_SESSION_ABSOLUTE_TIMEOUT": "1h"},
		"log format":           {"UPANEL_LOG_FORMAT": "xml"},
		"previous without key": {"UPANEL_APP_PREVIOUS_KEYS": "base64:x"},
		"url with query":       {"UPANEL_URL": "https://x/?a=b"},
		"url not absolute":     {"UPANEL_URL": "panel.example.com"},
		"sqlite path query":    {"UPANEL_DATABASE_URL": "sqlite:/tmp/x.db?mode=ro"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := FromEnv(env(vars))
			if err == nil {
				err = c.Finish()
			}
			if err == nil {
				t.Fatalf("accepted %v", vars)
			}
		})
	}
}

package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forbidden are the packages the agent binary must never link, with all
// their subpackages: the panel's storage, HTTP surface, domain services and
// secrets, and any SQL driver (DESIGN.md: "The agent never imports store,
// web, api or an SQL driver, and a test checks this"). Every database/sql
// driver imports database/sql/driver; pgx can also be used without it.
var forbidden = []string{
	"upanel/internal/store",
	"upanel/internal/web",
	"upanel/internal/api",
	"upanel/internal/fleet",
	"upanel/internal/auth",
	"upanel/internal/secret",
	"database/sql",
	"modernc.org/sqlite",
	"github.com/jackc/pgx", // any major version, any subpackage, any pgx* module
}

// isForbidden matches a package path against forbidden: the path itself or
// anything below it ("database/sql/driver"), and for pgx anything that starts
// with its path ("github.com/jackc/pgx/v5/stdlib").
func isForbidden(pkg string) (string, bool) {
	for _, f := range forbidden {
		if pkg == f || strings.HasPrefix(pkg, f+"/") || (strings.HasPrefix(f, "github.com/jackc/pgx") && strings.HasPrefix(pkg, f)) {
			return f, true
		}
	}
	return "", false
}

// deps is what "go list -deps" lists for pkg built for linux/arch.
func deps(t *testing.T, pkg, arch string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is not on PATH: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-deps", pkg)
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr)
	}
	return strings.Fields(string(out))
}

// The agent's dependency set, as the go tool computes it for the platforms it
// is built for, holds none of the forbidden packages.
func TestAgentLinksNoPanelOrSQLCode(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			list := deps(t, "upanel/cmd/upanel-agent", arch)
			// A list that lacks what the agent surely links would pass
			// vacuously.
			for _, want := range []string{"upanel/cmd/upanel-agent", "upanel/internal/agent", "upanel/internal/wire", "crypto/tls"} {
				if !slices.Contains(list, want) {
					t.Fatalf("go list -deps lacks %s: %q", want, list)
				}
			}
			for _, d := range list {
				if f, bad := isForbidden(d); bad {
					t.Errorf("the agent depends on %s (forbidden: %s)", d, f)
				}
			}
		})
	}
}

// The same check finds the forbidden packages in the panel's HTTP surface,
// which links them all: it can fail.
func TestTheCheckSeesThePanelsDependencies(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range deps(t, "upanel/internal/web", "amd64") {
		if f, bad := isForbidden(d); bad {
			seen[f] = true
		}
	}
	for _, f := range []string{"upanel/internal/store", "upanel/internal/web", "upanel/internal/fleet", "upanel/internal/auth",
		"upanel/internal/secret", "database/sql", "modernc.org/sqlite", "github.com/jackc/pgx"} {
		if !seen[f] {
			t.Errorf("the panel's dependencies do not show %s", f)
		}
	}
}

func TestIsForbidden(t *testing.T) {
	for pkg, want := range map[string]bool{
		"upanel/internal/store": true, "upanel/internal/store/storetest": true, "upanel/internal/web": true,
		"upanel/internal/api": true, "upanel/internal/fleet": true, "upanel/internal/auth": true, "upanel/internal/secret": true,
		"database/sql": true, "database/sql/driver": true, "modernc.org/sqlite": true, "modernc.org/sqlite/lib": true,
		"github.com/jackc/pgx/v5": true, "github.com/jackc/pgx/v5/stdlib": true, "github.com/jackc/pgx": true,
		"upanel/internal/agent": false, "upanel/internal/wire": false, "upanel/internal/pin": false,
		"upanel/internal/storefront": false, "upanel/internal/webhooks": false, "database/sqlx": false,
		"github.com/jackc/pgxpool": true, "github.com/jackc/pgservicefile": false, "encoding/json": false,
	} {
		if _, got := isForbidden(pkg); got != want {
			t.Errorf("isForbidden(%q) = %v, want %v", pkg, got, want)
		}
	}
}

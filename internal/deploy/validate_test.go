package deploy

import (
	"os/exec"
	"strings"
	"testing"

	"upanel/internal/apperr"
)

func TestValidRepoURL(t *testing.T) {
	ok := []struct {
		in, kind, host string
		port           int
	}{
		{"https://github.com/org/repo.git", RepoHTTPS, "github.com", 0},
		{"https://GitHub.com/Org/Repo", RepoHTTPS, "github.com", 0},
		{"  https://git.example.com:8443/group/sub/repo.git ", RepoHTTPS, "git.example.com", 8443},
		{"https://dev.azure.com/org/My%20Project/_git/repo", RepoHTTPS, "dev.azure.com", 0},
		{"https://192.0.2.10/r.git", RepoHTTPS, "192.0.2.10", 0},
		{"https://[2001:db8::1]:3000/r.git", RepoHTTPS, "2001:db8::1", 3000},
		{"ssh://git@github.com/org/repo.git", RepoSSH, "github.com", 0},
		{"ssh://github.com:2222/org/repo.git", RepoSSH, "github.com", 2222},
		{"ssh://git@[2001:db8::2]/srv/repo.git", RepoSSH, "2001:db8::2", 0},
		{"ssh://git@host.example/~/repo.git", RepoSSH, "host.example", 0},
		{"git@github.com:org/repo.git", RepoSSH, "github.com", 0},
		{"deploy_user@192.0.2.4:/srv/git/app.git", RepoSSH, "192.0.2.4", 0},
		{"git@gitlab.example.com:group/sub/repo", RepoSSH, "gitlab.example.com", 0},
	}
	for _, tc := range ok {
		got, err := ValidRepoURL(tc.in)
		if err != nil {
			t.Errorf("ValidRepoURL(%q): %v", tc.in, err)
			continue
		}
		if got.Kind != tc.kind || got.Host != tc.host || got.Port != tc.port || got.URL != strings.Trim(tc.in, " ") {
			t.Errorf("ValidRepoURL(%q) = %+v", tc.in, got)
		}
	}
	bad := []string{
		"", " ", "file:///srv/repo.git", "FILE:///etc", "/srv/repo.git", "../repo", "repo",
		"ext::sh -c touch% /tmp/pwned", "ext::sh", "fd::17", "git://github.com/org/repo.git", "http://github.com/org/repo.git",
		"-oProxyCommand=touch /tmp/x", "--upload-pack=touch /tmp/x", "-u", "https://user:pass@github.com/org/repo.git",
		"https://token@github.com/org/repo.git", "https://github.com", "https://github.com/", "https://github.com/org//repo",
		"https://github.com/org/repo/", "https://github.com/org/../etc", "https://github.com/org/%2e%2e/x", "https://github.com/org/%2fetc",
		"https://github.com/org/-repo", "https://github.com/org/repo.git?x=1", "https://github.com/org/repo.git#main",
		"https://github.com/org/re po", "https://github.com/org/repo\n", "https://github.com/org/repo;id", "https://github.com/org/$(id)",
		"https://github.com/org/`id`", "https://-evil.com/org/repo", "https://evil_host/org/repo", "https://github.com:0/x",
		"https://github.com:99999/x", "https://github.com:/x", "https://github.com:22a/x", "https://[::1/x", "https://[fe80::1%25eth0]/x",
		"https://github.com/org/r%zz", "https://ex\u00e4mple.com/r", "https://github.com/org/repo\x00", "https://github.com/a\tb",
		"ssh://-oProxyCommand=x/repo", "ssh://git@-host/repo", "ssh://-git@host/repo", "ssh://git@host/-repo", "ssh://git@host/a/../b",
		"ssh://git@host", "ssh://git@host/", "ssh://git@host/r%20x", "ssh://u:p@host/repo",
		"git@github.com", "git@github.com:", "git@github.com:-repo", "git@github.com:../x", "git@github.com:a/../x",
		"-git@github.com:org/repo", "git@-github.com:org/repo", "git@github.com:org/repo:x", "git@[::1]:repo",
		"github.com:org/repo", "$(id)@host:repo", "git@host:org/repo;id", "git@host:org/$(id)", "git@host:org/`id`",
		"git@host/x:repo", "a@b@host:repo", strings.Repeat("a", 490) + "@host.example:repo",
		"https://github.com/" + strings.Repeat("a", 500),
	}
	for _, in := range bad {
		if got, err := ValidRepoURL(in); err == nil {
			t.Errorf("ValidRepoURL(%q) accepted: %+v", in, got)
		} else if !apperr.Is(err, apperr.Invalid) {
			t.Errorf("ValidRepoURL(%q): %v is not an invalid-input error", in, err)
		}
	}
}

// branchCases are names to compare with git's own check; names with NUL
// cannot be passed in argv and are tested apart.
var branchCases = []string{
	"main", "master", "feature/x", "release-1.2", "v1.0", "a.b", "user@example", "@", "@x", "x@", "a@b{c",
	"é", "日本", "a+b", "a=b", "a,b", "a'b", "a\"b", "a#b", "a%b", "a&b", "a!b", "a;b", "a$b", "a`b`", "$(id)", "a|b", "a<b>",
	"HEAD", "head", "HEAD/x", "x/HEAD", "-x", "--upload-pack=x", "a-", "a--b", "-",
	"", ".", "..", "a..b", "a/.b", ".a", "a.", "a/b.", "a.lock", "a.lock/b", "a/b.lock", "a.lockx", "lock",
	"a//b", "/a", "a/", "a b", "a\tb", "a\nb", "a\x01b", "a\x7fb", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a]b", "a\\b",
	"a@{b", "@{-1}", "a@{", "@{", "a{b", "a}b", "../x", "x/../y", "a/./b", "./a", "refs/heads/x", "a...b", "a.b.c",
	"\xff", "a\xc3", "ab\x80",
}

// TestBranchMatchesGit compares checkRefFormatBranch with the real `git
// check-ref-format --branch`, run outside any repository.
func TestBranchMatchesGit(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is needed to check the branch rules against: %v", err)
	}
	dir := t.TempDir()
	for _, name := range branchCases {
		cmd := exec.Command(git, "check-ref-format", "--branch", name)
		cmd.Dir = dir
		cmd.Env = []string{"GIT_CEILING_DIRECTORIES=" + dir, "HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1", "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		gitOK := err == nil
		if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
			t.Fatalf("run git: %v", err)
		}
		if got := checkRefFormatBranch(name); got != gitOK {
			t.Errorf("branch %q: ours %v, git %v (%s)", name, got, gitOK, strings.TrimSpace(string(out)))
		}
	}
}

func TestValidBranch(t *testing.T) {
	for _, b := range []string{"main", "feature/login", "release-2026.01", "é"} {
		if err := ValidBranch(b); err != nil {
			t.Errorf("ValidBranch(%q): %v", b, err)
		}
	}
	for _, b := range []string{"", "-x", "--upload-pack=x", "a\x00b", "\xff", "@", "a b", "a;b", "$(id)", "`id`", "a\nb", "../x", strings.Repeat("a", 101)} {
		if err := ValidBranch(b); err == nil {
			t.Errorf("ValidBranch(%q) accepted", b)
		}
	}
}

func TestValidDeployPath(t *testing.T) {
	for _, p := range []string{AppsRoot + "/shop", AppsRoot + "/team/shop-2", AppsRoot + "/a_b.c"} {
		if err := ValidDeployPath(p, AppsRoot); err != nil {
			t.Errorf("ValidDeployPath(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", AppsRoot, AppsRoot + "/", "/srv/upanel", "/srv/upanel/appsx", "/srv/upanel/apps2/x", "/etc/passwd",
		"relative/path", "shop", AppsRoot + "/../../etc", AppsRoot + "/a/../b", AppsRoot + "/./a", AppsRoot + "//a", AppsRoot + "/a/",
		AppsRoot + "/.hidden", AppsRoot + "/-rf", AppsRoot + "/a b", AppsRoot + "/a;b", AppsRoot + "/$(id)", AppsRoot + "/`id`",
		AppsRoot + "/a\nb", AppsRoot + "/a\x00b", AppsRoot + "/caf\u00e9", AppsRoot + "/" + strings.Repeat("a", 250)} {
		if err := ValidDeployPath(p, AppsRoot); err == nil {
			t.Errorf("ValidDeployPath(%q) accepted", p)
		}
	}
}

func TestValidComposeFile(t *testing.T) {
	for _, f := range []string{"docker-compose.yml", "compose.yaml", "docker-compose.prod.yml", "a_b.YML"[:0] + "a_b.yml"} {
		if err := ValidComposeFile(f); err != nil {
			t.Errorf("ValidComposeFile(%q): %v", f, err)
		}
	}
	for _, f := range []string{"", ".yml", ".env.yml", "-f.yml", "--file=x.yml", "compose.json", "dir/compose.yml", "../compose.yml",
		"/etc/compose.yml", "a b.yml", "a;b.yml", "$(id).yml", "compose.yml\n", "compose.yml.bak", strings.Repeat("a", 100) + ".yml"} {
		if err := ValidComposeFile(f); err == nil {
			t.Errorf("ValidComposeFile(%q) accepted", f)
		}
	}
}

func TestNamesSlugsDomains(t *testing.T) {
	for in, want := range map[string]string{
		"My Shop": "my-shop", "  Blog -- 2 ": "blog-2", "café": "caf", "日本": "", "A_B.C": "a-b-c", "--x--": "x",
		strings.Repeat("ab ", 30): strings.TrimRight(strings.Repeat("ab-", 14)[:40], "-"),
	} {
		if got := Slugify(in); got != want {
			t.Errorf("Slugify(%q) = %q, want %q", in, got, want)
		}
		if want != "" {
			if err := ValidSlug(want); err != nil {
				t.Errorf("slug %q of %q is not valid: %v", want, in, err)
			}
		}
	}
	for _, s := range []string{"", "-a", "a-", "A", "a_b", "a.b", strings.Repeat("a", 41), "a b"} {
		if ValidSlug(s) == nil {
			t.Errorf("ValidSlug(%q) accepted", s)
		}
	}
	for _, n := range []string{"", "   ", "a\nb", "a\x00", "a\u202eb", strings.Repeat("x", 101)} {
		if _, err := ValidAppName(n); err == nil {
			t.Errorf("ValidAppName(%q) accepted", n)
		}
	}
	if d, err := ValidDomain("primary domain", " Shop.Example.COM "); err != nil || d != "shop.example.com" {
		t.Errorf("ValidDomain: %q %v", d, err)
	}
	for _, d := range []string{"localhost", "192.0.2.1", "shop.example.com:443", "https://shop.example.com", "shop.example.com/x",
		"-a.example.com", "a_b.example.com", "*.example.com", "shop.example.com.", "a b.example.com", "$(id).example.com"} {
		if _, err := ValidDomain("domain", d); err == nil {
			t.Errorf("ValidDomain(%q) accepted", d)
		}
	}
	for n, want := range map[int]int{0: 5, 1: 1, 50: 50} {
		if got, err := ValidKeepReleases(n); err != nil || got != want {
			t.Errorf("ValidKeepReleases(%d) = %d, %v", n, got, err)
		}
	}
	for _, n := range []int{-1, 51, 1000} {
		if _, err := ValidKeepReleases(n); err == nil {
			t.Errorf("ValidKeepReleases(%d) accepted", n)
		}
	}
}

func TestEnvKeysAndValues(t *testing.T) {
	for _, k := range []string{"A", "_A", "DATABASE_URL", "a1_b2"} {
		if err := ValidEnvKey(k); err != nil {
			t.Errorf("ValidEnvKey(%q): %v", k, err)
		}
	}
	for _, k := range []string{"", "1A", "A-B", "A B", "A=B", "A.B", "$(id)", "A\n", "é", "COMPOSE_FILE", "compose_project_name", "DOCKER_HOST", strings.Repeat("A", 129)} {
		if err := ValidEnvKey(k); err == nil {
			t.Errorf("ValidEnvKey(%q) accepted", k)
		}
	}
	for _, v := range []string{"", "x", "a b (id) `id` ; \"'#= é", "tab\tok", strings.Repeat("v", 32<<10)} {
		if err := ValidEnvValue("K", v); err != nil {
			t.Errorf("ValidEnvValue(%.20q): %v", v, err)
		}
	}
	for _, v := range []string{"a\nb", "a\rb", "a\x00b", "\xff", strings.Repeat("v", 32<<10+1),
		"p@ss$word1", "x${HOME}y", `"S3cret-Pass"`, "'x'", " spaced ", "abc #tail", "abc\t#tail", "sec\x01ret", "a\x7f", "a\u0085"} {
		if err := ValidEnvValue("K", v); err == nil {
			t.Errorf("ValidEnvValue(%.20q) accepted", v)
		}
	}
	// The error says why.
	if err := ValidEnvValue("DB_PASSWORD", `"S3cret-Pass"`); err == nil || !strings.Contains(err.Error(), "DB_PASSWORD") || !strings.Contains(err.Error(), "quote") {
		t.Errorf("quoted value: %v", err)
	}
	if err := ValidEnvValue("K", "a$b"); err == nil || !strings.Contains(err.Error(), "variable reference") {
		t.Errorf("$ value: %v", err)
	}
}

package wire

import (
	"strings"
	"testing"
)

// One table for the rules the panel (deploy.ValidBranch, ValidEnvValue) and
// the agent (checkBranch, checkEnv) share.
func TestBranchProblem(t *testing.T) {
	for b, ok := range map[string]bool{
		"main": true, "feature/login": true, "release-2026.01": true, "é": true, "renovate/foo@2": true, "fix+1": true,
		"": false, "-x": false, "--upload-pack=x": false, "a\x00b": false, "\xff": false, "@": false, "a b": false,
		"a;b": false, "$(id)": false, "`id`": false, "a\nb": false, "../x": false, "x.lock": false, "a..b": false,
		"a@{1}": false, "HEAD": false, "a/": false, "/a": false, "a//b": false, "a\u200bb": false, strings.Repeat("a", 101): false,
	} {
		if got := BranchProblem(b) == ""; got != ok {
			t.Errorf("BranchProblem(%q) = %q", b, BranchProblem(b))
		}
	}
}

func TestIsCommitID(t *testing.T) {
	for c, ok := range map[string]bool{
		strings.Repeat("a", 40): true, "0123456789abcdef0123456789abcdef01234567": true,
		"": false, "abc1234": false, strings.Repeat("a", 64): false, strings.Repeat("A", 40): false,
		strings.Repeat("g", 40): false, "-" + strings.Repeat("a", 39): false,
	} {
		if IsCommitID(c) != ok {
			t.Errorf("IsCommitID(%q) = %v", c, !ok)
		}
	}
}

// Values docker compose would read back changed from a raw KEY=value line
// are refused, each with its reason.
func TestEnvValueProblem(t *testing.T) {
	for _, v := range []string{"", "x", "two words", "x=y#z", "a\tb", "it's", `say "hi" now`, "é ü", "p@ss#word", "100%", "a\\b", "`id`;(x)"} {
		if msg := EnvValueProblem(v); msg != "" {
			t.Errorf("EnvValueProblem(%q) = %q", v, msg)
		}
	}
	for v, want := range map[string]string{
		"a\nb": "line break", "a\rb": "line break", "a\x00b": "NUL", "sec\x01ret": "control", "a\x1bb": "control",
		"a\x7fb": "control", "a\u0085b": "control", "p@ss$word1": "$", "x${HOME}y": "$", "$": "$",
		" x": "whitespace", "x ": "whitespace", "\tx": "whitespace", "x\u00a0": "whitespace",
		`"quoted"`: "quote", `'x`: "quote", `x"`: "quote", "abc #tail": "#", "abc\t#tail": "#",
	} {
		if msg := EnvValueProblem(v); !strings.Contains(msg, want) {
			t.Errorf("EnvValueProblem(%q) = %q, want one about %q", v, msg, want)
		}
	}
}

package wire

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Checks that the panel and the agent both apply to a deployment's fields,
// so that what the panel accepts the agent accepts too. Each returns "" for
// a good value, or what is wrong with it.

// MaxBranchBytes bounds a branch name.
const MaxBranchBytes = 100

// branchShellMeta are characters git allows in branch names that UPanel
// refuses anyway: the agent never runs a shell, but a name that holds none of
// them stays inert wherever it is shown or copied.
const branchShellMeta = "$`;|&<>()'\""

// BranchProblem checks a branch name: what `git check-ref-format --branch`
// accepts, at most MaxBranchBytes bytes of valid UTF-8, not "@" (which git
// reads as HEAD in some commands), printable, and without shell
// metacharacters.
func BranchProblem(b string) string {
	switch {
	case b == "":
		return "the branch is required"
	case len(b) > MaxBranchBytes:
		return "the branch name must be at most 100 bytes"
	case !utf8.ValidString(b) || strings.ContainsRune(b, 0):
		return "the branch name must be valid UTF-8 text"
	case strings.HasPrefix(b, "-"):
		return "the branch name must not start with '-'"
	case b == "@" || !CheckRefFormatBranch(b):
		return "\"" + b + "\" is not a valid branch name (see git check-ref-format: no spaces, ~ ^ : ? * [ \\, .., @{, control characters, and no part starting with . or ending with .lock)"
	case strings.IndexFunc(b, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "the branch name must be printable (no control or invisible formatting characters)"
	case strings.ContainsAny(b, branchShellMeta):
		return "the branch name must not contain any of " + branchShellMeta + ": git allows them, but UPanel refuses shell metacharacters in names that reach a server"
	}
	return ""
}

// CheckRefFormatBranch is `git check-ref-format --branch NAME` run outside a
// repository (where @{-N} is not expanded): NAME may not start with '-' or
// be HEAD, and refs/heads/NAME must pass git's check_refname_format (refs.c).
// It is kept exactly to git's rules; a test compares it with the git binary.
func CheckRefFormatBranch(name string) bool {
	if strings.HasPrefix(name, "-") || name == "HEAD" {
		return false
	}
	ref := "refs/heads/" + name
	for _, comp := range strings.Split(ref, "/") {
		if comp == "" || comp[0] == '.' || strings.HasSuffix(comp, ".lock") {
			return false
		}
		var last byte
		for i := 0; i < len(comp); i++ {
			c := comp[i]
			switch {
			case c < ' ' || c == 0x7f, strings.IndexByte(" :?[\\^~*", c) >= 0:
				return false
			case c == '.' && last == '.':
				return false
			case c == '{' && last == '@':
				return false
			}
			last = c
		}
	}
	return !strings.HasSuffix(ref, ".")
}

// IsCommitID says whether s is a whole SHA-1 commit id: 40 lower-case
// hexadecimal digits. Abbreviated ids are refused (the agent fetches the
// exact commit), and so are SHA-256 ids (the agent's repositories are SHA-1).
func IsCommitID(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// EnvValueProblem checks an env value. Values are written raw to .env, one
// KEY=value line each, and must reach the container exactly as entered (and
// as the log maskers know them). Docker compose's .env parser changes some
// values, differently in v1 and v2, and no quoting is safe in both, so those
// are refused:
//   - $ starts a variable reference (${X}, and $X in v2), even in quotes;
//   - leading or trailing whitespace is trimmed, and surrounding quotes are
//     removed;
//   - " #" or a tab before # starts a comment that cuts the value;
//   - NUL, CR and LF end the line, and other control characters (but TAB)
//     are not text.
func EnvValueProblem(v string) string {
	switch {
	case strings.ContainsAny(v, "\x00\r\n"):
		return "contains a line break or NUL: .env files have no portable quoting, so each value is written raw on one KEY=value line"
	case strings.IndexFunc(v, func(r rune) bool { return r != '\t' && (r < ' ' || r == 0x7f || r >= 0x80 && r <= 0x9f) }) >= 0:
		return "contains a control character (only TAB is allowed)"
	case strings.Contains(v, "$"):
		return "contains $, which docker compose reads as a variable reference in .env files, so the container would get another value"
	case v != "" && (unicode.IsSpace(firstRune(v)) || unicode.IsSpace(lastRune(v))):
		return "starts or ends with whitespace, which docker compose strips from .env values"
	case v != "" && (strings.ContainsRune(`'"`, firstRune(v)) || strings.ContainsRune(`'"`, lastRune(v))):
		return "starts or ends with a quote (' or \"), which docker compose takes for quoting and removes from .env values"
	case strings.Contains(v, " #") || strings.Contains(v, "\t#"):
		return "contains a space or tab followed by #, where docker compose cuts a .env value as a comment"
	}
	return ""
}

func firstRune(s string) rune {
	r, _ := utf8.DecodeRuneInString(s)
	return r
}

func lastRune(s string) rune {
	r, _ := utf8.DecodeLastRuneInString(s)
	return r
}

// ShortCommit abbreviates a commit id to its first 12 digits, the form the
// panel, the agent's log lines and the CLI all show.
func ShortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

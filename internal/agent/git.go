package agent

// Git for deployments and repository checks. Every git command gets the same
// hardening: only the https and ssh transports, no hooks, no credential
// helpers, objects checked on the way in, no system or global config, no
// prompts, and a private temporary HOME. Credentials go to 0600 files in that
// 0700 directory (a private key for ssh, a username and password that an
// askpass script prints for https), never into argv, the environment or a
// URL, and the directory is removed when the command is done.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"upanel/internal/wire"
)

// gitCheckTimeout bounds a repository check.
const gitCheckTimeout = 30 * time.Second

// gitHardening comes before every git subcommand.
var gitHardening = []string{
	"-c", "protocol.allow=never",
	"-c", "protocol.https.allow=always",
	"-c", "protocol.ssh.allow=always",
	"-c", "protocol.file.allow=never",
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.fsmonitor=false",
	"-c", "transfer.fsckObjects=true",
	"-c", "credential.helper=",
	"-c", "submodule.recurse=false",
	"-c", "gc.autoDetach=false",
	"-c", "advice.detachedHead=false",
	// A redirect could lead git, and the credential, to another host.
	"-c", "http.followRedirects=false",
}

// gitRunner is the environment of git commands for one repository.
type gitRunner struct {
	url string
	tmp string   // private: HOME and the credential files
	env []string // beyond commandEnv
	// gitDir and workTree, when set, are a deployment's repository: a bare
	// repository in the agent's state dir (see repoDir) and the checkout.
	// Nothing in the checkout, which containers may bind-mount and write,
	// is read by git as its own: no .git/config, hooks or objects.
	gitDir, workTree string
}

func (g *gitRunner) args(args ...string) []string {
	a := append([]string{}, gitHardening...)
	if g.gitDir != "" {
		a = append(a, "--git-dir="+g.gitDir, "--work-tree="+g.workTree)
	}
	return append(a, args...)
}

// newGit prepares the credential files of src. cleanup removes them; call it
// whatever happens.
func (d *Deployer) newGit(src wire.GitSource, mask *masker) (*gitRunner, func(), error) {
	tmp, err := os.MkdirTemp(filepath.Join(d.stateDir, "tmp"), "git-")
	if err != nil {
		return nil, func() {}, fmt.Errorf("git: %w", err)
	}
	cleanup := func() { os.RemoveAll(tmp) }
	g := &gitRunner{url: src.URL, tmp: tmp, env: []string{
		"HOME=" + tmp, "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
	}}
	g.env = append(g.env, d.gitEnv...)
	if err := g.setCredential(src); err != nil {
		cleanup()
		return nil, func() {}, errors.New(mask.mask(err.Error()))
	}
	return g, cleanup, nil
}

// safePathRe matches the paths that go into GIT_SSH_COMMAND and the askpass
// script: the agent's own, but a shell reads them.
var safePathRe = regexp.MustCompile(`^/[A-Za-z0-9/._-]+$`)

func (g *gitRunner) setCredential(src wire.GitSource) error {
	if !safePathRe.MatchString(g.tmp) {
		return fmt.Errorf("the agent's state_dir %q must be a plain path (letters, digits, / . _ -) for git credentials", g.tmp)
	}
	write := func(name, content string) (string, error) {
		p := filepath.Join(g.tmp, name)
		return p, os.WriteFile(p, []byte(content), 0o600)
	}
	if kind, _ := gitURLKind(src.URL); kind == "ssh" {
		ssh, err := findCommand("ssh")
		if err != nil {
			return errors.New("git: ssh is not installed")
		}
		kh, err := write("known_hosts", normalizeLines(src.KnownHosts))
		if err != nil {
			return err
		}
		var key string
		if src.CredentialType == "ssh_key" {
			if key, err = write("id", normalizeLines(src.SSHPrivateKey)); err != nil {
				return err
			}
		}
		g.env = append(g.env, "GIT_SSH_COMMAND="+sshCommand(ssh, key, kh), "GIT_SSH_VARIANT=ssh")
		return nil
	}
	var user string
	switch src.CredentialType {
	case "token":
		user = src.Username
		if user == "" {
			user = "x-access-token"
		}
	case "basic":
		user = src.Username
	default:
		return nil
	}
	cat, err := findCommand("cat")
	if err != nil {
		return errors.New("git: cat is not installed")
	}
	u, err := write("username", user)
	if err != nil {
		return err
	}
	pw, err := write("password", src.Secret)
	if err != nil {
		return err
	}
	ru, err := url.Parse(src.URL)
	if err != nil || ru.Host == "" {
		return errors.New("git: the https URL has no host")
	}
	script := askpassScript(cat, u, pw, ru.Host, user)
	p := filepath.Join(g.tmp, "askpass")
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		return err
	}
	g.env = append(g.env, "GIT_ASKPASS="+p)
	return nil
}

// sshCommand is GIT_SSH_COMMAND: ssh with the one key given (or none), the
// pinned host keys only, no config files and no questions. Every path in it
// is the agent's own.
func sshCommand(ssh, keyFile, knownHosts string) string {
	parts := []string{shellQuote(ssh), "-F", "/dev/null"}
	if keyFile != "" {
		parts = append(parts, "-i", shellQuote(keyFile))
	}
	parts = append(parts, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile="+shellQuote(knownHosts),
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=30")
	return strings.Join(parts, " ")
}

// askpassScript prints the username or the password, by git's prompt, and
// only for the repository's host: "Username for 'https://<host>': " and
// "Password for 'https://<user>@<host>': " (host as in the URL, with its
// port). Any other prompt (another host, reached through a redirect or a
// rewritten URL) gets nothing and a failure, so the credential goes nowhere
// else. The host and user are quoted, so that they match literally.
func askpassScript(cat, userFile, passwordFile, host, user string) string {
	q := func(s string) string { return shellQuote(s) }
	return "#!/bin/sh\ncase \"$1\" in\n" +
		q("Username for 'https://"+host+"'") + "*) exec " + q(cat) + " " + q(userFile) + " ;;\n" +
		q("Password for 'https://"+user+"@"+host+"'") + "*|" + q("Password for 'https://"+host+"'") + "*) exec " +
		q(cat) + " " + q(passwordFile) + " ;;\n" +
		"*) echo 'upanel: refusing a credential prompt for another host' >&2; exit 1 ;;\nesac\n"
}

// normalizeLines ends every line with LF, as ssh wants of keys.
func normalizeLines(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// gitSecrets are what the log masks of a git source.
func gitSecrets(src wire.GitSource) []string {
	s := []string{src.Secret, strings.TrimSpace(src.SSHPrivateKey)}
	for line := range strings.Lines(src.SSHPrivateKey) {
		s = append(s, strings.TrimSpace(line))
	}
	return s
}

// --- checking sources ---

// transportRe matches git's <transport>::<address> form (ext::, fd::, ...).
var transportRe = regexp.MustCompile(`^[A-Za-z0-9+.-]*::`)

var scpURLRe = regexp.MustCompile(`^(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):[A-Za-z0-9._~/][!-~]*$`)

// gitURLKind returns "https" or "ssh" for a URL the agent fetches from:
// https://, ssh:// or scp-like user@host:path, nothing that git could take
// for an option or another transport, and no credentials.
func gitURLKind(raw string) (string, error) {
	bad := errors.New("the git URL must be https://host/path, ssh://[user@]host/path or user@host:path")
	if raw == "" || len(raw) > 1000 || strings.HasPrefix(raw, "-") || transportRe.MatchString(raw) ||
		strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '\\' }) {
		return "", bad
	}
	for _, scheme := range []string{"https", "ssh"} {
		if !strings.HasPrefix(strings.ToLower(raw), scheme+"://") {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || u.Opaque != "" || strings.HasPrefix(u.Hostname(), "-") || u.Hostname() == "" {
			return "", bad
		}
		if _, has := u.User.Password(); has || (scheme == "https" && u.User != nil) {
			return "", errors.New("the git URL must not hold credentials: use a git credential")
		}
		if u.User != nil && strings.HasPrefix(u.User.Username(), "-") {
			return "", bad
		}
		if u.Path == "" || u.Path == "/" {
			return "", bad
		}
		return scheme, nil
	}
	if strings.Contains(raw, "://") || !scpURLRe.MatchString(raw) {
		return "", bad
	}
	return "ssh", nil
}

// checkGitSource checks a source and its credential.
func checkGitSource(src wire.GitSource) error {
	kind, err := gitURLKind(src.URL)
	if err != nil {
		return err
	}
	oneLine := func(s string) bool { return !strings.ContainsAny(s, "\x00\r\n") }
	switch src.CredentialType {
	case "":
	case "ssh_key":
		if kind != "ssh" {
			return errors.New("an SSH key credential needs an ssh:// or user@host:path URL")
		}
		if !strings.Contains(src.SSHPrivateKey, "PRIVATE KEY") || strings.ContainsRune(src.SSHPrivateKey, 0) {
			return errors.New("the SSH credential holds no private key")
		}
	case "token", "basic":
		if kind != "https" {
			return fmt.Errorf("a %s credential needs an https:// URL", src.CredentialType)
		}
		if src.Secret == "" || !oneLine(src.Secret) || len(src.Secret) > 4096 {
			return fmt.Errorf("the %s credential's secret is empty or holds a line break", src.CredentialType)
		}
		if (src.CredentialType == "basic" && src.Username == "") || !oneLine(src.Username) || len(src.Username) > 200 {
			return errors.New("the credential's username is empty or holds a line break")
		}
	default:
		return errors.New("credential_type must be ssh_key, token or basic")
	}
	if kind == "ssh" {
		if !knownHostsLineRe.MatchString(src.KnownHosts) || strings.ContainsRune(src.KnownHosts, 0) {
			return errors.New("an SSH remote needs the git server's host key (known_hosts lines) to pin it")
		}
	}
	return nil
}

// knownHostsLineRe: at least one line that is not a comment.
var knownHostsLineRe = regexp.MustCompile(`(?m)^[ \t]*[^#\s]`)

// --- fetching and checking out ---

// gitCapture runs a git command that prints a value, without logging it.
func gitCapture(ctx context.Context, g *gitRunner, dir string, args ...string) (string, error) {
	var out, errOut cappedBuffer
	out.max, errOut.max = 1<<20, 16<<10
	err := runProc(ctx, procSpec{name: "git", args: g.args(args...), dir: dir, env: g.env}, &out, &errOut)
	if err != nil {
		if msg := trimOutput(errOut.Bytes(), 300); msg != "" {
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, msg)
		}
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	return strings.TrimSpace(out.String()), nil
}

// repoDir is the bare repository of a project's deployments, in the
// agent's state dir: out of the deploy tree, which containers may
// bind-mount, so that none of git's config, hooks or objects can be planted
// there.
func (d *Deployer) repoDir(project string) string {
	return filepath.Join(d.stateDir, "repos", project+".git")
}

// currentHead is the commit checked out in g's work tree, or "".
func (d *Deployer) currentHead(ctx context.Context, g *gitRunner, dir string) string {
	if fi, err := os.Lstat(g.gitDir); err != nil || !fi.IsDir() {
		return legacyHead(dir)
	}
	head, err := gitCapture(ctx, g, dir, "rev-parse", "--verify", "-q", "HEAD^{commit}")
	if err != nil || !commitRe.MatchString(head) {
		return ""
	}
	return head
}

// legacyHead is the detached HEAD of the .git an older agent kept inside
// dir, or "". It is read as text, never by git: that .git is not trusted.
func legacyHead(dir string) string {
	if fi, err := os.Lstat(filepath.Join(dir, ".git")); err != nil || !fi.IsDir() {
		return ""
	}
	f, err := os.OpenFile(filepath.Join(dir, ".git", "HEAD"), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 100))
	if h := strings.TrimSpace(string(b)); commitRe.MatchString(h) {
		return h
	}
	return ""
}

func hasCommit(ctx context.Context, g *gitRunner, dir, commit string) bool {
	_, err := gitCapture(ctx, g, dir, "cat-file", "-e", commit+"^{commit}")
	return err == nil
}

// checkout fetches the branch's head, or commit if given, into dir and
// checks it out. It returns the commit and its subject line.
func (d *Deployer) checkout(ctx context.Context, dep *deployment, g *gitRunner, dir, branch, commit string, p *progress) (string, string, error) {
	step := func(show []string, args ...string) error {
		return d.runStep(ctx, dep, procSpec{name: "git", args: g.args(args...), show: append([]string{"git"}, show...), dir: dir, env: g.env})
	}
	if g.gitDir == "" {
		return "", "", errors.New("internal error: no repository for the checkout")
	}
	// A .git in the tree is an older agent's repository, or planted by a
	// container: git never uses it (g.args names the repository), and it
	// goes, so that nothing mistakes it for the checkout's.
	if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
		dep.addLine("==> removing " + filepath.Join(dir, ".git") + ": the repository lives in the agent's state dir now")
		if err := os.RemoveAll(filepath.Join(dir, ".git")); err != nil {
			return "", "", fmt.Errorf("remove %s/.git: %w", dir, err)
		}
	}
	fi, err := os.Lstat(g.gitDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		dep.addLine("==> new repository for " + dir)
		if err := os.MkdirAll(filepath.Dir(g.gitDir), 0o700); err != nil {
			return "", "", err
		}
		err := d.runStep(ctx, dep, procSpec{name: "git", args: append(slices.Clone(gitHardening), "init", "-q", "--bare", "--", g.gitDir),
			show: []string{"git", "init", "--bare", g.gitDir}, dir: filepath.Dir(g.gitDir), env: g.env})
		if err != nil {
			return "", "", err
		}
		if err := os.Chmod(g.gitDir, 0o700); err != nil {
			return "", "", err
		}
	case err != nil:
		return "", "", err
	case !fi.IsDir():
		return "", "", fmt.Errorf("%s is not a directory", g.gitDir)
	}
	remoteRef := "refs/remotes/origin/" + branch
	branchSpec := "+refs/heads/" + branch + ":" + remoteRef
	shallow := func() bool {
		_, err := os.Stat(filepath.Join(g.gitDir, "shallow"))
		return err == nil
	}
	switch {
	case commit == "":
		dep.addLine("==> fetching branch " + branch + " from " + g.url)
		if err := step([]string{"fetch", "--depth", "50", g.url, branchSpec},
			"fetch", "--no-tags", "--depth", "50", "--", g.url, branchSpec); err != nil {
			return "", "", err
		}
		head, err := gitCapture(ctx, g, dir, "rev-parse", "--verify", "-q", remoteRef+"^{commit}")
		if err != nil || !commitRe.MatchString(head) {
			return "", "", fmt.Errorf("branch %s has no commit", branch)
		}
		commit = head
	case hasCommit(ctx, g, dir, commit):
		dep.addLine("==> commit " + commit + " is already fetched")
	default:
		dep.addLine("==> fetching commit " + commit + " from " + g.url)
		err := step([]string{"fetch", "--depth", "50", g.url, commit}, "fetch", "--no-tags", "--depth", "50", "--", g.url, commit)
		if err != nil && ctx.Err() == nil {
			dep.addLine("==> the server did not send the commit by itself; fetching the whole branch " + branch)
			args := []string{"fetch", "--no-tags"}
			if shallow() {
				args = append(args, "--unshallow")
			}
			args = append(args, "--", g.url, branchSpec)
			err = step([]string{"fetch", g.url, branchSpec}, args...)
		}
		if ctx.Err() != nil {
			return "", "", context.Cause(ctx)
		}
		if err != nil {
			return "", "", err
		}
		if !hasCommit(ctx, g, dir, commit) {
			return "", "", fmt.Errorf("commit %s is not in branch %s of the repository", commit, branch)
		}
	}
	if err := ctx.Err(); err != nil {
		return "", "", context.Cause(ctx)
	}
	// From here the tree may change: an agent that dies before the end
	// puts it back when it starts again.
	if err := dep.changeRecord(d.journal, func(r *journalRecord) {
		if r.Restore != nil {
			r.Restore.CheckedOut = true
		}
	}); err != nil {
		return "", "", fmt.Errorf("deploy journal: %w", err)
	}
	p.checkedOut = true
	if err := step([]string{"checkout", "--force", "--detach", commit}, "checkout", "-q", "--force", "--detach", commit, "--"); err != nil {
		return "", "", err
	}
	head, err := gitCapture(ctx, g, dir, "rev-parse", "--verify", "HEAD^{commit}")
	if err != nil {
		return "", "", err
	}
	if head != commit {
		return "", "", fmt.Errorf("checked out %s instead of %s", head, commit)
	}
	msg, err := gitCapture(ctx, g, dir, "log", "-1", "--format=%s", commit, "--")
	if err != nil {
		return "", "", err
	}
	return commit, truncateRunes(dep.mask.mask(cleanLine(msg)), 500), nil
}

// --- checking a repository ---

func (d *Deployer) handleGitCheck(w http.ResponseWriter, r *http.Request) {
	var gc wire.GitCheck
	if !readJSON(w, r, &gc) {
		return
	}
	mask := newMasker(gitSecrets(gc.Git))
	if err := checkGitSource(gc.Git); err != nil {
		writeJSON(w, http.StatusBadRequest, wire.Error{Error: mask.mask(err.Error())})
		return
	}
	if gc.Branch != "" {
		if err := checkBranch(gc.Branch); err != nil {
			writeJSON(w, http.StatusBadRequest, wire.Error{Error: err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, d.gitCheck(r.Context(), gc, mask))
}

// gitCheck runs git ls-remote with the source's credential.
func (d *Deployer) gitCheck(ctx context.Context, gc wire.GitCheck, mask *masker) wire.GitCheckResult {
	ctx, cancel := context.WithTimeout(ctx, gitCheckTimeout)
	defer cancel()
	g, cleanup, err := d.newGit(gc.Git, mask)
	defer cleanup()
	if err != nil {
		return wire.GitCheckResult{Error: err.Error()}
	}
	args := []string{"ls-remote", "--heads", "--", g.url}
	if gc.Branch != "" {
		args = append(args, "refs/heads/"+gc.Branch)
	}
	var out, errOut cappedBuffer
	out.max, errOut.max = 4<<20, 16<<10
	err = runProc(ctx, procSpec{name: "git", args: g.args(args...), dir: g.tmp, env: g.env}, &out, &errOut)
	if err != nil {
		msg := trimOutput(errOut.Bytes(), 600)
		switch {
		case ctx.Err() != nil:
			msg = fmt.Sprintf("git ls-remote did not answer within %s", gitCheckTimeout)
		case msg == "":
			msg = "git ls-remote: " + err.Error()
		}
		return wire.GitCheckResult{Error: mask.mask(msg)}
	}
	if gc.Branch == "" {
		return wire.GitCheckResult{OK: true}
	}
	for line := range bytes.Lines(out.Bytes()) {
		sha, ref, _ := strings.Cut(strings.TrimSpace(string(line)), "\t")
		if ref == "refs/heads/"+gc.Branch && commitRe.MatchString(sha) {
			return wire.GitCheckResult{OK: true, Commit: sha}
		}
	}
	return wire.GitCheckResult{Error: "the repository has no branch " + gc.Branch}
}

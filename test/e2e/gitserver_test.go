package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"upanel/internal/testhost"
)

// Git servers for deployment tests: an SSH one on a test host of its own,
// and an HTTPS one with a token, in the test process on the network's
// gateway. Test hosts reach both over the test's Docker network; the machine
// pushes to the SSH one through its published port 22.

// sshGitServer is a Debian test host serving repositories over SSH, set up
// as its admin would: a "git" user whose login shell is git-shell, bare
// repositories under /srv/git, and authorized keys. Deploy keys are
// read-only, as on GitHub; the machine pushes with a key of its own.
type sshGitServer struct {
	Host *testhost.Host
	// KnownHosts is the line that pins the server's host key for a client
	// on the test network: "<ip> ssh-ed25519 AAAA…".
	KnownHosts string

	pushPub   string   // its public key
	pushEnv   []string // GIT_SSH_COMMAND for pushing from the machine
	pushAddr  string   // 127.0.0.1:PORT, the published port 22
	mu        sync.Mutex
	deployKey []string // authorized_keys lines of the deploy keys
}

// gitShellReadOnly is the forced command of deploy keys: git-shell runs it
// from ~/git-shell-commands, and it lets only fetches through.
const gitShellReadOnly = `#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in
"git-upload-pack "*|"git upload-pack "*) exec /usr/bin/git-shell -c "$SSH_ORIGINAL_COMMAND" ;;
esac
echo "this deploy key is read-only" >&2
exit 1
`

// newSSHGitServer boots the git server's host on network and sets it up.
func newSSHGitServer(t testing.TB, network *testhost.Network) *sshGitServer {
	t.Helper()
	needCommands(t, "git", "ssh")
	h := testhost.Boot(t, network, testhost.Options{})
	s := &sshGitServer{Host: h, pushAddr: h.SSHAddr}

	dir := t.TempDir()
	priv, pub := newSSHKey(t)
	s.pushPub = pub
	writeFile(t, dir, "push_key", priv, 0o600)

	hostKey := strings.Fields(h.HostKey(t)) // "ssh-ed25519 AAAA… root@host"
	if len(hostKey) < 2 {
		t.Fatalf("host key of %s: %q", h.Name, hostKey)
	}
	s.KnownHosts = h.IP + " " + hostKey[0] + " " + hostKey[1]
	_, port, err := net.SplitHostPort(s.pushAddr)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "known_hosts", "[127.0.0.1]:"+port+" "+hostKey[0]+" "+hostKey[1]+"\n", 0o600)
	s.pushEnv = []string{"GIT_SSH_COMMAND=ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes" +
		" -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null" +
		" -o UserKnownHostsFile=" + shellQuote(filepath.Join(dir, "known_hosts")) +
		" -i " + shellQuote(filepath.Join(dir, "push_key"))}

	h.Root(t, `set -e
useradd --system --user-group --home-dir /srv/git --create-home --shell /usr/bin/git-shell git
usermod -p '*' git # no password, but not locked
install -d -o git -g git -m 700 /srv/git/.ssh
install -d -o root -g root -m 755 /srv/git/git-shell-commands
cat > /srv/git/git-shell-commands/readonly <<'EOF'
`+gitShellReadOnly+`EOF
chmod 755 /srv/git/git-shell-commands/readonly
`)
	s.writeAuthorizedKeys(t)
	return s
}

// authorize adds a deploy key (an authorized_keys public key, such as a git
// credential's public_key): it may fetch every repository, and push none.
func (s *sshGitServer) authorize(t testing.TB, publicKey string) {
	t.Helper()
	f := strings.Fields(publicKey)
	if len(f) < 2 {
		t.Fatalf("authorize: not a public key: %q", publicKey)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deployKey = append(s.deployKey, `restrict,command="readonly" `+f[0]+" "+f[1])
	s.writeAuthorizedKeys(t)
}

func (s *sshGitServer) writeAuthorizedKeys(t testing.TB) {
	t.Helper()
	keys := "restrict " + s.pushPub + " machine-push\n"
	for _, k := range s.deployKey {
		keys += k + "\n"
	}
	if out, err := s.Host.Exec(t, keys, "sh", "-c",
		"umask 077 && cat > /srv/git/.ssh/authorized_keys.new && chown git:git /srv/git/.ssh/authorized_keys.new && mv /srv/git/.ssh/authorized_keys.new /srv/git/.ssh/authorized_keys"); err != nil {
		t.Fatalf("write authorized_keys on %s: %v\n%s", s.Host.Name, err, out)
	}
}

// serve creates the bare repository /srv/git/<name>.git, pushes r there and
// after each of r's commits, and returns the URL that hosts on the network
// clone: ssh://git@<ip>/srv/git/<name>.git.
func (s *sshGitServer) serve(t testing.TB, r *appRepo) string {
	t.Helper()
	path := "/srv/git/" + r.Name + ".git"
	s.Host.Root(t, fmt.Sprintf("set -e\ngit init --quiet --bare --initial-branch=main %s\nchown -R git:git %s\n", path, path))
	r.with(t).addMirror("ssh://git@"+s.pushAddr+path, s.pushEnv)
	return "ssh://git@" + s.Host.IP + path
}

// scpURL is the scp-like form of a served repository's URL: git@<ip>:/srv/git/<name>.git.
func (s *sshGitServer) scpURL(name string) string {
	return "git@" + s.Host.IP + ":/srv/git/" + name + ".git"
}

// logins returns sshd's "Accepted publickey for git …" journal lines, which
// name the key's fingerprint (ssh-keygen -lf of the public key).
func (s *sshGitServer) logins(t testing.TB) []string {
	t.Helper()
	out, err := s.Host.Exec(t, "", "sh", "-c", "journalctl --no-pager -o cat -u ssh | grep 'Accepted publickey for git ' || true")
	if err != nil {
		t.Fatalf("journal of %s: %v", s.Host.Name, err)
	}
	var ls []string
	for l := range strings.Lines(out) {
		if l = strings.TrimSpace(l); l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// newSSHKey returns a new ed25519 key pair: the private key in OpenSSH PEM
// form, and the public key as an authorized_keys line.
func newSSHKey(t testing.TB) (private, public string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// shellQuote quotes s for sh, which runs GIT_SSH_COMMAND.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// httpsGitServer serves repositories over smart HTTP (git http-backend as a
// CGI program) behind TLS with a certificate of a test CA, and lets only
// requests with the token in, as the password of HTTP Basic auth. It serves
// fetches only: without REMOTE_USER, http-backend refuses pushes.
type httpsGitServer struct {
	URL   string // https://<ip>:<port>
	CAPEM []byte // the test CA's certificate, for trustCA
	Token string
	// User, when set, is the only username accepted with the token; else
	// any is, as GitHub does with "x-access-token".
	User string

	root   string // GIT_PROJECT_ROOT: a symlink per served repository
	stderr syncBuffer
	mu     sync.Mutex
	reqs   []gitRequest
}

// gitRequest is what httpsGitServer saw of one request.
type gitRequest struct {
	Method string
	URI    string // path and query, as sent
	Auth   bool   // an Authorization header was present
	User   string // its Basic username
	Status int
}

// newHTTPSGitServer starts the server on ip (the network's gateway, where
// test hosts reach it; or 127.0.0.1), with a fresh CA whose certificate
// covers ip. It stops at cleanup.
func newHTTPSGitServer(t testing.TB, ip, token string) *httpsGitServer {
	t.Helper()
	needCommands(t, "git")
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("newHTTPSGitServer: %q is not an IP address", ip)
	}
	caPEM, cert := newTestCA(t, addr)
	s := &httpsGitServer{CAPEM: caPEM, Token: token, root: t.TempDir()}

	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Dir:  s.root,
		Env: []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"},
		Stderr: &s.stderr,
		Logger: log.New(&s.stderr, "cgi: ", 0),
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := gitRequest{Method: req.Method, URI: req.RequestURI}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			rec.Status = sw.status
			s.mu.Lock()
			s.reqs = append(s.reqs, rec)
			s.mu.Unlock()
		}()
		_, rec.Auth = req.Header["Authorization"]
		user, pass, ok := req.BasicAuth()
		rec.User = user
		if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(s.Token)) != 1 || (s.User != "" && user != s.User) {
			sw.Header().Set("WWW-Authenticate", `Basic realm="upanel test git", charset="UTF-8"`)
			http.Error(sw, "authentication required", http.StatusUnauthorized)
			return
		}
		// http-backend needs neither the token nor, as a CGI program, a
		// chunked body (git sends one past http.postBuffer).
		req.Header.Del("Authorization")
		if len(req.TransferEncoding) > 0 {
			body, err := io.ReadAll(io.LimitReader(req.Body, 256<<20))
			if err != nil {
				http.Error(sw, err.Error(), http.StatusBadRequest)
				return
			}
			req.Body, req.ContentLength, req.TransferEncoding = io.NopCloser(bytes.NewReader(body)), int64(len(body)), nil
		}
		backend.ServeHTTP(sw, req)
	}))
	srv.Listener.Close() // a listener on 127.0.0.1 that NewUnstartedServer made
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(&s.stderr, "http: ", 0)
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("https git server %s: requests %+v\nstderr:\n%s", s.URL, s.requests(), tailLines(s.stderr.String(), 50))
		}
	})
	s.URL = "https://" + ln.Addr().String()
	return s
}

// serve serves r's origin (as it is: every commit shows at once) and returns
// its URL, https://<ip>:<port>/<name>.git.
func (s *httpsGitServer) serve(t testing.TB, r *appRepo) string {
	t.Helper()
	if err := os.Symlink(r.Bare, filepath.Join(s.root, r.Name+".git")); err != nil {
		t.Fatal(err)
	}
	return s.URL + "/" + r.Name + ".git"
}

// requests returns what the server saw, in order.
func (s *httpsGitServer) requests() []gitRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gitRequest(nil), s.reqs...)
}

// checkTokenNotInURLs fails the test if the token showed in any request's
// path or query: it belongs in the Authorization header only.
func (s *httpsGitServer) checkTokenNotInURLs(t testing.TB) {
	t.Helper()
	for _, r := range s.requests() {
		if strings.Contains(r.URI, s.Token) || strings.Contains(r.User, s.Token) {
			t.Errorf("the token was sent in a URL or as the username: %s %s (user %q)", r.Method, r.URI, r.User)
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newTestCA makes a CA and a server certificate for ip signed by it, valid
// for a day. It returns the CA's certificate in PEM.
func newTestCA(t testing.TB, ip netip.Addr) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "UPanel test CA " + randomHex(4)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: ip.String()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{ip.AsSlice()},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// trustCA installs a CA certificate into host's system trust store, as the
// owner of a private git server would on their servers.
func trustCA(t testing.TB, host *testhost.Host, caPEM []byte) {
	t.Helper()
	if out, err := host.Exec(t, string(caPEM), "sh", "-c",
		"cat > /usr/local/share/ca-certificates/upanel-test.crt && update-ca-certificates"); err != nil {
		t.Fatalf("trust the test CA on %s: %v\n%s", host.Name, err, out)
	}
}

// TestHTTPSGitServer checks the HTTPS git server with the machine's git, on
// 127.0.0.1, without Docker.
func TestHTTPSGitServer(t *testing.T) {
	r := newAppRepo(t, testhost.FreePort(t))
	token := "tok-" + randomHex(16)
	s := newHTTPSGitServer(t, "127.0.0.1", token)
	url := s.serve(t, r)
	dir := t.TempDir()
	writeFile(t, dir, "ca.pem", string(s.CAPEM), 0o644)
	writeFile(t, dir, "askpass", "#!/bin/sh\ncase \"$1\" in Username*) echo x-access-token ;; *) cat \"$(dirname \"$0\")/token\" ;; esac\n", 0o700)
	env := []string{"GIT_SSL_CAINFO=" + filepath.Join(dir, "ca.pem"), "GIT_ASKPASS=" + filepath.Join(dir, "askpass")}

	// Without a token, and with a wrong one: refused.
	if out, err := runGit(dir, []string{"GIT_SSL_CAINFO=" + filepath.Join(dir, "ca.pem")}, "clone", "--quiet", url, "none"); err == nil {
		t.Fatalf("cloned without a token: %s", out)
	}
	writeFile(t, dir, "token", "wrong-"+randomHex(8)+"\n", 0o600)
	if _, err := runGit(dir, env, "clone", "--quiet", url, "wrong"); err == nil || !strings.Contains(err.Error(), "Authentication failed") {
		t.Fatalf("clone with a wrong token: %v", err)
	}
	// Nor does a client that does not trust the CA get anywhere.
	if _, err := runGit(dir, []string{"GIT_ASKPASS=" + filepath.Join(dir, "askpass")}, "clone", "--quiet", url, "untrusted"); err == nil {
		t.Fatal("cloned without trusting the CA")
	}

	writeFile(t, dir, "token", token+"\n", 0o600)
	if out, err := runGit(dir, env, "clone", "--quiet", url, "good"); err != nil {
		t.Fatalf("clone with the token: %v\n%s", err, out)
	}
	v2 := r.release("v2")
	if out, err := runGit(filepath.Join(dir, "good"), env, "pull", "--quiet", "--ff-only"); err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	if got, _ := runGit(filepath.Join(dir, "good"), nil, "rev-parse", "HEAD"); strings.TrimSpace(got) != v2 {
		t.Fatalf("pulled %s, want %s", got, v2)
	}
	// Fetches only.
	if _, err := runGit(filepath.Join(dir, "good"), env, "push", "--quiet", "origin", "HEAD:refs/heads/evil"); err == nil {
		t.Fatal("pushed over HTTPS")
	}

	reqs := s.requests()
	var anonymous401, authed200 bool
	for _, q := range reqs {
		anonymous401 = anonymous401 || (!q.Auth && q.Status == http.StatusUnauthorized)
		authed200 = authed200 || (q.Auth && q.Status == http.StatusOK && q.User == "x-access-token")
	}
	if !anonymous401 || !authed200 {
		t.Errorf("requests: %+v", reqs)
	}
	s.checkTokenNotInURLs(t)

	// A client of its own: the CA's certificate verifies the server's.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM) {
		t.Fatal("bad CA PEM")
	}
	c := http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", url+"/info/refs?service=git-upload-pack", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("anonymous: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req.SetBasicAuth("anyone", token)
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("refs/heads/main")) {
		t.Errorf("with the token: %d %q", resp.StatusCode, b)
	}
}

// TestGitServers boots an app host and an SSH git server, serves the sample
// app from both git servers, clones it on the app host over SSH (a deploy
// key, a pinned host key) and HTTPS (a token, the private CA trusted), and
// runs it there with docker-compose, reaching it from the machine.
func TestGitServers(t *testing.T) {
	testhost.Available(t)
	network := testhost.NewNetwork(t)
	port := testhost.FreePort(t)
	app := testhost.Boot(t, network, testhost.Options{SamePorts: []int{port}})
	gitHost := newSSHGitServer(t, network)
	r := newAppRepo(t, port)
	token := "tok-" + randomHex(16)
	web := newHTTPSGitServer(t, network.Gateway, token)
	httpsURL := web.serve(t, r)
	sshURL := gitHost.serve(t, r)
	if want := "ssh://git@" + gitHost.Host.IP + "/srv/git/app.git"; sshURL != want {
		t.Errorf("ssh URL %s, want %s", sshURL, want)
	}
	if !strings.HasPrefix(gitHost.KnownHosts, gitHost.Host.IP+" ssh-ed25519 AAAA") {
		t.Errorf("known_hosts line %q", gitHost.KnownHosts)
	}
	v1 := r.head()

	// The credentials, as the agent would get them: a deploy key whose
	// public half the git server's admin authorized, a known_hosts line, a
	// token. They go to the app host on stdin, never in argv.
	priv, pub := newSSHKey(t)
	gitHost.authorize(t, pub)
	put := func(path, content string) {
		t.Helper()
		if out, err := app.Exec(t, content, "sh", "-c", "umask 077 && mkdir -p /root/e2e && cat > "+path); err != nil {
			t.Fatalf("write %s: %v\n%s", path, err, out)
		}
	}
	put("/root/e2e/deploy_key", priv)
	put("/root/e2e/known_hosts", gitHost.KnownHosts+"\n")
	put("/root/e2e/token", token+"\n")
	put("/root/e2e/askpass", "#!/bin/sh\ncase \"$1\" in Username*) echo x-access-token ;; *) cat /root/e2e/token ;; esac\n")
	app.Root(t, "chmod 700 /root/e2e/askpass\n")
	sshEnvWith := func(knownHosts string) string {
		return "export GIT_SSH_COMMAND='ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes" +
			" -o GlobalKnownHostsFile=/dev/null -o UserKnownHostsFile=" + knownHosts + " -i /root/e2e/deploy_key'\n"
	}
	sshEnv := sshEnvWith("/root/e2e/known_hosts")
	rev := func(dir string) string {
		t.Helper()
		out, err := app.Exec(t, "", "git", "-C", dir, "rev-parse", "HEAD")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}

	t.Run("ssh", func(t *testing.T) {
		app.Root(t, sshEnv+"git clone --quiet "+sshURL+" /root/e2e/ssh\n")
		if got := rev("/root/e2e/ssh"); got != v1 {
			t.Errorf("cloned %s over SSH, want %s", got, v1)
		}
		// The scp-like form reaches the same repository.
		if out := app.Root(t, sshEnv+"git ls-remote "+gitHost.scpURL("app")+" refs/heads/main\n"); !strings.HasPrefix(out, v1) {
			t.Errorf("ls-remote of the scp-like URL: %q", out)
		}
		// The deploy key reads only.
		out, err := app.Exec(t, sshEnv+"cd /root/e2e/ssh && git push origin HEAD:refs/heads/evil 2>&1\n", "bash", "-s")
		if err == nil || !strings.Contains(out, "read-only") {
			t.Errorf("push with the deploy key: %v\n%s", err, out)
		}
		// The host key is checked: a known_hosts without it refuses.
		out, err = app.Exec(t, sshEnvWith("/dev/null")+"git ls-remote "+sshURL+" 2>&1\n", "bash", "-s")
		if err == nil || !strings.Contains(out, "Host key verification failed") {
			t.Errorf("ls-remote without the host key: %v\n%s", err, out)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
		if err != nil {
			t.Fatal(err)
		}
		var seen bool
		for _, l := range gitHost.logins(t) {
			seen = seen || strings.Contains(l, ssh.FingerprintSHA256(k))
		}
		if !seen {
			t.Errorf("no login with the deploy key %s in the git server's journal: %q", ssh.FingerprintSHA256(k), gitHost.logins(t))
		}
	})

	t.Run("https", func(t *testing.T) {
		// Before the CA is trusted, TLS fails.
		if out, err := app.Exec(t, "", "env", "GIT_ASKPASS=/root/e2e/askpass", "git", "ls-remote", httpsURL); err == nil {
			t.Fatalf("ls-remote before the CA is trusted: %s", out)
		}
		trustCA(t, app, web.CAPEM)
		if out, err := app.Exec(t, "", "env", "GIT_TERMINAL_PROMPT=0", "git", "ls-remote", httpsURL); err == nil {
			t.Fatalf("ls-remote without the token: %s", out)
		}
		app.Root(t, "GIT_ASKPASS=/root/e2e/askpass GIT_TERMINAL_PROMPT=0 git clone --quiet "+httpsURL+" /root/e2e/https\n")
		if got := rev("/root/e2e/https"); got != v1 {
			t.Errorf("cloned %s over HTTPS, want %s", got, v1)
		}
		if cfg := app.Root(t, "cat /root/e2e/https/.git/config\n"); strings.Contains(cfg, token) {
			t.Errorf("the token is in the clone's config:\n%s", cfg)
		}
		web.checkTokenNotInURLs(t)
		var authed bool
		for _, q := range web.requests() {
			authed = authed || (q.Auth && q.Status == http.StatusOK)
		}
		if !authed {
			t.Errorf("no authenticated request: %+v", web.requests())
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("compose", func(t *testing.T) {
		r := r.with(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		compose := "cd /root/e2e/ssh && docker-compose -p e2e-sample "
		put("/root/e2e/ssh/.env", "GREETING=Grüß Gott\n")
		app.Root(t, compose+"up -d --build 2>&1\n")
		if got := appAnswer(t, addr, "from v1", time.Minute); got != "hello Grüß Gott from v1" {
			t.Errorf("the app answered %q", got)
		}
		waitFor(t, "the healthcheck to pass", time.Minute, func() bool {
			out, _ := app.Exec(t, "", "sh", "-c", compose+"ps -q web | xargs docker inspect --format '{{.State.Health.Status}}'")
			return strings.TrimSpace(out) == "healthy"
		})

		// A new commit reaches the SSH server; its slow build step prints
		// its progress into the build output.
		v2 := r.slowRelease("v2", 2)
		app.Root(t, sshEnv+"cd /root/e2e/ssh && git pull --quiet --ff-only\n")
		if got := rev("/root/e2e/ssh"); got != v2 {
			t.Fatalf("pulled %s, want %s", got, v2)
		}
		out := app.Root(t, compose+"up -d --build 2>&1\n")
		if !strings.Contains(out, "slow build step 2/2") {
			t.Errorf("the slow step's progress is not in the build output:\n%s", out)
		}
		if got := appAnswer(t, addr, "from v2", time.Minute); got != "hello Grüß Gott from v2" {
			t.Errorf("the app answered %q", got)
		}

		// Broken commits fail with the errors the deployment tests expect.
		for _, c := range []struct {
			commit  func() string
			command string
			wantErr string
		}{
			{r.breakCompose, "up -d --build", brokenComposeError},
			{r.breakComposeYAML, "up -d --build", brokenYAMLError},
			{r.breakBuild, "build", brokenBuildError},
		} {
			sha := c.commit()
			app.Root(t, sshEnv+"cd /root/e2e/ssh && git pull --quiet --ff-only\n")
			if got := rev("/root/e2e/ssh"); got != sha {
				t.Fatalf("pulled %s, want %s", got, sha)
			}
			out, err := app.Exec(t, "", "sh", "-c", compose+c.command+" 2>&1")
			if err == nil || !strings.Contains(out, c.wantErr) {
				t.Errorf("docker-compose %s: %v, want an error with %q:\n%s", c.command, err, c.wantErr, out)
			}
		}
		// The running release is untouched.
		if got := appAnswer(t, addr, "from v2", time.Minute); got != "hello Grüß Gott from v2" {
			t.Errorf("the app answered %q", got)
		}
	})
}

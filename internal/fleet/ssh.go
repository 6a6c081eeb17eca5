package fleet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"upanel/internal/store"
)

// errHostKeyChanged means the server presented a host key that is not pinned:
// the server was reinstalled, or someone is in the middle.
var errHostKeyChanged = errors.New("the server's SSH host key does not match the pinned key")

// hostKeyCheck accepts exactly the pinned keys. With none pinned it refuses
// everything: a first contact goes through scanHostKeys and the user.
func hostKeyCheck(pinned []string, seen *string) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
		for _, p := range pinned {
			if p == line {
				return nil
			}
		}
		if seen != nil {
			*seen = key.Type() + " " + ssh.FingerprintSHA256(key)
		}
		return errHostKeyChanged
	}
}

// dialSSH connects to a server as user with auth, checking the host key pin.
func dialSSH(ctx context.Context, srv *store.Server, user string, auth []ssh.AuthMethod, check ssh.HostKeyCallback) (*ssh.Client, error) {
	addr := net.JoinHostPort(srv.Host, strconv.Itoa(srv.Port))
	cfg := &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: check, Timeout: 20 * time.Second}
	d := net.Dialer{Timeout: 20 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{}) // handshake done; commands bound themselves
	return ssh.NewClient(c, chans, reqs), nil
}

// remote is an SSH connection to a server, used by jobs to run fixed
// commands and upload files.
type remote struct {
	client *ssh.Client
	log    func(line string)
}

// runQuiet is run that stops logging output at the line marker: what follows
// (a certificate) is for the caller, not the job log.
func (r *remote) runQuiet(ctx context.Context, command string, stdin []byte, marker string) (string, error) {
	log, quiet := r.log, false
	q := &remote{client: r.client, log: func(l string) {
		if l == marker {
			quiet = true
		}
		if !quiet && log != nil {
			log(l)
		}
	}}
	return q.run(ctx, command, stdin)
}

// run runs a fixed command. Its stdin is data, never part of the command; its
// output goes to the log line by line. A nonzero exit is an error with the
// last lines of output.
func (r *remote) run(ctx context.Context, command string, stdin []byte) (string, error) {
	sess, err := r.client.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	var out bytes.Buffer
	pr, pw := io.Pipe()
	sess.Stdout, sess.Stderr = pw, pw
	if stdin != nil {
		sess.Stdin = bytes.NewReader(stdin)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if r.log != nil {
				r.log(sc.Text())
			}
		}
		io.Copy(io.Discard, pr)
	}()
	if err := sess.Start(command); err != nil {
		pw.Close()
		<-done
		return "", err
	}
	waited := make(chan error, 1)
	go func() { waited <- sess.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		sess.Signal(ssh.SIGTERM)
		sess.Close()
		err = ctx.Err()
	}
	pw.Close()
	<-done
	if err != nil {
		return out.String(), fmt.Errorf("%w%s", err, tail(out.String(), 5))
	}
	return out.String(), nil
}

func tail(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	if len(ls) == 0 || ls[0] == "" {
		return ""
	}
	return ": " + strings.Join(ls, " / ")
}

// upload writes data to path on the server with mode, through SFTP (no shell).
func (r *remote) upload(path string, data []byte, mode uint32) error {
	c, err := sftp.NewClient(r.client)
	if err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	defer c.Close()
	f, err := c.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("sftp open %s: %w", path, err)
	}
	if err := f.Chmod(fs.FileMode(mode)); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("sftp write %s: %w", path, err)
	}
	return f.Close()
}

// mkdir makes a directory (and parents) through SFTP.
func (r *remote) mkdir(path string) error {
	c, err := sftp.NewClient(r.client)
	if err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	defer c.Close()
	if err := c.MkdirAll(path); err != nil {
		return err
	}
	return c.Chmod(path, 0o700)
}

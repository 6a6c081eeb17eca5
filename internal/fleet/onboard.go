package fleet

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/store"
)

// Onboarding path B: the user gives a root password or key once. First the
// panel shows the fingerprint of the host key it sees, and pins it only when
// the user confirms it matches the one on the server's console; then it signs
// in as root once to create its own user, and forgets the credential.

// ScanHostKey connects to the server only far enough to see its host key,
// records it for confirmation and returns its fingerprint.
func (s *Service) ScanHostKey(ctx context.Context, p *auth.Principal, id string, m auth.Meta) (string, error) {
	srv, err := s.DB.GetServer(ctx, id)
	if err != nil {
		return "", err
	}
	var seen ssh.PublicKey
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// The handshake stops at the host key: the callback records it and
	// refuses, so no authentication is ever attempted.
	// A server restarting sshd resets connections for a moment: try a few
	// times before saying it cannot be reached.
	for attempt := 0; attempt < 3 && seen == nil && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		_, err = dialSSH(ctx, srv, "upanel-scan", nil, func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			return errScanned
		})
	}
	if seen == nil {
		return "", apperr.Wrap(err, apperr.Unavailable, "could not reach SSH on %s:%d", srv.Host, srv.Port)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(seen)))
	fp := seen.Type() + " " + ssh.FingerprintSHA256(seen)
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetSeenHostKeys(ctx, id, []string{line}); err != nil {
			return err
		}
		return s.activity(ctx, tx, p, m, "updated", id, "host key seen, awaiting confirmation: "+fp, nil)
	})
	return fp, err
}

var errScanned = errors.New("host key captured")

// ConfirmHostKey pins the scanned key once the user confirms its fingerprint.
func (s *Service) ConfirmHostKey(ctx context.Context, p *auth.Principal, id, fingerprint string, m auth.Meta) error {
	srv, err := s.DB.GetServer(ctx, id)
	if err != nil {
		return err
	}
	fps := Fingerprints(srv.SSHHostKeysSeen)
	if len(fps) == 0 {
		return apperr.New(apperr.Conflict, "scan the server's host key first")
	}
	want := strings.TrimSpace(fingerprint)
	if want != fps[0] && want != strings.Fields(fps[0])[1] {
		return apperr.New(apperr.Invalid, "that fingerprint is not the one the panel saw (%s): do not confirm a key you have not checked", fps[0])
	}
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.PinHostKeys(ctx, id, srv.SSHHostKeysSeen); err != nil {
			return err
		}
		return s.activity(ctx, tx, p, m, "updated", id, "host key pinned after confirmation",
			audit.Diff(map[string]any{"ssh_host_keys": strings.Join(Fingerprints(srv.SSHHostKeys), ", ")}, map[string]any{"ssh_host_keys": fps[0]}))
	})
	if err == nil {
		ev := store.SecurityEvent{EventType: audit.HostKeyPinned, ServerID: id, IPAddress: m.IP, UserAgent: m.UserAgent,
			Details: map[string]any{"server": srv.Name, "fingerprint": fps[0]}}
		if p != nil && p.User != nil {
			ev.UserID = p.User.ID
		}
		s.security(ctx, ev)
	}
	return err
}

// RootLogin is a one-time root credential: a password or a private key.
type RootLogin struct {
	User       string // default root
	Password   string
	PrivateKey string
}

// Onboard signs in once with the root credential (checking the pinned host
// key), creates the user UPanel works as, and queues provisioning. The
// credential is used for this connection only and stored nowhere.
func (s *Service) Onboard(ctx context.Context, p *auth.Principal, id string, login RootLogin, m auth.Meta) (string, error) {
	srv, err := s.DB.GetServer(ctx, id)
	if err != nil {
		return "", err
	}
	if len(srv.SSHHostKeys) == 0 {
		return "", apperr.New(apperr.Conflict, "confirm the server's host key fingerprint first")
	}
	if login.User == "" {
		login.User = "root"
	}
	if !userRe.MatchString(login.User) {
		return "", apperr.New(apperr.Invalid, "the login must be a Linux user name")
	}
	var methods []ssh.AuthMethod
	switch {
	case login.PrivateKey != "":
		signer, err := ssh.ParsePrivateKey([]byte(login.PrivateKey))
		if err != nil {
			return "", apperr.New(apperr.Invalid, "the private key could not be read (passphrase-protected keys are not supported)")
		}
		methods = append(methods, ssh.PublicKeys(signer))
	case login.Password != "":
		pw := login.Password
		methods = append(methods, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			answers := make([]string, len(qs))
			for i := range answers {
				answers[i] = pw
			}
			return answers, nil
		}))
	default:
		return "", apperr.New(apperr.Invalid, "give a root password or a private key")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var seen string
	c, err := dialSSH(ctx, srv, login.User, methods, hostKeyCheck(srv.SSHHostKeys, &seen))
	if errors.Is(err, errHostKeyChanged) {
		reason := "SSH host key changed: the server presented " + seen + ", which is not the confirmed key"
		s.hostKeyAlarm(ctx, srv, seen, reason)
		return "", apperr.New(apperr.Conflict, "%s", reason)
	}
	if err != nil {
		return "", apperr.Wrap(err, apperr.Unauthorized, "could not sign in to %s as %s", srv.Host, login.User)
	}
	defer c.Close()
	var script bytes.Buffer
	if err := onboardScripts.ExecuteTemplate(&script, "user", map[string]string{"Username": srv.Username, "PublicKey": srv.SSHPublicKey}); err != nil {
		return "", err
	}
	command := "/bin/bash -s"
	if login.User != "root" {
		command = sudoScript
	}
	r := &remote{client: c}
	if out, err := r.run(ctx, command, script.Bytes()); err != nil {
		return "", apperr.Wrap(err, apperr.Unavailable, "creating the %s user failed: %s", srv.Username, strings.TrimSpace(tail(out, 3)))
	}
	var jobID string
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if jobID, err = s.enqueue(ctx, tx, ProvisionKind, id); err != nil {
			return err
		}
		return s.activity(ctx, tx, p, m, "updated", id, "onboarded with a one-time "+login.User+" login; provisioning queued", nil)
	})
	if err == nil {
		s.Wake()
	}
	return jobID, err
}

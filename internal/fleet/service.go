package fleet

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/notify"
	"upanel/internal/pin"
	"upanel/internal/store"
)

// Job kinds.
const (
	ProvisionKind = "fleet.provision"
	HardenKind    = "fleet.harden"
)

// Options configures the Service.
type Options struct {
	DB       *store.DB
	Log      *slog.Logger
	Recorder *audit.Recorder
	// BaseURL is UPANEL_URL: where bootstrap scripts and agents reach the panel.
	BaseURL *url.URL
	// AgentDir holds upanel-agent-linux-amd64 and -arm64, cross-built with
	// "make build"; empty means next to the panel's own executable.
	AgentDir string
	// AgentInterval is how often agents report (10 s).
	AgentInterval time.Duration
	// Wake tells the job runner a job was enqueued.
	Wake func()
	// Notify raises notifications (offline, recovered, drift).
	Notify *notify.Service
}

// Service manages servers.
type Service struct {
	Options
	mu       sync.Mutex
	identity *tls.Certificate // the client certificate agents pin
	pin      string
}

// New returns the service.
func New(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.AgentInterval <= 0 {
		o.AgentInterval = 10 * time.Second
	}
	if o.Wake == nil {
		o.Wake = func() {}
	}
	if o.Notify == nil {
		o.Notify = notify.New(notify.Options{DB: o.DB, Log: o.Log, BaseURL: o.BaseURL, Wake: o.Wake})
	}
	if o.AgentDir == "" {
		if exe, err := os.Executable(); err == nil {
			o.AgentDir = filepath.Dir(exe)
		}
	}
	return &Service{Options: o}
}

// bootstrapTTL bounds how long a bootstrap command can be used.
const bootstrapTTL = 24 * time.Hour

// Create adds a server: an ed25519 key pair (the private key encrypted), and a
// one-time bootstrap command for onboarding path A, returned this once.
func (s *Service) Create(ctx context.Context, p *auth.Principal, in ServerInput, m auth.Meta) (*store.Server, string, error) {
	in, err := in.Normalize()
	if err != nil {
		return nil, "", err
	}
	priv, pub, err := newKeyPair("upanel")
	if err != nil {
		return nil, "", err
	}
	token, hash := newBootstrapToken()
	var srv *store.Server
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		var err error
		srv, err = tx.CreateServer(ctx, store.NewServer{Name: in.Name, Host: in.Host, Port: in.Port, Username: in.Username,
			AgentPort: in.AgentPort, SSHPrivateKey: priv, SSHPublicKey: pub, BootstrapHash: hash, BootstrapExpires: tx.Now().Add(bootstrapTTL)})
		if err != nil {
			return err
		}
		return s.activity(ctx, tx, p, m, "created", srv.ID, "server "+in.Name+" added",
			audit.Diff(nil, map[string]any{"name": in.Name, "host": in.Host, "port": in.Port, "username": in.Username,
				"agent_port": in.AgentPort, "ssh_private_key": "new"}, "ssh_private_key"))
	})
	if err != nil {
		return nil, "", err
	}
	return srv, s.bootstrapCommand(token), nil
}

// Update edits a server's connection settings.
func (s *Service) Update(ctx context.Context, p *auth.Principal, id string, in ServerInput, m auth.Meta) (*store.Server, error) {
	in, err := in.Normalize()
	if err != nil {
		return nil, err
	}
	var srv *store.Server
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		old, err := tx.GetServer(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.UpdateServerSettings(ctx, id, in.Name, in.Host, in.Port, in.Username, in.AgentPort); err != nil {
			return err
		}
		if srv, err = tx.GetServer(ctx, id); err != nil {
			return err
		}
		changes := audit.Diff(map[string]any{"name": old.Name, "host": old.Host, "port": old.Port, "username": old.Username, "agent_port": old.AgentPort},
			map[string]any{"name": in.Name, "host": in.Host, "port": in.Port, "username": in.Username, "agent_port": in.AgentPort})
		if len(changes) == 0 {
			return nil
		}
		return s.activity(ctx, tx, p, m, "updated", id, "server "+in.Name+" updated", changes)
	})
	return srv, err
}

// Delete removes a server from the panel (and, by cascade, its apps, domains
// and metrics). It does not touch the machine itself.
func (s *Service) Delete(ctx context.Context, p *auth.Principal, id string, m auth.Meta) error {
	return s.DB.InTx(ctx, func(tx *store.Tx) error {
		srv, err := tx.GetServer(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteServer(ctx, id); err != nil {
			return err
		}
		return s.activity(ctx, tx, p, m, "deleted", id, "server "+srv.Name+" removed",
			audit.Diff(map[string]any{"name": srv.Name, "host": srv.Host}, nil))
	})
}

func (s *Service) activity(ctx context.Context, tx *store.Tx, p *auth.Principal, m auth.Meta, action, id, desc string, changes map[string]store.Change) error {
	a := store.Activity{Action: action, SubjectType: "Server", SubjectID: id, Description: desc, Changes: changes, IPAddress: m.IP}
	if p != nil && p.User != nil {
		a.UserID = p.User.ID
	}
	_, err := s.Recorder.Activity(ctx, tx, a)
	return err
}

func (s *Service) security(ctx context.Context, ev store.SecurityEvent) {
	if _, err := s.Recorder.Security(ctx, ev); err != nil {
		s.Log.Error("record security event", "event_type", ev.EventType, "err", err)
	}
}

// enqueue adds a server job; one of each kind per server runs at a time.
func (s *Service) enqueue(ctx context.Context, tx *store.Tx, kind, serverID string) (string, error) {
	id, _, err := tx.EnqueueJob(ctx, store.NewJob{Kind: kind, Payload: serverJob{ServerID: serverID},
		UniqueKey: kind + ":" + serverID, ConcurrencyKey: "server:" + serverID,
		SubjectType: "server", SubjectID: serverID, MaxAttempts: 3})
	return id, err
}

type serverJob struct {
	ServerID string `json:"server_id"`
}

// Enqueue starts provisioning (also used to upgrade the agent) or hardening.
func (s *Service) Enqueue(ctx context.Context, p *auth.Principal, kind, serverID string, m auth.Meta) (string, error) {
	if kind != ProvisionKind && kind != HardenKind {
		return "", apperr.New(apperr.Invalid, "unknown server job")
	}
	var id string
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		srv, err := tx.GetServer(ctx, serverID)
		if err != nil {
			return err
		}
		if len(srv.SSHHostKeys) == 0 {
			return apperr.New(apperr.Conflict, "the server's SSH host key is not pinned yet: run its bootstrap command, or confirm its fingerprint")
		}
		if id, err = s.enqueue(ctx, tx, kind, serverID); err != nil {
			return err
		}
		action := map[string]string{ProvisionKind: "provisioned", HardenKind: "hardened"}[kind]
		return s.activity(ctx, tx, p, m, action, serverID, "server job "+kind+" queued", nil)
	})
	if err == nil {
		s.Wake()
	}
	return id, err
}

// Identity returns the client certificate the panel presents to agents, made
// once and shared by every panel process through the database.
func (s *Service) Identity(ctx context.Context) (*tls.Certificate, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.identity != nil {
		return s.identity, s.pin, nil
	}
	const id = "agent_client"
	certPEM, keyPEM, err := s.DB.PanelCredential(ctx, id)
	if apperr.Is(err, apperr.NotFound) {
		c, k, gerr := pin.SelfSigned("upanel-panel", 20*365*24*time.Hour)
		if gerr != nil {
			return nil, "", gerr
		}
		if _, err := s.DB.CreatePanelCredential(ctx, id, string(c), k); err != nil {
			return nil, "", err
		}
		certPEM, keyPEM, err = s.DB.PanelCredential(ctx, id) // whichever panel won
	}
	if err != nil {
		return nil, "", err
	}
	cert, err := tls.X509KeyPair([]byte(certPEM), keyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("fleet: panel identity: %w", err)
	}
	fp, err := pin.FingerprintPEM([]byte(certPEM))
	if err != nil {
		return nil, "", err
	}
	s.identity, s.pin = &cert, fp
	return s.identity, fp, nil
}

// agentBinary returns the agent executable for a server architecture.
func (s *Service) agentBinary(arch string) ([]byte, error) {
	if arch != "amd64" && arch != "arm64" {
		return nil, fmt.Errorf("no agent for architecture %q (UPanel supports amd64 and arm64)", arch)
	}
	path := filepath.Join(s.AgentDir, "upanel-agent-linux-"+arch)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the agent binary for %s is missing at %s: build it with \"make build\" (or set UPANEL_AGENT_DIR)", arch, path)
	}
	return b, nil
}

// SetMaintenance turns a server's maintenance mode on or off. While it is on
// the server raises no notifications (it may be rebooted, moved, reinstalled),
// and the activity log says who turned it on and off.
func (s *Service) SetMaintenance(ctx context.Context, p *auth.Principal, id string, on bool, m auth.Meta) error {
	return s.DB.InTx(ctx, func(tx *store.Tx) error {
		srv, err := tx.GetServer(ctx, id)
		if err != nil {
			return err
		}
		changed, err := tx.SetServerMaintenance(ctx, id, on)
		if err != nil || !changed {
			return err
		}
		word := map[bool]string{true: "on", false: "off"}
		return s.activity(ctx, tx, p, m, "updated", id, "maintenance mode "+word[on]+" for "+srv.Name,
			audit.Diff(map[string]any{"maintenance": word[!on]}, map[string]any{"maintenance": word[on]}))
	})
}

package fleet

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/notify"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
	"upanel/internal/wire"
)

// statusEnv is a fleet service on a fresh database with a settable clock, an
// admin, an operator and a viewer.
type statusEnv struct {
	t     *testing.T
	db    *store.DB
	clock *storetest.Clock
	svc   *Service
	seq   uint64
}

func newStatusEnv(t *testing.T, dialect string) *statusEnv {
	clock := storetest.NewClock(time.Now().UTC().Truncate(time.Second))
	db := storetest.NewWithClock(t, dialect, clock).DB
	base, _ := url.Parse("https://panel.example")
	e := &statusEnv{t: t, db: db, clock: clock,
		svc: New(Options{DB: db, Recorder: audit.New(db), BaseURL: base, AgentInterval: 10 * time.Second})}
	for _, role := range []string{"admin", "operator", "viewer"} {
		if err := db.InTx(context.Background(), func(tx *store.Tx) error {
			_, err := tx.CreateUser(context.Background(), store.NewUser{Email: role + "@example.com", PasswordHash: "x", Role: role})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *statusEnv) message() wire.Message {
	e.seq++
	return wire.Message{Protocol: wire.ProtocolVersion, Seq: e.seq, SentAt: e.clock.Now()}
}

func (e *statusEnv) heartbeat(id string) {
	e.t.Helper()
	_, err := e.svc.Heartbeat(context.Background(), id, wire.Heartbeat{Message: e.message(),
		Host: wire.Host{OS: "Debian GNU/Linux 12 (bookworm)", CPUCores: 2, RAMMB: 2048, DiskGB: 40, AgentVersion: "1.0", Arch: "amd64"}}, "192.0.2.1")
	if err != nil {
		e.t.Fatalf("heartbeat: %v", err)
	}
}

func (e *statusEnv) status(id string) string {
	e.t.Helper()
	s, err := e.db.GetServer(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.Status
}

func (e *statusEnv) notifications(typ, id string) int {
	e.t.Helper()
	n, err := e.db.CountNotifications(context.Background(), typ, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *statusEnv) checkOffline() {
	e.t.Helper()
	if err := e.svc.CheckOffline(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// TestServerLifecycle walks a server from its bootstrap to online, offline,
// back, a flap, a later outage, and a drifting security score, on both
// databases, counting the notifications each step makes.
func TestServerLifecycle(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			e := newStatusEnv(t, d)
			ctx := context.Background()
			srv, cmd, err := e.svc.Create(ctx, nil, ServerInput{Name: "web-1", Host: "web-1.example.com"}, auth.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			if srv.Status != "pending" || srv.Port != 22 || srv.Username != "upanel" || srv.AgentPort != 8443 {
				t.Fatalf("new server: %+v", srv)
			}
			token := cmd[strings.Index(cmd, "/bootstrap/")+len("/bootstrap/") : strings.LastIndexByte(cmd, '\'')]

			// The bootstrap report pins the keys once and queues provisioning.
			hostKey := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@web-1"
			if err := e.svc.ReportHostKeys(ctx, token, hostKey+"\n", auth.Meta{}); err != nil {
				t.Fatal(err)
			}
			if err := e.svc.ReportHostKeys(ctx, token, hostKey+"\n", auth.Meta{}); err == nil {
				t.Fatal("a bootstrap token worked twice")
			}
			got, _ := e.db.GetServer(ctx, srv.ID)
			if len(got.SSHHostKeys) != 1 || got.SSHHostKeys[0] != strings.TrimSuffix(hostKey, " root@web-1") {
				t.Fatalf("pinned keys %q", got.SSHHostKeys)
			}
			if j, err := e.db.LatestJobFor(ctx, "server", srv.ID, ProvisionKind); err != nil || j.Status != "queued" {
				t.Fatalf("provisioning job: %v %v", j, err)
			}

			// Online on the first heartbeat, with the inventory.
			e.heartbeat(srv.ID)
			got, _ = e.db.GetServer(ctx, srv.ID)
			if got.Status != "online" || got.LastSeenAt == nil || got.OSVersion != "Debian GNU/Linux 12 (bookworm)" || *got.CPUCores != 2 ||
				*got.RAMMB != 2048 || *got.DiskGB != 40 || got.AgentVersion != "1.0" {
				t.Fatalf("after a heartbeat: %+v", got)
			}

			// Offline only after three missed intervals.
			e.clock.Add(29 * time.Second)
			e.checkOffline()
			if s := e.status(srv.ID); s != "online" {
				t.Fatalf("%s after 29 s of silence", s)
			}
			e.clock.Add(2 * time.Second)
			e.checkOffline()
			e.checkOffline() // a second panel process finds nothing new
			if s := e.status(srv.ID); s != "offline" {
				t.Fatalf("%s after 31 s of silence", s)
			}
			if n := e.notifications(notify.ServerOffline, srv.ID); n != 2 {
				t.Fatalf("%d offline notifications, want 2 (admin and operator, not the viewer)", n)
			}

			// Back: one recovery notice per person.
			e.clock.Add(time.Minute)
			e.heartbeat(srv.ID)
			if s := e.status(srv.ID); s != "online" {
				t.Fatalf("%s after a heartbeat", s)
			}
			if n := e.notifications(notify.ServerRecovered, srv.ID); n != 2 {
				t.Fatalf("%d recovery notifications, want 2", n)
			}

			// A flap within 15 minutes is the same incident.
			e.clock.Add(40 * time.Second)
			e.checkOffline()
			e.clock.Add(time.Minute)
			e.heartbeat(srv.ID)
			if off, rec := e.notifications(notify.ServerOffline, srv.ID), e.notifications(notify.ServerRecovered, srv.ID); off != 2 || rec != 2 {
				t.Fatalf("a flap notified: %d offline, %d recovered", off, rec)
			}

			// A later outage is a new incident.
			e.clock.Add(20 * time.Minute)
			e.checkOffline()
			e.heartbeat(srv.ID)
			if off, rec := e.notifications(notify.ServerOffline, srv.ID), e.notifications(notify.ServerRecovered, srv.ID); off != 4 || rec != 4 {
				t.Fatalf("a new outage: %d offline, %d recovered notifications, want 4 and 4", off, rec)
			}

			// Security score: drift after hardening notifies.
			pass := []wire.Check{{ID: "firewall", Weight: 60, Passed: true}, {ID: "fail2ban", Weight: 40, Passed: true}}
			if err := e.svc.Audit(ctx, srv.ID, wire.Audit{Message: e.message(), Checks: pass}, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			if err := e.db.InTx(ctx, func(tx *store.Tx) error { return tx.MarkHardened(ctx, srv.ID) }); err != nil {
				t.Fatal(err)
			}
			drifted := []wire.Check{{ID: "firewall", Weight: 60, Passed: false}, {ID: "fail2ban", Weight: 40, Passed: true}}
			if err := e.svc.Audit(ctx, srv.ID, wire.Audit{Message: e.message(), Checks: drifted}, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			got, _ = e.db.GetServer(ctx, srv.ID)
			if got.SecurityScore == nil || *got.SecurityScore != 40 {
				t.Fatalf("score after drift: %v", got.SecurityScore)
			}
			if n := e.notifications(notify.SecurityDrift, srv.ID); n != 2 {
				t.Fatalf("%d drift notifications, want 2", n)
			}
			// The same low score again is not new drift.
			if err := e.svc.Audit(ctx, srv.ID, wire.Audit{Message: e.message(), Checks: drifted}, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			if n := e.notifications(notify.SecurityDrift, srv.ID); n != 2 {
				t.Fatalf("%d drift notifications after an unchanged audit, want 2", n)
			}

			// A host key alarm stands through heartbeats.
			e.svc.hostKeyAlarm(ctx, got, "ssh-ed25519 SHA256:other", "SSH host key changed")
			e.heartbeat(srv.ID)
			if s := e.status(srv.ID); s != "error" {
				t.Fatalf("a heartbeat cleared the host key alarm: %s", s)
			}
		})
	}
}

// TestMetricsIngest stores a batch and refuses one with an impossible sample,
// storing nothing of it.
func TestMetricsIngest(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			e := newStatusEnv(t, d)
			ctx := context.Background()
			srv, _, err := e.svc.Create(ctx, nil, ServerInput{Name: "db-1", Host: "10.0.0.5"}, auth.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			in := int64(1500)
			now := e.clock.Now()
			ok := []wire.Sample{
				{At: now.Add(-20 * time.Second), CPUPercent: 12.5, RAMUsedMB: 900, RAMTotalMB: 2048, DiskUsedGB: 10, DiskTotalGB: 40, NetInBytes: &in},
				{At: now.Add(-10 * time.Second), CPUPercent: 7, RAMUsedMB: 910, RAMTotalMB: 2048, DiskUsedGB: 10, DiskTotalGB: 40},
			}
			if err := e.svc.Metrics(ctx, srv.ID, wire.Metrics{Message: e.message(), Samples: ok}, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			for _, bad := range [][]wire.Sample{
				{ok[0], {At: now, CPUPercent: 101}},
				{{At: now, RAMUsedMB: -1}},
				{{At: now.Add(time.Hour)}},
				{{At: now.Add(-9 * 24 * time.Hour)}},
				{{}},
				make([]wire.Sample, wire.MaxSamples+1),
			} {
				if err := e.svc.Metrics(ctx, srv.ID, wire.Metrics{Message: e.message(), Samples: bad}, "192.0.2.1"); err == nil {
					t.Errorf("batch %+v accepted", bad[0])
				}
			}
			pts, err := e.db.MetricSeries(ctx, srv.ID, now.Add(-time.Hour), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(pts) != 2 || pts[0].CPUPercent != 12.5 || pts[0].NetInBytes != 1500 {
				t.Fatalf("stored series %+v", pts)
			}
		})
	}
}

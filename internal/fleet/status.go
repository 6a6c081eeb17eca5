package fleet

import (
	"context"
	"fmt"
	"time"

	"upanel/internal/audit"
	"upanel/internal/notify"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// missedBeats is how many heartbeat intervals may pass before a server counts
// as offline.
const missedBeats = 3

// flapWindow folds outages: a server that went offline within this time of
// its last offline notice is the same incident, not a new one.
const flapWindow = 15 * time.Minute

// WatchStatus marks servers offline when their heartbeats stop, until ctx
// ends. Every panel process may run it: the update is conditional, so each
// outage is found once.
func (s *Service) WatchStatus(ctx context.Context) {
	t := time.NewTicker(s.AgentInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.CheckOffline(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("check offline servers", "err", err)
		}
	}
}

// CheckOffline marks servers not heard from in missedBeats intervals offline
// and notifies admins and operators, once per outage.
func (s *Service) CheckOffline(ctx context.Context) error {
	cutoff := s.DB.Now().Add(-time.Duration(missedBeats) * s.AgentInterval)
	gone, err := s.DB.MarkOfflineServers(ctx, cutoff)
	if err != nil {
		return err
	}
	for _, srv := range gone {
		s.Log.Warn("server offline", "server_id", srv.ID, "name", srv.Name)
		err := s.DB.InTx(ctx, func(tx *store.Tx) error {
			last, err := tx.LastNotificationAt(ctx, notify.ServerOffline, srv.ID)
			if err != nil || (!last.IsZero() && tx.Now().Sub(last) < flapWindow) {
				return err // the same incident: already told
			}
			seen := "never"
			if srv.LastSeenAt != nil {
				seen = srv.LastSeenAt.UTC().Format(time.RFC1123)
			}
			_, err = s.Notify.Raise(ctx, tx, notify.Event{Type: notify.ServerOffline, ServerID: srv.ID,
				Title: "Server " + srv.Name + " is offline", SubjectType: "Server", SubjectID: srv.ID,
				Message: fmt.Sprintf("%s (%s) stopped reporting; last heard from %s.", srv.Name, srv.Host, seen)})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// recovered tells admins and operators a server is back, once per outage
// that was notified.
func (s *Service) recovered(ctx context.Context, serverID string) {
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		srv, err := tx.GetServer(ctx, serverID)
		if err != nil {
			return err
		}
		down, err := tx.LastNotificationAt(ctx, notify.ServerOffline, serverID)
		if err != nil || down.IsZero() {
			return err
		}
		up, err := tx.LastNotificationAt(ctx, notify.ServerRecovered, serverID)
		if err != nil || up.After(down) {
			return err // this outage's recovery was already told
		}
		_, err = s.Notify.Raise(ctx, tx, notify.Event{Type: notify.ServerRecovered, ServerID: srv.ID,
			Title: "Server " + srv.Name + " is back online", SubjectType: "Server", SubjectID: srv.ID,
			Message: srv.Name + " (" + srv.Host + ") reports again."})
		return err
	})
	if err != nil {
		s.Log.Error("notify recovery", "server_id", serverID, "err", err)
	}
}

// drift records and notifies a falling security score after hardening.
func (s *Service) drift(ctx context.Context, srv *store.Server, was, now int, checks []wire.Check) {
	var failed []string
	for _, c := range checks {
		if !c.Passed {
			failed = append(failed, c.ID)
		}
	}
	s.security(ctx, store.SecurityEvent{EventType: audit.SecurityDrift, ServerID: srv.ID,
		Details: map[string]any{"server": srv.Name, "score_before": was, "score": now, "failing": failed}})
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		_, err := s.Notify.Raise(ctx, tx, notify.Event{Type: notify.SecurityDrift, ServerID: srv.ID,
			Title: fmt.Sprintf("Security score of %s fell to %d", srv.Name, now), SubjectType: "Server", SubjectID: srv.ID,
			Message: fmt.Sprintf("The score of %s fell from %d to %d since its hardening. Failing checks: %v.", srv.Name, was, now, failed)})
		return err
	})
	if err != nil {
		s.Log.Error("notify drift", "server_id", srv.ID, "err", err)
	}
}

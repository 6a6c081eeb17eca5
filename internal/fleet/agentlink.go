package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/pin"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// agentClient calls a server's agent over mutual TLS: the panel shows its
// client certificate, which the agent pins, and accepts only the agent
// certificate it pinned at install. Chain verification is off because pin.Peer
// replaces it; there is no path that skips both.
func (s *Service) agentClient(ctx context.Context, srv *store.Server) (*http.Client, error) {
	if srv.AgentCertSHA256 == "" {
		return nil, apperr.New(apperr.Conflict, "the agent of %s is not installed yet", srv.Name)
	}
	id, _, err := s.Identity(ctx)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{
		Certificates:          []tls.Certificate{*id},
		InsecureSkipVerify:    true, // replaced by the pin check below
		VerifyPeerCertificate: pin.Peer(srv.AgentCertSHA256),
		MinVersion:            tls.VersionTLS13,
	}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}, nil
}

func agentURL(srv *store.Server, path string) string {
	return "https://" + net.JoinHostPort(srv.Host, strconv.Itoa(srv.AgentPort)) + path
}

// AgentStatus asks a server's agent for its status.
func (s *Service) AgentStatus(ctx context.Context, srv *store.Server) (*wire.Status, error) {
	c, err := s.agentClient(ctx, srv)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, agentURL(srv, wire.AgentPathStatus), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent answered %s", resp.Status)
	}
	var st wire.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, wire.MaxBody)).Decode(&st); err != nil {
		return nil, err
	}
	if st.ServerID != srv.ID {
		return nil, fmt.Errorf("the agent belongs to server %q, not this one", st.ServerID)
	}
	return &st, nil
}

func (s *Service) askAudit(ctx context.Context, srv *store.Server) error {
	c, err := s.agentClient(ctx, srv)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, agentURL(srv, wire.AgentPathAudit), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("agent answered %s", resp.Status)
	}
	return nil
}

// RequestAudit asks a server's agent to audit now.
func (s *Service) RequestAudit(ctx context.Context, id string) error {
	srv, err := s.DB.GetServer(ctx, id)
	if err != nil {
		return err
	}
	if err := s.askAudit(ctx, srv); err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "the agent of %s did not answer", srv.Name)
	}
	return nil
}

// accept checks an agent message's envelope: a protocol this panel speaks, a
// sequence number never seen (a replayed request is refused), a send time
// within a day (a stale request is refused).
func (s *Service) accept(ctx context.Context, serverID string, m wire.Message, ip string) error {
	if m.Protocol < 1 || m.Protocol > wire.ProtocolVersion+100 {
		return apperr.New(apperr.Invalid, "unknown protocol version %d", m.Protocol)
	}
	now := s.DB.Now()
	if m.SentAt.Before(now.Add(-24*time.Hour)) || m.SentAt.After(now.Add(10*time.Minute)) {
		s.refused(ctx, serverID, ip, "stale message")
		return apperr.New(apperr.Invalid, "the message's send time is too far from the panel's clock")
	}
	ok, err := s.DB.AcceptAgentSeq(ctx, serverID, m.Seq)
	if err != nil {
		return err
	}
	if !ok {
		s.refused(ctx, serverID, ip, "replayed sequence number")
		return apperr.New(apperr.Conflict, "sequence number %d was already used: replay refused", m.Seq)
	}
	return nil
}

func (s *Service) refused(ctx context.Context, serverID, ip, why string) {
	s.security(ctx, store.SecurityEvent{EventType: audit.AgentRefused, ServerID: serverID, IPAddress: ip, Details: map[string]any{"reason": why}})
}

// Heartbeat records an agent's heartbeat and tells it how to behave.
func (s *Service) Heartbeat(ctx context.Context, serverID string, hb wire.Heartbeat, ip string) (wire.HeartbeatReply, error) {
	if err := s.accept(ctx, serverID, hb.Message, ip); err != nil {
		return wire.HeartbeatReply{}, err
	}
	h := hb.Host
	prev, err := s.DB.RecordHeartbeat(ctx, serverID, store.ServerHeartbeat{OSVersion: h.OS, CPUCores: clampInt(h.CPUCores),
		RAMMB: clampInt(h.RAMMB), DiskGB: clampInt(h.DiskGB), AgentVersion: h.AgentVersion, Arch: h.Arch})
	if err != nil {
		return wire.HeartbeatReply{}, err
	}
	if prev == store.ServerOffline {
		s.recovered(ctx, serverID)
	}
	return wire.HeartbeatReply{IntervalSeconds: int(s.AgentInterval.Seconds())}, nil
}

func clampInt(n int) int { return max(0, min(n, 1<<30)) }

// negative reports a network byte count below zero: counts are bytes since
// the previous sample, so no agent sends one.
func negative(n *int64) bool { return n != nil && *n < 0 }

// Metrics stores a batch of samples.
func (s *Service) Metrics(ctx context.Context, serverID string, m wire.Metrics, ip string) error {
	if len(m.Samples) > wire.MaxSamples {
		return apperr.New(apperr.Invalid, "at most %d samples per batch", wire.MaxSamples)
	}
	if err := s.accept(ctx, serverID, m.Message, ip); err != nil {
		return err
	}
	now := s.DB.Now()
	rows := make([]store.ServerMetric, 0, len(m.Samples))
	for _, x := range m.Samples {
		if x.At.IsZero() || x.At.After(now.Add(10*time.Minute)) || x.At.Before(now.Add(-8*24*time.Hour)) ||
			x.CPUPercent < 0 || x.CPUPercent > 100 || x.RAMUsedMB < 0 || x.RAMTotalMB < 0 || x.DiskUsedGB < 0 || x.DiskTotalGB < 0 ||
			negative(x.NetInBytes) || negative(x.NetOutBytes) {
			return apperr.New(apperr.Invalid, "a sample is out of range")
		}
		rows = append(rows, store.ServerMetric{ServerID: serverID, CPUPercent: x.CPUPercent, RAMUsedMB: clampInt(x.RAMUsedMB),
			RAMTotalMB: clampInt(x.RAMTotalMB), DiskUsedGB: clampInt(x.DiskUsedGB), DiskTotalGB: clampInt(x.DiskTotalGB),
			NetworkInBytes: x.NetInBytes, NetworkOutBytes: x.NetOutBytes, RecordedAt: x.At})
	}
	return s.DB.InsertServerMetrics(ctx, rows)
}

// Audit stores a security audit and the new score, and raises drift when a
// hardened server's score falls.
func (s *Service) Audit(ctx context.Context, serverID string, a wire.Audit, ip string) error {
	if len(a.Checks) > 100 {
		return apperr.New(apperr.Invalid, "too many checks")
	}
	if err := s.accept(ctx, serverID, a.Message, ip); err != nil {
		return err
	}
	b, err := json.Marshal(a.Checks)
	if err != nil {
		return err
	}
	srv, err := s.DB.GetServer(ctx, serverID)
	if err != nil {
		return err
	}
	score := a.Score()
	if err := s.DB.RecordAudit(ctx, serverID, score, b); err != nil {
		return err
	}
	if srv.HardenedAt != nil && srv.SecurityScore != nil && score < *srv.SecurityScore {
		s.drift(ctx, srv, *srv.SecurityScore, score, a.Checks)
	}
	return nil
}

// AgentCall makes a JSON call to a server's agent over the pinned mutual-TLS
// link: body (if not nil) is sent as JSON, a 2xx answer is decoded into out
// (if not nil), at most wire.MaxBody of it. Another status is an error
// carrying the agent's wire.Error message: a 404 is apperr.NotFound, a
// refusal of the request (400, 413, 422) Invalid, 409 Conflict, the rest
// Unavailable. Calls that wait (a deployment's log poll) set their own
// deadline through ctx; others get 30 s.
func (s *Service) AgentCall(ctx context.Context, serverID, method, path string, body, out any) error {
	srv, err := s.DB.GetServer(ctx, serverID)
	if err != nil {
		return err
	}
	c, err := s.agentClient(ctx, srv)
	if err != nil {
		return err
	}
	c.Timeout = 0 // bounded by ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		if len(b) > wire.MaxBody {
			return apperr.New(apperr.Invalid, "the request to the agent is larger than %d bytes", wire.MaxBody)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, agentURL(srv, path), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return apperr.Wrap(err, apperr.Unavailable, "the agent of %s did not answer", srv.Name)
	}
	defer resp.Body.Close()
	lr := io.LimitReader(resp.Body, wire.MaxBody+1)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e wire.Error
		json.NewDecoder(lr).Decode(&e)
		msg := e.Error
		if msg == "" {
			msg = resp.Status
		}
		switch resp.StatusCode {
		case http.StatusNotFound:
			return apperr.New(apperr.NotFound, "agent of %s: %s", srv.Name, msg)
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			// The agent refused the request itself: sending it again
			// cannot help.
			return apperr.New(apperr.Invalid, "agent of %s: %s", srv.Name, msg)
		case http.StatusConflict:
			return apperr.New(apperr.Conflict, "agent of %s: %s", srv.Name, msg)
		}
		return apperr.New(apperr.Unavailable, "agent of %s: %s", srv.Name, msg)
	}
	if out == nil {
		return nil
	}
	b, err := io.ReadAll(lr)
	if err != nil {
		return err
	}
	if len(b) > wire.MaxBody {
		return fmt.Errorf("the agent's answer is larger than %d bytes", wire.MaxBody)
	}
	return json.Unmarshal(b, out)
}

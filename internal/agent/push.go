package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"upanel/internal/wire"
)

// panel is the agent's client of the panel: JSON over HTTPS to UPANEL_URL with
// the agent token as a bearer. Every message carries the next sequence number.
type panel struct {
	base  string
	token string
	http  *http.Client
	st    *state
}

// errRefused is a 4xx answer: retrying the same message will not help.
var errRefused = errors.New("panel refused the message")

func newPanel(cfg *Config, st *state) (*panel, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.PanelCAFile != "" {
		pem, err := os.ReadFile(cfg.PanelCAFile)
		if err != nil {
			return nil, fmt.Errorf("panel CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("panel CA %s holds no certificate", cfg.PanelCAFile)
		}
		tlsCfg.RootCAs = pool
	}
	return &panel{
		base: strings.TrimRight(cfg.PanelURL, "/"), token: cfg.Token, st: st,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, MaxIdleConns: 2, IdleConnTimeout: 90 * time.Second,
		}},
	}, nil
}

// message stamps the envelope of the next message.
func (p *panel) message() (wire.Message, error) {
	seq, err := p.st.next()
	if err != nil {
		return wire.Message{}, fmt.Errorf("agent state: %w", err)
	}
	return wire.Message{Protocol: wire.ProtocolVersion, Seq: seq, SentAt: time.Now().UTC()}, nil
}

func (p *panel) post(ctx context.Context, path string, body, reply any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	if len(b) > wire.MaxBody {
		return fmt.Errorf("message of %d bytes is over the %d-byte limit", len(b), wire.MaxBody)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// One byte past the limit tells an oversized reply from one that fits.
	data, _ := io.ReadAll(io.LimitReader(resp.Body, wire.MaxBody+1))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if len(data) > wire.MaxBody {
			return fmt.Errorf("the panel's reply is over the %d-byte limit", wire.MaxBody)
		}
		if reply != nil {
			return json.Unmarshal(data, reply)
		}
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return fmt.Errorf("%w: %s: %s", errRefused, resp.Status, strings.TrimSpace(string(data)))
	}
	return fmt.Errorf("panel answered %s", resp.Status)
}

func (p *panel) heartbeat(ctx context.Context, host wire.Host) (wire.HeartbeatReply, error) {
	m, err := p.message()
	if err != nil {
		return wire.HeartbeatReply{}, err
	}
	var reply wire.HeartbeatReply
	err = p.post(ctx, wire.PathHeartbeat, wire.Heartbeat{Message: m, Host: host}, &reply)
	return reply, err
}

func (p *panel) metrics(ctx context.Context, samples []wire.Sample) error {
	m, err := p.message()
	if err != nil {
		return err
	}
	return p.post(ctx, wire.PathMetrics, wire.Metrics{Message: m, Samples: samples}, nil)
}

func (p *panel) audit(ctx context.Context, checks []wire.Check) error {
	m, err := p.message()
	if err != nil {
		return err
	}
	return p.post(ctx, wire.PathAudit, wire.Audit{Message: m, Checks: checks}, nil)
}

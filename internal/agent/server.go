package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"upanel/internal/pin"
	"upanel/internal/wire"
)

// listen serves the panel's calls over TLS. The panel must present the
// client certificate pinned in the config: without it the handshake fails, so
// nothing else on the network reaches a handler.
func listen(ctx context.Context, cfg *Config, cert tls.Certificate, h http.Handler, log *slog.Logger) error {
	tlsCfg := &tls.Config{
		Certificates:          []tls.Certificate{cert},
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: pin.Peer(cfg.PanelCertSHA256),
		MinVersion:            tls.VersionTLS13,
	}
	ln, err := tls.Listen("tcp", cfg.Listen, tlsCfg)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("agent listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+wire.AgentPathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, wire.Status{Protocol: wire.ProtocolVersion, ServerID: a.cfg.ServerID, Host: a.currentHost(), Started: a.started})
	})
	mux.HandleFunc("POST "+wire.AgentPathAudit, func(w http.ResponseWriter, r *http.Request) {
		a.requestAudit()
		writeJSON(w, http.StatusAccepted, map[string]bool{"accepted": true})
	})
	return http.MaxBytesHandler(mux, wire.MaxBody)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

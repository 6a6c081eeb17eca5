package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
		// The call takes no body. Read what comes, up to the limit, so that
		// an oversized one is refused rather than ignored.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			refuseBody(w, err)
			return
		}
		a.requestAudit()
		writeJSON(w, http.StatusAccepted, map[string]bool{"accepted": true})
	})
	a.deploys.register(mux)
	return bounded(mux)
}

// bounded refuses a request whose declared body is over wire.MaxBody before
// any handler runs, and stops a handler from reading past the limit when the
// length is not declared.
func bounded(h http.Handler) http.Handler {
	h = http.MaxBytesHandler(h, wire.MaxBody)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > wire.MaxBody {
			refuseBody(w, &http.MaxBytesError{Limit: wire.MaxBody})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func refuseBody(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSON(w, http.StatusRequestEntityTooLarge, wire.Error{Error: fmt.Sprintf("the request body is over %d bytes", wire.MaxBody)})
		return
	}
	writeJSON(w, http.StatusBadRequest, wire.Error{Error: "the request body could not be read"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

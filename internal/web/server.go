// Package web is UPanel's HTTP surface: the server-rendered UI, with the JSON API
// mounted beside it, behind one middleware chain. routes.go lists every route.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"upanel/internal/store"
)

// Server holds what handlers need.
type Server struct {
	db  *store.DB
	log *slog.Logger
}

// New returns the HTTP handler of the panel.
func New(db *store.DB, log *slog.Logger) http.Handler {
	s := &Server{db: db, log: log}
	mux := http.NewServeMux()
	s.routes(mux)
	return s.middleware(mux)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// readyz is 200 only when the database answers and is migrated to exactly this
// binary's schema, so a load balancer sends no traffic to a panel that cannot
// serve it.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.db.Ping(ctx); err != nil {
		s.log.Warn("readyz: database unreachable", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: database unreachable\n"))
		return
	}
	current, err := s.db.SchemaCurrent(ctx)
	if err != nil || !current {
		if err != nil {
			s.log.Warn("readyz: schema check failed", "err", err)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: database migrations are not current\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// Package web is UPanel's HTTP surface: the server-rendered UI and the JSON API
// under /api/v1, behind one middleware chain and one access policy
// (auth.Decide). routes.go lists every route with the permission it needs.
package web

import (
	"context"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/fleet"
	"upanel/internal/notify"
	"upanel/internal/store"
)

// Deps is what the HTTP surface needs.
type Deps struct {
	DB    *store.DB
	Log   *slog.Logger
	Auth  *auth.Service
	Audit *audit.Recorder
	Fleet *fleet.Service
	// Deploy manages apps and deployments; without it their pages and API
	// answer 503.
	Deploy *deploy.Service
	// Notify knows the notification types; it is made from DB and BaseURL
	// when nil.
	Notify *notify.Service
	// Webhooks manages outgoing webhook targets; without it their pages and
	// API answer 503.
	Webhooks *notify.Webhooks
	// Stop closes when the panel shuts down: live streams end then, since
	// request contexts outlive the shutdown signal.
	Stop <-chan struct{}
	// BaseURL is UPANEL_URL.
	BaseURL *url.URL
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// working out the client's address (throttling, audit).
	TrustedProxies []netip.Prefix
}

// Server holds what handlers need.
type Server struct {
	Deps
	pages   map[string]*template.Template
	routes  []route
	streams *streams
}

// New returns the HTTP handler of the panel.
func New(d Deps) (http.Handler, error) {
	s, err := newServer(d)
	if err != nil {
		return nil, err
	}
	return s.handler(), nil
}

func newServer(d Deps) (*Server, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Notify == nil {
		d.Notify = notify.New(notify.Options{DB: d.DB, Log: d.Log, BaseURL: d.BaseURL})
	}
	s := &Server{Deps: d, streams: newStreams()}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s.pages = pages
	s.routes = s.routeTable()
	return s, nil
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.Handle(rt.pattern, s.guard(rt))
	}
	// Catch-alls for GET only, so that a known path with the wrong method
	// still gets the mux's 405.
	mux.HandleFunc("GET /", s.notFound)
	return s.middleware(mux)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// readyz is 200 only when the database answers and is migrated to exactly this
// binary's schema, so a load balancer sends no traffic to a panel that cannot
// serve it.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.DB.Ping(ctx); err != nil {
		s.Log.Warn("readyz: database unreachable", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: database unreachable\n"))
		return
	}
	current, err := s.DB.SchemaCurrent(ctx)
	if err != nil || !current {
		if err != nil {
			s.Log.Warn("readyz: schema check failed", "err", err)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: database migrations are not current\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

package web

import "net/http"

// routes registers every route of the panel. This file is the attack surface:
// each route appears here once, with its method.
func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
}

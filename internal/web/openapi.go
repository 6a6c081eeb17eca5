package web

import (
	_ "embed"
	"net/http"

	"upanel/internal/auth"
)

// openAPIDoc describes /api/v1. It is written by hand next to the handlers;
// a test keeps its paths and methods equal to the API routes in routes.go.
//
//go:embed openapi.json
var openAPIDoc []byte

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(openAPIDoc)
}

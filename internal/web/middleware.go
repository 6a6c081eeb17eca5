package web

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"upanel/internal/auth"
	"upanel/internal/store"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the id the middleware gave this request.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// middleware wraps every response: a request id, security headers, panic
// recovery and an access log line. The log carries the path but never the query
// string, where reset and invite tokens travel.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := store.NewID()
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		r = r.WithContext(ctx)
		h := w.Header()
		h.Set("X-Request-Id", id)
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if s.Auth != nil && s.Auth.SecureCookies() {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.Log.Error("handler panicked", "request_id", id, "panic", p, "stack", string(debug.Stack()))
				if !sw.wrote {
					http.Error(sw, "internal error", http.StatusInternalServerError)
				}
			}
			level := slog.LevelInfo
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
				level = slog.LevelDebug
			}
			s.Log.Log(ctx, level, "http request", "request_id", id, "method", r.Method, "path", logPath(r.URL.Path),
				"status", sw.status(), "bytes", sw.bytes, "duration_ms", time.Since(start).Milliseconds(),
				"remote", r.RemoteAddr)
		}()
		if r.URL.Path == notificationStreamPath || (strings.HasPrefix(r.URL.Path, "/deployments/") && strings.HasSuffix(r.URL.Path, "/events")) {
			// The browser reconnects these streams on its own: no activity.
			r = r.WithContext(auth.Passive(r.Context()))
		}
		if s.Auth != nil {
			p, err := s.authenticate(r)
			if err != nil {
				s.Log.Error("authenticate request", "request_id", id, "err", err)
				http.Error(sw, "service unavailable", http.StatusServiceUnavailable)
				return
			}
			if p != nil {
				r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
			}
		}
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach Flush for live log streams.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logPath is the request path as logged: the secret of a bootstrap URL
// (/bootstrap/{token}) and the unguessable id of a push-to-deploy URL
// (/hooks/deploy/{hookID}) are replaced, so the log holds no usable URL.
// Everything after the prefix goes, whatever its shape (/hooks/deploy//<id>
// too), but for a known last segment of the route.
func logPath(path string) string {
	for _, r := range []struct {
		prefix string
		tails  []string
	}{{"/bootstrap/", []string{"host-keys"}}, {"/hooks/deploy/", nil}} {
		rest, ok := strings.CutPrefix(path, r.prefix)
		if !ok {
			continue
		}
		for _, t := range r.tails {
			if strings.HasSuffix(rest, "/"+t) {
				return r.prefix + "[redacted]/" + t
			}
		}
		return r.prefix + "[redacted]"
	}
	return path
}

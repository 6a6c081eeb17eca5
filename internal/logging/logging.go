// Package logging builds UPanel's slog logger. Its handler redacts secrets twice
// over: attributes whose names mean a secret are replaced whatever their value,
// and known secret values (app keys, tokens the process holds) are scrubbed from
// every string, so a secret that reaches a log line by accident still does not
// reach the log.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"
)

// Redacted replaces every secret in a log.
const Redacted = "[redacted]"

// Format is the output format: "json", "text", or "auto" (JSON unless the
// writer is a terminal).
type Format string

// New returns a logger writing to w.
func New(w io.Writer, format Format, level slog.Leveler, r *Redactor) *slog.Logger {
	if r == nil {
		r = NewRedactor()
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: r.replaceAttr}
	var h slog.Handler
	if format == "text" || (format == "auto" && isTerminal(w)) {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(&handler{inner: h, r: r})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Redactor knows which values are secret. It is shared by every logger of a
// process and safe for concurrent use.
type Redactor struct {
	mu     sync.RWMutex
	values []string
}

// NewRedactor returns an empty redactor.
func NewRedactor() *Redactor { return &Redactor{} }

// Add registers secret values to scrub. Values shorter than 8 bytes are ignored:
// scrubbing them would mangle ordinary text and they are not secrets anyway.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		if len(v) >= 8 {
			r.values = append(r.values, v)
		}
	}
}

// Scrub replaces every registered secret in s.
func (r *Redactor) Scrub(s string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range r.values {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return s
}

// secretKeys are attribute names (or name endings) whose values are never logged.
var secretKeys = []string{"password", "passwd", "secret", "token", "authorization", "cookie", "credentials", "private_key", "app_key", "api_key", "recovery_codes"}

// SecretName reports whether an attribute or field name denotes a secret.
func SecretName(name string) bool {
	n := strings.ToLower(name)
	for _, k := range secretKeys {
		if n == k || strings.HasSuffix(n, "_"+k) || strings.HasSuffix(n, "-"+k) || strings.HasSuffix(n, "."+k) {
			return true
		}
	}
	return false
}

func (r *Redactor) replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if SecretName(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s := r.Scrub(a.Value.String()); s != a.Value.String() {
			return slog.String(a.Key, s)
		}
	case slog.KindAny:
		// Errors, structs, slices and Stringers are formatted the way the
		// handler would print them, and replaced by their scrubbed text if
		// that text holds a secret.
		v := a.Value.Any()
		if err, ok := v.(error); ok {
			return slog.String(a.Key, r.Scrub(err.Error()))
		}
		if text := fmt.Sprintf("%+v", v); r.Scrub(text) != text {
			return slog.String(a.Key, r.Scrub(text))
		}
	}
	return a
}

// handler scrubs the message, which ReplaceAttr does not see.
type handler struct {
	inner slog.Handler
	r     *Redactor
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	rec.Message = h.r.Scrub(rec.Message)
	return h.inner.Handle(ctx, rec)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{inner: h.inner.WithAttrs(as), r: h.r}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{inner: h.inner.WithGroup(name), r: h.r}
}

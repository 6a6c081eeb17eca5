package web

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
)

// notificationStreamPath is the bell's live feed.
const notificationStreamPath = "/notifications/stream"

// streams bounds the live notification streams of this process, per user and
// in all, and holds their timing, which tests shorten.
type streams struct {
	mu      sync.Mutex
	perUser map[string]int
	total   int

	maxPerUser int
	maxTotal   int
	// poll is how often a stream reads the user's unread count. It reads the
	// database, not an in-process signal, so a notification raised by another
	// panel process sharing the database shows as quickly.
	poll time.Duration
	// heartbeat is how often an idle stream sends a comment, so that proxies
	// and the browser see a live connection.
	heartbeat time.Duration
	// life is how long a stream lasts before it ends and the browser
	// reconnects (after retry): connections do not live forever, and one
	// that outlived a deploy behind a load balancer moves on. A random part
	// of up to a tenth is added so that clients do not reconnect in step.
	life time.Duration
	// recheck is how often a stream checks that its session still exists,
	// so that signing out or revoking a session ends its streams.
	recheck time.Duration
	// retry is what the browser waits before reconnecting.
	retry time.Duration
	// writeTimeout bounds one write to a client that stopped reading.
	writeTimeout time.Duration
}

func newStreams() *streams {
	return &streams{perUser: map[string]int{}, maxPerUser: 5, maxTotal: 1000,
		poll: 2 * time.Second, heartbeat: 25 * time.Second, life: 10 * time.Minute, recheck: time.Minute,
		retry: 3 * time.Second, writeTimeout: 10 * time.Second}
}

// acquire counts a new stream of user, or reports false if the user or the
// process has as many as it allows.
func (l *streams) acquire(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perUser[user] >= l.maxPerUser || l.total >= l.maxTotal {
		return false
	}
	l.perUser[user]++
	l.total++
	return true
}

func (l *streams) release(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perUser[user]--; l.perUser[user] <= 0 {
		delete(l.perUser, user)
	}
	l.total--
}

// open reports how many streams are open, for tests.
func (l *streams) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// notificationStream is the bell's live feed (text/event-stream): an "unread"
// event with {"count": N} at once and whenever the user's unread count
// changes, a comment every heartbeat, and an end after life so that the
// browser reconnects. It ends at once when the client goes away, when the
// panel shuts down, or when the session is gone.
func (s *Server) notificationStream(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	l := s.streams
	if !l.acquire(p.User.ID) {
		w.Header().Set("Retry-After", "30")
		s.fail(w, r, false, apperr.New(apperr.RateLimited, "too many live notification streams are open: close some tabs"))
		return
	}
	defer l.release(p.User.ID)
	ctx := r.Context()
	// The server's ReadTimeout does not end a stream: net/http lifts the
	// read deadline once the request is read (the tests run with a short
	// one). Its WriteTimeout would, hence the deadline set on every write.
	rc := http.NewResponseController(w)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	send := func(format string, args ...any) bool {
		// A write deadline per write, which also lifts any WriteTimeout of
		// the server for this long-lived response.
		_ = rc.SetWriteDeadline(time.Now().Add(l.writeTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}

	count, err := s.DB.UnreadNotifications(ctx, p.User.ID)
	if err != nil {
		if ctx.Err() == nil {
			s.Log.Error("notification stream: unread count", "err", err)
		}
		send("retry: %d\n\n", (30 * time.Second).Milliseconds())
		return
	}
	if !send("retry: %d\nevent: unread\ndata: {\"count\":%d}\n\n", l.retry.Milliseconds(), count) {
		return
	}

	life := l.life + rand.N(l.life/10+1)
	end := time.NewTimer(life)
	defer end.Stop()
	poll := time.NewTicker(l.poll)
	defer poll.Stop()
	beat := time.NewTicker(l.heartbeat)
	defer beat.Stop()
	recheck := time.NewTicker(l.recheck)
	defer recheck.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.Stop:
			return
		case <-end.C:
			return
		case <-recheck.C:
			if !s.sessionAlive(ctx, r) {
				return
			}
		case <-beat.C:
			if !send(": keep-alive\n\n") {
				return
			}
		case <-poll.C:
			n, err := s.DB.UnreadNotifications(ctx, p.User.ID)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// A database that stays away ends the stream; the browser
				// comes back after retry.
				if failures++; failures >= 3 {
					s.Log.Warn("notification stream: unread count", "err", err)
					return
				}
				continue
			}
			failures = 0
			if n != count {
				count = n
				if !send("event: unread\ndata: {\"count\":%d}\n\n", count) {
					return
				}
			}
		}
	}
}

// sessionAlive authenticates the stream's request again: false once its
// session was signed out, revoked or expired. Rechecking does not count as
// activity (the request is passive), so an open tab does not keep an idle
// session alive.
func (s *Server) sessionAlive(ctx context.Context, r *http.Request) bool {
	p, err := s.authenticate(r.WithContext(ctx))
	if err != nil {
		return ctx.Err() == nil // a database hiccup is not a sign-out
	}
	return p != nil && p.User != nil && !p.TwoFactorPending
}

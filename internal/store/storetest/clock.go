package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"upanel/internal/secret"
	"upanel/internal/store"
)

// Clock is a settable clock for tests of time-driven code.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Add moves the clock forward by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// NewWithClock is New with the store's clock replaced.
func NewWithClock(t testing.TB, dialect string, clock *Clock) Env {
	t.Helper()
	e := Env{URL: URL(t, dialect), Key: Key(t)}
	kr, err := secret.NewKeyring(e.Key)
	if err != nil {
		t.Fatal(err)
	}
	e.DB = open(t, e.URL, store.Options{Keyring: kr, Now: clock.Now})
	if _, err := e.DB.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return e
}

// Reopen opens a second handle on the same database, as a second panel process
// would.
func (e Env) Reopen(t testing.TB, opts store.Options) *store.DB {
	t.Helper()
	if opts.Keyring == nil {
		opts.Keyring = Keyring(t, e.Key)
	}
	return open(t, e.URL, opts)
}

func open(t testing.TB, rawURL string, opts store.Options) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), rawURL, opts)
	if err != nil {
		t.Fatalf("open %s: %v", Redact(rawURL), err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

package auth

import (
	"context"
	"fmt"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/store"
)

// Throttling. Every password, TOTP or recovery-code attempt is reserved (and
// counted as a failure) before the credential is checked, under a lock on the
// account, so parallel guesses are counted like a sequence:
//   - from one address, an account gets freeFailures attempts, then waits
//     baseDelay, doubling with each further failure up to maxDelay. Keyed by
//     account and address, so someone elsewhere cannot lock the owner out;
//   - an account takes at most hourlyCap failures an hour from addresses it has
//     not signed in from in the last week. Its own known addresses are held only
//     to the growing delay above, so a flood from strangers does not shut the
//     owner out;
//   - an address gets ipFreeFailures failures an hour across all accounts, then
//     the growing delay, so spraying many accounts is slowed too. IPv6 counts
//     by /64.
//
// Attempts refused by the throttle are not checked and not counted.
const (
	throttleWindow = time.Hour
	knownWindow    = 7 * 24 * time.Hour
	freeFailures   = 5
	baseDelay      = 30 * time.Second
	maxDelay       = 15 * time.Minute
	hourlyCap      = 100
	ipFreeFailures = 20
)

// ThrottledError says when to try again.
type ThrottledError struct {
	RetryAt time.Time
	now     time.Time
}

func (e *ThrottledError) Error() string {
	wait := max(e.RetryAt.Sub(e.now).Round(time.Second), time.Second)
	return fmt.Sprintf("too many failed attempts: try again after %s (in %s)", e.RetryAt.UTC().Format("15:04:05 UTC"), humanDuration(wait))
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(d.Seconds()))
	case d < 2*time.Minute:
		return "about a minute"
	default:
		return fmt.Sprintf("%d minutes", int(d.Round(time.Minute).Minutes()))
	}
}

func delayAfter(failures, free int) time.Duration {
	if failures < free {
		return 0
	}
	d := baseDelay
	for i := free; i < failures && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// retryAt is when the view lets the next attempt through; zero means now.
func retryAt(v store.ThrottleView) time.Time {
	var at time.Time
	later := func(t time.Time) {
		if t.After(at) {
			at = t
		}
	}
	if !v.KnownAddress && v.Account.InWindow >= hourlyCap {
		later(v.Account.Oldest.Add(throttleWindow))
	}
	if d := delayAfter(v.AccountAtIP.SinceSuccess, freeFailures); d > 0 {
		later(v.AccountAtIP.Last.Add(d))
	}
	if d := delayAfter(v.IP.InWindow, ipFreeFailures); d > 0 {
		later(v.IP.Last.Add(d))
	}
	return at
}

// lockoutStarted reports whether the attempt just recorded is the one that
// starts a lockout, so each lockout is one security event.
func lockoutStarted(v store.ThrottleView) (string, bool) {
	switch {
	case v.AccountAtIP.SinceSuccess == freeFailures:
		return "account from this address", true
	case v.Account.InWindow == hourlyCap:
		return "account (hourly cap)", true
	case v.IP.InWindow == ipFreeFailures:
		return "address", true
	}
	return "", false
}

// reserve counts an attempt before its credential is checked, or refuses it
// with a rate-limited error saying when to try again. It records the lockout
// this attempt starts, if any.
func (s *Service) reserve(ctx context.Context, email string, u *store.User, kind string, m Meta) (string, error) {
	now := s.DB.Now()
	a := store.LoginAttempt{Email: email, IPAddress: m.IP, Kind: kind}
	if u != nil {
		a.UserID = u.ID
	}
	var scope string
	var until time.Time
	id, err := s.DB.ReserveLoginAttempt(ctx, a, now.Add(-throttleWindow), now.Add(-knownWindow), func(v store.ThrottleView, recorded bool) error {
		if recorded {
			if what, ok := lockoutStarted(v); ok {
				scope, until = what, retryAt(v)
			}
			return nil
		}
		if at := retryAt(v); at.After(now) {
			te := &ThrottledError{RetryAt: at, now: now}
			return apperr.Wrap(te, apperr.RateLimited, "%s", te.Error())
		}
		return nil
	})
	if err == nil && scope != "" {
		s.security(ctx, s.event(audit.Lockout, u, m, map[string]any{"email": email, "locked": scope, "until": until.UTC().Format(time.RFC3339)}))
	}
	return id, err
}

// settle records how a reserved attempt ended: a success resets the delays of
// its address; drop forgets it (a right password still owing a second factor).
func (s *Service) settle(ctx context.Context, id string, u *store.User, ok, drop bool) {
	var err error
	switch {
	case drop:
		err = s.DB.DropAttempt(ctx, id)
	case ok:
		err = s.DB.MarkAttemptSucceeded(ctx, id, u.ID)
	}
	if err != nil {
		s.Log.Error("settle login attempt", "err", err)
	}
}

package auth

import (
	"context"
	"fmt"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/store"
)

// Throttling. Failed passwords and second-factor codes count together, per
// account (by email, known or not) and per IP address:
//   - an account gets freeFailures attempts, then waits baseDelay, doubling
//     with each further failure up to maxDelay;
//   - no account ever takes more than hourlyCap failures in an hour, whatever
//     the delays allow;
//   - an IP address gets ipFreeFailures in an hour across all accounts, then
//     the same growing delay, so spraying many accounts is slowed too.
//
// Attempts refused by the throttle are not verified and not counted, so an
// attacker cannot extend a victim's lockout by hammering it.
const (
	throttleWindow = time.Hour
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
	wait := e.RetryAt.Sub(e.now).Round(time.Second)
	if wait < time.Second {
		wait = time.Second
	}
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

// checkThrottle returns a rate-limited error while email or ip must wait.
func checkThrottle(ctx context.Context, db *store.DB, email, ip string) error {
	now := db.Now()
	since := now.Add(-throttleWindow)
	acct, err := db.AccountFailures(ctx, email, since)
	if err != nil {
		return err
	}
	var retry time.Time
	if acct.InWindow >= hourlyCap {
		retry = acct.Oldest.Add(throttleWindow)
	}
	if d := delayAfter(acct.SinceSuccess, freeFailures); d > 0 && acct.Last.Add(d).After(retry) {
		retry = acct.Last.Add(d)
	}
	if ip != "" {
		st, err := db.IPFailures(ctx, ip, since)
		if err != nil {
			return err
		}
		if d := delayAfter(st.InWindow, ipFreeFailures); d > 0 && st.Last.Add(d).After(retry) {
			retry = st.Last.Add(d)
		}
	}
	if retry.After(now) {
		te := &ThrottledError{RetryAt: retry, now: now}
		return apperr.Wrap(te, apperr.RateLimited, "%s", te.Error())
	}
	return nil
}

// lockedOutNow reports whether the failure just recorded for email started a
// lockout (crossed the free attempts or reached the hourly cap), so the
// lockout is recorded once, not once per refused attempt.
func lockedOutNow(ctx context.Context, db *store.DB, email string) (bool, time.Time, error) {
	now := db.Now()
	acct, err := db.AccountFailures(ctx, email, now.Add(-throttleWindow))
	if err != nil {
		return false, time.Time{}, err
	}
	if acct.InWindow == hourlyCap {
		return true, acct.Oldest.Add(throttleWindow), nil
	}
	if acct.SinceSuccess == freeFailures {
		return true, acct.Last.Add(delayAfter(acct.SinceSuccess, freeFailures)), nil
	}
	return false, time.Time{}, nil
}

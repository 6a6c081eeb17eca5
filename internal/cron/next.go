package cron

import "time"

// maxPeriods bounds how many zone periods (stretches of constant UTC offset)
// Next walks through. Real zones have at most a few per year; the bound only
// guards against pathological zone data.
const maxPeriods = 1000

// foldLookback bounds how far back Next looks for wall-clock times that were
// already reached before a zone period began. No two zones' offsets differ by
// more than 26 hours, so periods that ended earlier than this cannot matter.
const foldLookback = 72 * time.Hour

// Next returns the first run instant strictly after t (any location), in UTC.
// It returns the zero Time if the schedule never fires in the next 10 years.
//
// Next walks the zone periods from t onwards. Within a period the offset is
// constant, so wall-clock time and instants map one to one and the search can
// skip field by field in wall-clock time. At the boundary between periods it
// applies the DST rules described in the package documentation: candidates
// that fall into a gap run at the first instant after it, and wall times that
// were already reached before a fold are skipped unless every hour matches.
func (s Schedule) Next(t time.Time) time.Time {
	if !s.valid() {
		return time.Time{}
	}
	loc := s.Location()
	limit := t.AddDate(horizonYears, 0, 0)
	everyHour := s.hour&allHours == allHours

	start, end, off := zoneAt(t, loc)
	// seen is the supremum of the wall-clock times shown before the current
	// period; walls below it have already had their first occurrence.
	seen, haveSeen := wallsBefore(start, loc)
	// Within t's own period a run must be strictly after t, which in wall
	// time means strictly after t's wall time.
	from := wall(t, off).Truncate(time.Minute).Add(time.Minute)

	for range maxPeriods {
		if !everyHour && haveSeen && seen.After(from) {
			from = ceilMinute(seen)
		}
		to := wall(limit, off).Add(time.Minute)
		if !end.IsZero() {
			if e := wall(end, off); e.Before(to) {
				to = e
			}
		}
		if w, ok := s.findWall(from, to); ok {
			return checkRun(w.Add(-seconds(off)), t, limit)
		}
		if end.IsZero() || end.After(limit) {
			return time.Time{}
		}

		// Move into the next period. The walls of the one we leave reach up
		// to, but not including, its end in its own offset.
		prevOff := off
		if e := wall(end, prevOff); !haveSeen || e.After(seen) {
			seen, haveSeen = e, true
		}
		// The new period starts where the old one ended, whatever
		// ZoneBounds says (see zoneAt).
		start = end
		_, end, off = zoneAt(start, loc)
		if off > prevOff && !everyHour {
			// Spring forward: the walls in [start+prevOff, start+off) do not
			// exist. Any candidate among them runs once, at start. A job that
			// runs every hour skips them instead, as in Vixie cron: its next
			// run in the new period is soon, and running at the gap's end too
			// would run it twice within the hour.
			gapFrom := ceilMinute(wall(start, prevOff))
			if seen.After(gapFrom) {
				gapFrom = ceilMinute(seen)
			}
			if _, ok := s.findWall(gapFrom, wall(start, off)); ok {
				return checkRun(start.UTC(), t, limit)
			}
		}
		from = ceilMinute(wall(start, off))
	}
	return time.Time{}
}

// zoneAt returns the stretch [start, end) of constant UTC offset that
// contains u, and that offset. A zero start or end means unbounded.
//
// Time.ZoneBounds has a bug (golang/go#81583): on the last UTC day of a leap
// year in the range a zone's POSIX TZ rule describes (beyond its explicit
// transitions, e.g. 2040 in Europe/Berlin) it reports an end 365 days after
// the start of the year, which is at or before u itself. The offset it
// reports does hold until the end of that UTC day, so end is moved there;
// otherwise Next would never get past the year.
func zoneAt(u time.Time, loc *time.Location) (start, end time.Time, offset int) {
	lu := u.In(loc)
	_, offset = lu.Zone()
	start, end = lu.ZoneBounds()
	if !end.IsZero() && !end.After(u) {
		end = u.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	}
	if start.After(u) {
		start = u
	}
	return start, end, offset
}

// checkRun enforces the horizon. It also refuses a run that is not after t,
// which the search cannot produce from sane zone data; a scheduler fed such
// a run would loop on it.
func checkRun(run, t, limit time.Time) time.Time {
	if run.After(limit) || !run.After(t) {
		return time.Time{}
	}
	return run
}

// wallsBefore returns the supremum of the wall-clock times shown in the zone
// periods that ended at or shortly before start. It is only larger than the
// walls of the period starting at start when that period began with a fold.
func wallsBefore(start time.Time, loc *time.Location) (sup time.Time, ok bool) {
	p := start
	for range 16 {
		if p.IsZero() {
			break
		}
		prev := p.Add(-time.Nanosecond).In(loc)
		_, off := prev.Zone()
		if w := wall(p, off); !ok || w.After(sup) {
			sup, ok = w, true
		}
		ps, _ := prev.ZoneBounds()
		if ps.IsZero() || start.Sub(ps) > foldLookback {
			break
		}
		p = ps
	}
	return sup, ok
}

// wall returns the wall-clock time of instant t at the given UTC offset,
// represented as a UTC time so that civil arithmetic on it is exact.
func wall(t time.Time, offset int) time.Time {
	return t.UTC().Add(seconds(offset))
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// ceilMinute rounds a wall time up to a whole minute.
func ceilMinute(w time.Time) time.Time {
	if m := w.Truncate(time.Minute); m.Before(w) {
		return m.Add(time.Minute)
	}
	return w
}

// findWall returns the first whole-minute wall time in [from, to) that
// matches the schedule. Walls are UTC times, so there is no DST to get in the
// way; non-matching months, days and hours are skipped whole.
func (s Schedule) findWall(from, to time.Time) (time.Time, bool) {
	w := ceilMinute(from)
	// Each iteration either returns or advances to the next month, day, hour
	// or matching minute, so ten years take at most a few thousand steps.
	for w.Before(to) {
		y, mon, d := w.Date()
		h, m := w.Hour(), w.Minute()
		switch {
		case s.month&(1<<uint(mon)) == 0:
			w = time.Date(y, mon+1, 1, 0, 0, 0, 0, time.UTC)
		case !s.dayMatches(d, w.Weekday()):
			w = time.Date(y, mon, d+1, 0, 0, 0, 0, time.UTC)
		case s.hour&(1<<uint(h)) == 0:
			w = time.Date(y, mon, d, h+1, 0, 0, 0, time.UTC)
		case s.minute&(1<<uint(m)) == 0:
			next := m + 1
			for next < 60 && s.minute&(1<<uint(next)) == 0 {
				next++
			}
			w = time.Date(y, mon, d, h, next, 0, 0, time.UTC)
		default:
			return w, true
		}
	}
	return time.Time{}, false
}

// dayMatches applies the standard day rule: when both day fields are
// restricted a day matches if either does, otherwise both must match. A field
// counts as restricted when it does not cover its whole range, so "0-6" in
// day-of-week behaves like "*".
func (s Schedule) dayMatches(dom int, dow time.Weekday) bool {
	domOK := s.dom&(1<<uint(dom)) != 0
	dowOK := s.dow&(1<<uint(dow)) != 0
	if s.dom&allDoms != allDoms && s.dow&allDows != allDows {
		return domOK || dowOK
	}
	return domOK && dowOK
}

package cron

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zone data must not depend on the test machine
)

func utc(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, time.UTC)
}

// checkRuns calls Next repeatedly from from and compares the results with want.
func checkRuns(t *testing.T, expr, tz string, from time.Time, want []time.Time) {
	t.Helper()
	s := mustParse(t, expr, tz)
	cur := from
	for i, w := range want {
		got := s.Next(cur)
		if !got.Equal(w) {
			t.Fatalf("%q in %s: run %d after %v = %v (%v), want %v (%v)",
				expr, tz, i+1, from, got, got.In(s.Location()), w, w.In(s.Location()))
		}
		if got.Location() != time.UTC {
			t.Fatalf("Next returned a time in %v, want UTC", got.Location())
		}
		cur = got
	}
}

func TestNextCalendar(t *testing.T) {
	tests := []struct {
		name, expr, tz string
		from           time.Time
		want           []time.Time
	}{
		{"every minute is strictly after", "* * * * *", "", utc(2026, 5, 1, 10, 0),
			[]time.Time{utc(2026, 5, 1, 10, 1), utc(2026, 5, 1, 10, 2)}},
		{"seconds round up", "* * * * *", "", utc(2026, 5, 1, 10, 0).Add(time.Nanosecond),
			[]time.Time{utc(2026, 5, 1, 10, 1)}},
		{"daily", "0 2 * * *", "", utc(2026, 5, 1, 2, 0),
			[]time.Time{utc(2026, 5, 2, 2, 0), utc(2026, 5, 3, 2, 0)}},
		{"month end", "0 0 1 * *", "", utc(2026, 1, 31, 12, 0),
			[]time.Time{utc(2026, 2, 1, 0, 0), utc(2026, 3, 1, 0, 0)}},
		{"year end", "59 23 31 12 *", "", utc(2026, 12, 31, 23, 59),
			[]time.Time{utc(2027, 12, 31, 23, 59), utc(2028, 12, 31, 23, 59)}},
		{"new year", "@yearly", "", utc(2026, 12, 31, 23, 59),
			[]time.Time{utc(2027, 1, 1, 0, 0), utc(2028, 1, 1, 0, 0)}},
		{"31st skips short months", "0 0 31 * *", "", utc(2026, 1, 31, 0, 0),
			[]time.Time{utc(2026, 3, 31, 0, 0), utc(2026, 5, 31, 0, 0), utc(2026, 7, 31, 0, 0), utc(2026, 8, 31, 0, 0)}},
		{"Feb 29 leap years only", "0 0 29 2 *", "", utc(2026, 1, 1, 0, 0),
			[]time.Time{utc(2028, 2, 29, 0, 0), utc(2032, 2, 29, 0, 0)}},
		{"last day of Feb in a leap year", "0 12 28,29 2 *", "", utc(2028, 2, 27, 0, 0),
			[]time.Time{utc(2028, 2, 28, 12, 0), utc(2028, 2, 29, 12, 0), utc(2029, 2, 28, 12, 0)}},
		{"2100 is not a leap year", "0 0 29 2 *", "", utc(2096, 3, 1, 0, 0),
			[]time.Time{utc(2104, 2, 29, 0, 0)}},
		{"steps", "*/20 9-10 * * *", "", utc(2026, 5, 1, 9, 45),
			[]time.Time{utc(2026, 5, 1, 10, 0), utc(2026, 5, 1, 10, 20), utc(2026, 5, 1, 10, 40), utc(2026, 5, 2, 9, 0)}},
		{"weekdays", "30 8 * * MON-FRI", "", utc(2026, 5, 1, 9, 0), // Friday
			[]time.Time{utc(2026, 5, 4, 8, 30), utc(2026, 5, 5, 8, 30)}},
		{"Sunday as 7", "0 0 * * 7", "", utc(2026, 5, 1, 0, 0),
			[]time.Time{utc(2026, 5, 3, 0, 0), utc(2026, 5, 10, 0, 0)}},
		{"dom or dow when both restricted", "0 0 13 * FRI", "", utc(2026, 3, 31, 0, 0),
			[]time.Time{utc(2026, 4, 3, 0, 0), utc(2026, 4, 10, 0, 0), utc(2026, 4, 13, 0, 0), utc(2026, 4, 17, 0, 0)}},
		{"dom or dow with ranges", "0 0 1-2 * 0", "", utc(2026, 4, 30, 0, 0),
			[]time.Time{utc(2026, 5, 1, 0, 0), utc(2026, 5, 2, 0, 0), utc(2026, 5, 3, 0, 0), utc(2026, 5, 10, 0, 0)}},
		{"dom only when dow is *", "0 0 13 * *", "", utc(2026, 3, 31, 0, 0),
			[]time.Time{utc(2026, 4, 13, 0, 0), utc(2026, 5, 13, 0, 0)}},
		{"dow only when dom is *", "0 0 * * FRI", "", utc(2026, 3, 31, 0, 0),
			[]time.Time{utc(2026, 4, 3, 0, 0), utc(2026, 4, 10, 0, 0), utc(2026, 4, 17, 0, 0)}},
		{"dow 0-6 counts as unrestricted", "0 0 13 * 0-6", "", utc(2026, 3, 31, 0, 0),
			[]time.Time{utc(2026, 4, 13, 0, 0), utc(2026, 5, 13, 0, 0)}},
		{"dom and month restricted, dow *", "0 0 1 */6 *", "", utc(2026, 1, 1, 0, 0),
			[]time.Time{utc(2026, 7, 1, 0, 0), utc(2027, 1, 1, 0, 0)}},
		{"Feb 30 or Monday", "0 0 30 2 1", "", utc(2026, 2, 20, 0, 0),
			[]time.Time{utc(2026, 2, 23, 0, 0), utc(2027, 2, 1, 0, 0)}},
		{"UTC schedule", "0 2 * * *", "UTC", time.Date(2026, 3, 29, 3, 30, 0, 0, mustLoad(t, "Europe/Berlin")),
			[]time.Time{utc(2026, 3, 29, 2, 0), utc(2026, 3, 30, 2, 0)}},
		{"Etc zone", "0 2 * * *", "Etc/GMT-3", utc(2026, 1, 1, 0, 0),
			[]time.Time{utc(2026, 1, 1, 23, 0), utc(2026, 1, 2, 23, 0)}},
		{"India, half-hour offset without DST", "0 9 * * *", "Asia/Kolkata", utc(2026, 1, 1, 0, 0),
			[]time.Time{utc(2026, 1, 1, 3, 30), utc(2026, 1, 2, 3, 30)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRuns(t, tt.expr, tt.tz, tt.from, tt.want)
		})
	}
}

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestNextDST pins the DST rules to concrete instants.
func TestNextDST(t *testing.T) {
	tests := []struct {
		name, expr, tz string
		from           time.Time
		want           []time.Time
	}{
		// Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
		{"Berlin gap daily", "30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12, 0),
			[]time.Time{utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)}},
		{"Berlin gap daily from inside the gap", "30 2 * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 59),
			[]time.Time{utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)}},
		{"Berlin gap hourly", "0 * * * *", "Europe/Berlin", utc(2026, 3, 28, 23, 30),
			[]time.Time{utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0)}},
		{"Berlin gap every 30 minutes", "*/30 * * * *", "Europe/Berlin", utc(2026, 3, 28, 23, 50),
			[]time.Time{utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)}},
		{"Berlin gap candidates collapse", "*/15 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12, 0),
			[]time.Time{utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 0, 15)}},
		{"Berlin gap run coincides with 03:00", "0,30 2,3 * * *", "Europe/Berlin", utc(2026, 3, 28, 12, 0),
			[]time.Time{utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 0)}},
		{"Berlin gap restricted hour before and after", "30 1-3 * * *", "Europe/Berlin", utc(2026, 3, 28, 12, 0),
			[]time.Time{utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 23, 30)}},

		// Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
		{"Berlin fold daily", "30 2 * * *", "Europe/Berlin", utc(2026, 10, 23, 12, 0),
			[]time.Time{utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)}},
		{"Berlin fold daily from the second pass", "30 2 * * *", "Europe/Berlin", utc(2026, 10, 25, 1, 10),
			[]time.Time{utc(2026, 10, 26, 1, 30)}},
		{"Berlin fold daily from between the passes", "30 2 * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 45),
			[]time.Time{utc(2026, 10, 26, 1, 30)}},
		{"Berlin fold hourly", "0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 30),
			[]time.Time{utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 3, 0)}},
		{"Berlin fold every 30 minutes", "*/30 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 50),
			[]time.Time{utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 0)}},
		{"Berlin fold hourly via */1", "15 */1 * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 0),
			[]time.Time{utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 1, 15), utc(2026, 10, 25, 2, 15)}},
		{"Berlin fold minutes in a fixed hour run once", "*/30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 50),
			[]time.Time{utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 0)}},
		{"Berlin fold every other hour", "0 */2 * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 30),
			[]time.Time{utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 3, 0), utc(2026, 10, 25, 5, 0)}},

		// America/New_York, 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00 UTC;
		// 2026-11-01: 02:00 EDT becomes 01:00 EST at 06:00 UTC.
		{"New York gap daily", "30 2 * * *", "America/New_York", utc(2026, 3, 7, 12, 0),
			[]time.Time{utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)}},
		{"New York fold daily", "30 1 * * *", "America/New_York", utc(2026, 10, 31, 12, 0),
			[]time.Time{utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)}},
		{"New York fold hourly", "0 * * * *", "America/New_York", utc(2026, 11, 1, 3, 30),
			[]time.Time{utc(2026, 11, 1, 4, 0), utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 6, 0), utc(2026, 11, 1, 7, 0)}},
		{"New York gap every 15 minutes", "*/15 * * * *", "America/New_York", utc(2026, 3, 8, 6, 30),
			[]time.Time{utc(2026, 3, 8, 6, 45), utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 15)}},

		// Australia/Lord_Howe moves by 30 minutes. 2026-04-05: 02:00 LHDT
		// (+11) becomes 01:30 LHST (+10:30) at 15:00 UTC on the 4th;
		// 2026-10-04: 02:00 LHST becomes 02:30 LHDT at 15:30 UTC on the 3rd.
		{"Lord Howe fold daily", "45 1 * * *", "Australia/Lord_Howe", utc(2026, 4, 3, 12, 0),
			[]time.Time{utc(2026, 4, 3, 14, 45), utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)}},
		{"Lord Howe fold every 30 minutes", "*/30 * * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 13, 50),
			[]time.Time{utc(2026, 4, 4, 14, 0), utc(2026, 4, 4, 14, 30), utc(2026, 4, 4, 15, 0), utc(2026, 4, 4, 15, 30)}},
		{"Lord Howe gap daily", "15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 2, 12, 0),
			[]time.Time{utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)}},
		{"Lord Howe gap at its start", "0 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 2, 12, 0),
			[]time.Time{utc(2026, 10, 2, 15, 30), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 0)}},
		{"Lord Howe 02:30 exists", "30 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3, 12, 0),
			[]time.Time{utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 30)}},
		{"Lord Howe gap hourly", "0 * * * *", "Australia/Lord_Howe", utc(2026, 10, 3, 14, 0),
			[]time.Time{utc(2026, 10, 3, 14, 30), utc(2026, 10, 3, 16, 0), utc(2026, 10, 3, 17, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRuns(t, tt.expr, tt.tz, tt.from, tt.want)
		})
	}
}

// TestNextInputLocation checks that the location of Next's argument does not
// matter, only the instant.
func TestNextInputLocation(t *testing.T) {
	s := mustParse(t, "30 2 * * *", "Europe/Berlin")
	at := utc(2026, 10, 25, 0, 45)
	want := s.Next(at)
	for _, tz := range []string{"America/New_York", "Asia/Tokyo", "Europe/Berlin", "Australia/Lord_Howe"} {
		if got := s.Next(at.In(mustLoad(t, tz))); !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("Next(t in %s) = %v, want %v", tz, got, want)
		}
	}
}

// TestNextFullYear walks whole calendar years in Berlin: a daily job runs
// exactly once on every local calendar day, gap and fold days included.
func TestNextFullYear(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	for _, tt := range []struct {
		year int
		days int
	}{
		{2026, 365},
		{2027, 365},
		{2028, 366},
	} {
		t.Run(fmt.Sprint(tt.year), func(t *testing.T) {
			s := mustParse(t, "30 2 * * *", "Europe/Berlin")
			start := time.Date(tt.year, 1, 1, 0, 0, 0, 0, berlin)
			end := time.Date(tt.year+1, 1, 1, 0, 0, 0, 0, berlin)
			days := map[string]bool{}
			runs := 0
			for _, cur := range collectRuns(t, s, start, end) {
				runs++
				day := cur.In(berlin).Format(time.DateOnly)
				if days[day] {
					t.Fatalf("second run on %s at %v", day, cur.In(berlin))
				}
				days[day] = true
				if clock := cur.In(berlin).Format("15:04"); clock != "02:30" && clock != "03:00" {
					t.Errorf("run on %s at %s local", day, clock)
				}
			}
			if runs != tt.days {
				t.Errorf("%d runs in %d, want %d", runs, tt.year, tt.days)
			}
		})
	}
}

// TestNextProgress checks properties every schedule must have: each run is
// strictly after the previous one, so repeated calls never repeat an instant
// or go backwards.
func TestNextProgress(t *testing.T) {
	exprs := []string{"* * * * *", "*/7 * * * *", "30 2 * * *", "0 * * * *", "15 1-3 * * 0", "0 0 29 2 *", "@monthly"}
	zones := []string{"", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Pacific/Apia"}
	for _, tz := range zones {
		// Start shortly before each 2026 transition, so that even the
		// every-minute schedule crosses one.
		starts := []time.Time{utc(2026, 1, 1, 0, 0)}
		for _, tr := range transitions(t, tz, 2026) {
			starts = append(starts, tr.Add(-3*time.Hour))
		}
		for _, expr := range exprs {
			s := mustParse(t, expr, tz)
			for _, prev := range starts {
				for range 400 {
					next := s.Next(prev)
					if !next.After(prev) {
						t.Fatalf("%q in %q: Next(%v) = %v", expr, tz, prev, next)
					}
					prev = next
				}
			}
		}
	}
}

// transitions returns the instants in year at which the zone's offset (or
// name) changes.
func transitions(t testing.TB, tz string, year int) []time.Time {
	t.Helper()
	loc := mustLoad(t, tz)
	var trs []time.Time
	for _, end := time.Date(year, 1, 1, 0, 0, 0, 0, loc).ZoneBounds(); !end.IsZero() && end.Year() == year; _, end = end.In(loc).ZoneBounds() {
		trs = append(trs, end)
	}
	return trs
}

// TestNextMatchesOracle compares Next with a direct, minute-by-minute reading
// of the DST rules around every 2026 transition of a few zones.
func TestNextMatchesOracle(t *testing.T) {
	exprs := []string{
		"* * * * *", "30 2 * * *", "0 2 * * *", "59 1 * * *", "0 3 * * *", "45 1 * * *", "15 2 * * *",
		"0 * * * *", "15 * * * *", "*/30 * * * *", "*/15 2 * * *", "0 1-3 * * *", "0,30 2,3 * * *",
		"*/10 1,2 * * *", "0 */2 * * *", "30 2 * * 0", "30 2 29 3 *",
		"0 0 * * *", "30 0 * * *", "59 23 * * *", "30 0 * * 0", "0 0 1-7 * SUN",
	}
	// And some arbitrary ones, the same on every run.
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(opts ...string) string { return opts[rng.IntN(len(opts))] }
	for range 40 {
		exprs = append(exprs, strings.Join([]string{
			pick("*", "0", "30", "*/15", "*/7", "5-20/5", "0,45", "59", "10-12"),
			pick("*", "*", "0", "1", "2", "3", "23", "1-3", "*/2", "0,2", "22-23", "*/1"),
			pick("*", "*", "*", "1", "13", "1-7", "*/2", "28-31"),
			pick("*", "*", "*", "1-6", "3,4,9,10", "*/2"),
			pick("*", "*", "*", "0", "1-5", "SAT,SUN", "*/3"),
		}, " "))
	}
	zones := []string{
		"Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
		"Antarctica/Troll",   // 2-hour shift
		"America/Santiago",   // transitions at local midnight
		"America/Havana",     // transitions at local midnight
		"Europe/Dublin",      // "negative" DST in the zone data
		"Pacific/Chatham",    // +12:45/+13:45
		"America/St_Johns",   // -03:30/-02:30
		"Australia/Adelaide", // southern hemisphere, half-hour offset
	}
	for _, tz := range zones {
		loc := mustLoad(t, tz)
		trs := transitions(t, tz, 2026)
		if len(trs) < 2 {
			t.Fatalf("%s: found %d transitions in 2026, want at least 2", tz, len(trs))
		}
		for _, tr := range trs {
			from, to := tr.Add(-50*time.Hour), tr.Add(50*time.Hour)
			tl := newTimeline(loc, from, to)
			for _, expr := range exprs {
				s := mustParse(t, expr, tz)
				want := tl.runs(s)
				got := collectRuns(t, s, from, to)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%q in %s around %v:\n got %v\nwant %v", expr, tz, tr, got, want)
				}
			}
		}
	}
}

// collectRuns returns the runs in (from, to], failing the test if Next does
// not move forward.
func collectRuns(t *testing.T, s Schedule, from, to time.Time) []time.Time {
	t.Helper()
	var runs []time.Time
	for cur := from; ; {
		next := s.Next(cur)
		if next.IsZero() || next.After(to) {
			return runs
		}
		if !next.After(cur) {
			t.Fatalf("%q in %s: Next(%v) = %v, not after its input", s, s.Location(), cur, next)
		}
		runs = append(runs, next)
		cur = next
	}
}

// timeline is every minute of a window with what the clock on the wall
// shows, for the oracle in TestNextMatchesOracle. It assumes whole-minute
// offsets.
type timeline struct {
	from    time.Time
	minutes []minute
}

type minute struct {
	instant time.Time
	wall    time.Time   // local wall time, as a UTC time
	first   bool        // wall is shown for the first time
	skipped []time.Time // wall times jumped over just before this minute, not shown before
}

func newTimeline(loc *time.Location, from, to time.Time) timeline {
	civil := func(u time.Time) time.Time {
		l := u.In(loc)
		y, mo, d := l.Date()
		return time.Date(y, mo, d, l.Hour(), l.Minute(), 0, 0, time.UTC)
	}
	tl := timeline{from: from}
	seen := map[time.Time]bool{}
	// Start early so that walls shown before from count as seen.
	u := from.Add(-48 * time.Hour).Truncate(time.Minute)
	prev := civil(u.Add(-time.Minute))
	for ; !u.After(to); u = u.Add(time.Minute) {
		m := minute{instant: u.UTC(), wall: civil(u)}
		m.first = !seen[m.wall]
		for g := prev.Add(time.Minute); g.Before(m.wall); g = g.Add(time.Minute) {
			if !seen[g] {
				m.skipped = append(m.skipped, g)
			}
		}
		seen[m.wall] = true
		prev = m.wall
		tl.minutes = append(tl.minutes, m)
	}
	return tl
}

// runs lists the runs in (from, to] by reading the DST rules literally: a
// minute runs when its wall time matches and is shown for the first time (or
// at any time if every hour matches), or, unless every hour matches, when a
// wall time skipped just before it matches.
func (tl timeline) runs(s Schedule) []time.Time {
	everyHour := s.hour == allHours
	matches := func(w time.Time) bool {
		return s.minute&(1<<w.Minute()) != 0 && s.hour&(1<<w.Hour()) != 0 &&
			s.month&(1<<int(w.Month())) != 0 && s.dayMatches(w.Day(), w.Weekday())
	}
	var runs []time.Time
	for _, m := range tl.minutes {
		run := matches(m.wall) && (everyHour || m.first)
		for _, g := range m.skipped {
			run = run || (!everyHour && matches(g))
		}
		if run && m.instant.After(tl.from) {
			runs = append(runs, m.instant)
		}
	}
	return runs
}

func TestNextNeverFiresWithinHorizon(t *testing.T) {
	// Feb 29 from just after one leap day: the next is 4 (or 8) years on,
	// inside the horizon; a schedule that cannot fire gives the zero Time.
	s := mustParse(t, "0 0 29 2 *", "Europe/Berlin")
	if got := s.Next(utc(2096, 3, 1, 0, 0)); !got.Equal(utc(2104, 2, 28, 23, 0)) {
		t.Errorf("Next after 2096-03-01 = %v, want 2104-02-28T23:00Z", got)
	}
	never := Schedule{minute: 1, hour: 1, dom: 1 << 30, month: 1 << 2, dow: allDows, loc: time.UTC}
	if got := never.Next(utc(2026, 1, 1, 0, 0)); !got.IsZero() {
		t.Errorf("Next of a Feb 30 schedule = %v, want zero", got)
	}
}

// TestNextLeapYearEnd covers the last day of a leap year beyond the zones'
// explicit transitions, where Time.ZoneBounds misreports the end of the
// current offset (golang/go#81583).
func TestNextLeapYearEnd(t *testing.T) {
	exprs := []string{"* * * * *", "0 * * * *", "30 2 * * *", "15 1-3 * * 0", "0 0 1 1 *", "59 23 31 12 *"}
	for _, tz := range []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe"} {
		loc := mustLoad(t, tz)
		from, to := utc(2040, 12, 29, 0, 0), utc(2041, 1, 3, 0, 0)
		tl := newTimeline(loc, from, to)
		for _, expr := range exprs {
			s := mustParse(t, expr, tz)
			want := tl.runs(s)
			got := collectRuns(t, s, from, to)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%q in %s:\n got %v\nwant %v", expr, tz, got, want)
			}
		}
	}
	// The weekly case that first exposed it.
	checkRuns(t, "15 1-3 * * 0", "Europe/Berlin", utc(2040, 12, 30, 2, 15),
		[]time.Time{utc(2041, 1, 6, 0, 15), utc(2041, 1, 6, 1, 15)})
}

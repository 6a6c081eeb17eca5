package cron

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zone data must not depend on the test machine
)

func mustParse(t testing.TB, expr, tz string) Schedule {
	t.Helper()
	s, err := Parse(expr, tz)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", expr, tz, err)
	}
	return s
}

// sameSchedule compares field sets and zone names; LoadLocation returns a new
// *time.Location on every call, so == on Schedules compares pointers.
func sameSchedule(a, b Schedule) bool {
	za, zb := a.Location().String(), b.Location().String()
	a.loc, b.loc = nil, nil
	return a == b && za == zb
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		expr string
		want string // normalised form
	}{
		// plain values, whitespace
		{"0 2 * * *", "0 2 * * *"},
		{"  0\t2   *  *\t\t* ", "0 2 * * *"},
		{"* * * * *", "* * * * *"},
		{"0 0 * * *" + strings.Repeat(" ", 91), "0 0 * * *"}, // exactly 100 bytes
		{"59 23 31 12 6", "59 23 31 12 6"},
		{"00 02 01 01 00", "0 2 1 1 0"},
		// ranges and lists
		{"1-5 * * * *", "1-5 * * * *"},
		{"1,2,3,10-12 * * * *", "1-3,10-12 * * * *"},
		{"1,2,7,8,9 * * * *", "1,2,7-9 * * * *"},
		{"5,5,1-2 * * * *", "1,2,5 * * * *"},
		{"0 0-23 * * *", "0 * * * *"},
		{"0 9-17 1-15 * *", "0 9-17 1-15 * *"},
		// steps
		{"*/15 * * * *", "*/15 * * * *"},
		{"*/30 * * * *", "*/30 * * * *"},
		{"0,30 * * * *", "*/30 * * * *"},
		{"*/1 * * * *", "* * * * *"},
		{"0 */1 * * *", "0 * * * *"},
		{"0 */6 * * *", "0 */6 * * *"},
		{"0-30/10 * * * *", "0-30/10 * * * *"},
		{"5/15 * * * *", "5-50/15 * * * *"},
		{"10-50/20 * * * *", "10-50/20 * * * *"},
		{"*/59 * * * *", "0,59 * * * *"},
		{"0 0 */2 * *", "0 0 */2 * *"},
		{"0 0 * */3 *", "0 0 * */3 *"},
		{"0 0 * * */2", "0 0 * * */2"},
		{"59/1 * * * *", "59 * * * *"},
		{"5-5/1 * * * *", "5 * * * *"},
		// names, any case
		{"0 0 * JAN,jul,Dec *", "0 0 * 1,7,12 *"},
		{"0 0 * JAN,jul *", "0 0 * */6 *"},
		{"0 0 * jan-MAR *", "0 0 * 1-3 *"},
		{"0 0 * Feb-dec/2 *", "0 0 * 2-12/2 *"},
		{"0 0 * * MON-FRI", "0 0 * * 1-5"},
		{"0 0 * * sun", "0 0 * * 0"},
		{"0 0 * * Sat,SUN", "0 0 * * 0,6"},
		{"0 0 * * mon/2", "0 0 * * 0,1,3,5"}, // 1-7/2: 7 is Sunday
		// Sunday as 0 or 7
		{"0 0 * * 7", "0 0 * * 0"},
		{"0 0 * * 0,7", "0 0 * * 0"},
		{"0 0 * * 5-7", "0 0 * * 0,5,6"},
		{"0 0 * * 0-6", "0 0 * * *"},
		{"0 0 * * 1-7", "0 0 * * *"},
		{"0 0 * * 7/1", "0 0 * * 0"},
		// Feb 29 exists in leap years
		{"0 0 29 2 *", "0 0 29 2 *"},
		// Feb 30 never exists, but the OR rule makes it fire on Mondays in February
		{"0 0 30 2 1", "0 0 30 2 1"},
		// macros
		{"@yearly", "0 0 1 1 *"},
		{"@annually", "0 0 1 1 *"},
		{"@monthly", "0 0 1 * *"},
		{"@weekly", "0 0 * * 0"},
		{"@daily", "0 0 * * *"},
		{"@midnight", "0 0 * * *"},
		{"@hourly", "0 * * * *"},
		{" @DAILY\t", "0 0 * * *"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			s := mustParse(t, tt.expr, "Europe/Berlin")
			if got := s.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			// The normalised form means the same thing.
			again := mustParse(t, s.String(), "Europe/Berlin")
			if !sameSchedule(again, s) {
				t.Errorf("Parse(String()) = %+v, want %+v", again, s)
			}
		})
	}
}

func TestParseLocation(t *testing.T) {
	tests := []struct {
		tz   string
		want string
	}{
		{"", "UTC"},
		{"UTC", "UTC"},
		{"Europe/Berlin", "Europe/Berlin"},
		{"America/New_York", "America/New_York"},
		{"Australia/Lord_Howe", "Australia/Lord_Howe"},
		{"Etc/GMT+5", "Etc/GMT+5"},
	}
	for _, tt := range tests {
		s := mustParse(t, "0 0 * * *", tt.tz)
		if got := s.Location().String(); got != tt.want {
			t.Errorf("Parse(_, %q).Location() = %q, want %q", tt.tz, got, tt.want)
		}
	}
	if got := (Schedule{}).Location(); got != time.UTC {
		t.Errorf("zero Schedule Location() = %v, want UTC", got)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, expr, tz string
		want           string // substring of the error message
	}{
		{"empty", "", "", "cron: expression is empty"},
		{"blank", " \t  ", "", "cron: expression is empty"},
		{"too long", "0 0 * * *" + strings.Repeat(" ", 92), "", "101 bytes long; the limit is 100"},
		{"too long garbage", strings.Repeat("1,", 60), "", "the limit is 100"},
		{"4 fields", "* * * *", "", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"},
		{"6 fields", "0 * * * * *", "", "expected 5 fields"},
		{"1 field", "5", "", "got 1"},

		{"@every", "@every 5m", "", "@every is not supported"},
		{"@every bare", "@every", "", "@every is not supported"},
		{"@every glued", "@every5m", "", "@every is not supported"},
		{"@reboot", "@reboot", "", "@reboot is not supported"},
		{"unknown macro", "@weekdays", "", `unknown macro "@weekdays"`},
		{"bare @", "@", "", `unknown macro "@"`},
		{"macro with fields", "@daily *", "", `macro "@daily" takes no fields`},
		{"@ inside field", "@ * * * *", "", "unknown macro"},

		{"minute 61", "61 * * * *", "", `cron: minute field "61": value 61 out of range 0-59`},
		{"minute in list", "1,61 * * * *", "", `cron: minute field "1,61": value 61 out of range 0-59`},
		{"hour 24", "0 24 * * *", "", `hour field "24": value 24 out of range 0-23`},
		{"dom 0", "0 0 0 * *", "", `day-of-month field "0": value 0 out of range 1-31`},
		{"dom 32", "0 0 32 * *", "", `day-of-month field "32": value 32 out of range 1-31`},
		{"month 0", "0 0 * 0 *", "", `month field "0": value 0 out of range 1-12`},
		{"month 13", "0 0 * 13 *", "", `month field "13": value 13 out of range 1-12`},
		{"dow 8", "0 0 * * 8", "", `day-of-week field "8": value 8 out of range 0-7`},
		{"range end out of range", "0 0-24 * * *", "", "value 24 out of range 0-23"},
		{"huge number", "99999999999999999999 * * * *", "", "value 99999999999999999999 out of range 0-59"},

		{"backwards range", "5-3 * * * *", "", `minute field "5-3": range start 5 is greater than end 3`},
		{"backwards names", "0 0 * * FRI-MON", "", "range start FRI is greater than end MON"},
		{"backwards months", "0 0 * DEC-JAN *", "", "range start DEC is greater than end JAN"},

		{"step 0", "*/0 * * * *", "", `minute field "*/0": step 0 is not allowed`},
		{"step 0 range", "1-5/0 * * * *", "", "step 0 is not allowed"},
		{"step 60", "*/60 * * * *", "", `minute field "*/60": step 60 is larger than the range 0-59`},
		{"step 24", "0 */24 * * *", "", "step 24 is larger than the range 0-23"},
		{"step over range", "0-10/11 * * * *", "", "step 11 is larger than the range 0-10"},
		{"step over n/s range", "50/20 * * * *", "", "step 20 is larger than the range 50-59"},
		{"step on single value", "5-5/2 * * * *", "", "step 2 is larger than the range 5-5"},
		{"step 13 month", "0 0 * */13 *", "", "step 13 is larger than the range 1-12"},
		{"step 8 dow", "0 0 * * */8", "", "step 8 is larger than the range 0-7"},
		{"huge step", "*/99999999999999999999 * * * *", "", "step 99999999999999999999 is larger than the range 0-59"},
		{"step 00", "*/00 * * * *", "", "step 0 is not allowed"},
		{"missing step", "*/ * * * *", "", `missing step after "/"`},
		{"bad step", "*/x * * * *", "", `invalid step "x"`},
		{"signed step", "*/+5 * * * *", "", `invalid step "+5"`},
		{"double step", "1/2/3 * * * *", "", `invalid step "2/3"`},
		{"step without range", "/5 * * * *", "", `missing value before "/"`},
		{"named step", "0 0 * * */MON", "", `invalid step "MON"`},

		{"letters", "a * * * *", "", `minute field "a": invalid value "a"`},
		{"unknown month", "0 0 * FOO *", "", `month field "FOO": invalid value "FOO"`},
		{"long month name", "0 0 * January *", "", `invalid value "January"`},
		{"day name in month", "0 0 * MON *", "", `month field "MON": invalid value "MON"`},
		{"month name in dow", "0 0 * * JAN", "", `day-of-week field "JAN": invalid value "JAN"`},
		{"name in minute", "MON * * * *", "", `minute field "MON": invalid value "MON"`},
		{"empty list element", "1,,2 * * * *", "", "empty list element"},
		{"trailing comma", "1, * * * *", "", "empty list element"},
		{"leading comma", ",1 * * * *", "", "empty list element"},
		{"negative", "-1 * * * *", "", "missing value"},
		{"plus sign", "+1 * * * *", "", `invalid value "+1"`},
		{"open range", "1- * * * *", "", "missing value"},
		{"double range", "1-2-3 * * * *", "", `invalid value "2-3"`},
		{"star range", "*-5 * * * *", "", `invalid value "*"`},
		{"question mark", "0 0 ? * *", "", `invalid value "?"`},
		{"quartz L", "0 0 L * *", "", `invalid value "L"`},
		{"quartz hash", "0 0 * * 1#2", "", `invalid value "1#2"`},
		{"decimal", "1.5 * * * *", "", `invalid value "1.5"`},
		{"hex", "0x1 * * * *", "", `invalid value "0x1"`},

		{"newline", "0 0 * * *\n", "", "control character at byte 10"},
		{"carriage return", "\r0 0 * * *", "", "control character at byte 1"},
		{"NUL", "0\x00 0 * * *", "", "control character at byte 2"},
		{"DEL", "0 0 * * *\x7f", "", "control character"},
		{"vertical tab", "0\v0 * * * *", "", "control character"},
		{"non-ASCII star", "0 0 * * ＊", "", "non-ASCII character at byte 9"},
		{"no-break space", "0 0 *\u00a0* *", "", "non-ASCII character"},
		{"invalid UTF-8", "0 0 * * \xff", "", "non-ASCII character"},

		{"unknown zone", "0 0 * * *", "Mars/Olympus_Mons", `cron: unknown time zone "Mars/Olympus_Mons"`},
		{"Local", "0 0 * * *", "Local", `time zone "Local" is not allowed`},
		{"path traversal zone", "0 0 * * *", "../../etc/passwd", "unknown time zone"},
		{"absolute path zone", "0 0 * * *", "/etc/localtime", "unknown time zone"},
		{"zone with NUL", "0 0 * * *", "Europe/Berlin\x00", "unknown time zone"},
		{"zone with space", "0 0 * * *", " Europe/Berlin", "unknown time zone"},

		{"Feb 30", "0 0 30 2 *", "", `cron: expression "0 0 30 2 *" never fires (no run within 10 years)`},
		{"Feb 31", "0 0 31 2 *", "Europe/Berlin", "never fires"},
		{"31st of short months", "0 0 31 4,6,9,11 *", "", "never fires"},
		{"Feb 30 and 31", "0 0 30-31 FEB *", "America/New_York", "never fires"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.expr, tt.tz)
			if err == nil {
				t.Fatalf("Parse(%q, %q) = %q, want error containing %q", tt.expr, tt.tz, s, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q, %q) error = %q, want it to contain %q", tt.expr, tt.tz, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "cron: ") {
				t.Errorf("error %q lacks the cron: prefix", err)
			}
			if s != (Schedule{}) {
				t.Errorf("Parse returned a non-zero Schedule with its error: %+v", s)
			}
		})
	}
}

func TestZeroScheduleNeverFires(t *testing.T) {
	var s Schedule
	if got := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); !got.IsZero() {
		t.Errorf("zero Schedule Next() = %v, want zero", got)
	}
	if got := s.String(); got != "" {
		t.Errorf("zero Schedule String() = %q, want empty", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []struct {
		expr, tz string
		at       int64
	}{
		{"0 2 * * *", "Europe/Berlin", 0},
		{"30 2 * * *", "Europe/Berlin", 1774746000}, // 2026-03-29T01:00:00Z
		{"*/15 * * * *", "America/New_York", 1793512800},
		{"0 0 29 2 *", "", 1835395200},
		{"0 0 30 2 *", "", 0},
		{"0 0 13 * FRI", "Australia/Lord_Howe", -1},
		{"5/15 1-5,7 */2 JAN-MAR,dec sun-sat", "UTC", 1 << 40},
		{"@weekly", "Asia/Kolkata", -1 << 40},
		{"@every 1h", "", 0},
		{"1-2-3 ,, */0 */99 8", "Local", 0},
		{"\x00\xff", "../x", 0},
	} {
		f.Add(seed.expr, seed.tz, seed.at)
	}
	fixed := []time.Time{
		time.Date(2026, 3, 29, 0, 59, 59, 999999999, time.UTC),
		time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC),
		time.Date(2028, 2, 28, 23, 59, 0, 0, time.UTC),
		time.Date(2040, 12, 31, 12, 0, 0, 0, time.UTC),
	}
	f.Fuzz(func(t *testing.T, expr, tz string, at int64) {
		s, err := Parse(expr, tz)
		if err != nil {
			if s != (Schedule{}) {
				t.Fatalf("Parse(%q, %q) returned a Schedule with error %v", expr, tz, err)
			}
			return
		}
		if len(expr) > maxExprLen {
			t.Fatalf("Parse accepted a %d-byte expression", len(expr))
		}
		// Any instant between 1700 and 2300, to the nanosecond.
		const span = 600 * 365 * 24 * 3600
		sec, nsec := at%span, at%1e9
		if sec < 0 {
			sec += span
		}
		if nsec < 0 {
			nsec += 1e9
		}
		random := time.Unix(sec-8520336000, nsec) // 1700-01-01 is 8520336000 s before 1970
		for _, t0 := range append([]time.Time{random}, fixed...) {
			if next := s.Next(t0); !next.IsZero() && !next.After(t0) {
				t.Fatalf("Parse(%q, %q).Next(%v) = %v, not after its input", expr, tz, t0, next)
			}
		}
		again, err := Parse(s.String(), tz)
		if err != nil || !sameSchedule(again, s) {
			t.Fatalf("Parse(%q).String() = %q does not parse back to the same schedule: %v", expr, s.String(), err)
		}
	})
}

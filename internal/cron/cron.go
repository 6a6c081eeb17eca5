// Package cron parses the 5-field cron expressions that backup schedules are
// stored as and computes their next run instant in the schedule's time zone.
//
// It exists because the third-party parsers we tried get daylight saving time
// wrong: a job at 02:30 must still run once on the day the clocks skip 02:30,
// and must not run twice on the day 02:30 happens twice. The rules, after
// Vixie cron, are:
//
//   - Candidate times are worked out in local wall-clock time and then mapped
//     to instants, so "30 2 * * *" means 02:30 on the clock on the wall.
//   - A wall time that the clocks skip runs once, at the first instant after
//     the gap; several skipped candidates collapse into that one run.
//   - A wall time that happens twice runs at its first occurrence only.
//   - Jobs whose hour field covers every hour (hourly, every 15 minutes, ...)
//     keep their interval instead: they run at both occurrences of a repeated
//     time and skip times that do not exist, since their next run is near.
//
// Zone transitions are taken from the zone data itself, so shifts other than
// one hour (Australia/Lord_Howe moves by 30 minutes) work as well.
package cron

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxExprLen matches the cron_expression column, so anything we accept can be
// stored unchanged.
const maxExprLen = 100

// horizonYears is how far Next looks ahead. A schedule that does not fire within
// it is treated as one that never fires; ten years is enough for Feb 29.
const horizonYears = 10

// field describes one of the five positions of an expression.
type field struct {
	name     string
	min, max int            // accepted numeric values
	names    map[string]int // accepted symbolic values, upper case
}

var (
	monthNames = map[string]int{
		"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
		"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12,
	}
	dayNames = map[string]int{
		"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6,
	}

	minuteField = field{name: "minute", min: 0, max: 59}
	hourField   = field{name: "hour", min: 0, max: 23}
	domField    = field{name: "day-of-month", min: 1, max: 31}
	monthField  = field{name: "month", min: 1, max: 12, names: monthNames}
	// Day-of-week accepts 7 as a second spelling of Sunday, as Vixie cron
	// does; it is folded onto 0 after parsing.
	dowField = field{name: "day-of-week", min: 0, max: 7, names: dayNames}
)

// Full sets of the fields whose fullness changes behaviour, after folding 7
// onto 0 for day-of-week.
const (
	allHours = 1<<24 - 1
	allDoms  = (1<<32 - 1) &^ 1 // bits 1..31
	allDows  = 1<<7 - 1         // bits 0..6
)

// macros maps the supported shorthands to the expression they stand for.
var macros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// Schedule is a parsed expression bound to a location.
//
// Fields are kept as bit sets so that matching a wall-clock time is a few
// shifts; the zero Schedule never fires.
type Schedule struct {
	minute, hour, dom, month, dow uint64
	loc                           *time.Location
}

// neverFiresFrom is the fixed reference Parse searches from to reject
// expressions that can never fire. Being fixed keeps Parse deterministic.
var neverFiresFrom = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// Parse parses a standard 5-field expression (minute hour day-of-month month
// day-of-week) or a macro, in the given IANA zone name ("" means UTC). It
// returns an error whose message is fit to show a user (e.g.
// `cron: minute field "61": value 61 out of range 0-59`).
//
// "Local" is refused: a schedule must mean the same thing on every machine
// that runs it.
func Parse(expr, timezone string) (Schedule, error) {
	if len(expr) > maxExprLen {
		return Schedule{}, fmt.Errorf("cron: expression is %d bytes long; the limit is %d", len(expr), maxExprLen)
	}
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c >= 0x80:
			return Schedule{}, fmt.Errorf("cron: expression contains a non-ASCII character at byte %d", i+1)
		case c == '\t':
		case c < 0x20 || c == 0x7f:
			return Schedule{}, fmt.Errorf("cron: expression contains a control character at byte %d", i+1)
		}
	}
	trimmed := strings.Trim(expr, " \t")
	if trimmed == "" {
		return Schedule{}, errors.New("cron: expression is empty")
	}
	fields := splitFields(trimmed)
	if trimmed[0] == '@' {
		expanded, err := expandMacro(fields)
		if err != nil {
			return Schedule{}, err
		}
		fields = splitFields(expanded)
	}
	if len(fields) != 5 {
		return Schedule{}, fmt.Errorf("cron: expected 5 fields (minute hour day-of-month month day-of-week), got %d", len(fields))
	}
	var s Schedule
	for i, p := range []struct {
		f   field
		dst *uint64
	}{
		{minuteField, &s.minute},
		{hourField, &s.hour},
		{domField, &s.dom},
		{monthField, &s.month},
		{dowField, &s.dow},
	} {
		bits, err := parseField(fields[i], p.f)
		if err != nil {
			return Schedule{}, err
		}
		*p.dst = bits
	}
	if s.dow&(1<<7) != 0 {
		s.dow = s.dow&^(1<<7) | 1
	}

	loc, err := loadLocation(timezone)
	if err != nil {
		return Schedule{}, err
	}
	s.loc = loc
	if s.Next(neverFiresFrom).IsZero() {
		return Schedule{}, fmt.Errorf("cron: expression %q never fires (no run within %d years)", trimmed, horizonYears)
	}
	return s, nil
}

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, errors.New(`cron: time zone "Local" is not allowed; use an IANA name such as "Europe/Berlin"`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("cron: unknown time zone %q", name)
	}
	return loc, nil
}

func splitFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
}

// expandMacro turns a macro, given as the fields of the expression, into the
// 5-field expression it stands for. @every and @reboot get their own message
// because users coming from other cron implementations will try them.
func expandMacro(fields []string) (string, error) {
	name := strings.ToLower(fields[0])
	switch {
	case strings.HasPrefix(name, "@every"):
		return "", errors.New(`cron: @every is not supported; use a 5-field expression such as "*/15 * * * *"`)
	case name == "@reboot":
		return "", errors.New("cron: @reboot is not supported; a schedule must name a time")
	}
	e, ok := macros[name]
	if !ok {
		return "", fmt.Errorf("cron: unknown macro %q (supported: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)", fields[0])
	}
	if len(fields) > 1 {
		return "", fmt.Errorf("cron: macro %q takes no fields", fields[0])
	}
	return e, nil
}

// parseField parses a comma list of `*`, `n`, `a-b`, `*/s`, `a-b/s` and
// `n/s` into a bit set.
func parseField(text string, f field) (uint64, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("cron: %s field %q: %s", f.name, text, fmt.Sprintf(format, args...))
	}
	var bits uint64
	for _, part := range strings.Split(text, ",") {
		if part == "" {
			return 0, fail("empty list element")
		}
		rng, stepText, hasStep := strings.Cut(part, "/")
		var lo, hi int
		switch {
		case rng == "*":
			lo, hi = f.min, f.max
		case rng == "":
			return 0, fail("missing value before %q", "/")
		default:
			loText, hiText, isRange := strings.Cut(rng, "-")
			v, err := parseValue(loText, f)
			if err != nil {
				return 0, fail("%s", err)
			}
			lo, hi = v, v
			if isRange {
				if hi, err = parseValue(hiText, f); err != nil {
					return 0, fail("%s", err)
				}
				if lo > hi {
					return 0, fail("range start %s is greater than end %s", loText, hiText)
				}
			} else if hasStep {
				hi = f.max // "n/s" means n-max/s
			}
		}
		step := 1
		if hasStep {
			// A step that cannot select a second value is a mistake
			// ("*/60" for hourly), not a way to write a single value.
			n, ok := parseNumber(stepText)
			switch {
			case stepText == "":
				return 0, fail("missing step after %q", "/")
			case !isDigits(stepText):
				return 0, fail("invalid step %q", stepText)
			case ok && n == 0:
				return 0, fail("step 0 is not allowed")
			case !ok || n > 1 && n > hi-lo:
				return 0, fail("step %s is larger than the range %d-%d", stepText, lo, hi)
			}
			step = n
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

// parseValue parses a number or, where the field has them, a name.
func parseValue(text string, f field) (int, error) {
	if text == "" {
		return 0, errors.New("missing value")
	}
	if n, ok := f.names[strings.ToUpper(text)]; ok {
		return n, nil
	}
	n, ok := parseNumber(text)
	if !ok {
		if isDigits(text) {
			return 0, fmt.Errorf("value %s out of range %d-%d", text, f.min, f.max)
		}
		return 0, fmt.Errorf("invalid value %q", text)
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("value %s out of range %d-%d", text, f.min, f.max)
	}
	return n, nil
}

// parseNumber accepts plain decimal digits only; strconv.Atoi would also take
// signs. Values too large for any field are reported as not ok.
func parseNumber(text string) (int, bool) {
	if !isDigits(text) {
		return 0, false
	}
	n := 0
	for i := 0; i < len(text); i++ {
		n = n*10 + int(text[i]-'0')
		if n > 1000 {
			return 0, false
		}
	}
	return n, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String returns the normalised expression, e.g. "0 2 * * *". Macros are
// expanded, names become numbers and every field is rendered from its set of
// values, so two expressions that mean the same render the same and the
// result parses back to an equal Schedule.
func (s Schedule) String() string {
	if !s.valid() {
		return ""
	}
	return strings.Join([]string{
		formatField(s.minute, 0, 59),
		formatField(s.hour, 0, 23),
		formatField(s.dom, 1, 31),
		formatField(s.month, 1, 12),
		formatField(s.dow, 0, 6),
	}, " ")
}

// Location returns the zone the schedule's wall-clock times are read in.
func (s Schedule) Location() *time.Location {
	if s.loc == nil {
		return time.UTC
	}
	return s.loc
}

func (s Schedule) valid() bool {
	return s.minute != 0 && s.hour != 0 && s.dom != 0 && s.month != 0 && s.dow != 0
}

func formatField(bits uint64, lo, hi int) string {
	var vals []int
	for v := lo; v <= hi; v++ {
		if bits&(1<<uint(v)) != 0 {
			vals = append(vals, v)
		}
	}
	if len(vals) == hi-lo+1 {
		return "*"
	}
	// An arithmetic progression is shown as a step: as "*/s" when it is
	// exactly what "*/s" selects (and s is small enough to read as a step),
	// as "a-b/s" when it has at least three values.
	if len(vals) >= 2 {
		step := vals[1] - vals[0]
		ap := step > 1
		for i := 2; ap && i < len(vals); i++ {
			ap = vals[i]-vals[i-1] == step
		}
		last := vals[len(vals)-1]
		switch {
		case ap && vals[0] == lo && last+step > hi && (len(vals) >= 3 || 2*step <= hi-lo+1):
			return "*/" + strconv.Itoa(step)
		case ap && len(vals) >= 3:
			return fmt.Sprintf("%d-%d/%d", vals[0], last, step)
		}
	}
	var out []string
	for i := 0; i < len(vals); {
		j := i
		for j+1 < len(vals) && vals[j+1] == vals[j]+1 {
			j++
		}
		if j-i >= 2 {
			out = append(out, fmt.Sprintf("%d-%d", vals[i], vals[j]))
			i = j + 1
			continue
		}
		out = append(out, strconv.Itoa(vals[i]))
		i++
	}
	return strings.Join(out, ",")
}

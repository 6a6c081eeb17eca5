package mail

import (
	"testing"
	"time"
)

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		60 * time.Minute:    "60 minutes",
		time.Minute:         "1 minute",
		90 * time.Second:    "2 minutes",
		2 * time.Hour:       "2 hours",
		24 * time.Hour:      "24 hours",
		48 * time.Hour:      "2 days",
		7 * 24 * time.Hour:  "7 days",
		25 * time.Hour:      "25 hours",
		150 * time.Minute:   "150 minutes",
		30 * 24 * time.Hour: "30 days",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

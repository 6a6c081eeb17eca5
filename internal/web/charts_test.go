package web

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"upanel/internal/store"
)

func TestAxisLabels(t *testing.T) {
	for _, tc := range []struct {
		top  float64
		unit string
		want []string // the labels of 0, ¼, ½, ¾ and the top
	}{
		{100, "%", []string{"0", "25%", "50%", "75%", "100%"}},
		{24152, "MB", []string{"0", "5.9 GB", "11.8 GB", "17.7 GB", "23.6 GB"}},
		{512, "MB", []string{"0", "128 MB", "256 MB", "384 MB", "512 MB"}},
		{252, "GB", []string{"0", "63 GB", "126 GB", "189 GB", "252 GB"}},
		{2, "GB", []string{"0", "0.5 GB", "1.0 GB", "1.5 GB", "2.0 GB"}},
		{niceCeil(900), "B/s", []string{"0", "250 B/s", "500 B/s", "750 B/s", "1000 B/s"}},
		{niceCeil(5.1) * 1024, "B/s", []string{"0", "1.5 kB/s", "3.0 kB/s", "4.5 kB/s", "6.0 kB/s"}},
	} {
		s := axisScaleFor(tc.top, tc.unit)
		var got []string
		for i := 0; i <= chartGridLines; i++ {
			got = append(got, s.label(tc.top*float64(i)/chartGridLines))
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("top %v %s: labels %q, want %q", tc.top, tc.unit, got, tc.want)
		}
	}
}

func TestNiceCeil(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.3: 0.4, 1: 1, 1.2: 2, 3: 4, 5.1: 6, 7: 8, 8.5: 10, 18: 20, 4100: 6000} {
		if got := niceCeil(in); math.Abs(got-want) > 1e-9 {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestPerSecond(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pts := func(offsets ...time.Duration) []store.MetricPoint {
		var out []store.MetricPoint
		for _, o := range offsets {
			out = append(out, store.MetricPoint{At: t0.Add(o), NetInBytes: 6000})
		}
		return out
	}
	in := func(x store.MetricPoint) int64 { return x.NetInBytes }
	for _, tc := range []struct {
		name string
		w    rateWindow
		pts  []store.MetricPoint
		want []float64
	}{
		{"dense, whole buckets", rateWindow{bucket: time.Minute, interval: 10 * time.Second, now: t0.Add(time.Hour)},
			pts(0, time.Minute), []float64{100, 100}},
		{"the bucket still filling", rateWindow{bucket: time.Minute, interval: 10 * time.Second, now: t0.Add(90 * time.Second)},
			pts(0, time.Minute), []float64{100, 200}},
		{"data starting inside the first bucket", rateWindow{bucket: 30 * time.Minute, interval: 10 * time.Second, now: t0.Add(time.Hour), dataStart: t0.Add(29 * time.Minute)},
			pts(0, 30*time.Minute), []float64{100, 6000.0 / 1800}},
		{"samples sparser than buckets", rateWindow{bucket: 10 * time.Second, interval: time.Minute, now: t0.Add(time.Hour)},
			pts(0, time.Minute, 2*time.Minute), []float64{100, 100, 100}},
		{"after an outage", rateWindow{bucket: time.Minute, interval: 10 * time.Second, now: t0.Add(3 * time.Hour)},
			pts(0, 2*time.Hour), []float64{100, 100}},
	} {
		got := tc.w.perSecond(tc.pts, in)
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-6 {
				t.Errorf("%s: rates %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}

func TestLineChart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	series := func(vs ...float64) []chartSeries { return []chartSeries{{Name: `<b>"x"`, Values: vs, Class: "s1"}} }
	none := string(lineChart(`a <title>`, "%", nil, 100, series(), time.UTC))
	if !strings.Contains(none, "No metrics yet") || strings.Contains(none, "<title>") || !strings.Contains(none, "a &lt;title&gt;") {
		t.Errorf("chart without points: %s", none)
	}
	one := string(lineChart("CPU", "%", []time.Time{t0}, 100, series(50), time.UTC))
	if !strings.Contains(one, "<circle") || strings.Contains(one, "<polyline") || !strings.Contains(one, ">12:00<") {
		t.Errorf("chart of one point: %s", one)
	}
	two := string(lineChart("CPU", "%", []time.Time{t0, t0.Add(time.Hour)}, 100, series(50, 150), time.UTC))
	if !strings.Contains(two, "<polyline") || !strings.Contains(two, "&lt;b&gt;&#34;x&#34;") || !strings.Contains(two, ">13:00<") {
		t.Errorf("chart of two points: %s", two)
	}
	// A value above the top stays inside the plot, on its top line.
	if top := fmt.Sprintf(",%.1f\"", float64(chartTop)); !strings.Contains(two, top) {
		t.Errorf("150%% is not drawn on the top line (%s): %s", top, two)
	}
}

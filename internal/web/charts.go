package web

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// Charts are SVG drawn here, on the server: no script and no chart library
// in the browser, and nothing the CSP has to allow (presentation attributes
// only, no style attributes). Every value that goes into the markup is a
// number formatted here or a string escaped here.

// sparkline draws values as a small line, scaled to [0, top]. With fewer than
// two values it says so in words instead of drawing an empty box.
func sparkline(values []float64, top float64, w, h int) template.HTML {
	if len(values) < 2 || top <= 0 {
		return template.HTML(`<span class="spark-empty muted">no data yet</span>`)
	}
	var pts strings.Builder
	for i, v := range values {
		x := float64(i) * float64(w-2) / float64(len(values)-1)
		y := float64(h-2) - clamp(v, top)/top*float64(h-4)
		fmt.Fprintf(&pts, "%.1f,%.1f ", x+1, y+1)
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="CPU use over the last hour">`+
		`<line x1="1" x2="%d" y1="%d" y2="%d" stroke="currentColor" stroke-opacity="0.2"/>`+
		`<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="%s"/></svg>`,
		w, h, w, h, w-1, h-1, h-1, strings.TrimSpace(pts.String())))
}

// chartSeries is one line of a chart.
type chartSeries struct {
	Name   string
	Values []float64
	Class  string // colour, from the stylesheet
}

// The chart's geometry, in the units of its viewBox. The SVG scales to the
// width of its column, so these suit a column of 300–560 CSS pixels: the
// labels stay between about 9 and 16 pixels high.
const (
	chartW, chartH        = 420, 180
	chartLeft, chartRight = 62, 10
	chartTop, chartBottom = 10, 26
	chartFont             = 12
	chartGridLines        = 4
)

// lineChart draws series over times with a y axis from 0 to top, labelled in
// unit, and the first, middle and last time on the x axis in loc. One point
// is drawn as a dot; no point at all as "No metrics yet".
func lineChart(title, unit string, times []time.Time, top float64, series []chartSeries, loc *time.Location) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, template.HTMLEscapeString(title))
	if top <= 0 {
		top = 1
	}
	plotW, plotH := float64(chartW-chartLeft-chartRight), float64(chartH-chartTop-chartBottom)
	scale := axisScaleFor(top, unit)
	for i := 0; i <= chartGridLines; i++ {
		y := chartTop + plotH - float64(i)/chartGridLines*plotH
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="currentColor" stroke-opacity="0.15"/>`,
			chartLeft, chartW-chartRight, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" font-size="%d" fill="currentColor" fill-opacity="0.75">%s</text>`,
			chartLeft-6, y+4, chartFont, template.HTMLEscapeString(scale.label(top*float64(i)/chartGridLines)))
	}
	yOf := func(v float64) float64 { return chartTop + plotH - clamp(v, top)/top*plotH }
	timeLabel := func(x float64, anchor string, t time.Time, layout string) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s" font-size="%d" fill="currentColor" fill-opacity="0.75">%s</text>`,
			x, chartH-6, anchor, chartFont, t.In(loc).Format(layout))
	}
	switch {
	case len(times) >= 2:
		first, last := times[0], times[len(times)-1]
		span := last.Sub(first).Seconds()
		if span <= 0 {
			span = 1
		}
		for _, s := range series {
			var pts strings.Builder
			for i, v := range s.Values {
				x := float64(chartLeft) + times[i].Sub(first).Seconds()/span*plotW
				fmt.Fprintf(&pts, "%.1f,%.1f ", x, yOf(v))
			}
			fmt.Fprintf(&b, `<polyline class="%s" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round" points="%s"><title>%s</title></polyline>`,
				s.Class, strings.TrimSpace(pts.String()), template.HTMLEscapeString(s.Name))
		}
		layout := "15:04"
		switch {
		case span > 36*3600:
			layout = "Jan 2 15:04"
		case span < 10*60:
			layout = "15:04:05"
		}
		mid := first.Add(last.Sub(first) / 2)
		timeLabel(chartLeft, "start", first, layout)
		timeLabel(chartLeft+plotW/2, "middle", mid, layout)
		timeLabel(chartW-chartRight, "end", last, layout)
	case len(times) == 1:
		x := float64(chartLeft) + plotW/2
		for _, s := range series {
			fmt.Fprintf(&b, `<circle class="%s" cx="%.1f" cy="%.1f" r="4" fill="currentColor"><title>%s</title></circle>`,
				s.Class, x, yOf(s.Values[0]), template.HTMLEscapeString(s.Name))
		}
		timeLabel(x, "middle", times[0], "15:04")
	default:
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="%d" fill="currentColor" fill-opacity="0.75">No metrics yet</text>`,
			chartLeft+plotW/2, chartTop+plotH/2, chartFont+2)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func clamp(v, top float64) float64 { return max(0, min(v, top)) }

// axisScale shows the values of one axis in one unit, chosen from the top of
// the axis, so that a memory axis reads "0 GB … 23.6 GB", not "0 MB … 23.6 GB".
type axisScale struct {
	div    float64
	suffix string
	prec   int
}

func (s axisScale) label(v float64) string {
	if v == 0 {
		return "0"
	}
	n := strconv.FormatFloat(v/s.div, 'f', s.prec, 64)
	if s.suffix == "%" {
		return n + "%"
	}
	return n + " " + s.suffix
}

func axisScaleFor(top float64, unit string) axisScale {
	var s axisScale
	switch unit {
	case "%":
		return axisScale{div: 1, suffix: "%", prec: 0}
	case "MB":
		s = axisScale{div: 1, suffix: "MB"}
		if top >= 1024 {
			s = axisScale{div: 1024, suffix: "GB"}
		}
	case "B/s":
		s = axisScale{div: 1, suffix: "B/s"}
		switch {
		case top >= 1<<30:
			s = axisScale{div: 1 << 30, suffix: "GB/s"}
		case top >= 1<<20:
			s = axisScale{div: 1 << 20, suffix: "MB/s"}
		case top >= 1<<10:
			s = axisScale{div: 1 << 10, suffix: "kB/s"}
		}
	default:
		s = axisScale{div: 1, suffix: unit}
	}
	// One decimal where the quarter steps would otherwise repeat a number.
	if top/s.div/chartGridLines < 10 && math.Mod(top/s.div, chartGridLines) != 0 {
		s.prec = 1
	}
	return s
}

// niceCeil rounds a positive number up to 1, 2, 4, 6 or 8 times a power of
// ten, so that the quarters of an axis scaled to it are round numbers.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 4, 6, 8} {
		if v <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// byteSize shows a number of bytes with a binary unit: "512 B", "1.5 kB".
func byteSize(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.1f GB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f kB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

// megabytes shows an amount of memory given in MB: "512 MB", "23.6 GB".
func megabytes(mb float64) string {
	if mb >= 1024 {
		return fmt.Sprintf("%.1f GB", mb/1024)
	}
	return fmt.Sprintf("%.0f MB", mb)
}

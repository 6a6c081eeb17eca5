package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// Charts are SVG drawn here, on the server: no script and no chart library
// in the browser, and nothing the CSP has to allow (presentation attributes
// only, no style attributes).

// sparkline draws values as a small line, scaled to [0, top].
func sparkline(values []float64, top float64, w, h int) template.HTML {
	if len(values) < 2 || top <= 0 {
		return template.HTML(fmt.Sprintf(`<svg class="spark" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="no data yet"></svg>`, w, h, w, h))
	}
	var pts strings.Builder
	for i, v := range values {
		x := float64(i) * float64(w-2) / float64(len(values)-1)
		y := float64(h-2) - min(v, top)/top*float64(h-4)
		fmt.Fprintf(&pts, "%.1f,%.1f ", x+1, y+1)
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="recent CPU use">`+
		`<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="%s"/></svg>`, w, h, w, h, strings.TrimSpace(pts.String())))
}

// chartSeries is one line of a chart.
type chartSeries struct {
	Name   string
	Values []float64
	Class  string // colour, from the stylesheet
}

// lineChart draws series over times with a y axis from 0 to top, labelled in
// unit, and the first and last time on the x axis in loc.
func lineChart(title, unit string, times []time.Time, top float64, series []chartSeries, loc *time.Location) template.HTML {
	const w, h, left, bottom = 640, 200, 48, 22
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, w, h, template.HTMLEscapeString(title))
	if top <= 0 {
		top = 1
	}
	plotW, plotH := float64(w-left-8), float64(h-bottom-8)
	for i := 0; i <= 4; i++ {
		y := 8 + plotH - float64(i)/4*plotH
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="currentColor" stroke-opacity="0.15"/>`, left, w-8, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" font-size="11" fill="currentColor" fill-opacity="0.7">%s</text>`, left-6, y+4, axisLabel(top*float64(i)/4, unit))
	}
	if len(times) >= 2 {
		span := times[len(times)-1].Sub(times[0]).Seconds()
		if span <= 0 {
			span = 1
		}
		for _, s := range series {
			var pts strings.Builder
			for i, v := range s.Values {
				x := float64(left) + times[i].Sub(times[0]).Seconds()/span*plotW
				y := 8 + plotH - min(v, top)/top*plotH
				fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
			}
			fmt.Fprintf(&b, `<polyline class="%s" fill="none" stroke="currentColor" stroke-width="1.6" points="%s"><title>%s</title></polyline>`,
				s.Class, strings.TrimSpace(pts.String()), template.HTMLEscapeString(s.Name))
		}
		layout := "15:04"
		if span > 36*3600 {
			layout = "Jan 2 15:04"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="currentColor" fill-opacity="0.7">%s</text>`, left, h-6, times[0].In(loc).Format(layout))
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" font-size="11" fill="currentColor" fill-opacity="0.7">%s</text>`, w-8, h-6, times[len(times)-1].In(loc).Format(layout))
	} else {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-size="13" fill="currentColor" fill-opacity="0.7">No data yet</text>`, w/2, h/2)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func axisLabel(v float64, unit string) string {
	switch unit {
	case "%":
		return fmt.Sprintf("%.0f%%", v)
	case "MB":
		if v >= 1024 {
			return fmt.Sprintf("%.1f GB", v/1024)
		}
		return fmt.Sprintf("%.0f MB", v)
	case "B":
		switch {
		case v >= 1<<30:
			return fmt.Sprintf("%.1f GB", v/(1<<30))
		case v >= 1<<20:
			return fmt.Sprintf("%.1f MB", v/(1<<20))
		case v >= 1<<10:
			return fmt.Sprintf("%.0f kB", v/(1<<10))
		}
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

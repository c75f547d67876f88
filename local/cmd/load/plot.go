package main

import (
	"image/color"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// plotStates draws orders by state over time, with the injected faults
// marked (a grey band from start to end, labelled).
func plotStates(samples []sample, faults []fault, path string) error {
	p := plot.New()
	p.Title.Text = "Orders by state"
	if len(faults) > 0 {
		p.Title.Text = "Orders by state, with the faults injected"
	}
	top := 1
	for _, s := range samples {
		top = max(top, s.unpaid, s.paid, s.cancels)
	}
	var labels plotter.XYLabels
	for i, f := range faults {
		x0, x1 := f.at.Seconds(), (f.at + max(f.dur, 300*time.Millisecond)).Seconds()
		band, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: float64(top)}, {X: x0, Y: float64(top)}})
		if err != nil {
			return err
		}
		band.Color = color.RGBA{R: 225, G: 225, B: 232, A: 255}
		band.LineStyle.Width = 0
		p.Add(band)
		labels.XYs = append(labels.XYs, plotter.XY{X: x0, Y: float64(top) * (0.95 - 0.07*float64(i%4))})
		labels.Labels = append(labels.Labels, f.what)
	}
	if len(faults) > 0 {
		l, err := plotter.NewLabels(labels)
		if err != nil {
			return err
		}
		p.Add(l)
	}
	p.X.Label.Text = "seconds since the first create"
	p.Y.Label.Text = "orders"
	series := []struct {
		name string
		c    color.RGBA
		get  func(sample) int
	}{
		{"UNPAID", color.RGBA{R: 230, G: 160, B: 0, A: 255}, func(s sample) int { return s.unpaid }},
		{"PAID", color.RGBA{G: 150, B: 70, A: 255}, func(s sample) int { return s.paid }},
		{"CANCELLED", color.RGBA{R: 200, G: 40, B: 40, A: 255}, func(s sample) int { return s.cancels }},
	}
	for _, s := range series {
		pts := make(plotter.XYs, len(samples))
		for i, smp := range samples {
			pts[i].X, pts[i].Y = smp.at.Seconds(), float64(s.get(smp))
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = s.c
		line.Width = vg.Points(2)
		p.Add(line)
		p.Legend.Add(s.name, line)
	}
	p.Legend.Top = true
	p.Legend.Left = len(faults) == 0
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}

// plotLateness draws the histogram of deadline → CANCELLED delays.
func plotLateness(lateness []time.Duration, path string) error {
	p := plot.New()
	p.Title.Text = "Timeout lateness (deadline → CANCELLED)"
	p.X.Label.Text = "milliseconds"
	p.Y.Label.Text = "orders"
	vals := make(plotter.Values, len(lateness))
	for i, d := range lateness {
		vals[i] = float64(d.Microseconds()) / 1000
	}
	if len(vals) == 0 {
		vals = plotter.Values{0}
	}
	h, err := plotter.NewHist(vals, 40)
	if err != nil {
		return err
	}
	h.FillColor = color.RGBA{R: 60, G: 110, B: 200, A: 255}
	p.Add(h)
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}

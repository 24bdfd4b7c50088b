package train

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Curves' size: two panels, one above the other.
const (
	curvesWidth  = 16 * vg.Centimeter
	curvesHeight = 16 * vg.Centimeter
)

// WriteCurves draws a run's curves in the style of the paper's Fig. 1: test
// error (%) as a solid line in the upper panel, training loss dashed in the
// lower one, both against iterations on the same axis. gonum/plot has one y
// axis per plot, so the two scales are two aligned panels. The file is
// replaced atomically.
func WriteCurves(path, title string, points []Point) error {
	var test, loss plotter.XYs
	var maxIter, maxErr, maxLoss float64
	for _, p := range points {
		maxLoss = max(maxLoss, p.TrainLoss)
		maxIter = max(maxIter, float64(p.Iter))
		loss = append(loss, plotter.XY{X: float64(p.Iter), Y: p.TrainLoss})
		if p.TestError != nil {
			test = append(test, plotter.XY{X: float64(p.Iter), Y: *p.TestError})
			maxErr = max(maxErr, *p.TestError)
		}
	}
	if len(points) == 0 {
		return fmt.Errorf("%s: no metrics to plot", path)
	}
	top := plot.New()
	top.Title.Text = title
	top.Y.Label.Text = "test error (%)"
	top.Y.Min, top.Y.Max = 0, headroom(maxErr)
	if len(test) > 0 {
		l, err := plotter.NewLine(test)
		if err != nil {
			return err
		}
		l.Color = color.RGBA{R: 0xc0, A: 0xff}
		l.Width = vg.Points(1.5)
		top.Add(l, plotter.NewGrid())
		top.Legend.Add("test error", l)
		top.Legend.Top = true
	}
	bottom := plot.New()
	bottom.X.Label.Text = "iterations"
	bottom.Y.Label.Text = "training loss"
	bottom.Y.Min, bottom.Y.Max = 0, headroom(maxLoss)
	l, err := plotter.NewLine(loss)
	if err != nil {
		return err
	}
	l.Color = color.RGBA{B: 0xa0, A: 0xff}
	l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	bottom.Add(l, plotter.NewGrid())
	bottom.Legend.Add("training loss", l)
	bottom.Legend.Top = true
	for _, p := range []*plot.Plot{top, bottom} {
		p.X.Min, p.X.Max = 0, max(maxIter, 1)
	}

	img := vgimg.New(curvesWidth, curvesHeight)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(10), PadY: vg.Points(8)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// headroom is an axis maximum a little above the data's, so that the
// curves stay clear of the legend.
func headroom(m float64) float64 {
	if !(m > 0) || math.IsInf(m, 0) {
		return 1
	}
	return 1.15 * m
}

package train

import (
	"math"
	"testing"

	"github.com/resnetc/resnetc/runtime/data"
)

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		xs                []float64
		median, mean, std float64
	}{
		// deviations 0, -.4, .5, -.2, .1: squares sum to .46, / 4 = .115
		{[]float64{6.5, 6.1, 7.0, 6.3, 6.6}, 6.5, 6.5, math.Sqrt(0.115)},
		// deviations ±1.5, ±.5: squares sum to 5, / 3
		{[]float64{4, 1, 3, 2}, 2.5, 2.5, math.Sqrt(5.0 / 3)},
		{[]float64{7.25}, 7.25, 7.25, 0},
		{[]float64{10, 0}, 5, 5, math.Sqrt(50)},
	} {
		s := Summarize(c.xs)
		if s.N != len(c.xs) || !near(s.Median, c.median) || !near(s.Mean, c.mean) || !near(s.Std, c.std) {
			t.Errorf("Summarize(%v) = %+v, want median %g mean %g std %g", c.xs, s, c.median, c.mean, c.std)
		}
	}
	xs := []float64{3, 1, 2}
	if s := Summarize(xs); s.Min != 1 || s.Max != 3 || xs[0] != 3 {
		t.Errorf("Summarize(%v) = %+v: min/max wrong or the input was reordered", xs, s)
	}
}

func TestRank(t *testing.T) {
	row := []float32{0.5, 2, -1, 2, 0.7}
	for _, c := range []struct {
		label int32
		want  int
	}{
		{1, 0}, // the first of the two largest: argmax picks it
		{3, 1}, // tied with class 1, which comes first
		{4, 2},
		{0, 3},
		{2, 4},
	} {
		if got := rank(row, c.label); got != c.want {
			t.Errorf("rank(%v, %d) = %d, want %d", row, c.label, got, c.want)
		}
	}
	if argmax(row) != 1 {
		t.Errorf("argmax(%v) = %d, want 1", row, argmax(row))
	}
	logits := []float32{1, 0, 0, 1, 5, 4, 9, 9}
	if got := batchErrors(logits, []int32{0, 0, 1, 1}, 4, 2); got != 3 {
		t.Errorf("batchErrors = %d, want 3 (rows 1, 2 and 3, a tie going to class 0)", got)
	}
	if got := batchErrors(logits, []int32{0, 0, 1, 1}, 2, 2); got != 1 {
		t.Errorf("batchErrors of 2 rows = %d, want 1", got)
	}
	p := softmax([]float32{0, float32(math.Log(3))})
	if math.Abs(p[0]-0.25) > 1e-7 || math.Abs(p[1]-0.75) > 1e-7 {
		t.Errorf("softmax = %v, want [0.25 0.75]", p)
	}
}

func TestFloatsRoundTrip(t *testing.T) {
	xs := []float32{125.27, 0.1, 1e-7, 66.4567}
	got, err := parseFloats(formatFloats(xs), 4, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range xs {
		if got[i] != xs[i] {
			t.Errorf("value %d: %v, want %v", i, got[i], xs[i])
		}
	}
	for _, bad := range []string{"1,2,3", "1,2,x,4", "1,2,0,4", "1,2,NaN,4", "1,2,Inf,4"} {
		if _, err := parseFloats(bad, 4, true); err == nil {
			t.Errorf("parseFloats(%q) accepted", bad)
		}
	}
}

// TestFirstImages checks the cut of the test set -test-images makes.
func TestFirstImages(t *testing.T) {
	s := &data.Set{Name: "t", N: 4, C: 1, H: 1, W: 2, Classes: 3, Images: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Labels: []int32{0, 1, 2, 0}, Coarse: []int32{0, 0, 1, 1}}
	c := firstImages(s, 3)
	if c.N != 3 || len(c.Images) != 6 || len(c.Labels) != 3 || len(c.Coarse) != 3 || c.Images[5] != 6 || c.Validate() != nil {
		t.Errorf("firstImages(3) = %+v", c)
	}
	if firstImages(s, 0) != s || firstImages(s, 4) != s || firstImages(s, 9) != s {
		t.Errorf("firstImages of 0, N or more is not the set itself")
	}
	if s.N != 4 || len(s.Labels) != 4 {
		t.Errorf("firstImages changed its argument")
	}
}

package train

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Summary is what the paper reports of repeated trainings: the median, and
// the mean with the sample standard deviation.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Mean   float64 `json:"mean"`
	Std    float64 `json:"std"` // sample (n-1) standard deviation; 0 for one value
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize returns the summary of xs, which must not be empty.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		panic("BUG: Summarize of no values")
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	sum := Summary{N: n, Min: s[0], Max: s[n-1]}
	if n%2 == 1 {
		sum.Median = s[n/2]
	} else {
		sum.Median = (s[n/2-1] + s[n/2]) / 2
	}
	for _, x := range s {
		sum.Mean += x
	}
	sum.Mean /= float64(n)
	if n > 1 {
		var ss float64
		for _, x := range s {
			ss += (x - sum.Mean) * (x - sum.Mean)
		}
		sum.Std = math.Sqrt(ss / float64(n-1))
	}
	return sum
}

// rank is the position label would have if row were sorted by decreasing
// logit, ties going to the lower class as an argmax takes the first: 0 means
// the prediction is right, below k means it is in the top k.
func rank(row []float32, label int32) int {
	v := row[label]
	r := 0
	for j, x := range row {
		if x > v || (x == v && int32(j) < label) {
			r++
		}
	}
	return r
}

// argmax is the first class of largest logit.
func argmax(row []float32) int {
	best := 0
	for j, x := range row {
		if x > row[best] {
			best = j
		}
	}
	return best
}

// softmax returns the probabilities of a row of logits, in float64.
func softmax(row []float32) []float64 {
	m := math.Inf(-1)
	for _, x := range row {
		m = math.Max(m, float64(x))
	}
	p := make([]float64, len(row))
	var z float64
	for j, x := range row {
		p[j] = math.Exp(float64(x) - m)
		z += p[j]
	}
	for j := range p {
		p[j] /= z
	}
	return p
}

// batchErrors counts the rows among the first n of logits (rows of classes)
// whose label is not the top class.
func batchErrors(logits []float32, labels []int32, n, classes int) int {
	e := 0
	for i := range n {
		if rank(logits[i*classes:(i+1)*classes], labels[i]) > 0 {
			e++
		}
	}
	return e
}

// joinInts formats a list of integers as a flag takes it: "32000,48000".
func joinInts[T ~int | ~int64](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatInt(int64(x), 10)
	}
	return strings.Join(s, ",")
}

// parseInts reads a comma-separated list of non-negative integers; the empty
// string is the empty list.
func parseInts(s string) ([]int64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var xs []int64
	for f := range strings.SplitSeq(s, ",") {
		x, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || x < 0 {
			return nil, fmt.Errorf("%q is not a non-negative integer", strings.TrimSpace(f))
		}
		xs = append(xs, x)
	}
	return xs, nil
}

// formatFloats writes float32s so that parseFloats gives them back exactly.
func formatFloats(xs []float32) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return strings.Join(s, ",")
}

// parseFloats reads what formatFloats wrote: want values, each finite and
// positive when positive is set.
func parseFloats(s string, want int, positive bool) ([]float32, error) {
	f := strings.Split(s, ",")
	if len(f) != want {
		return nil, fmt.Errorf("%q has %d values, want %d", s, len(f), want)
	}
	xs := make([]float32, want)
	for i, v := range f {
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 32)
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) || (positive && x <= 0) {
			return nil, fmt.Errorf("%q: value %d is not a valid number", s, i)
		}
		xs[i] = float32(x)
	}
	return xs, nil
}

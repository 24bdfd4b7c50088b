package data

import (
	"math"
	"slices"
	"testing"
)

// spectrum returns the power spectrum of an image summed over channels,
// with the DC term removed and normalized to sum 1: a description of its
// texture that ignores position, phase and colour, computed with a naive
// separable DFT.
func spectrum(s *Set, i int) []float64 {
	h, w := s.H, s.W
	cosX, sinX := twiddles(w)
	cosY, sinY := twiddles(h)
	img := s.Image(i)
	pow := make([]float64, h*w)
	re1, im1 := make([]float64, h*w), make([]float64, h*w)
	for c := range s.C {
		plane := img[c*h*w : (c+1)*h*w]
		mean := 0.0
		for _, v := range plane {
			mean += float64(v)
		}
		mean /= float64(h * w)
		for y := range h { // DFT along x
			for u := range w {
				var re, im float64
				for x := range w {
					v := float64(plane[y*w+x]) - mean
					re += v * cosX[u*w+x]
					im -= v * sinX[u*w+x]
				}
				re1[y*w+u], im1[y*w+u] = re, im
			}
		}
		for u := range w { // then along y
			for v := range h {
				var re, im float64
				for y := range h {
					cs, sn := cosY[v*h+y], -sinY[v*h+y]
					re += re1[y*w+u]*cs - im1[y*w+u]*sn
					im += re1[y*w+u]*sn + im1[y*w+u]*cs
				}
				pow[v*w+u] += re*re + im*im
			}
		}
	}
	total := 0.0
	for _, p := range pow {
		total += p
	}
	for j := range pow {
		pow[j] /= max(total, 1e-300)
	}
	return pow
}

// twiddles returns cos and sin of 2*pi*u*x/n for u, x < n.
func twiddles(n int) (cos, sin []float64) {
	cos, sin = make([]float64, n*n), make([]float64, n*n)
	for u := range n {
		for x := range n {
			a := 2 * math.Pi * float64(u*x%n) / float64(n)
			cos[u*n+x], sin[u*n+x] = math.Cos(a), math.Sin(a)
		}
	}
	return cos, sin
}

// classMeans returns the mean feature vector of each class of s.
func classMeans(s *Set, feature func(s *Set, i int) []float64) [][]float64 {
	means := make([][]float64, s.Classes)
	counts := make([]int, s.Classes)
	for i := range s.N {
		c := s.Labels[i]
		f := feature(s, i)
		if means[c] == nil {
			means[c] = make([]float64, len(f))
		}
		for j, v := range f {
			means[c][j] += v
		}
		counts[c]++
	}
	for c := range means {
		for j := range means[c] {
			means[c][j] /= float64(counts[c])
		}
	}
	return means
}

// nearestMeanAccuracy returns the fraction of the images of s whose nearest
// class mean (in Euclidean distance) is their class.
func nearestMeanAccuracy(means [][]float64, s *Set, feature func(s *Set, i int) []float64) float64 {
	right := 0
	for i := range s.N {
		f := feature(s, i)
		best, bestD := -1, math.Inf(1)
		for c, m := range means {
			d := 0.0
			for j := range f {
				d += (f[j] - m[j]) * (f[j] - m[j])
			}
			if d < bestD {
				best, bestD = c, d
			}
		}
		if int32(best) == s.Labels[i] {
			right++
		}
	}
	return float64(right) / float64(s.N)
}

// pixels is the raw image as a feature vector.
func pixels(s *Set, i int) []float64 {
	f := make([]float64, s.C*s.H*s.W)
	for j, v := range s.Image(i) {
		f[j] = float64(v)
	}
	return f
}

// TestSyntheticLearnable checks that the classes are there to be learned
// but not by a trivial model: nearest class mean on the power spectrum
// (which discards position, phase and colour, as pooled oriented filters
// do) is far above chance, while on raw pixels it is near chance.
func TestSyntheticLearnable(t *testing.T) {
	train, test := Synthetic(1, 600, 400)
	spectra := classMeans(train, spectrum)
	acc := nearestMeanAccuracy(spectra, test, spectrum)
	if acc < 0.6 {
		t.Errorf("nearest class mean on power spectra: accuracy %.3f, want at least 0.6 (chance is 0.1)", acc)
	} else {
		t.Logf("nearest class mean on power spectra: accuracy %.3f", acc)
	}
	// Classes are invariant under horizontal flips (the augmentation), so
	// mirrored test images are classified about as well.
	mirror := *test
	mirror.Images = slices.Clone(test.Images)
	for i := range mirror.N {
		img := mirror.Image(i)
		for row := range 3 * 32 {
			slices.Reverse(img[row*32 : (row+1)*32])
		}
	}
	if m := nearestMeanAccuracy(spectra, &mirror, spectrum); m < acc-0.08 {
		t.Errorf("accuracy %.3f on mirrored test images, %.3f on the originals: flipping changes classes", m, acc)
	}
	if acc := nearestMeanAccuracy(classMeans(train, pixels), test, pixels); acc > 0.25 {
		t.Errorf("nearest class mean on pixels: accuracy %.3f, want at most 0.25: the task is trivial", acc)
	} else {
		t.Logf("nearest class mean on pixels: accuracy %.3f", acc)
	}
}

// TestSyntheticSets checks shapes, determinism by seed, balance, a varied
// pixel distribution, and the flip invariance of the classes.
func TestSyntheticSets(t *testing.T) {
	train, test := Synthetic(7, 1003, 250)
	for _, s := range []*Set{train, test} {
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if s.C != 3 || s.H != 32 || s.W != 32 || s.Classes != 10 || len(s.ClassNames) != 10 {
			t.Fatalf("%s: %dx%dx%d, %d classes, %d names", s.Name, s.C, s.H, s.W, s.Classes, len(s.ClassNames))
		}
		counts := make([]int, 10)
		for _, l := range s.Labels {
			counts[l]++
		}
		lo, hi := slices.Min(counts), slices.Max(counts)
		if hi-lo > 1 {
			t.Errorf("%s: class counts %v, want balanced", s.Name, counts)
		}
		if slices.IsSorted(s.Labels) || slices.Equal(s.Labels[:10], []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
			t.Errorf("%s: labels in a fixed order %v", s.Name, s.Labels[:20])
		}
	}
	if train.Name != "synthetic/train" || test.Name != "synthetic/test" || train.N != 1003 || test.N != 250 {
		t.Errorf("sets %q (%d) and %q (%d)", train.Name, train.N, test.Name, test.N)
	}
	again, test2 := Synthetic(7, 1003, 250)
	if !slices.Equal(again.Images, train.Images) || !slices.Equal(again.Labels, train.Labels) || !slices.Equal(test2.Images, test.Images) {
		t.Error("the same seed gave different sets")
	}
	// A prefix is the same images: the count does not change them.
	short, _ := Synthetic(7, 100, 0)
	for i := range 100 {
		if short.Labels[i] == train.Labels[i] && !slices.Equal(short.Image(i), train.Image(i)) {
			t.Fatalf("image %d with label %d differs between sets of 100 and 1003", i, short.Labels[i])
		}
	}
	other, _ := Synthetic(8, 1003, 0)
	if slices.Equal(other.Images[:3072], train.Images[:3072]) {
		t.Error("seeds 7 and 8 gave the same first image")
	}
	if slices.Equal(train.Images[:3072], test.Images[:3072]) {
		t.Error("train and test start with the same image")
	}
	// The pixels use the range and are not constant within images.
	var hist [256]int
	for _, v := range train.Images {
		hist[v]++
	}
	used := 0
	for _, c := range hist {
		if c > 0 {
			used++
		}
	}
	if used < 250 {
		t.Errorf("only %d of 256 byte values used", used)
	}
	_, empty := Synthetic(1, 0, -5)
	if empty.N != 0 || empty.Validate() != nil {
		t.Errorf("negative count: N %d, %v", empty.N, empty.Validate())
	}
}

// TestLoadSynthetic checks the "synthetic" spec of Load.
func TestLoadSynthetic(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 60000 images")
	}
	train, test, err := Load("synthetic", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 50000 || test.N != 10000 || train.Name != "synthetic/train" {
		t.Errorf("Load(synthetic): %s of %d and %d images", train.Name, train.N, test.N)
	}
	want, _ := Synthetic(0, 200, 0)
	same := 0
	for i := range 200 {
		if want.Labels[i] == train.Labels[i] {
			if !slices.Equal(want.Image(i), train.Image(i)) {
				t.Fatalf("image %d is not that of Synthetic(0, ...)", i)
			}
			same++
		}
	}
	if same == 0 {
		t.Error("no image to compare with Synthetic(0, ...)")
	}
}

package kernelbench

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// rtol is the tolerance of every comparison, relative to the magnitude
// of the terms summed into each element (Σ|a·w| + |bias| + |res| for an
// output, Σ|y| and Σy² for the statistics): float32 sums in a different
// order, or with fused multiply-adds, differ by a few ulps of that.
const rtol = 1e-5

// asmRunnable reports whether this test binary can call the assembly:
// the build carries it and the CPU has AVX2 and FMA. It does not look at
// RESNETC_PUREGO, which only chooses what the exported functions run.
var asmRunnable = haveAsm && cpu.X86.HasAVX2 && cpu.X86.HasFMA

// requireAsm fails t when RESNETC_REQUIRE_ASM=1 and the assembly cannot
// run, so that a CI job meant to test the assembly cannot pass by testing
// only the twins.
func requireAsm(t *testing.T) {
	t.Helper()
	if os.Getenv("RESNETC_REQUIRE_ASM") == "1" && (!asmRunnable || !UsesAsm()) {
		t.Fatalf("RESNETC_REQUIRE_ASM=1 but the assembly is not selected (build has it: %v, AVX2: %v, FMA: %v, %s=%q)",
			haveAsm, cpu.X86.HasAVX2, cpu.X86.HasFMA, "RESNETC_PUREGO", os.Getenv("RESNETC_PUREGO"))
	}
}

func TestDispatch(t *testing.T) {
	requireAsm(t)
	want := asmRunnable && os.Getenv("RESNETC_PUREGO") != "1"
	if UsesAsm() != want {
		t.Errorf("UsesAsm() = %v, want %v (build has assembly: %v, CPU: %v)", UsesAsm(), want, haveAsm, asmRunnable)
	}
	for _, k := range Conv3x3Kernels {
		if (k.Asm != nil) != haveAsm {
			t.Errorf("%s: Asm set = %v in a build with assembly = %v", k.Name, k.Asm != nil, haveAsm)
		}
	}
	t.Logf("assembly selected: %v", UsesAsm())
}

// convCase is one kernel's inputs in plain layouts (x [N][Cin][H][W], w
// [Cout][Cin][3][3], res [N][Cout][OutH][OutW]) and in the kernel's.
type convCase struct {
	s                             *Conv3x3Shape
	x, w, bias, scale, shift, res []float32 // plain
	bx, bw, bres                  []float32 // NCHW8c, OIhw8i8o, NCHW8c
}

// seedOf is the fixed seed of a kernel's random inputs.
func seedOf(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// uniform draws n values uniformly from [lo, hi).
func uniform(r *rand.Rand, n int, lo, hi float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return s
}

// newCase draws inputs from a seed fixed by the kernel's name. Scale and
// shift have both signs, so the affine prologue rectifies some inputs and
// lifts others above zero (which the zero padding must not be).
func newCase(t testing.TB, s *Conv3x3Shape) *convCase {
	t.Helper()
	r := rand.New(rand.NewPCG(seedOf(s.Name), 1))
	bound := 1 / math.Sqrt(float64(9*s.Cin))
	c := &convCase{
		s:     s,
		x:     uniform(r, s.XLen(), -1, 1),
		w:     uniform(r, s.WLen(), -bound, bound),
		bias:  uniform(r, s.Cout, -0.5, 0.5),
		scale: uniform(r, s.Cin, -1, 2),
		shift: uniform(r, s.Cin, -0.5, 0.5),
		res:   uniform(r, s.YLen(), -1, 1),
	}
	c.bx = make([]float32, len(c.x))
	c.bw = make([]float32, len(c.w))
	c.bres = make([]float32, len(c.res))
	must(t, ToNCHW8c(c.bx, c.x, s.N, s.Cin, s.H, s.W))
	must(t, PackConv3x3Weights(c.bw, c.w, s.Cout, s.Cin))
	must(t, ToNCHW8c(c.bres, c.res, s.N, s.Cout, s.OutH, s.OutW))
	return c
}

// must fails t on a helper's error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// sentinel marks output elements a kernel must not write (images outside
// its range); scratch starts as NaN, so an output that reads scratch the
// kernel did not write (a missing zero border) is NaN.
var sentinel = float32(-12345.5)

// result is what one run of a kernel wrote.
type result struct {
	y, stats []float32
}

// run calls f on images [n0, n1) of c with outputs preset to sentinel and
// scratch preset to NaN.
func (c *convCase) run(f Conv3x3Func, ranges ...[2]int) result {
	s := c.s
	r := result{y: make([]float32, s.YLen()), stats: make([]float32, s.StatsLen())}
	fill(r.y, sentinel)
	fill(r.stats, sentinel)
	scratch := make([]float32, s.ScratchLen())
	fill(scratch, float32(math.NaN()))
	bias, scale, shift, res, stats := c.bias, c.scale, c.shift, c.bres, r.stats
	// Slices the kernel's flags do not use are nil, as a caller passes them.
	if !s.Bias {
		bias = nil
	}
	if s.Prologue != "affine_relu" {
		scale, shift = nil, nil
	}
	if !s.Residual {
		res = nil
	}
	if !s.Stats {
		stats = nil
	}
	for _, rg := range ranges {
		f(c.bx, c.bw, bias, scale, shift, res, r.y, stats, scratch, rg[0], rg[1])
	}
	return r
}

// fill sets every element of s to v.
func fill(s []float32, v float32) {
	for i := range s {
		s[i] = v
	}
}

// reference computes conv2d_fused on images [n0, n1) from the plain
// inputs in float64, as the IR defines it: a = prologue(x), zero padding
// around a, z = conv(a, w) + bias + res, y = relu(z), sums of y and y².
// It returns y and the statistics in the kernel's layouts, and the
// magnitudes the tolerances scale with.
type refResult struct {
	y, mag           []float64 // NCHW8c
	sum, sumsq       []float64 // [N][Cout]
	sumMag, sumsqMag []float64
	images           [2]int // the images computed, [n0, n1)
}

func (c *convCase) reference(n0, n1 int) *refResult {
	s := c.s
	oh, ow := s.OutH, s.OutW
	ref := &refResult{
		y: make([]float64, s.YLen()), mag: make([]float64, s.YLen()),
		sum: make([]float64, s.N*s.Cout), sumsq: make([]float64, s.N*s.Cout),
		sumMag: make([]float64, s.N*s.Cout), sumsqMag: make([]float64, s.N*s.Cout),
		images: [2]int{n0, n1},
	}
	a := make([]float64, s.Cin*s.H*s.W)
	for n := n0; n < n1; n++ {
		for ci := range s.Cin {
			for p := range s.H * s.W {
				v := float64(c.x[(n*s.Cin+ci)*s.H*s.W+p])
				switch s.Prologue {
				case "relu":
					v = math.Max(v, 0)
				case "affine_relu":
					v = math.Max(float64(c.scale[ci])*v+float64(c.shift[ci]), 0)
				}
				a[ci*s.H*s.W+p] = v
			}
		}
		for co := range s.Cout {
			for i := range oh {
				for j := range ow {
					var z, m float64
					for ci := range s.Cin {
						for kh := range 3 {
							for kw := range 3 {
								ih, iw := i*s.Stride+kh-1, j*s.Stride+kw-1
								if ih < 0 || ih >= s.H || iw < 0 || iw >= s.W {
									continue // zero padding of a
								}
								t := a[(ci*s.H+ih)*s.W+iw] * float64(c.w[((co*s.Cin+ci)*3+kh)*3+kw])
								z += t
								m += math.Abs(t)
							}
						}
					}
					if s.Bias {
						z += float64(c.bias[co])
						m += math.Abs(float64(c.bias[co]))
					}
					if s.Residual {
						r := float64(c.res[((n*s.Cout+co)*oh+i)*ow+j])
						z += r
						m += math.Abs(r)
					}
					if s.ReLU {
						z = math.Max(z, 0)
					}
					at := (((n*(s.Cout/8)+co/8)*oh+i)*ow+j)*8 + co%8
					ref.y[at], ref.mag[at] = z, m
					k := n*s.Cout + co
					ref.sum[k] += z
					ref.sumsq[k] += z * z
					ref.sumMag[k] += math.Abs(z) + m
					ref.sumsqMag[k] += z*z + 2*math.Abs(z)*m
				}
			}
		}
	}
	return ref
}

// mismatch describes the first few elements where got and want differ by
// more than rtol times mag, with their bits in hex; "" when none does.
func mismatch(what string, got []float32, want, mag []float64, index func(int) string) string {
	var b strings.Builder
	bad := 0
	for i := range want {
		g := float64(got[i])
		if math.IsNaN(g) && math.IsNaN(want[i]) {
			continue
		}
		d := math.Abs(g - want[i])
		if d <= rtol*mag[i] && !math.IsNaN(d) {
			continue
		}
		if bad < 6 {
			fmt.Fprintf(&b, "\n  %s[%d] %s: got %.9g (0x%08x), want %.9g (0x%08x), |diff| %.3g > %.3g",
				what, i, index(i), got[i], math.Float32bits(got[i]), want[i], math.Float32bits(float32(want[i])), d, rtol*mag[i])
		}
		bad++
	}
	if bad == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %d of %d elements differ:%s", what, bad, len(want), b.String())
}

// yIndex names NCHW8c element i of the output.
func (c *convCase) yIndex(i int) string {
	s := c.s
	l, p := i%8, i/8
	w, h := p%s.OutW, p/s.OutW%s.OutH
	cb, n := p/(s.OutW*s.OutH)%(s.Cout/8), p/(s.OutW*s.OutH*s.Cout/8)
	return fmt.Sprintf("(n=%d c=%d h=%d w=%d)", n, cb*8+l, h, w)
}

// statIndex names element i of the per-image sums, [n][c].
func (c *convCase) statIndex(i int) string {
	return fmt.Sprintf("(n=%d c=%d)", i/c.s.Cout, i%c.s.Cout)
}

// check compares a run with a reference: y and (with stats) the
// statistics inside the reference's images, sentinels outside.
func (c *convCase) check(t *testing.T, what string, got result, ref *refResult) {
	t.Helper()
	s := c.s
	per := s.YLen() / s.N
	n0, n1 := ref.images[0], ref.images[1]
	for i, v := range got.y {
		if n := i / per; (n < n0 || n >= n1) && v != sentinel {
			t.Fatalf("%s: y%s of an image outside [%d, %d) was written", what, c.yIndex(i), n0, n1)
		}
	}
	lo, hi := n0*per, n1*per
	if msg := mismatch(what+" y", got.y[lo:hi], ref.y[lo:hi], ref.mag[lo:hi], func(i int) string { return c.yIndex(lo + i) }); msg != "" {
		t.Error(msg)
	}
	if !s.Stats {
		return
	}
	for n := range s.N {
		inside := n >= n0 && n < n1
		for k := range 2 * s.Cout {
			if v := got.stats[n*2*s.Cout+k]; !inside && v != sentinel {
				t.Fatalf("%s: stats of image %d outside [%d, %d) were written", what, n, n0, n1)
			}
		}
	}
	sum, sumsq := make([]float32, 0, s.N*s.Cout), make([]float32, 0, s.N*s.Cout)
	for n := n0; n < n1; n++ {
		sum = append(sum, got.stats[n*2*s.Cout:][:s.Cout]...)
		sumsq = append(sumsq, got.stats[n*2*s.Cout+s.Cout:][:s.Cout]...)
	}
	lo, hi = n0*s.Cout, n1*s.Cout
	idx := func(i int) string { return c.statIndex(lo + i) }
	if msg := mismatch(what+" sum", sum, ref.sum[lo:hi], ref.sumMag[lo:hi], idx); msg != "" {
		t.Error(msg)
	}
	if msg := mismatch(what+" sumsq", sumsq, ref.sumsq[lo:hi], ref.sumsqMag[lo:hi], idx); msg != "" {
		t.Error(msg)
	}
}

// imageRanges is the work a test gives each kernel: every image of a
// small batch in one call, and the first and last images of a large one
// (whose offsets are the largest).
func imageRanges(s *Conv3x3Shape) [][2]int {
	if s.N <= 3 {
		return [][2]int{{0, s.N}}
	}
	return [][2]int{{0, 1}, {s.N - 1, s.N}}
}

// TestConv3x3 runs every kernel on random inputs and compares its twin
// and its exported function with the float64 reference, and its assembly
// with its twin.
func TestConv3x3(t *testing.T) {
	requireAsm(t)
	for i := range Conv3x3Kernels {
		k := &Conv3x3Kernels[i]
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newCase(t, &k.Conv3x3Shape)
			for _, rg := range imageRanges(c.s) {
				ref := c.reference(rg[0], rg[1])
				twin := c.run(k.Go, rg)
				c.check(t, "twin", twin, ref)
				c.check(t, "exported", c.run(k.Run, rg), ref)
				if asmRunnable {
					asm := c.run(k.Asm, rg)
					c.check(t, "asm", asm, twinReference(c, twin, ref))
				}
			}
		})
	}
}

// twinReference makes the twin's output the reference of the assembly,
// with the float64 reference's magnitudes: the two must agree up to FMA
// rounding.
func twinReference(c *convCase, twin result, ref *refResult) *refResult {
	s := c.s
	tr := *ref
	tr.y = make([]float64, len(twin.y))
	for i, v := range twin.y {
		tr.y[i] = float64(v)
	}
	tr.sum = make([]float64, s.N*s.Cout)
	tr.sumsq = make([]float64, s.N*s.Cout)
	if s.Stats {
		for n := ref.images[0]; n < ref.images[1]; n++ {
			for co := range s.Cout {
				tr.sum[n*s.Cout+co] = float64(twin.stats[n*2*s.Cout+co])
				tr.sumsq[n*s.Cout+co] = float64(twin.stats[n*2*s.Cout+s.Cout+co])
			}
		}
	}
	return &tr
}

// TestConv3x3NaN puts a NaN into the input of every small kernel with a
// ReLU: a NaN must reach the outputs it touches through every rectifier,
// as in the IR (relu keeps NaN so that a diverged step shows).
func TestConv3x3NaN(t *testing.T) {
	requireAsm(t)
	for i := range Conv3x3Kernels {
		k := &Conv3x3Kernels[i]
		if k.N > 3 || !strings.Contains(k.Name, "Relu") {
			continue
		}
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newCase(t, &k.Conv3x3Shape)
			c.x[len(c.x)/2] = float32(math.NaN())
			must(t, ToNCHW8c(c.bx, c.x, c.s.N, c.s.Cin, c.s.H, c.s.W))
			rg := [2]int{0, c.s.N}
			ref := c.reference(0, c.s.N)
			nans := 0
			for _, v := range ref.y {
				if math.IsNaN(v) {
					nans++
				}
			}
			if nans == 0 {
				t.Fatal("the reference has no NaN output")
			}
			c.check(t, "twin", c.run(k.Go, rg), ref)
			if asmRunnable {
				c.check(t, "asm", c.run(k.Asm, rg), ref)
			}
		})
	}
}

// TestConv3x3Split runs every small batch whole and split into single
// images, as goroutines would: outputs and per-image statistics must be
// bitwise equal, and so must ReduceStats of them.
func TestConv3x3Split(t *testing.T) {
	for i := range Conv3x3Kernels {
		k := &Conv3x3Kernels[i]
		if k.N < 2 || k.N > 3 {
			continue
		}
		c := newCase(t, &k.Conv3x3Shape)
		var parts [][2]int
		for n := range k.N {
			parts = append(parts, [2]int{n, n + 1})
		}
		whole, split := c.run(k.Run, [2]int{0, k.N}), c.run(k.Run, parts...)
		for j := range whole.y {
			if math.Float32bits(whole.y[j]) != math.Float32bits(split.y[j]) {
				t.Fatalf("%s: y%s is %v whole, %v split", k.Name, c.yIndex(j), whole.y[j], split.y[j])
			}
		}
		if !k.Stats {
			continue
		}
		for j := range whole.stats {
			if math.Float32bits(whole.stats[j]) != math.Float32bits(split.stats[j]) {
				t.Fatalf("%s: stats[%d] is %v whole, %v split", k.Name, j, whole.stats[j], split.stats[j])
			}
		}
	}
}

// TestCheckPanics checks that a kernel called with arguments that do not
// fit its shape panics with a BUG message instead of running the
// assembly out of bounds.
func TestCheckPanics(t *testing.T) {
	k := &Conv3x3Kernels[len(Conv3x3Kernels)-1]
	s := &k.Conv3x3Shape
	full := func() [][]float32 {
		return [][]float32{
			make([]float32, s.XLen()), make([]float32, s.WLen()), make([]float32, s.Cout),
			make([]float32, s.Cin), make([]float32, s.Cin), make([]float32, s.YLen()),
			make([]float32, s.YLen()), make([]float32, s.StatsLen()), make([]float32, s.ScratchLen()),
		}
	}
	call := func(a [][]float32, n0, n1 int) (msg string) {
		defer func() {
			if r := recover(); r != nil {
				msg = fmt.Sprint(r)
			}
		}()
		k.Run(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], n0, n1)
		return ""
	}
	if msg := call(full(), 0, s.N); msg != "" {
		t.Fatalf("%s panicked on valid arguments: %s", k.Name, msg)
	}
	for _, c := range []struct {
		arg    int
		n0, n1 int
		want   string
	}{
		{0, 0, 1, "x has length"},
		{6, 0, 1, "y has length"},
		{8, 0, 1, "scratch has length"},
		{-1, 0, s.N + 1, "outside"},
		{-1, 1, 0, "outside"},
		{-1, -1, 1, "outside"},
	} {
		a := full()
		if c.arg >= 0 {
			a[c.arg] = a[c.arg][:len(a[c.arg])-1]
		}
		msg := call(a, c.n0, c.n1)
		if !strings.HasPrefix(msg, "BUG: "+k.Name) || !strings.Contains(msg, c.want) {
			t.Errorf("argument %d, images [%d, %d): panic %q, want a BUG naming the kernel and %q", c.arg, c.n0, c.n1, msg, c.want)
		}
	}
}

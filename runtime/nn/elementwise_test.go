package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// The kernel tests compare each kernel with a naive reference written
// here in float64 over logical NCHW data, for both layouts, on shapes
// below and above the size where kernels start using the workers.

// Shapes the activation kernels are tested on: blocked and plain,
// channels not a multiple of 8, rank 2 ([N, C] as H = W = 1), and one
// large enough that kernels split it over the workers.
var testShapes = []Act{
	{N: 2, C: 16, H: 3, W: 5},
	{N: 2, C: 16, H: 3, W: 5, Blocked: true},
	{N: 3, C: 3, H: 4, W: 2},
	{N: 4, C: 6, H: 1, W: 1},
	{N: 3, C: 16, H: 20, W: 20},
	{N: 3, C: 16, H: 20, W: 20, Blocked: true},
}

// testThreads are the worker counts correctness is checked with (3 splits
// unevenly).
var testThreads = []int{1, 3}

// testWide is the wide scratch of the Ctx of the correctness tests;
// the reduction tests also run with exactly the scratch each kernel
// documents.
const testWide = 4096

func newTestCtx(t testing.TB, threads, wide int) *Ctx {
	t.Helper()
	c, err := NewCtx(threads, 0, wide)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// forShapes runs f for every test shape and thread count.
func forShapes(t *testing.T, f func(t *testing.T, c *Ctx, a Act)) {
	for _, threads := range testThreads {
		c := newTestCtx(t, threads, testWide)
		for _, a := range testShapes {
			t.Run(fmt.Sprintf("%dx%dx%dx%d,blocked=%v,threads=%d", a.N, a.C, a.H, a.W, a.Blocked, threads), func(t *testing.T) {
				f(t, c, a)
			})
		}
	}
}

// index is the storage index of logical (n, c, h, w) in a, written out
// here independently of Act.At.
func index(a Act, n, c, h, w int) int {
	if a.Blocked {
		return ((((n*(a.C/8)+c/8)*a.H+h)*a.W+w)*8 + c%8)
	}
	return ((n*a.C+c)*a.H+h)*a.W + w
}

// logical calls f for every element of a in logical order with its
// logical index and storage index.
func logical(a Act, f func(li, si, n, c, h, w int)) {
	li := 0
	for n := range a.N {
		for c := range a.C {
			for h := range a.H {
				for w := range a.W {
					f(li, index(a, n, c, h, w), n, c, h, w)
					li++
				}
			}
		}
	}
}

// pack stores logical values v in a's layout.
func pack(a Act, v []float64) []float32 {
	s := make([]float32, a.Len())
	logical(a, func(li, si, _, _, _, _ int) { s[si] = float32(v[li]) })
	return s
}

// unpack reads storage s of layout a in logical order.
func unpack(a Act, s []float32) []float64 {
	v := make([]float64, a.Len())
	logical(a, func(li, si, _, _, _, _ int) { v[li] = float64(s[si]) })
	return v
}

// random returns n float32-representable values uniform in [lo, hi).
func random(r *rand.Rand, n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(float32(lo + (hi-lo)*r.Float64()))
	}
	return v
}

func f32s(v []float64) []float32 {
	s := make([]float32, len(v))
	for i, x := range v {
		s[i] = float32(x)
	}
	return s
}

func f64s(s []float32) []float64 {
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = float64(x)
	}
	return v
}

// near reports whether got is want within the tolerance of float32
// results computed in float64: relative 1e-5, plus a small absolute slack
// for results that cancel to near zero.
func near(got, want float64) bool {
	if math.IsNaN(want) || math.IsNaN(got) {
		return math.IsNaN(want) && math.IsNaN(got)
	}
	if math.IsInf(want, 0) {
		return got == want
	}
	return math.Abs(got-want) <= 1e-5*math.Abs(want)+1e-6
}

// checkClose compares got and want (both logical) element by element and
// reports the first few mismatches.
func checkClose(t testing.TB, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range want {
		if !near(got[i], want[i]) {
			if bad < 5 {
				t.Errorf("%s[%d] = %v, want %v", what, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d values differ", what, bad, len(want))
	}
}

// checkAct compares storage got of layout a with logical want.
func checkAct(t testing.TB, what string, a Act, got []float32, want []float64) {
	t.Helper()
	checkClose(t, what, unpack(a, got), want)
}

func same(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// refMap applies f elementwise.
func refMap(f func(i int) float64, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = f(i)
	}
	return v
}

func TestElementwise(t *testing.T) {
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(1, uint64(a.Len())))
		n := a.Len()
		x, y := random(r, n, -3, 3), random(r, n, -3, 3)
		x[0], y[1] = 0, 0 // ReLU and ReLUGrad at exactly zero
		px, py := pack(a, x), pack(a, y)
		out := make([]float32, n)

		ReLU(c, out, px, a)
		checkAct(t, "ReLU", a, out, refMap(func(i int) float64 { return math.Max(x[i], 0) }, n))
		Sigmoid(c, out, px, a)
		checkAct(t, "Sigmoid", a, out, refMap(func(i int) float64 { return 1 / (1 + math.Exp(-x[i])) }, n))
		Add(c, out, px, py, a)
		checkAct(t, "Add", a, out, refMap(func(i int) float64 { return x[i] + y[i] }, n))
		Mul(c, out, px, py, a)
		checkAct(t, "Mul", a, out, refMap(func(i int) float64 { return x[i] * y[i] }, n))
		Scale(c, out, px, a, 0.7, -0.25)
		checkAct(t, "Scale", a, out, refMap(func(i int) float64 { return 0.7*x[i] - 0.25 }, n))
		ReLUGrad(c, out, px, py, a)
		checkAct(t, "ReLUGrad", a, out, refMap(func(i int) float64 {
			if y[i] > 0 {
				return x[i]
			}
			return 0
		}, n))
		SigmoidGrad(c, out, px, py, a)
		checkAct(t, "SigmoidGrad", a, out, refMap(func(i int) float64 { return x[i] * y[i] * (1 - y[i]) }, n))
	})
}

// TestElementwiseEdges checks NaN and infinities: ReLU keeps NaN (a
// diverged step must show), Sigmoid saturates without overflow.
func TestElementwiseEdges(t *testing.T) {
	c := newTestCtx(t, 1, 0)
	a := Act{N: 1, C: 1, H: 1, W: 6}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	x := []float32{nan, -inf, inf, -1000, 1000, float32(math.Copysign(0, -1))}
	y := make([]float32, 6)
	ReLU(c, y, x, a)
	if !math.IsNaN(float64(y[0])) || y[1] != 0 || y[2] != inf || y[3] != 0 || y[4] != 1000 || math.Signbit(float64(y[5])) {
		t.Errorf("ReLU(%v) = %v", x, y)
	}
	Sigmoid(c, y, x, a)
	if !math.IsNaN(float64(y[0])) || y[1] != 0 || y[2] != 1 || y[3] != 0 || y[4] != 1 || y[5] != 0.5 {
		t.Errorf("Sigmoid(%v) = %v", x, y)
	}
}

// TestElementwiseInPlace checks every in-place form the memory plan uses:
// the result in the storage of each argument it may share.
func TestElementwiseInPlace(t *testing.T) {
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(2, uint64(a.Len())))
		n := a.Len()
		x, y := random(r, n, -3, 3), random(r, n, -3, 3)
		type binary func(c *Ctx, z, x, y []float32, a Act)
		for _, k := range []struct {
			name string
			f    binary
		}{
			{"Add", Add}, {"Mul", Mul}, {"ReLUGrad", ReLUGrad}, {"SigmoidGrad", SigmoidGrad},
		} {
			want := make([]float32, n)
			k.f(c, want, pack(a, x), pack(a, y), a)
			for pos := range 2 {
				args := [][]float32{pack(a, x), pack(a, y)}
				k.f(c, args[pos], args[0], args[1], a)
				if !same(args[pos], want) {
					t.Errorf("%s into argument %d differs from %s into a fresh slice", k.name, pos, k.name)
				}
			}
		}
		type unary func(c *Ctx, y, x []float32, a Act)
		for _, k := range []struct {
			name string
			f    unary
		}{
			{"ReLU", ReLU}, {"Sigmoid", Sigmoid},
			{"Scale", func(c *Ctx, y, x []float32, a Act) { Scale(c, y, x, a, -1.5, 2) }},
		} {
			want := make([]float32, n)
			k.f(c, want, pack(a, x), a)
			got := pack(a, x)
			k.f(c, got, got, a)
			if !same(got, want) {
				t.Errorf("%s in place differs from %s into a fresh slice", k.name, k.name)
			}
		}
	})
}

// interpMasks are the dropout masks (1 kept, 0 dropped, logical order)
// that the reference interpreter (ir/interp) computes for rate 0.3,
// seed 11 and a [2, 16, 1, 2] tensor, at steps 0 and 5.
var interpMasks = map[int64]string{
	0: "1111101110001111101111110111110111010110111010111011111111111111",
	5: "1011001010100111111101110111110111111001011101101010111101111000",
}

// TestDropoutInterp checks the mask against the interpreter's, in both
// layouts (the mask follows logical order, not storage order).
func TestDropoutInterp(t *testing.T) {
	c := newTestCtx(t, 2, 0)
	for _, blocked := range []bool{false, true} {
		a := Act{N: 2, C: 16, H: 1, W: 2, Blocked: blocked}
		x := make([]float32, a.Len())
		for i := range x {
			x[i] = -2
		}
		y, mask := make([]float32, a.Len()), make([]float32, a.Len())
		for step, want := range interpMasks {
			Dropout(c, y, mask, x, step, a, 0.3, 11)
			m, yl := unpack(a, mask), unpack(a, y)
			keep := float64(float32(1 / (1 - 0.3)))
			for i, ch := range want {
				wm := 0.0
				if ch == '1' {
					wm = keep
				}
				if m[i] != wm || !near(yl[i], -2*wm) {
					t.Errorf("blocked=%v step %d: element %d: mask %v, y %v; want mask %v, y %v", blocked, step, i, m[i], yl[i], wm, -2*wm)
				}
			}
		}
	}
}

// TestDropout checks dropout's mask against the formula written out
// here, that the kept fraction is near 1-rate, and that the mask changes
// with the step and the seed but not with the layout or thread count.
func TestDropout(t *testing.T) {
	const rate = 0.25
	keep := 1 / (1 - rate)
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(3, uint64(a.Len())))
		n := a.Len()
		x := random(r, n, -3, 3)
		y, mask := make([]float32, n), make([]float32, n)
		Dropout(c, y, mask, pack(a, x), 9, a, rate, -4)
		seed, step, golden, mul := int64(-4), uint64(9), uint64(0x9E3779B97F4A7C15), uint64(0xBF58476D1CE4E5B9)
		base := uint64(seed)*golden + step*mul
		wantMask := refMap(func(i int) float64 {
			z := base + uint64(i) + 0x9E3779B97F4A7C15
			z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
			z = (z ^ z>>27) * 0x94D049BB133111EB
			z ^= z >> 31
			if float64(z>>11)/(1<<53) >= rate {
				return keep
			}
			return 0
		}, n)
		checkAct(t, "mask", a, mask, wantMask)
		checkAct(t, "y", a, y, refMap(func(i int) float64 { return x[i] * wantMask[i] }, n))
		if n >= 1000 {
			kept := 0
			for _, m := range wantMask {
				if m != 0 {
					kept++
				}
			}
			if f := float64(kept) / float64(n); math.Abs(f-(1-rate)) > 0.03 {
				t.Errorf("kept fraction %.3f, want about %.2f", f, 1-rate)
			}
		}
		other := make([]float32, n)
		for _, v := range []struct{ step, seed int64 }{{10, -4}, {9, -3}} {
			Dropout(c, y, other, pack(a, x), v.step, a, rate, v.seed)
			if n >= 64 && same(other, mask) {
				t.Errorf("step %d, seed %d: the same mask as step 9, seed -4", v.step, v.seed)
			}
		}
	})
}

// TestElementwiseDeterministic runs the parallel elementwise kernels
// twice with two workers and wants the same bits.
func TestElementwiseDeterministic(t *testing.T) {
	c := newTestCtx(t, 2, 0)
	a := Act{N: 3, C: 16, H: 20, W: 20, Blocked: true}
	r := rand.New(rand.NewPCG(4, 0))
	x, y := f32s(random(r, a.Len(), -2, 2)), f32s(random(r, a.Len(), -2, 2))
	for name, f := range map[string]func(out, out2 []float32){
		"Sigmoid": func(out, _ []float32) { Sigmoid(c, out, x, a) },
		"Dropout": func(out, out2 []float32) { Dropout(c, out, out2, x, 3, a, 0.1, 1) },
		"Add":     func(out, _ []float32) { Add(c, out, x, y, a) },
	} {
		o1, o2, p1, p2 := make([]float32, a.Len()), make([]float32, a.Len()), make([]float32, a.Len()), make([]float32, a.Len())
		f(o1, o2)
		f(p1, p2)
		if !same(o1, p1) || !same(o2, p2) {
			t.Errorf("%s: two runs differ", name)
		}
	}
}

// TestElementwiseAllocs checks that the kernels allocate nothing after
// their first call, with two workers and a size they split.
func TestElementwiseAllocs(t *testing.T) {
	c := newTestCtx(t, 2, 0)
	a := Act{N: 3, C: 16, H: 20, W: 20, Blocked: true}
	n := a.Len()
	x, y, z, m := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	checkAllocs(t, map[string]func(){
		"ReLU":        func() { ReLU(c, z, x, a) },
		"Sigmoid":     func() { Sigmoid(c, z, x, a) },
		"Add":         func() { Add(c, z, x, y, a) },
		"Mul":         func() { Mul(c, z, x, y, a) },
		"Scale":       func() { Scale(c, z, x, a, 2, 1) },
		"ReLUGrad":    func() { ReLUGrad(c, z, x, y, a) },
		"SigmoidGrad": func() { SigmoidGrad(c, z, x, y, a) },
		"Dropout":     func() { Dropout(c, z, m, x, 1, a, 0.5, 2) },
	})
}

// checkAllocs wants each f to allocate nothing once warmed up.
func checkAllocs(t *testing.T, fs map[string]func()) {
	t.Helper()
	for name, f := range fs {
		f()
		if n := testing.AllocsPerRun(5, f); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}

// TestBadLengths checks that a length mismatch is a BUG panic naming the
// kernel.
func TestBadLengths(t *testing.T) {
	c := newTestCtx(t, 1, 0)
	a := Act{N: 1, C: 8, H: 2, W: 2, Blocked: true}
	for name, f := range map[string]func(){
		"ReLU":      func() { ReLU(c, make([]float32, 31), make([]float32, 32), a) },
		"BNNorm":    func() { BNNorm(c, make([]float32, 32), make([]float32, 32), nil, nil, nil, nil, a, 1e-5) },
		"Relayout":  func() { Relayout(c, make([]float32, 32), make([]float32, 32), a, Act{N: 1, C: 8, H: 4, W: 1}) },
		"SoftmaxCE": func() { SoftmaxCE(c, make([]float32, 1), make([]float32, 6), []int32{0, 3}, 2, 3) },
		"MaxPool":   func() { MaxPool(c, make([]float32, 8), make([]float32, 32), Act{N: 1, C: 8, H: 1, W: 1}, a, 3, 1, 0) },
		"SGD":       func() { SGD(c, nil, nil, nil, nil, nil, make([]float32, 2), 0, 0.9, 0) },
		"BNStats":   func() { BNStats(newTestCtx(t, 2, 3), make([]float32, 8), make([]float32, 8), make([]float32, 32), a) },
		"LinearDw":  func() { LinearDw(c, make([]float32, 6), make([]float32, 4), make([]float32, 5), 2, 3, 2) },
		"AffineReLU": func() {
			AffineReLU(c, make([]float32, 12), make([]float32, 12), nil, nil, Act{N: 1, C: 3, H: 2, W: 2, Blocked: true})
		},
	} {
		func() {
			defer func() {
				msg, _ := recover().(string)
				if len(msg) < 4 || msg[:4] != "BUG:" || !strings.Contains(msg, "nn."+name) {
					t.Errorf("%s: panic %q, want a BUG naming nn.%s", name, msg, name)
				}
			}()
			f()
		}()
	}
}

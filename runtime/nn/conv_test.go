package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// The tests here check the convolution kernels against a naive float64
// reference in logical NCHW order, written from the op table's formulas
// and independent of the kernels: no padded copies, no packing, no
// blocked index arithmetic shared with the package.

// tconvGeom is one convolution geometry under test.
type tconvGeom struct {
	n, cin, h, w, cout, kh, kw, stride, pad int
}

func (g tconvGeom) String() string {
	return fmt.Sprintf("n%d_c%d_%dx%d_k%d_%dx%d_s%d_p%d", g.n, g.cin, g.h, g.w, g.cout, g.kh, g.kw, g.stride, g.pad)
}

func (g tconvGeom) ho() int { return (g.h+2*g.pad-g.kh)/g.stride + 1 }
func (g tconvGeom) wo() int { return (g.w+2*g.pad-g.kw)/g.stride + 1 }

// tconvGeoms covers 1x1, 3x3 and the 7x7 stride-2 stem, strides 1 and 2
// (and 3), odd sizes, inputs whose last rows or columns no window reaches,
// channel counts that do not fill a block of 8, a kernel that is not
// square, and a batch smaller than the thread count.
var tconvGeoms = []tconvGeom{
	{n: 3, cin: 16, h: 7, w: 5, cout: 16, kh: 3, kw: 3, stride: 1, pad: 1},
	{n: 3, cin: 8, h: 7, w: 5, cout: 16, kh: 3, kw: 3, stride: 2, pad: 1},
	{n: 2, cin: 16, h: 5, w: 7, cout: 8, kh: 1, kw: 1, stride: 1, pad: 0},
	{n: 3, cin: 8, h: 7, w: 7, cout: 16, kh: 1, kw: 1, stride: 2, pad: 0},
	{n: 2, cin: 3, h: 11, w: 9, cout: 8, kh: 7, kw: 7, stride: 2, pad: 3},
	{n: 2, cin: 3, h: 5, w: 7, cout: 12, kh: 3, kw: 3, stride: 1, pad: 1},
	{n: 2, cin: 8, h: 7, w: 5, cout: 5, kh: 3, kw: 1, stride: 2, pad: 1},
	{n: 1, cin: 8, h: 5, w: 5, cout: 8, kh: 3, kw: 3, stride: 1, pad: 1},
	{n: 2, cin: 8, h: 6, w: 8, cout: 8, kh: 3, kw: 3, stride: 2, pad: 1},
	{n: 2, cin: 8, h: 6, w: 7, cout: 8, kh: 2, kw: 2, stride: 2, pad: 0},
	{n: 2, cin: 3, h: 8, w: 7, cout: 8, kh: 5, kw: 5, stride: 3, pad: 2},
}

// tconvLayouts are the storage choices of a tensor with c channels.
func tconvLayouts(c int) []bool {
	if c%8 == 0 {
		return []bool{false, true}
	}
	return []bool{false}
}

// tconvIndex is the storage index of logical (n, c, h, w) in a tensor of
// shape [., C, H, W], plain or blocked [N][C/8][H][W][8].
func tconvIndex(C, H, W int, blocked bool, n, c, h, w int) int {
	if blocked {
		return ((((n*(C/8)+c/8)*H+h)*W + w) * 8) + c%8
	}
	return ((n*C+c)*H+h)*W + w
}

// tconvStore returns logical NCHW data stored as float32 in the given
// layout.
func tconvStore(v []float64, N, C, H, W int, blocked bool) []float32 {
	s := make([]float32, len(v))
	for n := range N {
		for c := range C {
			for h := range H {
				for w := range W {
					s[tconvIndex(C, H, W, blocked, n, c, h, w)] = float32(v[((n*C+c)*H+h)*W+w])
				}
			}
		}
	}
	return s
}

// tconvLoad is the inverse of tconvStore.
func tconvLoad(s []float32, N, C, H, W int, blocked bool) []float64 {
	v := make([]float64, len(s))
	for n := range N {
		for c := range C {
			for h := range H {
				for w := range W {
					v[((n*C+c)*H+h)*W+w] = float64(s[tconvIndex(C, H, W, blocked, n, c, h, w)])
				}
			}
		}
	}
	return v
}

// tconvRand returns n values uniform on [lo, hi), exactly representable
// in float32.
func tconvRand(r *rand.Rand, n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(float32(lo + (hi-lo)*r.Float64()))
	}
	return v
}

// tconvPrologue returns the logical tensor a fused conv convolves.
func tconvPrologue(pro Prologue, x []float64, C, HW int, scale, shift []float64) []float64 {
	a := make([]float64, len(x))
	for i, v := range x {
		c := i / HW % C
		switch pro {
		case PrologueNone:
			a[i] = v
		case PrologueReLU:
			a[i] = math.Max(v, 0)
		case PrologueAffineReLU:
			a[i] = math.Max(scale[c]*v+shift[c], 0)
		}
	}
	return a
}

// tconvRef is the cross-correlation of a with w in float64, and for each
// output the sum of the absolute values of its terms (the scale of its
// float32 rounding error).
func tconvRef(g tconvGeom, a, w []float64) (y, mag []float64) {
	HO, WO := g.ho(), g.wo()
	y = make([]float64, g.n*g.cout*HO*WO)
	mag = make([]float64, len(y))
	for n := range g.n {
		for o := range g.cout {
			for i := range HO {
				for j := range WO {
					var s, m float64
					for c := range g.cin {
						for ki := range g.kh {
							for kj := range g.kw {
								h, v := i*g.stride+ki-g.pad, j*g.stride+kj-g.pad
								if h < 0 || h >= g.h || v < 0 || v >= g.w {
									continue
								}
								t := a[((n*g.cin+c)*g.h+h)*g.w+v] * w[((o*g.cin+c)*g.kh+ki)*g.kw+kj]
								s += t
								m += math.Abs(t)
							}
						}
					}
					k := ((n*g.cout+o)*HO+i)*WO + j
					y[k], mag[k] = s, m
				}
			}
		}
	}
	return y, mag
}

// tconvTol is the tolerance of a float32 result whose float64 value is
// want and whose terms have absolute sum mag.
func tconvTol(want, mag float64) float64 { return 1e-5*math.Abs(want) + 2e-6*mag }

// tconvCompare reports the elements of got (logical order) farther from
// want than tconvTol allows, at most a few.
func tconvCompare(t *testing.T, what string, got, want, mag []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range want {
		if d := math.Abs(got[i] - want[i]); !(d <= tconvTol(want[i], mag[i])) {
			if bad < 3 {
				t.Errorf("%s[%d] = %v, want %v (diff %.3g, tolerance %.3g)", what, i, got[i], want[i], d, tconvTol(want[i], mag[i]))
			}
			bad++
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d of %d values wrong", what, bad, len(want))
	}
}

// tconvFlags is one combination of conv2d_fused's prologue and epilogue.
type tconvFlags struct {
	pro                         Prologue
	bias, residual, relu, stats bool
}

func (f tconvFlags) String() string {
	s := [...]string{"none", "relu", "affine"}[f.pro]
	for _, b := range []struct {
		on   bool
		name string
	}{{f.bias, "bias"}, {f.residual, "res"}, {f.relu, "relu"}, {f.stats, "stats"}} {
		if b.on {
			s += "+" + b.name
		}
	}
	return s
}

// tconvAllFlags lists every prologue and epilogue combination.
func tconvAllFlags() []tconvFlags {
	var fs []tconvFlags
	for pro := PrologueNone; pro <= PrologueAffineReLU; pro++ {
		for m := 0; m < 16; m++ {
			fs = append(fs, tconvFlags{pro, m&1 != 0, m&2 != 0, m&4 != 0, m&8 != 0})
		}
	}
	return fs
}

// tconvInputs are the random logical inputs of one geometry.
type tconvInputs struct {
	x, w, b, scale, shift, r []float64
}

func tconvMakeInputs(g tconvGeom, seed uint64) tconvInputs {
	r := rand.New(rand.NewPCG(seed, 7))
	return tconvInputs{
		x:     tconvRand(r, g.n*g.cin*g.h*g.w, -1, 1),
		w:     tconvRand(r, g.cout*g.cin*g.kh*g.kw, -1, 1),
		b:     tconvRand(r, g.cout, -1, 1),
		scale: tconvRand(r, g.cin, 0.5, 1.5),
		shift: tconvRand(r, g.cin, -0.5, 0.5),
		r:     tconvRand(r, g.n*g.cout*g.ho()*g.wo(), -2, 2),
	}
}

// tconvFusedRef is conv2d_fused in float64: y, the error scale of each y,
// and the per-channel sums of y and y² with their tolerances.
func tconvFusedRef(g tconvGeom, in tconvInputs, f tconvFlags) (y, mag, sum, sumsq, sumTol, sumsqTol []float64) {
	a := tconvPrologue(f.pro, in.x, g.cin, g.h*g.w, in.scale, in.shift)
	y, mag = tconvRef(g, a, in.w)
	plane := g.ho() * g.wo()
	for i := range y {
		o := i / plane % g.cout
		if f.bias {
			y[i] += in.b[o]
			mag[i] += math.Abs(in.b[o])
		}
		if f.residual {
			y[i] += in.r[i]
			mag[i] += math.Abs(in.r[i])
		}
		if f.relu {
			y[i] = math.Max(y[i], 0)
		}
	}
	sum, sumsq = make([]float64, g.cout), make([]float64, g.cout)
	sumTol, sumsqTol = make([]float64, g.cout), make([]float64, g.cout)
	for i, v := range y {
		o := i / plane % g.cout
		e := tconvTol(v, mag[i]) + 1e-7*math.Abs(v)
		sum[o] += v
		sumsq[o] += v * v
		sumTol[o] += e + 1e-6*math.Abs(v)
		sumsqTol[o] += (2*math.Abs(v)+e)*e + 1e-6*v*v
	}
	return
}

// tconvCtx returns a Ctx with the given threads and scratch, closed when
// the test ends. The scratch starts as NaN: a kernel must not rely on
// what an earlier kernel left there.
func tconvCtx(t testing.TB, threads, floats, wide int) *Ctx {
	c, err := NewCtx(threads, floats, wide)
	if err != nil {
		t.Fatal(err)
	}
	for w := range threads {
		for i := range c.Scratch(w) {
			c.Scratch(w)[i] = float32(math.NaN())
		}
		for i := range c.Wide(w) {
			c.Wide(w)[i] = math.NaN()
		}
	}
	t.Cleanup(c.Close)
	return c
}

// tconvRun32 holds one call's float32 storage.
type tconvRun32 struct {
	x, w, b, scale, shift, r, y, sum, sumsq []float32
}

// tconvFusedCall runs Conv2DFused (or Conv2D when plain is set and the
// flags allow it) on the inputs stored in the given layouts.
func tconvFusedCall(c *Ctx, g tconvGeom, in tconvInputs, f tconvFlags, xb, yb, inPlace, plain bool) (tconvRun32, ConvParams) {
	HO, WO := g.ho(), g.wo()
	p := ConvParams{
		X: Act{N: g.n, C: g.cin, H: g.h, W: g.w, Blocked: xb}, Y: Act{N: g.n, C: g.cout, H: HO, W: WO, Blocked: yb},
		KH: g.kh, KW: g.kw, Stride: g.stride, Pad: g.pad,
		Prologue: f.pro, Bias: f.bias, Residual: f.residual, ReLU: f.relu, Stats: f.stats,
	}
	var s tconvRun32
	s.x = tconvStore(in.x, g.n, g.cin, g.h, g.w, xb)
	s.w = tconvStore(in.w, 1, 1, 1, len(in.w), false)
	s.y = make([]float32, g.n*g.cout*HO*WO)
	for i := range s.y {
		s.y[i] = float32(math.NaN()) // every element must be written
	}
	if f.bias {
		s.b = tconvStore(in.b, 1, 1, 1, g.cout, false)
	}
	if f.pro == PrologueAffineReLU {
		s.scale = tconvStore(in.scale, 1, 1, 1, g.cin, false)
		s.shift = tconvStore(in.shift, 1, 1, 1, g.cin, false)
	}
	if f.residual {
		s.r = tconvStore(in.r, g.n, g.cout, HO, WO, yb)
		if inPlace {
			copy(s.y, s.r)
			s.r = s.y
		}
	}
	if f.stats {
		s.sum, s.sumsq = make([]float32, g.cout), make([]float32, g.cout)
	}
	if plain {
		Conv2D(c, s.y, s.x, s.w, s.b, p)
	} else {
		Conv2DFused(c, s.y, s.sum, s.sumsq, s.x, s.w, s.b, s.scale, s.shift, s.r, p)
	}
	return s, p
}

// TestConv2DFused checks Conv2DFused against the reference for every
// geometry, layout pair and prologue/epilogue combination.
func TestConv2DFused(t *testing.T) {
	for gi, g := range tconvGeoms {
		in := tconvMakeInputs(g, uint64(gi))
		for _, xb := range tconvLayouts(g.cin) {
			for _, yb := range tconvLayouts(g.cout) {
				for fi, f := range tconvAllFlags() {
					name := fmt.Sprintf("%v/x%v_y%v/%v", g, xb, yb, f)
					threads := 2 + fi%2 // 2 and 3 workers
					p := ConvParams{X: Act{N: g.n, C: g.cin, H: g.h, W: g.w}, Y: Act{N: g.n, C: g.cout, H: g.ho(), W: g.wo()},
						KH: g.kh, KW: g.kw, Stride: g.stride, Pad: g.pad, Stats: f.stats}
					floats, wide := ConvScratch(p)
					c := tconvCtx(t, threads, floats, wide)
					s, _ := tconvFusedCall(c, g, in, f, xb, yb, false, false)
					y, mag, sum, sumsq, sumTol, sumsqTol := tconvFusedRef(g, in, f)
					tconvCompare(t, name+" y", tconvLoad(s.y, g.n, g.cout, g.ho(), g.wo(), yb), y, mag)
					if f.stats {
						tconvCompare(t, name+" sum", tconvLoad(s.sum, 1, 1, 1, g.cout, false), sum, tconvScaleTol(sumTol, sum))
						tconvCompare(t, name+" sumsq", tconvLoad(s.sumsq, 1, 1, 1, g.cout, false), sumsq, tconvScaleTol(sumsqTol, sumsq))
					}
				}
			}
		}
	}
}

// tconvScaleTol turns absolute tolerances into the mag argument of
// tconvCompare.
func tconvScaleTol(tol, want []float64) []float64 {
	m := make([]float64, len(tol))
	for i := range tol {
		m[i] = tol[i] / 2e-6
	}
	return m
}

// TestConv2D checks the plain conv2d entry point, with and without bias.
func TestConv2D(t *testing.T) {
	for gi, g := range tconvGeoms {
		in := tconvMakeInputs(g, uint64(100+gi))
		for _, bias := range []bool{false, true} {
			f := tconvFlags{bias: bias}
			yb := g.cout%8 == 0
			p := ConvParams{X: Act{N: g.n, C: g.cin, H: g.h, W: g.w}, Y: Act{N: g.n, C: g.cout, H: g.ho(), W: g.wo()},
				KH: g.kh, KW: g.kw, Stride: g.stride, Pad: g.pad}
			floats, wide := ConvScratch(p)
			c := tconvCtx(t, 2, floats, wide)
			s, _ := tconvFusedCall(c, g, in, f, false, yb, false, true)
			y, mag, _, _, _, _ := tconvFusedRef(g, in, f)
			tconvCompare(t, fmt.Sprintf("%v bias=%v", g, bias), tconvLoad(s.y, g.n, g.cout, g.ho(), g.wo(), yb), y, mag)
		}
	}
}

// TestConv2DFusedInPlace checks that y may share storage with the
// residual, in both layouts.
func TestConv2DFusedInPlace(t *testing.T) {
	g := tconvGeoms[0]
	in := tconvMakeInputs(g, 42)
	f := tconvFlags{pro: PrologueAffineReLU, bias: true, residual: true, relu: true, stats: true}
	for _, yb := range []bool{false, true} {
		p := ConvParams{X: Act{N: g.n, C: g.cin, H: g.h, W: g.w}, Y: Act{N: g.n, C: g.cout, H: g.ho(), W: g.wo()},
			KH: g.kh, KW: g.kw, Stride: g.stride, Pad: g.pad, Stats: true}
		floats, wide := ConvScratch(p)
		c := tconvCtx(t, 2, floats, wide)
		s, _ := tconvFusedCall(c, g, in, f, true, yb, true, false)
		y, mag, _, _, _, _ := tconvFusedRef(g, in, f)
		tconvCompare(t, fmt.Sprintf("in place, y blocked %v", yb), tconvLoad(s.y, g.n, g.cout, g.ho(), g.wo(), yb), y, mag)
	}
}

// TestConv2DFusedStatsThreads checks that the statistics are the same bit
// for bit whatever the thread count and on repeated calls.
func TestConv2DFusedStatsThreads(t *testing.T) {
	g := tconvGeom{n: 5, cin: 8, h: 6, w: 5, cout: 16, kh: 3, kw: 3, stride: 1, pad: 1}
	in := tconvMakeInputs(g, 9)
	f := tconvFlags{pro: PrologueReLU, bias: true, stats: true}
	var first tconvRun32
	for i, threads := range []int{1, 2, 3, 2, 8} {
		p := ConvParams{X: Act{N: g.n, C: g.cin, H: g.h, W: g.w}, Y: Act{N: g.n, C: g.cout, H: g.ho(), W: g.wo()},
			KH: g.kh, KW: g.kw, Stride: g.stride, Pad: g.pad, Stats: true}
		floats, wide := ConvScratch(p)
		c := tconvCtx(t, threads, floats, wide)
		s, _ := tconvFusedCall(c, g, in, f, true, true, false, false)
		if i == 0 {
			first = s
			continue
		}
		for o := range g.cout {
			if math.Float32bits(s.sum[o]) != math.Float32bits(first.sum[o]) || math.Float32bits(s.sumsq[o]) != math.Float32bits(first.sumsq[o]) {
				t.Errorf("%d threads: channel %d sums %v, %v; 1 thread gives %v, %v", threads, o, s.sum[o], s.sumsq[o], first.sum[o], first.sumsq[o])
			}
		}
		for k := range s.y {
			if math.Float32bits(s.y[k]) != math.Float32bits(first.y[k]) {
				t.Fatalf("%d threads: y[%d] = %v, 1 thread gives %v", threads, k, s.y[k], first.y[k])
			}
		}
	}
}

// TestConv2DFusedAllocs checks that a call allocates nothing after the
// first with two workers.
func TestConv2DFusedAllocs(t *testing.T) {
	g := tconvGeoms[1]
	in := tconvMakeInputs(g, 3)
	f := tconvFlags{pro: PrologueAffineReLU, bias: true, residual: true, relu: true, stats: true}
	p := ConvParams{X: Act{N: g.n, C: g.cin, H: g.h, W: g.w}, Y: Act{N: g.n, C: g.cout, H: g.ho(), W: g.wo()},
		KH: g.kh, KW: g.kw, Stride: g.stride, Pad: g.pad, Stats: true}
	floats, wide := ConvScratch(p)
	c := tconvCtx(t, 2, floats, wide)
	s, q := tconvFusedCall(c, g, in, f, true, true, false, false)
	if a := testing.AllocsPerRun(10, func() {
		Conv2DFused(c, s.y, s.sum, s.sumsq, s.x, s.w, s.b, s.scale, s.shift, s.r, q)
	}); a != 0 {
		t.Errorf("Conv2DFused allocates %v times per call", a)
	}
	q.Prologue, q.Residual, q.ReLU, q.Stats = PrologueNone, false, false, false
	if a := testing.AllocsPerRun(10, func() { Conv2D(c, s.y, s.x, s.w, s.b, q) }); a != 0 {
		t.Errorf("Conv2D allocates %v times per call", a)
	}
}

// TestConvBadCalls checks that a length or shape mismatch is a BUG panic
// naming the kernel.
func TestConvBadCalls(t *testing.T) {
	g := tconvGeoms[0]
	p := ConvParams{X: Act{N: g.n, C: g.cin, H: g.h, W: g.w}, Y: Act{N: g.n, C: g.cout, H: g.ho(), W: g.wo()},
		KH: g.kh, KW: g.kw, Stride: g.stride, Pad: g.pad}
	floats, wide := ConvScratch(p)
	c := tconvCtx(t, 2, floats, wide)
	x, w := make([]float32, p.X.Len()), make([]float32, g.cout*g.cin*9)
	y, dw := make([]float32, p.Y.Len()), make([]float32, len(w))
	small := p
	small.Y.H++
	for _, tc := range []struct {
		name, want string
		call       func()
	}{
		{"short y", "BUG: nn.Conv2D:", func() { Conv2D(c, y[1:], x, w, nil, p) }},
		{"bias missing", "BUG: nn.Conv2DFused:", func() {
			q := p
			q.Bias = true
			Conv2DFused(c, y, nil, nil, x, w, nil, nil, nil, nil, q)
		}},
		{"geometry", "BUG: nn.Conv2DDx:", func() { Conv2DDx(c, x, y, w, small) }},
		{"scale missing", "BUG: nn.Conv2DDwFused:", func() {
			q := p
			q.Prologue = PrologueAffineReLU
			Conv2DDwFused(c, dw, y, x, nil, nil, q)
		}},
		{"scratch", "BUG: nn.Conv2DDw:", func() { Conv2DDw(c, dw, y, x, p) }},
	} {
		func() {
			defer func() {
				msg, _ := recover().(string)
				if len(msg) < len(tc.want) || msg[:len(tc.want)] != tc.want {
					t.Errorf("%s: panic %q, want one starting with %q", tc.name, msg, tc.want)
				}
			}()
			tc.call()
		}()
	}
}

// BenchmarkConv reports GFLOP/s of the forward, input-gradient and
// weight-gradient kernels on a CIFAR-sized 3x3 layer (16 channels, 32x32,
// batch 32, blocked) with two workers.
func BenchmarkConv(b *testing.B) {
	g := tconvGeom{n: 32, cin: 16, h: 32, w: 32, cout: 16, kh: 3, kw: 3, stride: 1, pad: 1}
	p := ConvParams{X: Act{N: g.n, C: g.cin, H: g.h, W: g.w, Blocked: true}, Y: Act{N: g.n, C: g.cout, H: g.ho(), W: g.wo(), Blocked: true},
		KH: g.kh, KW: g.kw, Stride: g.stride, Pad: g.pad}
	flops := 2.0 * float64(g.n*g.cout*g.ho()*g.wo()*g.cin*g.kh*g.kw)
	r := rand.New(rand.NewPCG(1, 2))
	x := tconvStore(tconvRand(r, p.X.Len(), -1, 1), 1, 1, 1, p.X.Len(), false)
	w := tconvStore(tconvRand(r, g.cout*g.cin*9, -1, 1), 1, 1, 1, g.cout*g.cin*9, false)
	y := tconvStore(tconvRand(r, p.Y.Len(), -1, 1), 1, 1, 1, p.Y.Len(), false)
	dx, dw := make([]float32, len(x)), make([]float32, len(w))
	f1, w1 := ConvScratch(p)
	f2, w2 := ConvDxScratch(p)
	f3, w3 := ConvDwScratch(p)
	c := tconvCtx(b, 2, max(f1, f2, f3), max(w1, w2, w3))
	for _, k := range []struct {
		name string
		run  func()
	}{
		{"fwd", func() { Conv2D(c, y, x, w, nil, p) }},
		{"dx", func() { Conv2DDx(c, dx, y, w, p) }},
		{"dw", func() { Conv2DDw(c, dw, y, x, p) }},
	} {
		b.Run(fmt.Sprintf("%s/3x3_c16_32x32_n32", k.name), func(b *testing.B) {
			for b.Loop() {
				k.run()
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

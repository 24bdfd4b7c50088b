package gemmbench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// sentinel marks output elements a kernel must not write (images outside
// its range); scratch starts as NaN, so an output that reads scratch the
// kernel did not write is NaN.
var sentinel = float32(-12345.5)

// conv1x1Case is one kernel's inputs in plain layouts (x [N][Cin][H][W],
// w and dw0 [Cout][Cin], res and dy [N][Cout][OutH][OutW]) and in the
// kernels' (NCHW8c activations, packed weights).
type conv1x1Case struct {
	s                                       *Conv1x1Shape
	x, w, bias, scale, shift, res, dy, dw0  []float32 // plain
	bx, bw, bwDx, bres, bdy, bdw0           []float32 // kernel layouts
	oh, ow, op, hw, cib, cob, cin, cout, st int
}

// newConv1x1Case draws inputs from a seed fixed by the kernel's name.
// Scale and shift have both signs, so the affine prologue rectifies some
// inputs and lifts others above zero; dw0 is the partial the weight
// gradient is added to.
func newConv1x1Case(t testing.TB, s *Conv1x1Shape) *conv1x1Case {
	t.Helper()
	r := rand.New(rand.NewPCG(seedOf(s.Name), 1))
	bound := 1 / math.Sqrt(float64(s.Cin))
	c := &conv1x1Case{
		s:     s,
		x:     tested(r, s.N, s.XLen()),
		w:     uniform(r, s.WLen(), -bound, bound),
		bias:  uniform(r, s.Cout, -0.5, 0.5),
		scale: uniform(r, s.Cin, -1, 2),
		shift: uniform(r, s.Cin, -0.5, 0.5),
		res:   tested(r, s.N, s.YLen()),
		dy:    tested(r, s.N, s.YLen()),
		dw0:   uniform(r, s.WLen(), -1, 1),
		oh:    s.OutH, ow: s.OutW, op: s.OutH * s.OutW, hw: s.H * s.W,
		cib: s.Cin / 8, cob: s.Cout / 8, cin: s.Cin, cout: s.Cout, st: s.Stride,
	}
	c.pack(t)
	return c
}

// tested draws a batch of n images, length values in all, uniformly
// from [-1, 1) in the images imageRanges tests and leaves the others
// zero: no kernel call of the tests reads them, and drawing whole
// batch-128 tensors would take most of the tests' time.
func tested(r *rand.Rand, n, length int) []float32 {
	s := make([]float32, length)
	per := length / n
	for _, rg := range imageRanges(n) {
		copy(s[rg[0]*per:rg[1]*per], uniform(r, (rg[1]-rg[0])*per, -1, 1))
	}
	return s
}

// pack writes the plain inputs into the kernels' layouts.
func (c *conv1x1Case) pack(t testing.TB) {
	t.Helper()
	s := c.s
	c.bx, c.bw, c.bdw0 = make([]float32, len(c.x)), make([]float32, len(c.w)), make([]float32, len(c.w))
	c.bres, c.bdy = make([]float32, len(c.res)), make([]float32, len(c.dy))
	must(t, PackConv1x1Weights(c.bw, c.w, s.Cout, s.Cin))
	c.bwDx = make([]float32, len(c.w))
	must(t, PackConv1x1DxWeights(c.bwDx, c.w, s.Cout, s.Cin))
	must(t, PackConv1x1Weights(c.bdw0, c.dw0, s.Cout, s.Cin))
	// Image by image (the layouts keep images apart), the tested ones.
	for _, rg := range imageRanges(s.N) {
		for n := rg[0]; n < rg[1]; n++ {
			for _, a := range []struct {
				dst, src   []float32
				ch, hh, ww int
			}{{c.bx, c.x, s.Cin, s.H, s.W}, {c.bres, c.res, s.Cout, s.OutH, s.OutW}, {c.bdy, c.dy, s.Cout, s.OutH, s.OutW}} {
				per := a.ch * a.hh * a.ww
				must(t, ToNCHW8c(a.dst[n*per:][:per], a.src[n*per:][:per], 1, a.ch, a.hh, a.ww))
			}
		}
	}
}

// untouched fails t when an image of got outside [n0, n1) is not all
// sentinel.
func untouched(t *testing.T, what string, got []float32, n, n0, n1 int) {
	t.Helper()
	per := len(got) / n
	for i := range n {
		if i >= n0 && i < n1 {
			continue
		}
		for j, v := range got[i*per:][:per] {
			if v != sentinel {
				t.Fatalf("%s: element %d of image %d outside [%d, %d) was written", what, j, i, n0, n1)
			}
		}
	}
}

// a is prologue(x)[n, ci, h, w] in float64, as the IR defines it.
func (c *conv1x1Case) a(n, ci, h, w int) float64 {
	v := float64(c.x[((n*c.cin+ci)*c.s.H+h)*c.s.W+w])
	switch c.s.Prologue {
	case "relu":
		v = math.Max(v, 0)
	case "affine_relu":
		v = math.Max(float64(c.scale[ci])*v+float64(c.shift[ci]), 0)
	}
	return v
}

// yAt is the NCHW8c index of output (n, co, i, j); xAt that of input
// (n, ci, h, w); wAt the packed index of weight (co, ci).
func (c *conv1x1Case) yAt(n, co, i, j int) int {
	return ((n*c.cob+co/8)*c.op+i*c.ow+j)*8 + co%8
}
func (c *conv1x1Case) xAt(n, ci, h, w int) int {
	return ((n*c.cib+ci/8)*c.hw+h*c.s.W+w)*8 + ci%8
}
func (c *conv1x1Case) wAt(co, ci int) int { return ((co/8)*c.cin+ci)*8 + co%8 }

// plainW is plain weight (co, ci) in float64.
func (c *conv1x1Case) plainW(co, ci int) float64 { return float64(c.w[co*c.cin+ci]) }

// fwdRef is the float64 reference of the forward conv on images
// [n0, n1), in the kernel's layouts, with the magnitudes the tolerances
// scale with.
type fwdRef struct {
	y, mag           []float64 // NCHW8c, images [n0, n1) only
	sum, sumsq       []float64 // [N][Cout]
	sumMag, sumsqMag []float64
	images           [2]int
}

// forwardRef computes conv2d_fused with kernel 1 and pad 0 from the plain
// inputs: a = prologue(x), z = Σ_ci a·w + bias + res, y = relu(z), and
// per-image sums of y and y².
func (c *conv1x1Case) forwardRef(n0, n1 int) *fwdRef {
	s := c.s
	lo, hi := n0*s.YLen()/s.N, n1*s.YLen()/s.N
	ref := &fwdRef{
		y: make([]float64, hi-lo), mag: make([]float64, hi-lo),
		sum: make([]float64, s.N*s.Cout), sumsq: make([]float64, s.N*s.Cout),
		sumMag: make([]float64, s.N*s.Cout), sumsqMag: make([]float64, s.N*s.Cout),
		images: [2]int{n0, n1},
	}
	for n := n0; n < n1; n++ {
		for co := range s.Cout {
			for i := range c.oh {
				for j := range c.ow {
					var z, m float64
					for ci := range s.Cin {
						t := c.a(n, ci, i*c.st, j*c.st) * c.plainW(co, ci)
						z += t
						m += math.Abs(t)
					}
					if s.Bias {
						z += float64(c.bias[co])
						m += math.Abs(float64(c.bias[co]))
					}
					if s.Residual {
						r := float64(c.res[((n*s.Cout+co)*c.oh+i)*c.ow+j])
						z += r
						m += math.Abs(r)
					}
					if s.ReLU {
						z = math.Max(z, 0)
					}
					at := c.yAt(n, co, i, j) - lo
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

// dxRef computes conv2d_dx with kernel 1 and pad 0 on images [n0, n1):
// dx[n,ci,h,w] = Σ_co dy[n,co,h/s,w/s]·w[co,ci] where s divides h and w,
// 0 elsewhere (with magnitude 0: those must be exactly zero). It covers
// images [n0, n1) only.
func (c *conv1x1Case) dxRef(n0, n1 int) (dx, mag []float64) {
	s := c.s
	lo, hi := n0*s.XLen()/s.N, n1*s.XLen()/s.N
	dx, mag = make([]float64, hi-lo), make([]float64, hi-lo)
	for n := n0; n < n1; n++ {
		for ci := range s.Cin {
			for h := range s.H {
				for w := range s.W {
					if h%c.st != 0 || w%c.st != 0 {
						continue
					}
					var z, m float64
					for co := range s.Cout {
						t := float64(c.dy[((n*s.Cout+co)*c.oh+h/c.st)*c.ow+w/c.st]) * c.plainW(co, ci)
						z += t
						m += math.Abs(t)
					}
					at := c.xAt(n, ci, h, w) - lo
					dx[at], mag[at] = z, m
				}
			}
		}
	}
	return dx, mag
}

// dwRef computes dw0 + conv2d_dw_fused with kernel 1 and pad 0 over
// images [n0, n1): dw[co,ci] = dw0[co,ci] + Σ_{n,i,j} dy[n,co,i,j] ·
// prologue(x)[n,ci,i·s,j·s], packed.
func (c *conv1x1Case) dwRef(n0, n1 int) (dw, mag []float64) {
	s := c.s
	dw, mag = make([]float64, s.WLen()), make([]float64, s.WLen())
	for co := range s.Cout {
		for ci := range s.Cin {
			z := float64(c.dw0[co*s.Cin+ci])
			m := math.Abs(z)
			for n := n0; n < n1; n++ {
				for i := range c.oh {
					for j := range c.ow {
						t := float64(c.dy[((n*s.Cout+co)*c.oh+i)*c.ow+j]) * c.a(n, ci, i*c.st, j*c.st)
						z += t
						m += math.Abs(t)
					}
				}
			}
			dw[c.wAt(co, ci)], mag[c.wAt(co, ci)] = z, m
		}
	}
	return dw, mag
}

// scratch returns a NaN-filled scratch of the kernel's length, nil when
// it needs none (as a caller may pass it).
func (c *conv1x1Case) scratch() []float32 {
	if c.s.ScratchLen() == 0 {
		return nil
	}
	s := make([]float32, c.s.ScratchLen())
	fill(s, float32(math.NaN()))
	return s
}

// fwdResult is what one run of a forward kernel wrote.
type fwdResult struct{ y, stats []float32 }

// runFwd calls f on each image range of c with outputs preset to
// sentinel, passing nil for the slices the kernel's flags do not use.
func (c *conv1x1Case) runFwd(f Conv1x1Func, ranges ...[2]int) fwdResult {
	s := c.s
	r := fwdResult{y: make([]float32, s.YLen()), stats: make([]float32, s.StatsLen())}
	fill(r.y, sentinel)
	fill(r.stats, sentinel)
	bias, scale, shift, res, stats := c.bias, c.scale, c.shift, c.bres, r.stats
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
	scratch := c.scratch()
	for _, rg := range ranges {
		f(c.bx, c.bw, bias, scale, shift, res, r.y, stats, scratch, rg[0], rg[1])
	}
	return r
}

// runDx calls f on each image range with dx preset to sentinel.
func (c *conv1x1Case) runDx(f Conv1x1DxFunc, ranges ...[2]int) []float32 {
	dx := make([]float32, c.s.XLen())
	fill(dx, sentinel)
	scratch := c.scratch()
	for _, rg := range ranges {
		f(c.bdy, c.bwDx, dx, scratch, rg[0], rg[1])
	}
	return dx
}

// runDw calls f on each image range, accumulating into a copy of dw0.
func (c *conv1x1Case) runDw(f Conv1x1DwFunc, ranges ...[2]int) []float32 {
	dw := append([]float32(nil), c.bdw0...)
	scale, shift := c.scale, c.shift
	if c.s.Prologue != "affine_relu" {
		scale, shift = nil, nil
	}
	scratch := c.scratch()
	for _, rg := range ranges {
		f(c.bdy, c.bx, scale, shift, dw, scratch, rg[0], rg[1])
	}
	return dw
}

// checkFwd compares a forward run with a reference: y and (with stats)
// the statistics inside the reference's images, sentinels outside.
func (c *conv1x1Case) checkFwd(t *testing.T, what string, got fwdResult, ref *fwdRef) {
	t.Helper()
	s := c.s
	yName := func(i int) string { return blockedName(i, s.Cout, c.oh, c.ow) }
	per := s.YLen() / s.N
	n0, n1 := ref.images[0], ref.images[1]
	untouched(t, what+" y", got.y, s.N, n0, n1)
	lo, hi := n0*per, n1*per
	if msg := mismatch(what+" y", got.y[lo:hi], ref.y, ref.mag, func(i int) string { return yName(lo + i) }); msg != "" {
		t.Error(msg)
	}
	if !s.Stats {
		return
	}
	untouched(t, what+" stats", got.stats, s.N, n0, n1)
	sum, sumsq := make([]float32, 0, s.N*s.Cout), make([]float32, 0, s.N*s.Cout)
	for n := n0; n < n1; n++ {
		sum = append(sum, got.stats[n*2*s.Cout:][:s.Cout]...)
		sumsq = append(sumsq, got.stats[n*2*s.Cout+s.Cout:][:s.Cout]...)
	}
	lo, hi = n0*s.Cout, n1*s.Cout
	idx := func(i int) string { return fmt.Sprintf("(n=%d c=%d)", (lo+i)/s.Cout, (lo+i)%s.Cout) }
	if msg := mismatch(what+" sum", sum, ref.sum[lo:hi], ref.sumMag[lo:hi], idx); msg != "" {
		t.Error(msg)
	}
	if msg := mismatch(what+" sumsq", sumsq, ref.sumsq[lo:hi], ref.sumsqMag[lo:hi], idx); msg != "" {
		t.Error(msg)
	}
}

// checkDx compares a Dx run on images [n0, n1) with a reference of those
// images, and checks that no other image was written.
func (c *conv1x1Case) checkDx(t *testing.T, what string, got []float32, want, mag []float64, n0, n1 int) {
	t.Helper()
	s := c.s
	name := func(i int) string { return blockedName(i, s.Cin, s.H, s.W) }
	per := s.XLen() / s.N
	untouched(t, what+" dx", got, s.N, n0, n1)
	lo, hi := n0*per, n1*per
	if msg := mismatch(what+" dx", got[lo:hi], want, mag, func(i int) string { return name(lo + i) }); msg != "" {
		t.Error(msg)
	}
}

// checkDw compares a Dw run with a reference.
func (c *conv1x1Case) checkDw(t *testing.T, what string, got []float32, want, mag []float64) {
	t.Helper()
	name := func(i int) string {
		return fmt.Sprintf("(co=%d ci=%d)", i/(8*c.cin)*8+i%8, i/8%c.cin)
	}
	if msg := mismatch(what+" dw", got, want, mag, name); msg != "" {
		t.Error(msg)
	}
}

// toFloat64 widens s.
func toFloat64(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(v)
	}
	return d
}

// imageRanges is the work a test gives each kernel: every image of a
// small batch in one call, and the first and last images of a large one
// (whose offsets are the largest).
func imageRanges(n int) [][2]int {
	if n <= 3 {
		return [][2]int{{0, n}}
	}
	return [][2]int{{0, 1}, {n - 1, n}}
}

// TestConv1x1 runs every forward kernel on random inputs and compares its
// twin and its exported function with the float64 reference, and its
// assembly with its twin (up to FMA rounding, with the reference's
// magnitudes).
func TestConv1x1(t *testing.T) {
	requireAsm(t)
	for i := range Conv1x1Kernels {
		k := &Conv1x1Kernels[i]
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newConv1x1Case(t, &k.Conv1x1Shape)
			for _, rg := range imageRanges(k.N) {
				ref := c.forwardRef(rg[0], rg[1])
				twin := c.runFwd(k.Go, rg)
				c.checkFwd(t, "twin", twin, ref)
				c.checkFwd(t, "exported", c.runFwd(k.Run, rg), ref)
				if asmRunnable {
					tr := *ref
					per := k.YLen() / k.N
					tr.y = toFloat64(twin.y[rg[0]*per : rg[1]*per])
					tr.sum, tr.sumsq = make([]float64, k.N*k.Cout), make([]float64, k.N*k.Cout)
					for n := rg[0]; k.Stats && n < rg[1]; n++ {
						for co := range k.Cout {
							tr.sum[n*k.Cout+co] = float64(twin.stats[n*2*k.Cout+co])
							tr.sumsq[n*k.Cout+co] = float64(twin.stats[n*2*k.Cout+k.Cout+co])
						}
					}
					c.checkFwd(t, "asm", c.runFwd(k.Asm, rg), &tr)
				}
			}
		})
	}
}

// TestConv1x1Dx does the same for every backward-data kernel: the
// pixels a stride-2 conv skips must be exactly zero.
func TestConv1x1Dx(t *testing.T) {
	requireAsm(t)
	for i := range Conv1x1DxKernels {
		k := &Conv1x1DxKernels[i]
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newConv1x1Case(t, &k.Conv1x1Shape)
			for _, rg := range imageRanges(k.N) {
				want, mag := c.dxRef(rg[0], rg[1])
				twin := c.runDx(k.Go, rg)
				c.checkDx(t, "twin", twin, want, mag, rg[0], rg[1])
				c.checkDx(t, "exported", c.runDx(k.Run, rg), want, mag, rg[0], rg[1])
				if asmRunnable {
					per := k.XLen() / k.N
					c.checkDx(t, "asm", c.runDx(k.Asm, rg), toFloat64(twin[rg[0]*per:rg[1]*per]), mag, rg[0], rg[1])
				}
			}
		})
	}
}

// TestConv1x1Dw does the same for every backward-weights kernel, which
// adds to a random partial.
func TestConv1x1Dw(t *testing.T) {
	requireAsm(t)
	for i := range Conv1x1DwKernels {
		k := &Conv1x1DwKernels[i]
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newConv1x1Case(t, &k.Conv1x1Shape)
			for _, rg := range imageRanges(k.N) {
				want, mag := c.dwRef(rg[0], rg[1])
				twin := c.runDw(k.Go, rg)
				c.checkDw(t, "twin", twin, want, mag)
				c.checkDw(t, "exported", c.runDw(k.Run, rg), want, mag)
				if asmRunnable {
					c.checkDw(t, "asm", c.runDw(k.Asm, rg), toFloat64(twin), mag)
				}
			}
		})
	}
}

// TestConv1x1NaN puts a NaN into the input of every small forward kernel
// with a ReLU: a NaN must reach the outputs it touches through every
// rectifier, as in the IR (relu keeps NaN so that a diverged step shows).
func TestConv1x1NaN(t *testing.T) {
	requireAsm(t)
	for i := range Conv1x1Kernels {
		k := &Conv1x1Kernels[i]
		if k.N > 3 || !strings.Contains(k.Name, "Relu") {
			continue
		}
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newConv1x1Case(t, &k.Conv1x1Shape)
			c.x[0] = float32(math.NaN()) // pixel (0, 0): every stride reads it
			c.pack(t)
			rg := [2]int{0, k.N}
			ref := c.forwardRef(0, k.N)
			nans := 0
			for _, v := range ref.y {
				if math.IsNaN(v) {
					nans++
				}
			}
			if nans == 0 {
				t.Fatal("the reference has no NaN output")
			}
			c.checkFwd(t, "twin", c.runFwd(k.Go, rg), ref)
			if asmRunnable {
				c.checkFwd(t, "asm", c.runFwd(k.Asm, rg), ref)
			}
		})
	}
}

// TestConv1x1Split runs every small batch whole and split into single
// images, as goroutines would: outputs, per-image statistics and dx must
// be bitwise equal, and so must dw accumulated image by image into one
// partial.
func TestConv1x1Split(t *testing.T) {
	parts := func(n int) [][2]int {
		var ps [][2]int
		for i := range n {
			ps = append(ps, [2]int{i, i + 1})
		}
		return ps
	}
	same := func(what string, whole, split []float32) {
		t.Helper()
		for j := range whole {
			if math.Float32bits(whole[j]) != math.Float32bits(split[j]) {
				t.Fatalf("%s[%d] is %v whole, %v split", what, j, whole[j], split[j])
			}
		}
	}
	for i := range Conv1x1Kernels {
		if k := &Conv1x1Kernels[i]; k.N >= 2 && k.N <= 3 {
			c := newConv1x1Case(t, &k.Conv1x1Shape)
			whole, split := c.runFwd(k.Run, [2]int{0, k.N}), c.runFwd(k.Run, parts(k.N)...)
			same(k.Name+" y", whole.y, split.y)
			same(k.Name+" stats", whole.stats, split.stats)
		}
	}
	for i := range Conv1x1DxKernels {
		if k := &Conv1x1DxKernels[i]; k.N >= 2 && k.N <= 3 {
			c := newConv1x1Case(t, &k.Conv1x1Shape)
			same(k.Name+" dx", c.runDx(k.Run, [2]int{0, k.N}), c.runDx(k.Run, parts(k.N)...))
		}
	}
	for i := range Conv1x1DwKernels {
		if k := &Conv1x1DwKernels[i]; k.N >= 2 && k.N <= 3 {
			c := newConv1x1Case(t, &k.Conv1x1Shape)
			same(k.Name+" dw", c.runDw(k.Run, [2]int{0, k.N}), c.runDw(k.Run, parts(k.N)...))
		}
	}
}

// TestCheckPanics checks that a kernel of each op called with arguments
// that do not fit its shape panics with a BUG message instead of running
// the assembly out of bounds.
func TestCheckPanics(t *testing.T) {
	fk := &Conv1x1Kernels[len(Conv1x1Kernels)-1]
	xk := &Conv1x1DxKernels[len(Conv1x1DxKernels)-1]
	wk := &Conv1x1DwKernels[len(Conv1x1DwKernels)-1]
	type kernel struct {
		name string
		args func(s *Conv1x1Shape) [][]float32
		call func(a [][]float32, n0, n1 int)
		s    *Conv1x1Shape
		skip map[int]bool // arguments the kernel's flags do not use
	}
	mk := func(n int) []float32 { return make([]float32, n) }
	for _, k := range []kernel{
		{fk.Name, func(s *Conv1x1Shape) [][]float32 {
			return [][]float32{mk(s.XLen()), mk(s.WLen()), mk(s.Cout), mk(s.Cin), mk(s.Cin), mk(s.YLen()), mk(s.YLen()), mk(s.StatsLen()), mk(s.ScratchLen())}
		}, func(a [][]float32, n0, n1 int) { fk.Run(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], n0, n1) }, &fk.Conv1x1Shape, nil},
		{xk.Name, func(s *Conv1x1Shape) [][]float32 {
			return [][]float32{mk(s.YLen()), mk(s.WLen()), mk(s.XLen()), mk(s.ScratchLen())}
		}, func(a [][]float32, n0, n1 int) { xk.Run(a[0], a[1], a[2], a[3], n0, n1) }, &xk.Conv1x1Shape, nil},
		{wk.Name, func(s *Conv1x1Shape) [][]float32 {
			return [][]float32{mk(s.YLen()), mk(s.XLen()), mk(s.Cin), mk(s.Cin), mk(s.WLen()), mk(s.ScratchLen())}
		}, func(a [][]float32, n0, n1 int) { wk.Run(a[0], a[1], a[2], a[3], a[4], a[5], n0, n1) }, &wk.Conv1x1Shape,
			map[int]bool{2: wk.Prologue != "affine_relu", 3: wk.Prologue != "affine_relu"}},
	} {
		call := func(a [][]float32, n0, n1 int) (msg string) {
			defer func() {
				if r := recover(); r != nil {
					msg = fmt.Sprint(r)
				}
			}()
			k.call(a, n0, n1)
			return ""
		}
		if msg := call(k.args(k.s), 0, k.s.N); msg != "" {
			t.Fatalf("%s panicked on valid arguments: %s", k.name, msg)
		}
		cases := []struct {
			arg    int
			n0, n1 int
			want   string
		}{{-1, 0, k.s.N + 1, "outside"}, {-1, 1, 0, "outside"}, {-1, -1, 1, "outside"}}
		for arg, a := range k.args(k.s) {
			if len(a) > 0 && !k.skip[arg] {
				cases = append(cases, struct {
					arg    int
					n0, n1 int
					want   string
				}{arg, 0, k.s.N, "has length"})
			}
		}
		for _, c := range cases {
			a := k.args(k.s)
			if c.arg >= 0 {
				a[c.arg] = a[c.arg][:len(a[c.arg])-1]
			}
			msg := call(a, c.n0, c.n1)
			if !strings.HasPrefix(msg, "BUG: "+k.name) || !strings.Contains(msg, c.want) {
				t.Errorf("%s: argument %d, images [%d, %d): panic %q, want a BUG naming the kernel and %q", k.name, c.arg, c.n0, c.n1, msg, c.want)
			}
		}
	}
}

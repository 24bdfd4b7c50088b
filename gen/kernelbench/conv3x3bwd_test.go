package kernelbench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestBwdDispatch checks that every backward kernel has its assembly
// exactly when the build carries it.
func TestBwdDispatch(t *testing.T) {
	requireAsm(t)
	for _, k := range Conv3x3DxKernels {
		if (k.Asm != nil) != haveAsm {
			t.Errorf("%s: Asm set = %v in a build with assembly = %v", k.Name, k.Asm != nil, haveAsm)
		}
	}
	for _, k := range Conv3x3DwKernels {
		if (k.Asm != nil) != haveAsm {
			t.Errorf("%s: Asm set = %v in a build with assembly = %v", k.Name, k.Asm != nil, haveAsm)
		}
	}
	if len(Conv3x3DxKernels) == 0 || len(Conv3x3DwKernels) == 0 {
		t.Error("the package has no backward kernels")
	}
}

// nchw8c is the NCHW8c index of element (n, ch, h, w) of a tensor with c
// channels of hh x ww pixels, written out here rather than taken from the
// package so that the tests do not check the layout against itself.
func nchw8c(n, ch, h, w, c, hh, ww int) int {
	return (((n*(c/8)+ch/8)*hh+h)*ww+w)*8 + ch%8
}

// dxCase is one backward-data kernel's inputs in plain layouts (dy
// [N][Cout][OutH][OutW], w [Cout][Cin][3][3]) and in the kernel's.
type dxCase struct {
	s       *Conv3x3DxShape
	dy, w   []float32
	bdy, bw []float32
}

func newDxCase(t testing.TB, s *Conv3x3DxShape) *dxCase {
	t.Helper()
	r := rand.New(rand.NewPCG(seedOf(s.Name), 1))
	bound := 1 / math.Sqrt(float64(9*s.Cin))
	c := &dxCase{s: s, dy: uniform(r, s.DyLen(), -1, 1), w: uniform(r, s.WLen(), -bound, bound)}
	c.bdy = make([]float32, len(c.dy))
	c.bw = make([]float32, len(c.w))
	must(t, ToNCHW8c(c.bdy, c.dy, s.N, s.Cout, s.OutH, s.OutW))
	must(t, PackConv3x3DxWeights(c.bw, c.w, s.Cout, s.Cin))
	return c
}

// run calls f on images [n0, n1) with dx preset to sentinel and the
// scratch to NaN.
func (c *dxCase) run(f Conv3x3DxFunc, ranges ...[2]int) []float32 {
	dx := make([]float32, c.s.DxLen())
	fill(dx, sentinel)
	scratch := make([]float32, c.s.ScratchLen())
	fill(scratch, float32(math.NaN()))
	for _, rg := range ranges {
		f(c.bdy, c.bw, dx, scratch, rg[0], rg[1])
	}
	return dx
}

// reference computes conv2d_dx on images [n0, n1) in float64 by
// scattering: every dy element times every tap of the kernel goes to the
// dx pixel it came from, h = oh*Stride-1+kh. It returns dx in NCHW8c and
// the magnitudes Σ|dy·w| the tolerance scales with.
func (c *dxCase) reference(n0, n1 int) (dx, mag []float64) {
	s := c.s
	dx, mag = make([]float64, s.DxLen()), make([]float64, s.DxLen())
	for n := n0; n < n1; n++ {
		for co := range s.Cout {
			for oh := range s.OutH {
				for ow := range s.OutW {
					g := float64(c.dy[((n*s.Cout+co)*s.OutH+oh)*s.OutW+ow])
					for kh := range 3 {
						for kw := range 3 {
							h, v := oh*s.Stride-1+kh, ow*s.Stride-1+kw
							if h < 0 || h >= s.H || v < 0 || v >= s.W {
								continue
							}
							for ci := range s.Cin {
								t := g * float64(c.w[((co*s.Cin+ci)*3+kh)*3+kw])
								at := nchw8c(n, ci, h, v, s.Cin, s.H, s.W)
								dx[at] += t
								mag[at] += math.Abs(t)
							}
						}
					}
				}
			}
		}
	}
	return dx, mag
}

// index names NCHW8c element i of dx.
func (c *dxCase) index(i int) string {
	s := c.s
	l, p := i%8, i/8
	w, h := p%s.W, p/s.W%s.H
	cb, n := p/(s.W*s.H)%(s.Cin/8), p/(s.W*s.H*s.Cin/8)
	return fmt.Sprintf("(n=%d c=%d h=%d w=%d)", n, cb*8+l, h, w)
}

// check compares dx with want inside images [n0, n1) and requires the
// sentinel outside.
func (c *dxCase) check(t *testing.T, what string, got []float32, want, mag []float64, n0, n1 int) {
	t.Helper()
	per := c.s.DxLen() / c.s.N
	for i, v := range got {
		if n := i / per; (n < n0 || n >= n1) && v != sentinel {
			t.Fatalf("%s: dx%s of an image outside [%d, %d) was written", what, c.index(i), n0, n1)
		}
	}
	lo, hi := n0*per, n1*per
	if msg := mismatch(what+" dx", got[lo:hi], want[lo:hi], mag[lo:hi], func(i int) string { return c.index(lo + i) }); msg != "" {
		t.Error(msg)
	}
}

// TestConv3x3Dx compares every backward-data kernel's twin and exported
// function with the float64 scatter reference, and its assembly with its
// twin.
func TestConv3x3Dx(t *testing.T) {
	requireAsm(t)
	for i := range Conv3x3DxKernels {
		k := &Conv3x3DxKernels[i]
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newDxCase(t, &k.Conv3x3DxShape)
			for _, rg := range dxImageRanges(k.N) {
				want, mag := c.reference(rg[0], rg[1])
				twin := c.run(k.Go, rg)
				c.check(t, "twin", twin, want, mag, rg[0], rg[1])
				c.check(t, "exported", c.run(k.Run, rg), want, mag, rg[0], rg[1])
				if asmRunnable {
					tw := make([]float64, len(twin))
					for j, v := range twin {
						tw[j] = float64(v)
					}
					c.check(t, "asm", c.run(k.Asm, rg), tw, mag, rg[0], rg[1])
				}
			}
		})
	}
}

// dxImageRanges is imageRanges by batch size.
func dxImageRanges(n int) [][2]int {
	if n <= 3 {
		return [][2]int{{0, n}}
	}
	return [][2]int{{0, 1}, {n - 1, n}}
}

// TestConv3x3DxSplit runs every small batch whole and image by image: dx
// must be bitwise equal.
func TestConv3x3DxSplit(t *testing.T) {
	for i := range Conv3x3DxKernels {
		k := &Conv3x3DxKernels[i]
		if k.N < 2 || k.N > 3 {
			continue
		}
		c := newDxCase(t, &k.Conv3x3DxShape)
		var parts [][2]int
		for n := range k.N {
			parts = append(parts, [2]int{n, n + 1})
		}
		whole, split := c.run(k.Run, [2]int{0, k.N}), c.run(k.Run, parts...)
		for j := range whole {
			if math.Float32bits(whole[j]) != math.Float32bits(split[j]) {
				t.Fatalf("%s: dx%s is %v whole, %v split", k.Name, c.index(j), whole[j], split[j])
			}
		}
	}
}

// dwCase is one backward-weights kernel's inputs in plain layouts (x
// [N][Cin][H][W], dy [N][Cout][OutH][OutW]) and in the kernel's, and the
// partial dw the kernel starts from, plain [Cout][Cin][3][3].
type dwCase struct {
	s                    *Conv3x3DwShape
	x, dy, scale, shift  []float32
	bx, bdy, init, binit []float32
}

// dwPartIndex is the index of weight (co, ci, k) in a partial dw,
// [Cout/8][Cin/8][3][3][8 co][8 ci].
func dwPartIndex(co, ci, k, cin int) int {
	return ((((co/8)*(cin/8)+ci/8)*9+k)*8+co%8)*8 + ci%8
}

// newDwCase draws inputs from a seed fixed by the kernel's name; the
// partial starts non-zero, so that a kernel that stores instead of
// adding fails. Scale and shift have both signs, so the prologue both
// rectifies and lifts.
func newDwCase(t testing.TB, s *Conv3x3DwShape) *dwCase {
	t.Helper()
	r := rand.New(rand.NewPCG(seedOf(s.Name), 1))
	c := &dwCase{
		s:     s,
		x:     uniform(r, s.XLen(), -1, 1),
		dy:    uniform(r, s.DyLen(), -1, 1),
		scale: uniform(r, s.Cin, -1, 2),
		shift: uniform(r, s.Cin, -0.5, 0.5),
		init:  uniform(r, s.DwLen(), -1, 1),
	}
	c.bx = make([]float32, len(c.x))
	c.bdy = make([]float32, len(c.dy))
	must(t, ToNCHW8c(c.bx, c.x, s.N, s.Cin, s.H, s.W))
	must(t, ToNCHW8c(c.bdy, c.dy, s.N, s.Cout, s.OutH, s.OutW))
	c.binit = make([]float32, len(c.init))
	for co := range s.Cout {
		for ci := range s.Cin {
			for k := range 9 {
				c.binit[dwPartIndex(co, ci, k, s.Cin)] = c.init[(co*s.Cin+ci)*9+k]
			}
		}
	}
	return c
}

// run calls f on each range in turn, adding into one partial that starts
// as part (copied), with the scratch preset to NaN, and returns the
// partial.
func (c *dwCase) run(f Conv3x3DwFunc, part []float32, ranges ...[2]int) []float32 {
	s := c.s
	dw := slices.Clone(part)
	scratch := make([]float32, s.ScratchLen())
	fill(scratch, float32(math.NaN()))
	scale, shift := c.scale, c.shift
	if s.Prologue != "affine_relu" {
		scale, shift = nil, nil
	}
	for _, rg := range ranges {
		f(c.bx, c.bdy, scale, shift, dw, scratch, rg[0], rg[1])
	}
	return dw
}

// reference computes init + conv2d_dw_fused over images [n0, n1) in
// float64 as the IR defines it, a = prologue(x) with max(v, 0) keeping
// NaN, zero outside x: dw[co,ci,kh,kw] = Σ dy[n,co,oh,ow] *
// a[n,ci,oh*s-1+kh,ow*s-1+kw]. It returns dw plain and the magnitudes
// |init| + Σ|dy·a|.
func (c *dwCase) reference(init []float32, n0, n1 int) (dw, mag []float64) {
	s := c.s
	dw, mag = make([]float64, s.DwLen()), make([]float64, s.DwLen())
	for i, v := range init {
		dw[i], mag[i] = float64(v), math.Abs(float64(v))
	}
	positive := func(v float64) float64 {
		if v <= 0 {
			return 0
		}
		return v
	}
	a := make([]float64, s.Cin*s.H*s.W)
	for n := n0; n < n1; n++ {
		for ci := range s.Cin {
			for p := range s.H * s.W {
				v := float64(c.x[(n*s.Cin+ci)*s.H*s.W+p])
				switch s.Prologue {
				case "relu":
					v = positive(v)
				case "affine_relu":
					v = positive(float64(c.scale[ci])*v + float64(c.shift[ci]))
				}
				a[ci*s.H*s.W+p] = v
			}
		}
		for co := range s.Cout {
			for ci := range s.Cin {
				for kh := range 3 {
					for kw := range 3 {
						var sum, m float64
						for oh := range s.OutH {
							h := oh*s.Stride - 1 + kh
							if h < 0 || h >= s.H {
								continue
							}
							for ow := range s.OutW {
								v := ow*s.Stride - 1 + kw
								if v < 0 || v >= s.W {
									continue
								}
								t := float64(c.dy[((n*s.Cout+co)*s.OutH+oh)*s.OutW+ow]) * a[(ci*s.H+h)*s.W+v]
								sum += t
								m += math.Abs(t)
							}
						}
						i := (co*s.Cin+ci)*9 + kh*3 + kw
						dw[i] += sum
						mag[i] += m
					}
				}
			}
		}
	}
	return dw, mag
}

// plain reads a partial dw back into the plain layout.
func (c *dwCase) plain(part []float32) []float32 {
	s := c.s
	p := make([]float32, len(part))
	for co := range s.Cout {
		for ci := range s.Cin {
			for k := range 9 {
				p[(co*s.Cin+ci)*9+k] = part[dwPartIndex(co, ci, k, s.Cin)]
			}
		}
	}
	return p
}

// index names element i of a plain dw.
func (c *dwCase) index(i int) string {
	return fmt.Sprintf("(co=%d ci=%d kh=%d kw=%d)", i/9/c.s.Cin, i/9%c.s.Cin, i%9/3, i%3)
}

// TestConv3x3Dw compares every backward-weights kernel's twin and exported
// function with the float64 reference, and its assembly with its twin,
// adding into a non-zero partial.
func TestConv3x3Dw(t *testing.T) {
	requireAsm(t)
	for i := range Conv3x3DwKernels {
		k := &Conv3x3DwKernels[i]
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newDwCase(t, &k.Conv3x3DwShape)
			for _, rg := range dxImageRanges(k.N) {
				want, mag := c.reference(c.init, rg[0], rg[1])
				twin := c.plain(c.run(k.Go, c.binit, rg))
				if msg := mismatch("twin dw", twin, want, mag, c.index); msg != "" {
					t.Error(msg)
				}
				if msg := mismatch("exported dw", c.plain(c.run(k.Run, c.binit, rg)), want, mag, c.index); msg != "" {
					t.Error(msg)
				}
				if asmRunnable {
					tw := make([]float64, len(twin))
					for j, v := range twin {
						tw[j] = float64(v)
					}
					if msg := mismatch("asm dw", c.plain(c.run(k.Asm, c.binit, rg)), tw, mag, c.index); msg != "" {
						t.Error(msg)
					}
				}
			}
		})
	}
}

// TestConv3x3DwWorkers splits every small batch as workers would: one
// call over all images equals calls image by image into the same partial,
// bitwise; one zeroed partial per worker, summed by SumConv3x3Dw in
// worker order, gives the reference, and the same bits every time.
func TestConv3x3DwWorkers(t *testing.T) {
	for i := range Conv3x3DwKernels {
		k := &Conv3x3DwKernels[i]
		if k.N < 2 || k.N > 3 {
			continue
		}
		c := newDwCase(t, &k.Conv3x3DwShape)
		var images [][2]int
		for n := range k.N {
			images = append(images, [2]int{n, n + 1})
		}
		whole, split := c.run(k.Run, c.binit, [2]int{0, k.N}), c.run(k.Run, c.binit, images...)
		for j := range whole {
			if math.Float32bits(whole[j]) != math.Float32bits(split[j]) {
				t.Fatalf("%s: partial[%d] is %v in one call, %v image by image", k.Name, j, whole[j], split[j])
			}
		}
		zero := make([]float32, k.DwLen())
		sum := func() []float32 {
			parts := [][]float32{c.run(k.Run, zero, [2]int{0, 1}), c.run(k.Run, zero, [2]int{1, k.N})}
			packed, plain := make([]float32, k.DwLen()), make([]float32, k.DwLen())
			must(t, SumConv3x3Dw(packed, parts, k.Cout, k.Cin))
			must(t, UnpackConv3x3Weights(plain, packed, k.Cout, k.Cin))
			return plain
		}
		got := sum()
		want, mag := c.reference(zero, 0, k.N)
		if msg := mismatch(k.Name+" summed dw", got, want, mag, c.index); msg != "" {
			t.Error(msg)
		}
		if again := sum(); !slices.Equal(got, again) {
			t.Errorf("%s: two runs of the same split summed to different bits", k.Name)
		}
	}
}

// TestConv3x3DwNaN puts a NaN into the input of every small kernel: it
// must reach exactly the weight gradients it touches, through every
// prologue (relu keeps NaN, as in the IR, so that a diverged step shows).
func TestConv3x3DwNaN(t *testing.T) {
	requireAsm(t)
	for i := range Conv3x3DwKernels {
		k := &Conv3x3DwKernels[i]
		if k.N > 3 || k.H*k.W < 4 {
			continue
		}
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newDwCase(t, &k.Conv3x3DwShape)
			c.x[len(c.x)/2] = float32(math.NaN())
			must(t, ToNCHW8c(c.bx, c.x, k.N, k.Cin, k.H, k.W))
			want, mag := c.reference(c.init, 0, k.N)
			nans := 0
			for _, v := range want {
				if math.IsNaN(v) {
					nans++
				}
			}
			if nans == 0 {
				t.Fatal("the reference has no NaN weight gradient")
			}
			impls := map[string]Conv3x3DwFunc{"twin": k.Go}
			if asmRunnable {
				impls["asm"] = k.Asm
			}
			for name, f := range impls {
				if msg := mismatch(name+" dw", c.plain(c.run(f, c.binit, [2]int{0, k.N})), want, mag, c.index); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

// TestPackConv3x3DxWeights walks the backward-data packing in storage
// order, [Cin/8][Cout/8][3][3][8 co][8 ci], and checks each element
// against the plain weight of the rotated tap it must hold.
func TestPackConv3x3DxWeights(t *testing.T) {
	for _, d := range [][2]int{{8, 8}, {16, 24}, {40, 8}} {
		cout, cin := d[0], d[1]
		src := make([]float32, cout*cin*9)
		for i := range src {
			src[i] = float32(i)
		}
		dst := make([]float32, len(src))
		must(t, PackConv3x3DxWeights(dst, src, cout, cin))
		at := 0
		for ib := range cin / 8 {
			for ob := range cout / 8 {
				for k := range 9 {
					kh, kw := 2-k/3, 2-k%3
					for co := range 8 {
						for ci := range 8 {
							if want := src[(((ob*8+co)*cin+ib*8+ci)*3+kh)*3+kw]; dst[at] != want {
								t.Fatalf("%dx%d: packed[%d] = %v, want w[%d][%d][%d][%d] = %v",
									cout, cin, at, dst[at], ob*8+co, ib*8+ci, kh, kw, want)
							}
							at++
						}
					}
				}
			}
		}
	}
	if err := PackConv3x3DxWeights(make([]float32, 72*8), make([]float32, 72*8), 8, 12); err == nil ||
		!strings.HasPrefix(err.Error(), "PackConv3x3DxWeights:") {
		t.Errorf("PackConv3x3DxWeights with 12 input channels: error %v", err)
	}
}

// TestSumConv3x3Dw walks the packed result in storage order,
// [Cout/8][Cin/8][3][3][8 ci][8 co], against partials [..][8 co][8 ci]
// whose float32 sum would lose the small terms: the sum must be taken in
// float64.
func TestSumConv3x3Dw(t *testing.T) {
	const cout, cin = 16, 24
	n := cout * cin * 9
	parts := [][]float32{make([]float32, n), make([]float32, n), make([]float32, n)}
	for i := range n {
		parts[0][i], parts[1][i], parts[2][i] = 1e8, float32(i), -1e8
	}
	dw := make([]float32, n)
	must(t, SumConv3x3Dw(dw, parts, cout, cin))
	at := 0
	for ob := range cout / 8 {
		for ib := range cin / 8 {
			for k := range 9 {
				for ci := range 8 {
					for co := range 8 {
						if want := float32((((ob*(cin/8)+ib)*9+k)*8+co)*8 + ci); dw[at] != want {
							t.Fatalf("dw[%d] = %v, want %v (the partials' element for co=%d ci=%d)", at, dw[at], want, ob*8+co, ib*8+ci)
						}
						at++
					}
				}
			}
		}
	}
	for name, err := range map[string]error{
		"no partials":   SumConv3x3Dw(dw, nil, cout, cin),
		"short partial": SumConv3x3Dw(dw, [][]float32{parts[0][:n-1]}, cout, cin),
		"bad channels":  SumConv3x3Dw(dw, parts, cout, 20),
	} {
		if err == nil || !strings.HasPrefix(err.Error(), "SumConv3x3Dw:") {
			t.Errorf("%s: error %v, want one naming SumConv3x3Dw", name, err)
		}
	}
}

// TestBwdCheckPanics checks that backward kernels called with arguments
// that do not fit their shapes panic with a BUG message naming them.
func TestBwdCheckPanics(t *testing.T) {
	call := func(f func()) (msg string) {
		defer func() {
			if r := recover(); r != nil {
				msg = fmt.Sprint(r)
			}
		}()
		f()
		return ""
	}
	dx := &Conv3x3DxKernels[len(Conv3x3DxKernels)-1]
	dxArgs := func() [][]float32 {
		return [][]float32{make([]float32, dx.DyLen()), make([]float32, dx.WLen()), make([]float32, dx.DxLen()), make([]float32, dx.ScratchLen())}
	}
	dw := &Conv3x3DwKernels[len(Conv3x3DwKernels)-1]
	dwArgs := func() [][]float32 {
		return [][]float32{make([]float32, dw.XLen()), make([]float32, dw.DyLen()), make([]float32, dw.Cin), make([]float32, dw.Cin),
			make([]float32, dw.DwLen()), make([]float32, dw.ScratchLen())}
	}
	for _, c := range []struct {
		name       string
		arg        int
		n0, n1     int
		want       string
		dx         bool
		kernelName string
	}{
		{"dx ok", -1, 0, dx.N, "", true, dx.Name},
		{"dx short dy", 0, 0, 1, "dy has length", true, dx.Name},
		{"dx short dx", 2, 0, 1, "dx has length", true, dx.Name},
		{"dx short scratch", 3, 0, 1, "scratch has length", true, dx.Name},
		{"dx range", -1, 0, dx.N + 1, "outside", true, dx.Name},
		{"dw ok", -1, 0, dw.N, "", false, dw.Name},
		{"dw short x", 0, 0, 1, "x has length", false, dw.Name},
		{"dw short dw", 4, 0, 1, "dw has length", false, dw.Name},
		{"dw short scratch", 5, 0, 1, "scratch has length", false, dw.Name},
		{"dw range", -1, 1, 0, "outside", false, dw.Name},
	} {
		var msg string
		if c.dx {
			a := dxArgs()
			if c.arg >= 0 {
				a[c.arg] = a[c.arg][:len(a[c.arg])-1]
			}
			msg = call(func() { dx.Run(a[0], a[1], a[2], a[3], c.n0, c.n1) })
		} else {
			a := dwArgs()
			if c.arg >= 0 {
				a[c.arg] = a[c.arg][:len(a[c.arg])-1]
			}
			msg = call(func() { dw.Run(a[0], a[1], a[2], a[3], a[4], a[5], c.n0, c.n1) })
		}
		if c.want == "" {
			if msg != "" {
				t.Errorf("%s: panicked on valid arguments: %s", c.name, msg)
			}
			continue
		}
		if !strings.HasPrefix(msg, "BUG: "+c.kernelName) || !strings.Contains(msg, c.want) {
			t.Errorf("%s: panic %q, want a BUG naming %s and %q", c.name, msg, c.kernelName, c.want)
		}
	}
}

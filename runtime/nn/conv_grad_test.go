package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// tconvDxRef is conv2d_dx in float64 as the op table defines it, a
// scatter of every dy into the inputs its window read (the kernel
// gathers), with the absolute sums of the terms.
func tconvDxRef(g tconvGeom, dy, w []float64) (dx, mag []float64) {
	HO, WO := g.ho(), g.wo()
	dx = make([]float64, g.n*g.cin*g.h*g.w)
	mag = make([]float64, len(dx))
	for n := range g.n {
		for o := range g.cout {
			for i := range HO {
				for j := range WO {
					d := dy[((n*g.cout+o)*HO+i)*WO+j]
					for c := range g.cin {
						for ki := range g.kh {
							for kj := range g.kw {
								h, v := i*g.stride+ki-g.pad, j*g.stride+kj-g.pad
								if h < 0 || h >= g.h || v < 0 || v >= g.w {
									continue
								}
								t := d * w[((o*g.cin+c)*g.kh+ki)*g.kw+kj]
								k := ((n*g.cin+c)*g.h+h)*g.w + v
								dx[k] += t
								mag[k] += math.Abs(t)
							}
						}
					}
				}
			}
		}
	}
	return dx, mag
}

// tconvDwRef is conv2d_dw of dy and a in float64, with the absolute sums
// of the terms.
func tconvDwRef(g tconvGeom, dy, a []float64) (dw, mag []float64) {
	HO, WO := g.ho(), g.wo()
	dw = make([]float64, g.cout*g.cin*g.kh*g.kw)
	mag = make([]float64, len(dw))
	for o := range g.cout {
		for c := range g.cin {
			for ki := range g.kh {
				for kj := range g.kw {
					var s, m float64
					for n := range g.n {
						for i := range HO {
							for j := range WO {
								h, v := i*g.stride+ki-g.pad, j*g.stride+kj-g.pad
								if h < 0 || h >= g.h || v < 0 || v >= g.w {
									continue
								}
								t := dy[((n*g.cout+o)*HO+i)*WO+j] * a[((n*g.cin+c)*g.h+h)*g.w+v]
								s += t
								m += math.Abs(t)
							}
						}
					}
					k := ((o*g.cin+c)*g.kh+ki)*g.kw + kj
					dw[k], mag[k] = s, m
				}
			}
		}
	}
	return dw, mag
}

// tconvParams is the ConvParams of g with the given layouts.
func tconvParams(g tconvGeom, xb, yb bool) ConvParams {
	return ConvParams{
		X: Act{N: g.n, C: g.cin, H: g.h, W: g.w, Blocked: xb}, Y: Act{N: g.n, C: g.cout, H: g.ho(), W: g.wo(), Blocked: yb},
		KH: g.kh, KW: g.kw, Stride: g.stride, Pad: g.pad,
	}
}

// tconvNaN returns n NaNs, so that an element a kernel does not write
// shows.
func tconvNaN(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	return s
}

// TestConv2DDx checks Conv2DDx against the reference for every geometry
// and layout pair, including dx positions no window reaches (zero).
func TestConv2DDx(t *testing.T) {
	for gi, g := range tconvGeoms {
		r := rand.New(rand.NewPCG(uint64(gi), 11))
		dy := tconvRand(r, g.n*g.cout*g.ho()*g.wo(), -1, 1)
		w := tconvRand(r, g.cout*g.cin*g.kh*g.kw, -1, 1)
		want, mag := tconvDxRef(g, dy, w)
		for _, xb := range tconvLayouts(g.cin) {
			for _, yb := range tconvLayouts(g.cout) {
				p := tconvParams(g, xb, yb)
				floats, wide := ConvDxScratch(p)
				c := tconvCtx(t, 2+gi%2, floats, wide)
				dx := tconvNaN(p.X.Len())
				Conv2DDx(c, dx, tconvStore(dy, g.n, g.cout, g.ho(), g.wo(), yb), tconvStore(w, 1, 1, 1, len(w), false), p)
				tconvCompare(t, fmt.Sprintf("%v/dx%v_dy%v dx", g, xb, yb), tconvLoad(dx, g.n, g.cin, g.h, g.w, xb), want, mag)
			}
		}
	}
}

// TestConv2DDw checks Conv2DDw and Conv2DDwFused (every prologue) against
// the reference for every geometry and layout pair.
func TestConv2DDw(t *testing.T) {
	for gi, g := range tconvGeoms {
		r := rand.New(rand.NewPCG(uint64(gi), 13))
		dy := tconvRand(r, g.n*g.cout*g.ho()*g.wo(), -1, 1)
		x := tconvRand(r, g.n*g.cin*g.h*g.w, -1, 1)
		scale, shift := tconvRand(r, g.cin, 0.5, 1.5), tconvRand(r, g.cin, -0.5, 0.5)
		for _, pro := range []Prologue{PrologueNone, PrologueReLU, PrologueAffineReLU} {
			want, mag := tconvDwRef(g, dy, tconvPrologue(pro, x, g.cin, g.h*g.w, scale, shift))
			for _, xb := range tconvLayouts(g.cin) {
				for _, yb := range tconvLayouts(g.cout) {
					p := tconvParams(g, xb, yb)
					p.Prologue = pro
					floats, wide := ConvDwScratch(p)
					c := tconvCtx(t, 2+gi%2, floats, wide)
					dw := tconvNaN(len(want))
					dys, xs := tconvStore(dy, g.n, g.cout, g.ho(), g.wo(), yb), tconvStore(x, g.n, g.cin, g.h, g.w, xb)
					var sc, sh []float32
					if pro == PrologueAffineReLU {
						sc, sh = tconvStore(scale, 1, 1, 1, g.cin, false), tconvStore(shift, 1, 1, 1, g.cin, false)
					}
					name := fmt.Sprintf("%v/x%v_dy%v/%d dw", g, xb, yb, pro)
					Conv2DDwFused(c, dw, dys, xs, sc, sh, p)
					tconvCompare(t, name, tconvLoad(dw, 1, 1, 1, len(dw), false), want, mag)
					if pro == PrologueNone {
						dw2 := tconvNaN(len(want))
						Conv2DDw(c, dw2, dys, xs, p)
						tconvCompare(t, name+" (Conv2DDw)", tconvLoad(dw2, 1, 1, 1, len(dw2), false), want, mag)
					}
				}
			}
		}
	}
}

// TestConvGradDeterminism checks that repeated calls with two workers
// give the same bits, and that the weight gradient sums long rows (past
// the float32 flush) accurately.
func TestConvGradDeterminism(t *testing.T) {
	g := tconvGeom{n: 5, cin: 8, h: 20, w: 17, cout: 16, kh: 3, kw: 3, stride: 1, pad: 1}
	r := rand.New(rand.NewPCG(5, 5))
	dy := tconvRand(r, g.n*g.cout*g.ho()*g.wo(), -1, 1)
	x := tconvRand(r, g.n*g.cin*g.h*g.w, -1, 1)
	w := tconvRand(r, g.cout*g.cin*9, -1, 1)
	p := tconvParams(g, true, true)
	p.Prologue = PrologueReLU
	f1, w1 := ConvDwScratch(p)
	f2, w2 := ConvDxScratch(p)
	c := tconvCtx(t, 2, max(f1, f2), max(w1, w2))
	dys, xs, ws := tconvStore(dy, g.n, g.cout, g.ho(), g.wo(), true), tconvStore(x, g.n, g.cin, g.h, g.w, true), tconvStore(w, 1, 1, 1, len(w), false)
	var first, firstDx []float32
	for rep := 0; rep < 3; rep++ {
		dw, dx := tconvNaN(len(w)), tconvNaN(len(x))
		Conv2DDwFused(c, dw, dys, xs, nil, nil, p)
		Conv2DDx(c, dx, dys, ws, p)
		if rep == 0 {
			first, firstDx = dw, dx
			want, mag := tconvDwRef(g, dy, tconvPrologue(PrologueReLU, x, g.cin, g.h*g.w, nil, nil))
			tconvCompare(t, "dw", tconvLoad(dw, 1, 1, 1, len(dw), false), want, mag)
			continue
		}
		for i := range dw {
			if math.Float32bits(dw[i]) != math.Float32bits(first[i]) {
				t.Fatalf("call %d: dw[%d] = %v, first call gave %v", rep, i, dw[i], first[i])
			}
		}
		for i := range dx {
			if math.Float32bits(dx[i]) != math.Float32bits(firstDx[i]) {
				t.Fatalf("call %d: dx[%d] = %v, first call gave %v", rep, i, dx[i], firstDx[i])
			}
		}
	}
}

// TestConvGradAllocs checks that the gradient kernels allocate nothing
// after the first call with two workers.
func TestConvGradAllocs(t *testing.T) {
	g := tconvGeoms[1]
	p := tconvParams(g, true, true)
	p.Prologue = PrologueAffineReLU
	f1, w1 := ConvDwScratch(p)
	f2, w2 := ConvDxScratch(p)
	c := tconvCtx(t, 2, max(f1, f2), max(w1, w2))
	dy, x := make([]float32, p.Y.Len()), make([]float32, p.X.Len())
	w, dw := make([]float32, g.cout*g.cin*g.kh*g.kw), make([]float32, g.cout*g.cin*g.kh*g.kw)
	sc, sh := make([]float32, g.cin), make([]float32, g.cin)
	q := p
	q.Prologue = PrologueNone
	for _, k := range []struct {
		name string
		run  func()
	}{
		{"Conv2DDx", func() { Conv2DDx(c, x, dy, w, q) }},
		{"Conv2DDw", func() { Conv2DDw(c, dw, dy, x, q) }},
		{"Conv2DDwFused", func() { Conv2DDwFused(c, dw, dy, x, sc, sh, p) }},
	} {
		k.run()
		if a := testing.AllocsPerRun(10, k.run); a != 0 {
			t.Errorf("%s allocates %v times per call", k.name, a)
		}
	}
}

package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestGAP(t *testing.T) {
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(40, uint64(a.Len())))
		x := random(r, a.Len(), -2, 2)
		hw := a.H * a.W
		want := make([]float64, a.N*a.C)
		for li, v := range x {
			want[li/hw] += v / float64(hw)
		}
		y := make([]float32, a.N*a.C)
		GAP(c, y, pack(a, x), a)
		checkClose(t, "GAP", f64s(y), want)

		dy := random(r, a.N*a.C, -2, 2)
		dx := make([]float32, a.Len())
		GAPGrad(c, dx, f32s(dy), a)
		checkAct(t, "GAPGrad", a, dx, refMap(func(li int) float64 { return dy[li/hw] / float64(hw) }, a.Len()))
	})
}

// linearShapes are [batch, in] inputs to [batch, out] outputs, the last
// large enough to be split over the workers.
var linearShapes = []struct{ batch, in, out int }{{1, 1, 1}, {5, 7, 3}, {16, 64, 20}}

func TestLinear(t *testing.T) {
	for _, threads := range testThreads {
		c := newTestCtx(t, threads, testWide)
		for _, s := range linearShapes {
			r := rand.New(rand.NewPCG(41, uint64(s.batch*s.in*s.out)))
			x, w, b := random(r, s.batch*s.in, -1, 1), random(r, s.out*s.in, -1, 1), random(r, s.out, -1, 1)
			dy := random(r, s.batch*s.out, -1, 1)
			wantY, wantDx, wantDw := make([]float64, s.batch*s.out), make([]float64, s.batch*s.in), make([]float64, s.out*s.in)
			for n := range s.batch {
				for k := range s.out {
					wantY[n*s.out+k] = b[k]
					for i := range s.in {
						wantY[n*s.out+k] += x[n*s.in+i] * w[k*s.in+i]
						wantDx[n*s.in+i] += dy[n*s.out+k] * w[k*s.in+i]
						wantDw[k*s.in+i] += dy[n*s.out+k] * x[n*s.in+i]
					}
				}
			}
			y, dx, dw := make([]float32, len(wantY)), make([]float32, len(wantDx)), make([]float32, len(wantDw))
			Linear(c, y, f32s(x), f32s(w), f32s(b), s.batch, s.in, s.out)
			LinearDx(c, dx, f32s(dy), f32s(w), s.batch, s.in, s.out)
			LinearDw(c, dw, f32s(dy), f32s(x), s.batch, s.in, s.out)
			checkClose(t, "Linear", f64s(y), wantY)
			checkClose(t, "LinearDx", f64s(dx), wantDx)
			checkClose(t, "LinearDw", f64s(dw), wantDw)
		}
	}
}

func TestSoftmaxCE(t *testing.T) {
	for _, threads := range testThreads {
		c := newTestCtx(t, threads, 1)
		for _, s := range []struct{ batch, classes int }{{1, 1}, {6, 5}, {64, 40}} {
			r := rand.New(rand.NewPCG(42, uint64(s.batch*s.classes)))
			z := random(r, s.batch*s.classes, -4, 4)
			z[0] = 80 // large logits must not overflow
			labels := make([]int32, s.batch)
			for n := range labels {
				labels[n] = int32(r.IntN(s.classes))
			}
			const scale = 0.5
			loss := 0.0
			wantDz := make([]float64, len(z))
			for n := range s.batch {
				row := z[n*s.classes : (n+1)*s.classes]
				m := row[0]
				for _, v := range row {
					m = math.Max(m, v)
				}
				den := 0.0
				for _, v := range row {
					den += math.Exp(v - m)
				}
				loss += m + math.Log(den) - row[labels[n]]
				for k, v := range row {
					p := math.Exp(v-m) / den
					if k == int(labels[n]) {
						p--
					}
					wantDz[n*s.classes+k] = scale * p / float64(s.batch)
				}
			}
			got := []float32{0}
			SoftmaxCE(c, got, f32s(z), labels, s.batch, s.classes)
			checkClose(t, "loss", f64s(got), []float64{loss / float64(s.batch)})
			dz := make([]float32, len(z))
			SoftmaxCEGrad(c, dz, f32s(z), labels, s.batch, s.classes, scale)
			checkClose(t, "dz", f64s(dz), wantDz)
		}
	}
}

// TestDenseDeterministic runs the kernels that reduce twice with two
// workers and exactly their documented wide scratch.
func TestDenseDeterministic(t *testing.T) {
	const batch, in, out = 16, 64, 20
	r := rand.New(rand.NewPCG(43, 0))
	x, w, dy := f32s(random(r, batch*in, -1, 1)), f32s(random(r, out*in, -1, 1)), f32s(random(r, batch*out, -1, 1))
	labels := make([]int32, 128)
	for n := range labels {
		labels[n] = int32(r.IntN(out))
	}
	z := f32s(random(r, len(labels)*out, -3, 3))
	for _, k := range []struct {
		name string
		wide int
		run  func(c *Ctx) []float32
	}{
		{"LinearDx", in, func(c *Ctx) []float32 {
			dx := make([]float32, batch*in)
			LinearDx(c, dx, dy, w, batch, in, out)
			return dx
		}},
		{"LinearDw", in, func(c *Ctx) []float32 {
			dw := make([]float32, out*in)
			LinearDw(c, dw, dy, x, batch, in, out)
			return dw
		}},
		{"SoftmaxCE", 1, func(c *Ctx) []float32 {
			l := []float32{0}
			SoftmaxCE(c, l, z, labels, len(labels), out)
			return l
		}},
	} {
		c := newTestCtx(t, 2, k.wide)
		if !same(k.run(c), k.run(c)) {
			t.Errorf("%s: two runs differ", k.name)
		}
	}
}

func TestDenseAllocs(t *testing.T) {
	a := Act{N: 3, C: 16, H: 20, W: 20, Blocked: true}
	c := newTestCtx(t, 2, 64)
	x, y := make([]float32, a.Len()), make([]float32, a.N*a.C)
	const batch, in, out = 16, 64, 20
	lx, lw, lb, ly := make([]float32, batch*in), make([]float32, out*in), make([]float32, out), make([]float32, batch*out)
	labels := make([]int32, batch)
	loss := []float32{0}
	checkAllocs(t, map[string]func(){
		"GAP":           func() { GAP(c, y, x, a) },
		"GAPGrad":       func() { GAPGrad(c, x, y, a) },
		"Linear":        func() { Linear(c, ly, lx, lw, lb, batch, in, out) },
		"LinearDx":      func() { LinearDx(c, lx, ly, lw, batch, in, out) },
		"LinearDw":      func() { LinearDw(c, lw, ly, lx, batch, in, out) },
		"SoftmaxCE":     func() { SoftmaxCE(c, loss, ly, labels, batch, out) },
		"SoftmaxCEGrad": func() { SoftmaxCEGrad(c, ly, ly, labels, batch, out, 1) },
	})
}

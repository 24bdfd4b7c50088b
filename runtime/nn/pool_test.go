package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// at is logical element (n, c, h, w) of v, logical NCHW of shape a.
func at(a Act, v []float64, n, c, h, w int) float64 { return v[((n*a.C+c)*a.H+h)*a.W+w] }

// layouts returns a in each layout it can have.
func layouts(a Act) []Act {
	p := a
	p.Blocked = false
	if a.C%8 != 0 {
		return []Act{p}
	}
	b := p
	b.Blocked = true
	return []Act{p, b}
}

func TestSubsamplePad(t *testing.T) {
	for _, threads := range testThreads {
		c := newTestCtx(t, threads, 0)
		for _, s := range []struct {
			x      Act
			co, st int
		}{
			{Act{N: 2, C: 8, H: 7, W: 5}, 16, 2},
			{Act{N: 2, C: 4, H: 6, W: 6}, 8, 2},
			{Act{N: 1, C: 8, H: 3, W: 3}, 8, 1},
			{Act{N: 4, C: 16, H: 32, W: 32}, 32, 2},
		} {
			y := Act{N: s.x.N, C: s.co, H: (s.x.H-1)/s.st + 1, W: (s.x.W-1)/s.st + 1}
			r := rand.New(rand.NewPCG(50, uint64(s.x.Len())))
			x, dy := random(r, s.x.Len(), -1, 1), random(r, y.Len(), -1, 1)
			wantY, wantDx := make([]float64, y.Len()), make([]float64, s.x.Len())
			for n := range y.N {
				for ch := range s.x.C {
					for i := range y.H {
						for j := range y.W {
							wantY[((n*y.C+ch)*y.H+i)*y.W+j] = at(s.x, x, n, ch, i*s.st, j*s.st)
							wantDx[((n*s.x.C+ch)*s.x.H+i*s.st)*s.x.W+j*s.st] = at(y, dy, n, ch, i, j)
						}
					}
				}
			}
			for _, xa := range layouts(s.x) {
				for _, ya := range layouts(y) {
					t.Run(fmt.Sprintf("%+v->%+v,threads=%d", xa, ya, threads), func(t *testing.T) {
						got := make([]float32, y.Len())
						for i := range got {
							got[i] = 9 // the padded channels must be written
						}
						SubsamplePad(c, got, pack(xa, x), ya, xa, s.st)
						checkAct(t, "y", ya, got, wantY)
						dx := make([]float32, s.x.Len())
						for i := range dx {
							dx[i] = 9 // the skipped pixels must be written
						}
						SubsamplePadGrad(c, dx, pack(ya, dy), xa, ya, s.st)
						checkAct(t, "dx", xa, dx, wantDx)
					})
				}
			}
		}
	}
}

// refMaxPool returns max pooling of x (logical, shape xa) and its
// gradient for dy, from the definition: padding never wins, the first
// maximum of a window in row-major order takes the gradient.
func refMaxPool(xa, ya Act, x, dy []float64, k, s, p int) (y, dx []float64) {
	y, dx = make([]float64, ya.Len()), make([]float64, xa.Len())
	for n := range ya.N {
		for ch := range ya.C {
			for i := range ya.H {
				for j := range ya.W {
					best, arg := math.Inf(-1), -1
					for ki := range k {
						for kj := range k {
							h, w := i*s+ki-p, j*s+kj-p
							if h < 0 || h >= xa.H || w < 0 || w >= xa.W {
								continue
							}
							li := ((n*xa.C+ch)*xa.H+h)*xa.W + w
							if arg < 0 || x[li] > best {
								best, arg = x[li], li
							}
						}
					}
					oi := ((n*ya.C+ch)*ya.H+i)*ya.W + j
					y[oi] = best
					dx[arg] += dy[oi]
				}
			}
		}
	}
	return y, dx
}

func TestMaxPool(t *testing.T) {
	for _, threads := range testThreads {
		for _, s := range []struct {
			x        Act
			k, st, p int
		}{
			{Act{N: 2, C: 8, H: 7, W: 6}, 3, 2, 1},
			{Act{N: 1, C: 3, H: 6, W: 6}, 2, 2, 0},
			{Act{N: 2, C: 8, H: 5, W: 5}, 3, 1, 0},
			{Act{N: 2, C: 16, H: 33, W: 33}, 3, 2, 1},
		} {
			c := newTestCtx(t, threads, s.x.H*s.x.W)
			y := Act{N: s.x.N, C: s.x.C, H: (s.x.H+2*s.p-s.k)/s.st + 1, W: (s.x.W+2*s.p-s.k)/s.st + 1}
			r := rand.New(rand.NewPCG(51, uint64(s.x.Len())))
			// Values on a coarse grid, so that windows hold ties.
			x := refMap(func(int) float64 { return float64(r.IntN(9)-4) / 4 }, s.x.Len())
			dy := random(r, y.Len(), -1, 1)
			wantY, wantDx := refMaxPool(s.x, y, x, dy, s.k, s.st, s.p)
			for _, xa := range layouts(s.x) {
				for _, ya := range layouts(y) {
					t.Run(fmt.Sprintf("%+v->%+v,threads=%d", xa, ya, threads), func(t *testing.T) {
						got := make([]float32, y.Len())
						MaxPool(c, got, pack(xa, x), ya, xa, s.k, s.st, s.p)
						checkAct(t, "y", ya, got, wantY)
						for _, dxa := range layouts(s.x) {
							dx := make([]float32, s.x.Len())
							for i := range dx {
								dx[i] = 9
							}
							MaxPoolGrad(c, dx, pack(ya, dy), pack(xa, x), dxa, ya, xa, s.k, s.st, s.p)
							checkAct(t, "dx", dxa, dx, wantDx)
						}
					})
				}
			}
		}
	}
}

// TestPoolDeterministic runs MaxPoolGrad twice with two workers and
// exactly its documented scratch (H*W of x).
func TestPoolDeterministic(t *testing.T) {
	xa := Act{N: 2, C: 16, H: 33, W: 33, Blocked: true}
	ya := Act{N: 2, C: 16, H: 17, W: 17, Blocked: true}
	c := newTestCtx(t, 2, xa.H*xa.W)
	r := rand.New(rand.NewPCG(52, 0))
	x, dy := f32s(random(r, xa.Len(), -1, 1)), f32s(random(r, ya.Len(), -1, 1))
	d1, d2 := make([]float32, xa.Len()), make([]float32, xa.Len())
	MaxPoolGrad(c, d1, dy, x, xa, ya, xa, 3, 2, 1)
	MaxPoolGrad(c, d2, dy, x, xa, ya, xa, 3, 2, 1)
	if !same(d1, d2) {
		t.Error("MaxPoolGrad: two runs differ")
	}
}

func TestPoolAllocs(t *testing.T) {
	xa := Act{N: 2, C: 16, H: 33, W: 33, Blocked: true}
	ya := Act{N: 2, C: 16, H: 17, W: 17, Blocked: true}
	sa := Act{N: 2, C: 32, H: 17, W: 17, Blocked: true}
	c := newTestCtx(t, 2, xa.H*xa.W)
	x, dx, y, s := make([]float32, xa.Len()), make([]float32, xa.Len()), make([]float32, ya.Len()), make([]float32, sa.Len())
	checkAllocs(t, map[string]func(){
		"MaxPool":          func() { MaxPool(c, y, x, ya, xa, 3, 2, 1) },
		"MaxPoolGrad":      func() { MaxPoolGrad(c, dx, y, x, xa, ya, xa, 3, 2, 1) },
		"SubsamplePad":     func() { SubsamplePad(c, s, x, sa, xa, 2) },
		"SubsamplePadGrad": func() { SubsamplePadGrad(c, dx, s, xa, sa, 2) },
	})
}

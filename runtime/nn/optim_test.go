package nn

import (
	"math/rand/v2"
	"testing"
)

func TestSGD(t *testing.T) {
	for _, threads := range testThreads {
		c := newTestCtx(t, threads, 0)
		for _, n := range []int{1, 37, 20000} {
			r := rand.New(rand.NewPCG(30, uint64(n)))
			w, g, mom := random(r, n, -1, 1), random(r, n, -1, 1), random(r, n, -1, 1)
			const mu, decay, lr = 0.9, 1e-4, 0.1
			lr32 := float64(float32(lr))
			wantMom := refMap(func(i int) float64 { return mu*mom[i] + g[i] + decay*w[i] }, n)
			wantW := refMap(func(i int) float64 { return w[i] - lr32*wantMom[i] }, n)
			wOut, momOut := make([]float32, n), make([]float32, n)
			SGD(c, wOut, momOut, f32s(w), f32s(g), f32s(mom), []float32{lr}, n, mu, decay)
			checkClose(t, "w'", f64s(wOut), wantW)
			checkClose(t, "mom'", f64s(momOut), wantMom)
			// In place, as the memory plan runs it: into w and mom.
			pw, pm := f32s(w), f32s(mom)
			SGD(c, pw, pm, pw, f32s(g), pm, []float32{lr}, n, mu, decay)
			if !same(pw, wOut) || !same(pm, momOut) {
				t.Errorf("n=%d: SGD in place differs", n)
			}
		}
	}
}

func TestEMA(t *testing.T) {
	c := newTestCtx(t, 1, 0)
	r := rand.New(rand.NewPCG(31, 0))
	const n, m, s = 9, 0.1, 1.25
	run, stat := random(r, n, -1, 1), random(r, n, 0, 2)
	want := refMap(func(i int) float64 { return (1-m)*run[i] + m*s*stat[i] }, n)
	y := make([]float32, n)
	EMA(c, y, f32s(run), f32s(stat), n, m, s)
	checkClose(t, "EMA", f64s(y), want)
	p := f32s(run)
	EMA(c, p, p, f32s(stat), n, m, s)
	if !same(p, y) {
		t.Error("EMA in place differs")
	}
}

func TestOptimAllocs(t *testing.T) {
	c := newTestCtx(t, 2, 0)
	const n = 1 << 16
	w, g, m := make([]float32, n), make([]float32, n), make([]float32, n)
	lr := []float32{0.1}
	checkAllocs(t, map[string]func(){
		"SGD": func() { SGD(c, w, m, w, g, m, lr, n, 0.9, 1e-4) },
		"EMA": func() { EMA(c, w[:16], w[:16], g[:16], 16, 0.1, 1) },
	})
}

package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// chanOf is the channel of logical index li in a.
func chanOf(a Act, li int) int { return li / (a.H * a.W) % a.C }

// refChanSums returns Σ f(li) per channel, over logical indices.
func refChanSums(a Act, f func(li int) float64) []float64 {
	s := make([]float64, a.C)
	for li := range a.Len() {
		s[chanOf(a, li)] += f(li)
	}
	return s
}

// bnInputs are random per-channel BatchNorm vectors: mean, var > 0,
// gamma, beta.
func bnInputs(r *rand.Rand, C int) (mean, variance, gamma, beta []float64) {
	return random(r, C, -1, 1), random(r, C, 0.1, 2), random(r, C, 0.5, 1.5), random(r, C, -1, 1)
}

func TestBNStatsChanSum(t *testing.T) {
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(10, uint64(a.Len())))
		x := random(r, a.Len(), 2, 4) // a large mean: the variance must not cancel
		m := float64(a.N * a.H * a.W)
		sum := refChanSums(a, func(li int) float64 { return x[li] })
		mean := refMap(func(ch int) float64 { return sum[ch] / m }, a.C)
		variance := refChanSums(a, func(li int) float64 {
			d := x[li] - mean[chanOf(a, li)]
			return d * d / m
		})
		gm, gv, gs := make([]float32, a.C), make([]float32, a.C), make([]float32, a.C)
		BNStats(c, gm, gv, pack(a, x), a)
		checkClose(t, "mean", f64s(gm), mean)
		checkClose(t, "var", f64s(gv), variance)
		ChanSum(c, gs, pack(a, x), a)
		checkClose(t, "ChanSum", f64s(gs), sum)
	})
}

func TestBNNorm(t *testing.T) {
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(11, uint64(a.Len())))
		x := random(r, a.Len(), -3, 3)
		mean, variance, gamma, beta := bnInputs(r, a.C)
		const eps = 1e-3
		want := refMap(func(li int) float64 {
			ch := chanOf(a, li)
			return gamma[ch]*(x[li]-mean[ch])/math.Sqrt(variance[ch]+eps) + beta[ch]
		}, a.Len())
		y := make([]float32, a.Len())
		args := [][]float32{f32s(mean), f32s(variance), f32s(gamma), f32s(beta)}
		BNNorm(c, y, pack(a, x), args[0], args[1], args[2], args[3], a, eps)
		checkAct(t, "BNNorm", a, y, want)
		px := pack(a, x)
		BNNorm(c, px, px, args[0], args[1], args[2], args[3], a, eps)
		if !same(px, y) {
			t.Error("BNNorm in place differs")
		}
	})
}

func TestBNNormGrad(t *testing.T) {
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(12, uint64(a.Len())))
		dy, x := random(r, a.Len(), -1, 1), random(r, a.Len(), -3, 3)
		mean, variance, gamma, _ := bnInputs(r, a.C)
		const eps = 1e-5
		inv := refMap(func(ch int) float64 { return 1 / math.Sqrt(variance[ch]+eps) }, a.C)
		sdy := refChanSums(a, func(li int) float64 { return dy[li] })
		sdyx := refChanSums(a, func(li int) float64 { return dy[li] * (x[li] - mean[chanOf(a, li)]) })
		wantDx := refMap(func(li int) float64 { ch := chanOf(a, li); return dy[li] * gamma[ch] * inv[ch] }, a.Len())
		wantDmean := refMap(func(ch int) float64 { return -sdy[ch] * gamma[ch] * inv[ch] }, a.C)
		wantDvar := refMap(func(ch int) float64 {
			return sdyx[ch] * gamma[ch] * -0.5 * math.Pow(variance[ch]+eps, -1.5)
		}, a.C)
		wantDgamma := refMap(func(ch int) float64 { return sdyx[ch] * inv[ch] }, a.C)
		dx := make([]float32, a.Len())
		vs := [4][]float32{make([]float32, a.C), make([]float32, a.C), make([]float32, a.C), make([]float32, a.C)}
		BNNormGrad(c, dx, vs[0], vs[1], vs[2], vs[3], pack(a, dy), pack(a, x), f32s(mean), f32s(variance), f32s(gamma), a, eps)
		checkAct(t, "dx", a, dx, wantDx)
		checkClose(t, "dmean", f64s(vs[0]), wantDmean)
		checkClose(t, "dvar", f64s(vs[1]), wantDvar)
		checkClose(t, "dgamma", f64s(vs[2]), wantDgamma)
		checkClose(t, "dbeta", f64s(vs[3]), sdy)
	})
}

func TestBNStatsGrad(t *testing.T) {
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(13, uint64(a.Len())))
		x := random(r, a.Len(), -3, 3)
		dmean, dvar, mean := random(r, a.C, -1, 1), random(r, a.C, -1, 1), random(r, a.C, -1, 1)
		m := float64(a.N * a.H * a.W)
		want := refMap(func(li int) float64 {
			ch := chanOf(a, li)
			return dmean[ch]/m + 2*dvar[ch]*(x[li]-mean[ch])/m
		}, a.Len())
		dx := make([]float32, a.Len())
		BNStatsGrad(c, dx, f32s(dmean), f32s(dvar), pack(a, x), f32s(mean), a)
		checkAct(t, "BNStatsGrad", a, dx, want)

		acc := random(r, a.Len(), -2, 2)
		wantAdd := refMap(func(li int) float64 { return want[li] + acc[li] }, a.Len())
		BNStatsGradAdd(c, dx, f32s(dmean), f32s(dvar), pack(a, x), f32s(mean), pack(a, acc), a)
		checkAct(t, "BNStatsGradAdd", a, dx, wantAdd)
		// In place: the result overwrites the gradient it adds to.
		dx = pack(a, acc)
		BNStatsGradAdd(c, dx, f32s(dmean), f32s(dvar), pack(a, x), f32s(mean), dx, a)
		checkAct(t, "BNStatsGradAdd in place", a, dx, wantAdd)

		// BNStatsGradPart image by image, with the batch's count.
		img := a
		img.N = 1
		size := img.Len()
		for _, add := range []bool{false, true} {
			px, pacc := pack(a, x), pack(a, acc)
			dx := make([]float32, a.Len())
			for n := range a.N {
				at := func(v []float32) []float32 { return v[n*size : (n+1)*size] }
				var acc []float32
				if add {
					acc = at(pacc)
				}
				BNStatsGradPart(at(dx), f32s(dmean), f32s(dvar), at(px), f32s(mean), acc, img, a.N*a.H*a.W)
			}
			w := want
			if add {
				w = wantAdd
			}
			checkAct(t, fmt.Sprintf("BNStatsGradPart (acc %v)", add), a, dx, w)
		}
	})
}

func TestAffineReLU(t *testing.T) {
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(14, uint64(a.Len())))
		x, da := random(r, a.Len(), -3, 3), random(r, a.Len(), -1, 1)
		scale, shift := random(r, a.C, -2, 2), random(r, a.C, -1, 1)
		on := func(li int) bool { ch := chanOf(a, li); return scale[ch]*x[li]+shift[ch] > 0 }
		want := refMap(func(li int) float64 {
			ch := chanOf(a, li)
			return math.Max(scale[ch]*x[li]+shift[ch], 0)
		}, a.Len())
		y := make([]float32, a.Len())
		AffineReLU(c, y, pack(a, x), f32s(scale), f32s(shift), a)
		checkAct(t, "AffineReLU", a, y, want)
		px := pack(a, x)
		AffineReLU(c, px, px, f32s(scale), f32s(shift), a)
		if !same(px, y) {
			t.Error("AffineReLU in place differs")
		}

		wantDx := refMap(func(li int) float64 {
			if on(li) {
				return da[li] * scale[chanOf(a, li)]
			}
			return 0
		}, a.Len())
		wantDs := refChanSums(a, func(li int) float64 {
			if on(li) {
				return da[li] * x[li]
			}
			return 0
		})
		wantDb := refChanSums(a, func(li int) float64 {
			if on(li) {
				return da[li]
			}
			return 0
		})
		dx, ds, db := make([]float32, a.Len()), make([]float32, a.C), make([]float32, a.C)
		for i := range dx {
			dx[i] = float32(math.NaN()) // every element must be written
		}
		AffineReLUGrad(c, dx, ds, db, pack(a, da), pack(a, x), f32s(scale), f32s(shift), a)
		checkAct(t, "dx", a, dx, wantDx)
		checkClose(t, "dscale", f64s(ds), wantDs)
		checkClose(t, "dshift", f64s(db), wantDb)

		// AffineReLUGradAdd, into a separate dx and in place into acc.
		acc := random(r, a.Len(), -2, 2)
		wantAdd := refMap(func(li int) float64 { return wantDx[li] + acc[li] }, a.Len())
		for _, inPlace := range []bool{false, true} {
			pacc := pack(a, acc)
			dx := make([]float32, a.Len())
			if inPlace {
				dx = pacc
			}
			clear(ds)
			clear(db)
			AffineReLUGradAdd(c, dx, ds, db, pack(a, da), pack(a, x), f32s(scale), f32s(shift), pacc, a)
			checkAct(t, fmt.Sprintf("AffineReLUGradAdd dx (in place %v)", inPlace), a, dx, wantAdd)
			checkClose(t, "AffineReLUGradAdd dscale", f64s(ds), wantDs)
			checkClose(t, "AffineReLUGradAdd dshift", f64s(db), wantDb)
		}

		// AffineReLUGradPart, image by image as a convolution's epilogue
		// runs it, with and without acc, into one part.
		img := a
		img.N = 1
		size := img.Len()
		for _, add := range []bool{false, true} {
			pda, px, pacc := pack(a, da), pack(a, x), pack(a, acc)
			dx := make([]float32, a.Len())
			part := make([]float64, 2*a.C)
			for n := range a.N {
				at := func(v []float32) []float32 { return v[n*size : (n+1)*size] }
				var acc []float32
				if add {
					acc = at(pacc)
				}
				AffineReLUGradPart(at(dx), at(pda), at(px), f32s(scale), f32s(shift), acc, part, img)
			}
			want := wantDx
			if add {
				want = wantAdd
			}
			checkAct(t, fmt.Sprintf("AffineReLUGradPart dx (acc %v)", add), a, dx, want)
			checkClose(t, "AffineReLUGradPart dscale", part[:a.C], wantDs)
			checkClose(t, "AffineReLUGradPart dshift", part[a.C:], wantDb)
		}
	})
}

func TestStatsGrad(t *testing.T) {
	forShapes(t, func(t *testing.T, c *Ctx, a Act) {
		r := rand.New(rand.NewPCG(15, uint64(a.Len())))
		y := random(r, a.Len(), -3, 3)
		dsum, dsumsq := random(r, a.C, -1, 1), random(r, a.C, -1, 1)
		want := refMap(func(li int) float64 { ch := chanOf(a, li); return dsum[ch] + 2*y[li]*dsumsq[ch] }, a.Len())
		dy := make([]float32, a.Len())
		StatsGrad(c, dy, f32s(dsum), f32s(dsumsq), pack(a, y), a)
		checkAct(t, "StatsGrad", a, dy, want)
		py := pack(a, y)
		StatsGrad(c, py, f32s(dsum), f32s(dsumsq), py, a)
		if !same(py, dy) {
			t.Error("StatsGrad in place differs")
		}
	})
}

func TestRelayout(t *testing.T) {
	c := newTestCtx(t, 3, 0)
	for _, a := range []Act{{N: 2, C: 16, H: 3, W: 5}, {N: 3, C: 24, H: 17, W: 15}, {N: 1, C: 8, H: 1, W: 1}} {
		r := rand.New(rand.NewPCG(16, uint64(a.Len())))
		x := random(r, a.Len(), -1, 1)
		b := a
		b.Blocked = true
		for _, pair := range [][2]Act{{b, a}, {a, b}, {b, b}, {a, a}} {
			to, from := pair[0], pair[1]
			y := make([]float32, a.Len())
			Relayout(c, y, pack(from, x), to, from)
			if !same(y, pack(to, x)) {
				t.Errorf("%+v from blocked=%v to blocked=%v: wrong storage", a, from.Blocked, to.Blocked)
			}
		}
	}
}

func TestBNFold(t *testing.T) {
	for _, threads := range testThreads {
		c := newTestCtx(t, threads, 0)
		for _, sh := range []struct{ k, per int }{{4, 27}, {32, 576}, {10, 64}} {
			r := rand.New(rand.NewPCG(17, uint64(sh.k*sh.per)))
			w, b := random(r, sh.k*sh.per, -1, 1), random(r, sh.k, -1, 1)
			mean, variance, gamma, beta := bnInputs(r, sh.k)
			const eps = 1e-5
			for _, bias := range []bool{false, true} {
				s := refMap(func(o int) float64 { return gamma[o] / math.Sqrt(variance[o]+eps) }, sh.k)
				wantW := refMap(func(i int) float64 { return w[i] * s[i/sh.per] }, len(w))
				wantB := refMap(func(o int) float64 {
					bo := 0.0
					if bias {
						bo = b[o]
					}
					return (bo-mean[o])*s[o] + beta[o]
				}, sh.k)
				var pb []float32
				if bias {
					pb = f32s(b)
				}
				wf, bf := make([]float32, len(w)), make([]float32, sh.k)
				BNFold(c, wf, bf, f32s(w), pb, f32s(mean), f32s(variance), f32s(gamma), f32s(beta), sh.k, sh.per, eps)
				checkClose(t, "w'", f64s(wf), wantW)
				checkClose(t, "b'", f64s(bf), wantB)
			}
		}
	}
}

// TestChannelVectors checks the kernels on per-channel vectors: BNAffine,
// BNAffineGrad, Moments and MomentsGrad.
func TestChannelVectors(t *testing.T) {
	c := newTestCtx(t, 2, 0)
	const C, eps, count = 7, 1e-5, 96
	r := rand.New(rand.NewPCG(18, 0))
	mean, variance, gamma, beta := bnInputs(r, C)
	v := func() []float32 { return make([]float32, C) }

	scale, shift := v(), v()
	BNAffine(c, scale, shift, f32s(mean), f32s(variance), f32s(gamma), f32s(beta), C, eps)
	inv := refMap(func(ch int) float64 { return 1 / math.Sqrt(variance[ch]+eps) }, C)
	checkClose(t, "scale", f64s(scale), refMap(func(ch int) float64 { return gamma[ch] * inv[ch] }, C))
	checkClose(t, "shift", f64s(shift), refMap(func(ch int) float64 { return beta[ch] - mean[ch]*gamma[ch]*inv[ch] }, C))

	// BNAffineGrad against the chain rule through scale and shift, written
	// term by term: scale = gamma*inv, shift = beta - mean*gamma*inv.
	dscale, dshift := random(r, C, -1, 1), random(r, C, -1, 1)
	dm, dv, dg, db := v(), v(), v(), v()
	BNAffineGrad(c, dm, dv, dg, db, f32s(dscale), f32s(dshift), f32s(mean), f32s(variance), f32s(gamma), C, eps)
	dinv := refMap(func(ch int) float64 { return -0.5 * math.Pow(variance[ch]+eps, -1.5) }, C) // d inv / d var
	checkClose(t, "dmean", f64s(dm), refMap(func(ch int) float64 { return dshift[ch] * -gamma[ch] * inv[ch] }, C))
	checkClose(t, "dvar", f64s(dv), refMap(func(ch int) float64 {
		return dscale[ch]*gamma[ch]*dinv[ch] + dshift[ch]*-mean[ch]*gamma[ch]*dinv[ch]
	}, C))
	checkClose(t, "dgamma", f64s(dg), refMap(func(ch int) float64 { return dscale[ch]*inv[ch] - dshift[ch]*mean[ch]*inv[ch] }, C))
	checkClose(t, "dbeta", f64s(db), dshift)

	sum, sumsq := random(r, C, -50, 50), random(r, C, 100, 200)
	mu, va := v(), v()
	Moments(c, mu, va, f32s(sum), f32s(sumsq), C, count)
	checkClose(t, "mean", f64s(mu), refMap(func(ch int) float64 { return sum[ch] / count }, C))
	checkClose(t, "var", f64s(va), refMap(func(ch int) float64 {
		return sumsq[ch]/count - (sum[ch]/count)*(sum[ch]/count)
	}, C))

	dmean, dvar := random(r, C, -1, 1), random(r, C, -1, 1)
	ds, dq := v(), v()
	MomentsGrad(c, ds, dq, f32s(dmean), f32s(dvar), f32s(mean), C, count)
	checkClose(t, "dsum", f64s(ds), refMap(func(ch int) float64 { return (dmean[ch] - 2*mean[ch]*dvar[ch]) / count }, C))
	checkClose(t, "dsumsq", f64s(dq), refMap(func(ch int) float64 { return dvar[ch] / count }, C))
}

// TestChannelDeterministic runs each reduction twice with two workers and
// exactly the wide scratch it documents, and wants the same bits; and
// wants a result close to the single-worker one.
func TestChannelDeterministic(t *testing.T) {
	a := Act{N: 3, C: 16, H: 20, W: 20, Blocked: true}
	r := rand.New(rand.NewPCG(19, 0))
	x, dy := f32s(random(r, a.Len(), -2, 2)), f32s(random(r, a.Len(), -2, 2))
	vec := f32s(random(r, a.C, 0.5, 1.5))
	C := a.C
	for _, k := range []struct {
		name string
		wide int
		run  func(c *Ctx) []float32 // returns every result, concatenated
	}{
		{"BNStats", 2 * C, func(c *Ctx) []float32 {
			m, v := make([]float32, C), make([]float32, C)
			BNStats(c, m, v, x, a)
			return append(m, v...)
		}},
		{"ChanSum", C, func(c *Ctx) []float32 {
			s := make([]float32, C)
			ChanSum(c, s, x, a)
			return s
		}},
		{"BNNormGrad", 2 * C, func(c *Ctx) []float32 {
			dx := make([]float32, a.Len())
			v := [4][]float32{make([]float32, C), make([]float32, C), make([]float32, C), make([]float32, C)}
			BNNormGrad(c, dx, v[0], v[1], v[2], v[3], dy, x, vec, vec, vec, a, 1e-5)
			return append(append(append(append(dx, v[0]...), v[1]...), v[2]...), v[3]...)
		}},
		{"AffineReLUGrad", 2 * C, func(c *Ctx) []float32 {
			dx, ds, db := make([]float32, a.Len()), make([]float32, C), make([]float32, C)
			AffineReLUGrad(c, dx, ds, db, dy, x, vec, vec, a)
			return append(append(dx, ds...), db...)
		}},
	} {
		c2, c1 := newTestCtx(t, 2, k.wide), newTestCtx(t, 1, k.wide)
		first, second, one := k.run(c2), k.run(c2), k.run(c1)
		if !same(first, second) {
			t.Errorf("%s: two runs with 2 workers differ", k.name)
		}
		checkClose(t, k.name+" 1 vs 2 workers", f64s(first), f64s(one))
	}
}

func TestChannelAllocs(t *testing.T) {
	a := Act{N: 3, C: 16, H: 20, W: 20, Blocked: true}
	c := newTestCtx(t, 2, 2*a.C)
	n, C := a.Len(), a.C
	x, y, dx := make([]float32, n), make([]float32, n), make([]float32, n)
	v := make([][]float32, 6)
	for i := range v {
		v[i] = make([]float32, C)
		for j := range v[i] {
			v[i][j] = 1
		}
	}
	b := a
	b.Blocked = false
	w, wf := make([]float32, 32*576), make([]float32, 32*576)
	wv := make([][]float32, 6)
	for i := range wv {
		wv[i] = make([]float32, 32)
	}
	checkAllocs(t, map[string]func(){
		"BNStats":           func() { BNStats(c, v[0], v[1], x, a) },
		"ChanSum":           func() { ChanSum(c, v[0], x, a) },
		"BNNorm":            func() { BNNorm(c, y, x, v[0], v[1], v[2], v[3], a, 1e-5) },
		"BNNormGrad":        func() { BNNormGrad(c, dx, v[0], v[1], v[2], v[3], y, x, v[4], v[5], v[5], a, 1e-5) },
		"BNStatsGrad":       func() { BNStatsGrad(c, dx, v[0], v[1], x, v[2], a) },
		"BNStatsGradAdd":    func() { BNStatsGradAdd(c, dx, v[0], v[1], x, v[2], y, a) },
		"AffineReLU":        func() { AffineReLU(c, y, x, v[4], v[5], a) },
		"AffineReLUGrad":    func() { AffineReLUGrad(c, dx, v[0], v[1], y, x, v[4], v[5], a) },
		"AffineReLUGradAdd": func() { AffineReLUGradAdd(c, dx, v[0], v[1], y, x, v[4], v[5], y, a) },
		"StatsGrad":         func() { StatsGrad(c, dx, v[0], v[1], y, a) },
		"Relayout":          func() { Relayout(c, y, x, b, a) },
		"BNFold":            func() { BNFold(c, wf, wv[0], w, wv[1], wv[2], wv[3], wv[4], wv[5], 32, 576, 1e-5) },
	})
}

package nn

import (
	"fmt"
	"math"
)

// The per-channel kernels: BatchNorm's statistics, normalization and
// gradients, their fused forms (a per-channel affine map and ReLU, the
// statistics a conv epilogue accumulates) and the layout change. The
// activation kernels loop over rows (rowsOf): one channel, or one block
// of 8 channels, of one image, so that a row's per-channel constants are
// found once. Reductions accumulate each worker's rows into its Wide
// scratch and add the partials in worker order.

// BNStats sets mean and variance to the per-channel batch mean and biased
// variance of x, in two passes as the interpreter does (the variance sums
// squared deviations from the float64 mean). Wide scratch: 2*C per worker.
func BNStats(c *Ctx, mean, variance, x []float32, a Act) {
	mustAct("BNStats", a)
	mustLen("BNStats", "x", x, a.Len())
	mustLen("BNStats", "mean", mean, a.C)
	mustLen("BNStats", "variance", variance, a.C)
	C := a.C
	c.clearWide("BNStats", 2*C)
	t := c.opTaskFor(keyBNStats, chanSumRange)
	t.a, t.x[0] = a, x
	r := rowsOf(a)
	t.spread(r.count, a.Len())
	sum := c.sumWide(C)
	m := float64(a.N * a.H * a.W)
	// The float64 means go where no worker's partials do: worker 0's
	// second half.
	mu := c.wide[0][C : 2*C]
	for ch := range C {
		mu[ch] = sum[ch] / m
		mean[ch] = float32(mu[ch])
	}
	clear(sum)
	for w := 1; w < c.threads; w++ {
		clear(c.wide[w][:C])
	}
	t = c.opTaskFor(keyBNStats, sqDevRange)
	t.a, t.x[0] = a, x
	t.spread(r.count, a.Len())
	sq := c.sumWide(C)
	for ch := range C {
		variance[ch] = float32(sq[ch] / m)
	}
}

// chanSumRange adds the elements of rows [lo, hi) of t.x[0] into worker
// w's per-channel partials.
func chanSumRange(t *opTask, w, lo, hi int) {
	x, part := t.x[0], t.c.wide[w]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		row := x[u*r.size : (u+1)*r.size]
		acc := sumLanes(row, r.lanes)
		ch0 := r.first(u)
		for l := range r.lanes {
			part[ch0+l] += acc[l]
		}
	}
}

// sumLanes returns the float64 sums of each of the lanes (1 or 8)
// interleaved in row.
func sumLanes(row []float32, lanes int) (acc [8]float64) {
	if lanes == 1 {
		for _, v := range row {
			acc[0] += float64(v)
		}
		return acc
	}
	for i := 0; i+8 <= len(row); i += 8 {
		xs := (*[8]float32)(row[i : i+8])
		for l := range 8 {
			acc[l] += float64(xs[l])
		}
	}
	return acc
}

// sqDevRange adds the squared deviations of rows [lo, hi) of t.x[0] from
// the means in worker 0's wide[C:2C] into worker w's partials.
func sqDevRange(t *opTask, w, lo, hi int) {
	x, part, mu := t.x[0], t.c.wide[w], t.c.wide[0][t.a.C:2*t.a.C]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		var acc [8]float64
		ch0 := r.first(u)
		row := x[u*r.size : (u+1)*r.size]
		if r.lanes == 1 {
			m := mu[ch0]
			for _, v := range row {
				d := float64(v) - m
				acc[0] += d * d
			}
		} else {
			m := (*[8]float64)(mu[ch0 : ch0+8])
			for i := 0; i+8 <= len(row); i += 8 {
				xs := (*[8]float32)(row[i : i+8])
				for l := range 8 {
					d := float64(xs[l]) - m[l]
					acc[l] += d * d
				}
			}
		}
		for l := range r.lanes {
			part[ch0+l] += acc[l]
		}
	}
}

// ChanSum sets y[c] to the sum of x over every axis but the channel (a
// bias gradient). Wide scratch: C per worker.
func ChanSum(c *Ctx, y, x []float32, a Act) {
	mustAct("ChanSum", a)
	mustLen("ChanSum", "x", x, a.Len())
	mustLen("ChanSum", "y", y, a.C)
	c.clearWide("ChanSum", a.C)
	t := c.opTaskFor(keyChanSum, chanSumRange)
	t.a, t.x[0] = a, x
	t.spread(rowsOf(a).count, a.Len())
	for ch, v := range c.sumWide(a.C) {
		y[ch] = float32(v)
	}
}

// BNNorm sets y = gamma*(x-mean)/sqrt(var+eps) + beta per channel, in
// float64. y may be x.
func BNNorm(c *Ctx, y, x, mean, variance, gamma, beta []float32, a Act, eps float64) {
	mustAct("BNNorm", a)
	mustLen("BNNorm", "y", y, a.Len())
	mustLen("BNNorm", "x", x, a.Len())
	vecs("BNNorm", a.C, mean, variance, gamma, beta)
	t := c.opTaskFor(keyBNNorm, bnNormRange)
	t.a, t.f[0] = a, eps
	t.y[0] = y
	t.x[0], t.x[1], t.x[2], t.x[3], t.x[4] = x, mean, variance, gamma, beta
	t.spread(rowsOf(a).count, 2*a.Len())
}

func bnNormRange(t *opTask, _, lo, hi int) {
	y, x, mean, variance, gamma, beta := t.y[0], t.x[0], t.x[1], t.x[2], t.x[3], t.x[4]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		var g, m, inv, b [8]float64
		ch0 := r.first(u)
		for l := range r.lanes {
			ch := ch0 + l
			g[l], m[l], b[l] = float64(gamma[ch]), float64(mean[ch]), float64(beta[ch])
			inv[l] = 1 / math.Sqrt(float64(variance[ch])+t.f[0])
		}
		row, out := x[u*r.size:(u+1)*r.size], y[u*r.size:(u+1)*r.size]
		if r.lanes == 1 {
			out = out[:len(row)]
			for i, v := range row {
				out[i] = float32(g[0]*(float64(v)-m[0])*inv[0] + b[0])
			}
			continue
		}
		for i := 0; i+8 <= len(row); i += 8 {
			xs, ys := (*[8]float32)(row[i:i+8]), (*[8]float32)(out[i:i+8])
			for l := range 8 {
				ys[l] = float32(g[l]*(float64(xs[l])-m[l])*inv[l] + b[l])
			}
		}
	}
}

// BNNormGrad computes the gradients of BNNorm with mean and var taken as
// independent inputs (invstd = 1/sqrt(var+eps)): dx = dy*gamma*invstd,
// dmean = -Σdy*gamma*invstd, dvar = Σdy*gamma*(x-mean)*(-1/2)*(var+eps)^-3/2,
// dgamma = Σdy*(x-mean)*invstd, dbeta = Σdy, sums per channel in float64.
// Wide scratch: 2*C per worker.
func BNNormGrad(c *Ctx, dx, dmean, dvar, dgamma, dbeta, dy, x, mean, variance, gamma []float32, a Act, eps float64) {
	mustAct("BNNormGrad", a)
	n, C := a.Len(), a.C
	mustLen("BNNormGrad", "dx", dx, n)
	mustLen("BNNormGrad", "dy", dy, n)
	mustLen("BNNormGrad", "x", x, n)
	vecs("BNNormGrad", C, dmean, dvar, dgamma, dbeta, mean, variance, gamma)
	c.clearWide("BNNormGrad", 2*C)
	t := c.opTaskFor(keyBNNormGrad, bnNormGradRange)
	t.a, t.f[0] = a, eps
	t.y[0] = dx
	t.x[0], t.x[1], t.x[2], t.x[3], t.x[4] = dy, x, mean, variance, gamma
	t.spread(rowsOf(a).count, 3*n)
	tot := c.sumWide(2 * C)
	for ch := range C {
		sdy, sdyx := tot[ch], tot[C+ch]
		ve := float64(variance[ch]) + eps
		inv := 1 / math.Sqrt(ve)
		g := float64(gamma[ch])
		dmean[ch] = float32(-sdy * g * inv)
		dvar[ch] = float32(g * sdyx * -0.5 * inv / ve)
		dgamma[ch] = float32(sdyx * inv)
		dbeta[ch] = float32(sdy)
	}
}

func bnNormGradRange(t *opTask, w, lo, hi int) {
	dx, dy, x, mean, variance, gamma := t.y[0], t.x[0], t.x[1], t.x[2], t.x[3], t.x[4]
	C := t.a.C
	part := t.c.wide[w][:2*C]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		var gm, inv, m, sdy, sdyx [8]float64
		ch0 := r.first(u)
		for l := range r.lanes {
			ch := ch0 + l
			gm[l], m[l] = float64(gamma[ch]), float64(mean[ch])
			inv[l] = 1 / math.Sqrt(float64(variance[ch])+t.f[0])
		}
		from, to := u*r.size, (u+1)*r.size
		gs, xs, ds := dy[from:to], x[from:to], dx[from:to]
		if r.lanes == 1 {
			xs, ds = xs[:len(gs)], ds[:len(gs)]
			for i, g32 := range gs {
				g, v := float64(g32), float64(xs[i])
				ds[i] = float32(g * gm[0] * inv[0])
				sdy[0] += g
				sdyx[0] += g * (v - m[0])
			}
		} else {
			for i := 0; i+8 <= len(gs); i += 8 {
				g8, x8, d8 := (*[8]float32)(gs[i:i+8]), (*[8]float32)(xs[i:i+8]), (*[8]float32)(ds[i:i+8])
				for l := range 8 {
					g, v := float64(g8[l]), float64(x8[l])
					d8[l] = float32(g * gm[l] * inv[l])
					sdy[l] += g
					sdyx[l] += g * (v - m[l])
				}
			}
		}
		for l := range r.lanes {
			part[ch0+l] += sdy[l]
			part[C+ch0+l] += sdyx[l]
		}
	}
}

// BNStatsGrad sets dx = dmean/M + dvar*2*(x-mean)/M, M = N*H*W the
// elements per channel: the gradient of BNStats.
func BNStatsGrad(c *Ctx, dx, dmean, dvar, x, mean []float32, a Act) {
	mustAct("BNStatsGrad", a)
	mustLen("BNStatsGrad", "dx", dx, a.Len())
	mustLen("BNStatsGrad", "x", x, a.Len())
	vecs("BNStatsGrad", a.C, dmean, dvar, mean)
	t := c.opTaskFor(keyBNStatsGrad, bnStatsGradRange)
	t.a = a
	t.y[0] = dx
	t.x[0], t.x[1], t.x[2], t.x[3] = dmean, dvar, x, mean
	t.spread(rowsOf(a).count, 2*a.Len())
}

func bnStatsGradRange(t *opTask, _, lo, hi int) {
	dx, dmean, dvar, x, mean := t.y[0], t.x[0], t.x[1], t.x[2], t.x[3]
	r := rowsOf(t.a)
	m := float64(t.a.N * r.pix)
	for u := lo; u < hi; u++ {
		var dm, dv, mu [8]float64
		ch0 := r.first(u)
		for l := range r.lanes {
			ch := ch0 + l
			dm[l], dv[l], mu[l] = float64(dmean[ch]), float64(dvar[ch]), float64(mean[ch])
		}
		xs, ds := x[u*r.size:(u+1)*r.size], dx[u*r.size:(u+1)*r.size]
		if r.lanes == 1 {
			ds = ds[:len(xs)]
			for i, v := range xs {
				ds[i] = float32(dm[0]/m + dv[0]*2*(float64(v)-mu[0])/m)
			}
			continue
		}
		for i := 0; i+8 <= len(xs); i += 8 {
			x8, d8 := (*[8]float32)(xs[i:i+8]), (*[8]float32)(ds[i:i+8])
			for l := range 8 {
				d8[l] = float32(dm[l]/m + dv[l]*2*(float64(x8[l])-mu[l])/m)
			}
		}
	}
}

// AffineReLU sets y = max(scale[c]*x + shift[c], 0), in float64: a
// BatchNorm-ReLU pair. y may be x.
func AffineReLU(c *Ctx, y, x, scale, shift []float32, a Act) {
	mustAct("AffineReLU", a)
	mustLen("AffineReLU", "y", y, a.Len())
	mustLen("AffineReLU", "x", x, a.Len())
	vecs("AffineReLU", a.C, scale, shift)
	t := c.opTaskFor(keyAffineReLU, affineReLURange)
	t.a = a
	t.y[0] = y
	t.x[0], t.x[1], t.x[2] = x, scale, shift
	t.spread(rowsOf(a).count, 2*a.Len())
}

func affineReLURange(t *opTask, _, lo, hi int) {
	y, x, scale, shift := t.y[0], t.x[0], t.x[1], t.x[2]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		var s, b [8]float64
		ch0 := r.first(u)
		for l := range r.lanes {
			s[l], b[l] = float64(scale[ch0+l]), float64(shift[ch0+l])
		}
		xs, ys := x[u*r.size:(u+1)*r.size], y[u*r.size:(u+1)*r.size]
		if r.lanes == 1 {
			ys = ys[:len(xs)]
			for i, v := range xs {
				ys[i] = float32(reluF64(s[0]*float64(v) + b[0]))
			}
			continue
		}
		for i := 0; i+8 <= len(xs); i += 8 {
			x8, y8 := (*[8]float32)(xs[i:i+8]), (*[8]float32)(ys[i:i+8])
			for l := range 8 {
				y8[l] = float32(reluF64(s[l]*float64(x8[l]) + b[l]))
			}
		}
	}
}

// AffineReLUGrad computes the gradient of AffineReLU: with
// m = [scale[c]*x + shift[c] > 0], dx = da*m*scale[c],
// dscale[c] = Σ da*m*x and dshift[c] = Σ da*m, the sums in float64.
// Wide scratch: 2*C per worker.
func AffineReLUGrad(c *Ctx, dx, dscale, dshift, da, x, scale, shift []float32, a Act) {
	mustAct("AffineReLUGrad", a)
	n, C := a.Len(), a.C
	mustLen("AffineReLUGrad", "dx", dx, n)
	mustLen("AffineReLUGrad", "da", da, n)
	mustLen("AffineReLUGrad", "x", x, n)
	vecs("AffineReLUGrad", C, dscale, dshift, scale, shift)
	c.clearWide("AffineReLUGrad", 2*C)
	t := c.opTaskFor(keyAffineReLUGrad, affineReLUGradRange)
	t.a = a
	t.y[0] = dx
	t.x[0], t.x[1], t.x[2], t.x[3] = da, x, scale, shift
	t.spread(rowsOf(a).count, 3*n)
	tot := c.sumWide(2 * C)
	for ch := range C {
		dscale[ch] = float32(tot[ch])
		dshift[ch] = float32(tot[C+ch])
	}
}

func affineReLUGradRange(t *opTask, w, lo, hi int) {
	dx, da, x, scale, shift := t.y[0], t.x[0], t.x[1], t.x[2], t.x[3]
	C := t.a.C
	part := t.c.wide[w][:2*C]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		var s, b, ds, db [8]float64
		ch0 := r.first(u)
		for l := range r.lanes {
			s[l], b[l] = float64(scale[ch0+l]), float64(shift[ch0+l])
		}
		gs, xs, out := da[u*r.size:(u+1)*r.size], x[u*r.size:(u+1)*r.size], dx[u*r.size:(u+1)*r.size]
		if r.lanes == 1 {
			xs, out = xs[:len(gs)], out[:len(gs)]
			for i, g32 := range gs {
				g, v := float64(g32), float64(xs[i])
				out[i] = 0
				if s[0]*v+b[0] > 0 {
					out[i] = float32(g * s[0])
					ds[0] += g * v
					db[0] += g
				}
			}
		} else {
			for i := 0; i+8 <= len(gs); i += 8 {
				g8, x8, o8 := (*[8]float32)(gs[i:i+8]), (*[8]float32)(xs[i:i+8]), (*[8]float32)(out[i:i+8])
				for l := range 8 {
					g, v := float64(g8[l]), float64(x8[l])
					o8[l] = 0
					if s[l]*v+b[l] > 0 {
						o8[l] = float32(g * s[l])
						ds[l] += g * v
						db[l] += g
					}
				}
			}
		}
		for l := range r.lanes {
			part[ch0+l] += ds[l]
			part[C+ch0+l] += db[l]
		}
	}
}

// StatsGrad sets dy = dsum[c] + 2*y*dsumsq[c], the gradient a stats
// epilogue (sum = Σy, sumsq = Σy²) sends back into y. dy may be y.
func StatsGrad(c *Ctx, dy, dsum, dsumsq, y []float32, a Act) {
	mustAct("StatsGrad", a)
	mustLen("StatsGrad", "dy", dy, a.Len())
	mustLen("StatsGrad", "y", y, a.Len())
	vecs("StatsGrad", a.C, dsum, dsumsq)
	t := c.opTaskFor(keyStatsGrad, statsGradRange)
	t.a = a
	t.y[0] = dy
	t.x[0], t.x[1], t.x[2] = dsum, dsumsq, y
	t.spread(rowsOf(a).count, 2*a.Len())
}

func statsGradRange(t *opTask, _, lo, hi int) {
	dy, dsum, dsumsq, y := t.y[0], t.x[0], t.x[1], t.x[2]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		var s, q [8]float64
		ch0 := r.first(u)
		for l := range r.lanes {
			s[l], q[l] = float64(dsum[ch0+l]), float64(dsumsq[ch0+l])
		}
		ys, out := y[u*r.size:(u+1)*r.size], dy[u*r.size:(u+1)*r.size]
		if r.lanes == 1 {
			out = out[:len(ys)]
			for i, v := range ys {
				out[i] = float32(s[0] + 2*float64(v)*q[0])
			}
			continue
		}
		for i := 0; i+8 <= len(ys); i += 8 {
			y8, o8 := (*[8]float32)(ys[i:i+8]), (*[8]float32)(out[i:i+8])
			for l := range 8 {
				o8[l] = float32(s[l] + 2*float64(y8[l])*q[l])
			}
		}
	}
}

// Relayout copies x, stored as xa says, into y, stored as ya says: the
// same logical tensor in another layout (plain NCHW to blocked NCHW8c or
// back). y and x must not overlap.
func Relayout(c *Ctx, y, x []float32, ya, xa Act) {
	mustAct("Relayout", ya)
	mustAct("Relayout", xa)
	if ya.N != xa.N || ya.C != xa.C || ya.H != xa.H || ya.W != xa.W {
		panic(fmt.Sprintf("BUG: nn.Relayout: shapes %+v and %+v differ", ya, xa))
	}
	mustLen("Relayout", "y", y, ya.Len())
	mustLen("Relayout", "x", x, xa.Len())
	if ya.Blocked == xa.Blocked {
		copy(y, x)
		return
	}
	t := c.opTaskFor(keyRelayout, relayoutRange)
	t.a, t.b = ya, xa
	t.y[0], t.x[0] = y, x
	// One unit per block of 8 channels of one image: the blocked side is
	// the unit's contiguous run.
	t.spread(ya.N*ya.C/8, 2*ya.Len())
}

func relayoutRange(t *opTask, _, lo, hi int) {
	y, x := t.y[0], t.x[0]
	a := t.a
	if !a.Blocked {
		a = t.b
	}
	S, cb := a.H*a.W, a.C/8
	for u := lo; u < hi; u++ {
		img, ch0 := u/cb, u%cb*8
		blk := u * S * 8
		for l := range 8 {
			plain := (img*a.C + ch0 + l) * S
			if t.a.Blocked {
				for s, v := range x[plain : plain+S] {
					y[blk+s*8+l] = v
				}
			} else {
				out := y[plain : plain+S]
				for s := range out {
					out[s] = x[blk+s*8+l]
				}
			}
		}
	}
}

// BNFold folds an inference BatchNorm into the conv or linear layer
// before it: with s = gamma/sqrt(var+eps), wf[o,...] = w[o,...]*s[o] and
// bf[o] = (b[o]-mean[o])*s[o] + beta[o], b being zero when nil. w and wf
// hold k outputs of per weights each.
func BNFold(c *Ctx, wf, bf, w, b, mean, variance, gamma, beta []float32, k, per int, eps float64) {
	mustLen("BNFold", "wf", wf, k*per)
	mustLen("BNFold", "w", w, k*per)
	if b != nil {
		mustLen("BNFold", "b", b, k)
	}
	vecs("BNFold", k, bf, mean, variance, gamma, beta)
	for o := range k {
		s := float64(gamma[o]) / math.Sqrt(float64(variance[o])+eps)
		bo := 0.0
		if b != nil {
			bo = float64(b[o])
		}
		bf[o] = float32((bo-float64(mean[o]))*s + float64(beta[o]))
	}
	t := c.opTaskFor(keyBNFold, bnFoldRange)
	t.y[0] = wf
	t.x[0], t.x[1], t.x[2] = w, variance, gamma
	t.f[0], t.k[0] = eps, per
	t.spread(k, k*per)
}

func bnFoldRange(t *opTask, _, lo, hi int) {
	wf, w, variance, gamma := t.y[0], t.x[0], t.x[1], t.x[2]
	per := t.k[0]
	for o := lo; o < hi; o++ {
		s := float64(gamma[o]) / math.Sqrt(float64(variance[o])+t.f[0])
		out := wf[o*per : (o+1)*per]
		for i, v := range w[o*per : (o+1)*per] {
			out[i] = float32(float64(v) * s)
		}
	}
}

// BNAffine writes BatchNorm as a per-channel affine map:
// scale = gamma/sqrt(var+eps), shift = beta - mean*scale (n channels).
func BNAffine(c *Ctx, scale, shift, mean, variance, gamma, beta []float32, n int, eps float64) {
	vecs("BNAffine", n, scale, shift, mean, variance, gamma, beta)
	for ch := range n {
		s := float64(gamma[ch]) / math.Sqrt(float64(variance[ch])+eps)
		m, b := float64(mean[ch]), float64(beta[ch])
		scale[ch] = float32(s)
		shift[ch] = float32(b - m*s)
	}
}

// BNAffineGrad computes the gradient of BNAffine. With
// inv = 1/sqrt(var+eps) and t = dscale - mean*dshift:
// dmean = -dshift*gamma*inv, dvar = t*gamma*(-1/2)*inv³,
// dgamma = t*inv, dbeta = dshift.
func BNAffineGrad(c *Ctx, dmean, dvar, dgamma, dbeta, dscale, dshift, mean, variance, gamma []float32, n int, eps float64) {
	vecs("BNAffineGrad", n, dmean, dvar, dgamma, dbeta, dscale, dshift, mean, variance, gamma)
	for ch := range n {
		inv := 1 / math.Sqrt(float64(variance[ch])+eps)
		ds, db, m, g := float64(dscale[ch]), float64(dshift[ch]), float64(mean[ch]), float64(gamma[ch])
		t := ds - m*db
		dmean[ch] = float32(-db * g * inv)
		dvar[ch] = float32(t * g * -0.5 * inv * inv * inv)
		dgamma[ch] = float32(t * inv)
		dbeta[ch] = float32(db)
	}
}

// Moments computes batch statistics from the sums a conv epilogue
// accumulated over count elements per channel: mean = sum/count and the
// biased var = sumsq/count - mean².
func Moments(c *Ctx, mean, variance, sum, sumsq []float32, n, count int) {
	vecs("Moments", n, mean, variance, sum, sumsq)
	m := float64(count)
	for ch := range n {
		mu := float64(sum[ch]) / m
		mean[ch] = float32(mu)
		variance[ch] = float32(float64(sumsq[ch])/m - mu*mu)
	}
}

// MomentsGrad computes the gradient of Moments:
// dsum = dmean/count - 2*mean*dvar/count, dsumsq = dvar/count.
func MomentsGrad(c *Ctx, dsum, dsumsq, dmean, dvar, mean []float32, n, count int) {
	vecs("MomentsGrad", n, dsum, dsumsq, dmean, dvar, mean)
	m := float64(count)
	for ch := range n {
		dm, dv, mu := float64(dmean[ch]), float64(dvar[ch]), float64(mean[ch])
		dsum[ch] = float32(dm/m - 2*mu*dv/m)
		dsumsq[ch] = float32(dv / m)
	}
}

// reluF64 is max(v, 0) with NaN kept, as the interpreter's rectifier.
func reluF64(v float64) float64 {
	if v <= 0 {
		return 0
	}
	return v
}

// vecs checks that every per-channel vector has n elements.
func vecs(kernel string, n int, vs ...[]float32) {
	for i, v := range vs {
		if len(v) != n {
			panic(fmt.Sprintf("BUG: nn.%s: per-channel vector %d has %d elements, want %d", kernel, i, len(v), n))
		}
	}
}

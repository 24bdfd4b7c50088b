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
// found once, and run a row kernel of simd.go over each (its rounding is
// described there). Reductions add each row's sums into the worker's
// Wide scratch in float64 and the partials in worker order.

// BNStats sets mean and variance to the per-channel batch mean and biased
// variance of x, in two passes as the interpreter does: the sum, then the
// sums of d = x - mean and of d² about the mean rounded to float32, from
// which variance = Σd²/M - (Σd/M)² (M elements per channel) without
// cancellation, the mean being within rounding of the shift. Wide
// scratch: 2*C per worker.
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
	m := float64(a.N * a.H * a.W)
	for ch, v := range c.sumWide(C) {
		mean[ch] = float32(v / m)
	}
	c.clearWide("BNStats", 2*C)
	t = c.opTaskFor(keyBNStats, sqDevRange)
	t.a, t.x[0], t.x[1] = a, x, mean
	t.spread(r.count, a.Len())
	tot := c.sumWide(2 * C)
	for ch := range C {
		d := tot[ch] / m
		variance[ch] = float32(tot[C+ch]/m - d*d)
	}
}

// chanSumRange adds the elements of rows [lo, hi) of t.x[0] into worker
// w's per-channel partials.
func chanSumRange(t *opTask, w, lo, hi int) {
	x, part := t.x[0], t.c.wide[w]
	r := rowsOf(t.a)
	var zero [8]float32
	for u := lo; u < hi; u++ {
		var sums [16]float64
		momentsRow(x[u*r.size:(u+1)*r.size], &zero, &sums)
		r.fold(part[r.first(u):], sums[:8])
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

// sqDevRange adds the sums of d = x - mean and d² over rows [lo, hi) of
// t.x[0], with the float32 means t.x[1], into worker w's partials (Σd in
// [0, C), Σd² in [C, 2C)).
func sqDevRange(t *opTask, w, lo, hi int) {
	x, mean, C := t.x[0], t.x[1], t.a.C
	part := t.c.wide[w][:2*C]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		ch0 := r.first(u)
		shift := r.lanesOf(mean, ch0)
		var sums [16]float64
		momentsRow(x[u*r.size:(u+1)*r.size], &shift, &sums)
		r.fold(part[ch0:], sums[:8])
		r.fold(part[C+ch0:], sums[8:])
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

// BNNorm sets y = gamma*(x-mean)/sqrt(var+eps) + beta per channel, as
// (x-mean)*a + beta with a = gamma/sqrt(var+eps) found in float64 and
// rounded to float32. y may be x.
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
		var a [8]float32
		ch0 := r.first(u)
		for l := range r.lanes {
			ch := ch0 + l
			a[l] = float32(float64(gamma[ch]) / math.Sqrt(float64(variance[ch])+t.f[0]))
		}
		r.spreadLanes(&a)
		m, b := r.lanesOf(mean, ch0), r.lanesOf(beta, ch0)
		from, to := u*r.size, (u+1)*r.size
		shiftAffineRow(y[from:to], x[from:to], &m, &a, &b)
	}
}

// BNNormGrad computes the gradients of BNNorm with mean and var taken as
// independent inputs (invstd = 1/sqrt(var+eps)): dx = dy*gamma*invstd,
// dmean = -Σdy*gamma*invstd, dvar = Σdy*gamma*(x-mean)*(-1/2)*(var+eps)^-3/2,
// dgamma = Σdy*(x-mean)*invstd, dbeta = Σdy, sums per channel in float64
// (gamma*invstd, the factor of dx, rounded to float32). Wide scratch: 2*C
// per worker. dx may be dy.
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
		var a [8]float32
		ch0 := r.first(u)
		for l := range r.lanes {
			ch := ch0 + l
			a[l] = float32(float64(gamma[ch]) / math.Sqrt(float64(variance[ch])+t.f[0]))
		}
		r.spreadLanes(&a)
		m := r.lanesOf(mean, ch0)
		var sums [16]float64
		from, to := u*r.size, (u+1)*r.size
		bnNormGradRow(dx[from:to], dy[from:to], x[from:to], &m, &a, &sums)
		r.fold(part[ch0:], sums[:8])
		r.fold(part[C+ch0:], sums[8:])
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

// BNStatsGradAdd sets dx = acc + dmean/M + dvar*2*(x-mean)/M: BNStatsGrad
// added to the gradient x already has, in one pass. dx may be acc.
func BNStatsGradAdd(c *Ctx, dx, dmean, dvar, x, mean, acc []float32, a Act) {
	mustAct("BNStatsGradAdd", a)
	mustLen("BNStatsGradAdd", "dx", dx, a.Len())
	mustLen("BNStatsGradAdd", "x", x, a.Len())
	mustLen("BNStatsGradAdd", "acc", acc, a.Len())
	vecs("BNStatsGradAdd", a.C, dmean, dvar, mean)
	t := c.opTaskFor(keyBNStatsGradAdd, bnStatsGradRange)
	t.a = a
	t.y[0] = dx
	t.x[0], t.x[1], t.x[2], t.x[3], t.x[4] = dmean, dvar, x, mean, acc
	t.spread(rowsOf(a).count, 3*a.Len())
}

// BNStatsGradPart is BNStatsGrad (BNStatsGradAdd when acc is not nil) of
// the a.N images in the slices, part of a batch whose statistics counted
// count elements per channel (M), on the calling goroutine: the prologue
// a convolution's backward runs on each image before its kernels read it.
// dx may be x or acc.
func BNStatsGradPart(dx, dmean, dvar, x, mean, acc []float32, a Act, count int) {
	mustAct("BNStatsGradPart", a)
	mustLen("BNStatsGradPart", "dx", dx, a.Len())
	mustLen("BNStatsGradPart", "x", x, a.Len())
	if acc != nil {
		mustLen("BNStatsGradPart", "acc", acc, a.Len())
	}
	vecs("BNStatsGradPart", a.C, dmean, dvar, mean)
	if count < 1 {
		panic(fmt.Sprintf("BUG: nn.BNStatsGradPart: count %d, want at least 1", count))
	}
	r := rowsOf(a)
	bnStatsGradRows(dx, dmean, dvar, x, mean, acc, r, float64(count), 0, r.count)
}

func bnStatsGradRange(t *opTask, _, lo, hi int) {
	r := rowsOf(t.a)
	bnStatsGradRows(t.y[0], t.x[0], t.x[1], t.x[2], t.x[3], t.x[4], r, float64(t.a.N*r.pix), lo, hi)
}

// bnStatsGradRows runs rows [lo, hi) of r with m elements per channel.
func bnStatsGradRows(dx, dmean, dvar, x, mean, acc []float32, r rows, m float64, lo, hi int) {
	for u := lo; u < hi; u++ {
		var a, b [8]float32
		ch0 := r.first(u)
		for l := range r.lanes {
			ch := ch0 + l
			a[l], b[l] = float32(2*float64(dvar[ch])/m), float32(float64(dmean[ch])/m)
		}
		r.spreadLanes(&a)
		r.spreadLanes(&b)
		mu := r.lanesOf(mean, ch0)
		from, to := u*r.size, (u+1)*r.size
		if acc != nil {
			shiftAffineAddRow(dx[from:to], x[from:to], acc[from:to], &mu, &a, &b)
		} else {
			shiftAffineRow(dx[from:to], x[from:to], &mu, &a, &b)
		}
	}
}

// AffineReLU sets y = max(scale[c]*x + shift[c], 0), keeping NaN: a
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
		ch0 := r.first(u)
		s, b := r.lanesOf(scale, ch0), r.lanesOf(shift, ch0)
		from, to := u*r.size, (u+1)*r.size
		affineReLURow(y[from:to], x[from:to], &s, &b)
	}
}

// AffineReLUGrad computes the gradient of AffineReLU: with
// m = [scale[c]*x + shift[c] > 0], dx = da*m*scale[c],
// dscale[c] = Σ da*m*x and dshift[c] = Σ da*m, the sums in float64 over
// the rows. Wide scratch: 2*C per worker. dx may be da.
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

// AffineReLUGradAdd is AffineReLUGrad adding acc to dx: dx = acc +
// da*m*scale[c], the gradient x already had plus this one. dx may be da
// or acc.
func AffineReLUGradAdd(c *Ctx, dx, dscale, dshift, da, x, scale, shift, acc []float32, a Act) {
	mustAct("AffineReLUGradAdd", a)
	n, C := a.Len(), a.C
	mustLen("AffineReLUGradAdd", "dx", dx, n)
	mustLen("AffineReLUGradAdd", "da", da, n)
	mustLen("AffineReLUGradAdd", "x", x, n)
	mustLen("AffineReLUGradAdd", "acc", acc, n)
	vecs("AffineReLUGradAdd", C, dscale, dshift, scale, shift)
	c.clearWide("AffineReLUGradAdd", 2*C)
	t := c.opTaskFor(keyAffineReLUGradAdd, affineReLUGradRange)
	t.a = a
	t.y[0] = dx
	t.x[0], t.x[1], t.x[2], t.x[3], t.x[4] = da, x, scale, shift, acc
	t.spread(rowsOf(a).count, 4*n)
	tot := c.sumWide(2 * C)
	for ch := range C {
		dscale[ch] = float32(tot[ch])
		dshift[ch] = float32(tot[C+ch])
	}
}

// AffineReLUGradPart is AffineReLUGrad (AffineReLUGradAdd when acc is
// not nil) of the a.N images in the slices, on the calling goroutine: it
// writes dx and adds the per-channel sums into part, 2*C float64s (the
// dscale sums, then the dshift sums), without rounding them. It is the
// epilogue a backward-data convolution runs on each image it has just
// computed, while da is in cache: workers that split a batch keep a
// part each and add the parts in a fixed order. dx may be da or acc.
func AffineReLUGradPart(dx, da, x, scale, shift, acc []float32, part []float64, a Act) {
	mustAct("AffineReLUGradPart", a)
	n, C := a.Len(), a.C
	mustLen("AffineReLUGradPart", "dx", dx, n)
	mustLen("AffineReLUGradPart", "da", da, n)
	mustLen("AffineReLUGradPart", "x", x, n)
	if acc != nil {
		mustLen("AffineReLUGradPart", "acc", acc, n)
	}
	vecs("AffineReLUGradPart", C, scale, shift)
	if len(part) != 2*C {
		panic(fmt.Sprintf("BUG: nn.AffineReLUGradPart: part has %d elements, want %d", len(part), 2*C))
	}
	affineReLUGradRows(dx, da, x, scale, shift, acc, part, rowsOf(a), 0, rowsOf(a).count)
}

func affineReLUGradRange(t *opTask, w, lo, hi int) {
	affineReLUGradRows(t.y[0], t.x[0], t.x[1], t.x[2], t.x[3], t.x[4], t.c.wide[w][:2*t.a.C], rowsOf(t.a), lo, hi)
}

// affineReLUGradRows runs rows [lo, hi) of r, adding their sums into part.
func affineReLUGradRows(dx, da, x, scale, shift, acc []float32, part []float64, r rows, lo, hi int) {
	C := r.groups * r.lanes
	for u := lo; u < hi; u++ {
		ch0 := r.first(u)
		s, b := r.lanesOf(scale, ch0), r.lanesOf(shift, ch0)
		var sums [16]float64
		from, to := u*r.size, (u+1)*r.size
		if acc != nil {
			affineReLUGradAddRow(dx[from:to], da[from:to], x[from:to], acc[from:to], &s, &b, &sums)
		} else {
			affineReLUGradRow(dx[from:to], da[from:to], x[from:to], &s, &b, &sums)
		}
		r.fold(part[ch0:], sums[:8])
		r.fold(part[C+ch0:], sums[8:])
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
		ch0 := r.first(u)
		s, q := r.lanesOf(dsum, ch0), r.lanesOf(dsumsq, ch0)
		from, to := u*r.size, (u+1)*r.size
		statsGradRow(dy[from:to], y[from:to], &s, &q)
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

package interp

import (
	"math"

	"github.com/resnetc/resnetc/ir"
)

// The fused and layout ops that BN folding, BN-ReLU-conv fusion and the
// layout pass introduce. Each is written as the composition of the plain
// formulas it stands for, so that a pass that rewrites plain ops into fused
// ones can be checked against this package op for op.

// positive is the rectifier used by every ReLU here: max(v, 0), with a NaN
// kept so that a diverged step shows (as relu does).
func positive(v float64) float64 {
	if v <= 0 {
		return 0
	}
	return v
}

// prologue returns the tensor a conv2d_fused or conv2d_dw_fused convolves:
// x itself (none), max(x, 0) (relu), or max(scale[c]*x + shift[c], 0)
// (affine_relu, scale and shift being the two arguments after x's). The
// conv's zero padding is applied to this tensor, not to x: a padded
// position contributes 0 whatever the prologue.
func prologue(kind string, x, scale, shift *Tensor) *Tensor {
	switch kind {
	case "none":
		return x
	case "relu":
		a := NewTensor(x.Shape...)
		for i, v := range x.Data {
			a.Data[i] = positive(v)
		}
		return a
	case "affine_relu":
		a := NewTensor(x.Shape...)
		affineReLUInto(x, scale.Data, shift.Data, a)
		return a
	}
	panic("BUG: interp: prologue " + kind + " passed the op table's check")
}

// affineReLUInto sets a = max(scale[c]*x + shift[c], 0), c the channel
// (axis 1) of each element of x (rank 2 or 4).
func affineReLUInto(x *Tensor, scale, shift []float64, a *Tensor) {
	N, C, S := chanView(x.Shape)
	for n := range N {
		for c := range C {
			for k := range S {
				i := (n*C+c)*S + k
				a.Data[i] = positive(scale[c]*x.Data[i] + shift[c])
			}
		}
	}
}

// conv2dFused(x, w, [b], [scale, shift], [r]) {stride, pad, prologue, bias,
// residual, relu, stats} -> y [, sum, sumsq]:
//
//	a = prologue(x)
//	z = conv2d(a, w) + b[o] + r     (b and r when present)
//	y = relu ? max(z, 0) : z
//	sum[o] = Σ_{n,i,j} y[n,o,i,j],  sumsq[o] = Σ_{n,i,j} y[n,o,i,j]²   (with stats)
//
// Every sum is one float64 accumulation; y is what Options.Float32 rounds,
// the sums are of the unrounded y.
func conv2dFused(op *ir.Op, a, out []*Tensor, _ Options) error {
	x, w := a[0], a[1]
	i := 2
	var b []float64
	if op.Bool("bias") {
		b = a[i].Data
		i++
	}
	var scale, shift *Tensor
	kind := op.Str("prologue")
	if kind == "affine_relu" {
		scale, shift = a[i], a[i+1]
		i += 2
	}
	var r *Tensor
	if op.Bool("residual") {
		r = a[i]
	}
	y := out[0]
	convolve(prologue(kind, x, scale, shift), w, b, op.Int("stride"), op.Int("pad"), y)
	if r != nil {
		for k := range y.Data {
			y.Data[k] += r.Data[k]
		}
	}
	if op.Bool("relu") {
		for k, v := range y.Data {
			y.Data[k] = positive(v)
		}
	}
	if op.Bool("stats") {
		N, C, S := chanView(y.Shape)
		for c := range C {
			var sum, sumsq float64
			for n := range N {
				for _, v := range y.Data[(n*C+c)*S:][:S] {
					sum += v
					sumsq += v * v
				}
			}
			out[1].Data[c], out[2].Data[c] = sum, sumsq
		}
	}
	return nil
}

// bnFold(w, [b], mean, var, gamma, beta) {eps} -> (w', b') folds an
// inference BatchNorm into the conv (or linear layer) before it, with
// s = gamma/sqrt(var+eps):
//
//	w'[o,...] = w[o,...]*s[o]
//	b'[o]     = (b[o] - mean[o])*s[o] + beta[o]     (b = 0 when absent)
func bnFold(op *ir.Op, a, out []*Tensor, _ Options) error {
	eps := op.Float("eps")
	w := a[0]
	var b []float64
	if len(a) == 6 {
		b = a[1].Data
	}
	st := a[len(a)-4:] // mean, var, gamma, beta
	mean, variance, gamma, beta := st[0].Data, st[1].Data, st[2].Data, st[3].Data
	wf, bf := out[0], out[1]
	K := w.Shape[0]
	per := len(w.Data) / K
	for o := range K {
		s := gamma[o] / math.Sqrt(variance[o]+eps)
		for k := range per {
			wf.Data[o*per+k] = w.Data[o*per+k] * s
		}
		bo := 0.0
		if b != nil {
			bo = b[o]
		}
		bf.Data[o] = (bo-mean[o])*s + beta[o]
	}
	return nil
}

// bnAffine(mean, var, gamma, beta) {eps} -> (scale, shift) is BatchNorm as
// a per-channel affine map: scale = gamma/sqrt(var+eps),
// shift = beta - mean*scale.
func bnAffine(op *ir.Op, a, out []*Tensor, _ Options) error {
	eps := op.Float("eps")
	mean, variance, gamma, beta := a[0].Data, a[1].Data, a[2].Data, a[3].Data
	for c := range mean {
		s := gamma[c] / math.Sqrt(variance[c]+eps)
		out[0].Data[c] = s
		out[1].Data[c] = beta[c] - mean[c]*s
	}
	return nil
}

// moments(sum, sumsq) {count} -> (mean, var): mean = sum/count and the
// biased var = sumsq/count - mean², the batch statistics from the sums a
// stats epilogue accumulated.
func moments(op *ir.Op, a, out []*Tensor, _ Options) error {
	m := float64(op.Int("count"))
	for c, s := range a[0].Data {
		mean := s / m
		out[0].Data[c] = mean
		out[1].Data[c] = a[1].Data[c]/m - mean*mean
	}
	return nil
}

// affineReLU(x, scale, shift) is max(scale[c]*x + shift[c], 0).
func affineReLU(_ *ir.Op, a, out []*Tensor, _ Options) error {
	affineReLUInto(a[0], a[1].Data, a[2].Data, out[0])
	return nil
}

// relayout(x) {layout} is the identity: tensors here are always in logical
// order, and a layout only changes how generated code stores them.
func relayout(_ *ir.Op, a, out []*Tensor, _ Options) error {
	copy(out[0].Data, a[0].Data)
	return nil
}

// conv2dDwFused(dy, x, [scale, shift]) {stride, pad, kernel, prologue} is
// conv2d_dw(dy, prologue(x)): the weight gradient of conv2d_fused, with
// the prologue recomputed from x.
func conv2dDwFused(op *ir.Op, a, out []*Tensor, _ Options) error {
	var scale, shift *Tensor
	if len(a) == 4 {
		scale, shift = a[2], a[3]
	}
	convolveDw(a[0], prologue(op.Str("prologue"), a[1], scale, shift), op.Int("stride"), op.Int("pad"), out[0])
	return nil
}

// affineReLUGrad(da, x, scale, shift) -> (dx, dscale, dshift) is the
// gradient of affineReLU. With m = [scale[c]*x + shift[c] > 0]:
//
//	dx = da*m*scale[c],  dscale[c] = Σ da*m*x,  dshift[c] = Σ da*m
//
// the sums over every axis but the channel.
func affineReLUGrad(_ *ir.Op, a, out []*Tensor, _ Options) error {
	da, x, scale, shift := a[0], a[1], a[2].Data, a[3].Data
	dx, dscale, dshift := out[0], out[1], out[2]
	N, C, S := chanView(x.Shape)
	for c := range C {
		var ds, db float64
		for n := range N {
			for k := range S {
				i := (n*C+c)*S + k
				if scale[c]*x.Data[i]+shift[c] > 0 {
					dx.Data[i] = da.Data[i] * scale[c]
					ds += da.Data[i] * x.Data[i]
					db += da.Data[i]
				}
				if len(a) == 5 {
					dx.Data[i] += a[4].Data[i]
				}
			}
		}
		dscale.Data[c], dshift.Data[c] = ds, db
	}
	return nil
}

// bnAffineGrad(dscale, dshift, mean, var, gamma) {eps} -> (dmean, dvar,
// dgamma, dbeta) is the gradient of bnAffine. With inv = 1/sqrt(var+eps),
// scale = gamma*inv and shift = beta - mean*gamma*inv:
//
//	dmean  = -dshift*gamma*inv
//	dvar   = (dscale - mean*dshift)*gamma*(-1/2)*inv³
//	dgamma = (dscale - mean*dshift)*inv
//	dbeta  = dshift
func bnAffineGrad(op *ir.Op, a, out []*Tensor, _ Options) error {
	eps := op.Float("eps")
	dscale, dshift, mean, variance, gamma := a[0].Data, a[1].Data, a[2].Data, a[3].Data, a[4].Data
	for c := range mean {
		inv := 1 / math.Sqrt(variance[c]+eps)
		t := dscale[c] - mean[c]*dshift[c] // the gradient with respect to gamma*inv
		out[0].Data[c] = -dshift[c] * gamma[c] * inv
		out[1].Data[c] = t * gamma[c] * -0.5 * inv * inv * inv
		out[2].Data[c] = t * inv
		out[3].Data[c] = dshift[c]
	}
	return nil
}

// momentsGrad(dmean, dvar, mean) {count} -> (dsum, dsumsq) is the gradient
// of moments:
//
//	dsum = dmean/count - 2*mean*dvar/count,  dsumsq = dvar/count
func momentsGrad(op *ir.Op, a, out []*Tensor, _ Options) error {
	m := float64(op.Int("count"))
	dmean, dvar, mean := a[0].Data, a[1].Data, a[2].Data
	for c := range mean {
		out[0].Data[c] = dmean[c]/m - 2*mean[c]*dvar[c]/m
		out[1].Data[c] = dvar[c] / m
	}
	return nil
}

// statsGrad(dsum, dsumsq, y) is dsum[c] + 2*y*dsumsq[c]: the gradient that
// a stats epilogue (sum[c] = Σ y, sumsq[c] = Σ y²) sends back into y.
func statsGrad(_ *ir.Op, a, out []*Tensor, _ Options) error {
	dsum, dsumsq, y, dy := a[0].Data, a[1].Data, a[2], out[0]
	N, C, S := chanView(y.Shape)
	for n := range N {
		for c := range C {
			for k := range S {
				i := (n*C+c)*S + k
				dy.Data[i] = dsum[c] + 2*y.Data[i]*dsumsq[c]
			}
		}
	}
	return nil
}

package interp

import (
	"fmt"
	"math"

	"github.com/resnetc/resnetc/ir"
)

// chanView sees a rank-2 [N,C] or rank-4 [N,C,H,W] shape as [N, C, S], S
// being the elements per (example, channel): element (n, c, k) is at
// (n*C+c)*S + k.
func chanView(s ir.Shape) (n, c, size int) {
	size = 1
	for _, d := range s[2:] {
		size *= d
	}
	return s[0], s[1], size
}

// bnStats(x) -> (mean, var): per channel, over N (and H, W), the mean and
// the biased variance Σ(x-mean)²/M, M the elements per channel. Two passes,
// so the variance does not lose precision when the mean is large.
func bnStats(_ *ir.Op, a, out []*Tensor, _ Options) error {
	x, mean, variance := a[0], out[0], out[1]
	N, C, S := chanView(x.Shape)
	m := float64(N * S)
	for c := range C {
		sum := 0.0
		for n := range N {
			for k := range S {
				sum += x.Data[(n*C+c)*S+k]
			}
		}
		mu := sum / m
		sq := 0.0
		for n := range N {
			for k := range S {
				d := x.Data[(n*C+c)*S+k] - mu
				sq += d * d
			}
		}
		mean.Data[c] = mu
		variance.Data[c] = sq / m
	}
	return nil
}

// bnNorm(x, mean, var, gamma, beta) {eps} is
// gamma*(x-mean)/sqrt(var+eps) + beta, per channel.
func bnNorm(op *ir.Op, a, out []*Tensor, _ Options) error {
	eps := op.Float("eps")
	x, mean, variance, gamma, beta, y := a[0], a[1], a[2], a[3], a[4], out[0]
	N, C, S := chanView(x.Shape)
	for c := range C {
		inv := 1 / math.Sqrt(variance.Data[c]+eps)
		for n := range N {
			for k := range S {
				i := (n*C+c)*S + k
				y.Data[i] = gamma.Data[c]*(x.Data[i]-mean.Data[c])*inv + beta.Data[c]
			}
		}
	}
	return nil
}

// bnNormGrad(dy, x, mean, var, gamma) {eps} -> (dx, dmean, dvar, dgamma,
// dbeta) are the partial derivatives of bnNorm with mean and var treated as
// independent inputs (invstd = 1/sqrt(var+eps), xhat = (x-mean)*invstd):
//
//	dx     = dy*gamma*invstd
//	dmean  = -Σ dy*gamma*invstd
//	dvar   = Σ dy*gamma*(x-mean) * (-1/2)*(var+eps)^(-3/2)
//	dgamma = Σ dy*xhat
//	dbeta  = Σ dy
//
// In training, the batch statistics' own dependence on x is added by
// bnStatsGrad.
func bnNormGrad(op *ir.Op, a, out []*Tensor, _ Options) error {
	eps := op.Float("eps")
	dy, x, mean, variance, gamma := a[0], a[1], a[2], a[3], a[4]
	dx, dmean, dvar, dgamma, dbeta := out[0], out[1], out[2], out[3], out[4]
	N, C, S := chanView(x.Shape)
	for c := range C {
		ve := variance.Data[c] + eps
		inv := 1 / math.Sqrt(ve)
		g := gamma.Data[c]
		var sdy, sdyx float64 // Σ dy and Σ dy*(x-mean)
		for n := range N {
			for k := range S {
				i := (n*C+c)*S + k
				dx.Data[i] = dy.Data[i] * g * inv
				sdy += dy.Data[i]
				sdyx += dy.Data[i] * (x.Data[i] - mean.Data[c])
			}
		}
		dmean.Data[c] = -sdy * g * inv
		dvar.Data[c] = g * sdyx * -0.5 * inv / ve
		dgamma.Data[c] = sdyx * inv
		dbeta.Data[c] = sdy
	}
	return nil
}

// bnStatsGrad(dmean, dvar, x, mean, [acc]) is the gradient of bnStats with
// respect to x: dx = dmean/M + dvar*2*(x-mean)/M, M the elements per
// channel (the term through the mean inside the variance vanishes, since
// Σ(x-mean) = 0), plus acc when given: the gradient x already had.
func bnStatsGrad(_ *ir.Op, a, out []*Tensor, _ Options) error {
	dmean, dvar, x, mean, dx := a[0], a[1], a[2], a[3], out[0]
	N, C, S := chanView(x.Shape)
	m := float64(N * S)
	for c := range C {
		for n := range N {
			for k := range S {
				i := (n*C+c)*S + k
				dx.Data[i] = dmean.Data[c]/m + dvar.Data[c]*2*(x.Data[i]-mean.Data[c])/m
				if len(a) == 5 {
					dx.Data[i] += a[4].Data[i]
				}
			}
		}
	}
	return nil
}

// chanSum(x) sums over every axis but axis 1: the gradient of a
// per-channel bias.
func chanSum(_ *ir.Op, a, out []*Tensor, _ Options) error {
	x, y := a[0], out[0]
	N, C, S := chanView(x.Shape)
	for c := range C {
		sum := 0.0
		for n := range N {
			for k := range S {
				sum += x.Data[(n*C+c)*S+k]
			}
		}
		y.Data[c] = sum
	}
	return nil
}

// linear(x [N,C], w [K,C], b [K]) is x wᵀ + b.
func linear(_ *ir.Op, a, out []*Tensor, _ Options) error {
	x, w, b, y := a[0], a[1], a[2], out[0]
	N, C := x.Shape[0], x.Shape[1]
	K := w.Shape[0]
	for n := range N {
		for k := range K {
			sum := 0.0
			for c := range C {
				sum += x.Data[n*C+c] * w.Data[k*C+c]
			}
			y.Data[n*K+k] = sum + b.Data[k]
		}
	}
	return nil
}

// linearDx(dy [N,K], w [K,C]) is dy w, the gradient of linear with respect
// to x.
func linearDx(_ *ir.Op, a, out []*Tensor, _ Options) error {
	dy, w, dx := a[0], a[1], out[0]
	N, K := dy.Shape[0], dy.Shape[1]
	C := w.Shape[1]
	for n := range N {
		for c := range C {
			sum := 0.0
			for k := range K {
				sum += dy.Data[n*K+k] * w.Data[k*C+c]
			}
			dx.Data[n*C+c] = sum
		}
	}
	return nil
}

// linearDw(dy [N,K], x [N,C]) is dyᵀ x, the gradient of linear with
// respect to w.
func linearDw(_ *ir.Op, a, out []*Tensor, _ Options) error {
	dy, x, dw := a[0], a[1], out[0]
	N, K := dy.Shape[0], dy.Shape[1]
	C := x.Shape[1]
	for k := range K {
		for c := range C {
			sum := 0.0
			for n := range N {
				sum += dy.Data[n*K+k] * x.Data[n*C+c]
			}
			dw.Data[k*C+c] = sum
		}
	}
	return nil
}

// label returns example n's class, or an error when it is not an integer
// in [0, classes).
func label(labels *Tensor, n, classes int) (int, error) {
	v := labels.Data[n]
	if v != math.Trunc(v) || v < 0 || v >= float64(classes) {
		return 0, fmt.Errorf("label %v of example %d is outside [0, %d)", v, n, classes)
	}
	return int(v), nil
}

// logSumExp returns log Σ_k exp(z[k]), shifted by the maximum so that
// nothing overflows.
func logSumExp(z []float64) float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, v)
	}
	if math.IsInf(m, 0) {
		return m
	}
	sum := 0.0
	for _, v := range z {
		sum += math.Exp(v - m)
	}
	return m + math.Log(sum)
}

// softmaxCE(logits [N,K], labels) is the mean over n of
// logsumexp(z_n) - z_n[y_n].
func softmaxCE(_ *ir.Op, a, out []*Tensor, _ Options) error {
	z, labels := a[0], a[1]
	N, K := z.Shape[0], z.Shape[1]
	loss := 0.0
	for n := range N {
		y, err := label(labels, n, K)
		if err != nil {
			return err
		}
		row := z.Data[n*K : (n+1)*K]
		loss += logSumExp(row) - row[y]
	}
	out[0].Data[0] = loss / float64(N)
	return nil
}

// softmaxCEGrad(logits, labels) {scale} is scale*(softmax(z) - onehot(y))/N,
// the gradient of softmaxCE's mean loss times scale.
func softmaxCEGrad(op *ir.Op, a, out []*Tensor, _ Options) error {
	s := op.Float("scale")
	z, labels, dz := a[0], a[1], out[0]
	N, K := z.Shape[0], z.Shape[1]
	for n := range N {
		y, err := label(labels, n, K)
		if err != nil {
			return err
		}
		row := z.Data[n*K : (n+1)*K]
		lse := logSumExp(row)
		for k := range K {
			p := math.Exp(row[k] - lse)
			if k == y {
				p--
			}
			dz.Data[n*K+k] = s * p / float64(N)
		}
	}
	return nil
}

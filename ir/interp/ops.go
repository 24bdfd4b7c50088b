package interp

import (
	"math"

	"github.com/resnetc/resnetc/ir"
)

// kernel computes op's results into out, which Run has allocated with the
// result shapes and zeroed. Arguments have the shapes the op table checked.
// An error is a problem with the data (a label out of range), never with
// the graph.
type kernel func(op *ir.Op, a, out []*Tensor, opt Options) error

// kernels holds the implementation of every non-declaration op kind; a test
// checks that it covers ir.Kinds().
var kernels = map[ir.OpKind]kernel{
	ir.Conv2D:           conv2d,
	ir.Conv2DDx:         conv2dDx,
	ir.Conv2DDw:         conv2dDw,
	ir.BNStats:          bnStats,
	ir.BNNorm:           bnNorm,
	ir.BNNormGrad:       bnNormGrad,
	ir.BNStatsGrad:      bnStatsGrad,
	ir.EMA:              ema,
	ir.ReLU:             relu,
	ir.ReLUGrad:         reluGrad,
	ir.Sigmoid:          sigmoid,
	ir.SigmoidGrad:      sigmoidGrad,
	ir.Add:              add,
	ir.Mul:              mul,
	ir.Scale:            scale,
	ir.Dropout:          dropout,
	ir.SubsamplePad:     subsamplePad,
	ir.SubsamplePadGrad: subsamplePadGrad,
	ir.MaxPool:          maxPool,
	ir.MaxPoolGrad:      maxPoolGrad,
	ir.GAP:              gap,
	ir.GAPGrad:          gapGrad,
	ir.Linear:           linear,
	ir.LinearDx:         linearDx,
	ir.LinearDw:         linearDw,
	ir.ChanSum:          chanSum,
	ir.SoftmaxCE:        softmaxCE,
	ir.SoftmaxCEGrad:    softmaxCEGrad,
	ir.SGD:              sgd,

	ir.Conv2DFused:    conv2dFused,
	ir.BNFold:         bnFold,
	ir.BNAffine:       bnAffine,
	ir.Moments:        moments,
	ir.AffineReLU:     affineReLU,
	ir.Relayout:       relayout,
	ir.Conv2DDwFused:  conv2dDwFused,
	ir.AffineReLUGrad: affineReLUGrad,
	ir.BNAffineGrad:   bnAffineGrad,
	ir.MomentsGrad:    momentsGrad,
	ir.StatsGrad:      statsGrad,
}

// elementwise sets out[i] = f(a[0][i], a[1][i]) (the second argument is 0
// for a unary op).
func elementwise(a []*Tensor, out *Tensor, f func(x, y float64) float64) {
	for i := range out.Data {
		y := 0.0
		if len(a) > 1 {
			y = a[1].Data[i]
		}
		out.Data[i] = f(a[0].Data[i], y)
	}
}

// relu is max(x, 0); a NaN stays NaN so that a diverged step shows.
func relu(_ *ir.Op, a, out []*Tensor, _ Options) error {
	elementwise(a, out[0], func(x, _ float64) float64 {
		if x <= 0 {
			return 0
		}
		return x
	})
	return nil
}

// reluGrad(dy, y) passes dy where the ReLU's output y is positive.
func reluGrad(_ *ir.Op, a, out []*Tensor, _ Options) error {
	elementwise(a, out[0], func(dy, y float64) float64 {
		if y > 0 {
			return dy
		}
		return 0
	})
	return nil
}

// sigmoid is 1/(1+exp(-x)), evaluated so that exp never overflows.
func sigmoid(_ *ir.Op, a, out []*Tensor, _ Options) error {
	elementwise(a, out[0], func(x, _ float64) float64 { return sigmoidOf(x) })
	return nil
}

func sigmoidOf(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// sigmoidGrad(dy, y) is dy*y*(1-y), y the sigmoid's output.
func sigmoidGrad(_ *ir.Op, a, out []*Tensor, _ Options) error {
	for i := range out[0].Data {
		y := a[1].Data[i]
		out[0].Data[i] = a[0].Data[i] * y * (1 - y)
	}
	return nil
}

func add(_ *ir.Op, a, out []*Tensor, _ Options) error {
	elementwise(a, out[0], func(x, y float64) float64 { return x + y })
	return nil
}

func mul(_ *ir.Op, a, out []*Tensor, _ Options) error {
	elementwise(a, out[0], func(x, y float64) float64 { return x * y })
	return nil
}

// scale is factor*x + offset.
func scale(op *ir.Op, a, out []*Tensor, _ Options) error {
	f, o := op.Float("factor"), op.Float("offset")
	elementwise(a, out[0], func(x, _ float64) float64 { return f*x + o })
	return nil
}

// ema(run, stat) is (1-momentum)*run + momentum*scale*stat: the running
// statistics update (scale turns a biased batch variance into an unbiased
// one when the lowering asks for it).
func ema(op *ir.Op, a, out []*Tensor, _ Options) error {
	m, s := op.Float("momentum"), op.Float("scale")
	elementwise(a, out[0], func(run, stat float64) float64 { return (1-m)*run + m*s*stat })
	return nil
}

// dropout(x) {rate, seed} -> (y, mask): mask[i] = 1/(1-rate) if u_i >= rate
// else 0, and y = x*mask, where i is the element's index in logical
// (row-major NCHW) order and
//
//	u_i = float64(splitmix64(uint64(seed)*0x9E3779B97F4A7C15 +
//	        uint64(Step)*0xBF58476D1CE4E5B9 + uint64(i)) >> 11) / 2^53
//
// with wrapping uint64 arithmetic, splitmix64(x) being the standard
// finalizer applied to z = x + 0x9E3779B97F4A7C15:
//
//	z ^= z >> 30; z *= 0xBF58476D1CE4E5B9
//	z ^= z >> 27; z *= 0x94D049BB133111EB
//	z ^= z >> 31
//
// The mask is thus a pure function of (seed, Step, i): generated code
// reproduces it bit for bit, and the backward pass can recompute it.
func dropout(op *ir.Op, a, out []*Tensor, opt Options) error {
	rate := op.Float("rate")
	keep := 1 / (1 - rate)
	base := uint64(op.Int("seed"))*golden64 + uint64(opt.Step)*0xBF58476D1CE4E5B9
	x, y, mask := a[0], out[0], out[1]
	for i := range x.Data {
		if dropoutU(base, i) >= rate {
			mask.Data[i] = keep
		}
		y.Data[i] = x.Data[i] * mask.Data[i]
	}
	return nil
}

// dropoutU is u_i of dropout's formula, base being the seed and step terms.
func dropoutU(base uint64, i int) float64 {
	return float64(splitmix64(base+uint64(i))>>11) / (1 << 53)
}

// sgd(w, g, mom, lr) {momentum μ, decay λ} -> (w', mom'):
// mom' = μ*mom + g + λ*w; w' = w - lr*mom'.
func sgd(op *ir.Op, a, out []*Tensor, _ Options) error {
	mu, decay := op.Float("momentum"), op.Float("decay")
	w, g, mom, lr := a[0].Data, a[1].Data, a[2].Data, a[3].Data[0]
	for i := range w {
		m := mu*mom[i] + g[i] + decay*w[i]
		out[1].Data[i] = m
		out[0].Data[i] = w[i] - lr*m
	}
	return nil
}

package passes

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/interp"
	"github.com/resnetc/resnetc/ir/resnet"
)

// The gradients the autodiff pass emits are checked against central finite
// differences, (f(x+h) - f(x-h)) / 2h, computed by the interpreter in
// float64. With h = 1e-5 the truncation error (h^2/6 times the third
// derivative) and the rounding error (about eps*|f|/h) are both ~1e-10, so
// an element passes when
//
//	|analytic - fd| <= fdRelTol * max(|analytic|, |fd|) + fdAbsTol
//
// with fdRelTol = 1e-5 and fdAbsTol = 1e-8. Op inputs are kept away from
// ReLU kinks (|x| >= 0.05, far beyond h) and maxpool windows of random
// values have no ties; for whole networks see fdCheck.
const (
	fdStep   = 1e-5
	fdRelTol = 1e-5
	fdAbsTol = 1e-8
)

// fdClose reports whether an analytic gradient matches a finite difference.
func fdClose(analytic, fd float64) bool {
	return math.Abs(analytic-fd) <= fdRelTol*max(math.Abs(analytic), math.Abs(fd))+fdAbsTol
}

// centralDiff returns the central difference with step h of f with
// respect to element i of feeds[name], restoring the element afterwards.
func centralDiff(feeds map[string]*interp.Tensor, name string, i int, h float64, f func() float64) float64 {
	x := feeds[name].Data
	v := x[i]
	x[i] = v + h
	fp := f()
	x[i] = v - h
	fm := f()
	x[i] = v
	return (fp - fm) / (2 * h)
}

// fdCheck compares an analytic derivative with the central difference of
// f at fdStep. Random networks have hundreds of ReLU inputs, and one of
// them may lie within fdStep of the kink, where the difference quotient
// straddles it; so a mismatch is retried once at fdStep/100 (rounding error
// ~1e-9, still within tolerance). A wrong gradient fails both. It returns
// the finite difference used and whether it matches.
func fdCheck(feeds map[string]*interp.Tensor, name string, i int, analytic float64, f func() float64) (float64, bool) {
	fd := centralDiff(feeds, name, i, fdStep, f)
	if fdClose(analytic, fd) {
		return fd, true
	}
	fd = centralDiff(feeds, name, i, fdStep/100, f)
	return fd, fdClose(analytic, fd)
}

// opBuilder builds the one-op graphs of TestGradCheckOps and their feeds.
type opBuilder struct {
	g      *ir.Graph
	feeds  map[string]*interp.Tensor
	params []*ir.Value
	seed   uint64
}

// param declares a param fed with values uniform in [lo, hi), pushed away
// from zero by at least 0.05 (ReLU kinks).
func (b *opBuilder) param(name string, lo, hi float64, shape ...int) *ir.Value {
	v := b.g.Decl(ir.Param, name, ir.T32(shape...), nil)
	b.seed++
	t := interp.Random(b.seed, lo, hi, shape...)
	for i, x := range t.Data {
		if math.Abs(x) < 0.05 {
			t.Data[i] = math.Copysign(0.05, x) + x
		}
	}
	b.feeds[name] = t
	b.params = append(b.params, v)
	return v
}

// x declares a param with values in [-1, 1).
func (b *opBuilder) x(name string, shape ...int) *ir.Value { return b.param(name, -1, 1, shape...) }

func (b *opBuilder) op(kind ir.OpKind, attrs ir.Attrs, args ...*ir.Value) *ir.Op {
	return b.g.MustOp(kind, string(kind), attrs, args...)
}

// opCase is one forward op under test: build declares its inputs and
// returns the values whose gradient is seeded, each with a random seed, or
// with nil when loss is set (a softmaxce loss).
type opCase struct {
	name  string
	kind  ir.OpKind
	loss  bool
	build func(b *opBuilder) []*ir.Value
}

var opCases = []opCase{
	{"conv2d/3x3-bias", ir.Conv2D, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.Conv2D, ir.Attrs{"pad": 1}, b.x("x", 2, 3, 4, 4), b.x("w", 2, 3, 3, 3), b.x("b", 2)).Result()}
	}},
	{"conv2d/3x3-stride2-odd", ir.Conv2D, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.Conv2D, ir.Attrs{"pad": 1, "stride": 2}, b.x("x", 2, 2, 5, 5), b.x("w", 3, 2, 3, 3)).Result()}
	}},
	{"conv2d/1x1-stride2", ir.Conv2D, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.Conv2D, ir.Attrs{"stride": 2}, b.x("x", 2, 3, 4, 4), b.x("w", 4, 3, 1, 1), b.x("b", 4)).Result()}
	}},
	{"bnstats", ir.BNStats, false, func(b *opBuilder) []*ir.Value {
		return b.op(ir.BNStats, nil, b.x("x", 2, 3, 2, 2)).Results
	}},
	{"bnstats/rank2", ir.BNStats, false, func(b *opBuilder) []*ir.Value {
		return b.op(ir.BNStats, nil, b.x("x", 4, 3)).Results
	}},
	{"bnstats/mean-only", ir.BNStats, false, func(b *opBuilder) []*ir.Value {
		return b.op(ir.BNStats, nil, b.x("x", 2, 3, 2, 2)).Results[:1]
	}},
	{"bnstats/var-only", ir.BNStats, false, func(b *opBuilder) []*ir.Value {
		return b.op(ir.BNStats, nil, b.x("x", 2, 3, 2, 2)).Results[1:]
	}},
	{"bnnorm", ir.BNNorm, false, func(b *opBuilder) []*ir.Value {
		x := b.x("x", 2, 3, 2, 2)
		mean, vr := b.x("mean", 3), b.param("var", 0.5, 2, 3)
		return []*ir.Value{b.op(ir.BNNorm, ir.Attrs{"eps": 1e-3}, x, mean, vr, b.x("gamma", 3), b.x("beta", 3)).Result()}
	}},
	{"bnnorm/batch-stats", ir.BNNorm, false, func(b *opBuilder) []*ir.Value {
		// Training BatchNorm: the statistics depend on x too.
		x := b.x("x", 3, 2, 2, 2)
		st := b.op(ir.BNStats, nil, x)
		return []*ir.Value{b.op(ir.BNNorm, nil, x, st.Results[0], st.Results[1], b.x("gamma", 2), b.x("beta", 2)).Result()}
	}},
	{"relu", ir.ReLU, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.ReLU, nil, b.x("x", 2, 3, 2, 2)).Result()}
	}},
	{"sigmoid", ir.Sigmoid, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.Sigmoid, nil, b.param("x", -3, 3, 2, 3, 2, 2)).Result()}
	}},
	{"add", ir.Add, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.Add, nil, b.x("a", 2, 3), b.x("b", 2, 3)).Result()}
	}},
	{"add/same-argument", ir.Add, false, func(b *opBuilder) []*ir.Value {
		a := b.x("a", 2, 3)
		return []*ir.Value{b.op(ir.Add, nil, a, a).Result()}
	}},
	{"mul", ir.Mul, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.Mul, nil, b.x("a", 2, 3, 2, 2), b.x("b", 2, 3, 2, 2)).Result()}
	}},
	{"mul/reuse", ir.Mul, false, func(b *opBuilder) []*ir.Value {
		// a*a + a: three contributions to a's gradient, summed.
		a := b.x("a", 2, 3)
		sq := b.op(ir.Mul, nil, a, a).Result()
		return []*ir.Value{b.g.MustOp(ir.Add, "add", nil, sq, a).Result()}
	}},
	{"scale", ir.Scale, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.Scale, ir.Attrs{"factor": -2.5, "offset": 0.75}, b.x("x", 2, 3)).Result()}
	}},
	{"dropout", ir.Dropout, false, func(b *opBuilder) []*ir.Value {
		return b.op(ir.Dropout, ir.Attrs{"rate": 0.5, "seed": 7}, b.x("x", 2, 3, 4, 4)).Results[:1]
	}},
	{"subsample_pad", ir.SubsamplePad, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.SubsamplePad, ir.Attrs{"channels": 5}, b.x("x", 2, 3, 5, 5)).Result()}
	}},
	{"subsample_pad/stride1", ir.SubsamplePad, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.SubsamplePad, ir.Attrs{"channels": 4, "stride": 1}, b.x("x", 2, 2, 3, 3)).Result()}
	}},
	{"maxpool", ir.MaxPool, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.MaxPool, ir.Attrs{"kernel": 3, "stride": 2, "pad": 1}, b.x("x", 2, 2, 5, 5)).Result()}
	}},
	{"gap", ir.GAP, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.GAP, nil, b.x("x", 2, 3, 3, 2)).Result()}
	}},
	{"linear", ir.Linear, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.Linear, nil, b.x("x", 3, 4), b.x("w", 5, 4), b.x("b", 5)).Result()}
	}},
	{"softmaxce", ir.SoftmaxCE, true, func(b *opBuilder) []*ir.Value {
		logits := b.param("logits", -2, 2, 4, 3)
		labels := b.g.Decl(ir.Input, "labels", ir.Type{DType: ir.I32, Shape: ir.Shape{4}}, nil)
		b.feeds["labels"] = interp.Labels(11, 3, 4)
		return []*ir.Value{b.op(ir.SoftmaxCE, nil, logits, labels).Result()}
	}},

	// The fused ops of FuseBNReLUConv and the layout pass's relayout.
	{"conv2d_fused/bias-residual-relu", ir.Conv2DFused, false, func(b *opBuilder) []*ir.Value {
		a := ir.Attrs{"pad": 1, "bias": true, "residual": true, "relu": true}
		return b.op(ir.Conv2DFused, a, b.x("x", 2, 3, 4, 4), b.x("w", 3, 3, 3, 3), b.x("b", 3), b.x("r", 2, 3, 4, 4)).Results
	}},
	{"conv2d_fused/relu-prologue-stride2-stats", ir.Conv2DFused, false, func(b *opBuilder) []*ir.Value {
		a := ir.Attrs{"pad": 1, "stride": 2, "prologue": "relu", "stats": true}
		return b.op(ir.Conv2DFused, a, b.x("x", 2, 2, 5, 5), b.x("w", 3, 2, 3, 3)).Results
	}},
	{"conv2d_fused/affine-relu-prologue-everything", ir.Conv2DFused, false, func(b *opBuilder) []*ir.Value {
		a := ir.Attrs{"pad": 1, "prologue": "affine_relu", "bias": true, "residual": true, "relu": true, "stats": true}
		x, w, bias := b.x("x", 2, 3, 4, 4), b.x("w", 2, 3, 3, 3), b.x("b", 2)
		return b.op(ir.Conv2DFused, a, x, w, bias, b.x("scale", 3), b.x("shift", 3), b.x("r", 2, 2, 4, 4)).Results
	}},
	{"conv2d_fused/1x1-affine-relu-prologue-stride2", ir.Conv2DFused, false, func(b *opBuilder) []*ir.Value {
		a := ir.Attrs{"stride": 2, "prologue": "affine_relu"}
		return b.op(ir.Conv2DFused, a, b.x("x", 2, 3, 4, 4), b.x("w", 4, 3, 1, 1), b.x("scale", 3), b.x("shift", 3)).Results
	}},
	{"conv2d_fused/stats-only", ir.Conv2DFused, false, func(b *opBuilder) []*ir.Value {
		// Only the sums have gradients: the output's comes from stats_grad alone.
		op := b.op(ir.Conv2DFused, ir.Attrs{"pad": 1, "stats": true}, b.x("x", 2, 2, 3, 3), b.x("w", 2, 2, 3, 3))
		return op.Results[1:]
	}},
	{"conv2d_fused/sumsq-only", ir.Conv2DFused, false, func(b *opBuilder) []*ir.Value {
		op := b.op(ir.Conv2DFused, ir.Attrs{"relu": true, "stats": true}, b.x("x", 2, 2, 3, 3), b.x("w", 3, 2, 1, 1))
		return op.Results[2:]
	}},
	{"bnaffine", ir.BNAffine, false, func(b *opBuilder) []*ir.Value {
		mean, vr := b.x("mean", 3), b.param("var", 0.5, 2, 3)
		return b.op(ir.BNAffine, ir.Attrs{"eps": 1e-3}, mean, vr, b.x("gamma", 3), b.x("beta", 3)).Results
	}},
	{"bnaffine/scale-only", ir.BNAffine, false, func(b *opBuilder) []*ir.Value {
		mean, vr := b.x("mean", 3), b.param("var", 0.5, 2, 3)
		return b.op(ir.BNAffine, nil, mean, vr, b.x("gamma", 3), b.x("beta", 3)).Results[:1]
	}},
	{"moments", ir.Moments, false, func(b *opBuilder) []*ir.Value {
		return b.op(ir.Moments, ir.Attrs{"count": 6}, b.x("sum", 3), b.param("sumsq", 1, 3, 3)).Results
	}},
	{"moments/var-only", ir.Moments, false, func(b *opBuilder) []*ir.Value {
		return b.op(ir.Moments, ir.Attrs{"count": 4}, b.x("sum", 3), b.param("sumsq", 1, 3, 3)).Results[1:]
	}},
	{"moments/stats-epilogue-bnaffine", ir.Moments, false, func(b *opBuilder) []*ir.Value {
		// The training chain the fusion builds: conv sums, moments,
		// bnaffine, and the next conv's prologue reading the pre-BN tensor.
		conv := b.op(ir.Conv2DFused, ir.Attrs{"pad": 1, "stats": true}, b.x("x", 2, 2, 3, 3), b.x("w", 2, 2, 3, 3))
		m := b.op(ir.Moments, ir.Attrs{"count": 18}, conv.Results[1], conv.Results[2])
		aff := b.op(ir.BNAffine, nil, m.Results[0], m.Results[1], b.x("gamma", 2), b.x("beta", 2))
		a := ir.Attrs{"pad": 1, "prologue": "affine_relu"}
		return b.op(ir.Conv2DFused, a, conv.Results[0], b.x("w2", 2, 2, 3, 3), aff.Results[0], aff.Results[1]).Results
	}},
	{"affine_relu", ir.AffineReLU, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.AffineReLU, nil, b.x("x", 2, 3, 2, 2), b.x("scale", 3), b.x("shift", 3)).Result()}
	}},
	{"affine_relu/rank2", ir.AffineReLU, false, func(b *opBuilder) []*ir.Value {
		return []*ir.Value{b.op(ir.AffineReLU, nil, b.x("x", 4, 3), b.x("scale", 3), b.x("shift", 3)).Result()}
	}},
	{"relayout", ir.Relayout, false, func(b *opBuilder) []*ir.Value {
		y := b.op(ir.Relayout, ir.Attrs{"layout": "nchw8c"}, b.x("x", 1, 8, 2, 2))
		return []*ir.Value{b.op(ir.Scale, ir.Attrs{"factor": 2.0}, y.Result()).Result()}
	}},
}

// TestGradCheckOps checks the gradient rule of every differentiable op
// kind: for f(params) = sum_i <dy_i, y_i> with random seeds dy_i (or, for
// softmaxce, the loss itself), every element of every gradient Gradients
// returns matches the central difference of f.
func TestGradCheckOps(t *testing.T) {
	t.Parallel()
	for ci, c := range opCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := &opBuilder{g: ir.New(c.name, ir.Train), feeds: map[string]*interp.Tensor{}, seed: uint64(100 * ci)}
			ys := c.build(b)
			var dys []*ir.Value
			seeded := map[*ir.Value]string{} // y -> name of its dy input
			if c.loss {
				dys = []*ir.Value{nil}
			} else {
				for i, y := range ys {
					name := fmt.Sprintf("dy%d", i)
					dys = append(dys, b.g.Decl(ir.Input, name, y.Type, nil))
					b.feeds[name] = interp.Random(uint64(1000+i), -1, 1, y.Type.Shape...)
					seeded[y] = name
				}
			}
			n := len(b.g.Ops)
			grads, err := Gradients(b.g, ys, dys, b.params)
			if err != nil {
				t.Fatal(err)
			}
			if err := ir.Verify(b.g); err != nil {
				t.Fatalf("graph does not verify after Gradients: %v\n%s", err, ir.Print(b.g))
			}
			// The case's op is differentiated by the rules under test:
			// every emitted op is a gradient op, an add (sums) or, for
			// the rules that reuse forward kinds, mul or scale.
			if len(b.g.Ops) == n && c.kind != ir.Add {
				t.Fatalf("Gradients emitted no ops:\n%s", ir.Print(b.g))
			}
			f := func() float64 {
				res, err := interp.Run(b.g, b.feeds, interp.Options{Step: 5})
				if err != nil {
					t.Fatal(err)
				}
				if c.loss {
					return res.Values[ys[0]].Data[0]
				}
				s := 0.0
				for _, y := range ys {
					s += dot(res.Values[y].Data, b.feeds[seeded[y]].Data)
				}
				return s
			}
			res, err := interp.Run(b.g, b.feeds, interp.Options{Step: 5})
			if err != nil {
				t.Fatal(err)
			}
			checked, nonzero := 0, 0
			for i, p := range b.params {
				name := p.Def.Name
				got := res.Values[grads[i]]
				for j := range got.Data {
					fd, ok := fdCheck(b.feeds, name, j, got.Data[j], f)
					if !ok {
						t.Errorf("d/d %s[%d]: gradient %.12g, finite difference %.12g", name, j, got.Data[j], fd)
					}
					checked++
					if fd != 0 {
						nonzero++
					}
				}
			}
			if nonzero == 0 {
				t.Errorf("all %d finite differences are zero: the check tests nothing", checked)
			}
		})
	}
}

func dot(a, b []float64) float64 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("BUG: dot of %d and %d elements", len(a), len(b)))
	}
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// isGradientKind says, independently of the autodiff rules, which kinds of
// the op table belong to the backward pass or the optimizer.
func isGradientKind(k ir.OpKind) bool {
	s := string(k)
	return k == ir.SGD || k == ir.ChanSum || k == ir.Conv2DDwFused ||
		strings.HasSuffix(s, "_grad") || strings.HasSuffix(s, "_dx") || strings.HasSuffix(s, "_dw")
}

// TestGradCheckOpsCoverAllKinds checks that TestGradCheckOps tests every
// forward op kind of the op table but those autodiff declares not
// differentiable (ema, and bnfold of inference graphs), and every kind that
// has a gradient rule.
func TestGradCheckOpsCoverAllKinds(t *testing.T) {
	tested := map[ir.OpKind]bool{}
	for _, c := range opCases {
		tested[c.kind] = true
	}
	if _, ok := noGradient[ir.EMA]; !ok {
		t.Errorf("ema is not listed as not differentiable")
	}
	forward := 0
	for _, k := range ir.Kinds() {
		if k.IsDecl() || isGradientKind(k) {
			continue
		}
		if _, ok := noGradient[k]; ok {
			continue
		}
		forward++
		if !tested[k] {
			t.Errorf("op kind %s has no gradient check in opCases", k)
		}
	}
	for k := range gradRules {
		if !tested[k] {
			t.Errorf("the gradient rule of %s has no check in opCases", k)
		}
	}
	if forward < 14 {
		t.Errorf("only %d differentiable forward kinds in ir.Kinds()", forward)
	}
}

// unitVariants are every residual unit design: unit kind x activation
// order x shortcut x grow.
func unitVariants() []*resnet.Arch {
	kinds := []resnet.UnitKind{resnet.Basic, resnet.OneLayer, resnet.Bottleneck}
	orders := []resnet.Order{resnet.Original, resnet.BNAfterAdd, resnet.ReLUBeforeAdd, resnet.ReLUOnlyPreact, resnet.FullPreact}
	shortcuts := []resnet.Shortcut{
		{Kind: resnet.Identity},
		{Kind: resnet.Scale, ShortcutScale: 0.5, BranchScale: 0.75},
		{Kind: resnet.Gate, GateBias: -1},
		{Kind: resnet.ShortcutGate, GateBias: -1},
		{Kind: resnet.Conv1x1},
		{Kind: resnet.DropoutShort, DropRate: 0.5},
	}
	var archs []*resnet.Arch
	for _, k := range kinds {
		w := 4
		if k == resnet.Bottleneck {
			w = 8
		}
		for _, o := range orders {
			for _, sc := range shortcuts {
				for _, gr := range []resnet.Grow{resnet.GrowA, resnet.GrowB} {
					a := &resnet.Arch{
						Name:   fmt.Sprintf("%v/%v/%v/%v", k, o, sc.Kind, gr),
						InputH: 4, InputW: 4, InputC: 3, Classes: 3,
						Stem:     resnet.Stem{Kernel: 3, Stride: 1, Width: 4},
						Unit:     k,
						Order:    o,
						Shortcut: sc,
						Grow:     gr,
						// Stage 1 keeps the width (basic, 1-layer) or grows
						// it at stride 1 (bottleneck); stage 2 grows at
						// stride 2, then has a plain unit.
						Stages:     []resnet.Stage{{Units: 1, Width: w, Stride: 1}, {Units: 2, Width: 2 * w, Stride: 2}},
						BNEps:      1e-5,
						BNMomentum: 0.1,
					}
					a.Depth = k.LayersPerUnit()*a.Units() + 2
					archs = append(archs, a)
				}
			}
		}
	}
	return archs
}

// TestGradCheckUnits checks the training step of a tiny network for every
// unit variant: the gradient of the loss with respect to a sample of the
// elements of every param (the grad argument of its sgd op) against central
// differences of the loss computed on the forward graph, and the sgd update
// of every element against w' = w - lr*(0.9*m + g + 1e-4*w).
func TestGradCheckUnits(t *testing.T) {
	t.Parallel()
	const (
		batch   = 2
		samples = 3 // elements checked per param
		step    = 3
		lr      = 0.1
	)
	for vi, a := range unitVariants() {
		t.Run(a.Name, func(t *testing.T) {
			t.Parallel()
			tg, err := resnet.Lower(a, batch, ir.Train)
			if err != nil {
				t.Fatal(err)
			}
			if err := Autodiff(tg); err != nil {
				t.Fatal(err)
			}
			if err := ir.Verify(tg); err != nil {
				t.Fatal(err)
			}
			// The forward graph with the loss, for finite differences.
			fg, err := resnet.Lower(a, batch, ir.Train)
			if err != nil {
				t.Fatal(err)
			}
			logits := fg.Output("logits")
			labels := fg.Decl(ir.Input, "labels", ir.Type{DType: ir.I32, Shape: ir.Shape{batch}}, nil)
			fg.AddOutput("loss", fg.MustOp(ir.SoftmaxCE, "loss", nil, logits, labels).Result())

			seed := uint64(vi + 1)
			feeds := interp.Init(tg, seed)
			feeds["x"] = interp.Random(seed, -1, 1, batch, a.InputC, a.InputH, a.InputW)
			feeds["labels"] = interp.Labels(seed, a.Classes, batch)
			feeds["lr"] = &interp.Tensor{Shape: ir.Shape{}, Data: []float64{lr}}
			sgds := map[string]*ir.Op{}
			for _, op := range tg.Ops {
				if op.Kind == ir.SGD {
					sgds[op.Args[0].Def.Name] = op
					// Nonzero momentum, so that its term is checked.
					m := op.Args[2].Def.Name
					feeds[m] = interp.Random(seed+uint64(len(sgds)), -1, 1, op.Args[2].Type.Shape...)
				}
			}
			opt := interp.Options{Step: step}
			res, err := interp.Run(tg, feeds, opt)
			if err != nil {
				t.Fatal(err)
			}
			loss := func() float64 {
				r, err := interp.Run(fg, feeds, opt)
				if err != nil {
					t.Fatal(err)
				}
				return r.Outputs["loss"].Data[0]
			}
			if l0, l1 := res.Outputs["loss"].Data[0], loss(); l0 != l1 {
				t.Fatalf("loss of the training step %v, of the forward graph %v", l0, l1)
			}

			rng := rand.New(rand.NewPCG(seed, 1))
			params := tg.Decls(ir.Param)
			nonzero := 0
			for _, p := range params {
				sgd := sgds[p.Name]
				if sgd == nil {
					t.Fatalf("param %q has no sgd op", p.Name)
				}
				w := feeds[p.Name].Data
				m := feeds[sgd.Args[2].Def.Name].Data
				g := res.Values[sgd.Args[1]].Data
				wNew, mNew := res.Updates[p.Name].Data, res.Updates[sgd.Args[2].Def.Name].Data
				for i := range w {
					wantM := 0.9*m[i] + g[i] + 1e-4*w[i]
					wantW := w[i] - lr*wantM
					if !near(mNew[i], wantM) || !near(wNew[i], wantW) {
						t.Errorf("sgd of %s[%d]: w' = %v, m' = %v; want %v, %v", p.Name, i, wNew[i], mNew[i], wantW, wantM)
					}
				}
				idx := rng.Perm(len(w))[:min(samples, len(w))]
				for _, i := range idx {
					fd, ok := fdCheck(feeds, p.Name, i, g[i], loss)
					if !ok {
						t.Errorf("dloss/d %s[%d]: gradient %.12g, finite difference %.12g", p.Name, i, g[i], fd)
					}
					if fd != 0 {
						nonzero++
					}
				}
			}
			if nonzero < len(params) {
				t.Errorf("only %d nonzero finite differences for %d params: the check tests little", nonzero, len(params))
			}
			kinds := map[ir.OpKind]bool{}
			for _, op := range tg.Ops {
				kinds[op.Kind] = true
			}
			for _, k := range []ir.OpKind{ir.Conv2DDx, ir.Conv2DDw, ir.BNNormGrad, ir.BNStatsGrad, ir.SoftmaxCEGrad, ir.SGD} {
				if !kinds[k] {
					t.Errorf("training step has no %s op", k)
				}
			}
			emas := 0
			for _, u := range tg.Updates {
				if u.Value.Def.Kind == ir.EMA {
					emas++
				}
			}
			if emas == 0 || emas != len(fg.Updates) {
				t.Errorf("training step has %d running-statistics updates, the forward graph %d", emas, len(fg.Updates))
			}
		})
	}
}

// near compares two results of the same float64 formula evaluated in a
// different order.
func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*max(1, math.Abs(a), math.Abs(b)) }

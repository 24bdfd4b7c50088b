package codegen

import (
	"fmt"
	"math"

	"github.com/dave/jennifer/jen"

	"github.com/resnetc/resnetc/ir"
)

// Every op kind but the declarations and the convolution family runs on
// a shape-generic kernel of runtime/nn (elementwise.go, channel.go,
// dense.go, pool.go, optim.go) of the same name. A call passes the
// context, the results, then the arguments (each in the op's order), then
// shapes (nn.Act literals, plain ints) and attributes as Go constants.

// denseOps are the writers of those kinds, registered in init.
var denseOps = map[ir.OpKind]opImpl{
	ir.ReLU:        {emit: emitUnary("ReLU")},
	ir.Sigmoid:     {emit: emitUnary("Sigmoid")},
	ir.Add:         {emit: emitUnary("Add")},
	ir.Mul:         {emit: emitUnary("Mul")},
	ir.ReLUGrad:    {emit: emitUnary("ReLUGrad")},
	ir.SigmoidGrad: {emit: emitUnary("SigmoidGrad")},
	ir.Scale:       {emit: emitScale},
	ir.Dropout:     {emit: emitDropout},

	ir.BNStats:        {emit: emitActOf("BNStats", arg(0)), scratch: wideChannels(2, arg(0))},
	ir.BNNorm:         {emit: emitActOf("BNNorm", arg(0), "eps")},
	ir.BNNormGrad:     {emit: emitActOf("BNNormGrad", arg(1), "eps"), scratch: wideChannels(2, arg(1))},
	ir.BNStatsGrad:    {emit: emitBNStatsGrad},
	ir.ChanSum:        {emit: emitActOf("ChanSum", arg(0)), scratch: wideChannels(1, arg(0))},
	ir.AffineReLU:     {emit: emitActOf("AffineReLU", arg(0))},
	ir.AffineReLUGrad: {emit: emitAffineReLUGrad, scratch: wideChannels(2, arg(1))},
	ir.StatsGrad:      {emit: emitActOf("StatsGrad", arg(2))},
	ir.GAP:            {emit: emitActOf("GAP", arg(0))},
	ir.GAPGrad:        {emit: emitActOf("GAPGrad", result(0))},
	ir.Relayout:       {emit: emitRelayout},
	ir.BNFold:         {emit: emitBNFold},

	ir.EMA:          {emit: emitVector("EMA", "momentum", "scale")},
	ir.BNAffine:     {emit: emitVector("BNAffine", "eps")},
	ir.BNAffineGrad: {emit: emitVector("BNAffineGrad", "eps")},
	ir.Moments:      {emit: emitVector("Moments", "count")},
	ir.MomentsGrad:  {emit: emitVector("MomentsGrad", "count")},
	ir.SGD:          {emit: emitVector("SGD", "momentum", "decay")},

	ir.Linear:        {emit: emitLinear("Linear")},
	ir.LinearDx:      {emit: emitLinear("LinearDx"), scratch: wideLinear},
	ir.LinearDw:      {emit: emitLinear("LinearDw"), scratch: wideLinear},
	ir.SoftmaxCE:     {emit: emitSoftmaxCE("SoftmaxCE"), scratch: func(*ir.Op) (int, int) { return 0, 1 }},
	ir.SoftmaxCEGrad: {emit: emitSoftmaxCE("SoftmaxCEGrad", "scale")},

	ir.SubsamplePad:     {emit: emitSubsamplePad("SubsamplePad")},
	ir.SubsamplePadGrad: {emit: emitSubsamplePad("SubsamplePadGrad")},
	ir.MaxPool:          {emit: emitMaxPool},
	ir.MaxPoolGrad:      {emit: emitMaxPool, scratch: wideMaxPoolGrad},
}

func init() {
	for k, impl := range denseOps {
		registerOp(k, impl)
	}
}

// nnCall is the call nn.name(ctx, results..., args..., extra...).
func nnCall(name string, c *OpCall, extra ...jen.Code) jen.Code {
	args := append([]jen.Code{c.Ctx}, c.Results...)
	args = append(args, c.Args...)
	return jen.Qual(nnPkg, name).Call(append(args, extra...)...)
}

// attrLits returns op's attributes as Go literals: ints as ints, floats
// as floats (an error if not finite: no Go literal spells them).
func attrLits(op *ir.Op, names ...string) ([]jen.Code, error) {
	var lits []jen.Code
	for _, n := range names {
		spec := attrSpecOf(op, n)
		if spec == nil {
			panic(fmt.Sprintf("BUG: codegen: op %s has no attribute %s", op, n))
		}
		switch spec.Type {
		case ir.AttrInt:
			lits = append(lits, jen.Lit(op.Int(n)))
		case ir.AttrFloat:
			f := op.Float(n)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("op %s %q: attribute %s=%v is not a finite number", op.Kind, op.Name, n, f)
			}
			lits = append(lits, jen.Lit(f))
		default:
			panic(fmt.Sprintf("BUG: codegen: attribute %s of %s is a %v", n, op, spec.Type))
		}
	}
	return lits, nil
}

func attrSpecOf(op *ir.Op, name string) *ir.AttrSpec {
	info := ir.Info(op.Kind)
	if info == nil {
		return nil
	}
	for i := range info.Attrs {
		if info.Attrs[i].Name == name {
			return &info.Attrs[i]
		}
	}
	return nil
}

// sameLayout returns an error unless every value is stored like the
// first: the kernels describe them all with one nn.Act.
func sameLayout(op *ir.Op, vs ...*ir.Value) error {
	for _, v := range vs[1:] {
		if v.Type.Layout != vs[0].Type.Layout {
			return fmt.Errorf("op %s %q: operands stored as %v and %v; the kernel needs one layout", op.Kind, op.Name, vs[0].Type, v.Type)
		}
	}
	return nil
}

// emitUnary writes an elementwise kernel's call:
// nn.name(ctx, y, args..., act).
func emitUnary(name string) func(c *OpCall) (jen.Code, error) {
	return func(c *OpCall) (jen.Code, error) {
		if err := sameLayout(c.Op, append([]*ir.Value{c.Op.Results[0]}, c.Op.Args...)...); err != nil {
			return nil, err
		}
		return nnCall(name, c, act(c.Op.Results[0])), nil
	}
}

func emitScale(c *OpCall) (jen.Code, error) {
	if err := sameLayout(c.Op, c.Op.Results[0], c.Op.Args[0]); err != nil {
		return nil, err
	}
	lits, err := attrLits(c.Op, "factor", "offset")
	if err != nil {
		return nil, err
	}
	return nnCall("Scale", c, append([]jen.Code{act(c.Op.Results[0])}, lits...)...), nil
}

// emitDropout writes nn.Dropout(ctx, y, mask, x, step, act, rate, seed).
func emitDropout(c *OpCall) (jen.Code, error) {
	op := c.Op
	if err := sameLayout(op, op.Results[0], op.Results[1], op.Args[0]); err != nil {
		return nil, err
	}
	lits, err := attrLits(op, "rate", "seed")
	if err != nil {
		return nil, err
	}
	return nnCall("Dropout", c, append([]jen.Code{c.Step, act(op.Args[0])}, lits...)...), nil
}

// pick chooses the value of an op that describes a kernel's activation.
type pick func(op *ir.Op) *ir.Value

func arg(i int) pick    { return func(op *ir.Op) *ir.Value { return op.Args[i] } }
func result(i int) pick { return func(op *ir.Op) *ir.Value { return op.Results[i] } }

// emitActOf writes nn.name(ctx, results..., args..., act, attrs...) for a
// per-channel kernel, act describing the value v picks: every activation
// operand of the op is stored like v.
func emitActOf(name string, v pick, attrs ...string) func(c *OpCall) (jen.Code, error) {
	return func(c *OpCall) (jen.Code, error) {
		op := c.Op
		a := v(op)
		for _, o := range append(append([]*ir.Value{}, op.Args...), op.Results...) {
			if len(o.Type.Shape) == 4 && o.Type.Layout != a.Type.Layout {
				return nil, fmt.Errorf("op %s %q: operands stored as %v and %v; the kernel needs one layout", op.Kind, op.Name, a.Type, o.Type)
			}
		}
		lits, err := attrLits(op, attrs...)
		if err != nil {
			return nil, err
		}
		return nnCall(name, c, append([]jen.Code{act(a)}, lits...)...), nil
	}
}

// emitBNStatsGrad writes nn.BNStatsGrad, or nn.BNStatsGradAdd when the op
// adds its result to a gradient it is given.
func emitBNStatsGrad(c *OpCall) (jen.Code, error) {
	if len(c.Op.Args) == 5 {
		return emitActOf("BNStatsGradAdd", arg(2))(c)
	}
	return emitActOf("BNStatsGrad", arg(2))(c)
}

// emitAffineReLUGrad writes nn.AffineReLUGrad, or nn.AffineReLUGradAdd
// when the op adds its dx to a gradient it is given.
func emitAffineReLUGrad(c *OpCall) (jen.Code, error) {
	if len(c.Op.Args) == 5 {
		return emitActOf("AffineReLUGradAdd", arg(1))(c)
	}
	return emitActOf("AffineReLUGrad", arg(1))(c)
}

// wideChannels is the scratch of a per-channel reduction over the
// activation v picks: k float64s per channel, per worker.
func wideChannels(k int, v pick) func(op *ir.Op) (int, int) {
	return func(op *ir.Op) (int, int) { return 0, k * v(op).Type.Shape[1] }
}

// emitRelayout writes nn.Relayout(ctx, y, x, yAct, xAct).
func emitRelayout(c *OpCall) (jen.Code, error) {
	return nnCall("Relayout", c, act(c.Op.Results[0]), act(c.Op.Args[0])), nil
}

// emitBNFold writes nn.BNFold(ctx, wf, bf, w, b, mean, var, gamma, beta,
// outputs, perOutput, eps), b nil when the op has none.
func emitBNFold(c *OpCall) (jen.Code, error) {
	op := c.Op
	w := op.Args[0]
	if w.Type.Layout != ir.NCHW || op.Results[0].Type.Layout != ir.NCHW {
		return nil, fmt.Errorf("op %s %q: weights %v must be stored plain [out][...]", op.Kind, op.Name, w.Type)
	}
	lits, err := attrLits(op, "eps")
	if err != nil {
		return nil, err
	}
	args := append([]jen.Code{c.Ctx}, c.Results...)
	args = append(args, c.Args[0])
	if len(c.Args) == 6 {
		args = append(args, c.Args[1])
	} else {
		args = append(args, jen.Nil())
	}
	args = append(args, c.Args[len(c.Args)-4:]...)
	k := w.Type.Shape[0]
	args = append(args, jen.Lit(k), jen.Lit(w.Type.Shape.Elems()/k), lits[0])
	return jen.Qual(nnPkg, "BNFold").Call(args...), nil
}

// emitVector writes a kernel on flat vectors (per-channel statistics,
// weights): nn.name(ctx, results..., args..., n, attrs...), n the length
// of the first argument.
func emitVector(name string, attrs ...string) func(c *OpCall) (jen.Code, error) {
	return func(c *OpCall) (jen.Code, error) {
		lits, err := attrLits(c.Op, attrs...)
		if err != nil {
			return nil, err
		}
		n := c.Op.Args[0].Type.Shape.Elems()
		return nnCall(name, c, append([]jen.Code{jen.Lit(n)}, lits...)...), nil
	}
}

// emitLinear writes nn.name(ctx, result, args..., batch, in, out) for
// linear (x [batch,in], w [out,in]), linear_dx (dy [batch,out], w) and
// linear_dw (dy, x [batch,in]).
func emitLinear(name string) func(c *OpCall) (jen.Code, error) {
	return func(c *OpCall) (jen.Code, error) {
		a0, a1 := c.Op.Args[0].Type.Shape, c.Op.Args[1].Type.Shape
		var batch, in, out int
		switch c.Op.Kind {
		case ir.Linear:
			batch, in, out = a0[0], a0[1], a1[0]
		case ir.LinearDx, ir.LinearDw:
			batch, out, in = a0[0], a0[1], a1[1]
		default:
			panic(fmt.Sprintf("BUG: codegen: emitLinear(%s)", c.Op))
		}
		return nnCall(name, c, jen.Lit(batch), jen.Lit(in), jen.Lit(out)), nil
	}
}

// wideLinear is the scratch of linear_dx and linear_dw: one row of in
// float64s per worker (in is the second argument's last dimension: w's
// for linear_dx, x's for linear_dw).
func wideLinear(op *ir.Op) (int, int) { return 0, op.Args[1].Type.Shape[1] }

// emitSoftmaxCE writes nn.name(ctx, result, logits, labels, batch,
// classes, attrs...).
func emitSoftmaxCE(name string, attrs ...string) func(c *OpCall) (jen.Code, error) {
	return func(c *OpCall) (jen.Code, error) {
		lits, err := attrLits(c.Op, attrs...)
		if err != nil {
			return nil, err
		}
		s := c.Op.Args[0].Type.Shape
		return nnCall(name, c, append([]jen.Code{jen.Lit(s[0]), jen.Lit(s[1])}, lits...)...), nil
	}
}

// emitSubsamplePad writes nn.name(ctx, out, in, outAct, inAct, stride):
// the two sides may be stored in different layouts.
func emitSubsamplePad(name string) func(c *OpCall) (jen.Code, error) {
	return func(c *OpCall) (jen.Code, error) {
		lits, err := attrLits(c.Op, "stride")
		if err != nil {
			return nil, err
		}
		return nnCall(name, c, act(c.Op.Results[0]), act(c.Op.Args[0]), lits[0]), nil
	}
}

// emitMaxPool writes nn.MaxPool(ctx, y, x, yAct, xAct, kernel, stride,
// pad) or nn.MaxPoolGrad(ctx, dx, dy, x, dxAct, dyAct, xAct, kernel,
// stride, pad).
func emitMaxPool(c *OpCall) (jen.Code, error) {
	lits, err := attrLits(c.Op, "kernel", "stride", "pad")
	if err != nil {
		return nil, err
	}
	acts := []jen.Code{act(c.Op.Results[0])}
	name := "MaxPool"
	for _, a := range c.Op.Args {
		acts = append(acts, act(a))
	}
	if c.Op.Kind == ir.MaxPoolGrad {
		name = "MaxPoolGrad"
	}
	return nnCall(name, c, append(acts, lits...)...), nil
}

// wideMaxPoolGrad is one plane (H*W) of x in float64s per worker.
func wideMaxPoolGrad(op *ir.Op) (int, int) {
	s := op.Args[1].Type.Shape
	return 0, s[2] * s[3]
}

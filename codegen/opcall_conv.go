package codegen

import (
	"fmt"

	"github.com/dave/jennifer/jen"

	"github.com/resnetc/resnetc/ir"
)

// The convolution family runs on the shape-generic kernels of runtime/nn
// (conv.go, conv_grad.go): every shape, attribute and layout is a
// constant of the call, in an nn.ConvParams literal.
func init() {
	registerOp(ir.Conv2D, opImpl{emit: emitConv2D, scratch: convFwdScratch})
	registerOp(ir.Conv2DFused, opImpl{emit: emitConv2DFused, scratch: convFwdScratch})
	registerOp(ir.Conv2DDx, opImpl{emit: emitConv2DDx, scratch: convDxScratch})
	registerOp(ir.Conv2DDw, opImpl{emit: emitConv2DDw, scratch: convDwScratch})
	registerOp(ir.Conv2DDwFused, opImpl{emit: emitConv2DDw, scratch: convDwScratch})
}

// convGeom is the geometry of a convolution op as the forward conv sees
// it, whichever op of the family computes it.
type convGeom struct {
	x, y        *ir.Value // the forward conv's input and output (dx, dy for conv2d_dx; x, dy for the weight gradients)
	w           *ir.Value // the weight or weight gradient: plain [y.C][x.C][kh][kw]
	kh, kw      int
	stride, pad int
}

// convGeomOf returns op's geometry, or an error when a tensor is not
// stored as the kernels expect.
func convGeomOf(op *ir.Op) (convGeom, error) {
	g := convGeom{stride: op.Int("stride"), pad: op.Int("pad")}
	switch op.Kind {
	case ir.Conv2D, ir.Conv2DFused:
		g.x, g.w, g.y = op.Args[0], op.Args[1], op.Results[0]
	case ir.Conv2DDx:
		g.y, g.w, g.x = op.Args[0], op.Args[1], op.Results[0]
	case ir.Conv2DDw, ir.Conv2DDwFused:
		g.y, g.x, g.w = op.Args[0], op.Args[1], op.Results[0]
	default:
		panic(fmt.Sprintf("BUG: codegen: convGeomOf(%s)", op))
	}
	for _, v := range []*ir.Value{g.x, g.y, g.w} {
		if len(v.Type.Shape) != 4 {
			return g, fmt.Errorf("op %s: tensor %v is not rank 4", op, v.Type)
		}
	}
	if g.w.Type.Layout != ir.NCHW {
		return g, fmt.Errorf("op %s: weight %v must be stored plain [out][in][kh][kw]", op, g.w.Type)
	}
	g.kh, g.kw = g.w.Type.Shape[2], g.w.Type.Shape[3]
	return g, nil
}

// params returns the nn.ConvParams literal of g with op's prologue and
// epilogue flags; fields at their zero value are left out.
func (g convGeom) params(op *ir.Op) jen.Code {
	var d []jen.Code
	set := func(k string, v jen.Code) { d = append(d, jen.Id(k).Op(":").Add(v)) }
	set("X", act(g.x))
	set("Y", act(g.y))
	set("KH", jen.Lit(g.kh))
	set("KW", jen.Lit(g.kw))
	set("Stride", jen.Lit(g.stride))
	set("Pad", jen.Lit(g.pad))
	switch op.Kind {
	case ir.Conv2DFused, ir.Conv2DDwFused:
		switch op.Str("prologue") {
		case "relu":
			set("Prologue", jen.Qual(nnPkg, "PrologueReLU"))
		case "affine_relu":
			set("Prologue", jen.Qual(nnPkg, "PrologueAffineReLU"))
		}
	}
	switch op.Kind {
	case ir.Conv2D:
		if len(op.Args) == 3 {
			set("Bias", jen.True())
		}
	case ir.Conv2DFused:
		for _, f := range []struct{ attr, field string }{
			{"bias", "Bias"}, {"residual", "Residual"}, {"relu", "ReLU"}, {"stats", "Stats"},
		} {
			if op.Bool(f.attr) {
				set(f.field, jen.True())
			}
		}
	}
	return jen.Qual(nnPkg, "ConvParams").Values(d...)
}

// emitConv2D writes nn.Conv2D(ctx, y, x, w, b, params), b nil without
// bias.
func emitConv2D(c *OpCall) (jen.Code, error) {
	g, err := convGeomOf(c.Op)
	if err != nil {
		return nil, err
	}
	var b jen.Code = jen.Nil()
	if len(c.Args) == 3 {
		b = c.Args[2]
	}
	return jen.Qual(nnPkg, "Conv2D").Call(c.Ctx, c.Results[0], c.Args[0], c.Args[1], b, g.params(c.Op)), nil
}

// emitConv2DFused writes nn.Conv2DFused(ctx, y, sum, sumsq, x, w, b,
// scale, shift, r, params): the optional arguments (x, w, [b], [scale,
// shift], [r] in the op table's order) and the statistics are nil when
// the attributes say they are absent.
func emitConv2DFused(c *OpCall) (jen.Code, error) {
	op := c.Op
	g, err := convGeomOf(op)
	if err != nil {
		return nil, err
	}
	var b, scale, shift, r jen.Code = jen.Nil(), jen.Nil(), jen.Nil(), jen.Nil()
	i := 2
	if op.Bool("bias") {
		b = c.Args[i]
		i++
	}
	if op.Str("prologue") == "affine_relu" {
		scale, shift = c.Args[i], c.Args[i+1]
		i += 2
	}
	if op.Bool("residual") {
		if rt := op.Args[i].Type; rt.Layout != g.y.Type.Layout {
			return nil, fmt.Errorf("op %s: residual %v is stored in another layout than the output %v", op, rt, g.y.Type)
		}
		r = c.Args[i]
		i++
	}
	if i != len(c.Args) {
		panic(fmt.Sprintf("BUG: codegen: %s has %d arguments, its attributes name %d", op, len(c.Args), i))
	}
	var sum, sumsq jen.Code = jen.Nil(), jen.Nil()
	if op.Bool("stats") {
		sum, sumsq = c.Results[1], c.Results[2]
	}
	return jen.Qual(nnPkg, "Conv2DFused").Call(c.Ctx, c.Results[0], sum, sumsq,
		c.Args[0], c.Args[1], b, scale, shift, r, g.params(op)), nil
}

// emitConv2DDx writes nn.Conv2DDx(ctx, dx, dy, w, params).
func emitConv2DDx(c *OpCall) (jen.Code, error) {
	g, err := convGeomOf(c.Op)
	if err != nil {
		return nil, err
	}
	return jen.Qual(nnPkg, "Conv2DDx").Call(c.Ctx, c.Results[0], c.Args[0], c.Args[1], g.params(c.Op)), nil
}

// emitConv2DDw writes nn.Conv2DDw(ctx, dw, dy, x, params) for conv2d_dw
// and nn.Conv2DDwFused(ctx, dw, dy, x, scale, shift, params) for
// conv2d_dw_fused (scale and shift nil unless the prologue is
// affine_relu).
func emitConv2DDw(c *OpCall) (jen.Code, error) {
	g, err := convGeomOf(c.Op)
	if err != nil {
		return nil, err
	}
	if c.Op.Kind == ir.Conv2DDw {
		return jen.Qual(nnPkg, "Conv2DDw").Call(c.Ctx, c.Results[0], c.Args[0], c.Args[1], g.params(c.Op)), nil
	}
	var scale, shift jen.Code = jen.Nil(), jen.Nil()
	if len(c.Args) == 4 {
		scale, shift = c.Args[2], c.Args[3]
	}
	return jen.Qual(nnPkg, "Conv2DDwFused").Call(c.Ctx, c.Results[0], c.Args[0], c.Args[1], scale, shift, g.params(c.Op)), nil
}

// The scratch functions below are the formulas of nn.ConvScratch,
// nn.ConvDxScratch and nn.ConvDwScratch (codegen does not import the
// runtime); the kernels check them on every call and
// opcall_conv_test.go runs the calls with exactly this scratch.

// convFwdScratch is the scratch of conv2d and conv2d_fused: a padded
// image with channels innermost and eight output channels' packed
// weights; with stats, the per-image channel sums.
func convFwdScratch(op *ir.Op) (floats, wide int) {
	g, err := convGeomOf(op)
	if err != nil {
		return 0, 0
	}
	x, y := g.x.Type.Shape, g.y.Type.Shape
	floats = (x[2]+2*g.pad)*(x[3]+2*g.pad)*x[1] + 8*g.kh*g.kw*x[1]
	if op.Kind == ir.Conv2DFused && op.Bool("stats") {
		wide = y[0] * 2 * y[1]
	}
	return floats, wide
}

// convDxScratch is the scratch of conv2d_dx: one image of dy with the
// margins its phase gathers reach, and eight input channels' packed
// weights.
func convDxScratch(op *ir.Op) (floats, wide int) {
	g, err := convGeomOf(op)
	if err != nil {
		return 0, 0
	}
	x, y, s := g.x.Type.Shape, g.y.Type.Shape, g.stride
	top, left := (g.kh-1)/s, (g.kw-1)/s
	bottom := max(0, (x[2]-1+g.pad)/s-(y[2]-1))
	right := max(0, (x[3]-1+g.pad)/s-(y[3]-1))
	return (y[2]+top+bottom)*(y[3]+left+right)*y[1] + 8*g.kh*g.kw*y[1], 0
}

// convDwScratch is the scratch of conv2d_dw and conv2d_dw_fused: a padded
// image of x, one image of dy blocked (unless it is stored blocked) and
// the worker's float64 partial of dw.
func convDwScratch(op *ir.Op) (floats, wide int) {
	g, err := convGeomOf(op)
	if err != nil {
		return 0, 0
	}
	x, y := g.x.Type.Shape, g.y.Type.Shape
	floats = (x[2] + 2*g.pad) * (x[3] + 2*g.pad) * x[1]
	if g.y.Type.Layout != ir.NCHW8c {
		floats += (y[1] + 7) / 8 * 8 * y[2] * y[3]
	}
	return floats, y[1] * x[1] * g.kh * g.kw
}

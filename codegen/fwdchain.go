package codegen

import (
	"github.com/dave/jennifer/jen"

	"github.com/resnetc/resnetc/codegen/kernels"
	"github.com/resnetc/resnetc/ir"
)

// fwdChain is a residual unit's convolutions in inference, which a
// generated package runs image by image in one call (unitFwd), so that
// the intermediate tensors, and the unit's input that the last one adds
// back, stay in cache: a bottleneck unit's three,
//
//	1x1 conv -> t1 -> 3x3 conv (Winograd, one image) -> t2 -> 1x1 conv
//
// or a basic unit's two, 3x3 conv -> t1 -> 3x3 conv, both by Winograd.
// a, b and c (-1 for a basic unit) index the block's ops; the ops between
// them are hoisted (they depend on the weights alone and run before the
// chain).
type fwdChain struct{ a, b, c int }

// idx returns the chain's op indices.
func (c fwdChain) idx() []int {
	if c.c < 0 {
		return []int{c.a, c.b}
	}
	return []int{c.a, c.b, c.c}
}

// last is the index of the chain's last op.
func (c fwdChain) last() int { return max(c.b, c.c) }

// findFwdChain returns the chain that starts at ops[i], if there is one:
// each convolution's only reader is the next, the weights of all of them
// are packed once (hoisted), the 3x3 ones run by Winograd and the images
// can be run one by one without a hazard (fwdHazard).
func findFwdChain(ops []*ir.Op, i int, l *layout, uses map[*ir.Value][]*ir.Op, k *kernelPlan) (fwdChain, bool) {
	if c, ok := findBottleneck(ops, i, l, uses, k); ok {
		return c, true
	}
	next := func(j int) int {
		for j++; j < len(ops) && l.hoisted[ops[j]]; j++ {
		}
		return j
	}
	c := fwdChain{a: i, b: next(i), c: -1}
	if c.b >= len(ops) {
		return fwdChain{}, false
	}
	a, b := ops[c.a], ops[c.b]
	for _, op := range []*ir.Op{a, b} {
		if op.Kind != ir.Conv2D && op.Kind != ir.Conv2DFused || l.packedOf(op) == nil {
			return fwdChain{}, false
		}
		if _, ok := k.winograd(op); !ok {
			return fwdChain{}, false
		}
		if r := residualOf(op); r != nil && r.Type.Layout != ir.NCHW8c {
			return fwdChain{}, false
		}
	}
	if b.Args[0] != a.Results[0] || len(uses[a.Results[0]]) != 1 || fwdHazard([]*ir.Op{a, b}, l.refs) {
		return fwdChain{}, false
	}
	return c, true
}

// findBottleneck is findFwdChain for a bottleneck unit's three
// convolutions.
func findBottleneck(ops []*ir.Op, i int, l *layout, uses map[*ir.Value][]*ir.Op, k *kernelPlan) (fwdChain, bool) {
	next := func(j int) int {
		for j++; j < len(ops) && l.hoisted[ops[j]]; j++ {
		}
		return j
	}
	c := fwdChain{a: i, b: next(i)}
	c.c = next(c.b)
	if c.c >= len(ops) {
		return fwdChain{}, false
	}
	a, b, cc := ops[c.a], ops[c.b], ops[c.c]
	for _, op := range []*ir.Op{a, b, cc} {
		if op.Kind != ir.Conv2D && op.Kind != ir.Conv2DFused || op.Kind == ir.Conv2DFused && op.Bool("stats") ||
			l.packedOf(op) == nil || len(uses[op.Results[0]]) == 0 {
			return fwdChain{}, false
		}
	}
	if b.Args[0] != a.Results[0] || cc.Args[0] != b.Results[0] ||
		len(uses[a.Results[0]]) != 1 || len(uses[b.Results[0]]) != 1 {
		return fwdChain{}, false
	}
	for _, op := range []*ir.Op{a, cc} {
		if _, _, stride, ok := is1x1(op, op.Args[1], op.Args[0], op.Results[0]); !ok || stride != 1 {
			return fwdChain{}, false
		}
		if r := residualOf(op); r != nil && r.Type.Layout != ir.NCHW8c {
			return fwdChain{}, false
		}
	}
	if _, ok := k.winograd(b); !ok || fwdHazard([]*ir.Op{a, b, cc}, l.refs) {
		return fwdChain{}, false
	}
	return c, true
}

// residualOf is a fused convolution's residual argument, or nil.
func residualOf(op *ir.Op) *ir.Value {
	if op.Kind != ir.Conv2DFused || !op.Bool("residual") {
		return nil
	}
	return op.Args[len(op.Args)-1]
}

// fwdHazard reports whether running the chain's ops image by image, the
// images split over workers, could read what it has already written, or
// write over what another image still needs. Two values that share
// storage must share all of it (image n over image n), and a value
// written over one the chain reads must be written at a later stage, or
// at the same stage as that op's residual, which the kernels read
// element by element just before they write the same element.
func fwdHazard(ops []*ir.Op, refs map[*ir.Value]ref) bool {
	type access struct {
		v        *ir.Value
		stage    int
		residual bool
	}
	var reads, writes []access
	for stage, op := range ops {
		for _, a := range op.Args {
			if len(a.Type.Shape) == 4 && a.Def.Kind != ir.Param && refs[a].Buf == inArena {
				reads = append(reads, access{a, stage, a == residualOf(op)})
			}
		}
		writes = append(writes, access{op.Results[0], stage, false})
	}
	for i, w := range writes {
		for _, o := range writes[i+1:] {
			if wr, or := refs[w.v], refs[o.v]; wr.overlaps(or) && wr != or {
				return true
			}
		}
		for _, r := range reads {
			wr, rr := refs[w.v], refs[r.v]
			if w.v == r.v || !wr.overlaps(rr) {
				continue
			}
			if wr != rr || r.stage > w.stage || (r.stage == w.stage && !r.residual) {
				return true
			}
		}
	}
	return false
}

// fwdChains returns, for each block function of an inference step, the
// chains that start at each op index, found alike in every block the
// function runs (as bwdChains does).
func fwdChains(s *stepCode, k *kernelPlan) map[*blockFn]map[int]fwdChain {
	out := map[*blockFn]map[int]fwdChain{}
	if s.name != "infer" {
		return out
	}
	uses := s.g.Uses()
	byFn := map[*blockFn][]*block{}
	for _, b := range s.blocks {
		byFn[b.fn] = append(byFn[b.fn], b)
	}
	for fn, bs := range byFn {
		found := map[int]fwdChain{}
		for i := 0; i < len(fn.proto.ops); i++ {
			c, ok := findFwdChain(bs[0].ops, i, s.l, uses, k)
			for _, b := range bs[1:] {
				if !ok {
					break
				}
				d, dok := findFwdChain(b.ops, i, s.l, uses, k)
				ok = dok && d == c
			}
			if ok {
				found[i] = c
				i = c.last()
			}
		}
		out[fn] = found
	}
	return out
}

// fwdConv is one convolution of a chain as unitFwd takes it.
type fwdConv struct {
	kernel  string // the kernel's exported name
	pack    string // the packing function of its weights
	scratch int
	image   bool // the kernel is of one image, called on views (Winograd)
}

// specialFwd writes the unitFwd call of chain c, whose ops' calls are
// calls (indexed like the block's ops), or returns nil when a
// convolution has no specialized kernel.
func (k *kernelPlan) specialFwd(c fwdChain, calls func(i int) *OpCall) jen.Code {
	var convs []jen.Code
	scratch := 0
	for _, i := range c.idx() {
		oc := calls(i)
		op := oc.Op
		fc, ok := k.fwdKernel(op)
		if !ok {
			return nil
		}
		scratch = max(scratch, fc.scratch)
		nilf := jen.Nil()
		bias, scale, shift, res := jen.Code(nilf), jen.Code(nilf), jen.Code(nilf), jen.Code(nilf)
		j := 2
		if op.Kind == ir.Conv2D {
			if len(op.Args) == 3 {
				bias = oc.Args[2]
			}
		} else {
			if op.Bool("bias") {
				bias = oc.Args[j]
				j++
			}
			if op.Str("prologue") == "affine_relu" {
				scale, shift = oc.Args[j], oc.Args[j+1]
				j += 2
			}
			if op.Bool("residual") {
				res = oc.Args[j]
			}
		}
		w := op.Args[1].Type.Shape
		convs = append(convs, jen.Id("fwdConv").Values(jen.Dict{
			jen.Id("fn"):    jen.Id(fc.kernel),
			jen.Id("pack"):  jen.Id(fc.pack),
			jen.Id("image"): jen.Lit(fc.image),
			jen.Id("cout"):  jen.Lit(w[0]),
			jen.Id("cin"):   jen.Lit(w[1]),
			jen.Id("plain"): oc.Args[1],
			jen.Id("w"):     oc.Packed,
			jen.Id("x"):     oc.Args[0],
			jen.Id("bias"):  bias,
			jen.Id("scale"): scale,
			jen.Id("shift"): shift,
			jen.Id("res"):   res,
			jen.Id("y"):     oc.Results[0],
		}))
	}
	k.scratchLen = max(k.scratchLen, scratch)
	k.unitChains = true
	if len(convs) == 2 {
		convs = append(convs, jen.Id("fwdConv").Values())
	}
	n := calls(c.a).Op.Args[0].Type.Shape[0]
	return jen.Id("m").Dot("unitFwd").Call(append([]jen.Code{jen.Lit(n), jen.Lit(scratch)}, convs...)...)
}

// fwdKernel records and describes the kernel that runs op in a chain:
// the batch's 1x1 kernel, called on one image's range, or a Winograd
// kernel of one image, called on views.
func (k *kernelPlan) fwdKernel(op *ir.Op) (fwdConv, bool) {
	if wk, ok := k.winograd(op); ok {
		wk.N = 1
		if wk.Validate() != nil {
			return fwdConv{}, false
		}
		k.addWinograd(wk)
		return fwdConv{kernel: wk.Name(), pack: "PackWinogradWeights", scratch: wk.ScratchLen(), image: true}, true
	}
	x, w := op.Args[0], op.Args[1]
	cout, cin, stride, ok := is1x1(op, w, x, op.Results[0])
	if !ok {
		return fwdConv{}, false
	}
	xs := x.Type.Shape
	f := fusion(op)
	k1 := kernels.Conv1x1{Op: kernels.Conv1x1Fwd, N: xs[0], Cin: cin, Cout: cout, H: xs[2], W: xs[3], Stride: stride,
		Prologue: f.Prologue, Bias: f.Bias, Residual: f.Residual, ReLU: f.ReLU}
	if k1.Validate() != nil {
		return fwdConv{}, false
	}
	k.add1x1(k1)
	return fwdConv{kernel: k1.Name(), pack: "PackConv1x1Weights", scratch: k1.ScratchLen()}, true
}

// unitDriverSource is the driver of the inference chains, in the
// packages that have them.
const unitDriverSource = `
// fwdConv is one convolution of unitFwd: its kernel, the packing of its
// plain weights into w, and its tensors over the batch.
type fwdConv struct {
	fn                                  Conv3x3Func
	pack                                func(dst, src []float32, cout, cin int) error
	image                               bool // fn is of one image: call it on views
	cout, cin                           int
	plain, w                            []float32
	x, bias, scale, shift, res, y       []float32
}

// run computes image n of c with the worker's scratch.
func (c *fwdConv) run(n, batch int, scratch []float32) {
	if !c.image {
		c.fn(c.x, c.w, c.bias, c.scale, c.shift, c.res, c.y, nil, scratch, n, n+1)
		return
	}
	xi, yi := len(c.x)/batch, len(c.y)/batch
	res := c.res
	if res != nil {
		res = res[n*yi : (n+1)*yi]
	}
	c.fn(c.x[n*xi:(n+1)*xi], c.w, c.bias, c.scale, c.shift, res, c.y[n*yi:(n+1)*yi], nil, scratch, 0, 1)
}

// unitTask runs unitFwd's convolutions on each image of its range in
// turn, so that what one writes is in cache when the next reads it.
type unitTask struct {
	convs   [3]fwdConv
	n       int
	scratch int
	m       *Model
}

func (t *unitTask) Run(w, lo, hi int) {
	scratch := t.m.ctx.Scratch(w)[:t.scratch]
	for n := lo; n < hi; n++ {
		for i := range t.convs {
			if t.convs[i].fn != nil {
				t.convs[i].run(n, t.n, scratch)
			}
		}
	}
}

// unitFwd runs the convolutions of n images of a residual unit, a
// bottleneck unit's three or a basic unit's two (c is then the zero
// fwdConv), image by image over the workers, as they would run one after
// the other over the batch. Their weights are packed when they changed
// (m.refold).
func (m *Model) unitFwd(n, scratch int, a, b, c fwdConv) {
	t := &m.k.unit
	t.convs, t.n, t.scratch, t.m = [3]fwdConv{a, b, c}, n, scratch, m
	if m.refold {
		for i := range t.convs {
			if c := &t.convs[i]; c.fn != nil {
				check(c.pack(c.w, c.plain, c.cout, c.cin))
			}
		}
	}
	m.ctx.Parallel(t, n)
}
`

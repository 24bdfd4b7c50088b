package codegen

import (
	"github.com/dave/jennifer/jen"

	"github.com/resnetc/resnetc/ir"
)

// bwdChain is a run of consecutive ops of one convolution's backward that
// a generated package runs image by image in one call (convBwd), so that
// the tensors passed from op to op stay in cache or never reach memory:
//
//	[bnstats_grad] [conv2d_dw | conv2d_dw_fused] conv2d_dx [affine_relu_grad]
//
// bnstats_grad computes the dy that the dw and dx ops read; affine_relu_grad
// takes dx's result as its da. The ops are indices into a block's ops.
type bwdChain struct {
	stats, dw, dx, grad int  // -1 when absent
	dyInArena           bool // bnstats_grad's dy has readers outside the chain
}

// len is the number of ops the chain covers.
func (c bwdChain) len() int {
	n := 1
	for _, i := range []int{c.stats, c.dw, c.grad} {
		if i >= 0 {
			n++
		}
	}
	return n
}

// findBwdChain returns the chain that starts at ops[i], if there is one
// of at least two ops whose activations are all blocked and that runs
// image by image without a hazard (bwdHazard). uses and refs are the
// graph's readers and storage.
func findBwdChain(ops []*ir.Op, i int, uses map[*ir.Value][]*ir.Op, refs map[*ir.Value]ref) (bwdChain, bool) {
	c := bwdChain{stats: -1, dw: -1, dx: -1, grad: -1}
	at := func(j int, k ...ir.OpKind) bool {
		if j >= len(ops) {
			return false
		}
		for _, kk := range k {
			if ops[j].Kind == kk {
				return true
			}
		}
		return false
	}
	j := i
	var dy *ir.Value
	if at(j, ir.BNStatsGrad) {
		c.stats, dy = j, ops[j].Results[0]
		j++
	}
	if at(j, ir.Conv2DDw, ir.Conv2DDwFused) && (dy == nil || ops[j].Args[0] == dy) {
		c.dw, dy = j, ops[j].Args[0]
		j++
	}
	if !at(j, ir.Conv2DDx) || (dy != nil && ops[j].Args[0] != dy) {
		return bwdChain{}, false
	}
	c.dx = j
	dx := ops[j]
	if c.dw >= 0 && !ops[c.dw].Results[0].Type.Shape.Equal(dx.Args[1].Type.Shape) {
		return bwdChain{}, false // another convolution's weights
	}
	if at(j+1, ir.AffineReLUGrad) && ops[j+1].Args[0] == dx.Results[0] {
		if u := uses[dx.Results[0]]; len(u) == 1 && u[0] == ops[j+1] {
			c.grad = j + 1
		}
	}
	if c.len() < 2 {
		return bwdChain{}, false
	}
	if c.stats >= 0 {
		for _, u := range uses[ops[c.stats].Results[0]] {
			if (c.dw < 0 || u != ops[c.dw]) && u != dx {
				c.dyInArena = true
			}
		}
	}
	// The activations (the weights and per-channel vectors are not).
	acts := []*ir.Value{dx.Args[0], dx.Results[0]}
	if c.stats >= 0 {
		acts = append(acts, ops[c.stats].Args[2:]...)
	}
	if c.dw >= 0 {
		acts = append(acts, ops[c.dw].Args[1])
	}
	if c.grad >= 0 {
		g := ops[c.grad]
		acts = append(acts, g.Results[0], g.Args[1])
		acts = append(acts, g.Args[4:]...)
	}
	for _, v := range acts {
		if len(v.Type.Shape) == 4 && v.Type.Layout != ir.NCHW8c {
			return bwdChain{}, false
		}
	}
	if bwdHazard(c, ops, refs) {
		return bwdChain{}, false
	}
	return c, true
}

// ops returns the chain's ops in order.
func (c bwdChain) ops(ops []*ir.Op) []*ir.Op {
	var out []*ir.Op
	for _, i := range []int{c.stats, c.dw, c.dx, c.grad} {
		if i >= 0 {
			out = append(out, ops[i])
		}
	}
	return out
}

// bwdHazard reports whether running the chain image by image, the
// images split over workers, could read what it has already written:
// run op by op over the batch, an op may take the storage of a value an
// earlier op of the chain has read for the last time. A value written
// in the arena per image (dy when dyInArena, dx's result unless
// affine_relu_grad takes it, affine_relu_grad's dx) may share storage
// with a value the chain reads only if they are the same storage
// (image n over image n) and the read comes first: at an earlier stage
// of the image, or at the same stage of an elementwise op
// (bnstats_grad, affine_relu_grad). The weight gradient and the
// per-channel sums are written after every image is done, and the
// per-channel vectors the chain reads are copied before the first.
func bwdHazard(c bwdChain, ops []*ir.Op, refs map[*ir.Value]ref) bool {
	type access struct {
		v     *ir.Value
		stage int
	}
	var reads, writes []access
	internal := map[*ir.Value]bool{} // values that never reach the arena
	if c.stats >= 0 && !c.dyInArena {
		internal[ops[c.stats].Results[0]] = true
	}
	if c.grad >= 0 {
		internal[ops[c.dx].Results[0]] = true
	}
	for stage, i := range []int{c.stats, c.dw, c.dx, c.grad} {
		if i < 0 {
			continue
		}
		op := ops[i]
		for _, a := range op.Args {
			// convBwd reads per-channel vectors from copies it makes
			// first, and the weights are not in the arena.
			if !internal[a] && len(a.Type.Shape) == 4 && a.Def.Kind != ir.Param {
				reads = append(reads, access{a, stage})
			}
		}
		if i == c.stats || i == c.dx || i == c.grad {
			if r := op.Results[0]; !internal[r] {
				writes = append(writes, access{r, stage})
			}
		}
	}
	elementwise := func(stage int) bool { return stage == 0 || stage == 3 }
	for _, w := range writes {
		for _, r := range reads {
			wr, rr := refs[w.v], refs[r.v]
			if w.v == r.v || !wr.overlaps(rr) {
				continue
			}
			if wr != rr || r.stage > w.stage || (r.stage == w.stage && !elementwise(w.stage)) {
				return true
			}
		}
	}
	return false
}

// bwdChains returns, for each block function of s, the chains that start
// at each op index, found alike in every block the function runs (the
// blocks share its body; a chain is searched from the next op when they
// disagree).
func bwdChains(s *stepCode) map[*blockFn]map[int]bwdChain {
	uses := s.g.Uses()
	byFn := map[*blockFn][]*block{}
	for _, b := range s.blocks {
		byFn[b.fn] = append(byFn[b.fn], b)
	}
	out := map[*blockFn]map[int]bwdChain{}
	for fn, bs := range byFn {
		found := map[int]bwdChain{}
		for i := 0; i < len(fn.proto.ops); {
			c, ok := findBwdChain(bs[0].ops, i, uses, s.l.refs)
			for _, b := range bs[1:] {
				if !ok {
					break
				}
				d, dok := findBwdChain(b.ops, i, uses, s.l.refs)
				ok = dok && d == c
			}
			if ok {
				found[i] = c
				i += c.len()
				continue
			}
			i++
		}
		out[fn] = found
	}
	return out
}

// specialBwd writes the convBwd call of chain c, whose ops' calls are
// calls (indexed like the block's ops), or returns nil when its
// convolution has no specialized kernels.
func (k *kernelPlan) specialBwd(c bwdChain, calls func(i int) *OpCall) jen.Code {
	x := calls(c.dx)
	var dk dxCall
	if c.dw >= 0 { // registered first, as the ops run apart would
		var ok bool
		if dk, ok = k.dwKernel(calls(c.dw).Op); !ok {
			return nil
		}
	}
	var d dxCall
	var kern jen.Dict
	taps := 9
	if wk, ok := k.winogradDx(x.Op); ok {
		// One image's input gradient by Winograd, in cache after the
		// stages before it, in place of the direct kernel.
		d = dxCall{"", wk.Name(), wk.ScratchLen(), x.Op.Results[0].Type.Shape[0], wk.Cout, wk.Cin}
		kern = jen.Dict{jen.Id("taps"): jen.Lit(taps), jen.Id("wdx"): jen.Id(wk.Name()),
			jen.Id("pack"): jen.Id("PackWinogradDxWeights"), jen.Id("packLen"): jen.Lit(wk.WLen())}
	} else {
		var ok bool
		if d, ok = k.dxKernel(x.Op); !ok {
			return nil
		}
		if d.driver == "conv1x1Dx" {
			taps = 1
		}
		kern = jen.Dict{jen.Id("dx"): jen.Id(d.name), jen.Id("taps"): jen.Lit(taps)}
	}
	scratch := d.scratch
	if c.dw >= 0 {
		if (dk.driver == "conv1x1Dw") != (d.driver == "conv1x1Dx") {
			return nil
		}
		field := "dw3"
		if dk.driver == "conv1x1Dw" {
			field = "dw1"
		}
		kern[jen.Id(field)] = jen.Id(dk.name)
		scratch = max(scratch, dk.scratch)
	}
	kern[jen.Id("scratch")] = jen.Lit(scratch)
	// The tensors, in the order of bwdArgs' fields; absent ones are left
	// out of the literal (nil).
	var args []jen.Code
	arg := func(name string, v jen.Code) {
		args = append(args, jen.Line().Id(name).Op(":").Add(v))
	}
	arg("w", x.Args[1])
	if c.dw >= 0 {
		arg("dw", calls(c.dw).Results[0])
	}
	if c.stats < 0 {
		arg("dy", x.Args[0])
	} else {
		s := calls(c.stats)
		if c.dyInArena {
			arg("dy", s.Results[0])
		}
		for i, name := range []string{"dmean", "dvar", "y", "mean", "yacc"}[:len(s.Args)] {
			arg(name, s.Args[i])
		}
		ys := s.Op.Args[2].Type.Shape
		k.dyImageLen = max(k.dyImageLen, ys[1]*ys[2]*ys[3])
	}
	if c.dw >= 0 {
		w := calls(c.dw)
		arg("x", w.Args[1])
		if len(w.Args) == 4 {
			arg("scale", w.Args[2])
			arg("shift", w.Args[3])
		}
	}
	if c.grad < 0 {
		arg("da", x.Results[0])
	} else {
		g := calls(c.grad)
		for i, name := range []string{"dz", "dscale", "dshift"} {
			arg(name, g.Results[i])
		}
		for i, name := range []string{"gx", "gscale", "gshift", "gacc"}[:len(g.Args)-1] {
			arg(name, g.Args[i+1])
		}
		xs := g.Op.Args[1].Type.Shape
		k.daImageLen = max(k.daImageLen, xs[1]*xs[2]*xs[3])
		k.partLen = max(k.partLen, 2*xs[1])
	}
	k.scratchLen = max(k.scratchLen, scratch)
	k.vecLen = max(k.vecLen, d.cin, d.cout)
	return jen.Id("m").Dot("convBwd").Call(jen.Id("bwdKernels").Values(kern), jen.Lit(d.n), jen.Lit(d.cin), jen.Lit(d.cout),
		jen.Id("bwdArgs").Values(append(args, jen.Line())...))
}

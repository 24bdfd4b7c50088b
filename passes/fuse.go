package passes

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/resnetc/resnetc/ir"
)

// fusePassName is the name FuseBNReLUConv's errors carry, the name of its
// entry in the pipeline.
const fusePassName = "fuse-bn-relu-conv"

// FuseBNReLUConv turns the BatchNorm-ReLU-conv sequences of an inference
// graph or a train-mode forward graph into conv2d_fused ops, so that an
// activation is normalized and rectified while the conv reads it instead of
// in passes of its own over the whole tensor, and, in training, so that the
// backward pass recomputes it from the stored pre-BN tensor instead of
// keeping BN and ReLU outputs alive. In order:
//
//  1. Epilogues. A conv2d or conv2d_fused result whose only reader is an
//     add(r, other) (either order) becomes conv2d_fused{residual=true}
//     reading other as its residual; when both terms qualify, the conv
//     scheduled later absorbs the add. Then a conv result whose only
//     reader is a relu absorbs it (relu=true). A conv that becomes fused
//     keeps its bias as bias=true, and moves to the position of the last
//     op it absorbed; a conv with nothing to absorb stays a conv2d.
//  2. Statistics (train mode). A bnstats of a conv's result becomes
//     moments(sum, sumsq){count=N*H*W} of sums the conv accumulates in its
//     epilogue (stats=true; the sums are of the conv's final output, after
//     step 1). Its mean and var are the same values as before: the
//     normalization and the running-average ema ops read them unchanged.
//  3. Prologues. bnnorm(x, mean, var, gamma, beta) read only by a relu whose
//     only reader is a conv (as its input x, with no prologue yet) becomes
//     scale, shift = bnaffine(mean, var, gamma, beta){eps} and the conv
//     reads x itself with prologue="affine_relu" and (scale, shift). When
//     the relu has other readers (the projection shortcut of a first or
//     growing pre-activation unit, the head's pooling, an identity add),
//     the pair becomes one affine_relu(x, scale, shift), computed once and
//     read by all of them: a prologue in each conv would repeat the work.
//     A relu that follows no such BatchNorm and whose only reader is a
//     conv becomes that conv's prologue="relu".
//
// What is left alone, because fusing there would be wrong or would repeat
// work: a BatchNorm not followed by a ReLU (a prologue always rectifies,
// and a per-channel affine map before a conv cannot move past its zero
// padding); a conv result with other readers (they need the value before
// the epilogue); an add none of whose terms is such a conv result; an add
// or relu whose result is a graph output or an update (a choice: the
// output is stored anyway, so absorbing it would save one pass over it at
// most, and the op the output names stays in the graph); a bnstats
// of anything but a conv result (the add of two gated branches, say),
// which stays a separate reduction; an epilogue that would come after one
// the conv already has in the wrong order (the order is bias, residual,
// relu, statistics: a residual added after a relu epilogue stays an add).
//
// The graph must verify, and a train-mode graph must be a forward graph:
// the pass runs before autodiff, whose rules differentiate the fused ops.
// A graph with gradient ops or an optimizer update is an error naming the
// first such op. On error the graph is left as it was. Running the pass on
// its own output changes nothing.
func FuseBNReLUConv(g *ir.Graph) error {
	if err := fuseCheck(g); err != nil {
		return &Error{Pass: fusePassName, Err: err}
	}
	f := newFuser(g)
	for _, op := range slices.Clone(g.Ops) {
		if op.Kind == ir.Add {
			f.residual(op)
		}
	}
	for _, op := range slices.Clone(g.Ops) {
		if op.Kind == ir.ReLU {
			f.reluEpilogue(op)
		}
	}
	for _, op := range slices.Clone(g.Ops) {
		if op.Kind == ir.BNStats {
			f.stats(op)
		}
	}
	for _, op := range slices.Clone(g.Ops) {
		if op.Kind == ir.ReLU && !f.removed[op] {
			f.prologue(op)
		}
	}
	f.finish()
	return nil
}

// fuseCheck returns why g cannot be fused, or nil.
func fuseCheck(g *ir.Graph) error {
	if g == nil {
		return errors.New("nil graph")
	}
	if err := ir.Verify(g); err != nil {
		return fmt.Errorf("input graph does not verify: %w", err)
	}
	for i, op := range g.Ops {
		if fuseBackwardKind(op.Kind) {
			return fmt.Errorf("op %d %s: the graph already has a backward part; fusion runs on the forward graph, before autodiff", i, op)
		}
	}
	return nil
}

// fuseBackwardKind reports whether ops of kind k belong to a backward
// pass or an optimizer update rather than to a forward graph.
func fuseBackwardKind(k ir.OpKind) bool {
	switch k {
	case ir.BNStats, ir.EMA, ir.Dropout, ir.Moments:
		return false // training, but forward
	}
	return k.TrainingOnly()
}

// fuser holds the state of one FuseBNReLUConv call. Ops keep their slot
// (schedule position); an op that absorbs later ops moves to the slot of
// the last one, and each new op takes the slot of the op it replaces, so
// every op stays after its arguments.
type fuser struct {
	g        *ir.Graph
	slots    []*ir.Op // nil where an op was removed or moved away
	pos      map[*ir.Op]int
	removed  map[*ir.Op]bool
	users    map[*ir.Value][]*ir.Op // the distinct ops reading each value
	external map[*ir.Value]bool     // read by an output or an update
}

func newFuser(g *ir.Graph) *fuser {
	f := &fuser{
		g:        g,
		slots:    slices.Clone(g.Ops),
		pos:      make(map[*ir.Op]int, len(g.Ops)),
		removed:  map[*ir.Op]bool{},
		users:    g.Uses(),
		external: map[*ir.Value]bool{},
	}
	for i, op := range g.Ops {
		f.pos[op] = i
	}
	for _, o := range g.Outputs {
		f.external[o.Value] = true
	}
	for _, u := range g.Updates {
		f.external[u.Target] = true
		f.external[u.Value] = true
	}
	return f
}

// onlyReader returns the one op that reads v, or nil when v has several
// readers, none, or is read by an output or update.
func (f *fuser) onlyReader(v *ir.Value) *ir.Op {
	if f.external[v] || len(f.users[v]) != 1 {
		return nil
	}
	return f.users[v][0]
}

// isConv reports whether op is a conv that can take a fused prologue or
// epilogue.
func isConv(op *ir.Op) bool { return op.Kind == ir.Conv2D || op.Kind == ir.Conv2DFused }

// epilogueConv returns the conv whose result v is, when reader is its only
// reader and the conv can still take an epilogue after what it has: none
// can follow a relu or statistics epilogue, and the residual is added
// once.
func (f *fuser) epilogueConv(v *ir.Value, reader *ir.Op, residual bool) *ir.Op {
	conv := v.Def
	if !isConv(conv) || v.Index != 0 || f.onlyReader(v) != reader {
		return nil
	}
	if conv.Kind == ir.Conv2DFused && (conv.Bool("relu") || conv.Bool("stats") || residual && conv.Bool("residual")) {
		return nil
	}
	return conv
}

// residual makes add the residual epilogue of the conv producing one of its
// terms.
func (f *fuser) residual(add *ir.Op) {
	a, b := add.Args[0], add.Args[1]
	if a == b || f.external[add.Result()] {
		return
	}
	ca, cb := f.epilogueConv(a, add, true), f.epilogueConv(b, add, true)
	conv, other := ca, b
	if cb != nil && (ca == nil || f.pos[cb] > f.pos[ca]) {
		conv, other = cb, a
	}
	if conv == nil {
		return
	}
	f.makeFused(conv)
	conv.Attrs["residual"] = true
	f.setArgs(conv, append(slices.Clone(conv.Args), other))
	f.absorb(conv, add)
}

// reluEpilogue makes relu the epilogue of the conv producing its argument.
func (f *fuser) reluEpilogue(relu *ir.Op) {
	if f.external[relu.Result()] {
		return
	}
	conv := f.epilogueConv(relu.Args[0], relu, false)
	if conv == nil {
		return
	}
	f.makeFused(conv)
	conv.Attrs["relu"] = true
	f.absorb(conv, relu)
}

// absorb replaces the single-result op by conv's output, which computes the
// same tensor, and moves conv to op's slot.
func (f *fuser) absorb(conv, op *ir.Op) {
	y := conv.Results[0]
	f.check(conv)
	f.replace(op.Result(), y)
	f.remove(op)
	f.move(conv, op)
}

// stats makes the conv producing bnstats' argument accumulate its sums, and
// the bnstats op the moments of those sums.
func (f *fuser) stats(bn *ir.Op) {
	x := bn.Args[0]
	conv := x.Def
	if !isConv(conv) || x.Index != 0 {
		return
	}
	if conv.Kind == ir.Conv2D || !conv.Bool("stats") {
		f.makeFused(conv)
		conv.Attrs["stats"] = true
		c := ir.T32(x.Type.Shape[1])
		for i := 1; i <= 2; i++ {
			conv.Results = append(conv.Results, &ir.Value{Type: c, Def: conv, Index: i})
		}
		f.check(conv)
	}
	// The bnstats op becomes the moments op in place: its results, read by
	// the normalization and the ema updates, stay the same values.
	bn.Kind = ir.Moments
	bn.Attrs = ir.Attrs{"count": x.Type.Shape.Elems() / x.Type.Shape[1]}
	f.setArgs(bn, []*ir.Value{conv.Results[1], conv.Results[2]})
	f.check(bn)
}

// prologue fuses the BatchNorm before relu (if any) and relu into the conv
// that reads relu's result, or materializes them once as affine_relu.
func (f *fuser) prologue(relu *ir.Op) {
	r := relu.Result()
	var conv *ir.Op
	if c := f.onlyReader(r); c != nil && isConv(c) && c.Args[0] == r && !slices.Contains(c.Args[1:], r) &&
		(c.Kind == ir.Conv2D || c.Str("prologue") == "none") {
		conv = c
	}
	v := relu.Args[0]
	bn := v.Def
	if bn.Kind != ir.BNNorm || f.onlyReader(v) != relu {
		bn = nil
	}
	switch {
	case bn != nil && conv != nil:
		aff := fuseBNAffine(bn)
		f.makeFused(conv)
		conv.Attrs["prologue"] = "affine_relu"
		k := 2 // after x, w and the bias
		if conv.Bool("bias") {
			k = 3
		}
		f.setArgs(conv, slices.Concat([]*ir.Value{bn.Args[0]}, conv.Args[1:k], aff.Results, conv.Args[k:]))
		f.check(conv)
		f.remove(relu)
		f.replaceOp(bn, aff)
	case bn != nil && (len(f.users[r]) > 0 || f.external[r]):
		aff := fuseBNAffine(bn)
		ar := fuseNewOp(ir.AffineReLU, relu.Name, nil, bn.Args[0], aff.Results[0], aff.Results[1])
		f.replace(r, ar.Result())
		f.replaceOp(relu, ar)
		f.replaceOp(bn, aff)
	case conv != nil:
		f.makeFused(conv)
		conv.Attrs["prologue"] = "relu"
		args := slices.Clone(conv.Args)
		args[0] = v
		f.setArgs(conv, args)
		f.check(conv)
		f.remove(relu)
	}
}

// fuseBNAffine returns the bnaffine op that computes bn's normalization as
// a per-channel scale and shift.
func fuseBNAffine(bn *ir.Op) *ir.Op {
	attrs := ir.Attrs{}
	if eps, ok := bn.Attrs["eps"]; ok {
		attrs["eps"] = eps
	}
	return fuseNewOp(ir.BNAffine, bn.Name, attrs, bn.Args[1:]...)
}

// replaceOp removes old, whose results must no longer be read, and puts
// the new op in its slot.
func (f *fuser) replaceOp(old, new *ir.Op) {
	p := f.pos[old]
	f.remove(old)
	f.put(new, p)
}

// makeFused turns a conv2d into the equivalent conv2d_fused (its bias, if
// any, becomes bias=true); a conv2d_fused is left as it is.
func (f *fuser) makeFused(conv *ir.Op) {
	if conv.Kind == ir.Conv2DFused {
		return
	}
	conv.Kind = ir.Conv2DFused
	conv.Attrs = conv.Attrs.Clone()
	if len(conv.Args) == 3 {
		conv.Attrs["bias"] = true
	}
}

// check panics unless op's arguments and attributes give the result types
// it has: each rewrite keeps every value's type.
func (f *fuser) check(op *ir.Op) {
	types, err := ir.InferTypes(op)
	if err != nil {
		panic("BUG: fusion built an invalid op: " + err.Error())
	}
	if len(types) != len(op.Results) {
		panic(fmt.Sprintf("BUG: fusion built %s with %d results, want %d", op, len(op.Results), len(types)))
	}
	for i, t := range types {
		if got := op.Results[i].Type; got.DType != t.DType || !got.Shape.Equal(t.Shape) {
			panic(fmt.Sprintf("BUG: fusion changed result %d of %s from %v to %v", i, op, got, t))
		}
	}
}

// setArgs sets op's arguments, keeping the reader lists up to date.
func (f *fuser) setArgs(op *ir.Op, args []*ir.Value) {
	for _, a := range op.Args {
		f.users[a] = slices.DeleteFunc(f.users[a], func(u *ir.Op) bool { return u == op })
	}
	op.Args = args
	for _, a := range args {
		if !slices.Contains(f.users[a], op) {
			f.users[a] = append(f.users[a], op)
		}
	}
}

// replace makes every reader of old (ops, outputs, updates) read new.
func (f *fuser) replace(old, new *ir.Value) {
	for _, op := range slices.Clone(f.users[old]) {
		args := slices.Clone(op.Args)
		for i, a := range args {
			if a == old {
				args[i] = new
			}
		}
		f.setArgs(op, args)
	}
	if f.external[old] {
		for i := range f.g.Outputs {
			if f.g.Outputs[i].Value == old {
				f.g.Outputs[i].Value = new
			}
		}
		for i := range f.g.Updates {
			if f.g.Updates[i].Value == old {
				f.g.Updates[i].Value = new
			}
		}
		delete(f.external, old)
		f.external[new] = true
	}
}

// remove deletes op, whose results must no longer be read.
func (f *fuser) remove(op *ir.Op) {
	for _, r := range op.Results {
		if len(f.users[r]) > 0 || f.external[r] {
			panic(fmt.Sprintf("BUG: fusion removes %s, whose result %d is still read", op, r.Index))
		}
	}
	f.setArgs(op, nil)
	f.slots[f.pos[op]] = nil
	f.removed[op] = true
}

// move puts op in the slot of the removed op old.
func (f *fuser) move(op, old *ir.Op) {
	f.slots[f.pos[op]] = nil
	f.put(op, f.pos[old])
}

// put places op in the empty slot p.
func (f *fuser) put(op *ir.Op, p int) {
	if f.slots[p] != nil {
		panic(fmt.Sprintf("BUG: fusion places %s in the slot of %s", op, f.slots[p]))
	}
	f.slots[p] = op
	f.pos[op] = p
	for _, a := range op.Args {
		if !slices.Contains(f.users[a], op) {
			f.users[a] = append(f.users[a], op)
		}
	}
}

// finish writes the new schedule back to the graph and checks it.
func (f *fuser) finish() {
	ops := f.g.Ops[:0]
	for _, op := range f.slots {
		if op != nil {
			ops = append(ops, op)
		}
	}
	f.g.Ops = ops
	if err := ir.Verify(f.g); err != nil {
		panic("BUG: the fused graph does not verify: " + strings.ReplaceAll(err.Error(), "\n", "; "))
	}
}

// fuseNewOp builds an op, not yet in a graph, with the result types the op
// table infers. The pass builds ops only from verified ones, so an error is
// a bug.
func fuseNewOp(kind ir.OpKind, name string, attrs ir.Attrs, args ...*ir.Value) *ir.Op {
	op := &ir.Op{Kind: kind, Name: name, Args: args, Attrs: attrs.Clone()}
	types, err := ir.InferTypes(op)
	if err != nil {
		panic("BUG: fusion built an invalid op: " + err.Error())
	}
	for i, t := range types {
		t.Shape = slices.Clone(t.Shape)
		op.Results = append(op.Results, &ir.Value{Type: t, Def: op, Index: i})
	}
	return op
}

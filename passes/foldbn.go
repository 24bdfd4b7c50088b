package passes

import (
	"errors"
	"fmt"
	"slices"

	"github.com/resnetc/resnetc/ir"
)

// FoldBatchNorm merges every inference BatchNorm that directly follows a
// conv into that conv's weights and bias, so that inference runs one conv
// where it ran a conv and a normalization pass over the whole tensor.
//
// A conv2d(x, w[, b]) whose only use is bnnorm(y, mean, var, gamma, beta),
// with w, b and the four statistics all params or state, becomes
//
//	w', b' = bnfold(w, [b], mean, var, gamma, beta) "<conv>.fold" {eps}
//	y'     = conv2d(x, w', b') "<conv>"             (same stride and pad)
//
// and the BatchNorm's readers read y'. The bnfold ops depend only on params
// and state, so generated code computes them once, when the weights are
// loaded, not in every forward pass.
//
// What is left alone, because folding there would be wrong:
//   - a conv whose result has readers besides the BatchNorm (they need the
//     unnormalized values);
//   - a BatchNorm of a sum: in the BN-after-addition and full pre-activation
//     units the BatchNorm reads the residual stream x + F(x), and a scale of
//     a sum cannot move into the one conv that produced a term of it. That
//     BatchNorm is left for the BN-ReLU-conv fusion, which makes it the
//     prologue of the conv that reads it;
//   - a BatchNorm followed by a ReLU and then a conv: a per-channel scale and
//     shift cannot pass through the ReLU;
//   - a BatchNorm right before a conv: folding forwards into that conv would
//     shift the zero padding at its borders, which is not normalized.
//
// A train-mode graph is an error: there BatchNorm normalizes with the
// statistics of each batch, which no fixed weights can reproduce. A graph
// in which nothing folds is returned unchanged.
func FoldBatchNorm(g *ir.Graph) error {
	if g == nil {
		return errors.New("FoldBatchNorm: nil graph")
	}
	if g.Mode == ir.Train {
		return errors.New("FoldBatchNorm: graph is in train mode: BatchNorm uses batch statistics there and cannot be folded")
	}
	if err := ir.Verify(g); err != nil {
		return fmt.Errorf("FoldBatchNorm: input graph does not verify: %w", err)
	}

	// Find the conv -> BatchNorm pairs. A value read by an output or an
	// update has a reader besides the BatchNorm.
	uses := g.Uses()
	external := make(map[*ir.Value]bool)
	for _, o := range g.Outputs {
		external[o.Value] = true
	}
	for _, u := range g.Updates {
		external[u.Value] = true
	}
	folded := make(map[*ir.Op]*ir.Op) // bnnorm -> the conv folded into it
	removed := make(map[*ir.Op]bool)  // convs to drop
	for _, bn := range g.Ops {
		if conv := foldableConv(bn, uses, external); conv != nil {
			folded[bn] = conv
			removed[conv] = true
		}
	}
	if len(folded) == 0 {
		return nil
	}

	// Rebuild the op list: each folded BatchNorm is replaced, in place, by
	// its bnfold and the new conv (both come after every argument they read:
	// the BatchNorm did), and its conv is dropped.
	replace := make(map[*ir.Value]*ir.Value)
	ops := make([]*ir.Op, 0, len(g.Ops))
	for _, op := range g.Ops {
		if removed[op] {
			continue
		}
		conv, ok := folded[op]
		if !ok {
			ops = append(ops, op)
			continue
		}
		fold, newConv := foldPair(conv, op)
		ops = append(ops, fold, newConv)
		replace[op.Result()] = newConv.Result()
	}
	g.Ops = ops
	for _, op := range g.Ops {
		for i, a := range op.Args {
			if r, ok := replace[a]; ok {
				op.Args[i] = r
			}
		}
	}
	for i, o := range g.Outputs {
		if r, ok := replace[o.Value]; ok {
			g.Outputs[i].Value = r
		}
	}
	for i, u := range g.Updates {
		if r, ok := replace[u.Value]; ok {
			g.Updates[i].Value = r
		}
	}
	return nil
}

// foldableConv returns the conv2d that bn can be folded into, or nil: bn
// must be an inference BatchNorm of a conv2d's result that nothing else
// reads, with params or state for the conv's weight and bias and for the
// BatchNorm's statistics, so that the bnfold is computed from loaded
// weights alone.
func foldableConv(bn *ir.Op, uses map[*ir.Value][]*ir.Op, external map[*ir.Value]bool) *ir.Op {
	if bn.Kind != ir.BNNorm || len(bn.Args) != 5 {
		return nil
	}
	y := bn.Args[0]
	conv := y.Def
	if conv == nil || conv.Kind != ir.Conv2D || len(conv.Results) != 1 {
		return nil
	}
	if external[y] || len(uses[y]) != 1 || uses[y][0] != bn {
		return nil
	}
	if slices.Contains(bn.Args[1:], y) {
		return nil
	}
	for _, a := range slices.Concat(conv.Args[1:], bn.Args[1:]) {
		if !isLoadedTensor(a) {
			return nil
		}
	}
	return conv
}

// isLoadedTensor reports whether v is a param or state declaration: a tensor
// that is loaded with the model rather than fed or computed every step.
func isLoadedTensor(v *ir.Value) bool {
	return v.Def != nil && (v.Def.Kind == ir.Param || v.Def.Kind == ir.State)
}

// foldPair builds the bnfold and the conv that replace conv followed by bn.
// The new conv keeps the old one's name, attributes and result type
// (layout included, so that the pass can run after Layout).
func foldPair(conv, bn *ir.Op) (fold, newConv *ir.Op) {
	foldArgs := slices.Concat(conv.Args[1:], bn.Args[1:]) // w, [b], mean, var, gamma, beta
	foldAttrs := ir.Attrs{}
	if eps, ok := bn.Attrs["eps"]; ok {
		foldAttrs["eps"] = eps
	}
	name := ""
	if conv.Name != "" {
		name = conv.Name + ".fold"
	}
	fold = unlinkedOp(ir.BNFold, name, foldAttrs, foldArgs...)
	newConv = unlinkedOp(ir.Conv2D, conv.Name, conv.Attrs, conv.Args[0], fold.Results[0], fold.Results[1])
	r := newConv.Result()
	if want := bn.Result().Type; !r.Type.Shape.Equal(want.Shape) || r.Type.DType != want.DType {
		panic(fmt.Sprintf("BUG: folding %s into %s: the folded conv gives %v, the BatchNorm gave %v", bn, conv, r.Type, want))
	}
	r.Type.Layout = conv.Result().Type.Layout
	return fold, newConv
}

// unlinkedOp builds an op with the result types the op table infers, without
// adding it to a graph. The pass only builds ops from verified ones, so an
// error is a bug.
func unlinkedOp(kind ir.OpKind, name string, attrs ir.Attrs, args ...*ir.Value) *ir.Op {
	op := &ir.Op{Kind: kind, Name: name, Args: args, Attrs: attrs.Clone()}
	types, err := ir.InferTypes(op)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	for i, t := range types {
		t.Shape = slices.Clone(t.Shape)
		op.Results = append(op.Results, &ir.Value{Type: t, Def: op, Index: i})
	}
	return op
}

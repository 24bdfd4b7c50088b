package passes

import (
	"errors"
	"fmt"
	"slices"

	"github.com/resnetc/resnetc/ir"
)

// Layout stores every rank-4 activation whose channel count is a multiple
// of 8 in blocked NCHW8c, so that the 8 channels of one pixel are one YMM
// register of float32 and the conv kernels load, FMA and store whole
// registers; every other tensor stays NCHW.
//
// The results of layout-free ops (convs, their gradients, pooling,
// subsample-pad: ir.OpInfo.LayoutFree) are set from their channel count
// alone. Every other op takes the layout the op table infers from its
// arguments, so an elementwise op keeps its argument's layout and results
// that are not rank 4 (statistics, GAP, logits, weight gradients) stay
// plain. Declarations keep their declared layout: inputs are fed and params
// and state are saved in NCHW (conv weights are rank 4 too; the code
// generator chooses their packing).
//
// Because every computed tensor's layout follows from its channel count,
// the arguments of an op can disagree only downstream of a declared rank-4
// tensor that meets a blocked one; there, and where an update writes a
// blocked value to a plain declaration, the pass inserts an explicit
// relayout, so a lowered network gets none. The pass works on any graph
// (forward or training step, fused or not), leaves the computation itself
// unchanged and is idempotent.
func Layout(g *ir.Graph) error {
	if g == nil {
		return errors.New("Layout: nil graph")
	}
	if err := ir.Verify(g); err != nil {
		return fmt.Errorf("Layout: input graph does not verify: %w", err)
	}
	l := &layouter{relayouts: make(map[layoutKey]*ir.Value)}
	for _, op := range g.Ops {
		switch {
		case op.Kind.IsDecl():
			// Declared types are the caller's and the weight file's.
		case ir.Info(op.Kind).LayoutFree:
			for _, r := range op.Results {
				if len(r.Type.Shape) == 4 {
					r.Type.Layout = blockedLayout(r.Type)
				}
			}
		default:
			l.inferLayouts(op)
		}
		l.ops = append(l.ops, op)
	}
	for i, u := range g.Updates {
		if t := u.Target.Type; !u.Value.Type.Equal(t) {
			g.Updates[i].Value = l.relayout(u.Value, t.Layout)
		}
	}
	g.Ops = l.ops
	return nil
}

// blockedLayout is the layout the pass gives a rank-4 computed tensor of
// type t.
func blockedLayout(t ir.Type) ir.Layout {
	if t.DType == ir.F32 && len(t.Shape) == 4 && t.Shape[1]%8 == 0 {
		return ir.NCHW8c
	}
	return ir.NCHW
}

// layoutKey names a relayout of a value, so that all readers of a value
// that need it in another layout share one.
type layoutKey struct {
	v      *ir.Value
	layout ir.Layout
}

// layouter holds the state of one Layout call: the new op list and the
// relayouts inserted so far.
type layouter struct {
	ops       []*ir.Op
	relayouts map[layoutKey]*ir.Value
}

// inferLayouts sets the result types of op, which is not layout-free, to
// what the op table infers from its arguments, first relayouting arguments
// whose layouts disagree where the op needs them to agree.
func (l *layouter) inferLayouts(op *ir.Op) {
	types, err := ir.InferTypes(op)
	if err != nil {
		// The input graph verified and only layouts have changed since, so
		// the op must accept its arguments with layouts ignored; it then
		// accepts them each in the layout of its channel count.
		plain := &ir.Op{Kind: op.Kind, Name: op.Name, Attrs: op.Attrs}
		for _, a := range op.Args {
			t := a.Type
			t.Layout = ir.NCHW
			plain.Args = append(plain.Args, &ir.Value{Type: t})
		}
		if _, perr := ir.InferTypes(plain); perr != nil {
			panic(fmt.Sprintf("BUG: Layout: %v, with layouts ignored: %v", err, perr))
		}
		for i, a := range op.Args {
			if len(a.Type.Shape) == 4 && a.Type.Layout != blockedLayout(a.Type) {
				op.Args[i] = l.relayout(a, blockedLayout(a.Type))
			}
		}
		if types, err = ir.InferTypes(op); err != nil {
			panic(fmt.Sprintf("BUG: Layout: %v, after relayouting its arguments", err))
		}
	}
	if len(types) != len(op.Results) {
		panic(fmt.Sprintf("BUG: Layout: %s has %d results, the op table infers %d", op, len(op.Results), len(types)))
	}
	for i, t := range types {
		t.Shape = slices.Clone(t.Shape)
		op.Results[i].Type = t
	}
}

// relayout returns v stored in layout: a relayout op appended to the op
// list (once per value and layout), named after v's producer.
func (l *layouter) relayout(v *ir.Value, layout ir.Layout) *ir.Value {
	key := layoutKey{v, layout}
	if r, ok := l.relayouts[key]; ok {
		return r
	}
	name := "relayout"
	if v.Def != nil && v.Def.Name != "" {
		name = v.Def.Name + "." + layout.String()
	}
	op := unlinkedOp(ir.Relayout, name, ir.Attrs{"layout": layout.String()}, v)
	l.ops = append(l.ops, op)
	r := op.Result()
	l.relayouts[key] = r
	return r
}

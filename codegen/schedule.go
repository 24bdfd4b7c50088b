package codegen

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/passes"
)

// bufKind names the buffer a tensor lives in at run time.
type bufKind uint8

const (
	inArena  bufKind = iota // activations, gradients and step inputs: the planned arena
	inParams                // trained parameters
	inState                 // running statistics, momentum and other state
	inLabels                // the i32 labels of a training step
	inFolded                // what inference computes from the weights alone, kept between calls
)

// bufName is the Go name of the buffer, as the generated functions
// declare it.
var bufName = [...]string{inArena: "a", inParams: "p", inState: "s", inLabels: "l", inFolded: "f"}

// ref is where one value's elements live: Len float32 (or int32)
// elements from Off in buffer Buf.
type ref struct {
	Buf      bufKind
	Off, Len int
}

// overlaps reports whether r and q share an element.
func (r ref) overlaps(q ref) bool {
	return r.Buf == q.Buf && r.Off < q.Off+q.Len && q.Off < r.Off+r.Len
}

// layout is the storage of one graph: every value it reads or computes,
// mapped to a ref.
type layout struct {
	g     *ir.Graph
	plan  *passes.MemPlan
	decls *declLayout
	refs  map[*ir.Value]ref

	// For inference (see hoist): the ops computed from the weights alone,
	// the storage of each convolution's packed weights (a value of its
	// own, not in the graph), and the length of the buffer they live in.
	hoisted   map[*ir.Op]bool
	packed    map[*ir.Value]*ir.Value
	foldedLen int
}

// newLayout maps every value of g to its storage: declarations of params
// and state to their place in the shared decl buffers, labels to the
// labels buffer, other inputs and every op result to the arena at the
// offset the plan gives, or, for an update computed into state, to the
// storage of its target.
func newLayout(g *ir.Graph, plan *passes.MemPlan, decls *declLayout) (*layout, error) {
	l := &layout{g: g, plan: plan, decls: decls, refs: map[*ir.Value]ref{}}
	for i, op := range g.Ops {
		for _, v := range op.Results {
			n := v.Type.Shape.Elems()
			switch {
			case op.Kind == ir.Param || op.Kind == ir.State:
				d, ok := decls.byName[op.Name]
				if !ok {
					return nil, fmt.Errorf("op %d %s: no storage for %q", i, op, op.Name)
				}
				if !slices.Equal(d.Shape, v.Type.Shape) {
					return nil, fmt.Errorf("op %d %s: shape %v, but the model stores %q as %v", i, op, v.Type.Shape, op.Name, d.Shape)
				}
				l.refs[v] = d.ref
			case v.Type.DType == ir.I32:
				if op.Kind != ir.Input {
					return nil, fmt.Errorf("op %d %s: i32 results are not supported (only i32 inputs)", i, op)
				}
				l.refs[v] = ref{Buf: inLabels, Len: n}
			default:
				if target, ok := plan.InState[v]; ok {
					r, ok := l.refs[target]
					if !ok {
						return nil, fmt.Errorf("BUG: codegen: op %d %s: in-state target has no storage", i, op)
					}
					l.refs[v] = r
					continue
				}
				off, ok := plan.Offsets[v]
				if !ok {
					return nil, fmt.Errorf("BUG: codegen: op %d %s: result %d has no arena offset", i, op, v.Index)
				}
				if off%4 != 0 {
					return nil, fmt.Errorf("BUG: codegen: op %d %s: arena offset %d is not a multiple of 4", i, op, off)
				}
				l.refs[v] = ref{Buf: inArena, Off: int(off / 4), Len: n}
			}
		}
	}
	return l, nil
}

// foldedAlign is the alignment, in float32s, of the values in the folded
// buffer: a cache line.
const foldedAlign = 16

// hoist moves what inference computes from the weights alone out of the
// arena, so that it is computed once and kept until the weights change:
// every op whose arguments are all params, state or results of such ops
// (BatchNorm folded into a convolution, the scale and shift of a
// standalone BatchNorm) computes into the folded buffer, and each
// convolution's weights get a place there in the kernels' packed layout.
// The generated code runs the hoisted ops, and packs, only when the
// model's refold flag says the weights changed since the last Infer.
// The convolutions wino reports run by Winograd F(4x4, 3x3) keep their
// weights transformed, 36 values per pair of channels instead of 9.
func (l *layout) hoist(wino func(*ir.Op) bool) {
	l.hoisted, l.packed = map[*ir.Op]bool{}, map[*ir.Value]*ir.Value{}
	fixed := func(v *ir.Value) bool {
		return v.Def.Kind == ir.Param || v.Def.Kind == ir.State || l.hoisted[v.Def]
	}
	place := func(v *ir.Value) ref {
		r := ref{Buf: inFolded, Off: l.foldedLen, Len: v.Type.Shape.Elems()}
		l.foldedLen += roundUp(r.Len, foldedAlign)
		return r
	}
	for _, op := range l.g.Ops {
		if op.Kind.IsDecl() || len(op.Args) == 0 {
			continue
		}
		if op.Kind == ir.Conv2D || op.Kind == ir.Conv2DFused {
			if w := op.Args[1]; fixed(w) && l.packed[w] == nil {
				// Fewer than 8 input channels are packed padded to 8.
				s := w.Type.Shape
				p := &ir.Value{Type: ir.Type{DType: w.Type.DType, Shape: ir.Shape{s[0], roundUp(s[1], 8), s[2], s[3]}}}
				if wino(op) {
					p.Type.Shape[2], p.Type.Shape[3] = 6, 6
				}
				l.packed[w] = p
				l.refs[p] = place(p)
			}
			continue
		}
		if !slices.ContainsFunc(op.Args, func(v *ir.Value) bool { return !fixed(v) }) {
			l.hoisted[op] = true
			for _, v := range op.Results {
				l.refs[v] = place(v)
			}
		}
	}
}

// packedOf is the packed copy of conv op's weights, or nil.
func (l *layout) packedOf(op *ir.Op) *ir.Value {
	if l.packed == nil || op.Kind != ir.Conv2D && op.Kind != ir.Conv2DFused {
		return nil
	}
	return l.packed[op.Args[1]]
}

// block is a run of consecutive ops of the schedule that belong to one
// group (a residual unit, the stem, the head, the loss) and one phase.
// Blocks with the same signature share one generated function; a row of
// that function's table gives each block's storage offsets.
type block struct {
	group string
	phase string
	ops   []*ir.Op
	cols  []ref             // the block's storage references, in first-use order
	col   map[*ir.Value]int // value -> column
	sig   string
	fn    *blockFn
	row   int // index in fn's table
}

// blockFn is one generated function and its table.
type blockFn struct {
	name  string
	proto *block // the first block with this signature, written as the body
	rows  [][]int
}

// unitRE matches the group prefix of residual-unit names, "s2.u14".
var unitRE = regexp.MustCompile(`^s[0-9]+\.u[0-9]+`)

// groupOf is the group of an op name: "s2.u14" for the ops of a unit,
// else the first dotted component ("stem", "head", "loss").
func groupOf(name string) string {
	if m := unitRE.FindString(name); m != "" && (len(name) == len(m) || name[len(m)] == '.') {
		return m
	}
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[:i]
	}
	return name
}

// phaseOf names the part of the step an op belongs to.
func phaseOf(op *ir.Op, i, bwd int) string {
	switch {
	case op.Kind == ir.SGD:
		return "Update"
	case strings.HasSuffix(op.Name, ".remat"):
		return "Recompute"
	case i >= bwd:
		return "Backward"
	}
	return "Forward"
}

// blocks splits the ops of l.g (declarations excluded) into blocks and
// assigns each a function, reusing one for every block of the same
// signature. prefix starts every function name ("train", "infer").
func (l *layout) blocks(prefix string) ([]*block, []*blockFn, error) {
	bwd := l.plan.BackwardStart
	var bs []*block
	var cur *block
	for i, op := range l.g.Ops {
		if op.Kind.IsDecl() {
			continue
		}
		if _, ok := opImpls[op.Kind]; !ok {
			return nil, nil, fmt.Errorf("op %d %s: code generation does not support this op kind", i, op)
		}
		g, ph := groupOf(op.Name), phaseOf(op, i, bwd)
		if cur == nil || cur.group != g || cur.phase != ph {
			cur = &block{group: g, phase: ph, col: map[*ir.Value]int{}}
			bs = append(bs, cur)
		}
		cur.ops = append(cur.ops, op)
	}
	fns := map[string]*blockFn{}
	var order []*blockFn
	names := map[string]int{}
	for _, b := range bs {
		b.signature(l)
		fn := fns[b.sig]
		if fn == nil {
			base := prefix + camel(groupClass(b.group)) + b.phase
			names[base]++
			name := base
			if k := names[base]; k > 1 {
				name += strconv.Itoa(k)
			}
			fn = &blockFn{name: name, proto: b}
			fns[b.sig] = fn
			order = append(order, fn)
		}
		b.fn = fn
		b.row = len(fn.rows)
		row := make([]int, len(b.cols))
		for i, c := range b.cols {
			row[i] = c.Off
		}
		fn.rows = append(fn.rows, row)
	}
	return bs, order, nil
}

// groupClass is the group with the unit number dropped: "s2" for
// "s2.u14", so that function names say the stage.
func groupClass(g string) string {
	if unitRE.MatchString(g) {
		return g[:strings.IndexByte(g, '.')]
	}
	return g
}

// signature numbers the block's storage references and writes the
// signature: everything the generated body depends on (op kinds,
// attributes, types, which column each argument and result is, the
// buffer and length of each column), and nothing that differs between
// blocks of the same shape (offsets, names).
func (b *block) signature(l *layout) {
	var s strings.Builder
	use := func(v *ir.Value) int {
		if k, ok := b.col[v]; ok {
			return k
		}
		k := len(b.cols)
		b.col[v] = k
		b.cols = append(b.cols, l.refs[v])
		return k
	}
	for _, op := range b.ops {
		fmt.Fprintf(&s, "%s{", op.Kind)
		for _, k := range op.Attrs.Keys() {
			fmt.Fprintf(&s, "%s=%v,", k, op.Attrs[k])
		}
		s.WriteString("}(")
		for _, a := range op.Args {
			k := use(a)
			fmt.Fprintf(&s, "%d:%d/%d:%s,", k, b.cols[k].Buf, b.cols[k].Len, a.Type)
		}
		s.WriteString(")->(")
		for _, r := range op.Results {
			k := use(r)
			fmt.Fprintf(&s, "%d:%d/%d:%s,", k, b.cols[k].Buf, b.cols[k].Len, r.Type)
		}
		if p := l.packedOf(op); p != nil {
			fmt.Fprintf(&s, "packed %d", use(p))
		}
		s.WriteString(");")
	}
	b.sig = s.String()
}

// localName is an op's name without its group prefix: "conv1" for
// "s2.u14.conv1".
func localName(op *ir.Op, group string) string {
	n := strings.TrimPrefix(op.Name, group)
	n = strings.TrimPrefix(n, ".")
	if n == "" {
		return op.Name
	}
	return n
}

// camel turns a dotted or dashed name into a Go identifier part:
// "s1" -> "S1", "conv1.weight" -> "Conv1Weight", "bn1.gamma" ->
// "BN1Gamma".
func camel(s string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) {
		if strings.HasPrefix(part, "bn") && (len(part) == 2 || part[2] >= '0' && part[2] <= '9') {
			b.WriteString("BN" + part[2:])
			continue
		}
		if part == "fc" {
			b.WriteString("FC")
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

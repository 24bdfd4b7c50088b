package ir

import (
	"fmt"
	"strconv"
	"strings"
)

const maxVerifyErrors = 20

// Verify checks the invariants every pass relies on and returns all
// violations found (up to a limit) as an ErrorList. Each message names the
// op by its index, kind and name, and values by their %N in the text form.
//
// It checks that every op has a known kind, valid arity and attributes,
// and the result types the op table infers; that results point back at
// their op; that every argument is produced by exactly one op earlier in
// the graph (reporting cycles as such); that declaration names and output
// names are non-empty and unique; that updates write a param or state once
// with a value of its type; and that an inference graph holds no
// training-only op and no update.
func Verify(g *Graph) error {
	if g == nil {
		return ErrorList{{Msg: "graph is nil"}}
	}
	v := &verifier{
		g:        g,
		errs:     errorSink{limit: maxVerifyErrors},
		ids:      map[*Value]int{},
		producer: map[*Value]int{},
		opIndex:  map[*Op]int{},
	}
	v.verify()
	return v.errs.err(false)
}

type verifier struct {
	g        *Graph
	errs     errorSink
	ids      map[*Value]int // numbering of the text form
	producer map[*Value]int // index of the first op listing the value among its results
	opIndex  map[*Op]int
}

func (v *verifier) errorf(format string, args ...any) { v.errs.add(Pos{}, format, args...) }

// opErr records an error about op i.
func (v *verifier) opErr(i int, format string, args ...any) {
	v.errorf("%s: %s", v.opName(i), fmt.Sprintf(format, args...))
}

// opName is "op 7 conv2d "s1.u1.conv1"".
func (v *verifier) opName(i int) string {
	return fmt.Sprintf("op %d %s", i, v.g.Ops[i])
}

// ref is a value's %N, or %? for a value no op in the graph produces.
func (v *verifier) ref(x *Value) string {
	if id, ok := v.ids[x]; ok {
		return "%" + strconv.Itoa(id)
	}
	return "%?"
}

func (v *verifier) verify() {
	g := v.g
	if g.Mode != Infer && g.Mode != Train {
		v.errorf("graph %q: mode is %v, want infer or train", g.Name, g.Mode)
	}

	// Index ops and number values as the printer does.
	for i, op := range g.Ops {
		if op == nil {
			v.errorf("op %d is nil", i)
			continue
		}
		if j, dup := v.opIndex[op]; dup {
			v.opErr(i, "is the same op as op %d", j)
			continue
		}
		v.opIndex[op] = i
		for _, r := range op.Results {
			if _, ok := v.ids[r]; !ok && r != nil {
				v.ids[r] = len(v.ids)
			}
		}
	}

	// Results.
	for i, op := range g.Ops {
		if op == nil || v.opIndex[op] != i {
			continue
		}
		for j, r := range op.Results {
			switch {
			case r == nil:
				v.opErr(i, "result %d is nil", j)
				continue
			case r.Def != op || r.Index != j:
				v.opErr(i, "result %d (%s) does not point back at its op (Def is %s, Index is %d)", j, v.ref(r), v.defName(r), r.Index)
			}
			if k, dup := v.producer[r]; dup {
				v.opErr(i, "result %d (%s) is also a result of %s; a value is produced by one op", j, v.ref(r), v.opName(k))
				continue
			}
			v.producer[r] = i
		}
	}

	// Ops: kinds, arguments, types.
	var forward [][2]int // {producer, consumer} with producer >= consumer
	succ := make([][]int, len(g.Ops))
	for i, op := range g.Ops {
		if op == nil || v.opIndex[op] != i {
			continue
		}
		known := Info(op.Kind) != nil
		if !known {
			v.opErr(i, "unknown op kind")
		}
		for j, a := range op.Args {
			if a == nil {
				v.opErr(i, "argument %d is nil", j)
				continue
			}
			k, ok := v.producer[a]
			if !ok {
				v.opErr(i, "argument %d is an unknown value: no op in the graph produces it", j)
				continue
			}
			succ[k] = append(succ[k], i)
			if k >= i {
				forward = append(forward, [2]int{k, i})
			}
		}
		if known {
			v.checkTypes(i, op)
		}
		if g.Mode == Infer && op.Kind.TrainingOnly() {
			v.opErr(i, "training-only op in an inference graph")
		}
	}
	v.checkOrder(forward, succ)
	v.checkNames()
	v.checkOutputs()
	v.checkUpdates()
}

// defName describes a value's Def field for an error message.
func (v *verifier) defName(r *Value) string {
	if r.Def == nil {
		return "nil"
	}
	if i, ok := v.opIndex[r.Def]; ok {
		return v.opName(i)
	}
	return fmt.Sprintf("%s, an op not in the graph", r.Def)
}

// checkTypes checks arity, attributes and result types against the op table.
func (v *verifier) checkTypes(i int, op *Op) {
	for _, r := range op.Results {
		if r == nil {
			return // reported; a declaration's inference would read it
		}
	}
	types, err := InferTypes(op)
	if err != nil {
		v.opErr(i, "%s", strings.TrimPrefix(err.Error(), op.String()+": "))
		return
	}
	if len(types) != len(op.Results) {
		v.opErr(i, "shape mismatch: has %d results, the op table infers %d", len(op.Results), len(types))
		return
	}
	for j, t := range types {
		r := op.Results[j]
		t = expectedType(op, t, r.Type)
		if l := r.Type.Layout; l == NCHW8c && (len(r.Type.Shape) != 4 || r.Type.Shape[1]%8 != 0) {
			v.opErr(i, "result %d (%s) is %v: layout nchw8c needs rank 4 and a multiple of 8 channels", j, v.ref(r), r.Type)
		}
		if !r.Type.Equal(t) {
			v.opErr(i, "shape mismatch: result %d (%s) is %v, the op table infers %v", j, v.ref(r), r.Type, t)
		}
	}
}

// checkOrder reports arguments produced at or after their use: as a cycle
// when the graph has one through that use, else as a scheduling error.
func (v *verifier) checkOrder(forward [][2]int, succ [][]int) {
	if len(forward) == 0 {
		return
	}
	comp := strongComponents(succ)
	reported := map[int]bool{}
	for _, e := range forward {
		k, i := e[0], e[1]
		if comp[k] == comp[i] {
			if !reported[comp[k]] {
				reported[comp[k]] = true
				v.reportCycle(i, comp, succ)
			}
			continue
		}
		for j, a := range v.g.Ops[i].Args {
			if a != nil && v.producer[a] == k {
				v.opErr(i, "argument %d (%s) is produced later, by %s", j, v.ref(a), v.opName(k))
				break
			}
		}
	}
}

// reportCycle finds a shortest cycle through op start inside its strongly
// connected component and reports the ops on it.
func (v *verifier) reportCycle(start int, comp []int, succ [][]int) {
	parent := map[int]int{start: -1}
	queue := []int{start}
	last := -1
	for len(queue) > 0 && last < 0 {
		u := queue[0]
		queue = queue[1:]
		for _, w := range succ[u] {
			if w == start {
				last = u
				break
			}
			if _, seen := parent[w]; !seen && comp[w] == comp[start] {
				parent[w] = u
				queue = append(queue, w)
			}
		}
	}
	if last < 0 {
		panic(fmt.Sprintf("BUG: op %d is in a strongly connected component but on no cycle", start))
	}
	var path []int
	for u := last; u >= 0; u = parent[u] {
		path = append(path, u)
	}
	// path runs backwards from last to start; show it forwards, closed,
	// eliding the middle of a long cycle.
	var names []string
	for j := len(path) - 1; j >= 0; j-- {
		names = append(names, v.opName(path[j]))
	}
	const show = 12
	if n := len(names); n > show {
		names = append(names[:show/2:show/2], append([]string{fmt.Sprintf("... (%d more ops)", n-show)}, names[n-show/2:]...)...)
	}
	names = append(names, v.opName(start))
	v.errorf("cycle: %s", strings.Join(names, " -> "))
}

// strongComponents returns, for each node, the index of its strongly
// connected component (Tarjan's algorithm, without recursion so that deep
// graphs cannot exhaust the stack).
func strongComponents(succ [][]int) []int {
	n := len(succ)
	index := make([]int, n) // 0: not visited; else visit order + 1
	low := make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n)
	var stack []int
	type frame struct{ v, e int }
	next, ncomp := 1, 0
	visit := func(u int) {
		index[u], low[u] = next, next
		next++
		stack = append(stack, u)
		onStack[u] = true
	}
	for s := range n {
		if index[s] != 0 {
			continue
		}
		visit(s)
		calls := []frame{{s, 0}}
		for len(calls) > 0 {
			f := &calls[len(calls)-1]
			u := f.v
			if f.e < len(succ[u]) {
				w := succ[u][f.e]
				f.e++
				if index[w] == 0 {
					visit(w)
					calls = append(calls, frame{w, 0})
				} else if onStack[w] {
					low[u] = min(low[u], index[w])
				}
				continue
			}
			if low[u] == index[u] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					if w == u {
						break
					}
				}
				ncomp++
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				p := calls[len(calls)-1].v
				low[p] = min(low[p], low[u])
			}
		}
	}
	return comp
}

// checkNames checks that declarations have non-empty, unique names: they
// are what inputs are fed by and weights are saved under.
func (v *verifier) checkNames() {
	seen := map[string]int{}
	for i, op := range v.g.Ops {
		if op == nil || !op.Kind.IsDecl() || v.opIndex[op] != i {
			continue
		}
		if op.Name == "" {
			v.opErr(i, "declaration has no name")
			continue
		}
		if j, dup := seen[op.Name]; dup {
			v.opErr(i, "duplicate declaration name %q (also %s)", op.Name, v.opName(j))
			continue
		}
		seen[op.Name] = i
	}
}

func (v *verifier) checkOutputs() {
	seen := map[string]int{}
	for i, o := range v.g.Outputs {
		name := fmt.Sprintf("output %d %q", i, o.Name)
		switch {
		case o.Name == "":
			v.errorf("%s: output has no name", name)
		default:
			if j, dup := seen[o.Name]; dup {
				v.errorf("%s: duplicate output name (also output %d)", name, j)
			} else {
				seen[o.Name] = i
			}
		}
		if o.Value == nil {
			v.errorf("%s: value is nil", name)
		} else if _, ok := v.producer[o.Value]; !ok {
			v.errorf("%s: unknown value: no op in the graph produces it", name)
		}
	}
}

func (v *verifier) checkUpdates() {
	if v.g.Mode == Infer && len(v.g.Updates) > 0 {
		v.errorf("inference graph has %d updates, want none", len(v.g.Updates))
	}
	updated := map[*Value]int{}
	for i, u := range v.g.Updates {
		name := fmt.Sprintf("update %d (%s <- %s)", i, v.ref(u.Target), v.ref(u.Value))
		k, targetOK := v.producer[u.Target]
		switch {
		case u.Target == nil:
			v.errorf("%s: target is nil", name)
		case !targetOK:
			v.errorf("%s: target is an unknown value: no op in the graph produces it", name)
		default:
			if kind := v.g.Ops[k].Kind; kind != Param && kind != State {
				v.errorf("%s: target is a result of %s, want a param or state", name, v.opName(k))
				targetOK = false
			} else if j, dup := updated[u.Target]; dup {
				v.errorf("%s: %s is already updated by update %d", name, v.opName(k), j)
			} else {
				updated[u.Target] = i
			}
		}
		_, valueOK := v.producer[u.Value]
		switch {
		case u.Value == nil:
			v.errorf("%s: value is nil", name)
		case !valueOK:
			v.errorf("%s: value is an unknown value: no op in the graph produces it", name)
		case targetOK && !u.Value.Type.Equal(u.Target.Type):
			v.errorf("%s: value is %v but target %s is %v", name, u.Value.Type, v.opName(k), u.Target.Type)
		}
	}
}

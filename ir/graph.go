package ir

import (
	"fmt"
	"slices"
)

// Mode says which kind of step a graph computes.
type Mode uint8

const (
	Infer Mode = iota + 1 // inference: BatchNorm uses running statistics, dropout is off
	Train                 // training: batch statistics, dropout masks, and (after autodiff) backward and update
)

func (m Mode) String() string {
	switch m {
	case Infer:
		return "infer"
	case Train:
		return "train"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Value is a tensor produced by exactly one Op.
type Value struct {
	Type Type
	Def  *Op // the op that produces this value
	// Index is this value's position among Def.Results.
	Index int
}

// Op is one operation: a kind, arguments, attributes and results. Input,
// param and state ops have no arguments; their Name is the tensor's name
// (the name weights are saved under).
type Op struct {
	Kind    OpKind
	Name    string // hierarchical, from the DSL: "s2.u1.conv1"; may be empty
	Args    []*Value
	Results []*Value
	Attrs   Attrs
}

// Result returns the op's only result; it panics if there is not exactly one.
func (op *Op) Result() *Value {
	if len(op.Results) != 1 {
		panic(fmt.Sprintf("BUG: %s has %d results, want 1", op, len(op.Results)))
	}
	return op.Results[0]
}

func (op *Op) String() string {
	if op.Name != "" {
		return fmt.Sprintf("%s %q", op.Kind, op.Name)
	}
	return string(op.Kind)
}

// Output is a named graph output.
type Output struct {
	Name  string
	Value *Value
}

// Update says that after a step, the param or state produced by Target
// takes the value Value. It is how a training step writes back new weights,
// momentum buffers and running statistics.
type Update struct {
	Target *Value // result of a param or state op
	Value  *Value
}

// Graph is a static computation: ops in schedule order, named outputs and
// updates.
type Graph struct {
	Name    string
	Mode    Mode
	Ops     []*Op
	Outputs []Output
	Updates []Update
}

// New returns an empty graph.
func New(name string, mode Mode) *Graph { return &Graph{Name: name, Mode: mode} }

// AddOp appends an op, infers its result types from the op table and
// returns it. It returns an error (naming the op) when the arguments or
// attributes are invalid for the kind.
func (g *Graph) AddOp(kind OpKind, name string, attrs Attrs, args ...*Value) (*Op, error) {
	op := &Op{Kind: kind, Name: name, Args: args, Attrs: attrs.Clone()}
	types, err := InferTypes(op)
	if err != nil {
		return nil, err
	}
	for i, t := range types {
		op.Results = append(op.Results, &Value{Type: t, Def: op, Index: i})
	}
	g.Ops = append(g.Ops, op)
	return op, nil
}

// MustOp is AddOp for builders whose inputs are already known to be valid
// (a lowering that has checked the architecture): an error is a bug.
func (g *Graph) MustOp(kind OpKind, name string, attrs Attrs, args ...*Value) *Op {
	op, err := g.AddOp(kind, name, attrs, args...)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return op
}

// Decl appends an argument-less op (input, param or state) declaring a
// tensor of type t, and returns its value.
func (g *Graph) Decl(kind OpKind, name string, t Type, attrs Attrs) *Value {
	if !kind.IsDecl() {
		panic(fmt.Sprintf("BUG: Decl of %s", kind))
	}
	op := &Op{Kind: kind, Name: name, Attrs: attrs.Clone()}
	op.Results = []*Value{{Type: t, Def: op}}
	g.Ops = append(g.Ops, op)
	return op.Results[0]
}

// Decls returns the ops of the given declaration kind in graph order.
func (g *Graph) Decls(kind OpKind) []*Op {
	var ops []*Op
	for _, op := range g.Ops {
		if op.Kind == kind {
			ops = append(ops, op)
		}
	}
	return ops
}

// Lookup returns the declaration op (input, param or state) with the given
// name, or nil.
func (g *Graph) Lookup(name string) *Op {
	for _, op := range g.Ops {
		if op.Kind.IsDecl() && op.Name == name {
			return op
		}
	}
	return nil
}

// Output returns the output with the given name, or nil.
func (g *Graph) Output(name string) *Value {
	for _, o := range g.Outputs {
		if o.Name == name {
			return o.Value
		}
	}
	return nil
}

// AddOutput appends a named output.
func (g *Graph) AddOutput(name string, v *Value) {
	g.Outputs = append(g.Outputs, Output{Name: name, Value: v})
}

// AddUpdate records that target takes the value v after a step.
func (g *Graph) AddUpdate(target, v *Value) {
	g.Updates = append(g.Updates, Update{Target: target, Value: v})
}

// Uses returns, for every value, the ops that read it, in graph order.
func (g *Graph) Uses() map[*Value][]*Op {
	uses := make(map[*Value][]*Op)
	for _, op := range g.Ops {
		for _, a := range op.Args {
			if !slices.Contains(uses[a], op) {
				uses[a] = append(uses[a], op)
			}
		}
	}
	return uses
}

// ReplaceUses makes every op argument, output and update value that is old
// refer to new instead.
func (g *Graph) ReplaceUses(old, new *Value) {
	for _, op := range g.Ops {
		for i, a := range op.Args {
			if a == old {
				op.Args[i] = new
			}
		}
	}
	for i := range g.Outputs {
		if g.Outputs[i].Value == old {
			g.Outputs[i].Value = new
		}
	}
	for i := range g.Updates {
		if g.Updates[i].Value == old {
			g.Updates[i].Value = new
		}
	}
}

// RemoveDead deletes ops none of whose results is used by another op, an
// output or an update, repeatedly. Declarations are kept.
func (g *Graph) RemoveDead() {
	for {
		live := make(map[*Value]bool)
		for _, op := range g.Ops {
			for _, a := range op.Args {
				live[a] = true
			}
		}
		for _, o := range g.Outputs {
			live[o.Value] = true
		}
		for _, u := range g.Updates {
			live[u.Target] = true
			live[u.Value] = true
		}
		kept := g.Ops[:0]
		removed := false
		for _, op := range g.Ops {
			used := op.Kind.IsDecl()
			for _, r := range op.Results {
				used = used || live[r]
			}
			if used {
				kept = append(kept, op)
			} else {
				removed = true
			}
		}
		g.Ops = kept
		if !removed {
			return
		}
	}
}

// Clone returns a deep copy of g: new ops and values, same structure.
func (g *Graph) Clone() *Graph {
	c := &Graph{Name: g.Name, Mode: g.Mode}
	m := make(map[*Value]*Value)
	get := func(v *Value) *Value {
		if w, ok := m[v]; ok {
			return w
		}
		// A value from outside the op list (an invalid graph): keep it.
		return v
	}
	for _, op := range g.Ops {
		n := &Op{Kind: op.Kind, Name: op.Name, Attrs: op.Attrs.Clone()}
		for _, a := range op.Args {
			n.Args = append(n.Args, get(a))
		}
		for _, r := range op.Results {
			nr := &Value{Type: r.Type, Def: n, Index: r.Index}
			nr.Type.Shape = slices.Clone(r.Type.Shape)
			m[r] = nr
			n.Results = append(n.Results, nr)
		}
		c.Ops = append(c.Ops, n)
	}
	// Arguments may refer forward in an invalid graph; patch them now.
	for _, op := range c.Ops {
		for i, a := range op.Args {
			op.Args[i] = get(a)
		}
	}
	for _, o := range g.Outputs {
		c.Outputs = append(c.Outputs, Output{Name: o.Name, Value: get(o.Value)})
	}
	for _, u := range g.Updates {
		c.Updates = append(c.Updates, Update{Target: get(u.Target), Value: get(u.Value)})
	}
	return c
}

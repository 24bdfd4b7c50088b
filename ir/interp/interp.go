package interp

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/resnetc/resnetc/ir"
)

// Tensor is a dense row-major tensor in logical order (NCHW for rank 4),
// whatever the Type's Layout. Values are float64; i32 tensors (labels) hold
// integers.
type Tensor struct {
	Shape ir.Shape
	Data  []float64
}

// NewTensor returns a zero tensor of the given shape; no dimensions gives a
// scalar (one element).
func NewTensor(shape ...int) *Tensor {
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("BUG: interp.NewTensor: negative dimension in %v", shape))
		}
	}
	s := ir.Shape(slices.Clone(shape))
	if s == nil {
		s = ir.Shape{}
	}
	return &Tensor{Shape: s, Data: make([]float64, s.Elems())}
}

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
}

// Options control a run.
type Options struct {
	// Float32 rounds every op result to float32, as generated code stores
	// tensors; accumulation inside an op is float64 either way. Fed f32
	// declarations are rounded too. Gradient checks run with Float32 false
	// (pure float64).
	Float32 bool
	// Step is the training step; dropout masks are a pure function of (the
	// op's seed attr, Step, element index).
	Step int64
}

// Result is what one run computed.
type Result struct {
	Values  map[*ir.Value]*Tensor // every value the graph computed, including fed declarations
	Outputs map[string]*Tensor    // by output name
	Updates map[string]*Tensor    // by the target declaration's name: the value it takes after the step
}

// Run executes g once. feeds maps declaration names (input, param and state
// ops) to tensors; every declaration must be fed with a tensor of exactly
// its shape (error naming it otherwise); labels outside [0, classes) are an
// error naming the op. Feeds that name no declaration are ignored, so the
// same feeds can run a graph before and after a pass that drops some.
//
// Run verifies nothing else about g beyond what it needs: each op's
// arguments must have been computed before it, and its arity, attributes
// and result types must be what the op table infers (so a kernel never
// indexes out of range). It does not panic on a graph that ir.Verify
// accepts, nor on one it rejects. The result shares no memory with feeds.
func Run(g *ir.Graph, feeds map[string]*Tensor, opt Options) (*Result, error) {
	if g == nil {
		return nil, errors.New("interp: nil graph")
	}
	res := &Result{
		Values:  make(map[*ir.Value]*Tensor),
		Outputs: make(map[string]*Tensor),
		Updates: make(map[string]*Tensor),
	}
	for i, op := range g.Ops {
		if op == nil {
			return nil, fmt.Errorf("interp: op %d is nil", i)
		}
		if err := checkOp(op); err != nil {
			return nil, fmt.Errorf("interp: op %d: %w", i, err)
		}
		if op.Kind.IsDecl() {
			t, err := feed(op, feeds, opt)
			if err != nil {
				return nil, err
			}
			res.Values[op.Results[0]] = t
			continue
		}
		args := make([]*Tensor, len(op.Args))
		for j, a := range op.Args {
			t, ok := res.Values[a]
			if !ok {
				return nil, fmt.Errorf("interp: op %d: %s: argument %d is not computed before the op", i, op, j)
			}
			args[j] = t
		}
		outs := make([]*Tensor, len(op.Results))
		for j, r := range op.Results {
			outs[j] = NewTensor(r.Type.Shape...)
		}
		k := kernels[op.Kind]
		if k == nil {
			return nil, fmt.Errorf("interp: op %d: %s: the interpreter has no kernel for it", i, op)
		}
		if err := k(op, args, outs, opt); err != nil {
			return nil, fmt.Errorf("interp: op %d: %s: %w", i, op, err)
		}
		for j, r := range op.Results {
			if opt.Float32 && r.Type.DType == ir.F32 {
				round32(outs[j].Data)
			}
			res.Values[r] = outs[j]
		}
	}
	for _, o := range g.Outputs {
		t, ok := res.Values[o.Value]
		if !ok {
			return nil, fmt.Errorf("interp: output %q is not a value the graph computes", o.Name)
		}
		res.Outputs[o.Name] = t
	}
	for _, u := range g.Updates {
		if u.Target == nil || u.Target.Def == nil || !u.Target.Def.Kind.IsDecl() {
			return nil, errors.New("interp: an update's target is not a declaration")
		}
		name := u.Target.Def.Name
		t, ok := res.Values[u.Value]
		if !ok {
			return nil, fmt.Errorf("interp: update of %q: its value is not one the graph computes", name)
		}
		res.Updates[name] = t
	}
	return res, nil
}

// checkOp checks op against the op table: the only facts about the graph
// the kernels rely on.
func checkOp(op *ir.Op) error {
	if op.Kind.IsDecl() {
		// Checked here rather than by ir.InferTypes, which needs an init
		// attribute that inputs do not have.
		if len(op.Results) != 1 || op.Results[0] == nil {
			return fmt.Errorf("%s: a declaration must have exactly one result", op)
		}
		if len(op.Args) != 0 {
			return fmt.Errorf("%s: a declaration takes no arguments", op)
		}
		t := op.Results[0].Type
		if t.DType != ir.F32 && t.DType != ir.I32 {
			return fmt.Errorf("%s: declared type %v has no valid dtype", op, t)
		}
		if slices.ContainsFunc(t.Shape, func(d int) bool { return d < 1 }) {
			return fmt.Errorf("%s: declared type %v has a dimension < 1", op, t)
		}
		return nil
	}
	types, err := ir.InferTypes(op)
	if err != nil {
		return err
	}
	if len(types) != len(op.Results) {
		return fmt.Errorf("%s: has %d results, want %d", op, len(op.Results), len(types))
	}
	for j, t := range types {
		r := op.Results[j]
		if r == nil {
			return fmt.Errorf("%s: result %d is nil", op, j)
		}
		if r.Type.DType != t.DType || !r.Type.Shape.Equal(t.Shape) {
			return fmt.Errorf("%s: result %d is %v, but its arguments give %v", op, j, r.Type, t)
		}
	}
	return nil
}

// feed returns the value of declaration op: a copy of its feed, checked
// against its type.
func feed(op *ir.Op, feeds map[string]*Tensor, opt Options) (*Tensor, error) {
	typ := op.Results[0].Type
	f, ok := feeds[op.Name]
	if !ok || f == nil {
		return nil, fmt.Errorf("interp: %s %q is not fed", op.Kind, op.Name)
	}
	if !f.Shape.Equal(typ.Shape) {
		return nil, fmt.Errorf("interp: %s %q is fed a tensor of shape %v, want %v", op.Kind, op.Name, f.Shape, typ.Shape)
	}
	if len(f.Data) != typ.Shape.Elems() {
		return nil, fmt.Errorf("interp: %s %q is fed %d values for shape %v", op.Kind, op.Name, len(f.Data), f.Shape)
	}
	t := f.Clone()
	switch typ.DType {
	case ir.F32:
		if opt.Float32 {
			round32(t.Data)
		}
	case ir.I32:
		for i, v := range t.Data {
			if v != math.Trunc(v) || v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("interp: %s %q is i32 but element %d is %v", op.Kind, op.Name, i, v)
			}
		}
	}
	return t, nil
}

// round32 rounds every element to the nearest float32.
func round32(d []float64) {
	for i, v := range d {
		d[i] = float64(float32(v))
	}
}

// Random returns a tensor of the given shape with entries uniform in
// [lo, hi), deterministic in seed (tests everywhere use it for inputs).
func Random(seed uint64, lo, hi float64, shape ...int) *Tensor {
	t := NewTensor(shape...)
	r := rng{state: seed}
	for i := range t.Data {
		v := lo + (hi-lo)*r.float()
		if v >= hi && hi > lo {
			v = math.Nextafter(hi, lo)
		}
		t.Data[i] = v
	}
	return t
}

// Labels returns n class labels uniform in [0, classes), deterministic in
// seed: the i32 feed of a loss.
func Labels(seed uint64, classes, n int) *Tensor {
	if classes < 1 {
		panic(fmt.Sprintf("BUG: interp.Labels: %d classes", classes))
	}
	t := NewTensor(n)
	r := rng{state: seed}
	for i := range t.Data {
		t.Data[i] = float64(r.next() % uint64(classes))
	}
	return t
}

// golden64 is 2^64 divided by the golden ratio, splitmix64's increment.
const golden64 = 0x9E3779B97F4A7C15

// splitmix64 is the standard splitmix64 finalizer applied to x+golden64:
// the first output of a splitmix64 generator whose state is x.
func splitmix64(x uint64) uint64 {
	z := x + golden64
	z ^= z >> 30
	z *= 0xBF58476D1CE4E5B9
	z ^= z >> 27
	z *= 0x94D049BB133111EB
	z ^= z >> 31
	return z
}

// rng is a splitmix64 generator: small, fast, and the same on every
// platform and Go version, so seeded data never changes under us.
type rng struct{ state uint64 }

func (r *rng) next() uint64 {
	v := splitmix64(r.state)
	r.state += golden64
	return v
}

// float returns a uniform float64 in [0, 1) with 53 random bits.
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// normal returns a standard normal sample by the Box-Muller transform.
func (r *rng) normal() float64 {
	u1 := 1 - r.float() // (0, 1]: the logarithm stays finite
	u2 := r.float()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

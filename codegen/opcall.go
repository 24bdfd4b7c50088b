package codegen

import (
	"fmt"
	"sort"

	"github.com/dave/jennifer/jen"

	"github.com/resnetc/resnetc/ir"
)

// nnPkg is the import path of the shape-generic kernels.
const nnPkg = "github.com/resnetc/resnetc/runtime/nn"

// OpCall is one op of the schedule as the package emitter writes it: the
// op, and Go expressions for its context and for the storage of its
// arguments and results.
type OpCall struct {
	Op *ir.Op
	// Args and Results are expressions of type []float32 ([]int32 for i32
	// values) of exactly the value's length, in the value's layout. A
	// result may be the same storage as an argument (the memory plan
	// computes it in place).
	Args, Results []jen.Code
	// Ctx is an expression of type *nn.Ctx.
	Ctx jen.Code
	// Step is an expression of type int64: the number of training steps
	// taken before this one (dropout masks are a function of it).
	Step jen.Code
	// Packed, for a convolution of inference whose weights are fixed, is
	// an expression of type []float32 where they are kept in the
	// specialized kernel's packed layout between calls (see hoist); nil
	// otherwise.
	Packed jen.Code
}

// opImpl writes the call of one op kind.
type opImpl struct {
	// emit returns the statement(s) that compute c.Op.
	emit func(c *OpCall) (jen.Code, error)
	// scratch, if not nil, is the float32 and float64 scratch each worker
	// needs for op.
	scratch func(op *ir.Op) (floats, wide int)
}

// opImpls maps every op kind a generated package can run to its writer.
// Files opcall_*.go register theirs in init.
var opImpls = map[ir.OpKind]opImpl{}

func registerOp(k ir.OpKind, impl opImpl) {
	if _, dup := opImpls[k]; dup {
		panic(fmt.Sprintf("BUG: codegen: op kind %s registered twice", k))
	}
	opImpls[k] = impl
}

// emitOp writes the call that computes c.Op.
func emitOp(c *OpCall) (jen.Code, error) {
	impl, ok := opImpls[c.Op.Kind]
	if !ok {
		return nil, fmt.Errorf("op %s %q: code generation does not support this op kind", c.Op.Kind, c.Op.Name)
	}
	if len(c.Args) != len(c.Op.Args) || len(c.Results) != len(c.Op.Results) {
		panic(fmt.Sprintf("BUG: codegen: op %s %q: %d/%d argument and %d/%d result expressions",
			c.Op.Kind, c.Op.Name, len(c.Args), len(c.Op.Args), len(c.Results), len(c.Op.Results)))
	}
	return impl.emit(c)
}

// opScratch is the per-worker scratch op needs.
func opScratch(op *ir.Op) (floats, wide int) {
	if impl, ok := opImpls[op.Kind]; ok && impl.scratch != nil {
		return impl.scratch(op)
	}
	return 0, 0
}

// supportedKinds lists the registered op kinds, sorted.
func supportedKinds() []ir.OpKind {
	var ks []ir.OpKind
	for k := range opImpls {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

// act returns the nn.Act literal describing v's storage: rank 4 as is,
// rank 2 [N, C] with H = W = 1, rank 1 [C] as N = 1, H = W = 1, rank 0
// as one element.
func act(v *ir.Value) jen.Code {
	n, c, h, w := 1, 1, 1, 1
	s := v.Type.Shape
	switch len(s) {
	case 0:
	case 1:
		c = s[0]
	case 2:
		n, c = s[0], s[1]
	case 4:
		n, c, h, w = s[0], s[1], s[2], s[3]
	default:
		panic(fmt.Sprintf("BUG: codegen: act of a rank-%d value", len(s)))
	}
	kv := func(k string, v int) jen.Code { return jen.Id(k).Op(":").Lit(v) }
	fields := []jen.Code{kv("N", n), kv("C", c), kv("H", h), kv("W", w)}
	if v.Type.Layout == ir.NCHW8c {
		fields = append(fields, jen.Id("Blocked").Op(":").True())
	}
	return jen.Qual(nnPkg, "Act").Values(fields...)
}

package codegen

import (
	"fmt"
	"slices"

	"github.com/resnetc/resnetc/ir"
)

// declTensor is one param or state tensor of the model: where it lives
// and how it is initialized.
type declTensor struct {
	Name  string
	Kind  ir.OpKind // ir.Param or ir.State
	Shape ir.Shape
	Init  string  // zeros, ones, const, normal, uniform
	A     float64 // the value, std or bound
	ref
}

// declLayout places every param of the graphs in the params buffer and
// every state in the state buffer, in declaration order (the training
// graph's first), each tensor aligned to 16 float32s (64 bytes).
type declLayout struct {
	tensors             []*declTensor
	byName              map[string]*declTensor
	paramsLen, stateLen int
}

// declAlign is the alignment of every tensor, in float32s.
const declAlign = 16

func newDeclLayout(gs ...*ir.Graph) (*declLayout, error) {
	d := &declLayout{byName: map[string]*declTensor{}}
	for _, g := range gs {
		for i, op := range g.Ops {
			if op.Kind != ir.Param && op.Kind != ir.State {
				continue
			}
			v := op.Result()
			if old, ok := d.byName[op.Name]; ok {
				if old.Kind != op.Kind || !slices.Equal(old.Shape, v.Type.Shape) {
					return nil, fmt.Errorf("op %d %s: %s %v, but another graph of the model declares it %s %v",
						i, op, op.Kind, v.Type.Shape, old.Kind, old.Shape)
				}
				continue
			}
			if v.Type.DType != ir.F32 {
				return nil, fmt.Errorf("op %d %s: %s declarations must be f32", i, op, op.Kind)
			}
			t := &declTensor{Name: op.Name, Kind: op.Kind, Shape: v.Type.Shape}
			t.Init, _ = op.Attr("init").(string)
			switch t.Init {
			case "", "zeros", "ones":
			case "const":
				t.A = attrNum(op, "value")
			case "normal":
				t.A = attrNum(op, "std")
			case "uniform":
				t.A = attrNum(op, "bound")
			default:
				return nil, fmt.Errorf("op %d %s: unknown init %q", i, op, t.Init)
			}
			if t.Init == "" {
				t.Init = "zeros"
			}
			n := v.Type.Shape.Elems()
			t.Len = n
			if op.Kind == ir.Param {
				t.Buf, t.Off = inParams, d.paramsLen
				d.paramsLen += roundUp(n, declAlign)
			} else {
				t.Buf, t.Off = inState, d.stateLen
				d.stateLen += roundUp(n, declAlign)
			}
			d.tensors = append(d.tensors, t)
			d.byName[op.Name] = t
		}
	}
	return d, nil
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

func attrNum(op *ir.Op, name string) float64 {
	switch v := op.Attr(name).(type) {
	case float64:
		return v
	case int:
		return float64(v)
	}
	return 0
}

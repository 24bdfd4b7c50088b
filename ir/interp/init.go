package interp

import (
	"hash/fnv"
	"slices"

	"github.com/resnetc/resnetc/ir"
)

// Init returns a tensor for every param and state declaration of g, filled
// per its init attributes (zeros, ones, const value, normal with std
// (mean 0), uniform on [-bound, bound]). Each declaration draws from its own
// splitmix64 generator whose state is splitmix64(seed) XOR the FNV-1a hash
// of the declaration's name, so adding a layer does not change the other
// layers' values; normal samples use the Box-Muller transform (cosine
// branch, two uniforms per sample). Values are rounded to float32, the
// precision weights are stored in, so every consumer starts from the same
// numbers. Deterministic.
func Init(g *ir.Graph, seed uint64) map[string]*Tensor {
	out := make(map[string]*Tensor)
	for _, op := range g.Ops {
		if op == nil || (op.Kind != ir.Param && op.Kind != ir.State) || len(op.Results) != 1 || op.Results[0] == nil {
			continue
		}
		if slices.ContainsFunc(op.Results[0].Type.Shape, func(d int) bool { return d < 0 }) {
			continue // an invalid declaration; Run reports it
		}
		t := NewTensor(op.Results[0].Type.Shape...)
		h := fnv.New64a()
		h.Write([]byte(op.Name))
		r := rng{state: splitmix64(seed) ^ h.Sum64()}
		str := func(name string) string { s, _ := op.Attr(name).(string); return s }
		num := func(name string) float64 {
			switch v := op.Attr(name).(type) {
			case float64:
				return v
			case int:
				return float64(v)
			}
			return 0
		}
		switch str("init") {
		case "ones":
			fill(t, func() float64 { return 1 })
		case "const":
			v := num("value")
			fill(t, func() float64 { return v })
		case "normal":
			std := num("std")
			fill(t, func() float64 { return std * r.normal() })
		case "uniform":
			b := num("bound")
			fill(t, func() float64 { return b * (2*r.float() - 1) })
		}
		round32(t.Data)
		out[op.Name] = t
	}
	return out
}

func fill(t *Tensor, f func() float64) {
	for i := range t.Data {
		t.Data[i] = f()
	}
}

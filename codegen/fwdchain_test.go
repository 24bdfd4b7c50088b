package codegen

import (
	"testing"

	"github.com/resnetc/resnetc/ir"
)

// TestFwdHazard checks when a bottleneck unit's three convolutions may
// run image by image: each intermediate in storage of its own, or over
// another value only image over image and only once that value is read
// for the last time.
func TestFwdHazard(t *testing.T) {
	const n, c, mid, hw = 4, 32, 8, 8
	g := newConvTestGraph()
	b8 := ir.NCHW8c
	x := g.in(b8, n, c, hw, hw)
	a := g.add(ir.Conv2DFused, ir.Attrs{"pad": 0}, b8, x, g.in(ir.NCHW, mid, c, 1, 1))
	b := g.add(ir.Conv2DFused, ir.Attrs{"pad": 1}, b8, a.Results[0], g.in(ir.NCHW, mid, mid, 3, 3))
	cc := g.add(ir.Conv2DFused, ir.Attrs{"pad": 0, "residual": true}, b8, b.Results[0], g.in(ir.NCHW, c, mid, 1, 1), x)
	ops := []*ir.Op{a, b, cc}
	t1, t2, out := a.Results[0], b.Results[0], cc.Results[0]
	refs := func(at map[*ir.Value]int) map[*ir.Value]ref {
		m := map[*ir.Value]ref{}
		off := 0
		for _, v := range []*ir.Value{x, t1, t2, out} {
			l := v.Type.Shape.Elems()
			m[v] = ref{Buf: inArena, Off: off, Len: l}
			off += l
		}
		for v, o := range at {
			r := m[v]
			r.Off = o
			m[v] = r
		}
		return m
	}
	apart := refs(nil)
	for _, tc := range []struct {
		what   string
		at     map[*ir.Value]int
		hazard bool
	}{
		{"apart", nil, false},
		{"out over x, image over image (the residual, read as it is written)", map[*ir.Value]int{out: apart[x].Off}, false},
		{"out over x, shifted by a pixel", map[*ir.Value]int{out: apart[x].Off + 8}, true},
		{"t2 over t1, which the 3x3 conv reads around each pixel", map[*ir.Value]int{t2: apart[t1].Off}, true},
		{"t1 over x, which the last conv adds back", map[*ir.Value]int{t1: apart[x].Off}, true},
		// t1 is read for the last time a stage before out is written, but
		// an image of out covers four of t1: another worker's.
		{"t1 inside out's storage", map[*ir.Value]int{t1: apart[out].Off}, true},
		{"t2 inside out's storage at another offset", map[*ir.Value]int{t2: apart[out].Off + 8}, true},
	} {
		if got := fwdHazard(ops, refs(tc.at)); got != tc.hazard {
			t.Errorf("%s: hazard %v, want %v", tc.what, got, tc.hazard)
		}
	}
}

package codegen

import (
	"testing"

	"github.com/resnetc/resnetc/ir"
)

// TestFusesDxGrad checks when a conv2d_dx and the affine_relu_grad of its
// result run as one call: only when nothing else reads the convolution's
// result, every activation is blocked, and the fused call cannot write an
// image of dx over an image of dy that another worker still reads.
func TestFusesDxGrad(t *testing.T) {
	const n, cout, hw = 4, 32, 8
	type pair struct {
		g    *convTestGraph
		a, b *ir.Op
	}
	build := func(ly ir.Layout, cin int, acc bool) pair {
		g := newConvTestGraph()
		dy := g.in(ly, n, cout, hw, hw)
		w := g.in(ir.NCHW, cout, cin, 3, 3)
		a := g.add(ir.Conv2DDx, ir.Attrs{"pad": 1, "in_h": hw, "in_w": hw}, ly, dy, w)
		x := g.in(ly, n, cin, hw, hw)
		args := []*ir.Value{a.Results[0], x, g.in(ir.NCHW, cin), g.in(ir.NCHW, cin)}
		if acc {
			args = append(args, g.in(ly, n, cin, hw, hw))
		}
		b := g.add(ir.AffineReLUGrad, nil, ly, args...)
		return pair{g, a, b}
	}
	size := func(v *ir.Value) int { return v.Type.Shape.Elems() }
	// refs places every value apart, then dx (b's first result) at dxOff.
	refs := func(p pair, dxOff int) map[*ir.Value]ref {
		m := map[*ir.Value]ref{}
		off := 0
		for _, op := range p.g.g.Ops {
			for _, v := range op.Results {
				m[v] = ref{Buf: inArena, Off: off, Len: size(v)}
				off += size(v)
			}
		}
		dx := p.b.Results[0]
		m[dx] = ref{Buf: inArena, Off: dxOff, Len: size(dx)}
		return m
	}
	for _, c := range []struct {
		cin int
		acc bool
	}{{16, false}, {16, true}, {32, false}, {32, true}} {
		acc := c.acc
		p := build(ir.NCHW8c, c.cin, acc)
		uses := p.g.g.Uses()
		dy := p.a.Args[0]
		apart := refs(p, 1<<30)
		if !fusesDxGrad(p.a, p.b, uses, apart) {
			t.Errorf("acc %v: a blocked pair stored apart does not fuse", acc)
		}
		// dx at dy's offset: image n of one is image n of the other when
		// they have as many channels.
		over := refs(p, apart[dy].Off)
		if got, want := fusesDxGrad(p.a, p.b, uses, over), size(dy) == size(p.b.Results[0]); got != want {
			t.Errorf("acc %v: dx at dy's offset: fuses = %v, want %v", acc, got, want)
		}
		if fusesDxGrad(p.a, p.b, uses, refs(p, apart[dy].Off+8)) {
			t.Errorf("acc %v: dx overlapping dy at another offset fuses", acc)
		}
		if fusesDxGrad(p.b, p.a, uses, apart) {
			t.Errorf("acc %v: the ops in the other order fuse", acc)
		}
	}
	// Plain layout: no specialized kernels, no fusion.
	p := build(ir.NCHW, 16, false)
	if fusesDxGrad(p.a, p.b, p.g.g.Uses(), refs(p, 1<<30)) {
		t.Error("a plain-layout pair fuses")
	}
	// A second reader of da.
	p = build(ir.NCHW8c, 16, false)
	p.g.add(ir.ReLU, nil, ir.NCHW8c, p.a.Results[0])
	if fusesDxGrad(p.a, p.b, p.g.g.Uses(), refs(p, 1<<30)) {
		t.Error("a pair whose da has another reader fuses")
	}
}

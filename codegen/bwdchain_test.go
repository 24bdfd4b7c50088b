package codegen

import (
	"testing"

	"github.com/resnetc/resnetc/ir"
)

// chainTest is the backward of one 3x3 convolution, cin to cout
// channels, in the order autodiff writes it: bnstats_grad, conv2d_dw,
// conv2d_dx and affine_relu_grad, every activation blocked unless ly
// says otherwise.
type chainTest struct {
	g                     *convTestGraph
	ops                   []*ir.Op
	stats, dw, dx, grad   *ir.Op
	dmean, y, yacc, x, dz *ir.Value
}

func newChainTest(ly ir.Layout, cin int) *chainTest {
	const n, cout, hw = 4, 16, 8
	c := &chainTest{g: newConvTestGraph()}
	g := c.g
	vec := func(k int) *ir.Value { return g.in(ir.NCHW, k) }
	c.dmean, c.y, c.yacc = vec(cout), g.in(ly, n, cout, hw, hw), g.in(ly, n, cout, hw, hw)
	c.stats = g.add(ir.BNStatsGrad, nil, ly, c.dmean, vec(cout), c.y, vec(cout), c.yacc)
	dy := c.stats.Results[0]
	c.x = g.in(ly, n, cin, hw, hw)
	scale, shift := vec(cin), vec(cin)
	c.dw = g.add(ir.Conv2DDwFused, ir.Attrs{"pad": 1, "kernel": 3, "prologue": "affine_relu"}, ly, dy, c.x, scale, shift)
	w := g.in(ir.NCHW, cout, cin, 3, 3)
	c.dx = g.add(ir.Conv2DDx, ir.Attrs{"pad": 1, "in_h": hw, "in_w": hw}, ly, dy, w)
	c.grad = g.add(ir.AffineReLUGrad, nil, ly, c.dx.Results[0], c.x, scale, shift, g.in(ly, n, cin, hw, hw))
	c.dz = c.grad.Results[0]
	c.ops = []*ir.Op{c.stats, c.dw, c.dx, c.grad}
	return c
}

// refs stores every value apart, then each value of at at its offset.
func (c *chainTest) refs(at map[*ir.Value]int) map[*ir.Value]ref {
	m := map[*ir.Value]ref{}
	off := 0
	for _, op := range c.g.g.Ops {
		for _, v := range op.Results {
			n := v.Type.Shape.Elems()
			m[v] = ref{Buf: inArena, Off: off, Len: n}
			off += n
		}
	}
	for v, o := range at {
		r := m[v]
		r.Off = o
		m[v] = r
	}
	return m
}

// TestFindBwdChain checks which runs of a convolution's backward a
// generated package runs image by image, and that one is refused when
// what it writes could overwrite an image another worker still reads.
func TestFindBwdChain(t *testing.T) {
	for _, cin := range []int{16, 32} {
		c := newChainTest(ir.NCHW8c, cin)
		uses := c.g.g.Uses()
		apart := c.refs(nil)
		got, ok := findBwdChain(c.ops, 0, uses, apart)
		if want := (bwdChain{stats: 0, dw: 1, dx: 2, grad: 3}); !ok || got != want {
			t.Fatalf("cin %d: chain %+v, %v; want %+v", cin, got, ok, want)
		}
		if got.len() != 4 {
			t.Errorf("cin %d: len %d, want 4", cin, got.len())
		}
		// dz may take the storage of the statistics' input y (read at
		// the first stage of the image) only image over image.
		off := apart[c.y].Off
		same := cin == 16 // then dz and y have as many elements
		if _, ok := findBwdChain(c.ops, 0, uses, c.refs(map[*ir.Value]int{c.dz: off})); ok != same {
			t.Errorf("cin %d: dz at y's offset: chain %v, want %v", cin, ok, same)
		}
		if _, ok := findBwdChain(c.ops, 0, uses, c.refs(map[*ir.Value]int{c.dz: off + 8})); ok {
			t.Errorf("cin %d: dz overlapping y at another offset: a chain", cin)
		}
		// A per-channel vector the first stage reads inside dz's storage:
		// convBwd reads a copy.
		if _, ok := findBwdChain(c.ops, 0, uses, c.refs(map[*ir.Value]int{c.dmean: apart[c.dz].Off + 8})); !ok {
			t.Errorf("cin %d: dmean inside dz: no chain", cin)
		}
		// bnstats_grad in place into its acc: an elementwise stage.
		if _, ok := findBwdChain(c.ops, 0, uses, c.refs(map[*ir.Value]int{c.stats.Results[0]: apart[c.yacc].Off})); !ok {
			t.Errorf("cin %d: dy in place over acc: no chain", cin)
		}
		// Starting at the dw op: the chain without the statistics.
		if got, ok := findBwdChain(c.ops, 1, uses, apart); !ok || got != (bwdChain{stats: -1, dw: 1, dx: 2, grad: 3}) {
			t.Errorf("cin %d: chain from dw %+v, %v", cin, got, ok)
		}
		// dy with a reader outside the chain stays in the arena.
		c.g.add(ir.ReLU, nil, ir.NCHW8c, c.stats.Results[0])
		if got, ok := findBwdChain(c.ops, 0, c.g.g.Uses(), c.refs(nil)); !ok || !got.dyInArena {
			t.Errorf("cin %d: dy read after the chain: %+v, %v; want it in the arena", cin, got, ok)
		}
	}
	// dx's result with another reader: affine_relu_grad stays apart.
	c := newChainTest(ir.NCHW8c, 16)
	c.g.add(ir.ReLU, nil, ir.NCHW8c, c.dx.Results[0])
	if got, ok := findBwdChain(c.ops, 0, c.g.g.Uses(), c.refs(nil)); !ok || got.grad != -1 {
		t.Errorf("da read after the chain: %+v, %v; want the chain without affine_relu_grad", got, ok)
	}
	// dx's result written over dy (image over image) while dx reads dy.
	c = newChainTest(ir.NCHW8c, 16)
	c.g.add(ir.ReLU, nil, ir.NCHW8c, c.dx.Results[0]) // da stays in the arena
	c.g.add(ir.ReLU, nil, ir.NCHW8c, c.stats.Results[0])
	at := map[*ir.Value]int{}
	at[c.dx.Results[0]] = c.refs(nil)[c.stats.Results[0]].Off
	if _, ok := findBwdChain(c.ops, 0, c.g.g.Uses(), c.refs(at)); ok {
		t.Error("da over the dy it is computed from: a chain")
	}
	// Plain layout: no chain.
	c = newChainTest(ir.NCHW, 16)
	if _, ok := findBwdChain(c.ops, 0, c.g.g.Uses(), c.refs(nil)); ok {
		t.Error("plain layout: a chain")
	}
	// A lone conv2d_dx is not a chain.
	c = newChainTest(ir.NCHW8c, 16)
	if _, ok := findBwdChain(c.ops[:3], 2, c.g.g.Uses(), c.refs(nil)); ok {
		t.Error("a lone conv2d_dx: a chain")
	}
}

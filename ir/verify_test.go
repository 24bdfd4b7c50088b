package ir_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	_ "github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
)

// verifyBase is a small valid training graph. Its ops, by index:
//
//	0 input "x"   1 param "w"   2 conv2d "c"   3 relu "r"
//	4 state "m"   5 input "lr"  6 conv2d_dw "dw"   7 sgd "sgd"
func verifyBase() *ir.Graph {
	g := ir.New("base", ir.Train)
	x := g.Decl(ir.Input, "x", ir.T32(2, 3, 4, 4), nil)
	w := g.Decl(ir.Param, "w", ir.T32(4, 3, 3, 3), ir.Attrs{"init": "normal", "std": 0.1})
	c := g.MustOp(ir.Conv2D, "c", ir.Attrs{"pad": 1}, x, w).Result()
	r := g.MustOp(ir.ReLU, "r", nil, c).Result()
	m := g.Decl(ir.State, "m", ir.T32(4, 3, 3, 3), nil)
	lr := g.Decl(ir.Input, "lr", ir.T32(), nil)
	dw := g.MustOp(ir.Conv2DDw, "dw", ir.Attrs{"pad": 1, "kernel": 3}, r, x).Result()
	sgd := g.MustOp(ir.SGD, "sgd", nil, w, dw, m, lr)
	g.AddOutput("y", r)
	g.AddUpdate(w, sgd.Results[0])
	g.AddUpdate(m, sgd.Results[1])
	return g
}

// inferBase is a small valid inference graph: 0 input "x", 1 relu "r".
func inferBase() *ir.Graph {
	g := ir.New("infer", ir.Infer)
	x := g.Decl(ir.Input, "x", ir.T32(2, 4), nil)
	g.AddOutput("y", g.MustOp(ir.ReLU, "r", nil, x).Result())
	return g
}

// layoutBase is a small valid training graph on blocked tensors, as the
// layout pass leaves them. Its ops, by index:
//
//	0 input "x" (nchw)   1 input "x8" (nchw8c)   2 param "w"   3 input "scale"
//	4 input "shift"   5 conv2d "c" (nchw input, nchw8c result)   6 add "a"
//	7 conv2d_fused "f" (prologue affine_relu)   8 conv2d_dw_fused "dw"
func layoutBase() *ir.Graph {
	g := ir.New("layout", ir.Train)
	x := g.Decl(ir.Input, "x", ir.T32(2, 8, 4, 4), nil)
	x8 := g.Decl(ir.Input, "x8", ir.Type{DType: ir.F32, Shape: ir.Shape{2, 8, 4, 4}, Layout: ir.NCHW8c}, nil)
	w := g.Decl(ir.Param, "w", ir.T32(8, 8, 3, 3), ir.Attrs{"init": "normal", "std": 0.1})
	scale := g.Decl(ir.Input, "scale", ir.T32(8), nil)
	shift := g.Decl(ir.Input, "shift", ir.T32(8), nil)
	c := g.MustOp(ir.Conv2D, "c", ir.Attrs{"pad": 1}, x, w)
	c.Results[0].Type.Layout = ir.NCHW8c
	a := g.MustOp(ir.Add, "a", nil, c.Result(), x8).Result()
	f := g.MustOp(ir.Conv2DFused, "f", ir.Attrs{"pad": 1, "prologue": "affine_relu", "relu": true}, x8, w, scale, shift)
	f.Results[0].Type.Layout = ir.NCHW8c
	g.MustOp(ir.Conv2DDwFused, "dw", ir.Attrs{"pad": 1, "kernel": 3, "prologue": "affine_relu"}, a, x8, scale, shift)
	g.AddOutput("y", f.Result())
	return g
}

func opNamed(g *ir.Graph, name string) *ir.Op {
	for _, op := range g.Ops {
		if op != nil && op.Name == name {
			return op
		}
	}
	panic("test graph has no op " + name)
}

var verifyCases = []struct {
	name   string
	base   func() *ir.Graph
	mutate func(g *ir.Graph)
	want   []string // each must be a substring of one reported error
}{
	{
		name:   "shape mismatch",
		mutate: func(g *ir.Graph) { opNamed(g, "c").Results[0].Type.Shape[3] = 5 },
		want:   []string{`op 2 conv2d "c": shape mismatch: result 0 (%2) is f32[2,4,4,5], the op table infers f32[2,4,4,4]`},
	},
	{
		name:   "layout mismatch",
		mutate: func(g *ir.Graph) { opNamed(g, "r").Results[0].Type.Layout = ir.NCHW8c },
		want:   []string{`op 3 relu "r": shape mismatch: result 0 (%3) is f32[2,4,4,4]@nchw8c, the op table infers f32[2,4,4,4]`},
	},
	{
		name:   "result count",
		mutate: func(g *ir.Graph) { op := opNamed(g, "sgd"); op.Results = op.Results[:1] },
		want: []string{
			`op 7 sgd "sgd": shape mismatch: has 1 results, the op table infers 2`,
			`update 1 (%4 <- %?): value is an unknown value`,
		},
	},
	{
		name: "unknown value",
		mutate: func(g *ir.Graph) {
			other := ir.New("other", ir.Train)
			opNamed(g, "r").Args[0] = other.Decl(ir.Input, "z", ir.T32(2, 4, 4, 4), nil)
		},
		want: []string{`op 3 relu "r": argument 0 is an unknown value: no op in the graph produces it`},
	},
	{
		name:   "nil argument",
		mutate: func(g *ir.Graph) { opNamed(g, "dw").Args[1] = nil },
		want:   []string{`op 6 conv2d_dw "dw": argument 1 is nil`},
	},
	{
		name:   "cycle",
		mutate: func(g *ir.Graph) { c := opNamed(g, "c"); c.Args[0] = opNamed(g, "r").Results[0] },
		want:   []string{`cycle: op 2 conv2d "c" -> op 3 relu "r" -> op 2 conv2d "c"`},
	},
	{
		name:   "self cycle",
		mutate: func(g *ir.Graph) { r := opNamed(g, "r"); r.Args[0] = r.Results[0] },
		want:   []string{`cycle: op 3 relu "r" -> op 3 relu "r"`},
	},
	{
		name:   "order",
		mutate: func(g *ir.Graph) { g.Ops[2], g.Ops[3] = g.Ops[3], g.Ops[2] },
		want:   []string{`op 2 relu "r": argument 0 (%3) is produced later, by op 3 conv2d "c"`},
	},
	{
		name:   "arity",
		mutate: func(g *ir.Graph) { r := opNamed(g, "r"); r.Args = append(r.Args, r.Args[0]) },
		want:   []string{`op 3 relu "r": has 2 arguments, want 1`},
	},
	{
		name:   "attribute type",
		mutate: func(g *ir.Graph) { opNamed(g, "c").Attrs["pad"] = "1" },
		want:   []string{`op 2 conv2d "c": attribute pad is a string, want int`},
	},
	{
		name:   "float for int attribute",
		mutate: func(g *ir.Graph) { opNamed(g, "c").Attrs["stride"] = 1.0 },
		want:   []string{`op 2 conv2d "c": attribute stride is a float, want int`},
	},
	{
		name:   "unknown attribute",
		mutate: func(g *ir.Graph) { opNamed(g, "c").Attrs["dilation"] = 2 },
		want:   []string{`op 2 conv2d "c": unknown attribute "dilation"`},
	},
	{
		name:   "missing attribute",
		mutate: func(g *ir.Graph) { delete(opNamed(g, "dw").Attrs, "kernel") },
		want:   []string{`op 6 conv2d_dw "dw": missing attribute kernel`},
	},
	{
		name:   "attribute value",
		mutate: func(g *ir.Graph) { opNamed(g, "c").Attrs["stride"] = 0 },
		want:   []string{`op 2 conv2d "c": attribute stride=0, want >= 1`},
	},
	{
		name:   "unknown kind",
		mutate: func(g *ir.Graph) { opNamed(g, "r").Kind = "gelu" },
		want:   []string{`op 3 gelu "r": unknown op kind`},
	},
	{
		name:   "duplicate declaration name",
		mutate: func(g *ir.Graph) { opNamed(g, "m").Name = "w" },
		want:   []string{`op 4 state "w": duplicate declaration name "w" (also op 1 param "w")`},
	},
	{
		name:   "empty declaration name",
		mutate: func(g *ir.Graph) { opNamed(g, "lr").Name = "" },
		want:   []string{`op 5 input: declaration has no name`},
	},
	{
		name:   "bad init",
		mutate: func(g *ir.Graph) { opNamed(g, "w").Attrs["init"] = "he" },
		want:   []string{`op 1 param "w": unknown init "he"`},
	},
	{
		name:   "input attribute",
		mutate: func(g *ir.Graph) { opNamed(g, "x").Attrs["init"] = "zeros" },
		want:   []string{`op 0 input "x": unknown attribute "init"`},
	},
	{
		name:   "input dimension",
		mutate: func(g *ir.Graph) { opNamed(g, "lr").Results[0].Type.Shape = ir.Shape{0} },
		want:   []string{`op 5 input "lr": declared type f32[0] has a dimension < 1`},
	},
	{
		name:   "param dtype",
		mutate: func(g *ir.Graph) { opNamed(g, "w").Results[0].Type.DType = ir.I32 },
		want:   []string{`op 1 param "w": param must be f32, is i32[4,3,3,3]`},
	},
	{
		name: "declaration with two values",
		mutate: func(g *ir.Graph) {
			x := opNamed(g, "x")
			x.Results = append(x.Results, &ir.Value{Type: ir.T32(1), Def: x, Index: 1})
		},
		want: []string{`op 0 input "x": declares 2 values, want 1`},
	},
	{
		name:   "result Def",
		mutate: func(g *ir.Graph) { opNamed(g, "r").Results[0].Def = opNamed(g, "c") },
		want:   []string{`op 3 relu "r": result 0 (%3) does not point back at its op (Def is op 2 conv2d "c", Index is 0)`},
	},
	{
		name:   "result Index",
		mutate: func(g *ir.Graph) { opNamed(g, "sgd").Results[1].Index = 0 },
		want:   []string{`op 7 sgd "sgd": result 1 (%8) does not point back at its op (Def is op 7 sgd "sgd", Index is 0)`},
	},
	{
		name:   "value produced twice",
		mutate: func(g *ir.Graph) { opNamed(g, "r").Results[0] = opNamed(g, "c").Results[0] },
		want:   []string{`op 3 relu "r": result 0 (%2) is also a result of op 2 conv2d "c"; a value is produced by one op`},
	},
	{
		name:   "nil result",
		mutate: func(g *ir.Graph) { opNamed(g, "w").Results[0] = nil },
		want:   []string{`op 1 param "w": result 0 is nil`},
	},
	{
		name:   "nil op",
		mutate: func(g *ir.Graph) { g.Ops = append(g.Ops, nil) },
		want:   []string{`op 8 is nil`},
	},
	{
		name:   "op listed twice",
		mutate: func(g *ir.Graph) { g.Ops = append(g.Ops, opNamed(g, "r")) },
		want:   []string{`op 8 relu "r": is the same op as op 3`},
	},
	{
		name:   "update target not a param",
		mutate: func(g *ir.Graph) { g.Updates[0].Target = opNamed(g, "dw").Results[0] },
		want:   []string{`update 0 (%6 <- %7): target is a result of op 6 conv2d_dw "dw", want a param or state`},
	},
	{
		name:   "update of an input",
		mutate: func(g *ir.Graph) { g.Updates[1].Target = opNamed(g, "lr").Results[0] },
		want:   []string{`update 1 (%5 <- %8): target is a result of op 5 input "lr", want a param or state`},
	},
	{
		name:   "update type",
		mutate: func(g *ir.Graph) { g.Updates[1].Value = opNamed(g, "c").Results[0] },
		want:   []string{`update 1 (%4 <- %2): value is f32[2,4,4,4] but target op 4 state "m" is f32[4,3,3,3]`},
	},
	{
		name:   "update twice",
		mutate: func(g *ir.Graph) { g.AddUpdate(g.Updates[0].Target, g.Updates[0].Value) },
		want:   []string{`update 2 (%1 <- %7): op 1 param "w" is already updated by update 0`},
	},
	{
		name: "update unknown",
		mutate: func(g *ir.Graph) {
			other := verifyBase()
			g.AddUpdate(other.Updates[0].Target, nil)
		},
		want: []string{
			`update 2 (%? <- %?): target is an unknown value: no op in the graph produces it`,
			`update 2 (%? <- %?): value is nil`,
		},
	},
	{
		name:   "training ops in inference graph",
		mutate: func(g *ir.Graph) { g.Mode = ir.Infer },
		want: []string{
			`op 6 conv2d_dw "dw": training-only op in an inference graph`,
			`op 7 sgd "sgd": training-only op in an inference graph`,
			`inference graph has 2 updates, want none`,
		},
	},
	{
		name: "dropout in inference graph",
		base: inferBase,
		mutate: func(g *ir.Graph) {
			g.MustOp(ir.Dropout, "drop", ir.Attrs{"rate": 0.5}, g.Ops[0].Results[0])
			g.MustOp(ir.BNStats, "", nil, g.Ops[0].Results[0])
		},
		want: []string{
			`op 2 dropout "drop": training-only op in an inference graph`,
			`op 3 bnstats: training-only op in an inference graph`,
		},
	},
	{
		name: "gradient in inference graph",
		base: inferBase,
		mutate: func(g *ir.Graph) {
			x := g.Ops[0].Results[0]
			g.MustOp(ir.ReLUGrad, "rg", nil, x, x)
		},
		want: []string{`op 2 relu_grad "rg": training-only op in an inference graph`},
	},
	{
		name: "outputs",
		mutate: func(g *ir.Graph) {
			r := opNamed(g, "r").Results[0]
			g.AddOutput("", r)
			g.AddOutput("y", r)
			g.AddOutput("z", nil)
			g.AddOutput("u", &ir.Value{Type: ir.T32(1)})
		},
		want: []string{
			`output 1 "": output has no name`,
			`output 2 "y": duplicate output name (also output 0)`,
			`output 3 "z": value is nil`,
			`output 4 "u": unknown value: no op in the graph produces it`,
		},
	},
	{
		name:   "elementwise layouts differ",
		base:   layoutBase,
		mutate: func(g *ir.Graph) { opNamed(g, "a").Args[1] = opNamed(g, "x").Results[0] },
		want:   []string{`op 6 add "a": argument 0 is f32[2,8,4,4]@nchw8c but argument 1 is f32[2,8,4,4]; they must match`},
	},
	{
		name: "nchw8c with 12 channels",
		base: layoutBase,
		mutate: func(g *ir.Graph) {
			g.Decl(ir.Input, "x12", ir.Type{DType: ir.F32, Shape: ir.Shape{2, 12, 4, 4}, Layout: ir.NCHW8c}, nil)
		},
		want: []string{`op 9 input "x12": result 0 (%9) is f32[2,12,4,4]@nchw8c: layout nchw8c needs rank 4 and a multiple of 8 channels`},
	},
	{
		name:   "layout-free result nchw8c with 4 channels",
		mutate: func(g *ir.Graph) { opNamed(g, "c").Results[0].Type.Layout = ir.NCHW8c },
		want:   []string{`op 2 conv2d "c": result 0 (%2) is f32[2,4,4,4]@nchw8c: layout nchw8c needs rank 4 and a multiple of 8 channels`},
	},
	{
		name: "nchw8c of rank 2",
		mutate: func(g *ir.Graph) {
			g.Decl(ir.Input, "v", ir.Type{DType: ir.F32, Shape: ir.Shape{2, 8}, Layout: ir.NCHW8c}, nil)
		},
		want: []string{`op 8 input "v": result 0 (%9) is f32[2,8]@nchw8c: layout nchw8c needs rank 4 and a multiple of 8 channels`},
	},
	{
		name:   "conv2d_fused bias flag without a bias",
		base:   layoutBase,
		mutate: func(g *ir.Graph) { opNamed(g, "f").Attrs["bias"] = true },
		want:   []string{`op 7 conv2d_fused "f": has 4 arguments, want 5 for bias=true, prologue=affine_relu, residual=false`},
	},
	{
		name:   "conv2d_fused residual flag without a residual",
		base:   layoutBase,
		mutate: func(g *ir.Graph) { opNamed(g, "f").Attrs["residual"] = true },
		want:   []string{`op 7 conv2d_fused "f": has 4 arguments, want 5 for bias=false, prologue=affine_relu, residual=true`},
	},
	{
		name:   "conv2d_fused scale and shift without their prologue",
		base:   layoutBase,
		mutate: func(g *ir.Graph) { opNamed(g, "f").Attrs["prologue"] = "relu" },
		want:   []string{`op 7 conv2d_fused "f": has 4 arguments, want 2 for bias=false, prologue=relu, residual=false`},
	},
	{
		name:   "conv2d_fused unknown prologue",
		base:   layoutBase,
		mutate: func(g *ir.Graph) { opNamed(g, "f").Attrs["prologue"] = "bn_relu" },
		want:   []string{`op 7 conv2d_fused "f": prologue="bn_relu", want none, relu or affine_relu`},
	},
	{
		name:   "conv2d_dw_fused arguments for its prologue",
		base:   layoutBase,
		mutate: func(g *ir.Graph) { delete(opNamed(g, "dw").Attrs, "prologue") },
		want:   []string{`op 8 conv2d_dw_fused "dw": has 4 arguments, want 2 for prologue=none`},
	},
	{
		name:   "fused gradient in inference graph",
		base:   layoutBase,
		mutate: func(g *ir.Graph) { g.Mode = ir.Infer },
		want:   []string{`op 8 conv2d_dw_fused "dw": training-only op in an inference graph`},
	},
	{
		name:   "mode",
		mutate: func(g *ir.Graph) { g.Mode = 0 },
		want:   []string{`graph "base": mode is mode(0), want infer or train`},
	},
}

func TestVerifyErrors(t *testing.T) {
	for _, c := range verifyCases {
		t.Run(c.name, func(t *testing.T) {
			base := verifyBase
			if c.base != nil {
				base = c.base
			}
			g := base()
			if err := ir.Verify(g); err != nil {
				t.Fatalf("base graph does not verify: %v", err)
			}
			c.mutate(g)
			err := ir.Verify(g)
			if err == nil {
				t.Fatalf("Verify accepted the graph:\n%s", ir.Print(g))
			}
			var list ir.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is a %T, want ir.ErrorList", err)
			}
			for _, w := range c.want {
				found := false
				for _, e := range list {
					found = found || strings.Contains(e.Error(), w)
				}
				if !found {
					t.Errorf("no error contains\n  %s\nerrors:\n%v", w, err)
				}
			}
			for _, e := range list {
				if strings.Contains(e.Msg, "\n") {
					t.Errorf("error spans lines: %q", e.Msg)
				}
			}
		})
	}
}

func TestVerifyValid(t *testing.T) {
	// A conv2d whose input is nchw and whose result is nchw8c: the layout
	// pass picks a layout-free op's result layout.
	lb := layoutBase()
	if c := opNamed(lb, "c"); c.Args[0].Type.Layout != ir.NCHW || c.Result().Type.Layout != ir.NCHW8c {
		t.Fatalf("conv2d \"c\" maps %v to %v, want nchw to nchw8c", c.Args[0].Type, c.Result().Type)
	}
	graphs := map[string]*ir.Graph{
		"layout": lb,
		"base":   verifyBase(),
		"infer":  inferBase(),
		"empty":  ir.New("", ir.Train),
	}
	// A parsed graph that uses a value from several ops and outputs the
	// same value under two names.
	src := `graph "shared" infer {
  %0 = input "x" : f32[2,4]
  %1 = relu(%0) : f32[2,4]
  %2 = add(%1, %1) : f32[2,4]
  %3 = mul(%2, %0) : f32[2,4]
  output "a" %3
  output "b" %3
  output "x" %0
}
`
	g, err := ir.Parse("shared.ir", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	graphs["shared"] = g
	for name, g := range graphs {
		if err := ir.Verify(g); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := ir.Verify(nil); err == nil || !strings.Contains(err.Error(), "graph is nil") {
		t.Errorf("Verify(nil) = %v, want a \"graph is nil\" error", err)
	}
}

// chain returns an inference graph x -> relu r0 -> relu r1 -> ... of n
// relus.
func chain(n int) *ir.Graph {
	g := ir.New("chain", ir.Infer)
	v := g.Decl(ir.Input, "x", ir.T32(1, 2), nil)
	for i := range n {
		v = g.MustOp(ir.ReLU, fmt.Sprintf("r%d", i), nil, v).Result()
	}
	return g
}

// TestVerifyLongCycle checks that a long cycle is found without deep
// recursion and reported with its middle elided.
func TestVerifyLongCycle(t *testing.T) {
	g := chain(30)
	g.Ops[1].Args[0] = g.Ops[30].Results[0]
	err := ir.Verify(g)
	want := `cycle: op 1 relu "r0" -> op 2 relu "r1" -> op 3 relu "r2" -> op 4 relu "r3" -> op 5 relu "r4" -> op 6 relu "r5" -> ` +
		`... (18 more ops) -> op 25 relu "r24" -> op 26 relu "r25" -> op 27 relu "r26" -> op 28 relu "r27" -> op 29 relu "r28" -> op 30 relu "r29" -> op 1 relu "r0"`
	if err == nil || err.Error() != want {
		t.Errorf("Verify:\n  %v\nwant\n  %s", err, want)
	}

	g = chain(20000)
	g.Ops[1].Args[0] = g.Ops[len(g.Ops)-1].Results[0]
	if err := ir.Verify(g); err == nil || !strings.Contains(err.Error(), "(19988 more ops)") {
		t.Errorf("Verify of a 20000-op cycle: %v", err)
	}
}

// TestVerifyTwoCycles checks that each cycle is reported once.
func TestVerifyTwoCycles(t *testing.T) {
	g := chain(6)
	g.Ops[1].Args[0] = g.Ops[2].Results[0]
	g.Ops[4].Args[0] = g.Ops[6].Results[0]
	var list ir.ErrorList
	if !errors.As(ir.Verify(g), &list) {
		t.Fatal("Verify accepted two cycles")
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Msg)
	}
	want := []string{
		`cycle: op 1 relu "r0" -> op 2 relu "r1" -> op 1 relu "r0"`,
		`cycle: op 4 relu "r3" -> op 5 relu "r4" -> op 6 relu "r5" -> op 4 relu "r3"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestVerifyErrorLimit(t *testing.T) {
	g := chain(50)
	for _, op := range g.Ops[1:] {
		op.Attrs["bogus"] = 1
	}
	var list ir.ErrorList
	if !errors.As(ir.Verify(g), &list) {
		t.Fatal("Verify accepted 50 bad ops")
	}
	if len(list) != 21 || list[20].Msg != "too many errors" {
		t.Errorf("got %d errors, want 20 and \"too many errors\"", len(list))
	}
}

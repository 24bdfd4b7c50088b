package codegen

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/dave/jennifer/jen"

	_ "github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
)

// convFamily are the kinds whose writers live in opcall_conv.go.
var convFamily = map[ir.OpKind]bool{
	ir.Conv2D: true, ir.Conv2DFused: true, ir.Conv2DDx: true, ir.Conv2DDw: true, ir.Conv2DDwFused: true,
}

// TestDenseOpsCoverTable checks that every op kind of the table other than
// the declarations and the convolution family has a writer here, so that
// a kind added to the table is not forgotten, and that none is written
// twice.
func TestDenseOpsCoverTable(t *testing.T) {
	for _, k := range ir.Kinds() {
		_, ok := denseOps[k]
		want := !k.IsDecl() && !convFamily[k]
		switch {
		case want && !ok:
			t.Errorf("op kind %s has no writer in denseOps", k)
		case !want && ok:
			t.Errorf("op kind %s is a declaration or a convolution but has a writer in denseOps", k)
		}
		if want && opImpls[k].emit == nil {
			t.Errorf("op kind %s is not registered", k)
		}
	}
	for k := range denseOps {
		if ir.Info(k) == nil {
			t.Errorf("denseOps writes %s, which is not in the op table", k)
		}
	}
}

// denseTestGraph builds small example ops of every kind denseOps writes,
// in both layouts wherever an activation can be blocked.
type denseTestGraph struct {
	g   *ir.Graph
	ops []*ir.Op
}

func (b *denseTestGraph) in(layout ir.Layout, dims ...int) *ir.Value {
	t := ir.T32(dims...)
	t.Layout = layout
	return b.g.Decl(ir.Input, fmt.Sprintf("in%d", len(b.g.Ops)), t, nil)
}

func (b *denseTestGraph) labels(n int) *ir.Value {
	return b.g.Decl(ir.Input, fmt.Sprintf("labels%d", len(b.g.Ops)), ir.Type{DType: ir.I32, Shape: ir.Shape{n}}, nil)
}

// add appends an op; a layout-free op's rank-4 result is stored in ly.
func (b *denseTestGraph) add(kind ir.OpKind, attrs ir.Attrs, ly ir.Layout, args ...*ir.Value) *ir.Op {
	op := b.g.MustOp(kind, fmt.Sprintf("op%d", len(b.ops)), attrs, args...)
	if ir.Info(kind).LayoutFree {
		for _, r := range op.Results {
			if len(r.Type.Shape) == 4 {
				r.Type.Layout = ly
			}
		}
	}
	b.ops = append(b.ops, op)
	return op
}

func buildDenseTestOps() *denseTestGraph {
	b := &denseTestGraph{g: ir.New("dense", ir.Train)}
	plain, blocked := ir.NCHW, ir.NCHW8c
	both := []ir.Layout{plain, blocked}
	vec := func(c int) *ir.Value { return b.in(plain, c) }

	// Activations [2, 8, 5, 5] in each layout, [2, 3, 4, 4] plain, and
	// [4, 6] (the head's rank-2 tensors).
	type actCase struct {
		ly   ir.Layout
		dims []int
	}
	acts := []actCase{{plain, []int{2, 8, 5, 5}}, {blocked, []int{2, 8, 5, 5}}, {plain, []int{2, 3, 4, 4}}, {plain, []int{4, 6}}}
	for _, a := range acts {
		x, y := b.in(a.ly, a.dims...), b.in(a.ly, a.dims...)
		C := a.dims[1]
		for _, k := range []ir.OpKind{ir.ReLU, ir.Sigmoid} {
			b.add(k, nil, a.ly, x)
		}
		for _, k := range []ir.OpKind{ir.Add, ir.Mul, ir.ReLUGrad, ir.SigmoidGrad} {
			b.add(k, nil, a.ly, x, y)
		}
		b.add(ir.Scale, ir.Attrs{"factor": 0.5, "offset": 2}, a.ly, x)
		b.add(ir.Dropout, ir.Attrs{"rate": 0.25, "seed": 3}, a.ly, x)
		b.add(ir.BNStats, nil, a.ly, x)
		b.add(ir.BNNorm, ir.Attrs{"eps": 1e-3}, a.ly, x, vec(C), vec(C), vec(C), vec(C))
		b.add(ir.BNNormGrad, nil, a.ly, y, x, vec(C), vec(C), vec(C))
		b.add(ir.BNStatsGrad, nil, a.ly, vec(C), vec(C), x, vec(C))
		b.add(ir.ChanSum, nil, a.ly, x)
		b.add(ir.AffineReLU, nil, a.ly, x, vec(C), vec(C))
		b.add(ir.AffineReLUGrad, nil, a.ly, y, x, vec(C), vec(C))
		b.add(ir.StatsGrad, nil, a.ly, vec(C), vec(C), x)
		if len(a.dims) != 4 {
			continue
		}
		b.add(ir.GAP, nil, a.ly, x)
		for _, ly := range both {
			if ly == blocked && C%8 != 0 {
				continue
			}
			b.add(ir.GAPGrad, ir.Attrs{"in_h": a.dims[2], "in_w": a.dims[3]}, ly, b.in(plain, a.dims[0], C))
			pool := b.add(ir.MaxPool, ir.Attrs{"kernel": 3, "stride": 2, "pad": 1}, ly, x)
			b.add(ir.MaxPoolGrad, ir.Attrs{"kernel": 3, "stride": 2, "pad": 1}, a.ly, pool.Results[0], x)
			sub := b.add(ir.SubsamplePad, ir.Attrs{"stride": 2, "channels": 16}, ly, x)
			b.add(ir.SubsamplePadGrad, ir.Attrs{"stride": 2, "channels": C, "in_h": a.dims[2], "in_w": a.dims[3]}, a.ly, sub.Results[0])
		}
		if C%8 == 0 {
			to := "nchw8c"
			if a.ly == blocked {
				to = "nchw"
			}
			b.add(ir.Relayout, ir.Attrs{"layout": to}, a.ly, x)
		}
	}

	const C = 6
	b.add(ir.EMA, ir.Attrs{"momentum": 0.1, "scale": 1.25}, plain, vec(C), vec(C))
	b.add(ir.BNAffine, nil, plain, vec(C), vec(C), vec(C), vec(C))
	b.add(ir.BNAffineGrad, ir.Attrs{"eps": 1e-4}, plain, vec(C), vec(C), vec(C), vec(C), vec(C))
	b.add(ir.Moments, ir.Attrs{"count": 50}, plain, vec(C), vec(C))
	b.add(ir.MomentsGrad, ir.Attrs{"count": 50}, plain, vec(C), vec(C), vec(C))
	w4, w2 := b.in(plain, C, 8, 3, 3), b.in(plain, C, 5)
	lr := b.in(plain)
	b.add(ir.SGD, ir.Attrs{"momentum": 0.9, "decay": 5e-4}, plain, w4, b.in(plain, C, 8, 3, 3), b.in(plain, C, 8, 3, 3), lr)
	b.add(ir.SGD, nil, plain, vec(C), vec(C), vec(C), lr)
	b.add(ir.BNFold, nil, plain, w4, vec(C), vec(C), vec(C), vec(C), vec(C))
	b.add(ir.BNFold, ir.Attrs{"eps": 1e-3}, plain, w4, vec(C), vec(C), vec(C), vec(C))
	b.add(ir.BNFold, nil, plain, w2, vec(C), vec(C), vec(C), vec(C))

	x, w, bias := b.in(plain, 4, 5), b.in(plain, 3, 5), vec(3)
	dy := b.in(plain, 4, 3)
	b.add(ir.Linear, nil, plain, x, w, bias)
	b.add(ir.LinearDx, nil, plain, dy, w)
	b.add(ir.LinearDw, nil, plain, dy, x)
	labels := b.labels(4)
	b.add(ir.SoftmaxCE, nil, plain, dy, labels)
	b.add(ir.SoftmaxCEGrad, ir.Attrs{"scale": 2}, plain, dy, labels)
	return b
}

// denseTestCall is the OpCall of op with arguments a0, a1, ... and
// results r0, r1, ...
func denseTestCall(op *ir.Op) *OpCall {
	c := &OpCall{Op: op, Ctx: jen.Id("c"), Step: jen.Id("step")}
	for i := range op.Args {
		c.Args = append(c.Args, jen.Id(fmt.Sprintf("a%d", i)))
	}
	for i := range op.Results {
		c.Results = append(c.Results, jen.Id(fmt.Sprintf("r%d", i)))
	}
	return c
}

// TestDenseOpCallsBuild writes a program whose blocks call the code emitOp
// writes for every example op, on slices of the values' lengths, each with
// a Ctx of exactly the scratch opScratch declares, and builds it with the
// go command: the calls must type-check against runtime/nn. It then runs
// it, which checks nothing numeric (runtime/nn's tests do that) but makes
// every kernel check the lengths, shapes and scratch sizes it was given.
func TestDenseOpCallsBuild(t *testing.T) {
	b := buildDenseTestOps()
	if err := ir.Verify(b.g); err != nil {
		t.Fatalf("test graph does not verify: %v", err)
	}
	built := map[ir.OpKind]bool{}
	var body []jen.Code
	for _, op := range b.ops {
		built[op.Kind] = true
		call, err := emitOp(denseTestCall(op))
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		floats, wide := opScratch(op)
		block := []jen.Code{
			jen.List(jen.Id("c"), jen.Err()).Op(":=").Qual(nnPkg, "NewCtx").Call(jen.Lit(2), jen.Lit(floats), jen.Lit(wide)),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Panic(jen.Err())),
		}
		slice := func(name string, v *ir.Value) jen.Code {
			elem := jen.Float32()
			if v.Type.DType == ir.I32 {
				elem = jen.Int32()
			}
			return jen.Id(name).Op(":=").Make(jen.Index().Add(elem), jen.Lit(v.Type.Shape.Elems()))
		}
		for i, a := range op.Args {
			block = append(block, slice(fmt.Sprintf("a%d", i), a))
		}
		for i, r := range op.Results {
			block = append(block, slice(fmt.Sprintf("r%d", i), r))
		}
		block = append(block, jen.Comment(op.String()), call)
		block = append(block, jen.Id("c").Dot("Close").Call())
		body = append(body, jen.Block(block...))
	}
	for k := range denseOps {
		if !built[k] {
			t.Errorf("no example op of kind %s", k)
		}
	}
	f := jen.NewFile("main")
	f.Func().Id("main").Params().Block(
		append([]jen.Code{jen.Var().Id("step").Int64().Op("=").Lit(7)}, append(body, jen.Id("_").Op("=").Id("step"))...)...,
	)
	var src bytes.Buffer
	if err := f.Render(&src); err != nil {
		t.Fatal(err)
	}

	dir, err := os.MkdirTemp(".", "_opcall_dense")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	prog, err := filepath.Abs(filepath.Join(dir, "prog"))
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command(denseGoTool(), "build", "-o", prog, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the emitted calls: %v\n%s", err, out)
	}
	if out, err := exec.Command(prog).CombinedOutput(); err != nil {
		t.Fatalf("running the emitted calls (%d ops): %v\n%s", len(b.ops), err, out)
	}
}

// denseGoTool is the go command of the toolchain running this test.
func denseGoTool() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}

// actLit matches an nn.Act literal, to print it short.
var actLit = regexp.MustCompile(`nn\.Act\{([^}]*)\}`)

// shortCall renders code on one line with each nn.Act literal written
// Act(N,C,H,W) or Act(N,C,H,W,blocked).
func shortCall(code jen.Code) string {
	s := fmt.Sprintf("%#v", code)
	return actLit.ReplaceAllStringFunc(s, func(m string) string {
		f := map[string]string{}
		for _, kv := range strings.Split(actLit.FindStringSubmatch(m)[1], ",") {
			if k, v, ok := strings.Cut(strings.TrimSpace(kv), ":"); ok {
				f[k] = strings.TrimSpace(v)
			}
		}
		out := fmt.Sprintf("Act(%s,%s,%s,%s", f["N"], f["C"], f["H"], f["W"])
		if f["Blocked"] == "true" {
			out += ",blocked"
		}
		return out + ")"
	})
}

// TestDenseOpCallText checks the argument order and the constants of the
// emitted calls, which a build cannot check: the slices are all
// []float32, and shapes and attributes are all numbers.
func TestDenseOpCallText(t *testing.T) {
	b := buildDenseTestOps()
	got := map[string]bool{}
	for _, op := range b.ops {
		code, err := emitOp(denseTestCall(op))
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		got[shortCall(code)] = true
	}
	for _, want := range []string{
		"nn.ReLU(c, r0, a0, Act(2,8,5,5,blocked))",
		"nn.Add(c, r0, a0, a1, Act(2,3,4,4))",
		"nn.ReLUGrad(c, r0, a0, a1, Act(4,6,1,1))",
		"nn.Scale(c, r0, a0, Act(2,8,5,5), 0.5, 2.0)",
		"nn.Dropout(c, r0, r1, a0, step, Act(2,8,5,5,blocked), 0.25, 3)",
		"nn.BNStats(c, r0, r1, a0, Act(2,8,5,5,blocked))",
		"nn.BNNorm(c, r0, a0, a1, a2, a3, a4, Act(2,8,5,5,blocked), 0.001)",
		"nn.BNNormGrad(c, r0, r1, r2, r3, r4, a0, a1, a2, a3, a4, Act(2,3,4,4), 1e-05)",
		"nn.BNStatsGrad(c, r0, a0, a1, a2, a3, Act(2,8,5,5,blocked))",
		"nn.ChanSum(c, r0, a0, Act(4,6,1,1))",
		"nn.AffineReLU(c, r0, a0, a1, a2, Act(2,8,5,5,blocked))",
		"nn.AffineReLUGrad(c, r0, r1, r2, a0, a1, a2, a3, Act(2,8,5,5,blocked))",
		"nn.StatsGrad(c, r0, a0, a1, a2, Act(2,8,5,5))",
		"nn.GAP(c, r0, a0, Act(2,8,5,5,blocked))",
		"nn.GAPGrad(c, r0, a0, Act(2,8,5,5,blocked))",
		"nn.MaxPool(c, r0, a0, Act(2,8,3,3,blocked), Act(2,8,5,5), 3, 2, 1)",
		"nn.MaxPoolGrad(c, r0, a0, a1, Act(2,8,5,5), Act(2,8,3,3,blocked), Act(2,8,5,5), 3, 2, 1)",
		"nn.SubsamplePad(c, r0, a0, Act(2,16,3,3,blocked), Act(2,8,5,5), 2)",
		"nn.SubsamplePad(c, r0, a0, Act(2,16,2,2), Act(2,3,4,4), 2)",
		"nn.SubsamplePadGrad(c, r0, a0, Act(2,8,5,5,blocked), Act(2,16,3,3), 2)",
		"nn.Relayout(c, r0, a0, Act(2,8,5,5,blocked), Act(2,8,5,5))",
		"nn.EMA(c, r0, a0, a1, 6, 0.1, 1.25)",
		"nn.BNAffine(c, r0, r1, a0, a1, a2, a3, 6, 1e-05)",
		"nn.BNAffineGrad(c, r0, r1, r2, r3, a0, a1, a2, a3, a4, 6, 0.0001)",
		"nn.Moments(c, r0, r1, a0, a1, 6, 50)",
		"nn.MomentsGrad(c, r0, r1, a0, a1, a2, 6, 50)",
		"nn.SGD(c, r0, r1, a0, a1, a2, a3, 432, 0.9, 0.0005)",
		"nn.BNFold(c, r0, r1, a0, a1, a2, a3, a4, a5, 6, 72, 1e-05)",
		"nn.BNFold(c, r0, r1, a0, nil, a1, a2, a3, a4, 6, 72, 0.001)",
		"nn.BNFold(c, r0, r1, a0, nil, a1, a2, a3, a4, 6, 5, 1e-05)",
		"nn.Linear(c, r0, a0, a1, a2, 4, 5, 3)",
		"nn.LinearDx(c, r0, a0, a1, 4, 5, 3)",
		"nn.LinearDw(c, r0, a0, a1, 4, 5, 3)",
		"nn.SoftmaxCE(c, r0, a0, a1, 4, 3)",
		"nn.SoftmaxCEGrad(c, r0, a0, a1, 4, 3, 2.0)",
	} {
		if !got[want] {
			t.Errorf("no emitted call reads %s", want)
		}
	}
	if t.Failed() {
		var all []string
		for s := range got {
			all = append(all, s)
		}
		t.Logf("emitted:\n%s", strings.Join(all, "\n"))
	}
}

// TestDenseOpScratch checks the scratch the reductions declare.
func TestDenseOpScratch(t *testing.T) {
	b := buildDenseTestOps()
	seen := map[ir.OpKind]bool{}
	for _, op := range b.ops {
		floats, wide := opScratch(op)
		var want int
		switch op.Kind {
		case ir.BNStats, ir.ChanSum:
			want = op.Args[0].Type.Shape[1]
			if op.Kind == ir.BNStats {
				want *= 2
			}
		case ir.BNNormGrad, ir.AffineReLUGrad:
			want = 2 * op.Args[1].Type.Shape[1]
		case ir.MaxPoolGrad: // one plane of x: 5x5 for 8 channels, 4x4 for 3
			want = map[int]int{8: 25, 3: 16}[op.Args[1].Type.Shape[1]]
		case ir.LinearDx, ir.LinearDw:
			want = 5
		case ir.SoftmaxCE:
			want = 1
		}
		if floats != 0 || wide != want {
			t.Errorf("%s on %v: scratch %d floats, %d wide; want 0, %d", op.Kind, op.Args[0].Type, floats, wide, want)
		}
		seen[op.Kind] = true
	}
	if !seen[ir.MaxPoolGrad] || !seen[ir.SoftmaxCE] {
		t.Error("example ops lack maxpool_grad or softmaxce")
	}
}

// TestDenseOpCallErrors checks that what the kernels cannot run is an
// error naming the op, not a panic: a non-finite attribute, operands in
// different layouts, blocked weights to fold.
func TestDenseOpCallErrors(t *testing.T) {
	b := &denseTestGraph{g: ir.New("bad", ir.Train)}
	x := b.in(ir.NCHW, 2, 8, 3, 3)
	inf := b.add(ir.Scale, ir.Attrs{"factor": math.Inf(1)}, ir.NCHW, x)
	mixed := b.add(ir.Add, nil, ir.NCHW, x, x)
	mixed.Args = []*ir.Value{x, b.in(ir.NCHW8c, 2, 8, 3, 3)}
	fold := b.add(ir.BNFold, nil, ir.NCHW, b.in(ir.NCHW8c, 8, 8, 3, 3), b.in(ir.NCHW, 8), b.in(ir.NCHW, 8), b.in(ir.NCHW, 8), b.in(ir.NCHW, 8))
	for _, op := range []*ir.Op{inf, mixed, fold} {
		_, err := emitOp(denseTestCall(op))
		if err == nil || !strings.Contains(err.Error(), op.Name) {
			t.Errorf("%s: error %v, want one naming the op", op, err)
		}
	}
}

package codegen

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dave/jennifer/jen"

	_ "github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
)

// convTestGraph builds small ops of the convolution family: every kind,
// both layouts of every activation, every optional argument and flag
// combination, the 7x7 stem on a 3-channel input, and one conv2d_fused
// computed in place into its residual (named by inPlace).
type convTestGraph struct {
	g       *ir.Graph
	ops     []*ir.Op
	inPlace *ir.Op
}

// newConvTestGraph returns an empty training graph to build ops in.
func newConvTestGraph() *convTestGraph {
	return &convTestGraph{g: ir.New("convs", ir.Train)}
}

// in declares an input of the given layout and shape.
func (b *convTestGraph) in(layout ir.Layout, dims ...int) *ir.Value {
	t := ir.T32(dims...)
	t.Layout = layout
	return b.g.Decl(ir.Input, fmt.Sprintf("in%d", len(b.g.Ops)), t, nil)
}

// convTestLayouts are the layouts a rank-4 activation with c channels may have.
func convTestLayouts(c int) []ir.Layout {
	if c%8 == 0 {
		return []ir.Layout{ir.NCHW, ir.NCHW8c}
	}
	return []ir.Layout{ir.NCHW}
}

// add appends an op whose first result is stored in layout ly.
func (b *convTestGraph) add(kind ir.OpKind, attrs ir.Attrs, ly ir.Layout, args ...*ir.Value) *ir.Op {
	op := b.g.MustOp(kind, fmt.Sprintf("op%d", len(b.ops)), attrs, args...)
	if len(op.Results[0].Type.Shape) == 4 && kind != ir.Conv2DDw && kind != ir.Conv2DDwFused {
		op.Results[0].Type.Layout = ly
	}
	b.ops = append(b.ops, op)
	return op
}

// convTestGeoms are (x shape, w shape, stride, pad) of the ops built.
var convTestGeoms = []struct {
	x, w        []int
	stride, pad int
}{
	{[]int{2, 8, 5, 5}, []int{8, 8, 3, 3}, 1, 1},
	{[]int{3, 8, 7, 7}, []int{16, 8, 1, 1}, 2, 0},
	{[]int{2, 3, 9, 9}, []int{8, 3, 7, 7}, 2, 3},
}

// buildConvTestOps builds the ops of every kind for each geometry of
// convTestGeoms in every layout pair.
func buildConvTestOps() *convTestGraph {
	b := newConvTestGraph()
	for _, geo := range convTestGeoms {
		cin, cout := geo.x[1], geo.w[0]
		n := geo.x[0]
		ho := (geo.x[2]+2*geo.pad-geo.w[2])/geo.stride + 1
		wo := (geo.x[3]+2*geo.pad-geo.w[3])/geo.stride + 1
		sp := ir.Attrs{"stride": geo.stride, "pad": geo.pad}
		with := func(a ir.Attrs, kv ...any) ir.Attrs {
			c := a.Clone()
			for i := 0; i < len(kv); i += 2 {
				c[kv[i].(string)] = kv[i+1]
			}
			return c
		}
		for _, xl := range convTestLayouts(cin) {
			for _, yl := range convTestLayouts(cout) {
				// conv2d with and without bias.
				for _, bias := range []bool{false, true} {
					args := []*ir.Value{b.in(xl, geo.x...), b.in(ir.NCHW, geo.w...)}
					if bias {
						args = append(args, b.in(ir.NCHW, cout))
					}
					b.add(ir.Conv2D, sp, yl, args...)
				}
				// conv2d_fused: every prologue and epilogue.
				for _, pro := range []string{"none", "relu", "affine_relu"} {
					for m := 0; m < 16; m++ {
						bias, res, relu, stats := m&1 != 0, m&2 != 0, m&4 != 0, m&8 != 0
						args := []*ir.Value{b.in(xl, geo.x...), b.in(ir.NCHW, geo.w...)}
						if bias {
							args = append(args, b.in(ir.NCHW, cout))
						}
						if pro == "affine_relu" {
							args = append(args, b.in(ir.NCHW, cin), b.in(ir.NCHW, cin))
						}
						if res {
							args = append(args, b.in(yl, n, cout, ho, wo))
						}
						op := b.add(ir.Conv2DFused, with(sp, "prologue", pro, "bias", bias, "residual", res, "relu", relu, "stats", stats), yl, args...)
						if res && bias && pro == "affine_relu" && b.inPlace == nil {
							b.inPlace = op
						}
					}
				}
				// conv2d_dx: x is dx, y is dy.
				b.add(ir.Conv2DDx, with(sp, "in_h", geo.x[2], "in_w", geo.x[3]), xl, b.in(yl, n, cout, ho, wo), b.in(ir.NCHW, geo.w...))
				// conv2d_dw and conv2d_dw_fused with every prologue.
				b.add(ir.Conv2DDw, with(sp, "kernel", geo.w[2]), ir.NCHW, b.in(yl, n, cout, ho, wo), b.in(xl, geo.x...))
				for _, pro := range []string{"none", "relu", "affine_relu"} {
					args := []*ir.Value{b.in(yl, n, cout, ho, wo), b.in(xl, geo.x...)}
					if pro == "affine_relu" {
						args = append(args, b.in(ir.NCHW, cin), b.in(ir.NCHW, cin))
					}
					b.add(ir.Conv2DDwFused, with(sp, "kernel", geo.w[2], "prologue", pro), ir.NCHW, args...)
				}
			}
		}
	}
	return b
}

// convTestCall is the OpCall of op with arguments a0, a1, ... and results
// r0, r1, ...; an in-place op's output is its residual's slice.
func convTestCall(op *ir.Op, inPlace bool) *OpCall {
	c := &OpCall{Op: op, Ctx: jen.Id("c"), Step: jen.Id("step")}
	for i := range op.Args {
		c.Args = append(c.Args, jen.Id(fmt.Sprintf("a%d", i)))
	}
	for i := range op.Results {
		c.Results = append(c.Results, jen.Id(fmt.Sprintf("r%d", i)))
	}
	if inPlace {
		c.Results[0] = c.Args[len(c.Args)-1]
	}
	return c
}

// TestConvOpCallsBuildAndRun writes a program calling the code emitOp
// writes for every op of buildConvTestOps on slices of the values'
// lengths, each with a Ctx of exactly the scratch opScratch declares, then
// builds and runs it: the calls must type-check, and the kernels' checks
// of lengths, shapes and scratch sizes must pass.
func TestConvOpCallsBuildAndRun(t *testing.T) {
	b := buildConvTestOps()
	if err := ir.Verify(b.g); err != nil {
		t.Fatalf("test graph does not verify: %v", err)
	}
	kinds := map[ir.OpKind]int{}
	var body []jen.Code
	for _, op := range b.ops {
		kinds[op.Kind]++
		floats, wide := opScratch(op)
		inPlace := op == b.inPlace
		call, err := emitOp(convTestCall(op, inPlace))
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		// Each op gets a Ctx of exactly the scratch it declares.
		block := []jen.Code{
			jen.List(jen.Id("c"), jen.Err()).Op(":=").Qual(nnPkg, "NewCtx").Call(jen.Lit(2), jen.Lit(floats), jen.Lit(wide)),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Panic(jen.Err())),
		}
		for i, a := range op.Args {
			block = append(block, jen.Id(fmt.Sprintf("a%d", i)).Op(":=").Make(jen.Index().Float32(), jen.Lit(a.Type.Shape.Elems())))
		}
		for i, r := range op.Results {
			if i == 0 && inPlace {
				continue
			}
			block = append(block, jen.Id(fmt.Sprintf("r%d", i)).Op(":=").Make(jen.Index().Float32(), jen.Lit(r.Type.Shape.Elems())))
		}
		block = append(block, jen.Comment(fmt.Sprintf("%s %v", op.Kind, op.Attrs)), call)
		if !inPlace {
			for i := range op.Results {
				block = append(block, jen.Id("_").Op("=").Id(fmt.Sprintf("r%d", i)))
			}
		}
		block = append(block, jen.Id("c").Dot("Close").Call())
		body = append(body, jen.Block(block...))
	}
	for _, k := range []ir.OpKind{ir.Conv2D, ir.Conv2DFused, ir.Conv2DDx, ir.Conv2DDw, ir.Conv2DDwFused} {
		if kinds[k] == 0 {
			t.Errorf("no %s op built", k)
		}
	}
	if b.inPlace == nil {
		t.Error("no in-place conv2d_fused built")
	}
	f := jen.NewFile("main")
	f.Func().Id("main").Params().Block(body...)
	var src bytes.Buffer
	if err := f.Render(&src); err != nil {
		t.Fatal(err)
	}

	dir, err := os.MkdirTemp(".", "_opcall_conv")
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
	// go test puts its own GOROOT/bin first in the PATH.
	build := exec.Command("go", "build", "-o", prog, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the emitted calls: %v\n%s", err, out)
	}
	if out, err := exec.Command(prog).CombinedOutput(); err != nil {
		t.Fatalf("running the emitted calls (%d ops): %v\n%s", len(b.ops), err, out)
	}
}

// TestConvOpCallText checks the order of the arguments in emitted calls,
// which a build cannot check (they are all []float32).
func TestConvOpCallText(t *testing.T) {
	b := buildConvTestOps()
	want := map[string]bool{}
	for _, op := range b.ops {
		attrs := fmt.Sprint(op.Attrs)
		var w string
		switch {
		case op.Kind == ir.Conv2DFused && op.Bool("bias") && op.Bool("residual") && op.Bool("stats") && op.Str("prologue") == "affine_relu":
			w = "nn.Conv2DFused(c, r0, r1, r2, a0, a1, a2, a3, a4, a5, nn.ConvParams{"
		case op.Kind == ir.Conv2DFused && !op.Bool("bias") && op.Bool("residual") && !op.Bool("stats") && op.Str("prologue") == "relu":
			w = "nn.Conv2DFused(c, r0, nil, nil, a0, a1, nil, nil, nil, a2, nn.ConvParams{"
		case op.Kind == ir.Conv2DFused && !op.Bool("bias") && !op.Bool("residual") && op.Str("prologue") == "affine_relu":
			w = "(c, r0, " // stats or not, checked below
		case op.Kind == ir.Conv2D && len(op.Args) == 2:
			w = "nn.Conv2D(c, r0, a0, a1, nil, nn.ConvParams{"
		case op.Kind == ir.Conv2DDx:
			w = "nn.Conv2DDx(c, r0, a0, a1, nn.ConvParams{"
		case op.Kind == ir.Conv2DDw:
			w = "nn.Conv2DDw(c, r0, a0, a1, nn.ConvParams{"
		case op.Kind == ir.Conv2DDwFused && len(op.Args) == 4:
			w = "nn.Conv2DDwFused(c, r0, a0, a1, a2, a3, nn.ConvParams{"
		case op.Kind == ir.Conv2DDwFused:
			w = "nn.Conv2DDwFused(c, r0, a0, a1, nil, nil, nn.ConvParams{"
		default:
			continue
		}
		code, err := emitOp(convTestCall(op, false))
		if err != nil {
			t.Fatalf("%s %s: %v", op, attrs, err)
		}
		got := fmt.Sprintf("%#v", code)
		if !strings.Contains(got, w) {
			t.Errorf("%s %s:\n%s\nwant it to contain %q", op, attrs, got, w)
		}
		if op.Kind == ir.Conv2DFused && op.Str("prologue") == "affine_relu" && !op.Bool("bias") && !op.Bool("residual") {
			if !strings.Contains(got, "a0, a1, nil, a2, a3, nil, nn.ConvParams{") || !strings.Contains(got, "Prologue: nn.PrologueAffineReLU") {
				t.Errorf("%s %s: %s: scale and shift are not the third and fourth arguments", op, attrs, got)
			}
		}
		want[string(op.Kind)] = true
		// Every flag the op sets is in the literal, and no other.
		for attr, field := range map[string]string{"bias": "Bias", "residual": "Residual", "relu": "ReLU", "stats": "Stats"} {
			if op.Kind != ir.Conv2DFused {
				break
			}
			if set := regexp.MustCompile(`\b` + field + `:\s+true`).MatchString(got); op.Bool(attr) != set {
				t.Errorf("%s %s: %s: %s=%v", op, attrs, got, attr, op.Bool(attr))
			}
		}
	}
	for _, k := range []string{"conv2d", "conv2d_fused", "conv2d_dx", "conv2d_dw", "conv2d_dw_fused"} {
		if !want[k] {
			t.Errorf("no %s call checked", k)
		}
	}
}

// TestConvOpCallErrors checks that a weight stored blocked and a residual
// stored in another layout than the output are errors, not wrong calls.
func TestConvOpCallErrors(t *testing.T) {
	b := newConvTestGraph()
	wb := b.in(ir.NCHW8c, 8, 8, 3, 3)
	conv := b.add(ir.Conv2D, ir.Attrs{"pad": 1}, ir.NCHW8c, b.in(ir.NCHW8c, 2, 8, 5, 5), wb)
	res := b.add(ir.Conv2DFused, ir.Attrs{"pad": 1, "residual": true}, ir.NCHW8c,
		b.in(ir.NCHW8c, 2, 8, 5, 5), b.in(ir.NCHW, 8, 8, 3, 3), b.in(ir.NCHW, 2, 8, 5, 5))
	for _, op := range []*ir.Op{conv, res} {
		if _, err := emitOp(convTestCall(op, false)); err == nil {
			t.Errorf("%s %v: no error", op, op.Attrs)
		}
	}
}

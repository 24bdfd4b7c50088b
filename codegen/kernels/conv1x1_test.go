package kernels

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"strings"
	"testing"

	"github.com/dave/jennifer/jen"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/pass"

	_ "github.com/resnetc/resnetc/internal/golden"
)

func TestConv1x1Validate(t *testing.T) {
	ok := Conv1x1{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 2, Prologue: PrologueAffineReLU, Stats: true}
	for _, op := range []Conv1x1Op{Conv1x1Fwd, Conv1x1Dx, Conv1x1Dw} {
		c := ok
		c.Op = op
		if op != Conv1x1Fwd {
			c.Stats = false
		}
		if op == Conv1x1Dx {
			c.Prologue = PrologueNone
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
	}
	for _, c := range []struct {
		edit func(*Conv1x1)
		want string
	}{
		{func(c *Conv1x1) { c.Cin = 12 }, "Cin=12 is not a multiple of 8"},
		{func(c *Conv1x1) { c.Cout = 0 }, "Cout=0, want 1.."},
		{func(c *Conv1x1) { c.N = -1 }, "N=-1"},
		{func(c *Conv1x1) { c.W = 0 }, "W=0"},
		{func(c *Conv1x1) { c.Stride = 3 }, "stride 3, want 1 or 2"},
		{func(c *Conv1x1) { c.Prologue = 7 }, "unknown prologue 7"},
		{func(c *Conv1x1) { c.Unroll = 3 }, "unroll 3"},
		{func(c *Conv1x1) { c.Op = 5 }, "unknown op 5"},
		{func(c *Conv1x1) { c.Op, c.Stats = Conv1x1Dx, false }, "conv2d_dx has no prologue"},
		{func(c *Conv1x1) { c.Op = Conv1x1Dw }, "belong to the forward conv"},
		{func(c *Conv1x1) { c.H, c.W, c.Cin = 4096, 4096, 64 }, "one image of input takes"},
	} {
		bad := ok
		c.edit(&bad)
		err := bad.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: Validate() = %v, want an error containing %q", bad, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), bad.Name()) {
			t.Errorf("error %q does not name the kernel %s", err, bad.Name())
		}
		if err := bad.BuildAsm(build.NewContext()); err == nil {
			t.Errorf("%s: BuildAsm accepted an invalid kernel", bad.Name())
		}
		if got := bad.Plan(); got.Groups != nil {
			t.Errorf("%s: invalid kernel has the plan %s", bad.Name(), got)
		}
	}
}

// TestConv1x1PlanCovers checks, for every op over ranges of channels and
// sizes, that the plan covers every vector block once and every column
// of a row exactly, never needs more than the 16 YMM registers, cuts
// forward and Dx rows evenly into the fewest tiles, keeps Dw's tiles
// inside a channel block, and chunks Dw's pixels evenly.
func TestConv1x1PlanCovers(t *testing.T) {
	for _, op := range []Conv1x1Op{Conv1x1Fwd, Conv1x1Dx, Conv1x1Dw} {
		for ch := 8; ch <= 56; ch += 8 {
			for _, hw := range [][2]int{{1, 1}, {5, 7}, {7, 5}, {6, 4}, {13, 13}, {24, 24}, {32, 32}} {
				for stride := 1; stride <= 2; stride++ {
					c := Conv1x1{Op: op, N: 1, Cin: 72 - ch, Cout: ch, H: hw[0], W: hw[1], Stride: stride}
					checkPlan(t, c)
				}
			}
		}
	}
}

func checkPlan(t *testing.T, c Conv1x1) {
	t.Helper()
	p := c.Plan()
	// Blocks, columns of a row and rows, written out again.
	blocks, cols, rows := c.Cout/8, c.OutH()*c.OutW(), 1
	switch {
	case c.Op == Conv1x1Dx && c.Stride == 2:
		blocks, cols, rows = c.Cin/8, c.OutW(), c.OutH()
	case c.Op == Conv1x1Dx:
		blocks = c.Cin / 8
	case c.Op == Conv1x1Dw:
		cols = c.Cin
	}
	if p.Rows != rows {
		t.Errorf("%s: %d rows, want %d", c.Name(), p.Rows, rows)
	}
	covered := 0
	for _, g := range p.Groups {
		covered += g.Blocks * g.Count
		if g.Blocks < 1 || g.Blocks > 4 || g.Count < 1 {
			t.Errorf("%s: group %+v", c.Name(), g)
		}
		width, tiles, lo, hi := 0, 0, cols, 0
		for _, s := range g.Cols {
			width += s.Width * s.Count
			tiles += s.Count
			lo, hi = min(lo, s.Width), max(hi, s.Width)
			if need := g.Blocks*s.Width + g.Blocks + 1; need > numYMM {
				t.Errorf("%s: tile %dx%d needs %d YMM registers", c.Name(), g.Blocks, s.Width, need)
			}
			if c.Op == Conv1x1Dw && 8%s.Width != 0 {
				t.Errorf("%s: Dw tile of %d channels straddles channel blocks", c.Name(), s.Width)
			}
		}
		if width != cols {
			t.Errorf("%s: columns %v cover %d, want %d", c.Name(), g.Cols, width, cols)
		}
		if c.Op != Conv1x1Dw {
			widest := (numYMM - 1 - g.Blocks) / g.Blocks
			if fewest := (cols + widest - 1) / widest; tiles != fewest || hi-lo > 1 {
				t.Errorf("%s: columns %v: %d tiles (want %d), widths %d..%d", c.Name(), g.Cols, tiles, fewest, lo, hi)
			}
		}
	}
	if covered != blocks {
		t.Errorf("%s: plan %s covers %d vector blocks, want %d", c.Name(), p, covered, blocks)
	}
	if p.Chunk != 0 {
		if c.Op != Conv1x1Dw || c.outPixels()%p.Chunk != 0 || p.Chunk%c.unroll() != 0 || p.Chunk >= c.outPixels() {
			t.Errorf("%s: chunk %d of %d pixels", c.Name(), p.Chunk, c.outPixels())
		}
	}
}

// TestConv1x1PlanStages pins the plans of some ResNet shapes, the choices
// the benchmarks measure: two blocks by six pixels when only two output
// blocks exist, three blocks by four otherwise; Dw's 2x4 and 3x4 tiles
// over L1-sized chunks; Dx's stride-2 tiles following dy's rows.
func TestConv1x1PlanStages(t *testing.T) {
	for _, c := range []struct {
		c    Conv1x1
		want string
	}{
		{Conv1x1{Cin: 64, Cout: 16, H: 32, W: 32, Stride: 1}, "1x2 blocks: 169x6+2x5"},
		{Conv1x1{Cin: 64, Cout: 256, H: 8, W: 8, Stride: 1}, "10x3 blocks: 16x4; 1x2 blocks: 9x6+2x5"},
		{Conv1x1{Op: Conv1x1Dw, Cin: 64, Cout: 16, H: 32, W: 32, Stride: 1}, "1x2 blocks: 16x4 over chunks of 256 pixels"},
		{Conv1x1{Op: Conv1x1Dw, Cin: 256, Cout: 64, H: 8, W: 8, Stride: 1}, "2x3 blocks: 64x4; 1x2 blocks: 64x4"},
		{Conv1x1{Op: Conv1x1Dx, Cin: 64, Cout: 128, H: 32, W: 32, Stride: 2}, "16 rows of 2x3 blocks: 4x4; 1x2 blocks: 1x6+2x5"},
	} {
		k := c.c
		k.N = 128
		if got := k.Plan().String(); got != c.want {
			t.Errorf("%s: plan %q, want %q", k.Name(), got, c.want)
		}
	}
}

func TestConv1x1Names(t *testing.T) {
	seen := map[string]Conv1x1{}
	add := func(c Conv1x1) {
		if prev, dup := seen[c.Name()]; dup {
			t.Fatalf("%+v and %+v are both named %s", prev, c, c.Name())
		}
		seen[c.Name()] = c
		for _, id := range []string{c.Name(), c.asmName(), c.goName(), c.shapeVar()} {
			if !token.IsIdentifier(id) {
				t.Errorf("%s: %q is not an identifier", c.Name(), id)
			}
		}
		if !token.IsExported(c.Name()) {
			t.Errorf("%s is not exported", c.Name())
		}
	}
	base := Conv1x1{N: 1, Cin: 8, Cout: 8, H: 3, W: 3, Stride: 1}
	for _, u := range []int{0, 1, 2, 8} {
		for _, p := range Prologues {
			for e := range 16 {
				c := base
				c.Prologue, c.Unroll = p, u
				c.Bias, c.Residual, c.ReLU, c.Stats = e&1 != 0, e&2 != 0, e&4 != 0, e&8 != 0
				add(c)
			}
			dw := base
			dw.Op, dw.Prologue, dw.Unroll = Conv1x1Dw, p, u
			add(dw)
		}
		dx := base
		dx.Op, dx.Unroll = Conv1x1Dx, u
		add(dx)
	}
	for _, c := range []struct {
		c    Conv1x1
		want string
	}{
		{Conv1x1{N: 128, Cin: 64, Cout: 16, H: 32, W: 32, Stride: 1, Prologue: PrologueAffineReLU, Stats: true}, "Conv1x1N128C64K16H32W32S1InAffineReluStats"},
		{Conv1x1{Op: Conv1x1Dx, N: 128, Cin: 64, Cout: 128, H: 32, W: 32, Stride: 2}, "Conv1x1DxN128C64K128H32W32S2"},
		{Conv1x1{Op: Conv1x1Dw, N: 2, Cin: 8, Cout: 8, H: 1, W: 1, Stride: 1, Prologue: PrologueReLU, Unroll: 8}, "Conv1x1DwN2C8K8H1W1S1InReluU8"},
	} {
		if got := c.c.Name(); got != c.want {
			t.Errorf("Name() = %s, want %s", got, c.want)
		}
	}
}

// TestConv1x1Sizes checks the lengths and work a kernel's arguments have,
// which the generated checks and benchmarks rely on.
func TestConv1x1Sizes(t *testing.T) {
	c := Conv1x1{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 2}
	if c.OutH() != 4 || c.OutW() != 3 || c.XLen() != 2*16*35 || c.YLen() != 2*24*12 || c.WLen() != 16*24 {
		t.Errorf("%s: out %dx%d, lengths %d %d %d", c.Name(), c.OutH(), c.OutW(), c.XLen(), c.YLen(), c.WLen())
	}
	if got, want := c.FLOPs(), 2.0*2*24*16*12; got != want {
		t.Errorf("FLOPs() = %v, want %v", got, want)
	}
	for _, s := range []struct {
		edit func(*Conv1x1)
		want int
	}{
		{func(c *Conv1x1) {}, 16 * 12},                                             // stride 2 gathers
		{func(c *Conv1x1) { c.Stride = 1 }, 0},                                     // reads x itself
		{func(c *Conv1x1) { c.Stride, c.Prologue = 1, PrologueReLU }, 16 * 35},     // prologue
		{func(c *Conv1x1) { c.Op = Conv1x1Dx }, 0},                                 // weights packed by the driver
		{func(c *Conv1x1) { c.Op, c.Stride = Conv1x1Dw, 1 }, 0},                    // reads x itself
		{func(c *Conv1x1) { c.Op, c.Prologue = Conv1x1Dw, PrologueReLU }, 16 * 12}, // prologue
	} {
		k := c
		s.edit(&k)
		if got := k.ScratchLen(); got != s.want {
			t.Errorf("%s: ScratchLen() = %d, want %d", k.Name(), got, s.want)
		}
	}
}

// TestConv1x1BuildAsm builds kernels covering every op, plan shape and
// flag into one file and checks that avo compiles it (register
// allocation included).
func TestConv1x1BuildAsm(t *testing.T) {
	ctx := build.NewContext()
	BuildPeak(ctx)
	for _, c := range []Conv1x1{
		{N: 1, Cin: 8, Cout: 8, H: 1, W: 1, Stride: 1},
		{N: 2, Cin: 24, Cout: 40, H: 9, W: 30, Stride: 2, Prologue: PrologueAffineReLU, Bias: true, Residual: true, ReLU: true, Stats: true},
		{N: 1, Cin: 64, Cout: 96, H: 8, W: 8, Stride: 1, Unroll: 8, Prologue: PrologueReLU, Stats: true},
		{Op: Conv1x1Dx, N: 1, Cin: 40, Cout: 24, H: 7, W: 5, Stride: 2, Unroll: 2},
		{Op: Conv1x1Dx, N: 1, Cin: 8, Cout: 64, H: 16, W: 16, Stride: 1},
		{Op: Conv1x1Dw, N: 3, Cin: 24, Cout: 40, H: 24, W: 24, Stride: 1},
		{Op: Conv1x1Dw, N: 1, Cin: 16, Cout: 8, H: 5, W: 7, Stride: 2, Prologue: PrologueAffineReLU, Unroll: 1},
	} {
		if err := c.BuildAsm(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f, err := ctx.Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := pass.Compile.Execute(f); err != nil {
		t.Fatal(err)
	}
}

func TestEmitConv1x1GoRejects(t *testing.T) {
	good := Conv1x1{N: 1, Cin: 8, Cout: 8, H: 3, W: 3, Stride: 1}
	bad := good
	bad.Cin = 4
	for name, set := range map[string][]Conv1x1{
		"duplicate": {good, good},
		"invalid":   {good, bad},
	} {
		if err := EmitConv1x1Go(NewFile("p", ""), set); err == nil {
			t.Errorf("%s: EmitConv1x1Go accepted %v", name, set)
		}
	}
	if err := EmitConv1x1Go(NewFile("p", ""), []Conv1x1{good}); err != nil {
		t.Error(err)
	}
}

// TestConv1x1Package type-checks what a package of 1x1 kernels is made
// of, except the assembly: both support files, the Go EmitDispatch and
// EmitConv1x1Go write for one kernel of each op, and the stand-ins of a
// build without assembly. It also checks that the support source imports
// only the standard library.
func TestConv1x1Package(t *testing.T) {
	convs := []Conv1x1{
		{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 2, Prologue: PrologueAffineReLU, Bias: true, Residual: true, ReLU: true, Stats: true},
		{Op: Conv1x1Dx, N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 2},
		{Op: Conv1x1Dw, N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 1, Prologue: PrologueReLU},
	}
	gf := NewFile("netpkg", "")
	EmitDispatch(gf)
	if err := EmitConv1x1Go(gf, convs); err != nil {
		t.Fatal(err)
	}
	absent := NewFile("netpkg", NoAsmConstraint)
	EmitAsmAbsent(absent, nil)
	EmitConv1x1AsmAbsent(absent, convs)
	sources := map[string]string{}
	for name, jf := range map[string]*jen.File{"gemm.go": gf, "asm_other.go": absent} {
		var b strings.Builder
		if err := jf.Render(&b); err != nil {
			t.Fatal(err)
		}
		sources[name] = b.String()
	}
	support, err := SupportSource("netpkg")
	if err != nil {
		t.Fatal(err)
	}
	conv1x1, err := Conv1x1SupportSource("netpkg")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(conv1x1), Header+"\n") {
		t.Errorf("conv1x1 support source does not start with %q", Header)
	}
	sources["support.go"], sources["conv1x1_support.go"] = string(support), string(conv1x1)

	fset := token.NewFileSet()
	var files []*ast.File
	for name, src := range sources {
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		files = append(files, f)
		if name == "conv1x1_support.go" {
			for _, imp := range f.Imports {
				if p := strings.Trim(imp.Path.Value, `"`); strings.Contains(p, ".") {
					t.Errorf("conv1x1 support source imports %s", p)
				}
			}
		}
	}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	pkg, err := conf.Check("netpkg", fset, files, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Conv1x1Kernels", "Conv1x1DxKernels", "Conv1x1DwKernels", "PackConv1x1Weights", convs[0].Name(), convs[1].Name(), convs[2].Name()} {
		if pkg.Scope().Lookup(name) == nil {
			t.Errorf("the package lacks %s", name)
		}
	}
}

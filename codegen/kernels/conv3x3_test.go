package kernels

import (
	"go/parser"
	"go/token"
	"strings"
	"testing"

	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/pass"

	_ "github.com/resnetc/resnetc/internal/golden"
)

func TestValidate(t *testing.T) {
	ok := Conv3x3{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 2}
	if err := ok.Validate(); err != nil {
		t.Fatalf("%s: %v", ok.Name(), err)
	}
	for _, c := range []struct {
		edit func(*Conv3x3)
		want string
	}{
		{func(c *Conv3x3) { c.Cin = 12 }, "Cin=12 is not a multiple of 8"},
		{func(c *Conv3x3) { c.Cout = 0 }, "Cout=0, want 1.."},
		{func(c *Conv3x3) { c.N = -1 }, "N=-1"},
		{func(c *Conv3x3) { c.H = 0 }, "H=0"},
		{func(c *Conv3x3) { c.Stride = 3 }, "stride 3, want 1 or 2"},
		{func(c *Conv3x3) { c.Stride = 0 }, "stride 0"},
		{func(c *Conv3x3) { c.Prologue = 7 }, "unknown prologue 7"},
		{func(c *Conv3x3) { c.Unroll = 3 }, "unroll 3"},
		{func(c *Conv3x3) { c.H, c.W, c.Cin = 4096, 4096, 64 }, "one image of input takes"},
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
		ctx := build.NewContext()
		if err := bad.BuildAsm(ctx); err == nil {
			t.Errorf("%s: BuildAsm accepted an invalid kernel", bad.Name())
		}
	}
}

// TestPlanCovers checks, for every width and channel count of a range,
// that the plan covers every output-channel block once, splits each row
// exactly and evenly into the fewest tiles the registers allow, and never
// needs more than the 16 YMM registers.
func TestPlanCovers(t *testing.T) {
	for cout := 8; cout <= 96; cout += 8 {
		for w := 1; w <= 40; w++ {
			c := Conv3x3{N: 1, Cin: 8, Cout: cout, H: 3, W: w, Stride: 1}
			p := c.Plan()
			blocks := 0
			for _, g := range p.Groups {
				blocks += g.Blocks * g.Count
				if g.Blocks < 1 || g.Blocks > 4 || g.Count < 1 {
					t.Errorf("%s: group %+v", c.Name(), g)
				}
				width, tiles, lo, hi := 0, 0, w, 0
				for _, r := range g.Row {
					width += r.Pixels * r.Count
					tiles += r.Count
					lo, hi = min(lo, r.Pixels), max(hi, r.Pixels)
					if need := g.Blocks*r.Pixels + g.Blocks + 1; need > 16 {
						t.Errorf("%s: tile %dx%d needs %d YMM registers", c.Name(), g.Blocks, r.Pixels, need)
					}
				}
				if width != w {
					t.Errorf("%s: row split %v covers %d pixels, want %d", c.Name(), g.Row, width, w)
				}
				if hi-lo > 1 {
					t.Errorf("%s: row split %v is uneven", c.Name(), g.Row)
				}
				// The widest tile for this many blocks: (16-1-b)/b pixels.
				if fewest := (w + (15-g.Blocks)/g.Blocks - 1) / ((15 - g.Blocks) / g.Blocks); tiles != fewest {
					t.Errorf("%s: %d tiles per row, want %d", c.Name(), tiles, fewest)
				}
			}
			if blocks != cout/8 {
				t.Errorf("%s: plan %s covers %d output-channel blocks, want %d", c.Name(), p, blocks, cout/8)
			}
		}
	}
}

// TestPlanStages pins the tiles of the ResNet stage shapes, the choices
// the benchmarks measure: two blocks by five or six pixels (10-12
// accumulators) where the width allows, three blocks by four pixels at
// width 8.
func TestPlanStages(t *testing.T) {
	for _, c := range []struct {
		cin, cout, hw, stride int
		want                  string
	}{
		{16, 16, 32, 1, "1x2 blocks: row 2x6+4x5"},
		{32, 32, 16, 1, "2x2 blocks: row 1x6+2x5"},
		{64, 64, 8, 1, "2x3 blocks: row 2x4; 1x2 blocks: row 2x4"},
		{16, 32, 32, 2, "2x2 blocks: row 1x6+2x5"},
		{32, 64, 16, 2, "2x3 blocks: row 2x4; 1x2 blocks: row 2x4"},
	} {
		k := Conv3x3{N: 128, Cin: c.cin, Cout: c.cout, H: c.hw, W: c.hw, Stride: c.stride}
		if got := k.Plan().String(); got != c.want {
			t.Errorf("%s: plan %q, want %q", k.Name(), got, c.want)
		}
	}
}

func TestNames(t *testing.T) {
	seen := map[string]Conv3x3{}
	base := Conv3x3{N: 1, Cin: 8, Cout: 8, H: 3, W: 3, Stride: 1}
	for _, p := range Prologues {
		for e := range 16 {
			for _, u := range []int{0, 1, 2, 8} {
				c := base
				c.Prologue, c.Unroll = p, u
				c.Bias, c.Residual, c.ReLU, c.Stats = e&1 != 0, e&2 != 0, e&4 != 0, e&8 != 0
				if prev, dup := seen[c.Name()]; dup {
					t.Fatalf("%+v and %+v are both named %s", prev, c, c.Name())
				}
				seen[c.Name()] = c
				if !token.IsIdentifier(c.Name()) || !token.IsExported(c.Name()) || !token.IsIdentifier(c.asmName()) {
					t.Errorf("%s: not an exported identifier", c.Name())
				}
			}
		}
	}
	if got := (Conv3x3{N: 128, Cin: 16, Cout: 32, H: 32, W: 32, Stride: 2, Prologue: PrologueAffineReLU, Stats: true}).Name(); got != "Conv3x3N128C16K32H32W32S2InAffineReluStats" {
		t.Errorf("Name() = %s", got)
	}
}

func TestSupportSource(t *testing.T) {
	src, err := SupportSource("netpkg")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(src), Header+"\n") {
		t.Errorf("support source does not start with %q", Header)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "support.go", src, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name.Name != "netpkg" {
		t.Errorf("package %s, want netpkg", f.Name.Name)
	}
	for _, imp := range f.Imports {
		if p := strings.Trim(imp.Path.Value, `"`); strings.Contains(p, ".") {
			t.Errorf("support source imports %s: generated packages take only the standard library from it", p)
		}
	}
}

// TestBuildAsm builds kernels covering every plan shape and flag into one
// file and checks that avo compiles it (register allocation included).
func TestBuildAsm(t *testing.T) {
	ctx := build.NewContext()
	BuildPeak(ctx)
	for _, c := range []Conv3x3{
		{N: 1, Cin: 8, Cout: 8, H: 1, W: 1, Stride: 1},
		{N: 2, Cin: 24, Cout: 40, H: 9, W: 30, Stride: 2, Prologue: PrologueAffineReLU, Bias: true, Residual: true, ReLU: true, Stats: true},
		{N: 1, Cin: 64, Cout: 96, H: 8, W: 8, Stride: 1, Unroll: 8, Prologue: PrologueReLU, Stats: true},
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

func TestEmitGoRejects(t *testing.T) {
	good := Conv3x3{N: 1, Cin: 8, Cout: 8, H: 3, W: 3, Stride: 1}
	bad := good
	bad.Cin = 4
	for name, set := range map[string][]Conv3x3{
		"duplicate": {good, good},
		"invalid":   {good, bad},
	} {
		if err := EmitGo(NewFile("p", ""), set); err == nil {
			t.Errorf("%s: EmitGo accepted %v", name, set)
		}
	}
	if err := EmitGo(NewFile("p", ""), []Conv3x3{good}); err != nil {
		t.Error(err)
	}
}

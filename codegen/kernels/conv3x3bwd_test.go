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

func TestBwdValidate(t *testing.T) {
	dx := Conv3x3Dx{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 2}
	dw := Conv3x3Dw{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 2, Prologue: PrologueReLU}
	if err := dx.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := dw.Validate(); err != nil {
		t.Fatal(err)
	}
	type kernel interface {
		Validate() error
		Name() string
		BuildAsm(*build.Context) error
	}
	for _, c := range []struct {
		k    kernel
		want string
	}{
		{Conv3x3Dx{N: 2, Cin: 12, Cout: 24, H: 7, W: 5, Stride: 2}, "Cin=12 is not a multiple of 8"},
		{Conv3x3Dx{N: 2, Cin: 16, Cout: 24, H: 0, W: 5, Stride: 2}, "H=0"},
		{Conv3x3Dx{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 3}, "stride 3, want 1 or 2"},
		{Conv3x3Dx{N: 2, Cin: 64, Cout: 8, H: 4096, W: 4096, Stride: 1}, "one image of dx takes"},
		{Conv3x3Dw{N: 2, Cin: 16, Cout: 20, H: 7, W: 5, Stride: 2}, "Cout=20 is not a multiple of 8"},
		{Conv3x3Dw{N: 0, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 1}, "N=0"},
		{Conv3x3Dw{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 1, Prologue: 9}, "unknown prologue 9"},
		{Conv3x3Dw{N: 2, Cin: 64, Cout: 8, H: 4096, W: 4096, Stride: 1}, "one image of input takes"},
	} {
		err := c.k.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: Validate() = %v, want an error containing %q", c.k, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.k.Name()) {
			t.Errorf("error %q does not name the kernel %s", err, c.k.Name())
		}
		if err := c.k.BuildAsm(build.NewContext()); err == nil {
			t.Errorf("%s: BuildAsm accepted an invalid kernel", c.k.Name())
		}
	}
}

// TestDxPhases checks the stride-2 phases against the definition of
// conv2d_dx: for every dx pixel of a range of sizes, the (dy pixel, tap)
// pairs its phase's taps name, dropping those that fall on dy's zero
// border, are exactly the pairs with h = oh*2-1+kh and w = ow*2-1+kw; the
// phases cover every pixel once, read only inside the padded dy, and
// their plans cover their columns.
func TestDxPhases(t *testing.T) {
	for h := 1; h <= 9; h++ {
		for w := 1; w <= 9; w++ {
			d := Conv3x3Dx{N: 1, Cin: 24, Cout: 16, H: h, W: w, Stride: 2}
			oh, ow := d.OutH(), d.OutW()
			covered := make([]int, h*w)
			for _, p := range d.Phases() {
				if p.Rows != (h-p.PH+1)/2 || p.Cols != (w-p.PW+1)/2 || p.Rows == 0 || p.Cols == 0 {
					t.Errorf("%s: phase %+v", d.Name(), p)
				}
				for _, g := range p.Plan.Groups {
					width := 0
					for _, r := range g.Row {
						width += r.Pixels * r.Count
					}
					if width != p.Cols {
						t.Errorf("%s: phase %d%d plan %s covers %d of %d columns", d.Name(), p.PH, p.PW, p.Plan, width, p.Cols)
					}
				}
				for a := range p.Rows {
					for b := range p.Cols {
						y, x := 2*a+p.PH, 2*b+p.PW
						covered[y*w+x]++
						got := map[[4]int]bool{}
						for _, tp := range p.Taps {
							r, c := a+1+tp.DR, b+1+tp.DC // padded dy
							if r < 0 || r > oh+1 || c < 0 || c > ow+1 {
								t.Fatalf("%s: pixel (%d,%d) reads padded dy (%d,%d) outside [0,%d]x[0,%d]", d.Name(), y, x, r, c, oh+1, ow+1)
							}
							if r >= 1 && r <= oh && c >= 1 && c <= ow {
								got[[4]int{r - 1, c - 1, 2 - tp.K/3, 2 - tp.K%3}] = true
							}
						}
						want := map[[4]int]bool{}
						for i := range oh {
							for j := range ow {
								for kh := range 3 {
									for kw := range 3 {
										if i*2-1+kh == y && j*2-1+kw == x {
											want[[4]int{i, j, kh, kw}] = true
										}
									}
								}
							}
						}
						if len(got) != len(want) {
							t.Fatalf("%s: pixel (%d,%d): taps %v, want %v", d.Name(), y, x, got, want)
						}
						for k := range want {
							if !got[k] {
								t.Fatalf("%s: pixel (%d,%d): taps %v, want %v", d.Name(), y, x, got, want)
							}
						}
					}
				}
			}
			for i, n := range covered {
				if n != 1 {
					t.Fatalf("%s: pixel (%d,%d) is in %d phases", d.Name(), i/w, i%w, n)
				}
			}
		}
	}
	if ps := (Conv3x3Dx{N: 1, Cin: 8, Cout: 8, H: 4, W: 4, Stride: 1}).Phases(); ps != nil {
		t.Errorf("stride 1 has phases %v", ps)
	}
}

// TestDxStride1IsForward pins the stride-1 backward-data kernel to the
// forward kernel's plan for dy's channels in and dx's out.
func TestDxStride1IsForward(t *testing.T) {
	d := Conv3x3Dx{N: 128, Cin: 16, Cout: 32, H: 16, W: 16, Stride: 1}
	f := Conv3x3{N: 128, Cin: 32, Cout: 16, H: 16, W: 16, Stride: 1}
	if d.Tiles() != f.Plan().String() || d.ScratchLen() != f.ScratchLen() {
		t.Errorf("%s: tiles %q scratch %d, want the forward %s's %q and %d", d.Name(), d.Tiles(), d.ScratchLen(), f.Name(), f.Plan(), f.ScratchLen())
	}
}

func TestBwdNames(t *testing.T) {
	seen := map[string]bool{}
	add := func(name, asm, twin string) {
		for _, n := range []string{name, asm, twin} {
			if seen[n] {
				t.Fatalf("%s named twice", n)
			}
			seen[n] = true
			if !token.IsIdentifier(n) {
				t.Errorf("%s is not an identifier", n)
			}
		}
		if !token.IsExported(name) {
			t.Errorf("%s is not exported", name)
		}
	}
	for _, s := range []int{1, 2} {
		add(Conv3x3Dx{N: 1, Cin: 8, Cout: 16, H: 3, W: 3, Stride: s}.Name(),
			Conv3x3Dx{N: 1, Cin: 8, Cout: 16, H: 3, W: 3, Stride: s}.asmName(),
			Conv3x3Dx{N: 1, Cin: 8, Cout: 16, H: 3, W: 3, Stride: s}.goName())
		for _, p := range Prologues {
			d := Conv3x3Dw{N: 1, Cin: 8, Cout: 16, H: 3, W: 3, Stride: s, Prologue: p}
			add(d.Name(), d.asmName(), d.goName())
		}
		c := Conv3x3{N: 1, Cin: 8, Cout: 16, H: 3, W: 3, Stride: s}
		add(c.Name(), c.asmName(), c.goName())
	}
	if got := (Conv3x3Dw{N: 128, Cin: 16, Cout: 32, H: 32, W: 32, Stride: 2, Prologue: PrologueAffineReLU}).Name(); got != "Conv3x3DwN128C16K32H32W32S2InAffineRelu" {
		t.Errorf("Name() = %s", got)
	}
}

// TestBwdBuildAsm builds backward kernels covering both strides, empty
// phases, every prologue and rows with and without whole chunks into one
// file and checks that avo compiles it (register allocation included).
func TestBwdBuildAsm(t *testing.T) {
	ctx := build.NewContext()
	for _, d := range []Conv3x3Dx{
		{N: 1, Cin: 8, Cout: 8, H: 1, W: 1, Stride: 1},
		{N: 1, Cin: 8, Cout: 8, H: 1, W: 1, Stride: 2},
		{N: 2, Cin: 40, Cout: 24, H: 9, W: 30, Stride: 2},
		{N: 1, Cin: 64, Cout: 96, H: 8, W: 8, Stride: 1},
	} {
		if err := d.BuildAsm(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []Conv3x3Dw{
		{N: 1, Cin: 8, Cout: 8, H: 1, W: 1, Stride: 1},
		{N: 2, Cin: 24, Cout: 40, H: 9, W: 30, Stride: 2, Prologue: PrologueAffineReLU},
		{N: 1, Cin: 64, Cout: 96, H: 8, W: 12, Stride: 1, Prologue: PrologueReLU},
	} {
		if err := d.BuildAsm(ctx); err != nil {
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

func TestEmitBwdGoRejects(t *testing.T) {
	dx := Conv3x3Dx{N: 1, Cin: 8, Cout: 8, H: 3, W: 3, Stride: 1}
	dw := Conv3x3Dw{N: 1, Cin: 8, Cout: 8, H: 3, W: 3, Stride: 1}
	badDx, badDw := dx, dw
	badDx.Cin, badDw.Stride = 4, 0
	for name, set := range map[string]struct {
		dxs []Conv3x3Dx
		dws []Conv3x3Dw
	}{
		"duplicate dx": {dxs: []Conv3x3Dx{dx, dx}},
		"duplicate dw": {dws: []Conv3x3Dw{dw, dw}},
		"invalid dx":   {dxs: []Conv3x3Dx{badDx}},
		"invalid dw":   {dxs: []Conv3x3Dx{dx}, dws: []Conv3x3Dw{badDw}},
	} {
		if err := EmitBwdGo(NewFile("p", ""), set.dxs, set.dws); err == nil {
			t.Errorf("%s: EmitBwdGo accepted %v", name, set)
		}
	}
	if err := EmitBwdGo(NewFile("p", ""), []Conv3x3Dx{dx}, []Conv3x3Dw{dw}); err != nil {
		t.Error(err)
	}
}

func TestSupportBwdSource(t *testing.T) {
	src, err := SupportBwdSource("netpkg")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(src), Header+"\n") {
		t.Errorf("support source does not start with %q", Header)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "support_bwd.go", src, parser.ImportsOnly)
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

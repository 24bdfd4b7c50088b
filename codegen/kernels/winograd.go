package kernels

import (
	_ "embed"
	"errors"
	"fmt"
	"go/format"
	"strings"

	"github.com/dave/jennifer/jen"
)

// Winograd describes one shape-specialized Winograd F(4x4, 3x3) kernel: a
// 3x3 convolution with stride 1 and pad 1 on NCHW8c activations, with the
// forward 3x3 kernel's prologue and epilogue. Its weights are packed by PackWinogradWeights (the 36
// transformed matrices, each in the 1x1 layout); its products are 36
// GEMMs run by the forward 1x1 kernel GEMM() describes, which the
// package must hold too; its input and output transforms are the
// shape-generic assembly of BuildWinogradTransforms. The pure-Go
// support code is package gosrc's winograd.go (WinogradSupportSource).
type Winograd struct {
	N, Cin, Cout, H, W int

	Prologue Prologue
	Bias     bool
	Residual bool
	ReLU     bool
	Stats    bool // per-image Σy and Σy² for the next BatchNorm, as the direct kernel's
}

//go:embed gosrc/winograd.go
var winogradSource string

// WinogradSupportSource returns the shape-generic Go of the Winograd
// kernels (package gosrc's winograd.go) as a file of package pkg. It goes
// beside SupportSource's file, whose Conv3x3Func and relu32 it uses.
func WinogradSupportSource(pkg string) ([]byte, error) {
	const clause = "package gosrc\n"
	if !strings.HasPrefix(winogradSource, clause) {
		return nil, fmt.Errorf("winograd.go does not start with %q", clause)
	}
	out, err := format.Source([]byte(Header + "\n\npackage " + pkg + "\n" + winogradSource[len(clause):]))
	if err != nil {
		return nil, fmt.Errorf("winograd support source: %w", err)
	}
	return out, nil
}

// winoMinTiles is the fewest columns a Winograd kernel's GEMMs have:
// images are transformed in groups until their tiles reach it, so that
// small images (8x8 has four tiles) still make GEMMs long enough to run
// near the 1x1 kernel's best rate, while the group's transformed inputs
// and products stay in L2.
const winoMinTiles = 32

// winoXiPad is gosrc's WinoXiPad: the float32s between two points'
// matrices in the scratch beyond their length.
const winoXiPad = 16

// Validate reports why c cannot be generated, or nil.
func (c Winograd) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("winograd %s: "+format, append([]any{c.Name()}, args...)...))
	}
	checkDims(bad, c.N, c.Cin, c.Cout, c.H, c.W, 1)
	if c.Prologue < PrologueNone || c.Prologue > PrologueAffineReLU {
		bad("unknown prologue %d", int(c.Prologue))
	}
	if len(errs) == 0 {
		checkBytes(bad, []sizedPart{
			{"the scratch", int64(c.ScratchLen()) * 4},
			{"the packed weights", int64(c.WLen()) * 4},
		})
		if err := c.GEMM().Validate(); err != nil {
			bad("its GEMM: %v", err)
		}
	}
	return errors.Join(errs...)
}

// tiles returns the 4x4 output tiles down and across an image.
func (c Winograd) tiles() (th, tw int) { return (c.H + 3) / 4, (c.W + 3) / 4 }

// Group is the number of images transformed together: the fewest whose
// tiles reach winoMinTiles, at most N.
func (c Winograd) Group() int {
	th, tw := c.tiles()
	return min(c.N, max(1, (winoMinTiles+th*tw-1)/(th*tw)))
}

// Tiles is the columns of each of the kernel's GEMMs.
func (c Winograd) Tiles() int {
	th, tw := c.tiles()
	return c.Group() * th * tw
}

// GEMM is the forward 1x1 kernel that multiplies one point's transformed
// inputs, Cin channels by Tiles pixels, by its transformed weights.
func (c Winograd) GEMM() Conv1x1 {
	return Conv1x1{Op: Conv1x1Fwd, N: 1, Cin: c.Cin, Cout: c.Cout, H: 1, W: c.Tiles(), Stride: 1}
}

// ScratchLen is the float32 length of the scratch each concurrent call
// needs (gosrc's WinogradShape.ScratchLen).
func (c Winograd) ScratchLen() int {
	th, tw := c.tiles()
	return c.Group()*c.Cin*(4*th+2)*(4*tw+2) + 36*(c.Tiles()*(c.Cin+c.Cout)+2*winoXiPad) + 16
}

// WLen is the float32 length of the packed weights: 36 matrices.
func (c Winograd) WLen() int { return 36 * c.Cin * c.Cout }

// FLOPs is the work of the direct convolution the kernel computes, two
// per multiply-add.
func (c Winograd) FLOPs() float64 {
	return 2 * float64(c.N) * float64(c.Cout) * float64(c.H*c.W) * float64(c.Cin) * 9
}

// Name is the kernel's exported Go name, spelled like the 3x3 kernels'
// (without a stride: it is always 1): Winograd3x3N128C16K16H32W32BiasRelu.
func (c Winograd) Name() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Winograd3x3N%dC%dK%dH%dW%d", c.N, c.Cin, c.Cout, c.H, c.W)
	switch c.Prologue {
	case PrologueReLU:
		b.WriteString("InRelu")
	case PrologueAffineReLU:
		b.WriteString("InAffineRelu")
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{c.Bias, "Bias"}, {c.Residual, "Res"}, {c.ReLU, "Relu"}, {c.Stats, "Stats"}} {
		if f.on {
			b.WriteString(f.name)
		}
	}
	return b.String()
}

// goName is the unexported name of the kernel run on the twins only.
func (c Winograd) goName() string {
	return "winograd3x3" + strings.TrimPrefix(c.Name(), "Winograd3x3") + "Go"
}

// shapeVar is the generated name of c's WinogradShape.
func (c Winograd) shapeVar() string { return "shape" + c.Name() }

// EmitWinogradGo writes, for each kernel, its shape, its exported
// function (transforms and GEMM in assembly when useAsm, else their
// twins), its twin, and its entry in WinogradKernels; and the table of
// the assembly transforms. Each kernel's GEMM must be among the
// package's 1x1 kernels.
func EmitWinogradGo(f *jen.File, ws []Winograd) error {
	seen := map[string]bool{}
	for _, c := range ws {
		if err := c.Validate(); err != nil {
			return err
		}
		if seen[c.Name()] {
			return fmt.Errorf("winograd %s listed twice", c.Name())
		}
		seen[c.Name()] = true
	}
	f.Comment("winoTransformsAsm are the assembly transforms of the Winograd kernels.")
	f.Var().Id("winoTransformsAsm").Op("=").Id("winoTransforms").Values(
		jen.Id(winoAsmCopyRow), jen.Id(winoAsmInRow), jen.Id(winoAsmOutRow))
	var table []jen.Code
	for _, c := range ws {
		th, tw := c.tiles()
		d := jen.Dict{
			jen.Id("Name"):  jen.Lit(c.Name()),
			jen.Id("N"):     jen.Lit(c.N),
			jen.Id("Cin"):   jen.Lit(c.Cin),
			jen.Id("Cout"):  jen.Lit(c.Cout),
			jen.Id("H"):     jen.Lit(c.H),
			jen.Id("W"):     jen.Lit(c.W),
			jen.Id("Group"): jen.Lit(c.Group()),
		}
		if c.Prologue != PrologueNone {
			d[jen.Id("Prologue")] = jen.Lit(c.Prologue.String())
		}
		for _, fl := range []struct {
			on   bool
			name string
		}{{c.Bias, "Bias"}, {c.Residual, "Residual"}, {c.ReLU, "ReLU"}, {c.Stats, "Stats"}} {
			if fl.on {
				d[jen.Id(fl.name)] = jen.True()
			}
		}
		g := c.GEMM()
		f.Comment(fmt.Sprintf("%s is the shape of %s: %d images of %dx%d tiles per group, GEMMs of %d columns.",
			c.shapeVar(), c.Name(), c.Group(), th, tw, c.Tiles()))
		f.Var().Id(c.shapeVar()).Op("=").Id("WinogradShape").Values(d)
		f.Comment(fmt.Sprintf("%s is a 3x3 convolution (stride 1, pad 1) by Winograd F(4x4, 3x3): its", c.Name()))
		f.Comment(fmt.Sprintf("products are 36 GEMMs of %s, which with its transforms runs its", g.Name()))
		f.Comment("assembly when useAsm (winograd gives the GEMM exactly its operands, so it skips")
		f.Comment("the exported function's checks).")
		f.Func().Id(c.Name()).Params(convParams()...).Block(
			jen.If(jen.Id("useAsm")).Block(
				jen.Id("winograd").Call(jen.Op("&").Id(c.shapeVar()), jen.Op("&").Id("winoTransformsAsm"), jen.Id(g.asmName()),
					jen.Id("x"), jen.Id("w"), jen.Id("bias"), jen.Id("scale"), jen.Id("shift"), jen.Id("res"), jen.Id("y"),
					jen.Id("stats"), jen.Id("scratch"), jen.Id("n0"), jen.Id("n1")),
				jen.Return(),
			),
			jen.Id(c.goName()).Call(convArgs()...),
		)
		f.Comment(fmt.Sprintf("%s runs %s on the pure-Go twins of its transforms and GEMM.", c.goName(), c.Name()))
		f.Func().Id(c.goName()).Params(convParams()...).Block(
			jen.Id("winograd").Call(jen.Op("&").Id(c.shapeVar()), jen.Op("&").Id("winoTransformsGo"), jen.Id(g.goName()),
				jen.Id("x"), jen.Id("w"), jen.Id("bias"), jen.Id("scale"), jen.Id("shift"), jen.Id("res"), jen.Id("y"),
				jen.Id("stats"), jen.Id("scratch"), jen.Id("n0"), jen.Id("n1")),
		)
		table = append(table, jen.Values(jen.Dict{
			jen.Id("WinogradShape"): jen.Id(c.shapeVar()),
			jen.Id("Run"):           jen.Id(c.Name()),
			jen.Id("Go"):            jen.Id(c.goName()),
		}))
	}
	f.Comment("WinogradKernels lists the package's Winograd kernels, for tests and benchmarks.")
	f.Var().Id("WinogradKernels").Op("=").Index().Id("WinogradKernel").Values(table...)
	return nil
}

// EmitWinogradAsmAbsent writes nil stand-ins for the transforms'
// assembly in the builds without it.
func EmitWinogradAsmAbsent(f *jen.File) {
	f.Comment("The Winograd transforms' assembly, nil in this build.")
	f.Var().Defs(
		jen.Id(winoAsmCopyRow).Func().Params(jen.List(jen.Id("dst"), jen.Id("src"), jen.Id("scale"), jen.Id("shift")).Index().Float32(), jen.Id("mode").Int()),
		jen.Id(winoAsmInRow).Func().Params(jen.List(jen.Id("src"), jen.Id("dst")).Index().Float32(), jen.List(jen.Id("tiles"), jen.Id("rowStride"), jen.Id("xiStride")).Int()),
		jen.Id(winoAsmOutRow).Func().Params(jen.List(jen.Id("m"), jen.Id("y"), jen.Id("bias"), jen.Id("res"), jen.Id("sums")).Index().Float32(), jen.List(jen.Id("tiles"), jen.Id("xiStride"), jen.Id("rowStride"), jen.Id("flags")).Int()),
	)
}

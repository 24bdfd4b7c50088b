package kernels

import (
	_ "embed"
	"fmt"
	"go/format"
	"strings"

	"github.com/dave/jennifer/jen"
)

//go:embed gosrc/conv3x3bwd.go
var gosrcBwdSource string

// SupportBwdSource returns the shape-generic Go of the backward kernels
// (package gosrc's conv3x3bwd.go: their shapes, twins, weight packing and
// partial-sum reduction) as a file of package pkg. It builds on
// SupportSource, which a package holding backward kernels carries too.
func SupportBwdSource(pkg string) ([]byte, error) {
	const clause = "package gosrc\n"
	if !strings.HasPrefix(gosrcBwdSource, clause) {
		return nil, fmt.Errorf("conv3x3bwd.go does not start with %q", clause)
	}
	src := Header + "\n\npackage " + pkg + "\n" + gosrcBwdSource[len(clause):]
	return format.Source([]byte(src))
}

// sliceParams is a parameter list of float32 slices followed by n0 and
// n1 int, as every conv kernel signature is.
func sliceParams(params []string) []jen.Code {
	var names []jen.Code
	for _, p := range params[:len(params)-2] {
		names = append(names, jen.Id(p))
	}
	return []jen.Code{jen.List(names...).Index().Float32(), jen.List(jen.Id("n0"), jen.Id("n1")).Int()}
}

// idents passes every parameter on, in order.
func idents(params []string) []jen.Code {
	var args []jen.Code
	for _, p := range params {
		args = append(args, jen.Id(p))
	}
	return args
}

// EmitBwdGo writes the Go half of the backward kernels of a package that
// EmitGo also writes into (it relies on EmitGo's dispatch): for each
// kernel its shape, its exported function (argument check, then assembly
// or twin) and its twin, and the tables Conv3x3DxKernels and
// Conv3x3DwKernels. The shape-generic code they call is SupportBwdSource.
func EmitBwdGo(f *jen.File, dxs []Conv3x3Dx, dws []Conv3x3Dw) error {
	seen := map[string]bool{}
	for _, d := range dxs {
		if err := d.Validate(); err != nil {
			return err
		}
		if seen[d.Name()] {
			return fmt.Errorf("conv3x3 dx %s listed twice", d.Name())
		}
		seen[d.Name()] = true
	}
	for _, d := range dws {
		if err := d.Validate(); err != nil {
			return err
		}
		if seen[d.Name()] {
			return fmt.Errorf("conv3x3 dw %s listed twice", d.Name())
		}
		seen[d.Name()] = true
	}
	var dxTable, dwTable []jen.Code
	for _, d := range dxs {
		emitDx(f, d)
		dxTable = append(dxTable, kernelEntry("Conv3x3DxShape", "shape"+d.Name(), d.Name(), d.goName(), d.asmName()))
	}
	for _, d := range dws {
		emitDw(f, d)
		dwTable = append(dwTable, kernelEntry("Conv3x3DwShape", "shape"+d.Name(), d.Name(), d.goName(), d.asmName()))
	}
	f.Comment("Conv3x3DxKernels lists the package's 3x3 backward-data kernels, for tests and benchmarks.")
	f.Var().Id("Conv3x3DxKernels").Op("=").Index().Id("Conv3x3DxKernel").Values(dxTable...)
	f.Line()
	f.Comment("Conv3x3DwKernels lists the package's 3x3 backward-weights kernels, for tests and benchmarks.")
	f.Var().Id("Conv3x3DwKernels").Op("=").Index().Id("Conv3x3DwKernel").Values(dwTable...)
	return nil
}

// kernelEntry is one element of a kernel table.
func kernelEntry(shapeType, shapeVar, run, twin, asm string) jen.Code {
	return jen.Values(jen.Dict{
		jen.Id(shapeType): jen.Id(shapeVar),
		jen.Id("Run"):     jen.Id(run),
		jen.Id("Go"):      jen.Id(twin),
		jen.Id("Asm"):     jen.Id(asm),
	})
}

// EmitBwdAsmAbsent writes the nil stand-ins of the backward kernels'
// assembly into the file EmitAsmAbsent writes (NoAsmConstraint).
func EmitBwdAsmAbsent(f *jen.File, dxs []Conv3x3Dx, dws []Conv3x3Dw) {
	var defs []jen.Code
	for _, d := range dxs {
		defs = append(defs, jen.Id(d.asmName()).Id("Conv3x3DxFunc"))
	}
	for _, d := range dws {
		defs = append(defs, jen.Id(d.asmName()).Id("Conv3x3DwFunc"))
	}
	if len(defs) == 0 {
		return
	}
	f.Comment("The backward kernels' assembly, nil in this build.")
	f.Var().Defs(defs...)
}

// emitKernel writes a kernel's exported function, which checks its
// arguments and runs the assembly or the twin, and the twin, which calls
// the shape-generic Go.
func emitKernel(f *jen.File, name, asmName, goName, shapeVar, check, generic string, params []string, doc string) {
	for _, line := range strings.Split(doc, "\n") {
		f.Comment(line)
	}
	shape := jen.Op("&").Id(shapeVar)
	f.Func().Id(name).Params(sliceParams(params)...).Block(
		jen.Id(check).Call(append([]jen.Code{shape}, idents(params)...)...),
		jen.If(jen.Id("useAsm")).Block(
			jen.Id(asmName).Call(idents(params)...),
			jen.Return(),
		),
		jen.Id(goName).Call(idents(params)...),
	)
	f.Line()
	f.Comment(goName + " is the pure-Go twin of " + asmName + ".")
	f.Func().Id(goName).Params(sliceParams(params)...).Block(
		jen.Id(generic).Call(append([]jen.Code{shape}, idents(params)...)...),
	)
	f.Line()
}

// emitDx writes d's shape, exported function and twin.
func emitDx(f *jen.File, d Conv3x3Dx) {
	shapeVar := "shape" + d.Name()
	f.Comment(shapeVar + " is the shape of " + d.Name() + ".")
	f.Var().Id(shapeVar).Op("=").Id("Conv3x3DxShape").Values(jen.Dict{
		jen.Id("Name"):   jen.Lit(d.Name()),
		jen.Id("N"):      jen.Lit(d.N),
		jen.Id("Cin"):    jen.Lit(d.Cin),
		jen.Id("Cout"):   jen.Lit(d.Cout),
		jen.Id("H"):      jen.Lit(d.H),
		jen.Id("W"):      jen.Lit(d.W),
		jen.Id("Stride"): jen.Lit(d.Stride),
		jen.Id("OutH"):   jen.Lit(d.OutH()),
		jen.Id("OutW"):   jen.Lit(d.OutW()),
		jen.Id("Tiles"):  jen.Lit(d.Tiles()),
	})
	f.Line()
	doc := fmt.Sprintf("%s is conv2d_dx{stride=%d, pad=1, in_h=%d, in_w=%d} of dy f32[%d,%d,%d,%d]@nchw8c\n"+
		"and weights f32[%d,%d,3,3] packed by PackConv3x3DxWeights into dx f32[%d,%d,%d,%d]@nchw8c,\n"+
		"for images [n0, n1).",
		d.Name(), d.Stride, d.H, d.W, d.N, d.Cout, d.OutH(), d.OutW(), d.Cout, d.Cin, d.N, d.Cin, d.H, d.W)
	emitKernel(f, d.Name(), d.asmName(), d.goName(), shapeVar, "checkConv3x3Dx", "conv3x3DxGo", Conv3x3DxParams, doc)
}

// emitDw writes d's shape, exported function and twin.
func emitDw(f *jen.File, d Conv3x3Dw) {
	shapeVar := "shape" + d.Name()
	f.Comment(shapeVar + " is the shape of " + d.Name() + ".")
	f.Var().Id(shapeVar).Op("=").Id("Conv3x3DwShape").Values(jen.Dict{
		jen.Id("Name"):     jen.Lit(d.Name()),
		jen.Id("N"):        jen.Lit(d.N),
		jen.Id("Cin"):      jen.Lit(d.Cin),
		jen.Id("Cout"):     jen.Lit(d.Cout),
		jen.Id("H"):        jen.Lit(d.H),
		jen.Id("W"):        jen.Lit(d.W),
		jen.Id("Stride"):   jen.Lit(d.Stride),
		jen.Id("OutH"):     jen.Lit(d.OutH()),
		jen.Id("OutW"):     jen.Lit(d.OutW()),
		jen.Id("Prologue"): jen.Lit(d.Prologue.String()),
	})
	f.Line()
	op := "conv2d_dw"
	attrs := fmt.Sprintf("stride=%d, pad=1, kernel=3", d.Stride)
	if d.Prologue != PrologueNone {
		op = "conv2d_dw_fused"
		attrs += ", prologue=" + d.Prologue.String()
	}
	doc := fmt.Sprintf("%s is %s{%s} of dy f32[%d,%d,%d,%d]@nchw8c\n"+
		"and x f32[%d,%d,%d,%d]@nchw8c: it adds the weight gradient f32[%d,%d,3,3] of images\n"+
		"[n0, n1) into the partial dw, laid out OIhw8o8i (see SumConv3x3Dw).",
		d.Name(), op, attrs, d.N, d.Cout, d.OutH(), d.OutW(), d.N, d.Cin, d.H, d.W, d.Cout, d.Cin)
	emitKernel(f, d.Name(), d.asmName(), d.goName(), shapeVar, "checkConv3x3Dw", "conv3x3DwGo", Conv3x3DwParams, doc)
}

package kernels

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/dave/jennifer/jen"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/pass"
	"github.com/mmcloughlin/avo/printer"
)

// Set is the kernels of one generated package.
type Set struct {
	Convs    []Conv3x3
	Dxs      []Conv3x3Dx
	Dws      []Conv3x3Dw
	Conv1x1s []Conv1x1 // forward, backward-data and backward-weights
	// Winograds are inference's stride-1 3x3 convolutions by Winograd
	// F(4x4, 3x3); each one's GEMM must be among Conv1x1s.
	Winograds []Winograd
}

// Render returns the files of package pkg that hold the set, by name:
// the assembly (kernels_amd64.s) and its stubs (kernels_amd64.go), the
// Go dispatch and twins (kernels.go, kernels_bwd.go, kernels_1x1.go), the shape-generic
// support code (support.go, support_bwd.go, support_1x1.go) and the files that say
// whether the build has the assembly (asm_amd64.go, asm_other.go). The
// FMA peak loop is always included. A set with Winograd kernels adds
// their Go (kernels_winograd.go, support_winograd.go) and the
// transforms' assembly.
func (s Set) Render(pkg string) (map[string][]byte, error) {
	files := map[string][]byte{}

	ctx := build.NewContext()
	ctx.ConstraintExpr("amd64,!purego") // AsmConstraint in +build syntax
	BuildPeak(ctx)
	for _, c := range s.Convs {
		if err := c.BuildAsm(ctx); err != nil {
			return nil, err
		}
	}
	for _, d := range s.Dxs {
		if err := d.BuildAsm(ctx); err != nil {
			return nil, err
		}
	}
	for _, d := range s.Dws {
		if err := d.BuildAsm(ctx); err != nil {
			return nil, err
		}
	}
	for _, c := range s.Conv1x1s {
		if err := c.BuildAsm(ctx); err != nil {
			return nil, err
		}
	}
	if len(s.Winograds) > 0 {
		for _, c := range s.Winograds {
			if !slices.Contains(s.Conv1x1s, c.GEMM()) {
				return nil, fmt.Errorf("winograd %s: its GEMM %s is not among the 1x1 kernels", c.Name(), c.GEMM().Name())
			}
		}
		BuildWinogradTransforms(ctx)
	}
	f, err := ctx.Result()
	if err != nil {
		return nil, err
	}
	if err := pass.Compile.Execute(f); err != nil {
		return nil, err
	}
	cfg := printer.Config{Name: "resnetc", Pkg: pkg}
	if files["kernels_amd64.s"], err = printer.NewGoAsm(cfg).Print(f); err != nil {
		return nil, err
	}
	if files["kernels_amd64.go"], err = printer.NewStubs(cfg).Print(f); err != nil {
		return nil, err
	}

	if files["support.go"], err = SupportSource(pkg); err != nil {
		return nil, err
	}
	if files["support_bwd.go"], err = SupportBwdSource(pkg); err != nil {
		return nil, err
	}
	if files["support_1x1.go"], err = Conv1x1SupportSource(pkg); err != nil {
		return nil, err
	}
	kf := NewFile(pkg, "")
	if err := EmitGo(kf, s.Convs); err != nil {
		return nil, err
	}
	bf := NewFile(pkg, "")
	if err := EmitBwdGo(bf, s.Dxs, s.Dws); err != nil {
		return nil, err
	}
	gf := NewFile(pkg, "")
	if err := EmitConv1x1Go(gf, s.Conv1x1s); err != nil {
		return nil, err
	}
	if len(s.Winograds) > 0 {
		if files["support_winograd.go"], err = WinogradSupportSource(pkg); err != nil {
			return nil, err
		}
		wf := NewFile(pkg, "")
		if err := EmitWinogradGo(wf, s.Winograds); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := wf.Render(&buf); err != nil {
			return nil, fmt.Errorf("kernels_winograd.go: %w", err)
		}
		files["kernels_winograd.go"] = buf.Bytes()
	}
	present := NewFile(pkg, AsmConstraint)
	EmitAsmPresent(present)
	absent := NewFile(pkg, NoAsmConstraint)
	EmitAsmAbsent(absent, s.Convs)
	EmitBwdAsmAbsent(absent, s.Dxs, s.Dws)
	EmitConv1x1AsmAbsent(absent, s.Conv1x1s)
	if len(s.Winograds) > 0 {
		EmitWinogradAsmAbsent(absent)
	}
	for name, jf := range map[string]*jen.File{"kernels.go": kf, "kernels_bwd.go": bf, "kernels_1x1.go": gf, "asm_amd64.go": present, "asm_other.go": absent} {
		var buf bytes.Buffer
		if err := jf.Render(&buf); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		files[name] = buf.Bytes()
	}
	return files, nil
}

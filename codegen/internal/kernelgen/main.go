// Command kernelgen writes the kernel benchmark package gen/kernelbench:
// the peak FMA loop and a set of shape-specialized 3x3 conv kernels,
// forward, backward-data and backward-weights (the ResNet stage shapes at
// batch 128, and small shapes with every odd edge and every fusion for the
// tests), in AVX2+FMA assembly with their pure-Go twins.
//
// Usage, from the package directory (see its gen.go):
//
//	go run ../../codegen/internal/kernelgen -pkg kernelbench -dir .
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/dave/jennifer/jen"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/pass"
	"github.com/mmcloughlin/avo/printer"

	"github.com/resnetc/resnetc/codegen/kernels"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kernelgen:", err)
		os.Exit(1)
	}
}

func run() error {
	// A flag set of its own: avo's build package registers its flags on
	// flag.CommandLine.
	fs := flag.NewFlagSet("kernelgen", flag.ContinueOnError)
	pkg := fs.String("pkg", "kernelbench", "name of the generated package")
	dir := fs.String("dir", ".", "directory to write the package's generated files into")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	files, err := render(*pkg, benchSet())
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(*dir, name), files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// kernelSet is the kernels of one generated package.
type kernelSet struct {
	convs []kernels.Conv3x3
	dxs   []kernels.Conv3x3Dx
	dws   []kernels.Conv3x3Dw
}

// render returns the generated files of package pkg holding set, by file
// name.
func render(pkg string, set kernelSet) (map[string][]byte, error) {
	files := map[string][]byte{}

	ctx := build.NewContext()
	ctx.ConstraintExpr("amd64,!purego") // kernels.AsmConstraint in +build syntax
	kernels.BuildPeak(ctx)
	for _, c := range set.convs {
		if err := c.BuildAsm(ctx); err != nil {
			return nil, err
		}
	}
	for _, d := range set.dxs {
		if err := d.BuildAsm(ctx); err != nil {
			return nil, err
		}
	}
	for _, d := range set.dws {
		if err := d.BuildAsm(ctx); err != nil {
			return nil, err
		}
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

	if files["support.go"], err = kernels.SupportSource(pkg); err != nil {
		return nil, err
	}
	if files["support_bwd.go"], err = kernels.SupportBwdSource(pkg); err != nil {
		return nil, err
	}
	kf := kernels.NewFile(pkg, "")
	if err := kernels.EmitGo(kf, set.convs); err != nil {
		return nil, err
	}
	bf := kernels.NewFile(pkg, "")
	if err := kernels.EmitBwdGo(bf, set.dxs, set.dws); err != nil {
		return nil, err
	}
	present := kernels.NewFile(pkg, kernels.AsmConstraint)
	kernels.EmitAsmPresent(present)
	absent := kernels.NewFile(pkg, kernels.NoAsmConstraint)
	kernels.EmitAsmAbsent(absent, set.convs)
	kernels.EmitBwdAsmAbsent(absent, set.dxs, set.dws)
	for name, jf := range map[string]*jen.File{"kernels.go": kf, "kernels_bwd.go": bf, "asm_amd64.go": present, "asm_other.go": absent} {
		var buf bytes.Buffer
		if err := jf.Render(&buf); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		files[name] = buf.Bytes()
	}
	return files, nil
}

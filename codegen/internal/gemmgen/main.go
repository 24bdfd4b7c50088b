// Command gemmgen writes the 1x1 conv kernel package gen/gemmbench: the
// peak FMA loop and shape-specialized 1x1 convolutions (small GEMMs),
// forward, backward-data and backward-weights, for the ResNet bottleneck
// and projection shapes at batch 128 and for small shapes with every odd
// edge and every fusion for the tests, in AVX2+FMA assembly with their
// pure-Go twins.
//
// Usage, from the package directory (see its gen.go):
//
//	go run ../../codegen/internal/gemmgen -pkg gemmbench -dir .
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/resnetc/resnetc/codegen/kernels"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gemmgen:", err)
		os.Exit(1)
	}
}

func run() error {
	// A flag set of its own: avo's build package registers its flags on
	// flag.CommandLine.
	fs := flag.NewFlagSet("gemmgen", flag.ContinueOnError)
	pkg := fs.String("pkg", "gemmbench", "name of the generated package")
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

// render returns the generated files of package pkg holding convs, by
// file name.
func render(pkg string, convs []kernels.Conv1x1) (map[string][]byte, error) {
	return kernels.Set{Conv1x1s: convs}.Render(pkg)
}

// BenchBatch is the batch size of the benchmark kernels: the paper's
// CIFAR mini-batch.
const BenchBatch = 128

// benchSet is the package's kernels: the benchmark shapes first, then the
// test shapes.
func benchSet() []kernels.Conv1x1 {
	return append(stageShapes(), testShapes()...)
}

// stageShape is a 1x1 conv of ResNet-164/1001 at batch 128 on CIFAR.
type stageShape struct{ cin, cout, hw, stride int }

// stageShapeList are the 1x1 convs of the bottleneck units of
// ResNet-164/1001: reduce and expand at each stage's size, the stride-2
// projection shortcuts of the first unit of stages 2 and 3, and the
// stride-2 reduce convs of those units.
var stageShapeList = []stageShape{
	{64, 16, 32, 1}, {128, 32, 16, 1}, {256, 64, 8, 1}, // reduce
	{16, 64, 32, 1}, {32, 128, 16, 1}, {64, 256, 8, 1}, // expand
	{64, 128, 32, 2}, {128, 256, 16, 2}, // projection shortcuts
	{64, 32, 32, 2}, {128, 64, 16, 2}, // stride-2 reduce
}

// stageShapes are the benchmark kernels: for each stage shape the plain
// forward conv and its training form in a full pre-activation unit
// (BN-ReLU prologue; statistics for the next BN after a reduce, the
// residual add and statistics after an expand, neither on a projection),
// its backward-data kernel, and its backward-weights kernel plain and
// with the prologue.
func stageShapes() []kernels.Conv1x1 {
	var cs []kernels.Conv1x1
	for _, s := range stageShapeList {
		c := kernels.Conv1x1{N: BenchBatch, Cin: s.cin, Cout: s.cout, H: s.hw, W: s.hw, Stride: s.stride}
		fused := c
		fused.Prologue = kernels.PrologueAffineReLU
		switch {
		case s.cin < s.cout && s.stride == 1: // expand
			fused.Residual, fused.Stats = true, true
		case s.cin > s.cout: // reduce
			fused.Stats = true
		}
		dx, dw := c, c
		dx.Op, dw.Op = kernels.Conv1x1Dx, kernels.Conv1x1Dw
		dwFused := dw
		dwFused.Prologue = kernels.PrologueAffineReLU
		cs = append(cs, c, fused, dx)
		if s.stride == 1 {
			// With stride 2 both gather x into the scratch and differ
			// only by the prologue's two instructions per vector.
			cs = append(cs, dw)
		}
		cs = append(cs, dwFused)
	}
	return cs
}

// testShapes are small kernels covering every edge: sizes 5x7 and 7x5,
// stride 2 on odd and even sizes, 1 to 5 vector blocks on either side
// (so groups with a remainder), a width above the widest tile, a single
// pixel, Dw's pixels in several chunks, every unroll, and every prologue
// and each epilogue flag on one shape. Their unroll is small where the
// shape allows, to keep the assembly short.
func testShapes() []kernels.Conv1x1 {
	var cs []kernels.Conv1x1
	dx := func(c kernels.Conv1x1) kernels.Conv1x1 { c.Op = kernels.Conv1x1Dx; return c }
	dw := func(c kernels.Conv1x1, p kernels.Prologue) kernels.Conv1x1 {
		c.Op, c.Prologue = kernels.Conv1x1Dw, p
		return c
	}
	all := func(c kernels.Conv1x1, p kernels.Prologue) kernels.Conv1x1 {
		c.Prologue, c.Bias, c.Residual, c.ReLU, c.Stats = p, true, true, true, true
		return c
	}

	// Each epilogue flag alone and all of them, and every prologue.
	base := kernels.Conv1x1{N: 2, Cin: 24, Cout: 40, H: 5, W: 7, Stride: 1, Unroll: 1}
	for _, e := range []int{0, 1, 2, 4, 8} {
		c := base
		c.Bias, c.Residual, c.ReLU, c.Stats = e&1 != 0, e&2 != 0, e&4 != 0, e&8 != 0
		cs = append(cs, c)
	}
	for _, p := range kernels.Prologues {
		cs = append(cs, all(base, p), dw(base, p))
	}
	cs = append(cs, dx(base))

	for _, s := range []kernels.Conv1x1{
		{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 2, Unroll: 1}, // stride 2, odd sizes
		{N: 1, Cin: 8, Cout: 16, H: 6, W: 4, Stride: 2, Unroll: 1},  // stride 2, even sizes
		{N: 1, Cin: 40, Cout: 8, H: 5, W: 5, Stride: 1, Unroll: 1},  // five input blocks, one output block
		{N: 2, Cin: 16, Cout: 32, H: 7, W: 7, Stride: 1, Unroll: 2}, // four output blocks
		{N: 1, Cin: 8, Cout: 16, H: 1, W: 1, Stride: 2, Unroll: 1},  // one pixel
		{N: 1, Cin: 16, Cout: 8, H: 13, W: 13, Stride: 1},           // wider than any tile
	} {
		cs = append(cs, s, all(s, kernels.PrologueAffineReLU), dx(s), dw(s, kernels.PrologueAffineReLU))
	}
	some := kernels.Conv1x1{N: 2, Cin: 16, Cout: 24, H: 7, W: 5, Stride: 2, Unroll: 1, Prologue: kernels.PrologueReLU, ReLU: true, Stats: true}
	cs = append(cs, some)
	chunks := kernels.Conv1x1{N: 1, Cin: 8, Cout: 16, H: 24, W: 24, Stride: 1}
	cs = append(cs, dw(chunks, kernels.PrologueNone), dw(chunks, kernels.PrologueReLU))
	for _, u := range []int{4, 8} {
		c := kernels.Conv1x1{N: 3, Cin: 16, Cout: 16, H: 7, W: 7, Stride: 1, Unroll: u}
		cs = append(cs, all(c, kernels.PrologueAffineReLU), dx(c), dw(c, kernels.PrologueReLU))
	}
	return cs
}

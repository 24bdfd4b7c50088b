package main

import "github.com/resnetc/resnetc/codegen/kernels"

// BenchBatch is the batch size of the benchmark kernels: the paper's
// CIFAR mini-batch.
const BenchBatch = 128

// benchSet is the package's kernels: the benchmark shapes first, then the
// test shapes.
func benchSet() []kernels.Conv3x3 {
	return append(stageShapes(), testShapes()...)
}

// stageShapes are the 3x3 convs of ResNet-164/1001 (16, 32 and 64
// channels at 32x32, 16x16 and 8x8) and of the stride-2 first units of
// the basic-unit nets, at batch 128: each plain and in its training form
// (BN-ReLU prologue, statistics for the next BN).
func stageShapes() []kernels.Conv3x3 {
	var cs []kernels.Conv3x3
	for _, s := range []struct{ cin, cout, hw, stride int }{
		{16, 16, 32, 1}, {32, 32, 16, 1}, {64, 64, 8, 1},
		{16, 32, 32, 2}, {32, 64, 16, 2},
	} {
		c := kernels.Conv3x3{N: BenchBatch, Cin: s.cin, Cout: s.cout, H: s.hw, W: s.hw, Stride: s.stride}
		fused := c
		fused.Prologue, fused.Stats = kernels.PrologueAffineReLU, true
		cs = append(cs, c, fused)
	}
	return cs
}

// testShapes are small kernels covering every edge of the tiling and of
// the padding: widths that are not a multiple of the tile (and 1), stride
// 2 on odd and even sizes, 1 to 5 output-channel blocks (so groups with a
// remainder), rows wider than the prologue's unrolling, every unroll, and
// every prologue with every epilogue on three shapes.
func testShapes() []kernels.Conv3x3 {
	var cs []kernels.Conv3x3
	for _, base := range []kernels.Conv3x3{
		{N: 1, Cin: 8, Cout: 8, H: 5, W: 9, Stride: 1, Unroll: 1},
		{N: 3, Cin: 16, Cout: 40, H: 7, W: 7, Stride: 2, Unroll: 1},
		{N: 2, Cin: 24, Cout: 16, H: 2, W: 3, Stride: 1, Unroll: 1},
	} {
		for _, p := range kernels.Prologues {
			for e := range 16 {
				c := base
				c.Prologue = p
				c.Bias, c.Residual, c.ReLU, c.Stats = e&1 != 0, e&2 != 0, e&4 != 0, e&8 != 0
				cs = append(cs, c)
			}
		}
	}
	for _, base := range []kernels.Conv3x3{
		{N: 1, Cin: 8, Cout: 8, H: 1, W: 1, Stride: 1},
		{N: 1, Cin: 8, Cout: 16, H: 1, W: 1, Stride: 2},
		{N: 3, Cin: 16, Cout: 16, H: 7, W: 7, Stride: 1},
		{N: 1, Cin: 16, Cout: 16, H: 8, W: 8, Stride: 2},
		{N: 2, Cin: 8, Cout: 16, H: 6, W: 5, Stride: 2},
		{N: 1, Cin: 24, Cout: 24, H: 5, W: 9, Stride: 1},
		{N: 1, Cin: 16, Cout: 32, H: 13, W: 13, Stride: 1},
		{N: 1, Cin: 8, Cout: 40, H: 9, W: 20, Stride: 1},
		{N: 1, Cin: 8, Cout: 24, H: 17, W: 17, Stride: 2},
		{N: 1, Cin: 16, Cout: 16, H: 32, W: 32, Stride: 1},
	} {
		plain, all, some := base, base, base
		all.Prologue, all.Bias, all.Residual, all.ReLU, all.Stats = kernels.PrologueAffineReLU, true, true, true, true
		some.Prologue, some.ReLU, some.Stats = kernels.PrologueReLU, true, true
		cs = append(cs, plain, all, some)
	}
	for _, u := range []int{1, 2, 8} {
		c := kernels.Conv3x3{N: 3, Cin: 16, Cout: 16, H: 7, W: 7, Stride: 1, Unroll: u,
			Prologue: kernels.PrologueAffineReLU, Bias: true, Residual: true, Stats: true}
		cs = append(cs, c)
	}
	return cs
}

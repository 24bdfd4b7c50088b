package main

import (
	"slices"

	"github.com/resnetc/resnetc/codegen/kernels"
)

// BenchBatch is the batch size of the benchmark kernels: the paper's
// CIFAR mini-batch.
const BenchBatch = 128

// benchSet is the package's kernels: the benchmark shapes first, then the
// test shapes.
func benchSet() kernelSet {
	set := kernelSet{
		Convs:     append(stageShapes(), testShapes()...),
		Dxs:       append(dxStageShapes(), dxTestShapes()...),
		Dws:       append(dwStageShapes(), dwTestShapes()...),
		Winograds: append(winogradStageShapes(), winogradTestShapes()...),
	}
	for _, w := range set.Winograds {
		if g := w.GEMM(); !slices.Contains(set.Conv1x1s, g) {
			set.Conv1x1s = append(set.Conv1x1s, g)
		}
	}
	return set
}

// winogradStageShapes are the Winograd kernels of the stride-1 stage
// convs: in inference as a bottleneck unit's 3x3 conv (folded BN, ReLU)
// and as a basic unit's second conv (BN-ReLU prologue, residual), and in
// training (BN-ReLU prologue, statistics for the next BN).
func winogradStageShapes() []kernels.Winograd {
	var ws []kernels.Winograd
	for _, c := range stages {
		if c.Stride != 1 {
			continue
		}
		w := kernels.Winograd{N: c.N, Cin: c.Cin, Cout: c.Cout, H: c.H, W: c.W, Bias: true, ReLU: true}
		basic := kernels.Winograd{N: c.N, Cin: c.Cin, Cout: c.Cout, H: c.H, W: c.W, Prologue: kernels.PrologueAffineReLU, Residual: true}
		train := kernels.Winograd{N: c.N, Cin: c.Cin, Cout: c.Cout, H: c.H, W: c.W, Prologue: kernels.PrologueAffineReLU, Stats: true}
		// The backward-data convolution of one image, as the training
		// step's backward chains run it.
		dx := kernels.Winograd{N: 1, Cin: c.Cout, Cout: c.Cin, H: c.H, W: c.W}
		ws = append(ws, w, basic, train, dx)
	}
	return ws
}

// winogradTestShapes are small Winograd kernels covering the edges:
// sides that are not multiples of the 4x4 tile (and smaller than one),
// groups of images that do not divide the batch, 1 to 5 channel blocks,
// and every prologue with every epilogue on two shapes.
func winogradTestShapes() []kernels.Winograd {
	var ws []kernels.Winograd
	for _, base := range []kernels.Winograd{
		{N: 3, Cin: 8, Cout: 16, H: 5, W: 9},
		{N: 2, Cin: 24, Cout: 8, H: 8, W: 8},
	} {
		for _, p := range kernels.Prologues {
			for e := range 16 {
				w := base
				w.Prologue = p
				w.Bias, w.Residual, w.ReLU, w.Stats = e&1 != 0, e&2 != 0, e&4 != 0, e&8 != 0
				ws = append(ws, w)
			}
		}
	}
	return append(ws,
		kernels.Winograd{N: 1, Cin: 8, Cout: 8, H: 1, W: 1, Bias: true},
		kernels.Winograd{N: 5, Cin: 16, Cout: 40, H: 3, W: 6, Prologue: kernels.PrologueReLU, ReLU: true},
		kernels.Winograd{N: 9, Cin: 40, Cout: 24, H: 4, W: 4, Residual: true},
		kernels.Winograd{N: 2, Cin: 16, Cout: 16, H: 13, W: 7, Bias: true, ReLU: true, Stats: true},
		kernels.Winograd{N: 3, Cin: 16, Cout: 16, H: 12, W: 20, Prologue: kernels.PrologueAffineReLU, Bias: true, Residual: true},
	)
}

// stages are the 3x3 convs of ResNet-164/1001 (16, 32 and 64 channels at
// 32x32, 16x16 and 8x8) and the stride-2 first convs of the stages of the
// basic-unit nets, at batch BenchBatch.
var stages = []kernels.Conv3x3{
	{N: BenchBatch, Cin: 16, Cout: 16, H: 32, W: 32, Stride: 1},
	{N: BenchBatch, Cin: 32, Cout: 32, H: 16, W: 16, Stride: 1},
	{N: BenchBatch, Cin: 64, Cout: 64, H: 8, W: 8, Stride: 1},
	{N: BenchBatch, Cin: 16, Cout: 32, H: 32, W: 32, Stride: 2},
	{N: BenchBatch, Cin: 32, Cout: 64, H: 16, W: 16, Stride: 2},
}

// dxStageShapes are the backward-data kernels of the stage convs.
func dxStageShapes() []kernels.Conv3x3Dx {
	var ds []kernels.Conv3x3Dx
	for _, c := range stages {
		ds = append(ds, kernels.Conv3x3Dx{N: c.N, Cin: c.Cin, Cout: c.Cout, H: c.H, W: c.W, Stride: c.Stride})
	}
	return ds
}

// dxTestShapes are small backward-data kernels covering the edges: 1 to 5
// channel blocks on either side (so tile groups with a remainder), widths
// that split into uneven tiles, stride 2 on odd and even sizes (phases of
// different sizes) and on sizes of 1 (empty phases).
func dxTestShapes() []kernels.Conv3x3Dx {
	return []kernels.Conv3x3Dx{
		{N: 1, Cin: 8, Cout: 8, H: 5, W: 9, Stride: 1},
		{N: 2, Cin: 40, Cout: 16, H: 7, W: 7, Stride: 1},
		{N: 1, Cin: 24, Cout: 40, H: 1, W: 1, Stride: 1},
		{N: 1, Cin: 16, Cout: 24, H: 4, W: 20, Stride: 1},
		{N: 3, Cin: 40, Cout: 16, H: 7, W: 7, Stride: 2},
		{N: 2, Cin: 24, Cout: 32, H: 6, W: 5, Stride: 2},
		{N: 1, Cin: 32, Cout: 8, H: 8, W: 26, Stride: 2},
		{N: 1, Cin: 16, Cout: 8, H: 1, W: 2, Stride: 2},
		{N: 1, Cin: 8, Cout: 16, H: 3, W: 1, Stride: 2},
	}
}

// dwStageShapes are the backward-weights kernels of the stage convs, each
// plain (conv2d_dw) and recomputing the BN-ReLU prologue (conv2d_dw_fused
// in the training graph).
func dwStageShapes() []kernels.Conv3x3Dw {
	var ds []kernels.Conv3x3Dw
	for _, c := range stages {
		d := kernels.Conv3x3Dw{N: c.N, Cin: c.Cin, Cout: c.Cout, H: c.H, W: c.W, Stride: c.Stride}
		fused := d
		fused.Prologue = kernels.PrologueAffineReLU
		ds = append(ds, d, fused)
	}
	return ds
}

// dwTestShapes are small backward-weights kernels covering the edges:
// every prologue on two shapes, 1 to 5 channel blocks, rows shorter than,
// equal to and longer than the pixel loop's chunk with every remainder,
// stride 2 on odd and even sizes, and sizes of 1.
func dwTestShapes() []kernels.Conv3x3Dw {
	var ds []kernels.Conv3x3Dw
	for _, base := range []kernels.Conv3x3Dw{
		{N: 1, Cin: 8, Cout: 8, H: 5, W: 9, Stride: 1},
		{N: 3, Cin: 16, Cout: 40, H: 7, W: 7, Stride: 2},
	} {
		for _, p := range kernels.Prologues {
			d := base
			d.Prologue = p
			ds = append(ds, d)
		}
	}
	return append(ds,
		kernels.Conv3x3Dw{N: 2, Cin: 40, Cout: 24, H: 6, W: 5, Stride: 2, Prologue: kernels.PrologueReLU},
		kernels.Conv3x3Dw{N: 1, Cin: 24, Cout: 8, H: 1, W: 1, Stride: 1},
		kernels.Conv3x3Dw{N: 1, Cin: 8, Cout: 16, H: 2, W: 1, Stride: 2, Prologue: kernels.PrologueAffineReLU},
		kernels.Conv3x3Dw{N: 2, Cin: 32, Cout: 16, H: 3, W: 12, Stride: 1, Prologue: kernels.PrologueAffineReLU},
		kernels.Conv3x3Dw{N: 1, Cin: 8, Cout: 32, H: 4, W: 14, Stride: 1},
		kernels.Conv3x3Dw{N: 1, Cin: 16, Cout: 8, H: 6, W: 22, Stride: 2},
	)
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

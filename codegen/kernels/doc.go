// Package kernels builds resnetc's AVX2+FMA kernels with avo and writes
// their pure-Go twins with jennifer.
//
// A kernel is specialized per shape: every size, stride, loop bound and
// fusion flag is a constant of the generated code, so one Conv3x3 value
// describes one generated function. The builders take an explicit
// *build.Context (the avo program being built) or *jen.File (the Go file
// being written), so one generator can put many kernels into one package.
//
// Layout conventions, shared with the compiler's layout pass:
//
//   - activations are blocked NCHW8c: [N, C, H, W] is stored as
//     [N][C/8][H][W][8] float32, eight channels being one YMM register;
//   - 3x3 conv weights are packed OIhw8i8o: [Cout/8][Cin/8][3][3][8 ci][8 co],
//     so that the eight output channels of one (ci, kh, kw) tap are one
//     vector load (PackConv3x3Weights in the generated package packs them
//     from plain [Cout][Cin][3][3]);
//   - per-channel vectors (bias, scale, shift) are plain [C] float32;
//   - BatchNorm statistics are written per image as partial sums,
//     stats[n][0][c] = Σ y and stats[n][1][c] = Σ y², which ReduceStats adds
//     in image order in float64, so the result does not depend on how the
//     images were split over goroutines.
//
// The backward kernels of the 3x3 conv follow the same scheme:
// Conv3x3Dx (conv2d_dx) reads weights packed by PackConv3x3DxWeights,
// [Cin/8][Cout/8][3][3][8 co][8 ci] of the kernel rotated by 180°, so that
// it is a forward conv of dy; Conv3x3Dw (conv2d_dw and conv2d_dw_fused)
// adds a range of images into a per-goroutine partial laid out
// [Cout/8][Cin/8][3][3][8 co][8 ci], which SumConv3x3Dw adds up in a
// fixed order into the OIhw8i8o layout of the weights.
//
// Stride-1 3x3 convolutions, forward and backward-data (a forward
// convolution of dy with the rotated kernel), may instead run by Winograd
// F(4x4, 3x3) (Winograd, winograd_asm.go, gosrc/winograd.go): a 6x6 input
// tile is transformed (Bᵀ d B), the 36 points of all tiles of a group of
// images are multiplied by the transformed weights (G g Gᵀ, computed when
// the weights are packed) as 36 GEMMs of the forward 1x1 kernel, and the
// 4x4 output tile is transformed back (Aᵀ m A) with the epilogue: 36
// multiplications per input and output channel pair where the direct
// convolution does 144. The transforms are shape-generic assembly with
// pure-Go twins.
//
// A generated kernel package holds, besides the assembly (BuildAsm,
// BuildPeak) and its stubs, the Go written by EmitGo (the dispatch:
// assembly when the build has it, the CPU has AVX2 and FMA and
// RESNETC_PUREGO is not 1; each kernel's exported function and twin) and
// a copy of the shape-generic Go of package gosrc (SupportSource): the
// twins' shared body, the layout and packing helpers, ReduceStats. With
// backward kernels it also holds what EmitBwdGo and EmitBwdAsmAbsent
// write and SupportBwdSource.
package kernels

package kernelbench

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkConv3x3Dx runs every batch-128 backward-data kernel (the
// ResNet stage shapes) on one core over the whole batch, with 32-byte
// aligned buffers.
func BenchmarkConv3x3Dx(b *testing.B) {
	peak := SingleCorePeakGFLOPS()
	for i := range Conv3x3DxKernels {
		k := &Conv3x3DxKernels[i]
		if k.N < 128 {
			continue
		}
		b.Run(k.Name, func(b *testing.B) {
			s := &k.Conv3x3DxShape
			r := rand.New(rand.NewPCG(seedOf(s.Name), 2))
			dy, w := AlignedFloats(s.DyLen()), AlignedFloats(s.WLen())
			dx, scratch := AlignedFloats(s.DxLen()), AlignedFloats(s.ScratchLen())
			for _, v := range [][]float32{dy, w} {
				for j := range v {
					v[j] = float32(r.Float64() - 0.5)
				}
			}
			for b.Loop() {
				k.Run(dy, w, dx, scratch, 0, s.N)
			}
			reportRate(b, s.FLOPs(), peak)
		})
	}
}

// BenchmarkConv3x3Dw runs every batch-128 backward-weights kernel on one
// core over the whole batch into one partial, with 32-byte aligned
// buffers.
func BenchmarkConv3x3Dw(b *testing.B) {
	peak := SingleCorePeakGFLOPS()
	for i := range Conv3x3DwKernels {
		k := &Conv3x3DwKernels[i]
		if k.N < 128 {
			continue
		}
		b.Run(k.Name, func(b *testing.B) {
			s := &k.Conv3x3DwShape
			r := rand.New(rand.NewPCG(seedOf(s.Name), 2))
			x, dy := AlignedFloats(s.XLen()), AlignedFloats(s.DyLen())
			scale, shift := AlignedFloats(s.Cin), AlignedFloats(s.Cin)
			dw, scratch := AlignedFloats(s.DwLen()), AlignedFloats(s.ScratchLen())
			for _, v := range [][]float32{x, dy, scale, shift} {
				for j := range v {
					v[j] = float32(r.Float64() - 0.5)
				}
			}
			for b.Loop() {
				k.Run(x, dy, scale, shift, dw, scratch, 0, s.N)
			}
			reportRate(b, s.FLOPs(), peak)
		})
	}
}

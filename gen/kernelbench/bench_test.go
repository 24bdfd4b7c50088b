package kernelbench

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// peakIters is the work of one call of PeakFMA in the benchmarks: about
// 0.1 ms, short enough for b.Loop to calibrate finely.
const peakIters = 1 << 16

// BenchmarkPeak reports the FMA peak in GFLOP/s of one core and of all
// cores (GOMAXPROCS goroutines, each running the peak loop).
func BenchmarkPeak(b *testing.B) {
	peak := SingleCorePeakGFLOPS()
	b.Run("1core", func(b *testing.B) {
		for b.Loop() {
			PeakFMA(peakIters, 0, 0)
		}
		reportRate(b, float64(peakIters*PeakFLOPsPerIter), peak)
	})
	b.Run("allcores", func(b *testing.B) {
		p := runtime.GOMAXPROCS(0)
		for b.Loop() {
			var wg sync.WaitGroup
			for range p {
				wg.Go(func() { PeakFMA(peakIters, 0, 0) })
			}
			wg.Wait()
		}
		reportRate(b, float64(p*peakIters*PeakFLOPsPerIter), peak)
	})
}

// reportRate reports GFLOP/s for flops per iteration and the fraction of
// the single-core peak measured in this process.
func reportRate(b *testing.B, flops, peak float64) {
	gflops := flops * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(gflops, "GFLOP/s")
	b.ReportMetric(gflops/peak, "frac_peak")
}

// BenchmarkConv3x3 runs every batch-128 kernel (the ResNet stage shapes)
// on one core over the whole batch, with 32-byte aligned buffers.
func BenchmarkConv3x3(b *testing.B) {
	peak := SingleCorePeakGFLOPS()
	for i := range Conv3x3Kernels {
		k := &Conv3x3Kernels[i]
		if k.N < 128 {
			continue
		}
		b.Run(k.Name, func(b *testing.B) {
			s := &k.Conv3x3Shape
			r := rand.New(rand.NewPCG(seedOf(s.Name), 2))
			x, w := AlignedFloats(s.XLen()), AlignedFloats(s.WLen())
			y, res, stats := AlignedFloats(s.YLen()), AlignedFloats(s.YLen()), AlignedFloats(s.StatsLen())
			bias, scale, shift := AlignedFloats(s.Cout), AlignedFloats(s.Cin), AlignedFloats(s.Cin)
			scratch := AlignedFloats(s.ScratchLen())
			for _, v := range [][]float32{x, w, res, bias, scale, shift} {
				for j := range v {
					v[j] = float32(r.Float64() - 0.5)
				}
			}
			for b.Loop() {
				k.Run(x, w, bias, scale, shift, res, y, stats, scratch, 0, s.N)
			}
			reportRate(b, s.FLOPs(), peak)
		})
	}
}

// BenchmarkWinograd runs every batch-128 Winograd kernel on one core over
// the whole batch, like BenchmarkConv3x3: its GFLOP/s count the direct
// convolution's multiply-adds, so that they compare with the direct
// kernels' of the same shape in the same run.
func BenchmarkWinograd(b *testing.B) {
	peak := SingleCorePeakGFLOPS()
	for i := range WinogradKernels {
		k := &WinogradKernels[i]
		if k.N < 128 && !(k.N == 1 && k.H >= 8 && k.H == k.W && k.Cin == k.Cout) {
			continue
		}
		b.Run(k.Name, func(b *testing.B) {
			s := &k.WinogradShape
			r := rand.New(rand.NewPCG(seedOf(s.Name), 2))
			x, w := AlignedFloats(s.XLen()), AlignedFloats(s.WLen())
			y, res, stats := AlignedFloats(s.YLen()), AlignedFloats(s.YLen()), AlignedFloats(s.StatsLen())
			bias, scale, shift := AlignedFloats(s.Cout), AlignedFloats(s.Cin), AlignedFloats(s.Cin)
			scratch := AlignedFloats(s.ScratchLen())
			for _, v := range [][]float32{x, w, res, bias, scale, shift} {
				for j := range v {
					v[j] = float32(r.Float64() - 0.5)
				}
			}
			for b.Loop() {
				k.Run(x, w, bias, scale, shift, res, y, stats, scratch, 0, s.N)
			}
			reportRate(b, s.FLOPs(), peak)
		})
	}
}

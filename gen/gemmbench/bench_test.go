package gemmbench

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
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

// streamLen is the float32s of each buffer of the bandwidth measurement:
// 64 MiB, far more than any cache.
const streamLen = 16 << 20

var (
	streamOnce sync.Once
	streamRate float64
)

// singleCoreCopyGBps measures, once per process, the memory bandwidth of
// one core: the best of 7 copies of 64 MiB, as STREAM reports it,
// counting the bytes read and the bytes written.
func singleCoreCopyGBps() float64 {
	streamOnce.Do(func() {
		src, dst := AlignedFloats(streamLen), AlignedFloats(streamLen)
		for i := range src {
			src[i] = float32(i)
		}
		copy(dst, src) // fault the pages in
		var rates []float64
		for range 7 {
			start := time.Now()
			copy(dst, src)
			rates = append(rates, 2*4*streamLen/time.Since(start).Seconds()/1e9)
		}
		streamRate = slices.Max(rates)
	})
	return streamRate
}

// BenchmarkBandwidth reports one core's memory bandwidth: copying 64 MiB,
// in GB/s read plus written.
func BenchmarkBandwidth(b *testing.B) {
	src, dst := AlignedFloats(streamLen), AlignedFloats(streamLen)
	for i := range src {
		src[i] = float32(i) // fresh pages would all read the one zero page, from cache
	}
	copy(dst, src)
	for b.Loop() {
		copy(dst, src)
	}
	b.ReportMetric(2*4*streamLen*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

// reportTraffic reports the kernel's memory traffic in GB/s, counting
// each byte of its activations (x and y or their gradients, the
// residual) once, and that rate as a fraction of the copy bandwidth
// measured in this process: a kernel near 1 is limited by memory, not by
// the FMA units. Weights, a few KiB to 256 KiB, stay in cache.
func reportTraffic(b *testing.B, bytes float64) {
	gbps := bytes * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(gbps, "GB/s")
	b.ReportMetric(gbps/singleCoreCopyGBps(), "frac_bw")
}

// actBytes are the bytes of s's input and output activations a kernel
// touches: with stride 2, only every other row of the input.
func actBytes(s *Conv1x1Shape) (x, y float64) {
	return 4 * float64(s.XLen()) / float64(s.Stride), 4 * float64(s.YLen())
}

// benchBuffers are 32-byte aligned random buffers for one batch-128
// kernel, drawn once per shape.
type benchBuffers struct {
	x, w, y, res, stats, bias, scale, shift, scratch []float32
}

func newBenchBuffers(s *Conv1x1Shape) *benchBuffers {
	r := rand.New(rand.NewPCG(seedOf(s.Name), 2))
	bb := &benchBuffers{
		x: AlignedFloats(s.XLen()), w: AlignedFloats(s.WLen()),
		y: AlignedFloats(s.YLen()), res: AlignedFloats(s.YLen()), stats: AlignedFloats(s.StatsLen()),
		bias: AlignedFloats(s.Cout), scale: AlignedFloats(s.Cin), shift: AlignedFloats(s.Cin),
		scratch: AlignedFloats(s.ScratchLen()),
	}
	for _, v := range [][]float32{bb.x, bb.w, bb.y, bb.res, bb.bias, bb.scale, bb.shift} {
		for j := range v {
			v[j] = float32(r.Float64() - 0.5)
		}
	}
	return bb
}

// BenchmarkConv1x1 runs every batch-128 forward kernel (the ResNet
// bottleneck and projection shapes) on one core over the whole batch.
func BenchmarkConv1x1(b *testing.B) {
	benchForward(b, false)
}

// BenchmarkConv1x1Image runs every batch-128 forward kernel on its first
// image only, again and again, so that the image's input and output stay
// in cache, as in the unit chains of Infer (unitFwd), which run a unit's
// convolutions image by image. Set against BenchmarkConv1x1, it tells
// compute from memory traffic.
func BenchmarkConv1x1Image(b *testing.B) {
	benchForward(b, true)
}

// benchForward runs every batch-128 forward kernel over the whole batch,
// reporting its rate and memory traffic, or over its first image only,
// reporting its rate.
func benchForward(b *testing.B, oneImage bool) {
	peak := SingleCorePeakGFLOPS()
	for i := range Conv1x1Kernels {
		k := &Conv1x1Kernels[i]
		if k.N < 128 {
			continue
		}
		n := k.N
		if oneImage {
			n = 1
		}
		b.Run(k.Name, func(b *testing.B) {
			bb := newBenchBuffers(&k.Conv1x1Shape)
			for b.Loop() {
				k.Run(bb.x, bb.w, bb.bias, bb.scale, bb.shift, bb.res, bb.y, bb.stats, bb.scratch, 0, n)
			}
			reportRate(b, k.FLOPs()*float64(n)/float64(k.N), peak)
			if oneImage {
				return
			}
			x, y := actBytes(&k.Conv1x1Shape)
			if k.Residual {
				y *= 2
			}
			reportTraffic(b, x+y)
		})
	}
}

// BenchmarkConv1x1Dx runs every batch-128 backward-data kernel: dy is y,
// dx is x.
func BenchmarkConv1x1Dx(b *testing.B) {
	peak := SingleCorePeakGFLOPS()
	for i := range Conv1x1DxKernels {
		k := &Conv1x1DxKernels[i]
		if k.N < 128 {
			continue
		}
		b.Run(k.Name, func(b *testing.B) {
			bb := newBenchBuffers(&k.Conv1x1Shape)
			for b.Loop() {
				k.Run(bb.y, bb.w, bb.x, bb.scratch, 0, k.N)
			}
			reportRate(b, k.FLOPs(), peak)
			x, y := actBytes(&k.Conv1x1Shape)
			reportTraffic(b, x*float64(k.Stride)+y) // dx is written whole
		})
	}
}

// BenchmarkConv1x1Dw runs every batch-128 backward-weights kernel: dy is
// y, the partial dw is w.
func BenchmarkConv1x1Dw(b *testing.B) {
	peak := SingleCorePeakGFLOPS()
	for i := range Conv1x1DwKernels {
		k := &Conv1x1DwKernels[i]
		if k.N < 128 {
			continue
		}
		b.Run(k.Name, func(b *testing.B) {
			bb := newBenchBuffers(&k.Conv1x1Shape)
			for b.Loop() {
				k.Run(bb.y, bb.x, bb.scale, bb.shift, bb.w, bb.scratch, 0, k.N)
			}
			reportRate(b, k.FLOPs(), peak)
			x, y := actBytes(&k.Conv1x1Shape)
			reportTraffic(b, x+y)
		})
	}
}

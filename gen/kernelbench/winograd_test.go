package kernelbench

import (
	"math"
	"math/rand/v2"
	"testing"
)

// winoCase is a Winograd kernel's inputs: those of the direct 3x3
// convolution it computes, with the weights packed for it.
type winoCase struct {
	*convCase
	k  *WinogradKernel
	bw []float32 // PackWinogradWeights of the plain weights
}

func newWinoCase(t testing.TB, k *WinogradKernel) *winoCase {
	s := &k.WinogradShape
	direct := &Conv3x3Shape{Name: s.Name, N: s.N, Cin: s.Cin, Cout: s.Cout, H: s.H, W: s.W, Stride: 1, OutH: s.H, OutW: s.W,
		Prologue: s.Prologue, Bias: s.Bias, Residual: s.Residual, ReLU: s.ReLU, Stats: s.Stats}
	if direct.Prologue == "" {
		direct.Prologue = "none"
	}
	c := &winoCase{convCase: newCase(t, direct), k: k, bw: make([]float32, s.WLen())}
	must(t, PackWinogradWeights(c.bw, c.w, s.Cout, s.Cin))
	return c
}

// run calls f on the ranges of images with the outputs preset to
// sentinel and the scratch to NaN, as convCase.run does, but with the
// Winograd weights and scratch.
func (c *winoCase) run(f Conv3x3Func, ranges ...[2]int) result {
	s := &c.k.WinogradShape
	r := result{y: make([]float32, s.YLen()), stats: make([]float32, s.StatsLen())}
	fill(r.y, sentinel)
	fill(r.stats, sentinel)
	scratch := make([]float32, s.ScratchLen())
	fill(scratch, float32(math.NaN()))
	bias, scale, shift, res, stats := c.bias, c.scale, c.shift, c.bres, r.stats
	if !s.Bias {
		bias = nil
	}
	if s.Prologue != "affine_relu" {
		scale, shift = nil, nil
	}
	if !s.Residual {
		res = nil
	}
	if !s.Stats {
		stats = nil
	}
	for _, rg := range ranges {
		f(c.bx, c.bw, bias, scale, shift, res, r.y, stats, scratch, rg[0], rg[1])
	}
	return r
}

// F(4x4, 3x3) rounds more than a direct sum (its transforms scale by up
// to 5 and 8, and the weights' by 1/24), but on these inputs its worst
// error is 2e-6 of the terms' magnitude: convCase.check's rtol holds.

// winoRanges are the calls a test makes: a small batch in two uneven
// calls (so a group is cut short), the first and last images of a large
// one.
func winoRanges(n int) [][][2]int {
	if n <= 9 {
		return [][][2]int{{{0, n}}, {{0, n / 2}, {n / 2, n}}}
	}
	return [][][2]int{{{0, 1}}, {{n - 1, n}}}
}

// TestWinograd runs every Winograd kernel on random inputs and compares
// its twins and its exported function (the assembly transforms where
// they run) with the float64 direct convolution, and the exported
// function with the twins.
func TestWinograd(t *testing.T) {
	requireAsm(t)
	if len(WinogradKernels) == 0 {
		t.Fatal("no Winograd kernels")
	}
	for i := range WinogradKernels {
		k := &WinogradKernels[i]
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			c := newWinoCase(t, k)
			for _, rgs := range winoRanges(k.N) {
				ref := c.reference(rgs[0][0], rgs[len(rgs)-1][1])
				twin := c.run(k.Go, rgs...)
				c.check(t, "twin", twin, ref)
				run := c.run(k.Run, rgs...)
				c.check(t, "exported", run, ref)
				// The assembly and the twins compute the same sums in
				// the same order, but for the fused multiply-adds.
				c.check(t, "exported against twin", run, twinReference(c.convCase, twin, ref))
			}
		})
	}
}

// TestWinogradTransforms compares the transforms' assembly with their
// twins directly, on random data with strides wider than a row: the
// output transform bitwise (its multiplications are by powers of two),
// its statistics, the input transform and the prologue copy up to FMA
// rounding.
func TestWinogradTransforms(t *testing.T) {
	requireAsm(t)
	if !asmRunnable {
		t.Skip("the build or the CPU has no assembly")
	}
	r := rand.New(rand.NewPCG(7, 7))
	const tiles, rowStride, xiStride = 5, 8 * 23, 8 * 11
	src := uniform(r, 6*rowStride, -1, 1)
	in := func(f func(src, dst []float32, tiles, rowStride, xiStride int)) []float32 {
		dst := make([]float32, 36*xiStride)
		f(src, dst, tiles, rowStride, xiStride)
		return dst
	}
	got, want := in(winoInRowAVX2), in(winoInRowGo)
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("input transform [%d]: asm %v, twin %v", i, got[i], want[i])
		}
	}
	m := uniform(r, 36*xiStride, -1, 1)
	bias := uniform(r, 8, -1, 1)
	res := uniform(r, 4*rowStride, -1, 1)
	for flags := range 16 {
		out := func(f func(m, y, bias, res, sums []float32, tiles, xiStride, rowStride, flags int)) ([]float32, []float32) {
			mm := append([]float32(nil), m...)
			y := make([]float32, 4*rowStride)
			sums := uniform(r, 16, 5, 6) // set, not added to
			f(mm, y, bias, res, sums, 4, xiStride, rowStride, flags)
			return y, sums
		}
		got, gotSums := out(winoOutRowAVX2)
		want, wantSums := out(winoOutRowGo)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("output transform, flags %d, [%d]: asm %v, twin %v", flags, i, got[i], want[i])
			}
		}
		if flags&8 != 0 {
			for i := range wantSums {
				if d := math.Abs(float64(gotSums[i] - wantSums[i])); d > 1e-5*(1+math.Abs(float64(wantSums[i]))) {
					t.Fatalf("output transform, flags %d, sums[%d]: asm %v, twin %v", flags, i, gotSums[i], wantSums[i])
				}
			}
		}
	}
	scale, shift := uniform(r, 8, -1, 2), uniform(r, 8, -0.5, 0.5)
	for mode := range 3 {
		got, want := make([]float32, 8*7), make([]float32, 8*7)
		winoCopyRowAVX2(got, src[:8*7], scale, shift, mode)
		winoCopyRowGo(want, src[:8*7], scale, shift, mode)
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-6 {
				t.Fatalf("copy, mode %d, [%d]: asm %v, twin %v", mode, i, got[i], want[i])
			}
		}
	}
}

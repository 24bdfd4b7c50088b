package gemmbench

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// rtol is the tolerance of every comparison, relative to the magnitude
// of the terms summed into each element (Σ|a·w| + |bias| + |res| for an
// output, Σ|y| and Σy² for the statistics, |dw₀| + Σ|dy·a| for a weight
// gradient): float32 sums in a different order, or with fused
// multiply-adds, differ by a few ulps of that.
const rtol = 1e-5

// asmRunnable reports whether this test binary can call the assembly:
// the build carries it and the CPU has AVX2 and FMA. It does not look at
// RESNETC_PUREGO, which only chooses what the exported functions run.
var asmRunnable = haveAsm && cpu.X86.HasAVX2 && cpu.X86.HasFMA

// requireAsm fails t when RESNETC_REQUIRE_ASM=1 and the assembly cannot
// run, so that a CI job meant to test the assembly cannot pass by testing
// only the twins.
func requireAsm(t *testing.T) {
	t.Helper()
	if os.Getenv("RESNETC_REQUIRE_ASM") == "1" && (!asmRunnable || !UsesAsm()) {
		t.Fatalf("RESNETC_REQUIRE_ASM=1 but the assembly is not selected (build has it: %v, AVX2: %v, FMA: %v, %s=%q)",
			haveAsm, cpu.X86.HasAVX2, cpu.X86.HasFMA, "RESNETC_PUREGO", os.Getenv("RESNETC_PUREGO"))
	}
}

func TestDispatch(t *testing.T) {
	requireAsm(t)
	want := asmRunnable && os.Getenv("RESNETC_PUREGO") != "1"
	if UsesAsm() != want {
		t.Errorf("UsesAsm() = %v, want %v (build has assembly: %v, CPU: %v)", UsesAsm(), want, haveAsm, asmRunnable)
	}
	for _, k := range Conv1x1Kernels {
		if (k.Asm != nil) != haveAsm {
			t.Errorf("%s: Asm set = %v in a build with assembly = %v", k.Name, k.Asm != nil, haveAsm)
		}
	}
	for _, k := range Conv1x1DxKernels {
		if (k.Asm != nil) != haveAsm {
			t.Errorf("%s: Asm set = %v in a build with assembly = %v", k.Name, k.Asm != nil, haveAsm)
		}
	}
	for _, k := range Conv1x1DwKernels {
		if (k.Asm != nil) != haveAsm {
			t.Errorf("%s: Asm set = %v in a build with assembly = %v", k.Name, k.Asm != nil, haveAsm)
		}
	}
	t.Logf("assembly selected: %v", UsesAsm())
}

// seedOf is the fixed seed of a kernel's random inputs.
func seedOf(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// uniform draws n values uniformly from [lo, hi).
func uniform(r *rand.Rand, n int, lo, hi float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return s
}

// must fails t on a helper's error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fill sets every element of s to v.
func fill(s []float32, v float32) {
	for i := range s {
		s[i] = v
	}
}

// mismatch describes the first few elements where got and want differ by
// more than rtol times mag, with their bits in hex; "" when none does.
// Where mag is 0 the element must be exactly want.
func mismatch(what string, got []float32, want, mag []float64, index func(int) string) string {
	var b strings.Builder
	bad := 0
	for i := range want {
		g := float64(got[i])
		if math.IsNaN(g) && math.IsNaN(want[i]) {
			continue
		}
		d := math.Abs(g - want[i])
		if d <= rtol*mag[i] && !math.IsNaN(d) {
			continue
		}
		if bad < 6 {
			fmt.Fprintf(&b, "\n  %s[%d] %s: got %.9g (0x%08x), want %.9g (0x%08x), |diff| %.3g > %.3g",
				what, i, index(i), got[i], math.Float32bits(got[i]), want[i], math.Float32bits(float32(want[i])), d, rtol*mag[i])
		}
		bad++
	}
	if bad == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %d of %d elements differ:%s", what, bad, len(want), b.String())
}

// blockedName names element i of an NCHW8c tensor of c channels and h×w
// pixels.
func blockedName(i, c, h, w int) string {
	l, p := i%8, i/8
	x, y := p%w, p/w%h
	cb, n := p/(w*h)%(c/8), p/(w*h*c/8)
	return fmt.Sprintf("(n=%d c=%d h=%d w=%d)", n, cb*8+l, y, x)
}

// TestPackConv1x1Weights walks the packed layout in storage order,
// [Cout/8][Cin][8 co], and checks each element against the plain
// [Cout][Cin] weight it must hold; then unpacks.
func TestPackConv1x1Weights(t *testing.T) {
	for _, d := range [][2]int{{8, 8}, {16, 24}, {40, 8}} {
		cout, cin := d[0], d[1]
		src := make([]float32, cout*cin)
		for i := range src {
			src[i] = float32(i)
		}
		dst := make([]float32, len(src))
		must(t, PackConv1x1Weights(dst, src, cout, cin))
		at := 0
		for ob := range cout / 8 {
			for ci := range cin {
				for co := range 8 {
					if want := src[(ob*8+co)*cin+ci]; dst[at] != want {
						t.Fatalf("%dx%d: packed[%d] = %v, want w[%d][%d] = %v", cout, cin, at, dst[at], ob*8+co, ci, want)
					}
					at++
				}
			}
		}
		back := make([]float32, len(src))
		must(t, UnpackConv1x1Weights(back, dst, cout, cin))
		if !slices.Equal(back, src) {
			t.Errorf("%dx%d: unpack(pack(w)) != w", cout, cin)
		}
	}
}

// TestHelperErrors checks that the packing helpers reject bad shapes and
// lengths with an error naming the helper, and never panic.
func TestHelperErrors(t *testing.T) {
	s := make([]float32, 64)
	for name, err := range map[string]error{
		"PackConv1x1Weights":   PackConv1x1Weights(s, s, 12, 8),
		"UnpackConv1x1Weights": UnpackConv1x1Weights(s, s[:10], 8, 8),
	} {
		if err == nil {
			t.Errorf("%s accepted bad arguments", name)
		} else if !strings.HasPrefix(err.Error(), name+":") {
			t.Errorf("%s: error %q does not name it", name, err)
		}
	}
	if err := PackConv1x1Weights(s, s, 8, 8); err != nil {
		t.Errorf("PackConv1x1Weights rejected a good shape: %v", err)
	}
}

// TestPeakFMA checks the peak loop's arithmetic, assembly and twin: with
// a*b = 1/8, every accumulator holds n/8 after n iterations, exactly.
func TestPeakFMA(t *testing.T) {
	requireAsm(t)
	type peakFunc func(n int, a, b float32) float32
	impls := map[string]peakFunc{"PeakFMA": PeakFMA, "twin": peakFMAGo}
	if asmRunnable {
		impls["asm"] = peakFMAAVX2
	}
	for name, f := range impls {
		for _, c := range []struct {
			n    int
			want float32
		}{{0, 0}, {-3, 0}, {1, 12.0 / 8}, {1000, 1500}} {
			if got := f(c.n, 0.5, 0.25); got != c.want {
				t.Errorf("%s(%d, 0.5, 0.25) = %v, want %v", name, c.n, got, c.want)
			}
		}
	}
}

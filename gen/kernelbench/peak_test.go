package kernelbench

import "testing"

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

// TestSingleCorePeak checks that the peak is measured once and is a
// rate: positive and finite, the same on the second call.
func TestSingleCorePeak(t *testing.T) {
	p := SingleCorePeakGFLOPS()
	if !(p > 0 && p < 1e6) {
		t.Fatalf("SingleCorePeakGFLOPS() = %v", p)
	}
	if q := SingleCorePeakGFLOPS(); q != p {
		t.Errorf("second call measured again: %v then %v", p, q)
	}
	t.Logf("single-core peak %.1f GFLOP/s (assembly: %v)", p, UsesAsm())
}

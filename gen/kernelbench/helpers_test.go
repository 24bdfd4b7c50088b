package kernelbench

import (
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// TestPackConv3x3Weights walks the packed layout in storage order,
// [Cout/8][Cin/8][3][3][8 ci][8 co], and checks each element against the
// plain [Cout][Cin][3][3] weight it must hold; then unpacks.
func TestPackConv3x3Weights(t *testing.T) {
	for _, d := range [][2]int{{8, 8}, {16, 24}, {40, 8}} {
		cout, cin := d[0], d[1]
		src := make([]float32, cout*cin*9)
		for i := range src {
			src[i] = float32(i)
		}
		dst := make([]float32, len(src))
		must(t, PackConv3x3Weights(dst, src, cout, cin))
		at := 0
		for ob := range cout / 8 {
			for ib := range cin / 8 {
				for k := range 9 {
					for ci := range 8 {
						for co := range 8 {
							if want := src[((ob*8+co)*cin+ib*8+ci)*9+k]; dst[at] != want {
								t.Fatalf("%dx%d: packed[%d] = %v, want w[%d][%d][%d][%d] = %v",
									cout, cin, at, dst[at], ob*8+co, ib*8+ci, k/3, k%3, want)
							}
							at++
						}
					}
				}
			}
		}
		back := make([]float32, len(src))
		must(t, UnpackConv3x3Weights(back, dst, cout, cin))
		if !slices.Equal(back, src) {
			t.Errorf("%dx%d: unpack(pack(w)) != w", cout, cin)
		}
	}
}

// TestNCHW8c does the same for activations, [N][C/8][H][W][8].
func TestNCHW8c(t *testing.T) {
	n, c, h, w := 2, 16, 3, 5
	src := make([]float32, n*c*h*w)
	for i := range src {
		src[i] = float32(i)
	}
	dst := make([]float32, len(src))
	must(t, ToNCHW8c(dst, src, n, c, h, w))
	at := 0
	for in := range n {
		for cb := range c / 8 {
			for p := range h * w {
				for l := range 8 {
					if want := src[(in*c+cb*8+l)*h*w+p]; dst[at] != want {
						t.Fatalf("blocked[%d] = %v, want x[%d][%d] pixel %d = %v", at, dst[at], in, cb*8+l, p, want)
					}
					at++
				}
			}
		}
	}
	back := make([]float32, len(src))
	must(t, FromNCHW8c(back, dst, n, c, h, w))
	if !slices.Equal(back, src) {
		t.Error("FromNCHW8c(ToNCHW8c(x)) != x")
	}
}

// TestHelperErrors checks that the exported helpers reject bad shapes
// and lengths with an error naming the helper, and never panic.
func TestHelperErrors(t *testing.T) {
	s72 := make([]float32, 72*8)
	for name, err := range map[string]error{
		"PackConv3x3Weights":   PackConv3x3Weights(s72, s72, 12, 8),
		"UnpackConv3x3Weights": UnpackConv3x3Weights(s72, s72[:10], 8, 8),
		"ToNCHW8c":             ToNCHW8c(s72, s72, 1, 4, 3, 3),
		"FromNCHW8c":           FromNCHW8c(s72, s72[:8], 1, 8, 3, 3),
		"ReduceStats":          ReduceStats(s72, 2, 8, make([]float32, 7), make([]float32, 8)),
	} {
		if err == nil {
			t.Errorf("%s accepted bad arguments", name)
		} else if !strings.HasPrefix(err.Error(), name+":") {
			t.Errorf("%s: error %q does not name it", name, err)
		}
	}
	if err := PackConv3x3Weights(make([]float32, 8*16*9), make([]float32, 8*16*9), 8, 16); err != nil {
		t.Errorf("PackConv3x3Weights rejected a good shape: %v", err)
	}
}

// TestReduceStats checks the reduction against sums written out by hand,
// with values whose float32 sum would lose the small terms.
func TestReduceStats(t *testing.T) {
	const n, c = 3, 8
	stats := make([]float32, n*2*c)
	for i := range n {
		for ch := range c {
			stats[i*2*c+ch] = float32(ch+1) * []float32{1e8, 1, -1e8}[i]
			stats[i*2*c+c+ch] = float32(i + ch)
		}
	}
	sum, sumsq := make([]float32, c), make([]float32, c)
	must(t, ReduceStats(stats, n, c, sum, sumsq))
	for ch := range c {
		if want := float32(ch + 1); sum[ch] != want {
			t.Errorf("sum[%d] = %v, want %v (added in float64)", ch, sum[ch], want)
		}
		if want := float32(0 + 1 + 2 + 3*ch); sumsq[ch] != want {
			t.Errorf("sumsq[%d] = %v, want %v", ch, sumsq[ch], want)
		}
	}
}

// TestAlignedFloats checks the alignment the benchmarks rely on.
func TestAlignedFloats(t *testing.T) {
	for n := range 40 {
		s := AlignedFloats(n + 1)
		if len(s) != n+1 || cap(s) != n+1 {
			t.Fatalf("AlignedFloats(%d): len %d cap %d", n+1, len(s), cap(s))
		}
		if addr := uintptr(unsafe.Pointer(&s[0])); addr%32 != 0 {
			t.Fatalf("AlignedFloats(%d) at %#x, not 32-byte aligned", n+1, addr)
		}
	}
}

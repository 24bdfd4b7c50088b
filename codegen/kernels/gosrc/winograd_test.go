package gosrc

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// gemm1x1 is a plain 1x1 convolution of one image of cin channels and p
// pixels, weights in the 1x1 layout [cout/8][cin][8]: the GEMM the
// Winograd kernels hand to the package's 1x1 kernel.
func gemm1x1(cin, cout, p int) Conv3x3Func {
	return func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int) {
		if n0 != 0 || n1 != 1 || len(x) != cin*p || len(w) != cin*cout || len(y) != cout*p {
			panic(fmt.Sprintf("gemm1x1: %d, %d, %d floats, images [%d, %d)", len(x), len(w), len(y), n0, n1))
		}
		for ob := range cout / 8 {
			for q := range p {
				for l := range 8 {
					var acc float32
					for ci := range cin {
						acc += x[((ci/8)*p+q)*8+ci%8] * w[(ob*cin+ci)*8+l]
					}
					y[(ob*p+q)*8+l] = acc
				}
			}
		}
	}
}

// directConv is the oracle: the convolution of s in float64 from plain
// weights [cout][cin][3][3], on the blocked layout.
func directConv(s *WinogradShape, x, w, bias, scale, shift, res []float32) []float64 {
	y := make([]float64, s.YLen())
	cib, cob := s.Cin/8, s.Cout/8
	in := func(n, c, i, j int) float64 {
		if i < 0 || i >= s.H || j < 0 || j >= s.W {
			return 0
		}
		v := float64(x[(((n*cib+c/8)*s.H+i)*s.W+j)*8+c%8])
		switch s.Prologue {
		case "relu":
			v = math.Max(v, 0)
		case "affine_relu":
			v = math.Max(float64(scale[c])*v+float64(shift[c]), 0)
		}
		return v
	}
	for n := range s.N {
		for o := range s.Cout {
			for i := range s.H {
				for j := range s.W {
					var acc float64
					for c := range s.Cin {
						for kh := range 3 {
							for kw := range 3 {
								acc += in(n, c, i+kh-1, j+kw-1) * float64(w[((o*s.Cin+c)*3+kh)*3+kw])
							}
						}
					}
					at := (((n*cob+o/8)*s.H+i)*s.W+j)*8 + o%8
					if s.Bias {
						acc += float64(bias[o])
					}
					if s.Residual {
						acc += float64(res[at])
					}
					if s.ReLU {
						acc = math.Max(acc, 0)
					}
					y[at] = acc
				}
			}
		}
	}
	return y
}

// TestWinogradMatchesDirect runs the Winograd twins on shapes whose sides
// are not multiples of the tile (and smaller than one), with groups that
// do not divide the batch, every prologue and epilogue, and compares each
// output with the direct convolution in float64.
func TestWinogradMatchesDirect(t *testing.T) {
	shapes := []WinogradShape{
		{N: 1, Cin: 8, Cout: 8, H: 4, W: 4, Group: 1},
		{N: 3, Cin: 16, Cout: 8, H: 5, W: 9, Group: 2, Prologue: "affine_relu", Bias: true, Residual: true, ReLU: true},
		{N: 2, Cin: 8, Cout: 24, H: 7, W: 7, Group: 1, Prologue: "relu", ReLU: true},
		{N: 2, Cin: 24, Cout: 16, H: 1, W: 1, Group: 2, Bias: true},
		{N: 3, Cin: 8, Cout: 8, H: 2, W: 3, Group: 3, Residual: true},
		{N: 4, Cin: 16, Cout: 16, H: 8, W: 8, Group: 3, Prologue: "affine_relu", Bias: true, ReLU: true, Stats: true},
		{N: 1, Cin: 16, Cout: 16, H: 12, W: 6, Group: 1, Residual: true, ReLU: true},
		{N: 3, Cin: 8, Cout: 16, H: 7, W: 9, Group: 2, Prologue: "relu", Residual: true, Stats: true},
	}
	for i := range shapes {
		s := &shapes[i]
		s.Name = fmt.Sprintf("N%dC%dK%dH%dW%dG%d%s", s.N, s.Cin, s.Cout, s.H, s.W, s.Group, s.Prologue)
		t.Run(s.Name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(i), 9))
			fill := func(n int) []float32 {
				v := make([]float32, n)
				for j := range v {
					v[j] = float32(r.Float64()*2 - 1)
				}
				return v
			}
			x, w := fill(s.XLen()), fill(s.Cout*s.Cin*9)
			bias, scale, shift, res := fill(s.Cout), fill(s.Cin), fill(s.Cin), fill(s.YLen())
			packed := make([]float32, s.WLen())
			if err := PackWinogradWeights(packed, w, s.Cout, s.Cin); err != nil {
				t.Fatal(err)
			}
			want := directConv(s, x, w, bias, scale, shift, res)
			y := make([]float32, s.YLen())
			for j := range y {
				y[j] = float32(math.NaN())
			}
			scratch := fill(s.ScratchLen()) // stale data must not matter
			stats := fill(s.StatsLen())     // overwritten, not added to
			gemm := gemm1x1(s.Cin, s.Cout, s.Tiles())
			// Two calls, split unevenly, as two workers would run them.
			split := s.N / 2
			winograd(s, &winoTransformsGo, gemm, x, packed, bias, scale, shift, res, y, stats, scratch, 0, split)
			winograd(s, &winoTransformsGo, gemm, x, packed, bias, scale, shift, res, y, stats, scratch, split, s.N)
			bad := 0
			for j, v := range y {
				// F(4x4, 3x3) in float32 loses a few bits to its
				// transforms: errors stay within 1e-5 of the
				// magnitude of the sum of 9*Cin products of values in [-1, 1].
				if d := math.Abs(float64(v) - want[j]); !(d <= 1e-5*float64(9*s.Cin)) {
					if bad < 5 {
						t.Errorf("y[%d] = %v, want %v", j, v, want[j])
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d outputs differ", bad, len(y))
			}
			if !s.Stats {
				return
			}
			hw := s.H * s.W
			for n := range s.N {
				for c := range s.Cout {
					var sum, sumsq, mag float64
					for p := range hw {
						v := want[((n*(s.Cout/8)+c/8)*hw+p)*8+c%8]
						sum, sumsq, mag = sum+v, sumsq+v*v, mag+math.Abs(v)+v*v
					}
					got := stats[n*2*s.Cout:]
					if math.Abs(float64(got[c])-sum) > 1e-4*(mag+1) || math.Abs(float64(got[s.Cout+c])-sumsq) > 1e-4*(mag+1) {
						t.Errorf("image %d channel %d: sums %v, %v, want %v, %v", n, c, got[c], got[s.Cout+c], sum, sumsq)
					}
				}
			}
		})
	}
}

// TestPackWinogradWeightsErrors checks the shape errors of the packing.
func TestPackWinogradWeightsErrors(t *testing.T) {
	if err := PackWinogradWeights(make([]float32, 36*64), make([]float32, 9*64), 8, 8); err != nil {
		t.Fatalf("8 to 8 channels: %v", err)
	}
	for _, c := range []struct{ cout, cin, dst, src int }{
		{8, 4, 36 * 32, 9 * 32},
		{8, 8, 36 * 64, 9 * 63},
		{8, 8, 36*64 - 1, 9 * 64},
	} {
		if err := PackWinogradWeights(make([]float32, c.dst), make([]float32, c.src), c.cout, c.cin); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

// TestPackWinogradDxWeights checks the backward-data packing against
// PackWinogradWeights of the kernel rotated by 180° with its channels
// swapped, written out index by index.
func TestPackWinogradDxWeights(t *testing.T) {
	const cout, cin = 16, 24
	r := rand.New(rand.NewPCG(3, 3))
	w := make([]float32, cout*cin*9)
	for i := range w {
		w[i] = float32(r.Float64()*2 - 1)
	}
	rot := make([]float32, len(w)) // [cin][cout][3][3]
	for o := range cout {
		for i := range cin {
			for kh := range 3 {
				for kw := range 3 {
					rot[((i*cout+o)*3+kh)*3+kw] = w[((o*cin+i)*3+2-kh)*3+2-kw]
				}
			}
		}
	}
	want, got := make([]float32, 36*cout*cin), make([]float32, 36*cout*cin)
	if err := PackWinogradWeights(want, rot, cin, cout); err != nil {
		t.Fatal(err)
	}
	if err := PackWinogradDxWeights(got, w, cout, cin); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if err := PackWinogradDxWeights(got[1:], w, cout, cin); err == nil {
		t.Error("short dst: no error")
	}
}

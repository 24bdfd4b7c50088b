package gosrc

import (
	"fmt"
	"math"
	"runtime"
	"time"
	"unsafe"
)

// Conv3x3Func is the signature shared by every 3x3 conv kernel, assembly
// and twin: input x (NCHW8c), packed weights w (OIhw8i8o), the optional
// per-channel bias, prologue scale and shift, residual res (shaped like
// y), output y (NCHW8c), per-image statistics and the caller's scratch.
// It computes images [n0, n1); slices a kernel's flags do not use may be
// nil.
type Conv3x3Func func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int)

// Conv3x3Shape is the shape and fusion of one generated 3x3 conv kernel
// (padding 1): the attributes of the IR op conv2d_fused it implements.
type Conv3x3Shape struct {
	Name                                   string
	N, Cin, Cout, H, W, Stride, OutH, OutW int
	Prologue                               string // none, relu or affine_relu
	Bias, Residual, ReLU, Stats            bool
	Tiles                                  string // the assembly's register tiles
}

// Conv3x3Kernel is one generated 3x3 conv kernel: its shape and its entry
// points, for tests and benchmarks that go over every kernel.
type Conv3x3Kernel struct {
	Conv3x3Shape
	Run Conv3x3Func // checks its arguments, then runs Asm or Go
	Go  Conv3x3Func // the pure-Go twin
	Asm Conv3x3Func // the assembly; nil when the build has none
}

// XLen is the length of the kernel's input.
func (s *Conv3x3Shape) XLen() int { return s.N * s.Cin * s.H * s.W }

// WLen is the length of its packed weights.
func (s *Conv3x3Shape) WLen() int { return s.Cout * s.Cin * 9 }

// YLen is the length of its output (and residual).
func (s *Conv3x3Shape) YLen() int { return s.N * s.Cout * s.OutH * s.OutW }

// StatsLen is the length of its per-image statistics, [N][2][Cout]: Σy
// then Σy² for each image.
func (s *Conv3x3Shape) StatsLen() int { return s.N * 2 * s.Cout }

// ScratchLen is the length of the scratch each concurrent call needs: the
// prologue's output for one image with a zero border, [Cin/8][H+2][W+2][8].
func (s *Conv3x3Shape) ScratchLen() int { return s.Cin * (s.H + 2) * (s.W + 2) }

// FLOPs is the number of floating-point operations of the whole batch,
// two per multiply-add.
func (s *Conv3x3Shape) FLOPs() float64 {
	return 2 * float64(s.N) * float64(s.Cout) * float64(s.OutH*s.OutW) * float64(s.Cin) * 9
}

// checkConv3x3 panics when a kernel's arguments do not fit its shape. The
// callers are generated with the shapes baked in, so a mismatch is a bug
// in the generator, and the assembly would read or write out of bounds.
func checkConv3x3(s *Conv3x3Shape, x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int) {
	need := func(what string, got, want int) {
		if got < want {
			panic(fmt.Sprintf("BUG: %s: %s has length %d, want at least %d", s.Name, what, got, want))
		}
	}
	need("x", len(x), s.XLen())
	need("w", len(w), s.WLen())
	need("y", len(y), s.YLen())
	need("scratch", len(scratch), s.ScratchLen())
	if s.Bias {
		need("bias", len(bias), s.Cout)
	}
	if s.Prologue == "affine_relu" {
		need("scale", len(scale), s.Cin)
		need("shift", len(shift), s.Cin)
	}
	if s.Residual {
		need("res", len(res), s.YLen())
	}
	if s.Stats {
		need("stats", len(stats), s.StatsLen())
	}
	if n0 < 0 || n0 > n1 || n1 > s.N {
		panic(fmt.Sprintf("BUG: %s: images [%d, %d) outside [0, %d)", s.Name, n0, n1, s.N))
	}
}

// relu32 is the rectifier of the kernels: (0 > v) ? 0 : v, which is what
// VMAXPS computes with zero first, so a NaN passes through.
func relu32(v float32) float32 {
	if 0 > v {
		return 0
	}
	return v
}

// conv3x3Go is the pure-Go twin of every 3x3 conv kernel: the same
// computation in the same order as the assembly (scratch with zero
// border, then for each output element input-channel blocks, kernel rows,
// input channels and kernel columns, then bias, residual, ReLU, store and
// statistics pixel by pixel in row order), without fused multiply-adds.
func conv3x3Go(s *Conv3x3Shape, x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int) {
	cib, cob := s.Cin/8, s.Cout/8
	hp, wp := s.H+2, s.W+2
	plane := hp * wp * 8
	for b := range cib {
		for i := range hp {
			for j := range wp {
				if i == 0 || i == hp-1 || j == 0 || j == wp-1 {
					clear(scratch[b*plane+(i*wp+j)*8:][:8])
				}
			}
		}
	}
	for n := n0; n < n1; n++ {
		for b := range cib {
			for i := range s.H {
				for j := range s.W {
					src := x[(((n*cib+b)*s.H+i)*s.W+j)*8:][:8]
					dst := scratch[b*plane+((i+1)*wp+j+1)*8:][:8]
					for l, v := range src {
						switch s.Prologue {
						case "relu":
							v = relu32(v)
						case "affine_relu":
							v = relu32(scale[b*8+l]*v + shift[b*8+l])
						}
						dst[l] = v
					}
				}
			}
		}
		var part []float32
		if s.Stats {
			part = stats[n*2*s.Cout:][:2*s.Cout]
			clear(part)
		}
		for ob := range cob {
			for oh := range s.OutH {
				for ow := range s.OutW {
					var acc [8]float32
					for b := range cib {
						for kh := range 3 {
							row := scratch[b*plane+((oh*s.Stride+kh)*wp+ow*s.Stride)*8:]
							tap := w[((ob*cib+b)*3+kh)*3*64:]
							for ci := range 8 {
								for kw := range 3 {
									a := row[kw*8+ci]
									wv := tap[(kw*8+ci)*8:][:8]
									for l := range acc {
										acc[l] += a * wv[l]
									}
								}
							}
						}
					}
					at := (((n*cob+ob)*s.OutH+oh)*s.OutW + ow) * 8
					out := y[at:][:8]
					for l, v := range acc {
						if s.Bias {
							v += bias[ob*8+l]
						}
						if s.Residual {
							v += res[at+l]
						}
						if s.ReLU {
							v = relu32(v)
						}
						out[l] = v
						if s.Stats {
							part[ob*8+l] += v
							part[s.Cout+ob*8+l] += v * v
						}
					}
				}
			}
		}
	}
}

// PackConv3x3Weights packs plain [cout][cin][3][3] weights into the
// kernels' OIhw8i8o layout, [cout/8][cin/8][3][3][8 ci][8 co]: the eight
// output channels of one input channel and tap are one vector.
func PackConv3x3Weights(dst, src []float32, cout, cin int) error {
	if err := checkPacked("PackConv3x3Weights", dst, src, cout, cin); err != nil {
		return err
	}
	for o := range cout {
		for i := range cin {
			for k := range 9 {
				dst[packedIndex(o, i, k, cin)] = src[(o*cin+i)*9+k]
			}
		}
	}
	return nil
}

// UnpackConv3x3Weights is the inverse of PackConv3x3Weights.
func UnpackConv3x3Weights(dst, src []float32, cout, cin int) error {
	if err := checkPacked("UnpackConv3x3Weights", src, dst, cout, cin); err != nil {
		return err
	}
	for o := range cout {
		for i := range cin {
			for k := range 9 {
				dst[(o*cin+i)*9+k] = src[packedIndex(o, i, k, cin)]
			}
		}
	}
	return nil
}

// packedIndex is the OIhw8i8o index of weight (o, i, k), k = kh*3+kw.
func packedIndex(o, i, k, cin int) int {
	return ((((o/8)*(cin/8)+i/8)*9+k)*8+i%8)*8 + o%8
}

func checkPacked(fn string, packed, plain []float32, cout, cin int) error {
	switch {
	case cout <= 0 || cin <= 0 || cout%8 != 0 || cin%8 != 0:
		return fmt.Errorf("%s: %d output and %d input channels, want positive multiples of 8", fn, cout, cin)
	case len(packed) != cout*cin*9 || len(plain) != cout*cin*9:
		return fmt.Errorf("%s: lengths %d and %d, want %d for %dx%dx3x3", fn, len(packed), len(plain), cout*cin*9, cout, cin)
	}
	return nil
}

// ToNCHW8c copies a plain NCHW tensor into the blocked NCHW8c layout,
// [n][c/8][h][w][8].
func ToNCHW8c(dst, src []float32, n, c, h, w int) error {
	if err := checkBlocked("ToNCHW8c", dst, src, n, c, h, w); err != nil {
		return err
	}
	for i := range n * c * h * w {
		dst[blockedIndex(i, c, h*w)] = src[i]
	}
	return nil
}

// FromNCHW8c is the inverse of ToNCHW8c.
func FromNCHW8c(dst, src []float32, n, c, h, w int) error {
	if err := checkBlocked("FromNCHW8c", dst, src, n, c, h, w); err != nil {
		return err
	}
	for i := range n * c * h * w {
		dst[i] = src[blockedIndex(i, c, h*w)]
	}
	return nil
}

// blockedIndex maps the plain NCHW index i of a tensor with c channels of
// hw pixels to its NCHW8c index.
func blockedIndex(i, c, hw int) int {
	n, ch, p := i/(c*hw), i/hw%c, i%hw
	return ((n*(c/8)+ch/8)*hw+p)*8 + ch%8
}

func checkBlocked(fn string, dst, src []float32, n, c, h, w int) error {
	switch {
	case n <= 0 || h <= 0 || w <= 0 || c <= 0 || c%8 != 0:
		return fmt.Errorf("%s: shape [%d,%d,%d,%d], want positive dimensions and channels a multiple of 8", fn, n, c, h, w)
	case len(dst) != n*c*h*w || len(src) != n*c*h*w:
		return fmt.Errorf("%s: lengths %d and %d, want %d for [%d,%d,%d,%d]", fn, len(dst), len(src), n*c*h*w, n, c, h, w)
	}
	return nil
}

// ReduceStats adds the per-image statistics of images [0, n) of a kernel
// with c output channels (stats[i][0][ch] = Σy, stats[i][1][ch] = Σy²)
// into sum and sumsq. It adds in float64 and in image order, so the
// result does not depend on how the images were split over goroutines.
func ReduceStats(stats []float32, n, c int, sum, sumsq []float32) error {
	if n <= 0 || c <= 0 || len(stats) < n*2*c || len(sum) != c || len(sumsq) != c {
		return fmt.Errorf("ReduceStats: %d images of %d channels with lengths %d, %d, %d", n, c, len(stats), len(sum), len(sumsq))
	}
	for ch := range c {
		var s, q float64
		for i := range n {
			s += float64(stats[i*2*c+ch])
			q += float64(stats[i*2*c+c+ch])
		}
		sum[ch], sumsq[ch] = float32(s), float32(q)
	}
	return nil
}

// AlignedFloats returns a zeroed slice of n float32 whose first element
// is 32-byte aligned, so that no vector of eight lanes at a multiple of 8
// straddles two cache lines.
func AlignedFloats(n int) []float32 {
	s := make([]float32, n+8)
	off := int(uintptr(unsafe.Pointer(&s[0])) % 32 / 4)
	if off != 0 {
		off = 8 - off
	}
	return s[off : off+n : off+n]
}

// measurePeakGFLOPS runs run(iters) repeatedly on one locked OS thread for
// about 50 ms and returns the best rate seen, in GFLOP/s: the best rather
// than the mean, so that another process stealing the core for a moment
// does not lower it.
func measurePeakGFLOPS(run func(iters int), flopsPerIter int) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	iters := 1 << 10
	for {
		t0 := time.Now()
		run(iters)
		if time.Since(t0) > time.Millisecond || iters >= 1<<30 {
			break
		}
		iters *= 2
	}
	best := 0.0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		t0 := time.Now()
		run(iters)
		if d := time.Since(t0).Seconds(); d > 0 {
			best = math.Max(best, float64(iters)*float64(flopsPerIter)/d/1e9)
		}
	}
	return best
}

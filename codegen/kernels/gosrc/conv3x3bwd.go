package gosrc

import "fmt"

// Conv3x3DxFunc is the signature shared by every 3x3 backward-data kernel,
// assembly and twin: the output gradient dy (NCHW8c), the conv's weights
// packed by PackConv3x3DxWeights, the input gradient dx (NCHW8c, which it
// overwrites) and the caller's scratch, for images [n0, n1). dy and dx
// need hold only the images up to n1: a caller may pass views that start
// at image k and ask for images [0, n1-k).
type Conv3x3DxFunc func(dy, w, dx, scratch []float32, n0, n1 int)

// Conv3x3DxShape is the shape of one generated backward-data kernel: that
// of the forward conv (padding 1) whose input gradient it computes, x
// [N, Cin, H, W] to y [N, Cout, OutH, OutW].
type Conv3x3DxShape struct {
	Name                                   string
	N, Cin, Cout, H, W, Stride, OutH, OutW int
	Tiles                                  string // the assembly's register tiles
}

// Conv3x3DxKernel is one generated backward-data kernel and its entry
// points, for tests and benchmarks that go over every kernel.
type Conv3x3DxKernel struct {
	Conv3x3DxShape
	Run Conv3x3DxFunc // checks its arguments, then runs Asm or Go
	Go  Conv3x3DxFunc // the pure-Go twin
	Asm Conv3x3DxFunc // the assembly; nil when the build has none
}

// DyLen is the length of the kernel's output gradient dy.
func (s *Conv3x3DxShape) DyLen() int { return s.N * s.Cout * s.OutH * s.OutW }

// WLen is the length of its packed weights.
func (s *Conv3x3DxShape) WLen() int { return s.Cout * s.Cin * 9 }

// DxLen is the length of the input gradient it writes.
func (s *Conv3x3DxShape) DxLen() int { return s.N * s.Cin * s.H * s.W }

// ScratchLen is the length of the scratch each concurrent call needs: one
// image of dy with a zero border, [Cout/8][OutH+2][OutW+2][8].
func (s *Conv3x3DxShape) ScratchLen() int { return s.Cout * (s.OutH + 2) * (s.OutW + 2) }

// FLOPs is the work of the whole batch, that of the forward conv.
func (s *Conv3x3DxShape) FLOPs() float64 {
	return 2 * float64(s.N) * float64(s.Cout) * float64(s.OutH*s.OutW) * float64(s.Cin) * 9
}

// checkConv3x3Dx panics when a kernel's arguments do not fit its shape:
// the callers are generated with the shapes baked in, so a mismatch is a
// bug in the generator, and the assembly would go out of bounds.
func checkConv3x3Dx(s *Conv3x3DxShape, dy, w, dx, scratch []float32, n0, n1 int) {
	need := func(what string, got, want int) {
		if got < want {
			panic(fmt.Sprintf("BUG: %s: %s has length %d, want at least %d", s.Name, what, got, want))
		}
	}
	if n0 < 0 || n0 > n1 || n1 > s.N {
		panic(fmt.Sprintf("BUG: %s: images [%d, %d) outside [0, %d)", s.Name, n0, n1, s.N))
	}
	need("dy", len(dy), n1*(s.DyLen()/s.N))
	need("w", len(w), s.WLen())
	need("dx", len(dx), n1*(s.DxLen()/s.N))
	need("scratch", len(scratch), s.ScratchLen())
}

// zeroBorder zeroes the one-pixel border of the blocks [c/8][h+2][w+2][8]
// of scratch.
func zeroBorder(scratch []float32, c, h, w int) {
	hp, wp := h+2, w+2
	for b := range c / 8 {
		for i := range hp {
			for j := range wp {
				if i == 0 || i == hp-1 || j == 0 || j == wp-1 {
					clear(scratch[(b*hp*wp+i*wp+j)*8:][:8])
				}
			}
		}
	}
}

// prologueInto writes prologue(x) of image n, x being [*][c/8][h][w][8],
// into the interior of the blocks [c/8][h+2][w+2][8] of scratch, as the
// forward twin does.
func prologueInto(scratch, x, scale, shift []float32, prologue string, n, c, h, w int) {
	wp := w + 2
	for b := range c / 8 {
		for i := range h {
			for j := range w {
				src := x[(((n*(c/8)+b)*h+i)*w+j)*8:][:8]
				dst := scratch[(b*(h+2)*wp+(i+1)*wp+j+1)*8:][:8]
				for l, v := range src {
					switch prologue {
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
}

// dxTap is one tap of a stride-2 phase: the padded dy pixel (dr, dc) from
// the phase pixel's origin and the rotated kernel tap k.
type dxTap struct{ dr, dc, k int }

// dxPhaseTaps are the taps of the four phases of a stride-2 dx, indexed
// by (h%2)*2 + w%2, in the order the assembly adds them: an even index
// takes the centre tap from the dy index below it, an odd one the two
// outer taps.
var dxPhaseTaps = [4][]dxTap{
	{{0, 0, 4}},
	{{0, 0, 3}, {0, 1, 5}},
	{{0, 0, 1}, {1, 0, 7}},
	{{0, 0, 0}, {0, 1, 2}, {1, 0, 6}, {1, 1, 8}},
}

// conv3x3DxGo is the pure-Go twin of every backward-data kernel, in the
// assembly's order without fused multiply-adds: dy copied into the
// scratch with a zero border; with stride 1 the forward twin's sums over
// the rotated kernel (dy blocks, kernel rows, dy channels, kernel
// columns); with stride 2, for each phase of dx, the sums over dy blocks,
// dy channels and the phase's taps.
func conv3x3DxGo(s *Conv3x3DxShape, dy, w, dx, scratch []float32, n0, n1 int) {
	kb, cb := s.Cout/8, s.Cin/8
	wp := s.OutW + 2
	plane := (s.OutH + 2) * wp * 8
	zeroBorder(scratch, s.Cout, s.OutH, s.OutW)
	for n := n0; n < n1; n++ {
		prologueInto(scratch, dy, nil, nil, "none", n, s.Cout, s.OutH, s.OutW)
		store := func(ob, h, v int, acc *[8]float32) {
			copy(dx[(((n*cb+ob)*s.H+h)*s.W+v)*8:][:8], acc[:])
		}
		if s.Stride == 1 {
			for ob := range cb {
				for h := range s.H {
					for v := range s.W {
						var acc [8]float32
						for b := range kb {
							for kh := range 3 {
								row := scratch[b*plane+((h+kh)*wp+v)*8:]
								tap := w[((ob*kb+b)*3+kh)*3*64:]
								for co := range 8 {
									for kw := range 3 {
										a := row[kw*8+co]
										wv := tap[(kw*8+co)*8:][:8]
										for l := range acc {
											acc[l] += a * wv[l]
										}
									}
								}
							}
						}
						store(ob, h, v, &acc)
					}
				}
			}
			continue
		}
		for phase, taps := range dxPhaseTaps {
			ph, pw := phase/2, phase%2
			rows, cols := (s.H-ph+1)/2, (s.W-pw+1)/2
			for ob := range cb {
				for a := range rows {
					for c := range cols {
						var acc [8]float32
						for b := range kb {
							for co := range 8 {
								for _, t := range taps {
									av := scratch[b*plane+((a+1+t.dr)*wp+c+1+t.dc)*8+co]
									wv := w[(((ob*kb+b)*9+t.k)*8+co)*8:][:8]
									for l := range acc {
										acc[l] += av * wv[l]
									}
								}
							}
						}
						store(ob, 2*a+ph, 2*c+pw, &acc)
					}
				}
			}
		}
	}
}

// PackConv3x3DxWeights packs the plain [cout][cin][3][3] weights of a conv
// for its backward-data kernels: OIhw8i8o of the transposed kernel
// rotated by 180°, [cin/8][cout/8][3][3][8 co][8 ci] with tap (kh, kw)
// holding w[co][ci][2-kh][2-kw], so that the kernel is a forward conv of
// dy producing the conv's input channels.
func PackConv3x3DxWeights(dst, src []float32, cout, cin int) error {
	if err := checkPacked("PackConv3x3DxWeights", dst, src, cout, cin); err != nil {
		return err
	}
	for o := range cout {
		for i := range cin {
			for k := range 9 {
				dst[packedIndex(i, o, 8-k, cout)] = src[(o*cin+i)*9+k]
			}
		}
	}
	return nil
}

// Conv3x3DwFunc is the signature shared by every 3x3 backward-weights
// kernel, assembly and twin: the conv's input x and output gradient dy
// (NCHW8c), the prologue's per-channel scale and shift (nil unless
// affine_relu), the partial weight gradient dw it adds into (OIhw8o8i,
// see SumConv3x3Dw) and the caller's scratch, for images [n0, n1). x and
// dy need hold only the images up to n1, as for Conv3x3DxFunc.
type Conv3x3DwFunc func(x, dy, scale, shift, dw, scratch []float32, n0, n1 int)

// Conv3x3DwShape is the shape of one generated backward-weights kernel:
// that of the forward conv (padding 1), x [N, Cin, H, W] to dy [N, Cout,
// OutH, OutW], and the prologue it recomputes from x.
type Conv3x3DwShape struct {
	Name                                   string
	N, Cin, Cout, H, W, Stride, OutH, OutW int
	Prologue                               string // none, relu or affine_relu
}

// Conv3x3DwKernel is one generated backward-weights kernel and its entry
// points, for tests and benchmarks that go over every kernel.
type Conv3x3DwKernel struct {
	Conv3x3DwShape
	Run Conv3x3DwFunc // checks its arguments, then runs Asm or Go
	Go  Conv3x3DwFunc // the pure-Go twin
	Asm Conv3x3DwFunc // the assembly; nil when the build has none
}

// XLen is the length of the conv's input.
func (s *Conv3x3DwShape) XLen() int { return s.N * s.Cin * s.H * s.W }

// DyLen is the length of its output gradient.
func (s *Conv3x3DwShape) DyLen() int { return s.N * s.Cout * s.OutH * s.OutW }

// DwLen is the length of a partial weight gradient.
func (s *Conv3x3DwShape) DwLen() int { return s.Cout * s.Cin * 9 }

// ScratchLen is the length of the scratch each concurrent call needs:
// prologue(x) of one image with a zero border, [Cin/8][H+2][W+2][8].
func (s *Conv3x3DwShape) ScratchLen() int { return s.Cin * (s.H + 2) * (s.W + 2) }

// FLOPs is the work of the whole batch, that of the forward conv.
func (s *Conv3x3DwShape) FLOPs() float64 {
	return 2 * float64(s.N) * float64(s.Cout) * float64(s.OutH*s.OutW) * float64(s.Cin) * 9
}

// checkConv3x3Dw panics when a kernel's arguments do not fit its shape.
func checkConv3x3Dw(s *Conv3x3DwShape, x, dy, scale, shift, dw, scratch []float32, n0, n1 int) {
	need := func(what string, got, want int) {
		if got < want {
			panic(fmt.Sprintf("BUG: %s: %s has length %d, want at least %d", s.Name, what, got, want))
		}
	}
	if n0 < 0 || n0 > n1 || n1 > s.N {
		panic(fmt.Sprintf("BUG: %s: images [%d, %d) outside [0, %d)", s.Name, n0, n1, s.N))
	}
	need("x", len(x), n1*(s.XLen()/s.N))
	need("dy", len(dy), n1*(s.DyLen()/s.N))
	need("dw", len(dw), s.DwLen())
	need("scratch", len(scratch), s.ScratchLen())
	if s.Prologue == "affine_relu" {
		need("scale", len(scale), s.Cin)
		need("shift", len(shift), s.Cin)
	}
}

// conv3x3DwGo is the pure-Go twin of every backward-weights kernel, in
// the assembly's order without fused multiply-adds: prologue(x) into the
// scratch with a zero border, then for each image and each weight vector
// dw[co][ci-block][kh][kw][8 ci] the sum over the image's pixels in row
// order, added to the partial once per image.
func conv3x3DwGo(s *Conv3x3DwShape, x, dy, scale, shift, dw, scratch []float32, n0, n1 int) {
	cib, cob := s.Cin/8, s.Cout/8
	wp := s.W + 2
	plane := (s.H + 2) * wp * 8
	zeroBorder(scratch, s.Cin, s.H, s.W)
	for n := n0; n < n1; n++ {
		prologueInto(scratch, x, scale, shift, s.Prologue, n, s.Cin, s.H, s.W)
		for ob := range cob {
			dyb := dy[(n*cob+ob)*s.OutH*s.OutW*8:]
			for ib := range cib {
				for k := range 9 {
					kh, kw := k/3, k%3
					for co := range 8 {
						var acc [8]float32
						for oh := range s.OutH {
							row := scratch[ib*plane+(oh*s.Stride+kh)*wp*8:]
							for ow := range s.OutW {
								d := dyb[(oh*s.OutW+ow)*8+co]
								a := row[(ow*s.Stride+kw)*8:][:8]
								for l := range acc {
									acc[l] += d * a[l]
								}
							}
						}
						part := dw[(((ob*cib+ib)*9+k)*8+co)*8:][:8]
						for l := range acc {
							part[l] += acc[l]
						}
					}
				}
			}
		}
	}
}

// SumConv3x3Dw adds the partial weight gradients of a conv with cout
// output and cin input channels, in the order given (one per worker, in
// worker order), in float64, and writes the sum into dw in the packed
// OIhw8i8o layout of PackConv3x3Weights (UnpackConv3x3Weights gives the
// plain [cout][cin][3][3]). A partial is laid out OIhw8o8i,
// [cout/8][cin/8][3][3][8 co][8 ci]: the backward-weights kernels hold
// eight input channels per register. The fixed order makes the sum
// independent of how the batch was split, given the split.
func SumConv3x3Dw(dw []float32, parts [][]float32, cout, cin int) error {
	if err := checkPacked("SumConv3x3Dw", dw, dw, cout, cin); err != nil {
		return err
	}
	if len(parts) == 0 {
		return fmt.Errorf("SumConv3x3Dw: no partial sums")
	}
	for i, p := range parts {
		if len(p) != len(dw) {
			return fmt.Errorf("SumConv3x3Dw: partial %d has length %d, want %d", i, len(p), len(dw))
		}
	}
	for at := range dw {
		// at = ((ob*cib+ib)*9+k)*64 + ci*8 + co in dw; the partial swaps
		// the last two indices.
		from := at - at%64 + at%8*8 + at%64/8
		var s float64
		for _, p := range parts {
			s += float64(p[from])
		}
		dw[at] = float32(s)
	}
	return nil
}

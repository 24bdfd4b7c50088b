package gosrc

import "fmt"

// Winograd F(4x4, 3x3) (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016) computes a 4x4 tile of a stride-1
// 3x3 convolution from the 6x6 tile of its input with 36 multiplications
// per input and output channel pair instead of 144:
//
//	Y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B) ] A
//
// The 36 element-wise products summed over the input channels are 36
// independent GEMMs (one per point ξ of the 6x6 transform), each a 1x1
// convolution over the tiles, which the package's 1x1 kernel computes.
// The weights are transformed once, when they are packed; the input and
// output transforms run on the blocked layout, eight channels at a time.
//
// WinogradShape is the shape and fusion of one generated Winograd
// kernel: the IR op conv2d_fused with kernel 3, stride 1 and pad 1.
type WinogradShape struct {
	Name                        string
	N, Cin, Cout, H, W          int
	Prologue                    string // none, relu or affine_relu
	Bias, Residual, ReLU, Stats bool
	// Group is the number of images transformed together: their tiles
	// are the columns of one set of 36 GEMMs (Tiles of them).
	Group int
}

// WinogradKernel is one generated Winograd kernel: its shape and its
// entry points, for tests and benchmarks that go over every kernel.
type WinogradKernel struct {
	WinogradShape
	Run Conv3x3Func // checks its arguments, then runs with the assembly or the twins
	Go  Conv3x3Func // the pure-Go twins: transforms and GEMM
}

// TilesH and TilesW are the 4x4 output tiles down and across an image:
// the last ones are partial when H or W is not a multiple of 4.
func (s *WinogradShape) TilesH() int { return (s.H + 3) / 4 }
func (s *WinogradShape) TilesW() int { return (s.W + 3) / 4 }

// Tiles is the columns of each GEMM: the tiles of Group images.
func (s *WinogradShape) Tiles() int { return s.Group * s.TilesH() * s.TilesW() }

// padH and padW are the sides of an image in the scratch: one row and
// column of zeros before it, and enough after it that every tile's 6x6
// input is inside.
func (s *WinogradShape) padH() int { return 4*s.TilesH() + 2 }
func (s *WinogradShape) padW() int { return 4*s.TilesW() + 2 }

// XLen is the length of the kernel's input.
func (s *WinogradShape) XLen() int { return s.N * s.Cin * s.H * s.W }

// WLen is the length of its packed weights: 36 matrices of the 1x1
// layout, [36][Cout/8][Cin][8].
func (s *WinogradShape) WLen() int { return 36 * s.Cout * s.Cin }

// YLen is the length of its output (and residual).
func (s *WinogradShape) YLen() int { return s.N * s.Cout * s.H * s.W }

// WinoXiPad is the float32s between two points' matrices in the
// scratch, beyond their length: one cache line, so that the 36 vectors a
// transform reads or writes for one tile, a matrix apart, do not all
// fall into one set of the L1 cache when a matrix is a multiple of 4 KiB.
const WinoXiPad = 16

// vStride and mStride are the float32s from one point's matrix to the
// next in the transformed inputs and in the products.
func (s *WinogradShape) vStride() int { return s.Cin*s.Tiles() + WinoXiPad }
func (s *WinogradShape) mStride() int { return s.Cout*s.Tiles() + WinoXiPad }

// StatsLen is the length of its per-image statistics, [N][2][Cout]: Σy
// then Σy² for each image, as the direct kernels write them.
func (s *WinogradShape) StatsLen() int { return s.N * 2 * s.Cout }

// ScratchLen is the length of the scratch each concurrent call needs: a
// group of prologue(x) images with their zero borders, then the 36
// transformed inputs [36][Cin/8][Tiles][8] and the 36 products
// [36][Cout/8][Tiles][8], each matrix followed by WinoXiPad floats, and
// the 16 sums of one output transform call.
func (s *WinogradShape) ScratchLen() int {
	return s.Group*s.Cin*s.padH()*s.padW() + 36*(s.vStride()+s.mStride()) + 16
}

// FLOPs is the work of the direct convolution the kernel computes, two
// per multiply-add, so that its rate compares with the direct kernel's.
func (s *WinogradShape) FLOPs() float64 {
	return 2 * float64(s.N) * float64(s.Cout) * float64(s.H*s.W) * float64(s.Cin) * 9
}

// checkWinograd panics when a kernel's arguments do not fit its shape.
func checkWinograd(s *WinogradShape, x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int) {
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

// The modes of the prologue copy and the flags of the output transform,
// as the transforms (assembly and twins) take them.
const (
	winoCopyPlain  = 0
	winoCopyReLU   = 1
	winoCopyAffine = 2

	winoOutBias     = 1
	winoOutResidual = 2
	winoOutReLU     = 4
	winoOutStats    = 8
)

// winoTransforms are the three transforms, in assembly or in Go.
type winoTransforms struct {
	copyRow func(dst, src, scale, shift []float32, mode int)
	inRow   func(src, dst []float32, tiles, rowStride, xiStride int)
	outRow  func(m, y, bias, res, sums []float32, tiles, xiStride, rowStride, flags int)
}

// winoTransformsGo are the twins of the transforms.
var winoTransformsGo = winoTransforms{winoCopyRowGo, winoInRowGo, winoOutRowGo}

// winograd runs kernel s on images [n0, n1): for each group of images,
// the prologue into the scratch, the input transform of every tile, the
// 36 GEMMs of gemm (the 1x1 kernel of Cin to Cout channels over Tiles
// pixels) and the output transform with the epilogue (with Stats, each
// image's Σy and Σy² per channel into stats[n], in the order of its tiles),
// the transforms those of tr. The result does not depend on how the images are
// split between calls: each image's tiles are computed alike whatever the
// group holds.
func winograd(s *WinogradShape, tr *winoTransforms, gemm func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int), x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int) {
	checkWinograd(s, x, w, bias, scale, shift, res, y, stats, scratch, n0, n1)
	cib, cob := s.Cin/8, s.Cout/8
	th, tw, t := s.TilesH(), s.TilesW(), s.Tiles()
	ph, pw := s.padH(), s.padW()
	plane := ph * pw * 8
	padLen := s.Group * cib * plane
	pad := scratch[:padLen]
	vs, ms := s.vStride(), s.mStride()
	v := scratch[padLen:][:36*vs]
	m := scratch[padLen+36*vs:][:36*ms]
	mode := winoCopyPlain
	switch s.Prologue {
	case "relu":
		mode = winoCopyReLU
	case "affine_relu":
		mode = winoCopyAffine
	}
	flags := 0
	if s.Bias {
		flags |= winoOutBias
	}
	if s.Residual {
		flags |= winoOutResidual
	}
	if s.ReLU {
		flags |= winoOutReLU
	}
	if s.Stats {
		flags |= winoOutStats
	}
	sums := scratch[padLen+36*(vs+ms):][:16] // Σy and Σy² of one output transform call
	for g0 := n0; g0 < n1; g0 += s.Group {
		g1 := min(g0+s.Group, n1)
		for g := range g1 - g0 {
			n := g0 + g
			for b := range cib {
				p := pad[(g*cib+b)*plane:][:plane]
				clear(p[:pw*8])
				clear(p[(s.H+1)*pw*8:])
				var sc, sh []float32
				if mode == winoCopyAffine {
					sc, sh = scale[b*8:][:8], shift[b*8:][:8]
				}
				for i := range s.H {
					row := p[(i+1)*pw*8:][:pw*8]
					clear(row[:8])
					clear(row[(s.W+1)*8:])
					tr.copyRow(row[8:][:s.W*8], x[((n*cib+b)*s.H+i)*s.W*8:][:s.W*8], sc, sh, mode)
				}
				for ty := range th {
					tr.inRow(p[4*ty*pw*8:], v[(b*t+(g*th+ty)*tw)*8:], tw, pw*8, vs)
				}
			}
		}
		for xi := range 36 {
			gemm(v[xi*vs:][:s.Cin*t], w[xi*s.Cin*s.Cout:][:s.Cin*s.Cout], nil, nil, nil, nil,
				m[xi*ms:][:s.Cout*t], nil, nil, 0, 1)
		}
		full := s.W / 4
		for g := range g1 - g0 {
			n := g0 + g
			var part []float32
			if s.Stats {
				part = stats[n*2*s.Cout:][:2*s.Cout]
				clear(part)
			}
			for ob := range cob {
				var bi []float32
				if s.Bias {
					bi = bias[ob*8:][:8]
				}
				for ty := range th {
					rows := min(4, s.H-4*ty)
					at := ((n*cob+ob)*s.H + 4*ty) * s.W * 8
					mt := m[(ob*t+(g*th+ty)*tw)*8:]
					var rs []float32
					if s.Residual {
						rs = res[at:]
					}
					if rows == 4 && full > 0 {
						tr.outRow(mt, y[at:], bi, rs, sums, full, ms, s.W*8, flags)
						if s.Stats {
							winoAddSums(part, sums, ob, s.Cout)
						}
					}
					from := full
					if rows < 4 {
						from = 0
					}
					for tx := from; tx < tw; tx++ {
						var r []float32
						if s.Residual {
							r = rs[4*tx*8:]
						}
						clear(sums)
						winoOutTileGo(mt[tx*8:], y[at+4*tx*8:], bi, r, sums, ms, s.W*8, flags, rows, min(4, s.W-4*tx))
						if s.Stats {
							winoAddSums(part, sums, ob, s.Cout)
						}
					}
				}
			}
		}
	}
}

// winoAddSums adds the sums of one output transform call, Σy then Σy²
// of channel block ob, into an image's statistics [2][cout].
func winoAddSums(part, sums []float32, ob, cout int) {
	for l := range 8 {
		part[ob*8+l] += sums[l]
		part[cout+ob*8+l] += sums[8+l]
	}
}

// winoCopyRowGo is the twin of winoCopyRowAVX2: dst = prologue(src), the
// per-channel scale and shift (eight values) only for winoCopyAffine.
func winoCopyRowGo(dst, src, scale, shift []float32, mode int) {
	dst = dst[:len(src)]
	for i := 0; i < len(src); i += 8 {
		for l := range 8 {
			v := src[i+l]
			switch mode {
			case winoCopyReLU:
				v = relu32(v)
			case winoCopyAffine:
				v = relu32(scale[l]*v + shift[l])
			}
			dst[i+l] = v
		}
	}
}

// winoBt is the input transform of one line of six values, Bᵀd.
func winoBt(d *[6][8]float32) {
	for l := range 8 {
		d0, d1, d2, d3, d4, d5 := d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]
		d[0][l] = (d4 + 4*d0) - 5*d2
		d[1][l] = (d3 + d4) - 4*(d1+d2)
		d[2][l] = (d4 - d3) + 4*(d1-d2)
		d[3][l] = (d4 - d2) + 2*(d3-d1)
		d[4][l] = (d4 - d2) - 2*(d3-d1)
		d[5][l] = (d5 + 4*d1) - 5*d3
	}
}

// winoAt is the output transform of one line of six values, Aᵀm: four
// values.
func winoAt(m *[6][8]float32) (o [4][8]float32) {
	for l := range 8 {
		m0, m1, m2, m3, m4, m5 := m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]
		a, b, c, d := m1+m2, m1-m2, m3+m4, m3-m4
		o[0][l] = (m0 + a) + c
		o[1][l] = b + 2*d
		o[2][l] = a + 4*c
		o[3][l] = (b + 8*d) + m5
	}
	return o
}

// winoInRowGo is the twin of winoInRowAVX2: the input transform Bᵀ d B
// of tiles consecutive tiles of one channel block, the first tile's 6x6
// input at src (rows rowStride floats apart, the next tile 4 pixels to
// the right), into dst: point ξ of tile i at dst[ξ*xiStride + 8i].
// Rows are transformed first, then columns, as the assembly does.
func winoInRowGo(src, dst []float32, tiles, rowStride, xiStride int) {
	for i := range tiles {
		var d [6][6][8]float32 // [column][row] after the first pass
		for r := range 6 {
			var line [6][8]float32
			for j := range 6 {
				copy(line[j][:], src[r*rowStride+(4*i+j)*8:][:8])
			}
			winoBt(&line)
			for j := range 6 {
				d[j][r] = line[j]
			}
		}
		for j := range 6 {
			winoBt(&d[j])
			for r := range 6 {
				copy(dst[(r*6+j)*xiStride+8*i:][:8], d[j][r][:])
			}
		}
	}
}

// winoOutRowGo is the twin of winoOutRowAVX2: the output transform of
// tiles consecutive whole tiles of one channel block, point ξ of tile i at
// m[ξ*xiStride + 8i], into the 4x4 pixels of each at y (rows rowStride
// floats apart), with the epilogue the flags select: bias (eight values),
// residual (laid out like y), ReLU, and statistics: sums is set to the
// call's Σy (eight channels) then Σy², summed over its tiles, columns
// and rows in that order.
func winoOutRowGo(m, y, bias, res, sums []float32, tiles, xiStride, rowStride, flags int) {
	clear(sums[:16])
	for i := range tiles {
		var r []float32
		if flags&winoOutResidual != 0 {
			r = res[4*i*8:]
		}
		winoOutTileGo(m[8*i:], y[4*i*8:], bias, r, sums, xiStride, rowStride, flags, 4, 4)
	}
}

// winoOutTileGo transforms one tile as winoOutRowGo does and stores its
// first rows x cols pixels (the last tiles of an image whose sides are
// not multiples of 4), adding their statistics to sums.
func winoOutTileGo(m, y, bias, res, sums []float32, xiStride, rowStride, flags, rows, cols int) {
	var t [6][4][8]float32 // [row of the 6x6][column of the output] after the first pass
	for r := range 6 {
		var line [6][8]float32
		for j := range 6 {
			copy(line[j][:], m[(r*6+j)*xiStride:][:8])
		}
		t[r] = winoAt(&line)
	}
	for j := range cols {
		var line [6][8]float32
		for r := range 6 {
			line[r] = t[r][j]
		}
		o := winoAt(&line)
		for r := range rows {
			at := r*rowStride + j*8
			out := y[at:][:8]
			for l, v := range o[r] {
				if flags&winoOutBias != 0 {
					v += bias[l]
				}
				if flags&winoOutResidual != 0 {
					v += res[at+l]
				}
				if flags&winoOutReLU != 0 {
					v = relu32(v)
				}
				out[l] = v
				if flags&winoOutStats != 0 {
					sums[l] += v
					sums[8+l] += v * v
				}
			}
		}
	}
}

// winoG applies the weight transform's G, the 6x3 matrix of F(4x4, 3x3),
// to three values: rows (1/4, 0, 0), -(1, 1, 1)/6, -(1, -1, 1)/6,
// (1/4, 1/2, 1)/6, (1/4, -1/2, 1)/6 and (0, 0, 1).
func winoG(g0, g1, g2 float64) [6]float64 {
	even, odd := g0/24+g2/6, g1/12
	return [6]float64{g0 / 4, -(g0 + g1 + g2) / 6, -(g0 - g1 + g2) / 6, even + odd, even - odd, g2}
}

// PackWinogradWeights transforms plain [cout][cin][3][3] weights into the
// 36 matrices U = G g Gᵀ the Winograd kernels multiply, each in the 1x1
// kernels' layout: dst[ξ][cout/8][cin][8]. The transform runs in float64.
func PackWinogradWeights(dst, src []float32, cout, cin int) error {
	if cout%8 != 0 || cin%8 != 0 || cout < 8 || cin < 8 {
		return fmt.Errorf("PackWinogradWeights: %d to %d channels, want multiples of 8", cin, cout)
	}
	if len(src) != cout*cin*9 || len(dst) != 36*cout*cin {
		return fmt.Errorf("PackWinogradWeights: %d plain and %d packed weights, want %d and %d",
			len(src), len(dst), cout*cin*9, 36*cout*cin)
	}
	plane := cout * cin // one point's matrix
	for o := range cout {
		for i := range cin {
			g := src[(o*cin+i)*9:][:9]
			var cols [3][6]float64 // G applied to each column of g
			for c := range 3 {
				cols[c] = winoG(float64(g[c]), float64(g[3+c]), float64(g[6+c]))
			}
			at := (o/8)*cin*8 + i*8 + o%8
			for r := range 6 {
				u := winoG(cols[0][r], cols[1][r], cols[2][r])
				for c, v := range u {
					dst[(r*6+c)*plane+at] = float32(v)
				}
			}
		}
	}
	return nil
}

// PackWinogradDxWeights packs the weights of the backward-data
// convolution of a stride-1 3x3 convolution from cin to cout channels,
// whose plain weights [cout][cin][3][3] src holds: dx is the forward
// convolution of dy (cout channels) with the kernel rotated by 180° and
// its channels swapped, [cin][cout][2-kh][2-kw], which this transforms
// as PackWinogradWeights does, into dst[ξ][cin/8][cout][8].
func PackWinogradDxWeights(dst, src []float32, cout, cin int) error {
	if cout%8 != 0 || cin%8 != 0 || cout < 8 || cin < 8 {
		return fmt.Errorf("PackWinogradDxWeights: %d to %d channels, want multiples of 8", cin, cout)
	}
	if len(src) != cout*cin*9 || len(dst) != 36*cout*cin {
		return fmt.Errorf("PackWinogradDxWeights: %d plain and %d packed weights, want %d and %d",
			len(src), len(dst), cout*cin*9, 36*cout*cin)
	}
	plane := cout * cin
	for i := range cin { // the output channel of dx's convolution
		for o := range cout { // its input channel
			g := src[(o*cin+i)*9:][:9]
			var cols [3][6]float64
			for c := range 3 { // column c of the rotated kernel is column 2-c of g, upside down
				cols[c] = winoG(float64(g[8-c]), float64(g[5-c]), float64(g[2-c]))
			}
			at := (i/8)*cout*8 + o*8 + i%8
			for r := range 6 {
				u := winoG(cols[0][r], cols[1][r], cols[2][r])
				for c, v := range u {
					dst[(r*6+c)*plane+at] = float32(v)
				}
			}
		}
	}
	return nil
}

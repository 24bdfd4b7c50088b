package nn

// Conv2DDx computes conv2d_dx (dy, w) {stride, pad, in_h, in_w} into dx,
// the gradient of a convolution with respect to its input:
//
//	dx[n,c,h,v] = Σ dy[n,o,i,j] * w[o,c,ki,kj] over h = i*s+ki-p, v = j*s+kj-p
//
// p.X describes dx and p.Y describes dy. Each element of dx is gathered
// once, in float32: with stride s the kernel taps split into s² phases
// (ki ≡ h+p mod s), and each phase is a small stride-1 convolution of dy
// with the flipped taps of that phase, so no zero is multiplied.
// Scratch: ConvDxScratch(p).
func Conv2DDx(c *Ctx, dx, dy, w []float32, p ConvParams) {
	const kernel = "Conv2DDx"
	X, Y := p.X, p.Y
	convCheck(kernel, p)
	convLen(kernel, p, "dx", dx, X.Len())
	convLen(kernel, p, "dy", dy, Y.Len())
	convLen(kernel, p, "w", w, Y.C*X.C*p.KH*p.KW)
	t := c.local(convKeyDx, func() any { return new(convDxTask) }).(*convDxTask)
	mt, mb, ml, mr := convDxMargins(p)
	*t = convDxTask{c: c, dx: dx, dy: dy, w: w, p: p, mt: mt, ml: ml, wop: Y.W + ml + mr,
		padLen: (Y.H + mt + mb) * (Y.W + ml + mr) * Y.C, packLen: 8 * p.KH * p.KW * Y.C}
	convNeed(c, kernel, p, t.padLen+t.packLen, 0)
	c.Parallel(t, X.N)
	*t = convDxTask{}
}

// ConvDxScratch is the per-worker scratch (float32s, float64s) that
// Conv2DDx needs: a zero-padded copy of one image of dy with channels
// innermost, and the weights of eight input channels packed by phase.
func ConvDxScratch(p ConvParams) (floats, wide int) {
	mt, mb, ml, mr := convDxMargins(p)
	return (p.Y.H+mt+mb)*(p.Y.W+ml+mr)*p.Y.C + 8*p.KH*p.KW*p.Y.C, 0
}

// convDxMargins are the rows above and below and the columns left and
// right of dy that the phase gathers of Conv2DDx reach beyond dy: there dy
// is zero.
func convDxMargins(p ConvParams) (top, bottom, left, right int) {
	s := p.Stride
	top, left = (p.KH-1)/s, (p.KW-1)/s
	bottom = max(0, (p.X.H-1+p.Pad)/s-(p.Y.H-1))
	right = max(0, (p.X.W-1+p.Pad)/s-(p.Y.W-1))
	return top, bottom, left, right
}

// convTaps is the number of taps k < size with k ≡ r mod s, and the number
// of taps in the phases before r: a phase's taps are packed after those.
func convTaps(size, s, r int) (n, before int) {
	count := func(r int) int {
		if r >= size {
			return 0
		}
		return (size - r + s - 1) / s
	}
	for q := 0; q < r; q++ {
		before += count(q)
	}
	return count(r), before
}

// convDxTask is the reusable Task of Conv2DDx.
type convDxTask struct {
	c               *Ctx
	dx, dy, w       []float32
	p               ConvParams
	mt, ml, wop     int
	padLen, packLen int
}

// Run computes images [lo, hi) of dx on worker wk.
func (t *convDxTask) Run(wk, lo, hi int) {
	p := t.p
	X, Y := p.X, p.Y
	K, s := Y.C, p.Stride
	sc := t.c.Scratch(wk)
	dyp, wq := sc[:t.padLen], sc[t.padLen:][:t.packLen]
	xs, ws := t.wop*K, p.KW*K*8
	plane := X.H * X.W
	var acc [8]float32
	for img := lo; img < hi; img++ {
		convPadHWC(dyp, t.dy, Y, img, t.mt, t.ml, t.wop, PrologueNone, nil, nil)
		for cb := 0; cb < (X.C+7)/8; cb++ {
			nk := min(8, X.C-cb*8)
			convPackDx(wq, t.w, p, cb)
			for h := 0; h < X.H; h++ {
				// The taps ki ≡ h+p mod s reach dy rows ibase-na+1..ibase.
				ibase := (h + p.Pad) / s
				na, bi := convTaps(p.KH, s, (h+p.Pad)%s)
				for v := 0; v < X.W; v++ {
					jbase := (v + p.Pad) / s
					nb, bj := convTaps(p.KW, s, (v+p.Pad)%s)
					if na == 0 || nb == 0 {
						acc = [8]float32{}
					} else {
						xo := ((ibase-na+1+t.mt)*t.wop + jbase - nb + 1 + t.ml) * K
						convTile8(dyp, xo, xs, wq, (bi*p.KW+bj)*K*8, ws, na, nb*K, &acc)
					}
					idx, step := X.At(img, cb*8, h, v), 1
					if !X.Blocked {
						step = plane
					}
					for k := 0; k < nk; k++ {
						t.dx[idx] = acc[k]
						idx += step
					}
				}
			}
		}
	}
}

// convPackDx packs the weights of input channels 8cb..8cb+7 into dst as
// [KH][KW][K][8], zero for channels past the last, with the taps of each
// dimension grouped by phase (k mod s) and reversed within a phase, so
// that the taps of one phase at one dx position meet a contiguous run of
// dy in ascending order.
func convPackDx(dst, w []float32, p ConvParams, cb int) {
	C, K, s := p.X.C, p.Y.C, p.Stride
	kk := p.KH * p.KW
	for ki := 0; ki < p.KH; ki++ {
		na, bi := convTaps(p.KH, s, ki%s)
		ri := bi + na - 1 - ki/s
		for kj := 0; kj < p.KW; kj++ {
			nb, bj := convTaps(p.KW, s, kj%s)
			rj := bj + nb - 1 - kj/s
			d := dst[(ri*p.KW+rj)*K*8:][:K*8]
			for o := 0; o < K; o++ {
				for k := 0; k < 8; k++ {
					ch := cb*8 + k
					if ch >= C {
						d[o*8+k] = 0
						continue
					}
					d[o*8+k] = w[(o*C+ch)*kk+ki*p.KW+kj]
				}
			}
		}
	}
}

// Conv2DDw computes conv2d_dw (dy, x) {stride, pad, kernel} into dw, the
// gradient of a convolution with respect to its weight:
//
//	dw[o,c,ki,kj] = Σ_{n,i,j} dy[n,o,i,j] * x[n,c,i*s+ki-p,j*s+kj-p]
//
// p.X describes x and p.Y describes dy. Each worker sums its images into
// a float64 partial of its own; the partials are added in worker order,
// so the result is the same bit for bit on every run with the same
// thread count. Scratch: ConvDwScratch(p).
func Conv2DDw(c *Ctx, dw, dy, x []float32, p ConvParams) {
	q := p
	q.Prologue = PrologueNone
	convWeightGrad(c, "Conv2DDw", dw, dy, x, nil, nil, q)
}

// Conv2DDwFused computes conv2d_dw_fused (dy, x, [scale, shift]) {stride,
// pad, kernel, prologue}: Conv2DDw of dy and prologue(x), the prologue
// recomputed from x. scale and shift are nil unless p.Prologue is
// PrologueAffineReLU. Scratch: ConvDwScratch(p).
func Conv2DDwFused(c *Ctx, dw, dy, x, scale, shift []float32, p ConvParams) {
	convWeightGrad(c, "Conv2DDwFused", dw, dy, x, scale, shift, p)
}

// ConvDwScratch is the per-worker scratch (float32s, float64s) that
// Conv2DDw and Conv2DDwFused need: a zero-padded, prologue-applied copy
// of one image of x, one image of dy in blocked layout unless it is
// already, and the worker's float64 partial of dw.
func ConvDwScratch(p ConvParams) (floats, wide int) {
	floats = (p.X.H + 2*p.Pad) * (p.X.W + 2*p.Pad) * p.X.C
	if !p.Y.Blocked {
		floats += (p.Y.C + 7) / 8 * 8 * p.Y.H * p.Y.W
	}
	return floats, p.Y.C * p.X.C * p.KH * p.KW
}

// convDwTask is the reusable Task of Conv2DDw and Conv2DDwFused.
type convDwTask struct {
	c                   *Ctx
	dy, x, scale, shift []float32
	p                   ConvParams
	padLen, dyLen       int
}

// convWeightGrad checks the call, runs it over the images and adds the
// workers' partials into dw.
func convWeightGrad(c *Ctx, kernel string, dw, dy, x, scale, shift []float32, p ConvParams) {
	X, Y := p.X, p.Y
	affine := p.Prologue == PrologueAffineReLU
	n := 0
	if affine {
		n = X.C
	}
	convCheck(kernel, p)
	convLen(kernel, p, "dw", dw, Y.C*X.C*p.KH*p.KW)
	convLen(kernel, p, "dy", dy, Y.Len())
	convLen(kernel, p, "x", x, X.Len())
	convLen(kernel, p, "scale", scale, n)
	convLen(kernel, p, "shift", shift, n)
	t := c.local(convKeyDw, func() any { return new(convDwTask) }).(*convDwTask)
	*t = convDwTask{c: c, dy: dy, x: x, scale: scale, shift: shift, p: p,
		padLen: (X.H + 2*p.Pad) * (X.W + 2*p.Pad) * X.C}
	if !Y.Blocked {
		t.dyLen = (Y.C + 7) / 8 * 8 * Y.H * Y.W
	}
	convNeed(c, kernel, p, t.padLen+t.dyLen, len(dw))
	c.Parallel(t, X.N)
	*t = convDwTask{}
	// Add the partials of the workers that ran (chunks may be empty when
	// there are fewer images than workers), in worker order.
	for i := range dw {
		var sum float64
		for wk := 0; wk < c.Threads(); wk++ {
			if lo, hi := Chunk(X.N, c.Threads(), wk); lo < hi {
				sum += c.Wide(wk)[i]
			}
		}
		dw[i] = float32(sum)
	}
}

// Run sums the weight gradient of images [lo, hi) into worker wk's
// partial.
func (t *convDwTask) Run(wk, lo, hi int) {
	p := t.p
	X, Y := p.X, p.Y
	C, K, s := X.C, Y.C, p.Stride
	kk := p.KH * p.KW
	part := t.c.Wide(wk)[:K*C*kk]
	clear(part)
	sc := t.c.Scratch(wk)
	xp, dyb := sc[:t.padLen], sc[t.padLen:][:t.dyLen]
	hp, wp := X.H+2*p.Pad, X.W+2*p.Pad
	rowsPer := max(1, convDwFlush/Y.W)
	var acc [8]float32
	for img := lo; img < hi; img++ {
		convPadCHW(xp, t.x, X, img, p.Pad, p.Prologue, t.scale, t.shift)
		d := dyb
		if Y.Blocked {
			d = t.dy[img*Y.Image():][:Y.Image()]
		} else {
			convBlock(dyb, t.dy, Y, img)
		}
		for ob := 0; ob < (K+7)/8; ob++ {
			nk := min(8, K-ob*8)
			for ch := 0; ch < C; ch++ {
				for ki := 0; ki < p.KH; ki++ {
					for kj := 0; kj < p.KW; kj++ {
						pi := ((ob*8)*C+ch)*kk + ki*p.KW + kj
						for i0 := 0; i0 < Y.H; i0 += rowsPer {
							rows := min(rowsPer, Y.H-i0)
							xo := (ch*hp+i0*s+ki)*wp + kj
							do := (ob*Y.H + i0) * Y.W * 8
							if s == 1 {
								convTile8(xp, xo, wp, d, do, Y.W*8, rows, Y.W, &acc)
							} else {
								convTile8Strided(xp, xo, s*wp, s, d, do, Y.W*8, rows, Y.W, &acc)
							}
							for k := 0; k < nk; k++ {
								part[pi+k*C*kk] += float64(acc[k])
							}
						}
					}
				}
			}
		}
	}
}

// convBlock writes image n of plain x into dst as [ceil(C/8)][H][W][8],
// zero in the channels past the last.
func convBlock(dst, x []float32, a Act, n int) {
	hw := a.H * a.W
	img := x[n*a.Image():][:a.Image()]
	for cb := 0; cb < (a.C+7)/8; cb++ {
		blk := dst[cb*hw*8:][:hw*8]
		for k := 0; k < 8; k++ {
			ch := cb*8 + k
			if ch >= a.C {
				for i := range hw {
					blk[i*8+k] = 0
				}
				continue
			}
			src := img[ch*hw:][:hw]
			for i, v := range src {
				blk[i*8+k] = v
			}
		}
	}
}

// convTile8Strided is convTile8 with the taps of x step apart:
//
//	out[k] = Σ_{r<rows} Σ_{t<n} x[xo + r*xs + t*step] * w[wo + r*ws + 8t + k]
func convTile8Strided(x []float32, xo, xs, step int, w []float32, wo, ws, rows, n int, out *[8]float32) {
	var a0, a1, a2, a3, a4, a5, a6, a7 float32
	for r := 0; r < rows; r++ {
		xr := x[xo+r*xs:][:(n-1)*step+1]
		wr := w[wo+r*ws:][:8*n]
		for t := 0; t < n; t++ {
			xv, wv := xr[t*step], wr[8*t:][:8:8]
			a0 += xv * wv[0]
			a1 += xv * wv[1]
			a2 += xv * wv[2]
			a3 += xv * wv[3]
			a4 += xv * wv[4]
			a5 += xv * wv[5]
			a6 += xv * wv[6]
			a7 += xv * wv[7]
		}
	}
	*out = [8]float32{a0, a1, a2, a3, a4, a5, a6, a7}
}

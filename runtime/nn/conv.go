package nn

import (
	"fmt"
)

// Prologue is what a fused convolution applies to each input element
// before convolving it, as the prologue attribute of conv2d_fused and
// conv2d_dw_fused. The zero padding is applied after it: a padded
// position contributes 0 whatever the prologue.
type Prologue uint8

const (
	PrologueNone       Prologue = iota // a = x
	PrologueReLU                       // a = max(x, 0)
	PrologueAffineReLU                 // a = max(scale[c]*x + shift[c], 0)
)

// ConvParams are the compile-time constants of a convolution kernel call.
// X and Y are the convolution's input and output as the forward op sees
// them, whichever kernel is called: for Conv2DDx X describes dx and Y
// describes dy, for the weight gradients X describes x and Y describes dy.
// The weight is always plain [Y.C][X.C][KH][KW].
type ConvParams struct {
	X, Y        Act
	KH, KW      int
	Stride, Pad int
	Prologue    Prologue
	// Epilogue flags of Conv2DFused (Conv2D reads only Bias): z =
	// conv + b (Bias) + r (Residual); y = max(z, 0) (ReLU); per-channel
	// sums of y and y² (Stats).
	Bias, Residual, ReLU, Stats bool
}

// convKey names the reusable Task of each convolution kernel in a Ctx.
type convKey int

const (
	convKeyFwd convKey = iota
	convKeyDx
	convKeyDw
)

// convDwFlush is how many output positions the weight gradient sums in
// float32 registers before adding them to its float64 partial: enough to
// amortize the flush, few enough to keep float32 rounding small.
const convDwFlush = 256

// Conv2D computes conv2d (x, w[, b]) {stride, pad} into y: the
// cross-correlation of x with w plus b[o] when p.Bias. Only X, Y, KH, KW,
// Stride, Pad and Bias of p are read. Scratch: ConvScratch(p).
func Conv2D(c *Ctx, y, x, w, b []float32, p ConvParams) {
	q := ConvParams{X: p.X, Y: p.Y, KH: p.KH, KW: p.KW, Stride: p.Stride, Pad: p.Pad, Bias: p.Bias}
	convForward(c, "Conv2D", y, nil, nil, x, w, b, nil, nil, nil, q)
}

// Conv2DFused computes conv2d_fused: a = prologue(x); z = conv(a, w) + b
// + r; y = relu ? max(z, 0) : z; with p.Stats, sum[o] and sumsq[o] are the
// sums of y and y² over images and positions. Arguments absent from the
// op (by p's flags) are nil. y may be the same storage as r. The sums are
// accumulated in float64 per image and added in image order, so they do
// not depend on the thread count. Scratch: ConvScratch(p).
func Conv2DFused(c *Ctx, y, sum, sumsq []float32, x, w, b, scale, shift, r []float32, p ConvParams) {
	convForward(c, "Conv2DFused", y, sum, sumsq, x, w, b, scale, shift, r, p)
}

// ConvScratch is the per-worker scratch (float32s, float64s) that
// Conv2D and Conv2DFused need: a zero-padded, prologue-applied copy of
// one image with channels innermost, the weights of eight output channels
// packed for it, and with Stats each image's channel sums.
func ConvScratch(p ConvParams) (floats, wide int) {
	floats = convPadLen(p.X, p.Pad) + 8*p.KH*p.KW*p.X.C
	if p.Stats {
		wide = p.Y.N * 2 * p.Y.C
	}
	return floats, wide
}

// convPadLen is the length of one image of a padded by pad on each side.
func convPadLen(a Act, pad int) int { return (a.H + 2*pad) * (a.W + 2*pad) * a.C }

// convCheck panics when p's shapes do not describe a convolution:
// generated code passes compiler-checked constants, so a mismatch is a
// bug.
func convCheck(kernel string, p ConvParams) {
	if p.KH < 1 || p.KW < 1 || p.Stride < 1 || p.Pad < 0 || p.Prologue > PrologueAffineReLU {
		convPanic(kernel, p, "bad kernel, stride, pad or prologue")
	}
	for _, a := range [2]Act{p.X, p.Y} {
		if a.N < 1 || a.C < 1 || a.H < 1 || a.W < 1 || a.Blocked && a.C%8 != 0 {
			convPanic(kernel, p, "bad activation shape")
		}
	}
	if p.X.N != p.Y.N || p.X.H+2*p.Pad < p.KH || p.X.W+2*p.Pad < p.KW ||
		(p.X.H+2*p.Pad-p.KH)/p.Stride+1 != p.Y.H || (p.X.W+2*p.Pad-p.KW)/p.Stride+1 != p.Y.W {
		convPanic(kernel, p, "input and output shapes do not match the kernel, stride and pad")
	}
}

// convLen panics when slice name has a length other than want (0 for an
// absent argument).
func convLen(kernel string, p ConvParams, name string, s []float32, want int) {
	if len(s) != want {
		convPanic(kernel, p, fmt.Sprintf("%s has length %d, want %d", name, len(s), want))
	}
}

// convPanic reports a broken call. It is a function of its own so that
// only the failing path lets p escape (a kernel call must not allocate).
func convPanic(kernel string, p ConvParams, msg string) {
	panic(fmt.Sprintf("BUG: nn.%s: %s (params %+v)", kernel, msg, p))
}

// convNeed panics when some worker's scratch is smaller than floats
// float32s or wide float64s: the Ctx was sized for other kernels. It runs
// before Parallel, on the caller's goroutine, where a panic can be seen.
func convNeed(c *Ctx, kernel string, p ConvParams, floats, wide int) {
	for w := 0; w < c.Threads(); w++ {
		if len(c.Scratch(w)) < floats || len(c.Wide(w)) < wide {
			convPanic(kernel, p, fmt.Sprintf("worker scratch has %d float32s and %d float64s, need %d and %d",
				len(c.Scratch(w)), len(c.Wide(w)), floats, wide))
		}
	}
}

// convPositive is max(v, 0) as the interpreter's rectifier: a NaN stays.
func convPositive(v float64) float64 {
	if v <= 0 {
		return 0
	}
	return v
}

// convPro applies prologue pro to v of channel ch, in float64 and rounded
// once, as the interpreter computes it.
func convPro(pro Prologue, v float32, scale, shift []float32, ch int) float32 {
	switch pro {
	case PrologueReLU:
		if v <= 0 {
			return 0
		}
		return v
	case PrologueAffineReLU:
		return float32(convPositive(float64(scale[ch])*float64(v) + float64(shift[ch])))
	}
	return v
}

// convPadHWC writes image n of x, prologue applied, into dst as a
// zero-padded [top+H+...][wp][C] image (wp = left+W+right): channels
// innermost, so that the taps of one kernel row at one output position
// are contiguous.
func convPadHWC(dst, x []float32, a Act, n, top, left, wp int, pro Prologue, scale, shift []float32) {
	clear(dst)
	C, H, W := a.C, a.H, a.W
	img := x[n*a.Image():][:a.Image()]
	if a.Blocked {
		for cb := 0; cb < C/8; cb++ {
			for h := 0; h < H; h++ {
				src := img[(cb*H+h)*W*8:][:W*8]
				row := dst[((h+top)*wp+left)*C:]
				for v := 0; v < W; v++ {
					d := row[v*C+cb*8:][:8]
					s := src[v*8:][:8]
					for k := range d {
						d[k] = convPro(pro, s[k], scale, shift, cb*8+k)
					}
				}
			}
		}
		return
	}
	for ch := 0; ch < C; ch++ {
		for h := 0; h < H; h++ {
			src := img[(ch*H+h)*W:][:W]
			row := dst[((h+top)*wp+left)*C+ch:]
			for v, s := range src {
				row[v*C] = convPro(pro, s, scale, shift, ch)
			}
		}
	}
}

// convPadCHW writes image n of x, prologue applied, into dst as a
// zero-padded [C][H+2pad][W+2pad] image.
func convPadCHW(dst, x []float32, a Act, n, pad int, pro Prologue, scale, shift []float32) {
	clear(dst)
	C, H, W := a.C, a.H, a.W
	hp, wp := H+2*pad, W+2*pad
	img := x[n*a.Image():][:a.Image()]
	for ch := 0; ch < C; ch++ {
		for h := 0; h < H; h++ {
			row := dst[(ch*hp+h+pad)*wp+pad:][:W]
			if a.Blocked {
				src := img[((ch/8)*H+h)*W*8+ch%8:]
				for v := range row {
					row[v] = convPro(pro, src[v*8], scale, shift, ch)
				}
				continue
			}
			src := img[(ch*H+h)*W:][:W]
			for v := range row {
				row[v] = convPro(pro, src[v], scale, shift, ch)
			}
		}
	}
}

// convTile8 returns in out, for k = 0..7,
//
//	Σ_{r<rows} Σ_{t<n} x[xo + r*xs + t] * w[wo + r*ws + 8t + k]
//
// the dot products of rows contiguous runs of x with eight interleaved
// weight vectors: one output position of eight channels. The eight sums
// stay in registers.
func convTile8(x []float32, xo, xs int, w []float32, wo, ws, rows, n int, out *[8]float32) {
	var a0, a1, a2, a3, a4, a5, a6, a7 float32
	for r := 0; r < rows; r++ {
		xr := x[xo+r*xs:][:n]
		wr := w[wo+r*ws:][:8*n]
		for len(xr) >= 2 && len(wr) >= 16 {
			xv, wv := xr[0], wr[:16:16]
			a0 += xv * wv[0]
			a1 += xv * wv[1]
			a2 += xv * wv[2]
			a3 += xv * wv[3]
			a4 += xv * wv[4]
			a5 += xv * wv[5]
			a6 += xv * wv[6]
			a7 += xv * wv[7]
			xv = xr[1]
			a0 += xv * wv[8]
			a1 += xv * wv[9]
			a2 += xv * wv[10]
			a3 += xv * wv[11]
			a4 += xv * wv[12]
			a5 += xv * wv[13]
			a6 += xv * wv[14]
			a7 += xv * wv[15]
			xr, wr = xr[2:], wr[16:]
		}
		if len(xr) == 1 && len(wr) >= 8 {
			xv, wv := xr[0], wr[:8:8]
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

// convFwdTask is the reusable Task of Conv2D and Conv2DFused.
type convFwdTask struct {
	c                           *Ctx
	y, x, w, b, scale, shift, r []float32
	p                           ConvParams
	padLen, packLen             int
}

// convForward checks the call and runs it over the images.
func convForward(c *Ctx, kernel string, y, sum, sumsq, x, w, b, scale, shift, r []float32, p ConvParams) {
	X, Y := p.X, p.Y
	convCheck(kernel, p)
	convLen(kernel, p, "y", y, Y.Len())
	convLen(kernel, p, "x", x, X.Len())
	convLen(kernel, p, "w", w, Y.C*X.C*p.KH*p.KW)
	opt := func(present bool, n int) int {
		if present {
			return n
		}
		return 0
	}
	convLen(kernel, p, "b", b, opt(p.Bias, Y.C))
	convLen(kernel, p, "scale", scale, opt(p.Prologue == PrologueAffineReLU, X.C))
	convLen(kernel, p, "shift", shift, opt(p.Prologue == PrologueAffineReLU, X.C))
	convLen(kernel, p, "r", r, opt(p.Residual, Y.Len()))
	convLen(kernel, p, "sum", sum, opt(p.Stats, Y.C))
	convLen(kernel, p, "sumsq", sumsq, opt(p.Stats, Y.C))
	t := c.local(convKeyFwd, func() any { return new(convFwdTask) }).(*convFwdTask)
	*t = convFwdTask{c: c, y: y, x: x, w: w, b: b, scale: scale, shift: shift, r: r, p: p,
		padLen: convPadLen(X, p.Pad), packLen: 8 * p.KH * p.KW * X.C}
	wide := 0
	if p.Stats {
		wide = (X.N + c.Threads() - 1) / c.Threads() * 2 * Y.C
	}
	convNeed(c, kernel, p, t.padLen+t.packLen, wide)
	c.Parallel(t, X.N)
	if p.Stats {
		// Each worker kept its images' sums in its wide scratch; add them
		// in image order.
		for o := 0; o < Y.C; o++ {
			var s1, s2 float64
			for wk := 0; wk < c.Threads(); wk++ {
				lo, hi := Chunk(X.N, c.Threads(), wk)
				st := c.Wide(wk)
				for n := lo; n < hi; n++ {
					s1 += st[(n-lo)*2*Y.C+o]
					s2 += st[(n-lo)*2*Y.C+Y.C+o]
				}
			}
			sum[o], sumsq[o] = float32(s1), float32(s2)
		}
	}
	*t = convFwdTask{}
}

// Run convolves images [lo, hi) on worker wk.
func (t *convFwdTask) Run(wk, lo, hi int) {
	p := t.p
	X, Y := p.X, p.Y
	C, K := X.C, Y.C
	s := t.c.Scratch(wk)
	xp, wq := s[:t.padLen], s[t.padLen:][:t.packLen]
	var st []float64
	if p.Stats {
		st = t.c.Wide(wk)[:(hi-lo)*2*K]
	}
	wp := X.W + 2*p.Pad
	xs, ws, n := wp*C, p.KW*C*8, p.KW*C
	plane := Y.H * Y.W
	var acc [8]float32
	for img := lo; img < hi; img++ {
		convPadHWC(xp, t.x, X, img, p.Pad, p.Pad, wp, p.Prologue, t.scale, t.shift)
		var s1, s2 []float64
		if p.Stats {
			s1 = st[(img-lo)*2*K:][:K]
			s2 = st[(img-lo)*2*K+K:][:K]
			clear(s1)
			clear(s2)
		}
		for ob := 0; ob < (K+7)/8; ob++ {
			nk := min(8, K-ob*8)
			convPackFwd(wq, t.w, p, ob)
			for i := 0; i < Y.H; i++ {
				for j := 0; j < Y.W; j++ {
					convTile8(xp, (i*p.Stride*wp+j*p.Stride)*C, xs, wq, 0, ws, p.KH, n, &acc)
					// Epilogue: bias, residual (read before y is written:
					// they may share storage), ReLU, statistics.
					idx, step := Y.At(img, ob*8, i, j), 1
					if !Y.Blocked {
						step = plane
					}
					for k := 0; k < nk; k++ {
						o := ob*8 + k
						z := float64(acc[k])
						if p.Bias {
							z += float64(t.b[o])
						}
						if p.Residual {
							z += float64(t.r[idx])
						}
						if p.ReLU {
							z = convPositive(z)
						}
						v := float32(z)
						t.y[idx] = v
						if p.Stats {
							s1[o] += float64(v)
							s2[o] += float64(v) * float64(v)
						}
						idx += step
					}
				}
			}
		}
	}
}

// convPackFwd packs the weights of output channels 8ob..8ob+7 into dst as
// [KH][KW][C][8], zero for channels past the last.
func convPackFwd(dst, w []float32, p ConvParams, ob int) {
	C, K, kk := p.X.C, p.Y.C, p.KH*p.KW
	for k := 0; k < 8; k++ {
		o := ob*8 + k
		if o >= K {
			for i := k; i < len(dst); i += 8 {
				dst[i] = 0
			}
			continue
		}
		wo := w[o*C*kk:][:C*kk]
		for ch := 0; ch < C; ch++ {
			for t := 0; t < kk; t++ {
				dst[(t*C+ch)*8+k] = wo[ch*kk+t]
			}
		}
	}
}

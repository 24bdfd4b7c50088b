package nn

import (
	"fmt"
	"math"
)

// The spatial kernels whose input and output differ in size: max pooling
// and the option A shortcut (subsample and zero-pad the channels), and
// their gradients. Input and output may be in different layouts (the
// layout pass chooses each from its own channel count), so each takes
// one Act per tensor and works plane by plane: the H*W pixels of one
// channel of one image, pixel (h, w) being at base + (h*W+w)*step.

// plane returns the storage index of pixel (0, 0) of channel ch of image
// n, and the distance between neighboring pixels.
func plane(a Act, n, ch int) (base, step int) {
	if a.Blocked {
		return a.At(n, ch, 0, 0), 8
	}
	return a.At(n, ch, 0, 0), 1
}

// SubsamplePad is the option A shortcut: y[n,c,i,j] = x[n,c,i*stride,j*stride]
// for the channels of x, and 0 for the extra channels of y.
func SubsamplePad(c *Ctx, y, x []float32, ya, xa Act, stride int) {
	mustAct("SubsamplePad", ya)
	mustAct("SubsamplePad", xa)
	if ya.N != xa.N || ya.C < xa.C || stride < 1 || ya.H != (xa.H-1)/stride+1 || ya.W != (xa.W-1)/stride+1 {
		panic(fmt.Sprintf("BUG: nn.SubsamplePad: output %+v does not subsample input %+v by %d", ya, xa, stride))
	}
	mustLen("SubsamplePad", "y", y, ya.Len())
	mustLen("SubsamplePad", "x", x, xa.Len())
	t := c.opTaskFor(keySubsamplePad, subsamplePadRange)
	t.a, t.b, t.k[0] = ya, xa, stride
	t.y[0], t.x[0] = y, x
	if ya.Blocked && xa.Blocked {
		t.k[1] = 1
		t.spread(ya.N*ya.C/8, 2*ya.Len())
		return
	}
	t.k[1] = 0
	t.spread(ya.N*ya.C, 2*ya.Len())
}

func subsamplePadRange(t *opTask, _, lo, hi int) {
	y, x, ya, xa, s := t.y[0], t.x[0], t.a, t.b, t.k[0]
	if t.k[1] == 1 {
		// Both blocked: whole blocks of 8 channels, a pixel's 8 values
		// contiguous.
		for p := lo; p < hi; p++ {
			n, cb := p/(ya.C/8), p%(ya.C/8)
			yb := ya.At(n, cb*8, 0, 0)
			out := y[yb : yb+ya.H*ya.W*8]
			if cb >= xa.C/8 {
				clear(out)
				continue
			}
			xb := xa.At(n, cb*8, 0, 0)
			for i := range ya.H {
				for j := range ya.W {
					copy(out[(i*ya.W+j)*8:][:8], x[xb+(i*s*xa.W+j*s)*8:][:8])
				}
			}
		}
		return
	}
	for p := lo; p < hi; p++ {
		n, ch := p/ya.C, p%ya.C
		yb, ys := plane(ya, n, ch)
		if ch >= xa.C {
			for i := range ya.H * ya.W {
				y[yb+i*ys] = 0
			}
			continue
		}
		xb, xs := plane(xa, n, ch)
		for i := range ya.H {
			for j := range ya.W {
				y[yb+(i*ya.W+j)*ys] = x[xb+(i*s*xa.W+j*s)*xs]
			}
		}
	}
}

// SubsamplePadGrad is the gradient of SubsamplePad:
// dx[n,c,i*stride,j*stride] = dy[n,c,i,j] for the channels of dx, and 0
// at the pixels the subsampling skipped.
func SubsamplePadGrad(c *Ctx, dx, dy []float32, dxa, dya Act, stride int) {
	mustAct("SubsamplePadGrad", dxa)
	mustAct("SubsamplePadGrad", dya)
	if dya.N != dxa.N || dya.C < dxa.C || stride < 1 || dya.H != (dxa.H-1)/stride+1 || dya.W != (dxa.W-1)/stride+1 {
		panic(fmt.Sprintf("BUG: nn.SubsamplePadGrad: gradient %+v does not subsample input %+v by %d", dya, dxa, stride))
	}
	mustLen("SubsamplePadGrad", "dx", dx, dxa.Len())
	mustLen("SubsamplePadGrad", "dy", dy, dya.Len())
	t := c.opTaskFor(keySubsamplePadGrad, subsamplePadGradRange)
	t.a, t.b, t.k[0] = dxa, dya, stride
	t.y[0], t.x[0] = dx, dy
	if dxa.Blocked && dya.Blocked {
		t.k[1] = 1
		t.spread(dxa.N*dxa.C/8, 2*dxa.Len())
		return
	}
	t.k[1] = 0
	t.spread(dxa.N*dxa.C, 2*dxa.Len())
}

func subsamplePadGradRange(t *opTask, _, lo, hi int) {
	dx, dy, xa, ya, s := t.y[0], t.x[0], t.a, t.b, t.k[0]
	if t.k[1] == 1 {
		// Both blocked, as in subsamplePadRange.
		for p := lo; p < hi; p++ {
			n, cb := p/(xa.C/8), p%(xa.C/8)
			xb := xa.At(n, cb*8, 0, 0)
			out := dx[xb : xb+xa.H*xa.W*8]
			clear(out)
			yb := ya.At(n, cb*8, 0, 0)
			for i := range ya.H {
				for j := range ya.W {
					copy(out[(i*s*xa.W+j*s)*8:][:8], dy[yb+(i*ya.W+j)*8:][:8])
				}
			}
		}
		return
	}
	for p := lo; p < hi; p++ {
		n, ch := p/xa.C, p%xa.C
		xb, xs := plane(xa, n, ch)
		for i := range xa.H * xa.W {
			dx[xb+i*xs] = 0
		}
		yb, ys := plane(ya, n, ch)
		for i := range ya.H {
			for j := range ya.W {
				dx[xb+(i*s*xa.W+j*s)*xs] = dy[yb+(i*ya.W+j)*ys]
			}
		}
	}
}

// poolCheck panics unless ya is the output of a kernel×kernel max pool of
// xa with the given stride and padding.
func poolCheck(name string, ya, xa Act, kernel, stride, pad int) {
	mustAct(name, ya)
	mustAct(name, xa)
	ok := kernel >= 1 && stride >= 1 && pad >= 0 && pad < kernel &&
		xa.H+2*pad >= kernel && xa.W+2*pad >= kernel &&
		ya.N == xa.N && ya.C == xa.C &&
		ya.H == (xa.H+2*pad-kernel)/stride+1 && ya.W == (xa.W+2*pad-kernel)/stride+1
	if !ok {
		panic(fmt.Sprintf("BUG: nn.%s: output %+v is not a %dx%d max pool (stride %d, pad %d) of %+v", name, ya, kernel, kernel, stride, pad, xa))
	}
}

// poolArg returns the index (h*W+w) within its plane of the maximum of x
// over the window of output pixel (i, j), or -1 if the window holds no
// pixel. Padding never wins; among equal maxima the first in row-major
// window order wins, and a NaN first wins, as in the interpreter.
func poolArg(x []float32, xb, xs int, xa Act, k, s, p, i, j int) int {
	var best float32
	arg := -1
	for ki := range k {
		h := i*s + ki - p
		if h < 0 || h >= xa.H {
			continue
		}
		for kj := range k {
			w := j*s + kj - p
			if w < 0 || w >= xa.W {
				continue
			}
			if v := x[xb+(h*xa.W+w)*xs]; arg < 0 || v > best {
				best, arg = v, h*xa.W+w
			}
		}
	}
	return arg
}

// MaxPool sets y to the maximum of x over each kernel×kernel window
// (stride, pad); padding never wins.
func MaxPool(c *Ctx, y, x []float32, ya, xa Act, kernel, stride, pad int) {
	poolCheck("MaxPool", ya, xa, kernel, stride, pad)
	mustLen("MaxPool", "y", y, ya.Len())
	mustLen("MaxPool", "x", x, xa.Len())
	t := c.opTaskFor(keyMaxPool, maxPoolRange)
	t.a, t.b = ya, xa
	t.k[0], t.k[1], t.k[2] = kernel, stride, pad
	t.y[0], t.x[0] = y, x
	t.spread(ya.N*ya.C, ya.Len()*kernel*kernel)
}

func maxPoolRange(t *opTask, _, lo, hi int) {
	y, x, ya, xa := t.y[0], t.x[0], t.a, t.b
	k, s, p := t.k[0], t.k[1], t.k[2]
	for q := lo; q < hi; q++ {
		n, ch := q/ya.C, q%ya.C
		yb, ys := plane(ya, n, ch)
		xb, xs := plane(xa, n, ch)
		for i := range ya.H {
			for j := range ya.W {
				v := float32(math.Inf(-1))
				if arg := poolArg(x, xb, xs, xa, k, s, p, i, j); arg >= 0 {
					v = x[xb+arg*xs]
				}
				y[yb+(i*ya.W+j)*ys] = v
			}
		}
	}
}

// MaxPoolGrad sends each dy to the element of x that MaxPool picked for
// it (the first maximum of its window), summing in float64 where windows
// overlap, in the interpreter's order. Wide scratch: H*W of x per worker.
func MaxPoolGrad(c *Ctx, dx, dy, x []float32, dxa, dya, xa Act, kernel, stride, pad int) {
	poolCheck("MaxPoolGrad", dya, xa, kernel, stride, pad)
	mustAct("MaxPoolGrad", dxa)
	if dxa.N != xa.N || dxa.C != xa.C || dxa.H != xa.H || dxa.W != xa.W {
		panic(fmt.Sprintf("BUG: nn.MaxPoolGrad: dx %+v and x %+v differ in shape", dxa, xa))
	}
	mustLen("MaxPoolGrad", "dx", dx, dxa.Len())
	mustLen("MaxPoolGrad", "dy", dy, dya.Len())
	mustLen("MaxPoolGrad", "x", x, xa.Len())
	c.clearWide("MaxPoolGrad", xa.H*xa.W)
	t := c.opTaskFor(keyMaxPoolGrad, maxPoolGradRange)
	t.a, t.b = dya, xa
	t.k[0], t.k[1], t.k[2] = kernel, stride, pad
	t.d = dxa
	t.y[0], t.x[0], t.x[1] = dx, dy, x
	t.spread(xa.N*xa.C, dya.Len()*kernel*kernel+dxa.Len())
}

func maxPoolGradRange(t *opTask, w, lo, hi int) {
	dx, dy, x, ya, xa, dxa := t.y[0], t.x[0], t.x[1], t.a, t.b, t.d
	k, s, p := t.k[0], t.k[1], t.k[2]
	acc := t.c.wide[w][:xa.H*xa.W]
	for q := lo; q < hi; q++ {
		n, ch := q/xa.C, q%xa.C
		yb, ys := plane(ya, n, ch)
		xb, xs := plane(xa, n, ch)
		clear(acc)
		for i := range ya.H {
			for j := range ya.W {
				if arg := poolArg(x, xb, xs, xa, k, s, p, i, j); arg >= 0 {
					acc[arg] += float64(dy[yb+(i*ya.W+j)*ys])
				}
			}
		}
		db, ds := plane(dxa, n, ch)
		for i, v := range acc {
			dx[db+i*ds] = float32(v)
		}
	}
}

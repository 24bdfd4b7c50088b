package interp

import (
	"math"

	"github.com/resnetc/resnetc/ir"
)

// dims4 returns the four dimensions of a rank-4 shape.
func dims4(s ir.Shape) (n, c, h, w int) { return s[0], s[1], s[2], s[3] }

// at4 is the flat index of [n, c, h, w] in a tensor of shape [., C, H, W].
func at4(c4, h4, w4, n, c, h, w int) int { return ((n*c4+c)*h4+h)*w4 + w }

// conv2d(x, w[, b]) {stride s, pad p} is the cross-correlation
//
//	y[n,o,i,j] = b[o] + Σ_{c,ki,kj} x[n,c,i*s+ki-p,j*s+kj-p] * w[o,c,ki,kj]
//
// with x zero outside its bounds; w is [Cout, Cin, Kh, Kw].
func conv2d(op *ir.Op, a, out []*Tensor, _ Options) error {
	var b []float64
	if len(a) == 3 {
		b = a[2].Data
	}
	convolve(a[0], a[1], b, op.Int("stride"), op.Int("pad"), out[0])
	return nil
}

// convolve writes conv2d of x by w with stride s and padding p into y,
// adding b[o] to output channel o when b is not nil.
func convolve(x, w *Tensor, b []float64, s, p int, y *Tensor) {
	_, C, H, W := dims4(x.Shape)
	_, _, KH, KW := dims4(w.Shape)
	N, K, HO, WO := dims4(y.Shape)
	for n := range N {
		for o := range K {
			for i := range HO {
				for j := range WO {
					sum := 0.0
					for c := range C {
						for ki := range KH {
							h := i*s + ki - p
							if h < 0 || h >= H {
								continue
							}
							xrow := x.Data[at4(C, H, W, n, c, h, 0):][:W]
							wrow := w.Data[at4(C, KH, KW, o, c, ki, 0):][:KW]
							for kj := range KW {
								if v := j*s + kj - p; v >= 0 && v < W {
									sum += xrow[v] * wrow[kj]
								}
							}
						}
					}
					if b != nil {
						sum += b[o]
					}
					y.Data[at4(K, HO, WO, n, o, i, j)] = sum
				}
			}
		}
	}
}

// conv2dDx(dy, w) {stride s, pad p, in_h, in_w} is the gradient of conv2d
// with respect to its input:
//
//	dx[n,c,h,v] = Σ dy[n,o,i,j] * w[o,c,ki,kj] over h = i*s+ki-p, v = j*s+kj-p
//
// written as a gather, so each element is one float64 sum.
func conv2dDx(op *ir.Op, a, out []*Tensor, _ Options) error {
	dy, w, dx := a[0], a[1], out[0]
	s, p := op.Int("stride"), op.Int("pad")
	_, K, HO, WO := dims4(dy.Shape)
	_, _, KH, KW := dims4(w.Shape)
	N, C, H, W := dims4(dx.Shape)
	for n := range N {
		for c := range C {
			for h := range H {
				for v := range W {
					sum := 0.0
					for ki := range KH {
						// h = i*s + ki - p  =>  i = (h + p - ki) / s when divisible.
						ti := h + p - ki
						if ti < 0 || ti%s != 0 || ti/s >= HO {
							continue
						}
						i := ti / s
						for kj := range KW {
							tj := v + p - kj
							if tj < 0 || tj%s != 0 || tj/s >= WO {
								continue
							}
							j := tj / s
							// dy[n,o,i,j] and w[o,c,ki,kj] for o = 0, 1, ...
							dyo, wi := at4(K, HO, WO, n, 0, i, j), at4(C, KH, KW, 0, c, ki, kj)
							for range K {
								sum += dy.Data[dyo] * w.Data[wi]
								dyo += HO * WO
								wi += C * KH * KW
							}
						}
					}
					dx.Data[at4(C, H, W, n, c, h, v)] = sum
				}
			}
		}
	}
	return nil
}

// conv2dDw(dy, x) {stride s, pad p, kernel k} is the gradient of conv2d
// with respect to its k×k weight:
//
//	dw[o,c,ki,kj] = Σ_{n,i,j} dy[n,o,i,j] * x[n,c,i*s+ki-p,j*s+kj-p]
func conv2dDw(op *ir.Op, a, out []*Tensor, _ Options) error {
	convolveDw(a[0], a[1], op.Int("stride"), op.Int("pad"), out[0])
	return nil
}

// convolveDw writes the weight gradient of a conv with stride s and
// padding p, given its output gradient dy and its input x, into dw.
func convolveDw(dy, x *Tensor, s, p int, dw *Tensor) {
	N, K, HO, WO := dims4(dy.Shape)
	_, C, H, W := dims4(x.Shape)
	_, _, KH, KW := dims4(dw.Shape)
	for o := range K {
		for c := range C {
			for ki := range KH {
				for kj := range KW {
					sum := 0.0
					for n := range N {
						for i := range HO {
							h := i*s + ki - p
							if h < 0 || h >= H {
								continue
							}
							dyrow := dy.Data[at4(K, HO, WO, n, o, i, 0):][:WO]
							xrow := x.Data[at4(C, H, W, n, c, h, 0):][:W]
							for j := range WO {
								if v := j*s + kj - p; v >= 0 && v < W {
									sum += dyrow[j] * xrow[v]
								}
							}
						}
					}
					dw.Data[at4(C, KH, KW, o, c, ki, kj)] = sum
				}
			}
		}
	}
}

// poolArg returns the flat index in x of the maximum of the pooling window
// of output (n, c, i, j), or -1 if the window holds no element of x.
// Padded positions are -inf and never win; among equal maxima the first in
// scan order (row-major within the window) wins.
func poolArg(x *Tensor, k, s, p, n, c, i, j int) int {
	_, C, H, W := dims4(x.Shape)
	best, arg := math.Inf(-1), -1
	for ki := range k {
		h := i*s + ki - p
		if h < 0 || h >= H {
			continue
		}
		for kj := range k {
			v := j*s + kj - p
			if v < 0 || v >= W {
				continue
			}
			idx := at4(C, H, W, n, c, h, v)
			if arg < 0 || x.Data[idx] > best {
				best, arg = x.Data[idx], idx
			}
		}
	}
	return arg
}

// maxPool(x) {kernel, stride, pad} is the maximum over each window.
func maxPool(op *ir.Op, a, out []*Tensor, _ Options) error {
	k, s, p := op.Int("kernel"), op.Int("stride"), op.Int("pad")
	x, y := a[0], out[0]
	N, C, HO, WO := dims4(y.Shape)
	for n := range N {
		for c := range C {
			for i := range HO {
				for j := range WO {
					v := math.Inf(-1)
					if arg := poolArg(x, k, s, p, n, c, i, j); arg >= 0 {
						v = x.Data[arg]
					}
					y.Data[at4(C, HO, WO, n, c, i, j)] = v
				}
			}
		}
	}
	return nil
}

// maxPoolGrad(dy, x) {kernel, stride, pad} sends each dy to the element of
// x that maxPool picked for it (the first maximum of its window), summing
// where windows overlap.
func maxPoolGrad(op *ir.Op, a, out []*Tensor, _ Options) error {
	k, s, p := op.Int("kernel"), op.Int("stride"), op.Int("pad")
	dy, x, dx := a[0], a[1], out[0]
	N, C, HO, WO := dims4(dy.Shape)
	for n := range N {
		for c := range C {
			for i := range HO {
				for j := range WO {
					if arg := poolArg(x, k, s, p, n, c, i, j); arg >= 0 {
						dx.Data[arg] += dy.Data[at4(C, HO, WO, n, c, i, j)]
					}
				}
			}
		}
	}
	return nil
}

// subsamplePad(x) {stride s, channels C'} is the option A shortcut:
// y[n,c,i,j] = x[n,c,i*s,j*s] for c < C, 0 for C <= c < C'.
func subsamplePad(op *ir.Op, a, out []*Tensor, _ Options) error {
	s := op.Int("stride")
	x, y := a[0], out[0]
	_, C, H, W := dims4(x.Shape)
	N, CO, HO, WO := dims4(y.Shape)
	for n := range N {
		for c := range C {
			for i := range HO {
				for j := range WO {
					y.Data[at4(CO, HO, WO, n, c, i, j)] = x.Data[at4(C, H, W, n, c, i*s, j*s)]
				}
			}
		}
	}
	return nil
}

// subsamplePadGrad(dy) {stride s, channels C, in_h, in_w} is the gradient of
// subsamplePad: dx[n,c,i*s,j*s] = dy[n,c,i,j] for c < C, 0 elsewhere.
func subsamplePadGrad(op *ir.Op, a, out []*Tensor, _ Options) error {
	s := op.Int("stride")
	dy, dx := a[0], out[0]
	_, CO, HO, WO := dims4(dy.Shape)
	N, C, H, W := dims4(dx.Shape)
	for n := range N {
		for c := range C {
			for i := range HO {
				for j := range WO {
					dx.Data[at4(C, H, W, n, c, i*s, j*s)] = dy.Data[at4(CO, HO, WO, n, c, i, j)]
				}
			}
		}
	}
	return nil
}

// gap(x [N,C,H,W]) is the mean over H and W, giving [N,C].
func gap(_ *ir.Op, a, out []*Tensor, _ Options) error {
	x, y := a[0], out[0]
	N, C, H, W := dims4(x.Shape)
	for n := range N {
		for c := range C {
			sum := 0.0
			for h := range H {
				for v := range W {
					sum += x.Data[at4(C, H, W, n, c, h, v)]
				}
			}
			y.Data[n*C+c] = sum / float64(H*W)
		}
	}
	return nil
}

// gapGrad(dy [N,C]) {in_h, in_w} is dy/(H*W) broadcast over H and W.
func gapGrad(_ *ir.Op, a, out []*Tensor, _ Options) error {
	dy, dx := a[0], out[0]
	N, C, H, W := dims4(dx.Shape)
	for n := range N {
		for c := range C {
			g := dy.Data[n*C+c] / float64(H*W)
			for h := range H {
				for v := range W {
					dx.Data[at4(C, H, W, n, c, h, v)] = g
				}
			}
		}
	}
	return nil
}

package kernels

import (
	"errors"
	"fmt"
	"strings"
)

// Conv3x3Dx describes one shape-specialized backward-data kernel: the IR
// op conv2d_dx of the 3x3 conv with padding 1 and the given stride that
// takes x [N, Cin, H, W] to y [N, Cout, OutH, OutW]. From dy (shaped like
// y) and the conv's weights it computes
//
//	dx[n,ci,h,w] = Σ_{co,kh,kw} dy[n,co,oh,ow] * w[co,ci,kh,kw],  h = oh*Stride-1+kh, w = ow*Stride-1+kw,
//
// on NCHW8c activations, with the weights packed by PackConv3x3DxWeights
// (OIhw8i8o of the transposed kernel rotated by 180°, so that the input
// channels of the conv are the output channels of the kernel).
//
// With stride 1 this is the forward conv of dy with those weights, and
// the kernel is the forward kernel's code. With stride 2 the kernel splits
// dx into its four phases by (h%2, w%2); each phase is a stride-1 conv of
// dy with a 1x1, 1x2, 2x1 or 2x2 part of the kernel, so no multiply is
// wasted on the zeros a scatter would insert.
type Conv3x3Dx struct {
	N, Cin, Cout, H, W int
	Stride             int // 1 or 2
}

// Conv3x3DxSignature is the Go signature of every backward-data kernel,
// its twin included: dy and dx NCHW8c, w packed by PackConv3x3DxWeights,
// the caller's scratch, images [n0, n1). The kernel overwrites dx.
const Conv3x3DxSignature = "func(dy, w, dx, scratch []float32, n0, n1 int)"

// Conv3x3DxParams names the parameters of Conv3x3DxSignature, in order.
var Conv3x3DxParams = []string{"dy", "w", "dx", "scratch", "n0", "n1"}

// Validate reports why d cannot be generated, or nil.
func (d Conv3x3Dx) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("conv3x3 dx %s: "+format, append([]any{d.Name()}, args...)...))
	}
	checkDims(bad, d.N, d.Cin, d.Cout, d.H, d.W, d.Stride)
	if len(errs) == 0 {
		checkBytes(bad, []sizedPart{
			{"one image of dx", int64(d.Cin) * int64(d.H) * int64(d.W) * 4},
			{"the weights", int64(d.Cout) * int64(d.Cin) * 9 * 4},
			{"the scratch", int64(d.ScratchLen()) * 4},
		})
	}
	return errors.Join(errs...)
}

// OutH is the height of dy: (H+2-3)/Stride + 1.
func (d Conv3x3Dx) OutH() int { return (d.H-1)/d.Stride + 1 }

// OutW is the width of dy.
func (d Conv3x3Dx) OutW() int { return (d.W-1)/d.Stride + 1 }

// ScratchLen is the float32 length of the scratch each concurrent call
// needs: one image of dy with a zero border, [Cout/8][OutH+2][OutW+2][8].
func (d Conv3x3Dx) ScratchLen() int { return d.Cout * (d.OutH() + 2) * (d.OutW() + 2) }

// Name is the kernel's exported Go name, Conv3x3DxN128C16K16H32W32S1:
// the conv's batch, input and output channels, input size and stride.
func (d Conv3x3Dx) Name() string {
	return fmt.Sprintf("Conv3x3DxN%dC%dK%dH%dW%dS%d", d.N, d.Cin, d.Cout, d.H, d.W, d.Stride)
}

func (d Conv3x3Dx) asmName() string {
	return "conv3x3Dx" + strings.TrimPrefix(d.Name(), "Conv3x3Dx") + "AVX2"
}

func (d Conv3x3Dx) goName() string {
	return "conv3x3Dx" + strings.TrimPrefix(d.Name(), "Conv3x3Dx") + "Go"
}

// dyConv is the forward conv the kernel runs over its padded copy of dy:
// dy's channels in, dx's channels out, dy's size. With stride 1 it is
// exactly the kernel; with stride 2 its prologue, border and prefetch
// serve, and the phases replace its tiles.
func (d Conv3x3Dx) dyConv() Conv3x3 {
	return Conv3x3{N: d.N, Cin: d.Cout, Cout: d.Cin, H: d.OutH(), W: d.OutW(), Stride: 1}
}

// DxTap is one tap of a phase: the dy pixel at (DR, DC) from the phase's
// origin in the padded dy, times the packed weights of rotated tap K
// (kh'*3+kw', kh' = 2-kh).
type DxTap struct{ DR, DC, K int }

// DxPhase is the part of a stride-2 dx whose rows and columns have the
// parities (PH, PW): Rows x Cols pixels dx[2a+PH, 2b+PW], each the sum of
// its Taps at padded dy (a+1+DR, b+1+DC), swept with the tiles of Plan.
type DxPhase struct {
	PH, PW     int
	Rows, Cols int
	Taps       []DxTap
	Plan       Plan
}

// dxTaps1D lists, for one axis and parity, the rotated kernel index and
// dy offset of each tap: an even dx index takes the centre tap from the
// dy index below it, an odd one the two outer taps.
func dxTaps1D(parity int) [][2]int {
	if parity == 0 {
		return [][2]int{{1, 0}}
	}
	return [][2]int{{0, 0}, {2, 1}}
}

// Phases returns the four phases of a stride-2 kernel in the order it
// sweeps them, (0,0), (0,1), (1,0), (1,1), without the empty ones (a dx
// of height or width 1 has no odd rows or columns); nil for stride 1.
func (d Conv3x3Dx) Phases() []DxPhase {
	if d.Stride != 2 || d.Validate() != nil {
		return nil
	}
	var ps []DxPhase
	for ph := range 2 {
		for pw := range 2 {
			p := DxPhase{PH: ph, PW: pw, Rows: (d.H - ph + 1) / 2, Cols: (d.W - pw + 1) / 2}
			if p.Rows == 0 || p.Cols == 0 {
				continue
			}
			for _, r := range dxTaps1D(ph) {
				for _, c := range dxTaps1D(pw) {
					p.Taps = append(p.Taps, DxTap{DR: r[1], DC: c[1], K: r[0]*3 + c[0]})
				}
			}
			p.Plan = planTiles(d.Cin/8, p.Cols, d.Cout*len(p.Taps))
			ps = append(ps, p)
		}
	}
	return ps
}

// phaseUnroll is how many input channels one iteration of a phase's
// innermost loop covers: four tile steps per iteration whatever the
// number of taps.
func phaseUnroll(taps int) int { return max(1, 4/taps) }

// Tiles describes the kernel's register tiles: the forward plan for
// stride 1, each phase's plan for stride 2.
func (d Conv3x3Dx) Tiles() string {
	if d.Stride == 1 {
		return d.dyConv().Plan().String()
	}
	var parts []string
	for _, p := range d.Phases() {
		parts = append(parts, fmt.Sprintf("phase %d%d %s", p.PH, p.PW, p.Plan))
	}
	return strings.Join(parts, " | ")
}

// Conv3x3Dw describes one shape-specialized backward-weights kernel: the
// IR ops conv2d_dw (Prologue none) and conv2d_dw_fused of the 3x3 conv
// with padding 1 and the given stride from x [N, Cin, H, W] to dy [N,
// Cout, OutH, OutW]:
//
//	dw[co,ci,kh,kw] += Σ_{n,oh,ow} dy[n,co,oh,ow] * a[n,ci,oh*Stride-1+kh,ow*Stride-1+kw]
//
// with a = prologue(x) as in the forward conv, zero outside x. The kernel
// adds images [n0, n1) into a caller's partial sum in the layout
// [Cout/8][Cin/8][3][3][8 co][8 ci] (OIhw8o8i); each goroutine has its own
// partial, and SumConv3x3Dw adds them in a fixed order into the packed
// OIhw8i8o weights' layout.
//
// For each image, output-channel block, input-channel block, kernel row
// and half of the output block's channels, twelve accumulators (three
// kernel columns by four output channels, eight input channels each) stay
// in registers over every pixel of the image: each pixel broadcasts four
// dy values and loads Stride new input vectors, the three columns'
// vectors sliding along the row in a ring of three registers.
type Conv3x3Dw struct {
	N, Cin, Cout, H, W int
	Stride             int // 1 or 2
	Prologue           Prologue
}

// Conv3x3DwSignature is the Go signature of every backward-weights kernel,
// its twin included: x and dy NCHW8c, the prologue's per-channel scale and
// shift (nil unless affine_relu), the partial dw it adds into, the
// caller's scratch, images [n0, n1).
const Conv3x3DwSignature = "func(x, dy, scale, shift, dw, scratch []float32, n0, n1 int)"

// Conv3x3DwParams names the parameters of Conv3x3DwSignature, in order.
var Conv3x3DwParams = []string{"x", "dy", "scale", "shift", "dw", "scratch", "n0", "n1"}

// Validate reports why d cannot be generated, or nil.
func (d Conv3x3Dw) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("conv3x3 dw %s: "+format, append([]any{d.Name()}, args...)...))
	}
	checkDims(bad, d.N, d.Cin, d.Cout, d.H, d.W, d.Stride)
	if d.Prologue < PrologueNone || d.Prologue > PrologueAffineReLU {
		bad("unknown prologue %d", int(d.Prologue))
	}
	if len(errs) == 0 {
		checkBytes(bad, []sizedPart{
			{"one image of input", int64(d.Cin) * int64(d.H) * int64(d.W) * 4},
			{"one image of dy", int64(d.Cout) * int64(d.OutH()) * int64(d.OutW()) * 4},
			{"the weights", int64(d.Cout) * int64(d.Cin) * 9 * 4},
			{"the scratch", int64(d.Cin) * int64(d.H+2) * int64(d.W+2) * 4},
		})
	}
	return errors.Join(errs...)
}

// OutH is the height of dy.
func (d Conv3x3Dw) OutH() int { return (d.H-1)/d.Stride + 1 }

// OutW is the width of dy.
func (d Conv3x3Dw) OutW() int { return (d.W-1)/d.Stride + 1 }

// ScratchLen is the float32 length of the scratch each concurrent call
// needs: prologue(x) of one image with a zero border, [Cin/8][H+2][W+2][8].
func (d Conv3x3Dw) ScratchLen() int { return d.Cin * (d.H + 2) * (d.W + 2) }

// Name is the kernel's exported Go name, Conv3x3DwN128C16K16H32W32S1 with
// the suffix InRelu or InAffineRelu for the prologue.
func (d Conv3x3Dw) Name() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Conv3x3DwN%dC%dK%dH%dW%dS%d", d.N, d.Cin, d.Cout, d.H, d.W, d.Stride)
	switch d.Prologue {
	case PrologueReLU:
		b.WriteString("InRelu")
	case PrologueAffineReLU:
		b.WriteString("InAffineRelu")
	}
	return b.String()
}

func (d Conv3x3Dw) asmName() string {
	return "conv3x3Dw" + strings.TrimPrefix(d.Name(), "Conv3x3Dw") + "AVX2"
}

func (d Conv3x3Dw) goName() string {
	return "conv3x3Dw" + strings.TrimPrefix(d.Name(), "Conv3x3Dw") + "Go"
}

// xConv is the forward conv whose input the kernel reads: its prologue,
// zero border and prefetch are the forward kernel's.
func (d Conv3x3Dw) xConv() Conv3x3 {
	return Conv3x3{N: d.N, Cin: d.Cin, Cout: d.Cout, H: d.H, W: d.W, Stride: d.Stride, Prologue: d.Prologue}
}

// dwChunk is how many pixels of a row one iteration of the backward-weights
// pixel loop covers: a multiple of three, so that the ring of column
// registers is back where it started at every iteration.
const dwChunk = 6

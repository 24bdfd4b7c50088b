package kernels

import (
	"errors"
	"fmt"
	"strings"
)

// Prologue is what a fused conv applies to each input element as it reads
// it, as the prologue attribute of the IR op conv2d_fused.
type Prologue int

const (
	PrologueNone       Prologue = iota // a = x
	PrologueReLU                       // a = max(x, 0)
	PrologueAffineReLU                 // a = max(scale[c]*x + shift[c], 0)
)

// Prologues lists every prologue, in the order of their constants.
var Prologues = []Prologue{PrologueNone, PrologueReLU, PrologueAffineReLU}

// String returns the IR spelling of the prologue.
func (p Prologue) String() string {
	switch p {
	case PrologueNone:
		return "none"
	case PrologueReLU:
		return "relu"
	case PrologueAffineReLU:
		return "affine_relu"
	}
	return fmt.Sprintf("prologue(%d)", int(p))
}

// Conv3x3 describes one shape-specialized 3x3 convolution with padding 1:
// the IR op conv2d_fused with kernel 3, pad 1 and the given stride, on
// NCHW8c activations and OIhw8i8o weights. Each distinct value is one
// generated function.
type Conv3x3 struct {
	N, Cin, Cout, H, W int
	Stride             int // 1 or 2
	Prologue           Prologue
	Bias               bool // z += bias[co]
	Residual           bool // z += res (same shape as y), before the ReLU
	ReLU               bool // y = max(z, 0)
	Stats              bool // per-image Σy and Σy² for the next BatchNorm

	// Unroll is how many of the eight input channels of a block one
	// iteration of the innermost loop covers (1, 2, 4 or 8); 0 picks the
	// default, 4.
	Unroll int
}

// Conv3x3Signature is the Go signature every conv3x3 kernel shares, its
// twin included. Slices a kernel's flags do not use may be nil. The kernel
// computes images [n0, n1) and is single-threaded: callers split the batch
// over goroutines, each with its own scratch.
const Conv3x3Signature = "func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int)"

// Conv3x3Params names the parameters of Conv3x3Signature, in order.
var Conv3x3Params = []string{"x", "w", "bias", "scale", "shift", "res", "y", "stats", "scratch", "n0", "n1"}

// maxDim bounds every dimension.
const maxDim = 1 << 16

// Validate reports why c cannot be generated, or nil.
func (c Conv3x3) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("conv3x3 %s: "+format, append([]any{c.Name()}, args...)...))
	}
	checkDims(bad, c.N, c.Cin, c.Cout, c.H, c.W, c.Stride)
	if c.Prologue < PrologueNone || c.Prologue > PrologueAffineReLU {
		bad("unknown prologue %d", int(c.Prologue))
	}
	switch c.Unroll {
	case 0, 1, 2, 4, 8:
	default:
		bad("unroll %d, want 1, 2, 4 or 8", c.Unroll)
	}
	if len(errs) == 0 {
		// Per-image offsets, weight offsets and the scratch are 32-bit
		// immediates and displacements in the assembly.
		checkBytes(bad, []sizedPart{
			{"one image of input", int64(c.Cin) * int64(c.H) * int64(c.W) * 4},
			{"one image of output", int64(c.Cout) * int64(c.OutH()) * int64(c.OutW()) * 4},
			{"the weights", int64(c.Cout) * int64(c.Cin) * 9 * 4},
			{"the scratch", int64(c.Cin) * int64(c.H+2) * int64(c.W+2) * 4},
		})
	}
	return errors.Join(errs...)
}

// checkDims reports, through bad, what is wrong with the dimensions and
// stride of a 3x3 conv: x [n, cin, h, w] to y [n, cout, ...].
func checkDims(bad func(format string, args ...any), n, cin, cout, h, w, stride int) {
	for _, d := range []struct {
		name string
		v    int
	}{{"N", n}, {"H", h}, {"W", w}, {"Cin", cin}, {"Cout", cout}} {
		if d.v < 1 || d.v > maxDim {
			bad("%s=%d, want 1..%d", d.name, d.v, maxDim)
		}
	}
	if cin%8 != 0 {
		bad("Cin=%d is not a multiple of 8 (NCHW8c)", cin)
	}
	if cout%8 != 0 {
		bad("Cout=%d is not a multiple of 8 (NCHW8c)", cout)
	}
	if stride != 1 && stride != 2 {
		bad("stride %d, want 1 or 2", stride)
	}
}

// sizedPart is a buffer of a kernel whose size in bytes must fit the
// 32-bit offsets of the assembly.
type sizedPart struct {
	what  string
	bytes int64
}

// checkBytes reports, through bad, every part of 2 GiB or more.
func checkBytes(bad func(format string, args ...any), parts []sizedPart) {
	for _, b := range parts {
		if b.bytes >= 1<<31 {
			bad("%s takes %d bytes, want less than 2 GiB", b.what, b.bytes)
		}
	}
}

// OutH is the output height: (H+2-3)/Stride + 1.
func (c Conv3x3) OutH() int { return (c.H-1)/c.Stride + 1 }

// OutW is the output width.
func (c Conv3x3) OutW() int { return (c.W-1)/c.Stride + 1 }

// XLen is the float32 length of the input.
func (c Conv3x3) XLen() int { return c.N * c.Cin * c.H * c.W }

// YLen is the float32 length of the output (and of the residual).
func (c Conv3x3) YLen() int { return c.N * c.Cout * c.OutH() * c.OutW() }

// ScratchLen is the float32 length of the scratch each concurrent call
// needs: the prologue's output for one image with an explicit zero
// border, [Cin/8][H+2][W+2][8].
func (c Conv3x3) ScratchLen() int { return c.Cin * (c.H + 2) * (c.W + 2) }

// unroll is Unroll with the default applied.
func (c Conv3x3) unroll() int {
	if c.Unroll == 0 {
		return 4
	}
	return c.Unroll
}

// Name is the kernel's exported Go name. It spells out every field, so
// distinct kernels have distinct names: Conv3x3N128C16K16H32W32S1 is the
// plain conv, with suffixes InRelu or InAffineRelu for the prologue, then
// Bias, Res, Relu and Stats for the epilogue, then U<n> for a
// non-default unroll.
func (c Conv3x3) Name() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Conv3x3N%dC%dK%dH%dW%dS%d", c.N, c.Cin, c.Cout, c.H, c.W, c.Stride)
	switch c.Prologue {
	case PrologueReLU:
		b.WriteString("InRelu")
	case PrologueAffineReLU:
		b.WriteString("InAffineRelu")
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{c.Bias, "Bias"}, {c.Residual, "Res"}, {c.ReLU, "Relu"}, {c.Stats, "Stats"}} {
		if f.on {
			b.WriteString(f.name)
		}
	}
	if c.Unroll != 0 && c.Unroll != 4 {
		fmt.Fprintf(&b, "U%d", c.Unroll)
	}
	return b.String()
}

// asmName is the unexported name of the assembly kernel.
func (c Conv3x3) asmName() string {
	return "conv3x3" + strings.TrimPrefix(c.Name(), "Conv3x3") + "AVX2"
}

// goName is the unexported name of its pure-Go twin.
func (c Conv3x3) goName() string { return "conv3x3" + strings.TrimPrefix(c.Name(), "Conv3x3") + "Go" }

// numYMM is the number of vector registers AVX2 has.
const numYMM = 16

// maxPixels is the widest tile (output pixels of one row) covering blocks
// output-channel blocks whose registers fit: blocks*pixels accumulators,
// one weight register per block and one broadcast register.
func maxPixels(blocks int) int {
	return (numYMM - 1 - blocks) / blocks
}

// Tile is a register-blocked piece of output: Pixels consecutive output
// pixels of one row times Blocks output-channel blocks of 8, all held in
// YMM accumulators while the kernel runs over every input channel and tap.
type Tile struct{ Blocks, Pixels int }

// Run is Count consecutive tiles of the same size along a row.
type Run struct {
	Pixels, Count int
}

// Group is Count consecutive groups of Blocks output-channel blocks that
// share one row split.
type Group struct {
	Blocks, Count int
	Row           []Run // the row split: the widths sum to OutW
}

// Plan is how a kernel covers its output with tiles: output-channel
// groups, each swept row by row, each row split into tiles as evenly as
// the register budget allows (so no row ends in a sliver of a tile).
type Plan struct {
	Groups []Group
}

// String describes the plan as the generated Conv3x3Shape.Tiles does:
// "2x3 blocks: row 2x4; 1x2 blocks: row 2x4" is two groups of three
// output-channel blocks, then one group of two, each row of each group
// cut into two tiles of four pixels.
func (p Plan) String() string {
	var parts []string
	for _, g := range p.Groups {
		var row []string
		for _, r := range g.Row {
			row = append(row, fmt.Sprintf("%dx%d", r.Count, r.Pixels))
		}
		parts = append(parts, fmt.Sprintf("%dx%d blocks: row %s", g.Count, g.Blocks, strings.Join(row, "+")))
	}
	return strings.Join(parts, "; ")
}

// splitRow splits a row of w pixels into the fewest tiles of at most
// widest pixels, as evenly as possible: the wider tiles first.
func splitRow(w, widest int) []Run {
	k := (w + widest - 1) / widest
	q, r := w/k, w%k
	var runs []Run
	if r > 0 {
		runs = append(runs, Run{q + 1, r})
	}
	if k-r > 0 {
		runs = append(runs, Run{q, k - r})
	}
	return runs
}

// Cost model of one tile step (one input channel of one tap: Blocks weight
// loads, Pixels broadcasts, Blocks*Pixels FMAs), in cycles, for a core with
// two FMA pipes, two vector loads per cycle and a four-cycle FMA latency.
// Each accumulator takes one FMA per step, so a step can never be shorter
// than the latency. Measured on a 16-channel 32-wide conv: 2x6 tiles (12
// accumulators) reach 92% of peak, 2x5 tiles 86%; reading one block's
// weights from memory to fit 2x7 tiles was slower (80%), so tiles keep
// every weight in a register.
const (
	fmaPerCycle  = 2
	loadPerCycle = 2
	fmaLatency   = 4.5 // a little above 4: the chains never line up perfectly
	tileOverhead = 30  // cycles per tile for set-up, epilogue and stores
)

func stepCycles(t Tile) float64 {
	return max(float64(t.Blocks*t.Pixels)/fmaPerCycle,
		float64(t.Blocks+t.Pixels)/loadPerCycle, fmaLatency)
}

// Plan chooses the tiles: for each candidate number of output-channel
// blocks per group (1 to 4, the last group taking the remainder), split
// the row into the widest tiles that fit the registers, and keep the
// candidate with the fewest modelled cycles. An invalid c has the empty
// plan.
func (c Conv3x3) Plan() Plan {
	if c.Validate() != nil {
		return Plan{}
	}
	return planTiles(c.Cout/8, c.OutW(), c.Cin*9)
}

// planTiles is Plan for an output of cob channel blocks and rows of wo
// pixels, each tile taking steps tile steps (input channels times taps).
func planTiles(cob, wo, steps int) Plan {
	best, bestCost := Plan{}, 0.0
	for nb := 1; nb <= 4 && nb <= cob; nb++ {
		var p Plan
		if full := cob / nb; full > 0 {
			p.Groups = append(p.Groups, Group{Blocks: nb, Count: full, Row: splitRow(wo, maxPixels(nb))})
		}
		if rem := cob % nb; rem > 0 {
			p.Groups = append(p.Groups, Group{Blocks: rem, Count: 1, Row: splitRow(wo, maxPixels(rem))})
		}
		cost := 0.0
		for _, g := range p.Groups {
			for _, r := range g.Row {
				t := Tile{g.Blocks, r.Pixels}
				cost += float64(g.Count*r.Count) * (float64(steps)*stepCycles(t) + tileOverhead)
			}
		}
		if best.Groups == nil || cost < bestCost-1e-9 {
			best, bestCost = p, cost
		}
	}
	return best
}

package kernels

import (
	"errors"
	"fmt"
	"strings"
)

// Conv1x1Op is which of the three computations of a 1x1 convolution a
// Conv1x1 kernel does. A training step needs all three for each 1x1 conv.
type Conv1x1Op int

const (
	// Conv1x1Fwd is conv2d_fused with kernel 1 and pad 0: per image the
	// GEMM y[Cout, P] = W[Cout, Cin] · prologue(x)[Cin, P] over the P
	// output pixels, with the 3x3 kernel's fused prologue and epilogue.
	Conv1x1Fwd Conv1x1Op = iota
	// Conv1x1Dx is conv2d_dx with kernel 1 and pad 0: dx = Wᵀ·dy, scattered
	// into every other pixel of every other row (zeros elsewhere) when the
	// stride is 2.
	Conv1x1Dx
	// Conv1x1Dw is conv2d_dw_fused (conv2d_dw with prologue none) with
	// kernel 1 and pad 0: dw[co][ci] += Σ_{n,p} dy[n,co,p] ·
	// prologue(x)[n,ci,p·stride], accumulated into the caller's partial.
	Conv1x1Dw
)

// String returns the name the op has in kernel names: "" (forward), "Dx"
// or "Dw".
func (o Conv1x1Op) String() string {
	switch o {
	case Conv1x1Fwd:
		return ""
	case Conv1x1Dx:
		return "Dx"
	case Conv1x1Dw:
		return "Dw"
	}
	return fmt.Sprintf("Op%d", int(o))
}

// Conv1x1 describes one shape-specialized 1x1 convolution kernel (pad 0)
// on NCHW8c activations, with weights packed [Cout/8][Cin][8] (the 3x3
// kernels' OIhw8i8o with a 1x1 window): the eight output channels of one
// input channel are one vector. N, Cin, Cout, H, W and Stride are those
// of the forward conv, whichever Op the kernel computes: x is
// [N,Cin,H,W] and y (or dy) is [N,Cout,OutH,OutW]. Each distinct value is
// one generated function.
type Conv1x1 struct {
	Op                 Conv1x1Op
	N, Cin, Cout, H, W int
	Stride             int // 1 or 2

	Prologue Prologue // forward and Dw: what is applied to x as it is read
	Bias     bool     // forward only: z += bias[co]
	Residual bool     // forward only: z += res (same shape as y), before the ReLU
	ReLU     bool     // forward only: y = max(z, 0)
	Stats    bool     // forward only: per-image Σy and Σy² for the next BatchNorm

	// Unroll is how many reduction steps one iteration of the innermost
	// loop covers (input channels for the forward kernel, output channels
	// for Dx, pixels for Dw): 1, 2, 4 or 8; 0 picks the default, 4 (8 is
	// no faster and twice the code).
	Unroll int
}

// Conv1x1Signature is the Go signature of every forward 1x1 conv kernel,
// its twin included: Conv3x3Signature, so that one call site serves both.
// Slices a kernel's flags do not use may be nil, and so may scratch when
// ScratchLen is 0. The kernel computes images [n0, n1) and is
// single-threaded: callers split the batch over goroutines, each with its
// own scratch.
const Conv1x1Signature = Conv3x3Signature

// Conv1x1DxSignature is the signature of every Dx kernel: dx of images
// [n0, n1) from dy and the weights w packed for it, [Cin/8][Cout][8 ci];
// it needs no scratch.
const Conv1x1DxSignature = "func(dy, w, dx, scratch []float32, n0, n1 int)"

// Conv1x1DwSignature is the signature of every Dw kernel: it adds the
// weight gradient of images [n0, n1) to dw (packed like w), a partial the
// caller owns. Workers each accumulate into their own partial, which the
// caller adds in worker order, so the result does not depend on timing.
const Conv1x1DwSignature = "func(dy, x, scale, shift, dw, scratch []float32, n0, n1 int)"

// Conv1x1Params, Conv1x1DxParams and Conv1x1DwParams name the parameters
// of the three signatures, in order.
var (
	Conv1x1Params   = Conv3x3Params
	Conv1x1DxParams = []string{"dy", "w", "dx", "scratch", "n0", "n1"}
	Conv1x1DwParams = []string{"dy", "x", "scale", "shift", "dw", "scratch", "n0", "n1"}
)

// Signature is the Go signature of c's kernel.
func (c Conv1x1) Signature() string {
	switch c.Op {
	case Conv1x1Dx:
		return Conv1x1DxSignature
	case Conv1x1Dw:
		return Conv1x1DwSignature
	}
	return Conv1x1Signature
}

// Params names the parameters of c's signature.
func (c Conv1x1) Params() []string {
	switch c.Op {
	case Conv1x1Dx:
		return Conv1x1DxParams
	case Conv1x1Dw:
		return Conv1x1DwParams
	}
	return Conv1x1Params
}

// Validate reports why c cannot be generated, or nil.
func (c Conv1x1) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("conv1x1 %s: "+format, append([]any{c.Name()}, args...)...))
	}
	if c.Op < Conv1x1Fwd || c.Op > Conv1x1Dw {
		bad("unknown op %d", int(c.Op))
	}
	for _, d := range []struct {
		name string
		v    int
	}{{"N", c.N}, {"H", c.H}, {"W", c.W}, {"Cin", c.Cin}, {"Cout", c.Cout}} {
		if d.v < 1 || d.v > maxDim {
			bad("%s=%d, want 1..%d", d.name, d.v, maxDim)
		}
	}
	if c.Cin%8 != 0 {
		bad("Cin=%d is not a multiple of 8 (NCHW8c)", c.Cin)
	}
	if c.Cout%8 != 0 {
		bad("Cout=%d is not a multiple of 8 (NCHW8c)", c.Cout)
	}
	if c.Stride != 1 && c.Stride != 2 {
		bad("stride %d, want 1 or 2", c.Stride)
	}
	if c.Prologue < PrologueNone || c.Prologue > PrologueAffineReLU {
		bad("unknown prologue %d", int(c.Prologue))
	}
	if c.Op == Conv1x1Dx && c.Prologue != PrologueNone {
		bad("conv2d_dx has no prologue")
	}
	if c.Op != Conv1x1Fwd && (c.Bias || c.Residual || c.ReLU || c.Stats) {
		bad("bias, residual, relu and stats belong to the forward conv")
	}
	switch c.Unroll {
	case 0, 1, 2, 4, 8:
	default:
		bad("unroll %d, want 1, 2, 4 or 8", c.Unroll)
	}
	if len(errs) == 0 {
		// Per-image offsets, weight offsets and the scratch are 32-bit
		// immediates and displacements in the assembly.
		for _, b := range []struct {
			what  string
			bytes int64
		}{
			{"one image of input", int64(c.Cin) * int64(c.H) * int64(c.W) * 4},
			{"one image of output", int64(c.Cout) * int64(c.OutH()) * int64(c.OutW()) * 4},
			{"the weights", int64(c.Cout) * int64(c.Cin) * 4},
		} {
			if b.bytes >= 1<<31 {
				bad("%s takes %d bytes, want less than 2 GiB", b.what, b.bytes)
			}
		}
	}
	return errors.Join(errs...)
}

// OutH is the output height, (H-1)/Stride + 1.
func (c Conv1x1) OutH() int { return (c.H-1)/c.Stride + 1 }

// OutW is the output width.
func (c Conv1x1) OutW() int { return (c.W-1)/c.Stride + 1 }

// outPixels is the number of output pixels of one image.
func (c Conv1x1) outPixels() int { return c.OutH() * c.OutW() }

// XLen is the float32 length of x (the forward input, dx for Dx).
func (c Conv1x1) XLen() int { return c.N * c.Cin * c.H * c.W }

// YLen is the float32 length of y (the forward output and residual, dy
// for Dx and Dw).
func (c Conv1x1) YLen() int { return c.N * c.Cout * c.outPixels() }

// WLen is the float32 length of the packed weights (and of dw).
func (c Conv1x1) WLen() int { return c.Cout * c.Cin }

// gathers reports whether the forward and Dw kernels first write
// prologue(x), subsampled by the stride, into the scratch: unless the
// stride is 1 and there is no prologue, when they read x itself.
func (c Conv1x1) gathers() bool {
	return c.Op != Conv1x1Dx && (c.Stride != 1 || c.Prologue != PrologueNone)
}

// ScratchLen is the float32 length of the scratch each concurrent call
// needs: for the forward and Dw kernels prologue(x) of one image at the
// output pixels, [Cin/8][OutH·OutW][8], or nothing when they read x
// itself; Dx needs none.
func (c Conv1x1) ScratchLen() int {
	switch {
	case c.Op == Conv1x1Dx:
		return 0
	case c.gathers():
		return c.Cin * c.outPixels()
	}
	return 0
}

// unroll is Unroll with the default applied.
func (c Conv1x1) unroll() int {
	if c.Unroll != 0 {
		return c.Unroll
	}
	return 4
}

// Name is the kernel's exported Go name. It spells out every field, so
// distinct kernels have distinct names: Conv1x1N128C64K16H32W32S1 is the
// plain forward conv, Conv1x1DxN128C64K16H32W32S1 and
// Conv1x1DwN128C64K16H32W32S1 its gradients (C and K are always the
// forward conv's input and output channels), with suffixes InRelu or
// InAffineRelu for the prologue, then Bias, Res, Relu and Stats for the
// epilogue, then U<n> for a non-default unroll.
func (c Conv1x1) Name() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Conv1x1%sN%dC%dK%dH%dW%dS%d", c.Op, c.N, c.Cin, c.Cout, c.H, c.W, c.Stride)
	switch c.Prologue {
	case PrologueNone:
	case PrologueReLU:
		b.WriteString("InRelu")
	case PrologueAffineReLU:
		b.WriteString("InAffineRelu")
	default:
		fmt.Fprintf(&b, "In%d", int(c.Prologue))
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
func (c Conv1x1) asmName() string {
	return "conv1x1" + strings.TrimPrefix(c.Name(), "Conv1x1") + "AVX2"
}

// goName is the unexported name of its pure-Go twin.
func (c Conv1x1) goName() string {
	return "conv1x1" + strings.TrimPrefix(c.Name(), "Conv1x1") + "Go"
}

// FLOPs is the work of the whole batch, two per multiply-add: the same
// for the three ops.
func (c Conv1x1) FLOPs() float64 {
	return 2 * float64(c.N) * float64(c.Cout) * float64(c.Cin) * float64(c.outPixels())
}

// Span is Count consecutive tiles of Width columns.
type Span struct{ Width, Count int }

// GemmGroup is Count consecutive groups of Blocks vector blocks (eight
// channels each) that share one split of the columns into Spans.
type GemmGroup struct {
	Blocks, Count int
	Cols          []Span // the widths sum to the columns of a row
}

// GemmPlan is how a 1x1 kernel covers its output with register tiles of
// Blocks vectors by Width columns, all held in YMM accumulators while the
// kernel runs over the reduction. The forward kernel's blocks are output
// channels and its columns output pixels; Dx's blocks are input channels
// and its columns dy's pixels; Dw's blocks are output channels and its
// columns input channels (broadcast scalars), its reduction the pixels.
// The columns are all of one image's pixels in one row (Rows = 1),
// except for Dx with stride 2, whose tiles follow dy's OutH rows so that
// each pixel's place in dx is an offset from its row's.
type GemmPlan struct {
	Rows   int
	Groups []GemmGroup
	// Chunk is, for Dw, the pixels one sweep of the tiles covers: the
	// image's pixels are cut into chunks so that a group's dy and one
	// block of the input stay in L1 while every tile of the group reads
	// them. It divides the image's pixels; 0 is the whole image.
	Chunk int
}

// String describes the plan as the generated Conv1x1Shape.Tiles does:
// "1x2 blocks: 170x6+1x4" is one group of two vector blocks whose columns
// are cut into 170 tiles of six and one of four; a prefix "8 rows of"
// gives the rows when there are several.
func (p GemmPlan) String() string {
	var parts []string
	for _, g := range p.Groups {
		var cols []string
		for _, s := range g.Cols {
			cols = append(cols, fmt.Sprintf("%dx%d", s.Count, s.Width))
		}
		parts = append(parts, fmt.Sprintf("%dx%d blocks: %s", g.Count, g.Blocks, strings.Join(cols, "+")))
	}
	s := strings.Join(parts, "; ")
	if p.Rows > 1 {
		s = fmt.Sprintf("%d rows of %s", p.Rows, s)
	}
	if p.Chunk > 0 {
		s += fmt.Sprintf(" over chunks of %d pixels", p.Chunk)
	}
	return s
}

// gemmMaxCols is the widest tile of blocks vector blocks whose registers
// fit: blocks·cols accumulators, one register per block for the vector
// operand and one for the broadcast.
func gemmMaxCols(blocks int) int { return (numYMM - 1 - blocks) / blocks }

// splitCols splits n columns into the fewest tiles of at most widest
// columns, as evenly as possible, the wider tiles first.
func splitCols(n, widest int) []Span {
	k := (n + widest - 1) / widest
	q, r := n/k, n%k
	var spans []Span
	if r > 0 {
		spans = append(spans, Span{q + 1, r})
	}
	if k-r > 0 {
		spans = append(spans, Span{q, k - r})
	}
	return spans
}

// Cost model of one reduction step of a tile (Blocks vector loads, Width
// broadcasts, Blocks·Width FMAs), in cycles, for a core with two FMA
// pipes, two vector loads per cycle and a four-cycle FMA latency (a
// little more in practice), plus a per-tile overhead of set-up and loop
// control and one cycle per accumulator stored.
const (
	gemmFMAPerCycle  = 2
	gemmLoadPerCycle = 2
	gemmFMALatency   = 4.5
	gemmTileOverhead = 10
)

func gemmStepCycles(blocks, width int) float64 {
	return max(float64(blocks*width)/gemmFMAPerCycle,
		float64(blocks+width)/gemmLoadPerCycle, gemmFMALatency)
}

// gemmDims are the sizes the plan works with: the vector blocks of the
// output, the columns of one row, the rows and the reduction length of
// one tile.
func (c Conv1x1) gemmDims() (blocks, cols, rows, steps int) {
	switch c.Op {
	case Conv1x1Dx:
		if c.Stride == 2 {
			return c.Cin / 8, c.OutW(), c.OutH(), c.Cout
		}
		return c.Cin / 8, c.outPixels(), 1, c.Cout
	case Conv1x1Dw:
		return c.Cout / 8, c.Cin, 1, c.outPixels()
	}
	return c.Cout / 8, c.outPixels(), 1, c.Cin
}

// gemmSteps is the reduction length of one tile of the forward kernel or
// Dx: the input or output channels.
func (c Conv1x1) gemmSteps() int {
	_, _, _, steps := c.gemmDims()
	return steps
}

// dwWidth is the tile width of Dw for blocks vector blocks: four input
// channels, or all eight of a channel block for a single vector block.
// Dw's tiles never straddle two channel blocks, so that one loop over
// the tiles of a block serves every block.
func dwWidth(blocks int) int {
	if blocks == 1 {
		return 8
	}
	return 4
}

// Plan chooses the tiles: for each candidate number of vector blocks per
// group (1 to 4 for the forward kernel and Dx, 1 to 3 for Dw, the last
// group taking the remainder), cut the columns into the widest tiles that
// fit the registers (Dw: dwWidth), and keep the candidate with the fewest
// modelled cycles. An invalid c has the empty plan.
func (c Conv1x1) Plan() GemmPlan {
	if c.Validate() != nil {
		return GemmPlan{}
	}
	blocks, cols, rows, steps := c.gemmDims()
	split := func(nb int) []Span {
		if c.Op == Conv1x1Dw {
			w := dwWidth(nb)
			return []Span{{w, cols / w}}
		}
		return splitCols(cols, gemmMaxCols(nb))
	}
	most := 4
	if c.Op == Conv1x1Dw {
		most = 3
	}
	best, bestCost := GemmPlan{}, 0.0
	for nb := 1; nb <= most && nb <= blocks; nb++ {
		p := GemmPlan{Rows: rows}
		if full := blocks / nb; full > 0 {
			p.Groups = append(p.Groups, GemmGroup{Blocks: nb, Count: full, Cols: split(nb)})
		}
		if rem := blocks % nb; rem > 0 {
			p.Groups = append(p.Groups, GemmGroup{Blocks: rem, Count: 1, Cols: split(rem)})
		}
		cost := 0.0
		for _, g := range p.Groups {
			for _, s := range g.Cols {
				tile := float64(steps)*gemmStepCycles(g.Blocks, s.Width) + gemmTileOverhead + float64(g.Blocks*s.Width)
				cost += float64(g.Count*s.Count) * tile
			}
		}
		// On a tie the more blocks per group the better: fewer loads per
		// FMA (Dw's 2x4 tiles against 1x8).
		if best.Groups == nil || cost < bestCost+1e-9 {
			best, bestCost = p, cost
		}
	}
	if c.Op == Conv1x1Dw {
		most := 0
		for _, g := range best.Groups {
			most = max(most, g.Blocks)
		}
		if k := c.dwChunk(most); k < c.outPixels() {
			best.Chunk = k
		}
	}
	return best
}

// dwL1Bytes is the L1 budget of one Dw chunk: a group's dy and one block
// of the input at the chunk's pixels, with room to spare for dw and the
// stack in a 32 KiB L1.
const dwL1Bytes = 24 << 10

// dwChunk is the largest number of pixels that divides the image's, is a
// multiple of the unroll (or the whole image) and keeps blocks blocks of
// dy and one input block within dwL1Bytes.
func (c Conv1x1) dwChunk(blocks int) int {
	p := c.outPixels()
	limit := dwL1Bytes / ((blocks + 1) * 32)
	if p <= limit {
		return p
	}
	for k := limit; k >= c.unroll(); k-- {
		if p%k == 0 && k%c.unroll() == 0 {
			return k
		}
	}
	return p
}

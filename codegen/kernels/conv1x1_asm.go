package kernels

import (
	"fmt"

	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/gotypes"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// BuildAsm adds c's AVX2+FMA kernel to ctx as a function with
// c.Signature().
//
// Each op is a small GEMM per image on blocked data, swept tile by tile
// as c.Plan says, every tile's accumulators in registers:
//
//   - forward: for each image, prologue(x) at the output pixels goes into
//     the scratch (unless x can be read as it is); then for each group of
//     output-channel blocks and each tile of pixels, the kernel runs over
//     the input channels, one weight vector per block and one broadcast
//     input scalar per pixel, and applies the epilogue as it stores;
//   - Dx: the weights come packed as [Cin/8][Cout][8 ci] (the driver packs
//     them once per step); the same sweep with the roles of the channels
//     swapped, dy's scalars broadcast; with stride 2 the tiles follow dy's
//     rows, and each row of tiles is followed by the zeros of the pixels
//     between and below;
//   - Dw: for each image (after the same prologue as the forward kernel)
//     and each chunk of its pixels, each tile of output-channel blocks by
//     input channels loads its partial sums from dw, runs over the
//     chunk's pixels, one dy vector per block and one broadcast input
//     scalar per channel, and stores them back.
//
// While it computes one image, every kernel prefetches the next image's
// inputs into L2 (for stride 2 only the rows it reads), a few lines per
// iteration of the tiles' innermost loop.
func (c Conv1x1) BuildAsm(ctx *build.Context) error {
	if err := c.Validate(); err != nil {
		return err
	}
	ctx.Function(c.asmName())
	ctx.Attributes(attr.NOSPLIT)
	ctx.SignatureExpr(c.Signature())
	ctx.Pragma("noescape")
	ctx.Doc(fmt.Sprintf("%s is the AVX2+FMA kernel of %s (tiles: %s).", c.asmName(), c.Name(), c.Plan()))
	b := &gemmAsm{ctx: ctx, c: c, plan: c.Plan()}
	switch c.Op {
	case Conv1x1Fwd:
		b.forward()
	case Conv1x1Dx:
		b.backwardData()
	case Conv1x1Dw:
		b.backwardWeights()
	}
	ctx.VZEROUPPER()
	ctx.RET()
	return nil
}

// gemmAsm holds the state of one 1x1 kernel being built.
type gemmAsm struct {
	ctx    *build.Context
	c      Conv1x1
	plan   GemmPlan
	labels int

	// Stack slots: the image, the current group's remaining count, its
	// first channel's byte offset, its output (or dw, dy) start, the
	// image's statistics, res - y, the broadcast operand's start.
	nLoc, gcntLoc, gofsLoc, outLoc, dyLoc, statsLoc, rdeltaLoc, aLoc operand.Mem

	// The next image's inputs, prefetched into L2 a slice per tile.
	streams []*pfStream
}

// pfStream is one input of the next image that the kernel prefetches
// while it computes the current one, so that it reads it from L2: rows
// of rowBytes every rowStep bytes, rows of them per image (one row of the
// whole image when every line is needed).
type pfStream struct {
	param                   string
	image                   int // bytes per image
	rowBytes, rowStep, rows int
	ptrLoc, leftLoc         operand.Mem
}

func (p *pfStream) rowLines() int { return (p.rowBytes + 63) / 64 }
func (p *pfStream) lines() int    { return p.rows * p.rowLines() }

// xStream is the stream of the lines of x the kernel reads: with stride 2
// only the even rows (whose odd pixels come along in their cache lines).
func (b *gemmAsm) xStream() *pfStream {
	c := b.c
	if c.Stride == 1 {
		return &pfStream{param: "x", image: b.xImage(), rowBytes: b.xImage(), rows: 1}
	}
	return &pfStream{param: "x", image: b.xImage(), rowBytes: c.W * 32, rowStep: 2 * c.W * 32, rows: c.Cin / 8 * c.OutH()}
}

// yStream is the stream of one image of y-shaped data (dy).
func (b *gemmAsm) yStream(param string) *pfStream {
	return &pfStream{param: param, image: b.yImage(), rowBytes: b.yImage(), rows: 1}
}

// chunk is the pixels of Dw's chunks.
func (b *gemmAsm) chunk() int {
	if b.plan.Chunk > 0 {
		return b.plan.Chunk
	}
	return b.c.outPixels()
}

// tilesPerImage is the number of tiles the plan sweeps per image.
func (b *gemmAsm) tilesPerImage() int {
	n := 0
	for _, g := range b.plan.Groups {
		for _, s := range g.Cols {
			n += g.Count * s.Count * b.plan.Rows
		}
	}
	n *= b.c.outPixels() / b.chunk()
	return n
}

// prefetchStart points every stream at image n+1. Prefetches never
// fault, so running past the end of the batch is harmless.
func (b *gemmAsm) prefetchStart(n reg.GPVirtual) {
	ctx := b.ctx
	for _, st := range b.streams {
		if st.ptrLoc.Base == nil {
			st.ptrLoc, st.leftLoc = ctx.AllocLocal(8), ctx.AllocLocal(8)
		}
		p := ctx.GP64()
		ctx.LEAQ(mem(n, 1), p)
		ctx.IMUL3Q(imm(st.image), p, p)
		ctx.ADDQ(b.base(st.param), p)
		ctx.MOVQ(p, st.ptrLoc)
		ctx.MOVQ(imm(st.rowLines()), st.leftLoc)
	}
}

// loopIters is the number of iterations of a tile's innermost loop
// (over the reduction).
func (b *gemmAsm) loopIters() int {
	if b.c.Op == Conv1x1Dw {
		return b.chunk() / b.c.unroll()
	}
	return b.c.gemmSteps() / 8
}

// prefetchLine prefetches the line at p+disp; for a stream of rows it
// then advances p to the stream's next line, left counting the lines of
// the current row (disp is then 0).
func (b *gemmAsm) prefetchLine(st *pfStream, p, left reg.GPVirtual, disp int) {
	ctx := b.ctx
	ctx.PREFETCHT1(mem(p, disp))
	if st.rows == 1 {
		return
	}
	next := b.label("pf")
	ctx.ADDQ(imm(64), p)
	ctx.DECQ(left)
	ctx.JNZ(operand.LabelRef(next))
	ctx.ADDQ(imm(st.rowStep-64*st.rowLines()), p)
	ctx.MOVQ(imm(st.rowLines()), left)
	ctx.Label(next)
}

// pfLive is a stream being prefetched k lines at a time, its pointer
// (and row count) in registers.
type pfLive struct {
	st      *pfStream
	p, left reg.GPVirtual
	k       int
}

// livePrefetch spreads every stream's lines over iters places.
func (b *gemmAsm) livePrefetch(iters int) []*pfLive {
	var ls []*pfLive
	for _, st := range b.streams {
		ls = append(ls, &pfLive{st: st, k: (st.lines() + iters - 1) / iters})
	}
	return ls
}

// loadLive, prefetchLive and storeLive load the streams' state into
// registers, prefetch their next lines and store the state back.
func (b *gemmAsm) loadLive(ls []*pfLive) {
	ctx := b.ctx
	for _, l := range ls {
		l.p = ctx.GP64()
		ctx.MOVQ(l.st.ptrLoc, l.p)
		if l.st.rows > 1 {
			l.left = ctx.GP64()
			ctx.MOVQ(l.st.leftLoc, l.left)
		}
	}
}

func (b *gemmAsm) prefetchLive(ls []*pfLive) {
	for _, l := range ls {
		for i := range l.k {
			if l.st.rows == 1 {
				b.prefetchLine(l.st, l.p, l.left, 64*i)
			} else {
				b.prefetchLine(l.st, l.p, l.left, 0)
			}
		}
		if l.st.rows == 1 {
			b.ctx.ADDQ(imm(64*l.k), l.p)
		}
	}
}

func (b *gemmAsm) storeLive(ls []*pfLive) {
	ctx := b.ctx
	for _, l := range ls {
		ctx.MOVQ(l.p, l.st.ptrLoc)
		if l.st.rows > 1 {
			ctx.MOVQ(l.left, l.st.leftLoc)
		}
	}
}

// inLoop returns the code that prefetches the streams' lines of one
// iteration of a tile's innermost loop, and the code that goes before and
// after the loop (loading and storing their pointers), when the loop has
// several iterations: a few prefetches per iteration never queue up
// behind each other as a burst per tile would. Otherwise it returns
// nothing to do, and prefetchTile does the work.
func (b *gemmAsm) inLoop() (before, body, after func()) {
	if b.loopIters() < 2 {
		return func() {}, func() {}, func() {}
	}
	ls := b.livePrefetch(b.tilesPerImage() * b.loopIters())
	return func() { b.loadLive(ls) }, func() { b.prefetchLive(ls) }, func() { b.storeLive(ls) }
}

// prefetchTile prefetches after a tile whose loop is too short for
// inLoop its share of every stream's lines.
func (b *gemmAsm) prefetchTile() {
	if b.loopIters() >= 2 {
		return
	}
	ls := b.livePrefetch(b.tilesPerImage())
	b.loadLive(ls)
	b.prefetchLive(ls)
	b.storeLive(ls)
}

// gemmTile is one register tile: Blocks vectors by Width columns.
type gemmTile struct{ Blocks, Width int }

// The tile's registers: accumulators first (column-major), then one
// register per block for the vector operand, then the broadcast. What
// follows the accumulators is free in the epilogue.
func (t gemmTile) acc(col, j int) reg.VecPhysical { return ymm[col*t.Blocks+j] }
func (t gemmTile) vec(j int) reg.VecPhysical      { return ymm[t.Blocks*t.Width+j] }
func (t gemmTile) bcast() reg.VecPhysical         { return ymm[t.Blocks*t.Width+t.Blocks] }
func (t gemmTile) free(i int) reg.VecPhysical     { return ymm[t.Blocks*t.Width+i] }

func (b *gemmAsm) label(what string) string {
	b.labels++
	return fmt.Sprintf("%s%d", what, b.labels)
}

// addr returns the memory operand of a parameter component.
func (b *gemmAsm) addr(c gotypes.Component) operand.Mem {
	r, err := c.Resolve()
	if err != nil {
		panic("BUG: kernels: parameter of " + b.c.Signature() + ": " + err.Error())
	}
	return r.Addr
}

func (b *gemmAsm) base(param string) operand.Mem { return b.addr(b.ctx.Param(param).Base()) }

// loop emits a counted loop running body count times (count >= 1), with
// the counter in a fresh register.
func (b *gemmAsm) loop(what string, count int, body func()) {
	if count < 1 {
		panic(fmt.Sprintf("BUG: kernels: loop %s of %d iterations", what, count))
	}
	if count == 1 {
		body()
		return
	}
	ctx := b.ctx
	cnt := ctx.GP64()
	ctx.MOVQ(imm(count), cnt)
	l := b.label(what)
	ctx.Label(l)
	body()
	ctx.DECQ(cnt)
	ctx.JNZ(operand.LabelRef(l))
}

// storeRun stores v to count consecutive vectors from p, unrolled up to
// 16 stores and looping beyond (p is left unchanged).
func (b *gemmAsm) storeRun(v reg.VecPhysical, p reg.GPVirtual, count int) {
	ctx := b.ctx
	if count <= 16 {
		for i := range count {
			ctx.VMOVUPS(v, mem(p, 32*i))
		}
		return
	}
	q := ctx.GP64()
	ctx.MOVQ(p, q)
	b.loop("zrun", count/8, func() {
		for i := range 8 {
			ctx.VMOVUPS(v, mem(q, 32*i))
		}
		ctx.ADDQ(imm(8*32), q)
	})
	for i := range count % 8 {
		ctx.VMOVUPS(v, mem(q, 32*i))
	}
}

// images runs body once per image of [n0, n1), the image index in a
// fresh register.
func (b *gemmAsm) images(body func(n reg.GPVirtual)) {
	ctx := b.ctx
	b.nLoc = ctx.AllocLocal(8)
	n := ctx.GP64()
	ctx.Load(ctx.Param("n0"), n)
	ctx.MOVQ(n, b.nLoc)
	loop, done := b.label("image"), b.label("done")
	ctx.Label(loop)
	n = ctx.GP64()
	ctx.MOVQ(b.nLoc, n)
	ctx.CMPQ(n, b.addr(ctx.Param("n1")))
	ctx.JGE(operand.LabelRef(done))
	body(n)
	ctx.INCQ(b.nLoc)
	ctx.JMP(operand.LabelRef(loop))
	ctx.Label(done)
}

// imageBase stores param + n*bytes (image n of the parameter) into slot.
func (b *gemmAsm) imageBase(param string, n reg.GPVirtual, bytes int, slot operand.Mem) {
	ctx := b.ctx
	p := ctx.GP64()
	ctx.IMUL3Q(imm(bytes), n, p)
	ctx.ADDQ(b.base(param), p)
	ctx.MOVQ(p, slot)
}

// Byte sizes, all constants of the kernel: one image of x (and dx), one
// plane (eight channels) of x, of the output pixels, one image of y (and
// dy).
func (b *gemmAsm) xImage() int   { return b.c.Cin * b.c.H * b.c.W * 4 }
func (b *gemmAsm) xPlane() int   { return b.c.H * b.c.W * 32 }
func (b *gemmAsm) outPlane() int { return b.c.outPixels() * 32 }
func (b *gemmAsm) yImage() int   { return b.c.Cout / 8 * b.outPlane() }

// operandA leaves in aLoc the broadcast operand of image n for the
// forward and Dw kernels: the scratch after writing prologue(x[n]) into
// it, or x[n] itself.
func (b *gemmAsm) operandA(n reg.GPVirtual) {
	ctx := b.ctx
	if !b.c.gathers() {
		b.imageBase("x", n, b.xImage(), b.aLoc)
		return
	}
	b.gather(n)
	p := ctx.GP64()
	ctx.MOVQ(b.base("scratch"), p)
	ctx.MOVQ(p, b.aLoc)
}

// gather writes prologue(x[n]) at the output pixels into the scratch,
// [Cin/8][OutH·OutW][8]. With stride 1 the image is one row of H·W pixels.
func (b *gemmAsm) gather(n reg.GPVirtual) {
	ctx, c := b.ctx, b.c
	rows, cols := c.OutH(), c.OutW()
	if c.Stride == 1 {
		rows, cols = 1, c.H*c.W
	}
	s := c.Stride
	plane := ctx.GP64()
	ctx.IMUL3Q(imm(b.xImage()), n, plane)
	ctx.ADDQ(b.base("x"), plane)
	dst := ctx.GP64()
	ctx.MOVQ(b.base("scratch"), dst)
	zero, scale, shift := reg.Y15, reg.Y14, reg.Y13
	var sc, sh reg.GPVirtual
	if c.Prologue != PrologueNone {
		ctx.VXORPS(zero, zero, zero)
	}
	if c.Prologue == PrologueAffineReLU {
		sc, sh = ctx.GP64(), ctx.GP64()
		ctx.MOVQ(b.base("scale"), sc)
		ctx.MOVQ(b.base("shift"), sh)
	}
	// One pixel: load, transform, store, rotating over Y0-Y7 so that
	// consecutive pixels are independent.
	pixel := func(i int, src reg.GPVirtual) {
		v := ymm[i%8]
		ctx.VMOVUPS(mem(src, i*s*32), v)
		switch c.Prologue {
		case PrologueReLU:
			ctx.VMAXPS(v, zero, v) // (0 > v) ? 0 : v, NaN kept
		case PrologueAffineReLU:
			ctx.VFMADD213PS(shift, scale, v) // v = scale*v + shift
			ctx.VMAXPS(v, zero, v)
		}
		ctx.VMOVUPS(v, mem(dst, i*32))
	}
	chunks := 0
	if cols > 16 {
		chunks = cols / 8
	}
	rem := cols - 8*chunks
	b.loop("gblock", c.Cin/8, func() {
		if c.Prologue == PrologueAffineReLU {
			ctx.VMOVUPS(mem(sc, 0), scale)
			ctx.VMOVUPS(mem(sh, 0), shift)
			ctx.ADDQ(imm(32), sc)
			ctx.ADDQ(imm(32), sh)
		}
		row := ctx.GP64()
		ctx.MOVQ(plane, row)
		b.loop("grow", rows, func() {
			src := ctx.GP64()
			ctx.MOVQ(row, src)
			if chunks > 0 {
				b.loop("gcols", chunks, func() {
					for i := range 8 {
						pixel(i, src)
					}
					ctx.ADDQ(imm(8*s*32), src)
					ctx.ADDQ(imm(8*32), dst)
				})
			}
			for i := range rem {
				pixel(i, src)
			}
			if rem > 0 {
				ctx.ADDQ(imm(rem*32), dst)
			}
			if rows > 1 {
				ctx.ADDQ(imm(s*c.W*32), row)
			}
		})
		ctx.ADDQ(imm(b.xPlane()), plane)
	})
}

// forward builds the forward kernel.
func (b *gemmAsm) forward() {
	ctx, c := b.ctx, b.c
	b.allocLocals()
	if c.Residual {
		t := ctx.GP64()
		ctx.MOVQ(b.base("res"), t)
		ctx.SUBQ(b.base("y"), t)
		ctx.MOVQ(t, b.rdeltaLoc)
	}
	b.streams = []*pfStream{b.xStream()}
	if c.Residual {
		b.streams = append(b.streams, b.yStream("res"))
	}
	b.images(func(n reg.GPVirtual) {
		b.prefetchStart(n)
		b.operandA(n)
		if c.Stats {
			b.zeroStats(n)
		}
		b.imageBase("y", n, b.yImage(), b.outLoc)
		w := ctx.GP64()
		ctx.MOVQ(b.base("w"), w)
		b.sweep(w, c.Cin*32, b.outPlane(), c.Cin, b.outPlane(), 32, b.forwardEpilogue)
	})
}

func (b *gemmAsm) allocLocals() {
	ctx := b.ctx
	for _, p := range []*operand.Mem{&b.gcntLoc, &b.gofsLoc, &b.outLoc, &b.dyLoc, &b.statsLoc, &b.rdeltaLoc, &b.aLoc} {
		*p = ctx.AllocLocal(8)
	}
}

// zeroStats zeroes image n's partial statistics and leaves their address
// in statsLoc.
func (b *gemmAsm) zeroStats(n reg.GPVirtual) {
	ctx := b.ctx
	b.imageBase("stats", n, 2*b.c.Cout*4, b.statsLoc)
	p := ctx.GP64()
	ctx.MOVQ(b.statsLoc, p)
	z := reg.Y15
	ctx.VXORPS(z, z, z)
	b.storeRun(z, p, 2*b.c.Cout/8)
}

// sweep runs the plan's tiles of the forward kernel or Dx over one
// image: the vector operand from w (wBlock bytes between its vector
// blocks, 32 between reduction steps), the broadcast operand from aLoc
// (aPlane bytes between its blocks of eight reduction steps, 32 between
// columns), steps reduction steps, the output from outLoc (outBlock bytes
// between its vector blocks, colBytes between columns). With several
// rows (Dx, stride 2) each output row starts 2·W pixels after the last,
// and the pixels between get their zeros row by row.
func (b *gemmAsm) sweep(w reg.GPVirtual, wBlock, aPlane, steps, outBlock, colBytes int,
	epilogue func(t gemmTile, out reg.GPVirtual)) {
	ctx := b.ctx
	ctx.MOVQ(imm(0), b.gofsLoc)
	for _, g := range b.plan.Groups {
		ctx.MOVQ(imm(g.Count), b.gcntLoc)
		gl := b.label("group")
		ctx.Comment(fmt.Sprintf("%d group(s) of %d vector block(s)", g.Count, g.Blocks))
		ctx.Label(gl)
		xt, out := ctx.GP64(), ctx.GP64()
		ctx.MOVQ(b.aLoc, xt)
		ctx.MOVQ(b.outLoc, out)
		tiles := func() {
			for _, s := range g.Cols {
				t := gemmTile{g.Blocks, s.Width}
				b.loop("tile", s.Count, func() {
					b.tile(t, xt, w, wBlock, aPlane, steps)
					epilogue(t, out)
					b.prefetchTile()
					ctx.ADDQ(imm(t.Width*32), xt)
					ctx.ADDQ(imm(t.Width*colBytes), out)
				})
			}
		}
		if b.plan.Rows == 1 {
			tiles()
		} else {
			b.scatterRows(g.Blocks, out, tiles)
		}
		ctx.ADDQ(imm(g.Blocks*wBlock), w)
		p := ctx.GP64()
		ctx.MOVQ(b.outLoc, p)
		ctx.ADDQ(imm(g.Blocks*outBlock), p)
		ctx.MOVQ(p, b.outLoc)
		ctx.ADDQ(imm(g.Blocks*32), b.gofsLoc)
		ctx.DECQ(b.gcntLoc)
		ctx.JNZ(operand.LabelRef(gl))
	}
}

// scatterRows runs tiles once per row of dy for Dx with stride 2, out
// pointing at dx's row 2i: after each, it zeroes the odd pixels of row 2i
// and all of row 2i+1 (when there is one) of the group's blocks, while
// their cache lines are at hand.
func (b *gemmAsm) scatterRows(blocks int, out reg.GPVirtual, tiles func()) {
	ctx, c := b.ctx, b.c
	row := ctx.GP64()
	ctx.MOVQ(imm(c.OutH()), row)
	l := b.label("row")
	ctx.Label(l)
	start := ctx.GP64()
	ctx.MOVQ(out, start)
	tiles()
	z := reg.Y15
	ctx.VXORPS(z, z, z)
	for j := range blocks {
		b.storeEvery(z, start, j*b.xPlane()+32, 64, c.W/2)
	}
	skip := b.label("lastrow")
	if c.H%2 == 1 {
		// The last row of an odd height has no row below it.
		ctx.CMPQ(row, imm(1))
		ctx.JE(operand.LabelRef(skip))
	}
	for j := range blocks {
		b.storeEvery(z, start, j*b.xPlane()+c.W*32, 32, c.W)
	}
	if c.H%2 == 1 {
		ctx.Label(skip)
	}
	// On to row 2i+2.
	ctx.LEAQ(mem(start, 2*c.W*32), out)
	ctx.DECQ(row)
	ctx.JNZ(operand.LabelRef(l))
}

// storeEvery stores v to count vectors at disp, disp+step, ... from p,
// unrolled up to 16 stores and looping beyond (p is left unchanged).
func (b *gemmAsm) storeEvery(v reg.VecPhysical, p reg.GPVirtual, disp, step, count int) {
	ctx := b.ctx
	if count <= 16 {
		for i := range count {
			ctx.VMOVUPS(v, mem(p, disp+step*i))
		}
		return
	}
	q := ctx.GP64()
	ctx.LEAQ(mem(p, disp), q)
	b.loop("zrun", count/8, func() {
		for i := range 8 {
			ctx.VMOVUPS(v, mem(q, step*i))
		}
		ctx.ADDQ(imm(8*step), q)
	})
	for i := range count % 8 {
		ctx.VMOVUPS(v, mem(q, step*i))
	}
}

// tile accumulates one tile of the forward kernel or Dx: its vector
// operand at wg, its broadcast operand (first column) at xt.
func (b *gemmAsm) tile(t gemmTile, xt, wg reg.GPVirtual, wBlock, aPlane, steps int) {
	ctx := b.ctx
	if t.Blocks*t.Width+t.Blocks+1 > numYMM {
		panic(fmt.Sprintf("BUG: kernels: tile %+v needs more than %d registers", t, numYMM))
	}
	for col := range t.Width {
		for j := range t.Blocks {
			a := t.acc(col, j)
			ctx.VXORPS(a, a, a)
		}
	}
	xp, wp := ctx.GP64(), ctx.GP64()
	ctx.MOVQ(xt, xp)
	ctx.MOVQ(wg, wp)
	u := b.c.unroll()
	step := func(k int) {
		for j := range t.Blocks {
			ctx.VMOVUPS(mem(wp, j*wBlock+k*32), t.vec(j))
		}
		for col := range t.Width {
			ctx.VBROADCASTSS(mem(xp, col*32+k*4), t.bcast())
			for j := range t.Blocks {
				ctx.VFMADD231PS(t.vec(j), t.bcast(), t.acc(col, j))
			}
		}
	}
	before, body, after := b.inLoop()
	before()
	defer after()
	b.loop("kblock", steps/8, func() {
		body()
		if u == 8 {
			for k := range 8 {
				step(k)
			}
			ctx.ADDQ(imm(aPlane), xp)
			ctx.ADDQ(imm(8*32), wp)
			return
		}
		b.loop("k", 8/u, func() {
			for k := range u {
				step(k)
			}
			ctx.ADDQ(imm(4*u), xp)
			ctx.ADDQ(imm(32*u), wp)
		})
		ctx.ADDQ(imm(aPlane-8*4), xp)
	})
}

// forwardEpilogue adds bias and residual, rectifies, stores the tile at
// yt and adds it to the image's statistics, pixel by pixel in order (the
// twin's order).
func (b *gemmAsm) forwardEpilogue(t gemmTile, yt reg.GPVirtual) {
	ctx, c := b.ctx, b.c
	each := func(f func(p, j int, a reg.VecPhysical)) {
		for j := range t.Blocks {
			for p := range t.Width {
				f(p, j, t.acc(p, j))
			}
		}
	}
	ydisp := func(p, j int) int { return j*b.outPlane() + p*32 }
	if c.Bias {
		bp := ctx.GP64()
		ctx.MOVQ(b.base("bias"), bp)
		ctx.ADDQ(b.gofsLoc, bp)
		each(func(p, j int, a reg.VecPhysical) { ctx.VADDPS(mem(bp, j*32), a, a) })
	}
	if c.Residual {
		d := ctx.GP64()
		ctx.MOVQ(b.rdeltaLoc, d)
		each(func(p, j int, a reg.VecPhysical) {
			ctx.VADDPS(operand.Mem{Base: yt, Index: d, Scale: 1, Disp: ydisp(p, j)}, a, a)
		})
	}
	if c.ReLU {
		z := t.free(0)
		ctx.VXORPS(z, z, z)
		each(func(p, j int, a reg.VecPhysical) { ctx.VMAXPS(a, z, a) })
	}
	each(func(p, j int, a reg.VecPhysical) { ctx.VMOVUPS(a, mem(yt, ydisp(p, j))) })
	if c.Stats {
		sp := ctx.GP64()
		ctx.MOVQ(b.statsLoc, sp)
		ctx.ADDQ(b.gofsLoc, sp)
		s, q := t.free(0), t.free(1)
		for j := range t.Blocks {
			sum, sumsq := mem(sp, j*32), mem(sp, c.Cout*4+j*32)
			ctx.VMOVUPS(sum, s)
			ctx.VMOVUPS(sumsq, q)
			for p := range t.Width {
				a := t.acc(p, j)
				ctx.VADDPS(a, s, s)
				ctx.VFMADD231PS(a, a, q)
			}
			ctx.VMOVUPS(s, sum)
			ctx.VMOVUPS(q, sumsq)
		}
	}
}

// backwardData builds Dx.
func (b *gemmAsm) backwardData() {
	ctx, c := b.ctx, b.c
	b.allocLocals()
	colBytes := 32
	if c.Stride == 2 {
		colBytes = 64
	}
	b.streams = []*pfStream{b.yStream("dy")}
	b.images(func(n reg.GPVirtual) {
		b.prefetchStart(n)
		b.imageBase("dy", n, b.yImage(), b.aLoc)
		b.imageBase("dx", n, b.xImage(), b.outLoc)
		wt := ctx.GP64()
		ctx.MOVQ(b.base("w"), wt)
		b.sweep(wt, c.Cout*32, b.outPlane(), c.Cout, b.xPlane(), colBytes, func(t gemmTile, out reg.GPVirtual) {
			for j := range t.Blocks {
				for p := range t.Width {
					ctx.VMOVUPS(t.acc(p, j), mem(out, j*b.xPlane()+p*colBytes))
				}
			}
		})
	})
}

// backwardWeights builds Dw: per image and chunk of pixels, every group
// and tile.
func (b *gemmAsm) backwardWeights() {
	ctx, c := b.ctx, b.c
	b.allocLocals()
	dyImage, chunkLoc := ctx.AllocLocal(8), ctx.AllocLocal(8)
	chunk := b.chunk()
	b.streams = []*pfStream{b.xStream(), b.yStream("dy")}
	b.images(func(n reg.GPVirtual) {
		b.prefetchStart(n)
		b.operandA(n)
		b.imageBase("dy", n, b.yImage(), dyImage)
		ctx.MOVQ(imm(0), chunkLoc) // the chunk's byte offset in a plane
		b.loop("chunk", c.outPixels()/chunk, func() {
			for _, s := range []struct {
				dst, src operand.Mem
			}{{b.outLoc, b.base("dw")}, {b.dyLoc, dyImage}} {
				p := ctx.GP64()
				ctx.MOVQ(s.src, p)
				ctx.MOVQ(p, s.dst)
			}
			p := ctx.GP64()
			ctx.MOVQ(chunkLoc, p)
			ctx.ADDQ(p, b.dyLoc)
			for _, g := range b.plan.Groups {
				b.dwGroup(g, chunkLoc)
			}
			ctx.ADDQ(imm(chunk*32), chunkLoc)
		})
	})
}

// dwGroup runs the tiles of g over one chunk: dw from outLoc, dy from
// dyLoc, the input from aLoc plus the chunk's offset; it leaves outLoc and
// dyLoc at the next group's.
func (b *gemmAsm) dwGroup(g GemmGroup, chunkLoc operand.Mem) {
	ctx, c := b.ctx, b.c
	t := gemmTile{g.Blocks, g.Cols[0].Width}
	if len(g.Cols) != 1 || 8%t.Width != 0 {
		panic(fmt.Sprintf("BUG: kernels: %s: Dw group %+v", c.Name(), g))
	}
	ctx.MOVQ(imm(g.Count), b.gcntLoc)
	gl := b.label("group")
	ctx.Comment(fmt.Sprintf("%d group(s) of %d output-channel block(s)", g.Count, g.Blocks))
	ctx.Label(gl)
	ap, dwp := ctx.GP64(), ctx.GP64()
	ctx.MOVQ(b.aLoc, ap)
	ctx.ADDQ(chunkLoc, ap)
	ctx.MOVQ(b.outLoc, dwp)
	b.loop("cib", c.Cin/8, func() {
		b.loop("part", 8/t.Width, func() {
			b.dwTile(t, ap, dwp)
			b.prefetchTile()
			ctx.ADDQ(imm(t.Width*4), ap)
			ctx.ADDQ(imm(t.Width*32), dwp)
		})
		ctx.ADDQ(imm(b.outPlane()-8*4), ap)
	})
	for _, s := range []struct {
		slot  operand.Mem
		bytes int
	}{{b.outLoc, g.Blocks * c.Cin * 32}, {b.dyLoc, g.Blocks * b.outPlane()}} {
		ctx.ADDQ(imm(s.bytes), s.slot)
	}
	ctx.DECQ(b.gcntLoc)
	ctx.JNZ(operand.LabelRef(gl))
}

// dwTile adds one chunk's contribution to a tile of dw at dwp: t.Blocks
// output-channel blocks (dy's vectors, from dyLoc) by t.Width input
// channels (broadcast from ap), summed over the pixels in order.
func (b *gemmAsm) dwTile(t gemmTile, ap, dwp reg.GPVirtual) {
	ctx, c := b.ctx, b.c
	for col := range t.Width {
		for j := range t.Blocks {
			ctx.VMOVUPS(mem(dwp, j*c.Cin*32+col*32), t.acc(col, j))
		}
	}
	dp, aq := ctx.GP64(), ctx.GP64()
	ctx.MOVQ(b.dyLoc, dp)
	ctx.MOVQ(ap, aq)
	step := func(u int) {
		for j := range t.Blocks {
			ctx.VMOVUPS(mem(dp, j*b.outPlane()+u*32), t.vec(j))
		}
		for col := range t.Width {
			ctx.VBROADCASTSS(mem(aq, u*32+col*4), t.bcast())
			for j := range t.Blocks {
				ctx.VFMADD231PS(t.vec(j), t.bcast(), t.acc(col, j))
			}
		}
	}
	u, pixels := b.c.unroll(), b.chunk()
	before, body, after := b.inLoop()
	before()
	if pixels >= u {
		b.loop("pix", pixels/u, func() {
			body()
			for i := range u {
				step(i)
			}
			ctx.ADDQ(imm(u*32), dp)
			ctx.ADDQ(imm(u*32), aq)
		})
	}
	for i := range pixels % u {
		step(i)
	}
	after()
	for col := range t.Width {
		for j := range t.Blocks {
			ctx.VMOVUPS(t.acc(col, j), mem(dwp, j*c.Cin*32+col*32))
		}
	}
}

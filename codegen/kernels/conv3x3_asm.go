package kernels

import (
	"fmt"

	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/gotypes"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// ymm are the vector registers in allocation order. The conv kernels name
// them directly: a tile's accumulators come first, then its weight
// registers, then the broadcast register, and the epilogue reuses what
// follows the accumulators.
var ymm = []reg.VecPhysical{
	reg.Y0, reg.Y1, reg.Y2, reg.Y3, reg.Y4, reg.Y5, reg.Y6, reg.Y7,
	reg.Y8, reg.Y9, reg.Y10, reg.Y11, reg.Y12, reg.Y13, reg.Y14, reg.Y15,
}

// BuildAsm adds c's AVX2+FMA kernel to ctx as a function with
// Conv3x3Signature.
//
// For each image the kernel first writes prologue(x[n]) into the scratch
// with an explicit zero border (so padding stays zero whatever the
// prologue), then sweeps the plan's tiles: for each output-channel group,
// row and tile it zeroes the accumulators, runs over input-channel blocks
// (outer loop), kernel rows, input channels (unrolled by c.Unroll) and
// kernel columns, broadcasting one input scalar per pixel and multiplying
// it into one weight vector per block, and finally applies the epilogue as
// it stores the tile. Between tiles it prefetches the next image's input
// into L2, spread evenly over the image, so that the next prologue reads
// from cache.
func (c Conv3x3) BuildAsm(ctx *build.Context) error {
	if err := c.Validate(); err != nil {
		return err
	}
	ctx.Function(c.asmName())
	ctx.Attributes(attr.NOSPLIT)
	ctx.SignatureExpr(Conv3x3Signature)
	ctx.Pragma("noescape")
	ctx.Doc(fmt.Sprintf("%s is the AVX2+FMA kernel of %s (tiles: %s).", c.asmName(), c.Name(), c.Plan()))
	b := &convAsm{ctx: ctx, c: c, plan: c.Plan(), sig: Conv3x3Signature}
	b.tiles = b.tilesPerImage()
	b.function()
	return nil
}

// convAsm holds the state of one kernel being built. The backward
// kernels reuse it: c is then the conv whose input the kernel copies into
// its scratch (dy for backward-data, x for backward-weights).
type convAsm struct {
	ctx    *build.Context
	c      Conv3x3
	plan   Plan
	labels int
	sig    string            // the Go signature, for messages
	names  map[string]string // parameter names of sig that differ from Conv3x3Signature's
	tiles  int               // tiles (or passes) per image, over which prefetchNext spreads the next input

	// Stack slots.
	nLoc, gcntLoc, gofsLoc, statsLoc, rdeltaLoc, pfLoc operand.Mem
}

// Sizes and byte strides, all constants of the kernel: the scratch's
// padded width and height, the input and output channel blocks, the bytes
// of one channel block of scratch and of output, and of one output-channel
// block of weights.
func (b *convAsm) wp() int          { return b.c.W + 2 }
func (b *convAsm) hp() int          { return b.c.H + 2 }
func (b *convAsm) cib() int         { return b.c.Cin / 8 }
func (b *convAsm) cob() int         { return b.c.Cout / 8 }
func (b *convAsm) planeBytes() int  { return b.hp() * b.wp() * 32 }
func (b *convAsm) outPlane() int    { return b.c.OutH() * b.c.OutW() * 32 }
func (b *convAsm) wBlockBytes() int { return b.c.Cin * 9 * 32 }

func (b *convAsm) label(what string) string {
	b.labels++
	return fmt.Sprintf("%s%d", what, b.labels)
}

// addr returns the memory operand of a parameter component.
func (b *convAsm) addr(c gotypes.Component) operand.Mem {
	r, err := c.Resolve()
	if err != nil {
		panic("BUG: kernels: parameter of " + b.sig + ": " + err.Error())
	}
	return r.Addr
}

// base returns the memory operand of a slice parameter's base pointer,
// named as in Conv3x3Signature.
func (b *convAsm) base(param string) operand.Mem {
	if n, ok := b.names[param]; ok {
		param = n
	}
	return b.addr(b.ctx.Param(param).Base())
}

func imm(v int) operand.Constant {
	if v < 0 || v > 1<<31-1 {
		panic(fmt.Sprintf("BUG: kernels: immediate %d out of range", v))
	}
	return operand.U32(v)
}

func mem(base reg.Register, disp int) operand.Mem { return operand.Mem{Base: base, Disp: disp} }

// function emits the body of a forward kernel (a stride-1 backward-data
// kernel is one, over dy).
func (b *convAsm) function() {
	ctx, c := b.ctx, b.c
	b.allocLocals()
	b.zeroBorder()
	if c.Residual {
		t := ctx.GP64()
		ctx.MOVQ(b.base("res"), t)
		ctx.SUBQ(b.base("y"), t)
		ctx.MOVQ(t, b.rdeltaLoc)
	}
	b.images(func(n reg.GPVirtual) {
		if c.Stats {
			b.zeroStats(n)
		}
		b.conv(n)
	})
}

// allocLocals reserves the stack slots every kernel uses.
func (b *convAsm) allocLocals() {
	ctx := b.ctx
	b.nLoc = ctx.AllocLocal(8)
	b.gcntLoc = ctx.AllocLocal(8)
	b.gofsLoc = ctx.AllocLocal(8)
	b.statsLoc = ctx.AllocLocal(8)
	b.rdeltaLoc = ctx.AllocLocal(8)
	b.pfLoc = ctx.AllocLocal(8)
}

// images emits the loop over images [n0, n1): for each image it writes
// the prologue of its input into the scratch, points pfLoc at the next
// image's input, runs body, and finally returns.
func (b *convAsm) images(body func(n reg.GPVirtual)) {
	ctx, c := b.ctx, b.c
	n := ctx.GP64()
	ctx.Load(ctx.Param("n0"), n)
	ctx.MOVQ(n, b.nLoc)
	loop, done := b.label("image"), b.label("done")
	ctx.Label(loop)
	n = ctx.GP64()
	ctx.MOVQ(b.nLoc, n)
	ctx.CMPQ(n, b.addr(ctx.Param("n1")))
	ctx.JGE(operand.LabelRef(done))
	b.prologue(n)
	pf := ctx.GP64()
	ctx.MOVQ(n, pf)
	ctx.INCQ(pf)
	ctx.IMUL3Q(imm(c.Cin*c.H*c.W*4), pf, pf)
	ctx.ADDQ(b.base("x"), pf)
	ctx.MOVQ(pf, b.pfLoc)
	body(n)
	ctx.INCQ(b.nLoc)
	ctx.JMP(operand.LabelRef(loop))
	ctx.Label(done)
	ctx.VZEROUPPER()
	ctx.RET()
}

// loop emits a counted loop running body count times (count >= 1),
// with the counter in a fresh register.
func (b *convAsm) loop(what string, count int, body func()) {
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

// storeRun stores v to count consecutive vectors starting at disp(p),
// unrolled up to 16 stores and looping beyond (advancing and restoring p).
func (b *convAsm) storeRun(v reg.VecPhysical, p reg.GPVirtual, disp, count int) {
	ctx := b.ctx
	if count <= 16 {
		for i := range count {
			ctx.VMOVUPS(v, mem(p, disp+32*i))
		}
		return
	}
	q := ctx.GP64()
	ctx.LEAQ(mem(p, disp), q)
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

// zeroBorder zeroes the one-pixel border of every channel block of the
// scratch: the prologue writes only the interior, so the border is the
// conv's zero padding for every image of the call.
func (b *convAsm) zeroBorder() {
	ctx := b.ctx
	z := reg.Y15
	ctx.VXORPS(z, z, z)
	p := ctx.GP64()
	ctx.MOVQ(b.base("scratch"), p)
	b.loop("border", b.cib(), func() {
		b.storeRun(z, p, 0, b.wp())
		b.storeRun(z, p, (b.hp()-1)*b.wp()*32, b.wp())
		q := ctx.GP64()
		ctx.LEAQ(mem(p, b.wp()*32), q)
		b.loop("side", b.c.H, func() {
			ctx.VMOVUPS(z, mem(q, 0))
			ctx.VMOVUPS(z, mem(q, (b.wp()-1)*32))
			ctx.ADDQ(imm(b.wp()*32), q)
		})
		ctx.ADDQ(imm(b.planeBytes()), p)
	})
}

// prologue writes prologue(x[n]) into the interior of the scratch.
func (b *convAsm) prologue(n reg.GPVirtual) {
	ctx, c := b.ctx, b.c
	src := ctx.GP64()
	ctx.IMUL3Q(imm(c.Cin*c.H*c.W*4), n, src)
	ctx.ADDQ(b.base("x"), src)
	dst := ctx.GP64()
	ctx.MOVQ(b.base("scratch"), dst)
	ctx.ADDQ(imm((b.wp()+1)*32), dst)
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
	pixel := func(i, srcDisp, dstDisp int, s, d reg.GPVirtual) {
		v := ymm[i%8]
		ctx.VMOVUPS(mem(s, srcDisp), v)
		switch c.Prologue {
		case PrologueReLU:
			ctx.VMAXPS(v, zero, v) // (0 > v) ? 0 : v, NaN kept
		case PrologueAffineReLU:
			ctx.VFMADD213PS(shift, scale, v) // v = scale*v + shift
			ctx.VMAXPS(v, zero, v)
		}
		ctx.VMOVUPS(v, mem(d, dstDisp))
	}
	chunks := 0
	if c.W > 16 {
		chunks = c.W / 8
	}
	rem := c.W - 8*chunks
	b.loop("pblock", b.cib(), func() {
		if c.Prologue == PrologueAffineReLU {
			ctx.VMOVUPS(mem(sc, 0), scale)
			ctx.VMOVUPS(mem(sh, 0), shift)
		}
		b.loop("prow", c.H, func() {
			if chunks > 0 {
				b.loop("pcols", chunks, func() {
					for i := range 8 {
						pixel(i, 32*i, 32*i, src, dst)
					}
					ctx.ADDQ(imm(8*32), src)
					ctx.ADDQ(imm(8*32), dst)
				})
			}
			for i := range rem {
				pixel(i, 32*i, 32*i, src, dst)
			}
			if rem > 0 {
				ctx.ADDQ(imm(rem*32), src)
			}
			ctx.ADDQ(imm((rem+2)*32), dst)
		})
		ctx.ADDQ(imm(2*b.wp()*32), dst)
		if c.Prologue == PrologueAffineReLU {
			ctx.ADDQ(imm(32), sc)
			ctx.ADDQ(imm(32), sh)
		}
	})
}

// zeroStats zeroes image n's partial statistics and leaves their address
// in statsLoc.
func (b *convAsm) zeroStats(n reg.GPVirtual) {
	ctx := b.ctx
	p := ctx.GP64()
	ctx.IMUL3Q(imm(2*b.c.Cout*4), n, p)
	ctx.ADDQ(b.base("stats"), p)
	ctx.MOVQ(p, b.statsLoc)
	z := reg.Y15
	ctx.VXORPS(z, z, z)
	b.storeRun(z, p, 0, 2*b.cob())
}

// conv sweeps the plan's tiles over image n.
func (b *convAsm) conv(n reg.GPVirtual) {
	ctx, c := b.ctx, b.c
	yt := ctx.GP64()
	ctx.IMUL3Q(imm(b.cob()*b.outPlane()), n, yt)
	ctx.ADDQ(b.base("y"), yt)
	xt, wg := ctx.GP64(), ctx.GP64()
	ctx.MOVQ(b.base("scratch"), xt)
	ctx.MOVQ(b.base("w"), wg)
	ctx.MOVQ(imm(0), b.gofsLoc)
	for _, g := range b.plan.Groups {
		ctx.MOVQ(imm(g.Count), b.gcntLoc)
		gl := b.label("group")
		ctx.Comment(fmt.Sprintf("%d group(s) of %d output-channel block(s)", g.Count, g.Blocks))
		ctx.Label(gl)
		b.loop("row", c.OutH(), func() {
			for _, r := range g.Row {
				t := Tile{g.Blocks, r.Pixels}
				b.loop("tile", r.Count, func() {
					b.tile(t, xt, wg)
					b.epilogue(t, yt)
					b.prefetchNext()
					ctx.ADDQ(imm(t.Pixels*c.Stride*32), xt)
					ctx.ADDQ(imm(t.Pixels*32), yt)
				})
			}
			// xt moved OutW*Stride pixels along its row: on to the
			// first input row of the next output row.
			ctx.ADDQ(imm(c.Stride*(b.wp()-c.OutW())*32), xt)
		})
		ctx.MOVQ(b.base("scratch"), xt)
		ctx.ADDQ(imm(g.Blocks*b.wBlockBytes()), wg)
		if g.Blocks > 1 {
			ctx.ADDQ(imm((g.Blocks-1)*b.outPlane()), yt)
		}
		ctx.ADDQ(imm(g.Blocks*32), b.gofsLoc)
		ctx.DECQ(b.gcntLoc)
		ctx.JNZ(operand.LabelRef(gl))
	}
}

// tilesPerImage is the number of tiles the plan sweeps per image.
func (b *convAsm) tilesPerImage() int {
	n := 0
	for _, g := range b.plan.Groups {
		for _, r := range g.Row {
			n += g.Count * r.Count * b.c.OutH()
		}
	}
	return n
}

// prefetchNext prefetches into L2 the next slice of the next image's
// input, so that its prologue reads from cache: the input of one image is
// spread evenly over the tiles of the previous one. Prefetches never
// fault, so running past the end of x is harmless.
func (b *convAsm) prefetchNext() {
	ctx, c := b.ctx, b.c
	if b.tiles < 1 {
		panic("BUG: kernels: prefetchNext without a tile count")
	}
	lines := (c.Cin*c.H*c.W*4/64 + b.tiles - 1) / b.tiles
	p := ctx.GP64()
	ctx.MOVQ(b.pfLoc, p)
	for i := range lines {
		ctx.PREFETCHT1(mem(p, 64*i))
	}
	ctx.ADDQ(imm(64*lines), b.pfLoc)
}

// acc, wreg and bcast name a tile's registers.
func acc(t Tile, p, j int) reg.VecPhysical { return ymm[p*t.Blocks+j] }
func wreg(t Tile, j int) reg.VecPhysical   { return ymm[t.Blocks*t.Pixels+j] }
func bcast(t Tile) reg.VecPhysical         { return ymm[t.Blocks*t.Pixels+t.Blocks] }

// tile accumulates one tile whose first input pixel (top-left tap) is at
// xt in the scratch and whose group's weights start at wg.
func (b *convAsm) tile(t Tile, xt, wg reg.GPVirtual) {
	ctx, c := b.ctx, b.c
	if t.Blocks*t.Pixels+t.Blocks+1 > numYMM {
		panic(fmt.Sprintf("BUG: kernels: tile %+v needs more than %d registers", t, numYMM))
	}
	for p := range t.Pixels {
		for j := range t.Blocks {
			a := acc(t, p, j)
			ctx.VXORPS(a, a, a)
		}
	}
	xp, wp := ctx.GP64(), ctx.GP64()
	ctx.MOVQ(xt, xp)
	ctx.MOVQ(wg, wp)
	u := c.unroll()
	b.loop("cblock", b.cib(), func() {
		b.loop("krow", 3, func() {
			steps := func() {
				for cu := range u {
					for kw := range 3 {
						for j := range t.Blocks {
							ctx.VMOVUPS(mem(wp, j*b.wBlockBytes()+kw*8*32+cu*32), wreg(t, j))
						}
						for p := range t.Pixels {
							ctx.VBROADCASTSS(mem(xp, (p*c.Stride+kw)*32+cu*4), bcast(t))
							for j := range t.Blocks {
								ctx.VFMADD231PS(wreg(t, j), bcast(t), acc(t, p, j))
							}
						}
					}
				}
			}
			if u == 8 {
				steps()
				ctx.ADDQ(imm(b.wp()*32), xp)
				ctx.ADDQ(imm(3*8*32), wp)
			} else {
				b.loop("cin", 8/u, func() {
					steps()
					ctx.ADDQ(imm(4*u), xp)
					ctx.ADDQ(imm(32*u), wp)
				})
				ctx.ADDQ(imm(b.wp()*32-8*4), xp)
				ctx.ADDQ(imm(3*8*32-8*32), wp)
			}
		})
		// Three rows down; on to the same rows of the next block. The
		// weights are already at the next input-channel block.
		ctx.ADDQ(imm(b.planeBytes()-3*b.wp()*32), xp)
	})
}

// epilogue adds bias and residual, rectifies, stores the tile at yt and
// adds it to the image's statistics, pixel by pixel in row order (the
// twin's order).
func (b *convAsm) epilogue(t Tile, yt reg.GPVirtual) {
	ctx, c := b.ctx, b.c
	free := ymm[t.Blocks*t.Pixels:]
	each := func(f func(p, j int, a reg.VecPhysical)) {
		for j := range t.Blocks {
			for p := range t.Pixels {
				f(p, j, acc(t, p, j))
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
		z := free[0]
		ctx.VXORPS(z, z, z)
		each(func(p, j int, a reg.VecPhysical) { ctx.VMAXPS(a, z, a) })
	}
	each(func(p, j int, a reg.VecPhysical) { ctx.VMOVUPS(a, mem(yt, ydisp(p, j))) })
	if c.Stats {
		sp := ctx.GP64()
		ctx.MOVQ(b.statsLoc, sp)
		ctx.ADDQ(b.gofsLoc, sp)
		s, q := free[0], free[1]
		for j := range t.Blocks {
			sum, sumsq := mem(sp, j*32), mem(sp, c.Cout*4+j*32)
			ctx.VMOVUPS(sum, s)
			ctx.VMOVUPS(sumsq, q)
			for p := range t.Pixels {
				a := acc(t, p, j)
				ctx.VADDPS(a, s, s)
				ctx.VFMADD231PS(a, a, q)
			}
			ctx.VMOVUPS(s, sum)
			ctx.VMOVUPS(q, sumsq)
		}
	}
}

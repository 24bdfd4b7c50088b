package kernels

import (
	"fmt"

	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// BuildAsm adds d's AVX2+FMA kernel to ctx as a function with
// Conv3x3DxSignature.
//
// For each image the kernel copies dy into the scratch with a zero
// border. With stride 1 it then runs the forward kernel's tiles over it
// (the packed weights being the transposed, rotated kernel). With stride 2
// it sweeps each phase of dx: for each group of dx channel blocks, phase
// row and tile it zeroes the accumulators, runs over dy channel blocks,
// dy channels (unrolled so that one iteration makes four tile steps) and
// the phase's taps, and stores the tile into every other pixel of dx.
func (d Conv3x3Dx) BuildAsm(ctx *build.Context) error {
	if err := d.Validate(); err != nil {
		return err
	}
	ctx.Function(d.asmName())
	ctx.Attributes(attr.NOSPLIT)
	ctx.SignatureExpr(Conv3x3DxSignature)
	ctx.Pragma("noescape")
	ctx.Doc(fmt.Sprintf("%s is the AVX2+FMA kernel of %s (tiles: %s).", d.asmName(), d.Name(), d.Tiles()))
	c := d.dyConv()
	b := &convAsm{ctx: ctx, c: c, sig: Conv3x3DxSignature, names: map[string]string{"x": "dy", "y": "dx"}}
	if d.Stride == 1 {
		b.plan = c.Plan()
		b.tiles = b.tilesPerImage()
		b.function()
		return nil
	}
	phases := d.Phases()
	for _, p := range phases {
		for _, g := range p.Plan.Groups {
			for _, r := range g.Row {
				b.tiles += g.Count * r.Count * p.Rows
			}
		}
	}
	b.allocLocals()
	b.zeroBorder()
	b.images(func(n reg.GPVirtual) { b.dxPhases(n, d, phases) })
	return nil
}

// dxPhases sweeps the phases of image n of a stride-2 backward-data
// kernel. The group's dx pointer lives in gofsLoc.
func (b *convAsm) dxPhases(n reg.GPVirtual, d Conv3x3Dx, phases []DxPhase) {
	ctx := b.ctx
	dxImage := d.Cin * d.H * d.W * 4
	dxPlane := d.H * d.W * 32
	for _, p := range phases {
		ctx.Comment(fmt.Sprintf("phase (%d, %d): %dx%d pixels, %d taps", p.PH, p.PW, p.Rows, p.Cols, len(p.Taps)))
		yg := ctx.GP64()
		ctx.IMUL3Q(imm(dxImage), n, yg)
		ctx.ADDQ(b.base("y"), yg)
		ctx.ADDQ(imm((p.PH*d.W+p.PW)*32), yg)
		ctx.MOVQ(yg, b.gofsLoc)
		wg := ctx.GP64()
		ctx.MOVQ(b.base("w"), wg)
		for _, g := range p.Plan.Groups {
			ctx.MOVQ(imm(g.Count), b.gcntLoc)
			gl := b.label("pgroup")
			ctx.Label(gl)
			xt, yt := ctx.GP64(), ctx.GP64()
			ctx.MOVQ(b.base("scratch"), xt)
			ctx.ADDQ(imm((b.wp()+1)*32), xt)
			ctx.MOVQ(b.gofsLoc, yt)
			b.loop("prow", p.Rows, func() {
				for _, r := range g.Row {
					t := Tile{g.Blocks, r.Pixels}
					b.loop("ptile", r.Count, func() {
						b.phaseTile(t, p.Taps, xt, wg)
						for j := range t.Blocks {
							for q := range t.Pixels {
								ctx.VMOVUPS(acc(t, q, j), mem(yt, j*dxPlane+q*64))
							}
						}
						b.prefetchNext()
						ctx.ADDQ(imm(t.Pixels*32), xt)
						ctx.ADDQ(imm(t.Pixels*64), yt)
					})
				}
				// On to the next phase row: one dy row, two dx rows.
				ctx.ADDQ(imm((b.wp()-p.Cols)*32), xt)
				ctx.ADDQ(imm((2*d.W-2*p.Cols)*32), yt)
			})
			ctx.ADDQ(imm(g.Blocks*b.wBlockBytes()), wg)
			ctx.ADDQ(imm(g.Blocks*dxPlane), b.gofsLoc)
			ctx.DECQ(b.gcntLoc)
			ctx.JNZ(operand.LabelRef(gl))
		}
	}
}

// phaseTile accumulates one tile of a phase whose origin (the dy pixel
// of tap offset (0, 0) for the tile's first pixel) is at xt in the
// scratch and whose group's weights start at wg.
func (b *convAsm) phaseTile(t Tile, taps []DxTap, xt, wg reg.GPVirtual) {
	ctx := b.ctx
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
	u := phaseUnroll(len(taps))
	b.loop("pblock", b.cib(), func() {
		b.loop("pcin", 8/u, func() {
			for cu := range u {
				for _, tp := range taps {
					for j := range t.Blocks {
						ctx.VMOVUPS(mem(wp, j*b.wBlockBytes()+tp.K*8*32+cu*32), wreg(t, j))
					}
					for p := range t.Pixels {
						ctx.VBROADCASTSS(mem(xp, (tp.DR*b.wp()+tp.DC+p)*32+cu*4), bcast(t))
						for j := range t.Blocks {
							ctx.VFMADD231PS(wreg(t, j), bcast(t), acc(t, p, j))
						}
					}
				}
			}
			ctx.ADDQ(imm(4*u), xp)
			ctx.ADDQ(imm(32*u), wp)
		})
		// On to the same pixel of the next dy block, and to the next
		// block's nine taps of weights.
		ctx.ADDQ(imm(b.planeBytes()-8*4), xp)
		ctx.ADDQ(imm(9*8*32-8*32), wp)
	})
}

// BuildAsm adds d's AVX2+FMA kernel to ctx as a function with
// Conv3x3DwSignature.
//
// For each image the kernel writes prologue(x) into the scratch with a
// zero border (as the forward kernel does), then makes one pass over the
// image per output-channel block, input-channel block, kernel row and
// half of the output block: twelve accumulators acc[kw][c] (eight input
// channels each) start at zero, take one FMA per pixel, and are added to
// the partial dw at the end of the pass. Along a row, the three input
// vectors a[ow*Stride+kw] sit in a ring of three registers, so each pixel
// loads only Stride new ones besides its four dy broadcasts.
func (d Conv3x3Dw) BuildAsm(ctx *build.Context) error {
	if err := d.Validate(); err != nil {
		return err
	}
	ctx.Function(d.asmName())
	ctx.Attributes(attr.NOSPLIT)
	ctx.SignatureExpr(Conv3x3DwSignature)
	ctx.Pragma("noescape")
	ctx.Doc(fmt.Sprintf("%s is the AVX2+FMA kernel of %s.", d.asmName(), d.Name()))
	b := &convAsm{ctx: ctx, c: d.xConv(), sig: Conv3x3DwSignature}
	b.tiles = d.Cout / 8 * d.Cin / 8 * 6
	b.allocLocals()
	w := &dwAsm{convAsm: b, d: d}
	w.dycLoc = ctx.AllocLocal(8)
	w.dyhLoc = ctx.AllocLocal(8)
	w.dwLoc = ctx.AllocLocal(8)
	w.scLoc = ctx.AllocLocal(8)
	w.cobLoc = ctx.AllocLocal(8)
	w.cibLoc = ctx.AllocLocal(8)
	w.khLoc = ctx.AllocLocal(8)
	w.halfLoc = ctx.AllocLocal(8)
	b.zeroBorder()
	b.images(w.image)
	return nil
}

// dwAsm holds the state of one backward-weights kernel being built: the
// pointers and counters of its pass loops live on the stack.
type dwAsm struct {
	*convAsm
	d Conv3x3Dw

	dycLoc  operand.Mem // dy plane of the current output-channel block
	dyhLoc  operand.Mem // the same, at the current half's first channel
	dwLoc   operand.Mem // partial dw at the current (block, block, row, half)
	scLoc   operand.Mem // scratch at the current input block and kernel row
	cobLoc  operand.Mem
	cibLoc  operand.Mem
	khLoc   operand.Mem
	halfLoc operand.Mem
}

// Registers of a pass: acc[kw][c] in Y0-Y11, the ring of input vectors
// in Y12-Y14, the dy broadcast in Y15.
func dwAcc(kw, c int) reg.VecPhysical { return ymm[kw*4+c] }
func dwRing(pos int) reg.VecPhysical  { return ymm[12+pos%3] }

var dwBcast = reg.Y15

// stackLoop runs body count times with its counter in the stack slot cnt.
func (w *dwAsm) stackLoop(what string, cnt operand.Mem, count int, body func()) {
	if count == 1 {
		body()
		return
	}
	ctx := w.ctx
	ctx.MOVQ(imm(count), cnt)
	l := w.label(what)
	ctx.Label(l)
	body()
	ctx.DECQ(cnt)
	ctx.JNZ(operand.LabelRef(l))
}

// image makes every pass over image n, whose prologue is in the scratch.
func (w *dwAsm) image(n reg.GPVirtual) {
	ctx, d := w.ctx, w.d
	dyPlane := d.OutH() * d.OutW() * 32
	p := ctx.GP64()
	ctx.IMUL3Q(imm(d.Cout/8*dyPlane), n, p)
	ctx.ADDQ(w.base("dy"), p)
	ctx.MOVQ(p, w.dycLoc)
	q := ctx.GP64()
	ctx.MOVQ(w.base("dw"), q)
	ctx.MOVQ(q, w.dwLoc)
	w.stackLoop("cob", w.cobLoc, d.Cout/8, func() {
		s := ctx.GP64()
		ctx.MOVQ(w.base("scratch"), s)
		ctx.MOVQ(s, w.scLoc)
		w.stackLoop("cib", w.cibLoc, d.Cin/8, func() {
			w.stackLoop("kh", w.khLoc, 3, func() {
				h := ctx.GP64()
				ctx.MOVQ(w.dycLoc, h)
				ctx.MOVQ(h, w.dyhLoc)
				w.stackLoop("half", w.halfLoc, 2, func() {
					w.pass()
					ctx.ADDQ(imm(4*4), w.dyhLoc)
					ctx.ADDQ(imm(4*32), w.dwLoc)
				})
				// dwLoc moved two halves along this kernel row's
				// [3 kw][8 co][8 ci]: on to the next row.
				ctx.ADDQ(imm(3*8*32-2*4*32), w.dwLoc)
				ctx.ADDQ(imm(w.wp()*32), w.scLoc)
			})
			// Three rows down: on to the next input block. dwLoc is
			// already at the next (output, input) block pair.
			ctx.ADDQ(imm(w.planeBytes()-3*w.wp()*32), w.scLoc)
		})
		ctx.ADDQ(imm(dyPlane), w.dycLoc)
	})
}

// pass accumulates one (output block, input block, kernel row, half) over
// every pixel of the image and adds it to the partial dw.
func (w *dwAsm) pass() {
	ctx, d := w.ctx, w.d
	s := d.Stride
	for kw := range 3 {
		for c := range 4 {
			a := dwAcc(kw, c)
			ctx.VXORPS(a, a, a)
		}
	}
	ap, dyp := ctx.GP64(), ctx.GP64()
	ctx.MOVQ(w.scLoc, ap)
	ctx.MOVQ(w.dyhLoc, dyp)
	// pixel accumulates the pixel p pixels past ap and dyp, first
	// loading the ring positions it is the first to need.
	pixel := func(p int) {
		for i := range s {
			pos := s*p + 3 - s + i
			ctx.VMOVUPS(mem(ap, pos*32), dwRing(pos))
		}
		for c := range 4 {
			ctx.VBROADCASTSS(mem(dyp, p*32+c*4), dwBcast)
			for kw := range 3 {
				ctx.VFMADD231PS(dwRing(s*p+kw), dwBcast, dwAcc(kw, c))
			}
		}
	}
	chunks, rem := d.OutW()/dwChunk, d.OutW()%dwChunk
	w.loop("dwrow", d.OutH(), func() {
		for pos := range 3 - s {
			ctx.VMOVUPS(mem(ap, pos*32), dwRing(pos))
		}
		if chunks > 0 {
			w.loop("dwpix", chunks, func() {
				for p := range dwChunk {
					pixel(p)
				}
				ctx.ADDQ(imm(dwChunk*s*32), ap)
				ctx.ADDQ(imm(dwChunk*32), dyp)
			})
		}
		for p := range rem {
			pixel(p)
		}
		// On to the first padded column of the next row's kernel row;
		// dy's rows are contiguous.
		ctx.ADDQ(imm((s*w.wp()-chunks*dwChunk*s)*32), ap)
		if rem > 0 {
			ctx.ADDQ(imm(rem*32), dyp)
		}
	})
	q := ctx.GP64()
	ctx.MOVQ(w.dwLoc, q)
	for kw := range 3 {
		for c := range 4 {
			a := dwAcc(kw, c)
			ctx.VADDPS(mem(q, kw*8*32+c*32), a, a)
			ctx.VMOVUPS(a, mem(q, kw*8*32+c*32))
		}
	}
	w.prefetchNext()
}

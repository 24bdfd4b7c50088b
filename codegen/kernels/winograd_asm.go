package kernels

import (
	"fmt"
	"math"

	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The names of the Winograd transforms' assembly, shape-generic (every
// size is an argument) and shared by a package's Winograd kernels; their
// twins are gosrc's winoCopyRowGo, winoInRowGo and winoOutRowGo.
const (
	winoAsmCopyRow = "winoCopyRowAVX2"
	winoAsmInRow   = "winoInRowAVX2"
	winoAsmOutRow  = "winoOutRowAVX2"
)

// BuildWinogradTransforms adds the three transforms of the Winograd
// kernels to ctx: the prologue copy of one row of an image into the
// scratch, the input transform Bᵀ d B of a row of tiles and the output
// transform Aᵀ m A with the epilogue. They compute what their twins do,
// in the same order; the output transform's multiplications are by
// powers of two, done as doublings, so it rounds as the twin does but for
// the statistics' fused multiply-adds.
func BuildWinogradTransforms(ctx *build.Context) {
	w := &winoAsm{ctx: ctx}
	w.copyRow()
	w.inRow()
	w.outRow()
}

// winoAsm holds the state of the transforms being built.
type winoAsm struct {
	ctx    *build.Context
	labels int
}

func (w *winoAsm) label(what string) string {
	w.labels++
	return fmt.Sprintf("wino%s%d", what, w.labels)
}

// broadcast returns a fresh vector of eight copies of v.
func (w *winoAsm) broadcast(v float32) reg.VecVirtual {
	ctx := w.ctx
	g := ctx.GP32()
	ctx.MOVL(operand.U32(math.Float32bits(v)), g)
	x := ctx.XMM()
	ctx.MOVD(g, x)
	y := ctx.YMM()
	ctx.VBROADCASTSS(x, y)
	return y
}

// copyRow builds winoCopyRowAVX2(dst, src, scale, shift []float32, mode
// int): dst = prologue(src) for len(src)/8 vectors, the prologue
// selected by mode (0 none, 1 ReLU, 2 scale*x+shift then ReLU, scale and
// shift eight values).
func (w *winoAsm) copyRow() {
	ctx := w.ctx
	ctx.Function(winoAsmCopyRow)
	ctx.Attributes(attr.NOSPLIT)
	ctx.SignatureExpr("func(dst, src, scale, shift []float32, mode int)")
	ctx.Pragma("noescape")
	ctx.Doc(winoAsmCopyRow + " writes the prologue of the vectors of src to dst.")
	dst, src, n, mode := ctx.GP64(), ctx.GP64(), ctx.GP64(), ctx.GP64()
	ctx.Load(ctx.Param("dst").Base(), dst)
	ctx.Load(ctx.Param("src").Base(), src)
	ctx.Load(ctx.Param("src").Len(), n)
	ctx.Load(ctx.Param("mode"), mode)
	ctx.SHRQ(operand.U8(3), n)
	done := w.label("copydone")
	ctx.TESTQ(n, n)
	ctx.JZ(operand.LabelRef(done))
	zero := ctx.YMM()
	ctx.VXORPS(zero, zero, zero)
	var scale, shift reg.VecVirtual
	loop := func(name string, body func(v reg.VecVirtual)) {
		l := w.label(name)
		ctx.Label(l)
		v := ctx.YMM()
		ctx.VMOVUPS(mem(src, 0), v)
		body(v)
		ctx.VMOVUPS(v, mem(dst, 0))
		ctx.ADDQ(imm(32), src)
		ctx.ADDQ(imm(32), dst)
		ctx.DECQ(n)
		ctx.JNZ(operand.LabelRef(l))
		ctx.JMP(operand.LabelRef(done))
	}
	relu, affine := w.label("copyrelu"), w.label("copyaffine")
	ctx.CMPQ(mode, imm(1))
	ctx.JEQ(operand.LabelRef(relu))
	ctx.CMPQ(mode, imm(2))
	ctx.JEQ(operand.LabelRef(affine))
	loop("copyplain", func(reg.VecVirtual) {})
	ctx.Label(relu)
	loop("copyrelul", func(v reg.VecVirtual) { ctx.VMAXPS(v, zero, v) })
	ctx.Label(affine)
	sp, hp := ctx.GP64(), ctx.GP64()
	ctx.Load(ctx.Param("scale").Base(), sp)
	ctx.Load(ctx.Param("shift").Base(), hp)
	scale, shift = ctx.YMM(), ctx.YMM()
	ctx.VMOVUPS(mem(sp, 0), scale)
	ctx.VMOVUPS(mem(hp, 0), shift)
	loop("copyaffinel", func(v reg.VecVirtual) {
		ctx.VFMADD213PS(shift, scale, v) // v = scale*v + shift
		ctx.VMAXPS(v, zero, v)           // (0 > v) ? 0 : v, NaN kept
	})
	ctx.Label(done)
	ctx.VZEROUPPER()
	ctx.RET()
}

// bt applies the input transform Bᵀ to the line d (six vectors) in
// place, as gosrc's winoBt does; c4 and c5 hold 4 and 5.
func (w *winoAsm) bt(d []reg.VecVirtual, c4, c5 reg.VecVirtual) {
	ctx := w.ctx
	r0, r5 := d[0], d[5]
	ctx.VFMADD213PS(d[4], c4, r0)  // r0 = 4*d0 + d4
	ctx.VFNMADD231PS(d[2], c5, r0) // r0 -= 5*d2
	ctx.VFMADD231PS(d[1], c4, r5)  // r5 = d5 + 4*d1
	ctx.VFNMADD231PS(d[3], c5, r5) // r5 -= 5*d3
	a, r1 := ctx.YMM(), ctx.YMM()
	ctx.VADDPS(d[2], d[1], a)   // a = d1 + d2
	ctx.VADDPS(d[4], d[3], r1)  // r1 = d3 + d4
	ctx.VFNMADD231PS(a, c4, r1) // r1 -= 4*a
	e, r2 := ctx.YMM(), ctx.YMM()
	ctx.VSUBPS(d[2], d[1], e)  // e = d1 - d2
	ctx.VSUBPS(d[3], d[4], r2) // r2 = d4 - d3
	ctx.VFMADD231PS(e, c4, r2) // r2 += 4*e
	h, k := ctx.YMM(), ctx.YMM()
	ctx.VSUBPS(d[2], d[4], h) // h = d4 - d2
	ctx.VSUBPS(d[1], d[3], k) // k = d3 - d1
	ctx.VADDPS(k, k, k)       // k = 2*(d3 - d1)
	r3, r4 := ctx.YMM(), ctx.YMM()
	ctx.VADDPS(k, h, r3) // r3 = h + k
	ctx.VSUBPS(k, h, r4) // r4 = h - k
	d[0], d[1], d[2], d[3], d[4], d[5] = r0, r1, r2, r3, r4, r5
}

// at applies the output transform Aᵀ to the line m (six vectors) and
// returns its four values, as gosrc's winoAt does. Its multiplications
// by 2, 4 and 8 are exact, done as doublings, so that no register holds
// a constant.
func (w *winoAsm) at(m []reg.VecVirtual) [4]reg.VecVirtual {
	ctx := w.ctx
	a, b, c, d := ctx.YMM(), ctx.YMM(), ctx.YMM(), ctx.YMM()
	ctx.VADDPS(m[2], m[1], a) // a = m1 + m2
	ctx.VSUBPS(m[2], m[1], b) // b = m1 - m2
	ctx.VADDPS(m[4], m[3], c) // c = m3 + m4
	ctx.VSUBPS(m[4], m[3], d) // d = m3 - m4
	o0, o1 := m[0], ctx.YMM()
	ctx.VADDPS(a, o0, o0) // o0 = m0 + a
	ctx.VADDPS(c, o0, o0) // o0 += c
	ctx.VADDPS(d, d, d)   // d = 2*(m3 - m4)
	ctx.VADDPS(d, b, o1)  // o1 = b + 2*(m3 - m4)
	ctx.VADDPS(c, c, c)
	ctx.VADDPS(c, c, c) // c = 4*(m3 + m4)
	ctx.VADDPS(c, a, a) // o2 = a + 4*(m3 + m4)
	ctx.VADDPS(d, d, d)
	ctx.VADDPS(d, d, d)    // d = 8*(m3 - m4)
	ctx.VADDPS(d, b, b)    // b + 8*(m3 - m4)
	ctx.VADDPS(m[5], b, b) // o3 = (b + 8*(m3 - m4)) + m5
	return [4]reg.VecVirtual{o0, o1, a, b}
}

// inRow builds winoInRowAVX2(src, dst []float32, tiles, rowStride,
// xiStride int), the twin of gosrc's winoInRowGo: for each tile, the rows
// of its 6x6 input are transformed into dst's 36 points, then the
// columns in place.
func (w *winoAsm) inRow() {
	ctx := w.ctx
	ctx.Function(winoAsmInRow)
	ctx.Attributes(attr.NOSPLIT)
	ctx.SignatureExpr("func(src, dst []float32, tiles, rowStride, xiStride int)")
	ctx.Pragma("noescape")
	ctx.Doc(winoAsmInRow + " is the Winograd input transform of a row of tiles of one channel block.")
	src, dst, cnt, rs, xs := ctx.GP64(), ctx.GP64(), ctx.GP64(), ctx.GP64(), ctx.GP64()
	ctx.Load(ctx.Param("src").Base(), src)
	ctx.Load(ctx.Param("dst").Base(), dst)
	ctx.Load(ctx.Param("tiles"), cnt)
	ctx.Load(ctx.Param("rowStride"), rs)
	ctx.Load(ctx.Param("xiStride"), xs)
	ctx.SHLQ(operand.U8(2), rs)
	ctx.SHLQ(operand.U8(2), xs)
	xs6 := ctx.GP64()
	ctx.LEAQ(operand.Mem{Base: xs, Index: xs, Scale: 2}, xs6) // 3*xs
	ctx.ADDQ(xs6, xs6)                                        // 6*xs
	c4, c5 := w.broadcast(4), w.broadcast(5)
	done := w.label("indone")
	ctx.TESTQ(cnt, cnt)
	ctx.JZ(operand.LabelRef(done))
	loop := w.label("intile")
	ctx.Label(loop)
	// Rows: row r's transform goes to points 6r .. 6r+5.
	rp, p := ctx.GP64(), ctx.GP64()
	ctx.MOVQ(src, rp)
	ctx.MOVQ(dst, p)
	for range 6 {
		d := make([]reg.VecVirtual, 6)
		for j := range d {
			d[j] = ctx.YMM()
			ctx.VMOVUPS(mem(rp, 32*j), d[j])
		}
		w.bt(d, c4, c5)
		for j := range d {
			ctx.VMOVUPS(d[j], operand.Mem{Base: p})
			ctx.ADDQ(xs, p)
		}
		ctx.ADDQ(rs, rp)
	}
	// Columns: column j is points j, j+6, ..., j+30.
	cp, cp3 := ctx.GP64(), ctx.GP64()
	ctx.MOVQ(dst, cp)
	for range 6 {
		ctx.LEAQ(operand.Mem{Base: cp, Index: xs6, Scale: 2}, cp3)
		ctx.ADDQ(xs6, cp3) // cp + 18*xs
		addr := func(i int) operand.Mem {
			base := cp
			if i >= 3 {
				base, i = cp3, i-3
			}
			switch i {
			case 0:
				return operand.Mem{Base: base}
			case 1:
				return operand.Mem{Base: base, Index: xs6, Scale: 1}
			}
			return operand.Mem{Base: base, Index: xs6, Scale: 2}
		}
		d := make([]reg.VecVirtual, 6)
		for i := range d {
			d[i] = ctx.YMM()
			ctx.VMOVUPS(addr(i), d[i])
		}
		w.bt(d, c4, c5)
		for i := range d {
			ctx.VMOVUPS(d[i], addr(i))
		}
		ctx.ADDQ(xs, cp)
	}
	ctx.ADDQ(imm(4*32), src)
	ctx.ADDQ(imm(32), dst)
	ctx.DECQ(cnt)
	ctx.JNZ(operand.LabelRef(loop))
	ctx.Label(done)
	ctx.VZEROUPPER()
	ctx.RET()
}

// outRow builds winoOutRowAVX2(m, y, bias, res, sums []float32, tiles,
// xiStride, rowStride, flags int), the twin of gosrc's winoOutRowGo: for
// each tile, the rows of its 36 points are transformed in place into
// points 6i .. 6i+3, then the four columns, each giving a column of the
// 4x4 output, to which the epilogue the flags select (1 bias, 2
// residual, 4 ReLU, 8 statistics: Σy and Σy² over the call into sums)
// is applied as it is stored. The loop over the tiles is built once per
// combination of flags.
func (w *winoAsm) outRow() {
	ctx := w.ctx
	ctx.Function(winoAsmOutRow)
	ctx.Attributes(attr.NOSPLIT)
	ctx.SignatureExpr("func(m, y, bias, res, sums []float32, tiles, xiStride, rowStride, flags int)")
	ctx.Pragma("noescape")
	ctx.Doc(winoAsmOutRow + " is the Winograd output transform, with its epilogue, of a row of tiles of one channel block.")
	mp, yp, rsp, cnt, xs, rs, flags := ctx.GP64(), ctx.GP64(), ctx.GP64(), ctx.GP64(), ctx.GP64(), ctx.GP64(), ctx.GP64()
	ctx.Load(ctx.Param("m").Base(), mp)
	ctx.Load(ctx.Param("y").Base(), yp)
	ctx.Load(ctx.Param("res").Base(), rsp)
	ctx.Load(ctx.Param("tiles"), cnt)
	ctx.Load(ctx.Param("xiStride"), xs)
	ctx.Load(ctx.Param("rowStride"), rs)
	ctx.Load(ctx.Param("flags"), flags)
	ctx.SHLQ(operand.U8(2), xs)
	ctx.SHLQ(operand.U8(2), rs)
	xs6 := ctx.GP64()
	ctx.LEAQ(operand.Mem{Base: xs, Index: xs, Scale: 2}, xs6)
	ctx.ADDQ(xs6, xs6)
	done, empty := w.label("outdone"), w.label("outempty")
	ctx.TESTQ(cnt, cnt)
	ctx.JZ(operand.LabelRef(empty))
	var entries []string
	for f := range 16 {
		entries = append(entries, w.label(fmt.Sprintf("outflags%d_", f)))
	}
	for f := 1; f < 16; f++ {
		ctx.CMPQ(flags, imm(f))
		ctx.JEQ(operand.LabelRef(entries[f]))
	}
	for f := range 16 {
		ctx.Label(entries[f])
		w.outTiles(f, mp, yp, rsp, cnt, xs, xs6, rs)
		ctx.JMP(operand.LabelRef(done))
	}
	// No tiles: the statistics are zero.
	ctx.Label(empty)
	ctx.TESTQ(imm(8), flags)
	ctx.JZ(operand.LabelRef(done))
	sp, z := ctx.GP64(), ctx.YMM()
	ctx.Load(ctx.Param("sums").Base(), sp)
	ctx.VXORPS(z, z, z)
	ctx.VMOVUPS(z, mem(sp, 0))
	ctx.VMOVUPS(z, mem(sp, 32))
	ctx.Label(done)
	ctx.VZEROUPPER()
	ctx.RET()
}

// outTiles is outRow's loop over the tiles for one combination of flags.
func (w *winoAsm) outTiles(flags int, mp, yp, rsp, cnt, xs, xs6, rs reg.GPVirtual) {
	ctx := w.ctx
	bias, relu, residual, stats := flags&1 != 0, flags&4 != 0, flags&2 != 0, flags&8 != 0
	var bv, zero, sum, sumsq reg.VecVirtual
	if stats {
		sum, sumsq = ctx.YMM(), ctx.YMM()
		ctx.VXORPS(sum, sum, sum)
		ctx.VXORPS(sumsq, sumsq, sumsq)
	}
	if bias {
		bp := ctx.GP64()
		ctx.Load(ctx.Param("bias").Base(), bp)
		bv = ctx.YMM()
		ctx.VMOVUPS(mem(bp, 0), bv)
	}
	if relu {
		zero = ctx.YMM()
		ctx.VXORPS(zero, zero, zero)
	}
	loop := w.label("outtile")
	ctx.Label(loop)
	// Rows: row i of points 6i .. 6i+5 gives points 6i .. 6i+3.
	p, q, q4 := ctx.GP64(), ctx.GP64(), ctx.GP64()
	ctx.MOVQ(mp, p)
	for range 6 {
		ctx.LEAQ(operand.Mem{Base: p, Index: xs, Scale: 2}, q)
		ctx.LEAQ(operand.Mem{Base: p, Index: xs, Scale: 4}, q4)
		addr := []operand.Mem{
			{Base: p}, {Base: p, Index: xs, Scale: 1}, {Base: q}, {Base: q, Index: xs, Scale: 1},
			{Base: q4}, {Base: q4, Index: xs, Scale: 1},
		}
		v := make([]reg.VecVirtual, 6)
		for j := range v {
			v[j] = ctx.YMM()
			ctx.VMOVUPS(addr[j], v[j])
		}
		o := w.at(v)
		for j := range o {
			ctx.VMOVUPS(o[j], addr[j])
		}
		ctx.ADDQ(xs6, p)
	}
	// Columns: column j of points j, j+6, ..., j+30 is column j of the
	// output, rows 0 to 3.
	cp, cp3, y3, r3 := ctx.GP64(), ctx.GP64(), ctx.GP64(), ctx.GP64()
	ctx.MOVQ(mp, cp)
	ctx.LEAQ(operand.Mem{Base: yp, Index: rs, Scale: 2}, y3)
	ctx.ADDQ(rs, y3)
	if residual {
		ctx.LEAQ(operand.Mem{Base: rsp, Index: rs, Scale: 2}, r3)
		ctx.ADDQ(rs, r3)
	}
	rowAddr := func(base, base3 reg.GPVirtual, r, j int) operand.Mem {
		switch r {
		case 0:
			return operand.Mem{Base: base, Disp: 32 * j}
		case 1:
			return operand.Mem{Base: base, Index: rs, Scale: 1, Disp: 32 * j}
		case 2:
			return operand.Mem{Base: base, Index: rs, Scale: 2, Disp: 32 * j}
		}
		return operand.Mem{Base: base3, Disp: 32 * j}
	}
	for j := range 4 {
		ctx.LEAQ(operand.Mem{Base: cp, Index: xs6, Scale: 2}, cp3)
		ctx.ADDQ(xs6, cp3)
		addr := func(i int) operand.Mem {
			base := cp
			if i >= 3 {
				base, i = cp3, i-3
			}
			switch i {
			case 0:
				return operand.Mem{Base: base}
			case 1:
				return operand.Mem{Base: base, Index: xs6, Scale: 1}
			}
			return operand.Mem{Base: base, Index: xs6, Scale: 2}
		}
		v := make([]reg.VecVirtual, 6)
		for i := range v {
			v[i] = ctx.YMM()
			ctx.VMOVUPS(addr(i), v[i])
		}
		o := w.at(v)
		for r, x := range o {
			if bias {
				ctx.VADDPS(bv, x, x)
			}
			if residual {
				ctx.VADDPS(rowAddr(rsp, r3, r, j), x, x)
			}
			if relu {
				ctx.VMAXPS(x, zero, x) // (0 > v) ? 0 : v, NaN kept
			}
			ctx.VMOVUPS(x, rowAddr(yp, y3, r, j))
			if stats {
				ctx.VADDPS(x, sum, sum)
				ctx.VFMADD231PS(x, x, sumsq)
			}
		}
		ctx.ADDQ(xs, cp)
	}
	ctx.ADDQ(imm(32), mp)
	ctx.ADDQ(imm(4*32), yp)
	if residual {
		ctx.ADDQ(imm(4*32), rsp)
	}
	ctx.DECQ(cnt)
	ctx.JNZ(operand.LabelRef(loop))
	if stats {
		sp := ctx.GP64()
		ctx.Load(ctx.Param("sums").Base(), sp)
		ctx.VMOVUPS(sum, mem(sp, 0))
		ctx.VMOVUPS(sumsq, mem(sp, 32))
	}
}

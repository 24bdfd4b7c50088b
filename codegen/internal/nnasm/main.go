// Command nnasm writes the AVX2+FMA kernels of package runtime/nn: the
// streaming loops of its shape-generic elementwise, BatchNorm and SGD
// kernels, which carry no shape and so are written once, not per network.
// It writes the assembly (simd_amd64.s), its stubs with the constant that
// says the build has them (simd_amd64.go), and the file that stands in for
// both in the other builds (simd_other.go). The pure-Go twins and the
// dispatch are written by hand in runtime/nn/simd.go.
//
// Usage, from runtime/nn (see its gen.go):
//
//	go run ../../codegen/internal/nnasm
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dave/jennifer/jen"
	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/pass"
	"github.com/mmcloughlin/avo/printer"
	"github.com/mmcloughlin/avo/reg"

	"github.com/resnetc/resnetc/codegen/kernels"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nnasm:", err)
		os.Exit(1)
	}
}

func run() error {
	// A flag set of its own: avo's build package registers its flags on
	// flag.CommandLine.
	fs := flag.NewFlagSet("nnasm", flag.ContinueOnError)
	dir := fs.String("dir", ".", "directory of package runtime/nn")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	files, err := render()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(*dir, name), files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pkg is the name of the package the files belong to.
const pkg = "nn"

// render returns the generated files of runtime/nn by name.
func render() (map[string][]byte, error) {
	ctx := build.NewContext()
	ctx.ConstraintExpr("amd64,!purego") // kernels.AsmConstraint in +build syntax
	lanes := laneIndices(ctx)
	for _, k := range kernelList {
		g := &gen{ctx: ctx, k: k, lanes: lanes}
		g.function()
	}
	f, err := ctx.Result()
	if err != nil {
		return nil, err
	}
	if err := pass.Compile.Execute(f); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	cfg := printer.Config{Name: "resnetc", Pkg: pkg}
	if files["simd_amd64.s"], err = printer.NewGoAsm(cfg).Print(f); err != nil {
		return nil, err
	}
	stubs, err := printer.NewStubs(cfg).Print(f)
	if err != nil {
		return nil, err
	}
	stubs = append(stubs, "\n// haveAsm is true: this build carries the assembly kernels.\nconst haveAsm = true\n"...)
	if files["simd_amd64.go"], err = format.Source(stubs); err != nil {
		return nil, fmt.Errorf("simd_amd64.go: %w", err)
	}
	if files["simd_other.go"], err = otherFile(); err != nil {
		return nil, err
	}
	return files, nil
}

// otherFile is the file of the builds without assembly: haveAsm is false
// and the kernels' names are nil function variables, so that the dispatch
// compiles everywhere and its assembly branch is dead.
func otherFile() ([]byte, error) {
	f := kernels.NewFile(pkg, kernels.NoAsmConstraint)
	f.Comment("haveAsm is false: this build has no assembly kernels.")
	f.Const().Id("haveAsm").Op("=").False()
	f.Line()
	var defs []jen.Code
	for _, k := range kernelList {
		var ps []jen.Code
		for _, p := range k.params {
			ps = append(ps, jen.Id(p.name).Add(p.typ.jen()))
		}
		defs = append(defs, jen.Id(k.name).Func().Params(ps...))
	}
	f.Comment("The assembly kernels' names, nil in this build.")
	f.Var().Defs(defs...)
	var buf bytes.Buffer
	if err := f.Render(&buf); err != nil {
		return nil, fmt.Errorf("simd_other.go: %w", err)
	}
	return buf.Bytes(), nil
}

// ptype is the Go type of a kernel parameter.
type ptype int

const (
	slice32   ptype = iota // []float32: a stream
	lanes32                // *[8]float32: one constant per lane
	scalar32               // float32: one constant for every lane
	lanes64x2              // *[16]float64: two per-lane sums
)

func (t ptype) String() string {
	return [...]string{"[]float32", "*[8]float32", "float32", "*[16]float64"}[t]
}

func (t ptype) jen() jen.Code {
	switch t {
	case slice32:
		return jen.Index().Float32()
	case lanes32:
		return jen.Op("*").Index(jen.Lit(8)).Float32()
	case scalar32:
		return jen.Float32()
	case lanes64x2:
		return jen.Op("*").Index(jen.Lit(16)).Float64()
	}
	panic(fmt.Sprintf("BUG: nnasm: parameter type %d", int(t)))
}

type param struct {
	name string
	typ  ptype
}

// kernel is one assembly function: it streams over len(lenOf) elements
// of its slice parameters, 8 at a time (element i in lane i%8), the last
// partial group under a lane mask, and applies body to each group of 8.
// A kernel with sums accumulates two per-lane sums: in float32 vectors
// over chunks of sumChunk elements, each chunk then added in float64 to
// the *[16]float64 parameter sums (lanes 0-7 the first sum, 8-15 the
// second), so that rounding does not grow with the stream's length.
type kernel struct {
	name   string
	doc    []string
	params []param
	lenOf  string
	sums   bool
	setup  func(g *gen)        // loads the constants body uses
	body   func(g *gen, q grp) // one group of 8 elements
}

func (k kernel) signature() string {
	var ps []string
	for _, p := range k.params {
		ps = append(ps, p.name+" "+p.typ.String())
	}
	return "func(" + strings.Join(ps, ", ") + ")"
}

// Loop shapes: full groups are unrolled by unroll; a kernel with sums
// keeps accs accumulators per sum (the adds of consecutive groups go to
// different ones, so they do not wait on each other) and flushes them to
// float64 every sumChunk elements.
const (
	unroll   = 4
	accs     = 2
	sumChunk = 512
)

// Comparison predicates of VCMPPS: ordered and quiet, so that a NaN
// compares false.
const (
	cmpLE = 0x12 // LE_OQ
	cmpGT = 0x1E // GT_OQ
)

// gen holds the state of one kernel being built.
type gen struct {
	ctx    *build.Context
	k      kernel
	lanes  operand.Mem               // the int32 table 0..7
	ptr    map[string]reg.GPVirtual  // base pointers of the slices
	off    reg.GPVirtual             // byte offset of the current group
	c      map[string]reg.VecVirtual // constants set up by k.setup
	acc    [2][accs]reg.VecVirtual   // float32 partial sums
	labels int
}

// grp is one group of 8 elements at byte displacement disp from g.off.
// In the stream's last, partial group mask has all ones in the lanes
// that hold elements: loads read zero into the others and stores leave
// them alone.
type grp struct {
	g    *gen
	disp int
	slot int
	mask reg.VecVirtual
}

func (q grp) addr(p string) operand.Mem {
	b, ok := q.g.ptr[p]
	if !ok {
		panic("BUG: nnasm: " + q.g.k.name + " has no slice " + p)
	}
	return operand.Mem{Base: b, Index: q.g.off, Scale: 1, Disp: q.disp}
}

// load loads the group of slice p.
func (q grp) load(p string) reg.VecVirtual {
	v := q.g.ctx.YMM()
	if q.mask != nil {
		q.g.ctx.VMASKMOVPS(q.addr(p), q.mask, v)
	} else {
		q.g.ctx.VMOVUPS(q.addr(p), v)
	}
	return v
}

// src is the group of slice p as a source operand: memory in full
// groups, a masked load in the partial one.
func (q grp) src(p string) operand.Op {
	if q.mask != nil {
		return q.load(p)
	}
	return q.addr(p)
}

func (q grp) store(p string, v reg.VecVirtual) {
	if q.mask != nil {
		q.g.ctx.VMASKMOVPS(v, q.mask, q.addr(p))
	} else {
		q.g.ctx.VMOVUPS(v, q.addr(p))
	}
}

// acc is the accumulator of sum s that this group adds into.
func (q grp) acc(s int) reg.VecVirtual { return q.g.acc[s][q.slot%accs] }

func (g *gen) label(what string) string {
	g.labels++
	return fmt.Sprintf("%s_%s%d", g.k.name, what, g.labels)
}

// laneIndices adds the table of lane indices 0..7 (int32) that the
// partial group's mask is made from.
func laneIndices(ctx *build.Context) operand.Mem {
	m := ctx.StaticGlobal("lanes")
	ctx.DataAttributes(attr.RODATA | attr.NOPTR)
	for l := range 8 {
		ctx.AppendDatum(operand.U32(l))
	}
	return m
}

// constant loads the *[8]float32 parameter p.
func (g *gen) constant(p string) reg.VecVirtual {
	ptr := g.ctx.GP64()
	g.ctx.Load(g.ctx.Param(p), ptr)
	v := g.ctx.YMM()
	g.ctx.VMOVUPS(operand.Mem{Base: ptr}, v)
	g.c[p] = v
	return v
}

// broadcast loads the float32 parameter p into every lane.
func (g *gen) broadcast(p string) reg.VecVirtual {
	r, err := g.ctx.Param(p).Resolve()
	if err != nil {
		panic("BUG: nnasm: " + g.k.name + ": " + err.Error())
	}
	v := g.ctx.YMM()
	g.ctx.VBROADCASTSS(r.Addr, v)
	g.c[p] = v
	return v
}

// zero sets up the constant 0.
func (g *gen) zero() {
	v := g.ctx.YMM()
	g.ctx.VXORPS(v, v, v)
	g.c["zero"] = v
}

func (g *gen) function() {
	ctx, k := g.ctx, g.k
	ctx.Function(k.name)
	ctx.Attributes(attr.NOSPLIT)
	ctx.SignatureExpr(k.signature())
	ctx.Pragma("noescape")
	ctx.Doc(k.doc...)
	g.ptr, g.c = map[string]reg.GPVirtual{}, map[string]reg.VecVirtual{}
	n := ctx.GP64()
	ctx.Load(ctx.Param(k.lenOf).Len(), n)
	for _, p := range k.params {
		if p.typ == slice32 {
			g.ptr[p.name] = ctx.GP64()
			ctx.Load(ctx.Param(p.name).Base(), g.ptr[p.name])
		}
	}
	g.off = ctx.GP64()
	ctx.XORQ(g.off, g.off)
	k.setup(g)
	if !k.sums {
		g.stream(n)
	} else {
		g.chunks(n)
	}
	ctx.VZEROUPPER()
	ctx.RET()
}

// chunks streams over n elements in chunks of sumChunk, flushing the
// accumulators after each.
func (g *gen) chunks(n reg.GPVirtual) {
	ctx := g.ctx
	sums := ctx.GP64()
	ctx.Load(ctx.Param("sums"), sums)
	for s := range g.acc {
		for a := range g.acc[s] {
			g.acc[s][a] = ctx.YMM()
		}
	}
	next, done := g.label("chunk"), g.label("done")
	ctx.Label(next)
	ctx.TESTQ(n, n)
	ctx.JZ(operand.LabelRef(done))
	m := ctx.GP64()
	ctx.MOVQ(operand.U32(sumChunk), m)
	ctx.CMPQ(n, m)
	ctx.CMOVQLT(n, m)
	ctx.SUBQ(m, n)
	for s := range g.acc {
		for _, a := range g.acc[s] {
			ctx.VXORPS(a, a, a)
		}
	}
	g.stream(m)
	for s := range g.acc {
		a := g.acc[s][0]
		for _, b := range g.acc[s][1:] {
			ctx.VADDPS(b, a, a)
		}
		lo, hi, hx := ctx.YMM(), ctx.YMM(), ctx.XMM()
		ctx.VCVTPS2PD(a.AsX(), lo)
		ctx.VEXTRACTF128(operand.U8(1), a, hx)
		ctx.VCVTPS2PD(hx, hi)
		for h, v := range []reg.VecVirtual{lo, hi} {
			at := operand.Mem{Base: sums, Disp: 64*s + 32*h}
			ctx.VADDPD(at, v, v)
			ctx.VMOVUPD(v, at)
		}
	}
	ctx.JMP(operand.LabelRef(next))
	ctx.Label(done)
}

// stream runs the body over n elements: groups of unroll*8, then of 8,
// then the partial group. It advances g.off past the full groups.
func (g *gen) stream(n reg.GPVirtual) {
	ctx := g.ctx
	wide, one, tail, end := g.label("wide"), g.label("one"), g.label("tail"), g.label("end")
	ctx.Label(wide)
	ctx.CMPQ(n, operand.U32(8*unroll))
	ctx.JLT(operand.LabelRef(one))
	for s := range unroll {
		g.k.body(g, grp{g: g, disp: 32 * s, slot: s})
	}
	ctx.ADDQ(operand.U32(32*unroll), g.off)
	ctx.SUBQ(operand.U32(8*unroll), n)
	ctx.JMP(operand.LabelRef(wide))
	ctx.Label(one)
	ctx.CMPQ(n, operand.U32(8))
	ctx.JLT(operand.LabelRef(tail))
	g.k.body(g, grp{g: g})
	ctx.ADDQ(operand.U32(32), g.off)
	ctx.SUBQ(operand.U32(8), n)
	ctx.JMP(operand.LabelRef(one))
	ctx.Label(tail)
	ctx.TESTQ(n, n)
	ctx.JZ(operand.LabelRef(end))
	x, mask := ctx.XMM(), ctx.YMM()
	ctx.VMOVQ(n, x)
	ctx.VPBROADCASTD(x, mask)
	ctx.VPCMPGTD(g.lanes, mask, mask)
	g.k.body(g, grp{g: g, mask: mask})
	ctx.Label(end)
}

func slices32(names ...string) []param {
	ps := make([]param, len(names))
	for i, n := range names {
		ps[i] = param{n, slice32}
	}
	return ps
}

func with(ps []param, more ...param) []param { return append(ps, more...) }

// kernelList is every kernel, in the order of the generated files.
var kernelList = []kernel{
	{
		name:   "addAVX2",
		doc:    []string{"addAVX2 sets z[i] = x[i] + y[i] for i < len(x)."},
		params: slices32("z", "x", "y"),
		lenOf:  "x",
		setup:  func(*gen) {},
		body: func(g *gen, q grp) {
			v := q.load("x")
			g.ctx.VADDPS(q.src("y"), v, v)
			q.store("z", v)
		},
	},
	{
		name:   "mulAVX2",
		doc:    []string{"mulAVX2 sets z[i] = x[i] * y[i] for i < len(x)."},
		params: slices32("z", "x", "y"),
		lenOf:  "x",
		setup:  func(*gen) {},
		body: func(g *gen, q grp) {
			v := q.load("x")
			g.ctx.VMULPS(q.src("y"), v, v)
			q.store("z", v)
		},
	},
	{
		name:   "reluAVX2",
		doc:    []string{"reluAVX2 sets y[i] = x[i], or 0 where x[i] <= 0, for i < len(x): NaN stays."},
		params: slices32("y", "x"),
		lenOf:  "x",
		setup:  (*gen).zero,
		body: func(g *gen, q grp) {
			v, m := q.load("x"), g.ctx.YMM()
			g.ctx.VCMPPS(operand.U8(cmpLE), g.c["zero"], v, m)
			g.ctx.VANDNPS(v, m, v)
			q.store("y", v)
		},
	},
	{
		name:   "reluGradAVX2",
		doc:    []string{"reluGradAVX2 sets dx[i] = dy[i] where y[i] > 0, else 0, for i < len(dy)."},
		params: slices32("dx", "dy", "y"),
		lenOf:  "dy",
		setup:  (*gen).zero,
		body: func(g *gen, q grp) {
			m := q.load("y")
			g.ctx.VCMPPS(operand.U8(cmpGT), g.c["zero"], m, m)
			g.ctx.VANDPS(q.src("dy"), m, m)
			q.store("dx", m)
		},
	},
	{
		name: "sgdAVX2",
		doc: []string{
			"sgdAVX2 takes an SGD step on len(w) weights: m = mu*mom + g + decay*w,",
			"momOut = m, wOut = w - lr*m.",
		},
		params: with(slices32("wOut", "momOut", "w", "g", "mom"), param{"mu", scalar32}, param{"decay", scalar32}, param{"lr", scalar32}),
		lenOf:  "w",
		setup: func(g *gen) {
			g.broadcast("mu")
			g.broadcast("decay")
			g.broadcast("lr")
		},
		body: func(g *gen, q grp) {
			w, m := q.load("w"), q.load("g")
			g.ctx.VFMADD231PS(w, g.c["decay"], m)
			g.ctx.VFMADD231PS(q.src("mom"), g.c["mu"], m)
			q.store("momOut", m)
			g.ctx.VFNMADD231PS(m, g.c["lr"], w)
			q.store("wOut", w)
		},
	},
	{
		name:   "affineReLUAVX2",
		doc:    []string{"affineReLUAVX2 sets y[i] = max(s[l]*x[i] + b[l], 0), l = i%8, for i < len(x): NaN stays."},
		params: with(slices32("y", "x"), param{"s", lanes32}, param{"b", lanes32}),
		lenOf:  "x",
		setup: func(g *gen) {
			g.constant("s")
			g.constant("b")
			g.zero()
		},
		body: func(g *gen, q grp) {
			v, m := q.load("x"), g.ctx.YMM()
			g.ctx.VFMADD213PS(g.c["b"], g.c["s"], v)
			g.ctx.VCMPPS(operand.U8(cmpLE), g.c["zero"], v, m)
			g.ctx.VANDNPS(v, m, v)
			q.store("y", v)
		},
	},
	{
		name: "affineReLUGradAVX2",
		doc: []string{
			"affineReLUGradAVX2 is the gradient of affineReLUAVX2 for i < len(x): with",
			"m = [s[l]*x[i] + b[l] > 0], l = i%8, it sets dx[i] = m*da[i]*s[l] and adds",
			"m*da[i]*x[i] to sums[l] and m*da[i] to sums[8+l].",
		},
		params: with(slices32("dx", "da", "x"), param{"s", lanes32}, param{"b", lanes32}, param{"sums", lanes64x2}),
		lenOf:  "x",
		sums:   true,
		setup: func(g *gen) {
			g.constant("s")
			g.constant("b")
			g.zero()
		},
		body: func(g *gen, q grp) {
			ctx := g.ctx
			x, m := q.load("x"), ctx.YMM()
			ctx.VMOVAPS(g.c["b"], m)
			ctx.VFMADD231PS(x, g.c["s"], m)
			ctx.VCMPPS(operand.U8(cmpGT), g.c["zero"], m, m)
			da, p := q.load("da"), ctx.YMM()
			// Each product is masked after it is formed, so that a masked-off
			// infinity or NaN in x, s or da leaves no NaN behind.
			ctx.VMULPS(da, g.c["s"], p)
			ctx.VANDPS(p, m, p)
			q.store("dx", p)
			ctx.VMULPS(x, da, x)
			ctx.VANDPS(x, m, x)
			ctx.VADDPS(x, q.acc(0), q.acc(0))
			ctx.VANDPS(da, m, da)
			ctx.VADDPS(da, q.acc(1), q.acc(1))
		},
	},
	{
		name: "affineReLUGradAddAVX2",
		doc: []string{
			"affineReLUGradAddAVX2 is affineReLUGradAVX2 adding z: it sets",
			"dx[i] = z[i] + m*da[i]*s[l], the gradient x already had plus this one.",
		},
		params: with(slices32("dx", "da", "x", "z"), param{"s", lanes32}, param{"b", lanes32}, param{"sums", lanes64x2}),
		lenOf:  "x",
		sums:   true,
		setup: func(g *gen) {
			g.constant("s")
			g.constant("b")
			g.zero()
		},
		body: func(g *gen, q grp) {
			ctx := g.ctx
			x, m := q.load("x"), ctx.YMM()
			ctx.VMOVAPS(g.c["b"], m)
			ctx.VFMADD231PS(x, g.c["s"], m)
			ctx.VCMPPS(operand.U8(cmpGT), g.c["zero"], m, m)
			da, p := q.load("da"), ctx.YMM()
			ctx.VMULPS(da, g.c["s"], p)
			ctx.VANDPS(p, m, p)
			ctx.VADDPS(q.load("z"), p, p)
			q.store("dx", p)
			ctx.VMULPS(x, da, x)
			ctx.VANDPS(x, m, x)
			ctx.VADDPS(x, q.acc(0), q.acc(0))
			ctx.VANDPS(da, m, da)
			ctx.VADDPS(da, q.acc(1), q.acc(1))
		},
	},
	{
		name:   "statsGradAVX2",
		doc:    []string{"statsGradAVX2 sets dy[i] = s[l] + 2*q[l]*y[i], l = i%8, for i < len(y)."},
		params: with(slices32("dy", "y"), param{"s", lanes32}, param{"q", lanes32}),
		lenOf:  "y",
		setup: func(g *gen) {
			g.constant("s")
			q := g.constant("q")
			g.ctx.VADDPS(q, q, q)
		},
		body: func(g *gen, q grp) {
			v := q.load("y")
			g.ctx.VFMADD213PS(g.c["s"], g.c["q"], v)
			q.store("dy", v)
		},
	},
	{
		name: "shiftAffineAVX2",
		doc: []string{
			"shiftAffineAVX2 sets y[i] = (x[i] - m[l])*a[l] + b[l], l = i%8, for",
			"i < len(x): BatchNorm and the gradient of its statistics.",
		},
		params: with(slices32("y", "x"), param{"m", lanes32}, param{"a", lanes32}, param{"b", lanes32}),
		lenOf:  "x",
		setup: func(g *gen) {
			g.constant("m")
			g.constant("a")
			g.constant("b")
		},
		body: func(g *gen, q grp) {
			v := q.load("x")
			g.ctx.VSUBPS(g.c["m"], v, v)
			g.ctx.VFMADD213PS(g.c["b"], g.c["a"], v)
			q.store("y", v)
		},
	},
	{
		name: "shiftAffineAddAVX2",
		doc: []string{
			"shiftAffineAddAVX2 sets y[i] = (x[i] - m[l])*a[l] + b[l] + z[i], l = i%8,",
			"for i < len(x): the gradient of BatchNorm's statistics added to the",
			"gradient its input already has.",
		},
		params: with(slices32("y", "x", "z"), param{"m", lanes32}, param{"a", lanes32}, param{"b", lanes32}),
		lenOf:  "x",
		setup: func(g *gen) {
			g.constant("m")
			g.constant("a")
			g.constant("b")
		},
		body: func(g *gen, q grp) {
			v := q.load("x")
			g.ctx.VSUBPS(g.c["m"], v, v)
			g.ctx.VFMADD213PS(g.c["b"], g.c["a"], v)
			g.ctx.VADDPS(q.load("z"), v, v)
			q.store("y", v)
		},
	},
	{
		name: "bnNormGradAVX2",
		doc: []string{
			"bnNormGradAVX2 sets dx[i] = dy[i]*a[l], l = i%8, and adds dy[i] to",
			"sums[l] and dy[i]*(x[i] - m[l]) to sums[8+l], for i < len(dy).",
		},
		params: with(slices32("dx", "dy", "x"), param{"m", lanes32}, param{"a", lanes32}, param{"sums", lanes64x2}),
		lenOf:  "dy",
		sums:   true,
		setup: func(g *gen) {
			g.constant("m")
			g.constant("a")
		},
		body: func(g *gen, q grp) {
			ctx := g.ctx
			dy, x, p := q.load("dy"), q.load("x"), ctx.YMM()
			ctx.VMULPS(dy, g.c["a"], p)
			q.store("dx", p)
			ctx.VADDPS(dy, q.acc(0), q.acc(0))
			ctx.VSUBPS(g.c["m"], x, x)
			if q.mask != nil {
				ctx.VANDPS(q.mask, x, x) // the lanes past the end read 0, not m
			}
			ctx.VFMADD231PS(x, dy, q.acc(1))
		},
	},
	{
		name: "momentsAVX2",
		doc: []string{
			"momentsAVX2 adds d = x[i] - shift[l], l = i%8, to sums[l] and d*d to",
			"sums[8+l], for i < len(x).",
		},
		params: with(slices32("x"), param{"shift", lanes32}, param{"sums", lanes64x2}),
		lenOf:  "x",
		sums:   true,
		setup:  func(g *gen) { g.constant("shift") },
		body: func(g *gen, q grp) {
			ctx := g.ctx
			d := q.load("x")
			ctx.VSUBPS(g.c["shift"], d, d)
			if q.mask != nil {
				ctx.VANDPS(q.mask, d, d) // the lanes past the end read 0, not shift
			}
			ctx.VADDPS(d, q.acc(0), q.acc(0))
			ctx.VFMADD231PS(d, d, q.acc(1))
		},
	},
}

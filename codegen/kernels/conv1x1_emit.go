package kernels

import (
	"fmt"
	"go/format"
	"strings"

	"github.com/dave/jennifer/jen"
)

// Conv1x1SupportSource returns the shape-generic Go of the 1x1 kernels
// (conv1x1Source) as a file of package pkg. It goes beside
// SupportSource's file, whose relu32 it calls.
func Conv1x1SupportSource(pkg string) ([]byte, error) {
	src := Header + "\n\npackage " + pkg + "\n" + conv1x1Source
	out, err := format.Source([]byte(src))
	if err != nil {
		return nil, fmt.Errorf("conv1x1 support source: %w", err)
	}
	return out, nil
}

// EmitDispatch writes the dispatch (useAsm, UsesAsm) and the peak loop's
// wrapper, twin and measurement, for a package whose kernels all come
// from EmitConv1x1Go. EmitGo writes the same itself, so a package with
// 3x3 kernels too calls EmitGo and not this.
func EmitDispatch(f *jen.File) {
	emitDispatch(f)
	emitPeak(f)
}

// EmitConv1x1AsmAbsent writes nil stand-ins for the 1x1 assembly kernels
// in the builds without assembly (NoAsmConstraint), beside
// EmitAsmAbsent's.
func EmitConv1x1AsmAbsent(f *jen.File, convs []Conv1x1) {
	var defs []jen.Code
	for _, c := range convs {
		defs = append(defs, jen.Id(c.asmName()).Id(c.funcType()))
	}
	if len(defs) == 0 {
		return
	}
	f.Comment("The 1x1 assembly kernels' names, nil in this build.")
	f.Var().Defs(defs...)
}

// funcType is the generated name of the type of c's kernel functions.
func (c Conv1x1) funcType() string { return "Conv1x1" + c.Op.String() + "Func" }

// kernelType is the generated name of the type of c's table entry.
func (c Conv1x1) kernelType() string { return "Conv1x1" + c.Op.String() + "Kernel" }

// checkFunc is the generated function that checks c's arguments.
func (c Conv1x1) checkFunc() string { return "checkConv1x1" + c.Op.String() }

// genericTwin is the shape-generic twin c's twin calls.
func (c Conv1x1) genericTwin() string { return "conv1x1" + c.Op.String() + "Go" }

// opName is the Conv1x1Shape.Op of c.
func (c Conv1x1) opName() string {
	switch c.Op {
	case Conv1x1Dx:
		return "dx"
	case Conv1x1Dw:
		return "dw"
	}
	return "fwd"
}

// jenParams is the parameter list of c's signature, for jennifer.
func (c Conv1x1) jenParams() []jen.Code {
	ps := c.Params()
	var names []jen.Code
	for _, p := range ps[:len(ps)-2] {
		names = append(names, jen.Id(p))
	}
	return []jen.Code{jen.List(names...).Index().Float32(), jen.List(jen.Id("n0"), jen.Id("n1")).Int()}
}

// jenArgs passes every parameter of c's signature on, in order.
func (c Conv1x1) jenArgs() []jen.Code {
	var args []jen.Code
	for _, p := range c.Params() {
		args = append(args, jen.Id(p))
	}
	return args
}

// EmitConv1x1Go writes the Go half of the 1x1 kernels: for each its
// shape, its exported function (argument check, then assembly or twin),
// its twin, and its entry in Conv1x1Kernels, Conv1x1DxKernels or
// Conv1x1DwKernels. The code they call is Conv1x1SupportSource's, and
// the dispatch (useAsm) is EmitGo's or EmitDispatch's.
func EmitConv1x1Go(f *jen.File, convs []Conv1x1) error {
	seen := map[string]bool{}
	for _, c := range convs {
		if err := c.Validate(); err != nil {
			return err
		}
		if seen[c.Name()] {
			return fmt.Errorf("conv1x1 %s listed twice", c.Name())
		}
		seen[c.Name()] = true
	}
	tables := map[Conv1x1Op][]jen.Code{}
	for _, c := range convs {
		emitConv1x1(f, c)
		tables[c.Op] = append(tables[c.Op], jen.Values(jen.Dict{
			jen.Id("Conv1x1Shape"): jen.Id(c.shapeVar()),
			jen.Id("Run"):          jen.Id(c.Name()),
			jen.Id("Go"):           jen.Id(c.goName()),
			jen.Id("Asm"):          jen.Id(c.asmName()),
		}))
	}
	for _, op := range []Conv1x1Op{Conv1x1Fwd, Conv1x1Dx, Conv1x1Dw} {
		c := Conv1x1{Op: op}
		what := map[Conv1x1Op]string{Conv1x1Fwd: "forward", Conv1x1Dx: "backward-data", Conv1x1Dw: "backward-weights"}[op]
		name := "Conv1x1" + op.String() + "Kernels"
		f.Comment(fmt.Sprintf("%s lists the package's %s 1x1 conv kernels, for tests and benchmarks.", name, what))
		f.Var().Id(name).Op("=").Index().Id(c.kernelType()).Values(tables[op]...)
		f.Line()
	}
	return nil
}

// shapeVar names the generated variable holding c's Conv1x1Shape.
func (c Conv1x1) shapeVar() string { return "shape" + c.Name() }

// describe is the doc comment of c's exported function.
func (c Conv1x1) describe() string {
	attrs := []string{fmt.Sprintf("stride=%d", c.Stride), "pad=0"}
	if c.Op == Conv1x1Dw || c.Op == Conv1x1Dx {
		attrs = append(attrs, "kernel=1")
	}
	if c.Prologue != PrologueNone {
		attrs = append(attrs, "prologue="+c.Prologue.String())
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{c.Bias, "bias"}, {c.Residual, "residual"}, {c.ReLU, "relu"}, {c.Stats, "stats"}} {
		if f.on {
			attrs = append(attrs, f.name)
		}
	}
	x := fmt.Sprintf("f32[%d,%d,%d,%d]@nchw8c", c.N, c.Cin, c.H, c.W)
	y := fmt.Sprintf("f32[%d,%d,%d,%d]@nchw8c", c.N, c.Cout, c.OutH(), c.OutW())
	w := fmt.Sprintf("f32[%d,%d,1,1] packed [Cout/8][Cin][8]", c.Cout, c.Cin)
	a := strings.Join(attrs, ", ")
	switch c.Op {
	case Conv1x1Dx:
		return fmt.Sprintf("%s is conv2d_dx{%s} of dy %s\nwith weights %s into dx %s,\nfor images [n0, n1).", c.Name(), a, y, w, x)
	case Conv1x1Dw:
		op := "conv2d_dw"
		if c.Prologue != PrologueNone {
			op = "conv2d_dw_fused"
		}
		return fmt.Sprintf("%s is %s{%s} of dy %s\nand x %s: it adds the gradient of images [n0, n1)\nto dw %s.", c.Name(), op, a, y, x, w)
	}
	return fmt.Sprintf("%s is conv2d_fused{%s} of x %s\nwith weights %s into y %s,\nfor images [n0, n1).", c.Name(), a, x, w, y)
}

// emitConv1x1 writes c's shape, exported function and twin.
func emitConv1x1(f *jen.File, c Conv1x1) {
	f.Comment(c.shapeVar() + " is the shape of " + c.Name() + ".")
	f.Var().Id(c.shapeVar()).Op("=").Id("Conv1x1Shape").Values(jen.Dict{
		jen.Id("Name"):     jen.Lit(c.Name()),
		jen.Id("Op"):       jen.Lit(c.opName()),
		jen.Id("N"):        jen.Lit(c.N),
		jen.Id("Cin"):      jen.Lit(c.Cin),
		jen.Id("Cout"):     jen.Lit(c.Cout),
		jen.Id("H"):        jen.Lit(c.H),
		jen.Id("W"):        jen.Lit(c.W),
		jen.Id("Stride"):   jen.Lit(c.Stride),
		jen.Id("OutH"):     jen.Lit(c.OutH()),
		jen.Id("OutW"):     jen.Lit(c.OutW()),
		jen.Id("Prologue"): jen.Lit(c.Prologue.String()),
		jen.Id("Bias"):     jen.Lit(c.Bias),
		jen.Id("Residual"): jen.Lit(c.Residual),
		jen.Id("ReLU"):     jen.Lit(c.ReLU),
		jen.Id("Stats"):    jen.Lit(c.Stats),
		jen.Id("Tiles"):    jen.Lit(c.Plan().String()),
	})
	f.Line()
	for _, line := range strings.Split(c.describe(), "\n") {
		f.Comment(line)
	}
	shape := jen.Op("&").Id(c.shapeVar())
	f.Func().Id(c.Name()).Params(c.jenParams()...).Block(
		jen.Id(c.checkFunc()).Call(append([]jen.Code{shape}, c.jenArgs()...)...),
		jen.If(jen.Id("useAsm")).Block(
			jen.Id(c.asmName()).Call(c.jenArgs()...),
			jen.Return(),
		),
		jen.Id(c.goName()).Call(c.jenArgs()...),
	)
	f.Line()
	f.Comment(c.goName() + " is the pure-Go twin of " + c.asmName() + ".")
	f.Func().Id(c.goName()).Params(c.jenParams()...).Block(
		jen.Id(c.genericTwin()).Call(append([]jen.Code{shape}, c.jenArgs()...)...),
	)
	f.Line()
}

// conv1x1Source is the shape-generic Go every package with 1x1 kernels
// carries (Conv1x1SupportSource): the kernels' types, argument checks
// and pure-Go twins, and the weight packing. Each twin computes what its
// assembly does in the same order (each output's sum over the reduction
// in order, statistics pixel by pixel, dw's partial sums image by image
// and pixel by pixel), without fused multiply-adds.
const conv1x1Source = `
import "fmt"

// Conv1x1Func is the signature of every forward 1x1 conv kernel, assembly
// and twin, Conv3x3Func's: input x (NCHW8c), packed weights w
// ([Cout/8][Cin][8]), the optional per-channel bias, prologue scale and
// shift, residual res (shaped like y), output y (NCHW8c), per-image
// statistics and the caller's scratch. It computes images [n0, n1);
// slices a kernel's flags do not use may be nil.
type Conv1x1Func func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int)

// Conv1x1DxFunc is the signature of every backward-data 1x1 kernel: dx
// of images [n0, n1) from dy and the weights w packed by
// PackConv1x1DxWeights. dy and dx need hold only the
// images up to n1: a caller may pass views that start at image k and ask
// for images [0, n1-k).
type Conv1x1DxFunc func(dy, w, dx, scratch []float32, n0, n1 int)

// Conv1x1DwFunc is the signature of every backward-weights 1x1 kernel:
// it adds the weight gradient of images [n0, n1) to dw, packed like w.
// Each worker accumulates into a partial of its own, zeroed first, and
// the caller adds the partials in worker order, so the result does not
// depend on timing. dy and x need hold only the images up to n1, as for
// Conv1x1DxFunc.
type Conv1x1DwFunc func(dy, x, scale, shift, dw, scratch []float32, n0, n1 int)

// Conv1x1Shape is the shape of one generated 1x1 conv kernel (pad 0):
// that of the forward conv, x [N,Cin,H,W] and y [N,Cout,OutH,OutW],
// whichever op the kernel computes.
type Conv1x1Shape struct {
	Name                                   string
	Op                                     string // fwd (conv2d_fused), dx (conv2d_dx) or dw (conv2d_dw_fused)
	N, Cin, Cout, H, W, Stride, OutH, OutW int
	Prologue                               string // none, relu or affine_relu: fwd and dw
	Bias, Residual, ReLU, Stats            bool   // fwd only
	Tiles                                  string // the assembly's register tiles
}

// Conv1x1Kernel is one generated forward 1x1 conv kernel: its shape and
// its entry points, for tests and benchmarks that go over every kernel.
type Conv1x1Kernel struct {
	Conv1x1Shape
	Run Conv1x1Func // checks its arguments, then runs Asm or Go
	Go  Conv1x1Func // the pure-Go twin
	Asm Conv1x1Func // the assembly; nil when the build has none
}

// Conv1x1DxKernel is one generated backward-data 1x1 kernel.
type Conv1x1DxKernel struct {
	Conv1x1Shape
	Run, Go, Asm Conv1x1DxFunc
}

// Conv1x1DwKernel is one generated backward-weights 1x1 kernel.
type Conv1x1DwKernel struct {
	Conv1x1Shape
	Run, Go, Asm Conv1x1DwFunc
}

// XLen is the length of x (and of dx).
func (s *Conv1x1Shape) XLen() int { return s.N * s.Cin * s.H * s.W }

// WLen is the length of the packed weights (and of dw).
func (s *Conv1x1Shape) WLen() int { return s.Cout * s.Cin }

// YLen is the length of y, res and dy.
func (s *Conv1x1Shape) YLen() int { return s.N * s.Cout * s.OutH * s.OutW }

// StatsLen is the length of the per-image statistics, [N][2][Cout]: Σy
// then Σy² for each image.
func (s *Conv1x1Shape) StatsLen() int { return s.N * 2 * s.Cout }

// ScratchLen is the length of the scratch each concurrent call needs:
// for the forward and dw kernels prologue(x) of one image at the output
// pixels, [Cin/8][OutH*OutW][8], or nothing when the stride is 1 and
// there is no prologue; dx needs none.
func (s *Conv1x1Shape) ScratchLen() int {
	switch {
	case s.Op == "dx":
		return 0
	case s.Stride != 1 || s.Prologue != "none":
		return s.Cin * s.OutH * s.OutW
	}
	return 0
}

// FLOPs is the work of the whole batch, two per multiply-add.
func (s *Conv1x1Shape) FLOPs() float64 {
	return 2 * float64(s.N) * float64(s.Cout) * float64(s.Cin) * float64(s.OutH*s.OutW)
}

// need panics when a kernel argument is shorter than its shape needs.
// The callers are generated with the shapes baked in, so a mismatch is a
// bug in the generator, and the assembly would read or write out of
// bounds.
func (s *Conv1x1Shape) need(what string, got, want int) {
	if got < want {
		panic(fmt.Sprintf("BUG: %s: %s has length %d, want at least %d", s.Name, what, got, want))
	}
}

// needImages panics when [n0, n1) is not a range of the batch.
func (s *Conv1x1Shape) needImages(n0, n1 int) {
	if n0 < 0 || n0 > n1 || n1 > s.N {
		panic(fmt.Sprintf("BUG: %s: images [%d, %d) outside [0, %d)", s.Name, n0, n1, s.N))
	}
}

// needPrologue checks the prologue's arguments.
func (s *Conv1x1Shape) needPrologue(scale, shift []float32) {
	if s.Prologue == "affine_relu" {
		s.need("scale", len(scale), s.Cin)
		s.need("shift", len(shift), s.Cin)
	}
}

func checkConv1x1(s *Conv1x1Shape, x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int) {
	s.need("x", len(x), s.XLen())
	s.need("w", len(w), s.WLen())
	s.need("y", len(y), s.YLen())
	s.need("scratch", len(scratch), s.ScratchLen())
	if s.Bias {
		s.need("bias", len(bias), s.Cout)
	}
	s.needPrologue(scale, shift)
	if s.Residual {
		s.need("res", len(res), s.YLen())
	}
	if s.Stats {
		s.need("stats", len(stats), s.StatsLen())
	}
	s.needImages(n0, n1)
}

func checkConv1x1Dx(s *Conv1x1Shape, dy, w, dx, scratch []float32, n0, n1 int) {
	s.needImages(n0, n1)
	s.need("dy", len(dy), n1*(s.YLen()/s.N))
	s.need("w", len(w), s.WLen())
	s.need("dx", len(dx), n1*(s.XLen()/s.N))
	s.need("scratch", len(scratch), s.ScratchLen())
}

func checkConv1x1Dw(s *Conv1x1Shape, dy, x, scale, shift, dw, scratch []float32, n0, n1 int) {
	s.needImages(n0, n1)
	s.need("dy", len(dy), n1*(s.YLen()/s.N))
	s.need("x", len(x), n1*(s.XLen()/s.N))
	s.needPrologue(scale, shift)
	s.need("dw", len(dw), s.WLen())
	s.need("scratch", len(scratch), s.ScratchLen())
}

// operandA returns what the forward and dw kernels multiply for image n:
// prologue(x[n]) at the output pixels, written into scratch as
// [Cin/8][OutH*OutW][8], or x[n] itself when ScratchLen is 0.
func (s *Conv1x1Shape) operandA(x, scale, shift, scratch []float32, n int) []float32 {
	hw, op := s.H*s.W, s.OutH*s.OutW
	if s.ScratchLen() == 0 {
		return x[n*s.Cin*hw:][:s.Cin*hw]
	}
	for b := range s.Cin / 8 {
		for i := range s.OutH {
			for j := range s.OutW {
				src := x[((n*s.Cin/8+b)*hw+i*s.Stride*s.W+j*s.Stride)*8:][:8]
				dst := scratch[(b*op+i*s.OutW+j)*8:][:8]
				for l, v := range src {
					switch s.Prologue {
					case "relu":
						v = relu32(v)
					case "affine_relu":
						v = relu32(scale[b*8+l]*v + shift[b*8+l])
					}
					dst[l] = v
				}
			}
		}
	}
	return scratch[:s.Cin*op]
}

// conv1x1Go is the pure-Go twin of every forward 1x1 kernel: for each
// output vector, the sum over the input channels in order, then bias,
// residual, ReLU, store and statistics, pixel by pixel in order.
func conv1x1Go(s *Conv1x1Shape, x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int) {
	cob, op := s.Cout/8, s.OutH*s.OutW
	for n := n0; n < n1; n++ {
		a := s.operandA(x, scale, shift, scratch, n)
		var part []float32
		if s.Stats {
			part = stats[n*2*s.Cout:][:2*s.Cout]
			clear(part)
		}
		for ob := range cob {
			for p := range op {
				var acc [8]float32
				for ci := range s.Cin {
					av := a[((ci/8)*op+p)*8+ci%8]
					wv := w[(ob*s.Cin+ci)*8:][:8]
					for l := range acc {
						acc[l] += wv[l] * av
					}
				}
				at := ((n*cob+ob)*op + p) * 8
				out := y[at:][:8]
				for l, v := range acc {
					if s.Bias {
						v += bias[ob*8+l]
					}
					if s.Residual {
						v += res[at+l]
					}
					if s.ReLU {
						v = relu32(v)
					}
					out[l] = v
					if s.Stats {
						part[ob*8+l] += v
						part[s.Cout+ob*8+l] += v * v
					}
				}
			}
		}
	}
}

// conv1x1DxGo is the pure-Go twin of every backward-data 1x1 kernel:
// each dx vector at an output pixel's place is the sum over the output
// channels in order, every other element of dx is zero.
func conv1x1DxGo(s *Conv1x1Shape, dy, w, dx, scratch []float32, n0, n1 int) {
	cob, op, hw := s.Cout/8, s.OutH*s.OutW, s.H*s.W
	for n := n0; n < n1; n++ {
		img := dx[n*s.Cin*hw:][:s.Cin*hw]
		clear(img)
		for ib := range s.Cin / 8 {
			for i := range s.OutH {
				for j := range s.OutW {
					var acc [8]float32
					for co := range s.Cout {
						d := dy[((n*cob+co/8)*op+i*s.OutW+j)*8+co%8]
						for l := range acc {
							acc[l] += w[(ib*s.Cout+co)*8+l] * d
						}
					}
					copy(img[(ib*hw+i*s.Stride*s.W+j*s.Stride)*8:][:8], acc[:])
				}
			}
		}
	}
}

// conv1x1DwGo is the pure-Go twin of every backward-weights 1x1 kernel:
// image by image, each dw vector (eight output channels of one input
// channel) gets the image's pixels added in order.
func conv1x1DwGo(s *Conv1x1Shape, dy, x, scale, shift, dw, scratch []float32, n0, n1 int) {
	cob, op := s.Cout/8, s.OutH*s.OutW
	for n := n0; n < n1; n++ {
		a := s.operandA(x, scale, shift, scratch, n)
		for ob := range cob {
			for ci := range s.Cin {
				acc := dw[(ob*s.Cin+ci)*8:][:8]
				for p := range op {
					av := a[((ci/8)*op+p)*8+ci%8]
					d := dy[((n*cob+ob)*op+p)*8:][:8]
					for l := range acc {
						acc[l] += d[l] * av
					}
				}
			}
		}
	}
}

// PackConv1x1Weights packs plain [cout][cin] (that is [cout][cin][1][1])
// weights into the 1x1 kernels' layout, [cout/8][cin][8 co]: the eight
// output channels of one input channel are one vector. Weight gradients
// and optimizer state use the same layout, so the update is elementwise.
func PackConv1x1Weights(dst, src []float32, cout, cin int) error {
	if err := checkPacked1x1("PackConv1x1Weights", dst, src, cout, cin); err != nil {
		return err
	}
	for o := range cout {
		for i := range cin {
			dst[((o/8)*cin+i)*8+o%8] = src[o*cin+i]
		}
	}
	return nil
}

// PackConv1x1DxWeights packs plain [cout][cin] weights for the
// backward-data kernels, [cin/8][cout][8 ci]: the eight input channels
// of one output channel are one vector.
func PackConv1x1DxWeights(dst, src []float32, cout, cin int) error {
	if err := checkPacked1x1("PackConv1x1DxWeights", dst, src, cout, cin); err != nil {
		return err
	}
	for o := range cout {
		for i := range cin {
			dst[((i/8)*cout+o)*8+i%8] = src[o*cin+i]
		}
	}
	return nil
}

// UnpackConv1x1Weights is the inverse of PackConv1x1Weights.
func UnpackConv1x1Weights(dst, src []float32, cout, cin int) error {
	if err := checkPacked1x1("UnpackConv1x1Weights", src, dst, cout, cin); err != nil {
		return err
	}
	for o := range cout {
		for i := range cin {
			dst[o*cin+i] = src[((o/8)*cin+i)*8+o%8]
		}
	}
	return nil
}

func checkPacked1x1(fn string, packed, plain []float32, cout, cin int) error {
	switch {
	case cout <= 0 || cin <= 0 || cout%8 != 0 || cin%8 != 0:
		return fmt.Errorf("%s: %d output and %d input channels, want positive multiples of 8", fn, cout, cin)
	case len(packed) != cout*cin || len(plain) != cout*cin:
		return fmt.Errorf("%s: lengths %d and %d, want %d for %dx%d", fn, len(packed), len(plain), cout*cin, cout, cin)
	}
	return nil
}
`

package codegen

import (
	"fmt"
	"strings"

	"github.com/dave/jennifer/jen"

	"github.com/resnetc/resnetc/codegen/kernels"
	"github.com/resnetc/resnetc/ir"
)

// driversSource is the Go that runs the specialized kernels of a
// generated package over the model's workers: each kernel computes a
// range of images single-threaded, so a driver splits the batch with
// nn.Ctx.Parallel, packs the weights into the kernel's layout first, and
// reduces what the workers computed (per-image BatchNorm sums, per-worker
// weight gradients) in a fixed order, so that results do not depend on
// the split. The task structs live in the Model: a step allocates
// nothing.
const driversSource = `package PKG

import (
	"fmt"

	"github.com/resnetc/resnetc/runtime/nn"
)

// kernelBuffers are the buffers the specialized kernels share.
type kernelBuffers struct {
	packed  []float32   // weights in the kernel's layout
	stats   []float32   // per-image sums of the stats epilogue
	dwParts [][]float32 // each worker's partial weight gradient
	dwView  [][]float32 // dwParts cut to one kernel's length
	dyImage [][]float32 // each worker's image of a backward kernel's input
	daImage [][]float32 // each worker's image of a backward-data kernel's output
	padImage [][]float32 // each worker's image of conv3x3Pad's input, 8 channels
	parts   [][]float64 // each worker's per-channel sums of a backward epilogue
	vecs    []float32   // copies of convBwd's per-channel vectors
	conv    convTask
	pad     padTask
	split   splitTask
	dx      dxTask
	bwd     bwdTask
	dw      dwTask
	dwPad   dwPadTask
}

func newKernelBuffers(threads int) kernelBuffers {
	b := kernelBuffers{
		packed:  AlignedFloats(packedLen),
		stats:   AlignedFloats(statsLen),
		dwParts: make([][]float32, threads),
		dwView:  make([][]float32, threads),
		dyImage: make([][]float32, threads),
		daImage: make([][]float32, threads),
		padImage: make([][]float32, threads),
		parts:   make([][]float64, threads),
		vecs:    AlignedFloats(7 * vecLen),
	}
	for w := range b.dwParts {
		b.dwParts[w] = AlignedFloats(dwPartLen)
		b.dyImage[w] = AlignedFloats(dyImageLen)
		b.daImage[w] = AlignedFloats(daImageLen)
		b.padImage[w] = AlignedFloats(padImageLen)
		b.parts[w] = make([]float64, partLen)
	}
	return b
}

// check panics on an error of the support code: generated code passes
// it constant, compiler-checked shapes, so an error is a bug.
func check(err error) {
	if err != nil {
		panic(fmt.Sprintf("BUG: %v", err))
	}
}

type convTask struct {
	fn                                      func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int)
	x, w, bias, scale, shift, res, y, stats []float32
	scratch                                 int
	m                                       *Model
}

func (t *convTask) Run(w, lo, hi int) {
	t.fn(t.x, t.w, t.bias, t.scale, t.shift, t.res, t.y, t.stats, t.m.ctx.Scratch(w)[:t.scratch], lo, hi)
}

// conv3x3 runs a specialized 3x3 convolution of n images, cin to cout
// channels, and, when sum is not nil, reduces its per-image statistics
// into sum and sumsq. packed, when not nil, keeps the weights w in the
// kernel's layout between calls of Infer: they are packed into it only
// when the weights changed (m.refold); when nil, they are packed into
// the shared buffer on every call.
func (m *Model) conv3x3(fn Conv3x3Func, scratch, n, cin, cout int, x, w, packed, bias, scale, shift, res, y, sum, sumsq []float32) {
	if packed == nil || m.refold {
		if packed == nil {
			packed = m.k.packed[:cout*cin*9]
		}
		check(PackConv3x3Weights(packed, w, cout, cin))
	}
	m.conv(fn, scratch, n, cout, packed, x, bias, scale, shift, res, y, sum, sumsq)
}

// conv1x1 runs a specialized 1x1 convolution likewise.
func (m *Model) conv1x1(fn Conv1x1Func, scratch, n, cin, cout int, x, w, packed, bias, scale, shift, res, y, sum, sumsq []float32) {
	if packed == nil || m.refold {
		if packed == nil {
			packed = m.k.packed[:cout*cin]
		}
		check(PackConv1x1Weights(packed, w, cout, cin))
	}
	m.conv(fn, scratch, n, cout, packed, x, bias, scale, shift, res, y, sum, sumsq)
}

// conv runs a forward kernel over the workers with packed weights.
func (m *Model) conv(fn func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int), scratch, n, cout int, packed, x, bias, scale, shift, res, y, sum, sumsq []float32) {
	t := &m.k.conv
	t.fn, t.x, t.w, t.bias, t.scale, t.shift, t.res, t.y, t.scratch, t.m = fn, x, packed, bias, scale, shift, res, y, scratch, m
	t.stats = nil
	if sum != nil {
		t.stats = m.k.stats[:n*2*cout]
	}
	m.ctx.Parallel(t, n)
	if sum != nil {
		check(ReduceStats(t.stats, n, cout, sum, sumsq))
	}
}

// padTask runs a 3x3 kernel of one image of 8 input channels on each
// image of an input with fewer channels, in the plain layout: the image
// is copied into the worker's blocked buffer, whose other channels stay
// zero.
type padTask struct {
	fn                         func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int)
	x, w, bias, y, stats       []float32
	cin, hw, yLen, statsLen    int
	scratch                    int
	m                          *Model
}

func (t *padTask) Run(w, lo, hi int) {
	xb := t.m.k.padImage[w][:8*t.hw]
	for i := lo; i < hi; i++ {
		blockImage(xb, t.x, i, t.cin, t.hw)
		var stats []float32
		if t.stats != nil {
			stats = t.stats[i*t.statsLen : (i+1)*t.statsLen]
		}
		t.fn(xb, t.w, t.bias, nil, nil, nil, t.y[i*t.yLen:(i+1)*t.yLen], stats, t.m.ctx.Scratch(w)[:t.scratch], 0, 1)
	}
}

// blockImage copies image i of x, cin < 8 channels of hw pixels in the
// plain layout, into the first cin channels of the blocked image xb,
// whose other channels stay zero.
func blockImage(xb, x []float32, i, cin, hw int) {
	img := x[i*cin*hw : (i+1)*cin*hw]
	for c := range cin {
		for p, v := range img[c*hw : (c+1)*hw] {
			xb[p*8+c] = v
		}
	}
}

// conv3x3Pad runs a 3x3 convolution of n images of cin < 8 channels, in
// the plain layout, to cout blocked channels (see padTask), and reduces
// its statistics like conv3x3. The weights are padded to 8 input
// channels when packed; packed is as for conv3x3.
func (m *Model) conv3x3Pad(fn Conv3x3Func, scratch, n, cin, cout int, x, w, packed, bias, y, sum, sumsq []float32) {
	if packed == nil || m.refold {
		if packed == nil {
			packed = m.k.packed[:cout*8*9]
		}
		clear(packed)
		for o := range cout {
			for i := range cin {
				for k := range 9 {
					packed[packedIndex(o, i, k, 8)] = w[(o*cin+i)*9+k]
				}
			}
		}
	}
	t := &m.k.pad
	t.fn, t.x, t.w, t.bias, t.y, t.scratch, t.m = fn, x, packed, bias, y, scratch, m
	t.cin, t.hw, t.yLen, t.statsLen = cin, len(x)/(n*cin), len(y)/n, 2*cout
	t.stats = nil
	if sum != nil {
		t.stats = m.k.stats[:n*2*cout]
	}
	m.ctx.Parallel(t, n)
	if sum != nil {
		check(ReduceStats(t.stats, n, cout, sum, sumsq))
	}
}

// splitTask runs a forward kernel specialized to half the output
// channels on each half of one image: halves of the plain and of the
// packed weights, of the bias and, the layout being blocked, of the
// output and the residual are contiguous. Each worker packs its half of
// the weights when pack is set.
type splitTask struct {
	fn                                   func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int)
	x, w, packed, bias, scale, shift, res, y []float32
	cin, cout, taps, scratch             int
	pack                                 bool
	m                                    *Model
}

func (t *splitTask) Run(w, lo, hi int) {
	half := func(v []float32, h int) []float32 {
		if v == nil {
			return nil
		}
		return v[h*len(v)/2 : (h+1)*len(v)/2]
	}
	for h := lo; h < hi; h++ {
		packed := half(t.packed, h)
		switch {
		case !t.pack:
		case t.taps == 9:
			check(PackConv3x3Weights(packed, half(t.w, h), t.cout/2, t.cin))
		default:
			check(PackConv1x1Weights(packed, half(t.w, h), t.cout/2, t.cin))
		}
		t.fn(t.x, packed, half(t.bias, h), t.scale, t.shift, half(t.res, h), half(t.y, h), nil, t.m.ctx.Scratch(w)[:t.scratch], 0, 1)
	}
}

// conv3x3Split runs a 3x3 convolution of one image, cin to cout
// channels, as two halves of cout/2 channels over the workers; packed is
// as for conv3x3.
func (m *Model) conv3x3Split(fn Conv3x3Func, scratch, cin, cout int, x, w, packed, bias, scale, shift, res, y []float32) {
	m.convSplit(fn, scratch, cin, cout, 9, x, w, packed, bias, scale, shift, res, y)
}

// conv1x1Split is conv3x3Split for a 1x1 convolution.
func (m *Model) conv1x1Split(fn Conv1x1Func, scratch, cin, cout int, x, w, packed, bias, scale, shift, res, y []float32) {
	m.convSplit(fn, scratch, cin, cout, 1, x, w, packed, bias, scale, shift, res, y)
}

func (m *Model) convSplit(fn func(x, w, bias, scale, shift, res, y, stats, scratch []float32, n0, n1 int), scratch, cin, cout, taps int, x, w, packed, bias, scale, shift, res, y []float32) {
	t := &m.k.split
	t.fn, t.x, t.w, t.bias, t.scale, t.shift, t.res, t.y, t.scratch, t.m = fn, x, w, bias, scale, shift, res, y, scratch, m
	t.pack = packed == nil || m.refold
	if packed == nil {
		packed = m.k.packed[:cout*cin*taps]
	}
	t.packed, t.cin, t.cout, t.taps = packed, cin, cout, taps
	m.ctx.Parallel(t, 2)
}

type dxTask struct {
	fn            func(dy, w, dx, scratch []float32, n0, n1 int)
	dy, w, dx     []float32
	scratch       int
	m             *Model
}

func (t *dxTask) Run(w, lo, hi int) {
	t.fn(t.dy, t.w, t.dx, t.m.ctx.Scratch(w)[:t.scratch], lo, hi)
}

// conv3x3Dx runs a specialized 3x3 backward-data convolution.
func (m *Model) conv3x3Dx(fn Conv3x3DxFunc, scratch, n, cin, cout int, dx, dy, w []float32) {
	t := &m.k.dx
	t.w = m.k.packed[:cout*cin*9]
	check(PackConv3x3DxWeights(t.w, w, cout, cin))
	t.fn, t.dy, t.dx, t.scratch, t.m = fn, dy, dx, scratch, m
	m.ctx.Parallel(t, n)
}

// conv1x1Dx runs a specialized 1x1 backward-data convolution.
func (m *Model) conv1x1Dx(fn Conv1x1DxFunc, scratch, n, cin, cout int, dx, dy, w []float32) {
	t := &m.k.dx
	t.w = m.k.packed[:cout*cin]
	check(PackConv1x1DxWeights(t.w, w, cout, cin))
	t.fn, t.dy, t.dx, t.scratch, t.m = fn, dy, dx, scratch, m
	m.ctx.Parallel(t, n)
}

// bwdKernels are the specialized kernels of one convolution's backward
// that convBwd runs image by image: the weight gradient's (dw3 or dw1, or
// neither) and the input gradient's, and the scratch they share.
type bwdKernels struct {
	dw3     Conv3x3DwFunc
	dw1     Conv1x1DwFunc
	dx      func(dy, w, dx, scratch []float32, n0, n1 int)
	taps    int // 9 for 3x3 weights, 1 for 1x1
	scratch int
	// A Winograd kernel of one image computes the input gradient instead
	// of dx when wdx is set, on the weights pack writes (packLen floats).
	wdx     Conv3x3Func
	pack    func(dst, src []float32, cout, cin int) error
	packLen int
}

// bwdTask runs convBwd's stages on each image of its range in turn, so
// that what one stage writes is in cache when the next reads it.
type bwdTask struct {
	bwdArgs
	k                      bwdKernels
	packed                 []float32 // w packed for the dx kernel
	count, dyImage, xImage int
	yAct, xAct             nn.Act // one image of dy and of dx
	m                      *Model
}

// bwdArgs are the tensors of convBwd, named as the arguments of the ops
// it stands for; the absent ones are nil.
type bwdArgs struct {
	w, dw                                     []float32 // the weights and their gradient
	dy, dmean, dvar, y, mean, yacc            []float32 // bnstats_grad's (dy: its result)
	x, scale, shift                           []float32 // the dw op's input and prologue
	da                                        []float32 // conv2d_dx's result
	dz, dscale, dshift, gx, gscale, gshift, gacc []float32 // affine_relu_grad's
}

func (t *bwdTask) Run(w, lo, hi int) {
	k := &t.m.k
	scratch := t.m.ctx.Scratch(w)[:t.k.scratch]
	at := func(v []float32, n, size int) []float32 {
		if v == nil {
			return nil
		}
		return v[n*size : (n+1)*size]
	}
	for n := lo; n < hi; n++ {
		// The kernels compute image 0 of views that start at image n.
		dy := at(t.dy, n, t.dyImage)
		if t.dmean != nil {
			if dy == nil {
				dy = k.dyImage[w][:t.dyImage]
			}
			nn.BNStatsGradPart(dy, t.dmean, t.dvar, at(t.y, n, t.dyImage), t.mean, at(t.yacc, n, t.dyImage), t.yAct, t.count)
		}
		if t.k.dw3 != nil {
			t.k.dw3(at(t.x, n, t.xImage), dy, t.scale, t.shift, k.dwView[w], scratch, 0, 1)
		}
		if t.k.dw1 != nil {
			t.k.dw1(dy, at(t.x, n, t.xImage), t.scale, t.shift, k.dwView[w], scratch, 0, 1)
		}
		da := at(t.da, n, t.xImage)
		if t.dz != nil {
			da = k.daImage[w][:t.xImage]
		}
		if t.k.wdx != nil {
			t.k.wdx(dy, t.packed, nil, nil, nil, nil, da, nil, scratch, 0, 1)
		} else {
			t.k.dx(dy, t.packed, da, scratch, 0, 1)
		}
		if t.dz == nil {
			continue
		}
		nn.AffineReLUGradPart(at(t.dz, n, t.xImage), da, at(t.gx, n, t.xImage), t.gscale, t.gshift, at(t.gacc, n, t.xImage),
			k.parts[w][:2*t.xAct.C], t.xAct)
	}
}

// convBwd runs the backward of one convolution of n images, cin to
// cout channels, weights a.w, image by image over the workers, as the
// ops it stands for would run one after the other over the batch:
//   - when a.dmean is not nil, bnstats_grad: dy from dmean, dvar, the
//     convolution's output y, mean and yacc (nn.BNStatsGradPart), into
//     a.dy, or, when that is nil, into a worker's buffer of one image;
//   - when a dw kernel is set, conv2d_dw(_fused): a.dw from dy and the
//     input a.x (a.scale and a.shift its prologue's), each worker summing
//     its images into its own partial, the partials added in worker order;
//   - conv2d_dx: the input gradient, into a.da, or, when a.dz is not nil,
//     into a worker's buffer of one image that affine_relu_grad takes
//     (nn.AffineReLUGradPart with gx, gscale, gshift and gacc) into dz,
//     dscale and dshift, the per-channel sums added in worker order.
func (m *Model) convBwd(k bwdKernels, n, cin, cout int, a bwdArgs) {
	t := &m.k.bwd
	size := cout * cin * k.taps
	t.packed = m.k.packed[:size]
	switch {
	case k.pack != nil:
		t.packed = m.k.packed[:k.packLen]
		check(k.pack(t.packed, a.w, cout, cin))
	case k.taps == 9:
		check(PackConv3x3DxWeights(t.packed, a.w, cout, cin))
	default:
		check(PackConv1x1DxWeights(t.packed, a.w, cout, cin))
	}
	hasDw := k.dw3 != nil || k.dw1 != nil
	if hasDw {
		for w := range m.k.dwView {
			m.k.dwView[w] = m.k.dwParts[w][:size]
			clear(m.k.dwView[w])
		}
	}
	t.bwdArgs, t.k, t.m = a, k, m
	if a.dmean != nil {
		t.dyImage = len(a.y) / n
	} else {
		t.dyImage = len(a.dy) / n
	}
	if a.dz != nil {
		t.xImage = len(a.dz) / n
	} else {
		t.xImage = len(a.da) / n
	}
	t.count = n * t.dyImage / cout
	t.yAct = nn.Act{N: 1, C: cout, H: 1, W: t.dyImage / cout, Blocked: true}
	t.xAct = nn.Act{N: 1, C: cin, H: 1, W: t.xImage / cin, Blocked: true}
	if a.dz != nil {
		for _, p := range m.k.parts {
			clear(p[:2*cin])
		}
	}
	// The per-channel vectors are read from copies: the memory plan may
	// give their storage, free after the op that reads them last when the
	// ops run apart, to an image the workers write.
	vec := func(i int, v []float32) []float32 {
		if v == nil {
			return nil
		}
		c := m.k.vecs[i*vecLen : i*vecLen+len(v)]
		copy(c, v)
		return c
	}
	t.dmean, t.dvar, t.mean = vec(0, a.dmean), vec(1, a.dvar), vec(2, a.mean)
	t.scale, t.shift, t.gscale, t.gshift = vec(3, a.scale), vec(4, a.shift), vec(5, a.gscale), vec(6, a.gshift)
	m.ctx.Parallel(t, n)
	if hasDw {
		packed := m.k.packed[:size]
		if k.taps == 9 {
			check(SumConv3x3Dw(packed, m.k.dwView, cout, cin))
			check(UnpackConv3x3Weights(a.dw, packed, cout, cin))
		} else {
			for i := range packed {
				var s float64
				for _, p := range m.k.dwView {
					s += float64(p[i])
				}
				packed[i] = float32(s)
			}
			check(UnpackConv1x1Weights(a.dw, packed, cout, cin))
		}
	}
	if a.dz != nil {
		for ch := range cin {
			var s, b float64
			for _, p := range m.k.parts {
				s += p[ch]
				b += p[cin+ch]
			}
			a.dscale[ch], a.dshift[ch] = float32(s), float32(b)
		}
	}
}

type dwTask struct {
	fn                   Conv3x3DwFunc
	fn1                  Conv1x1DwFunc
	x, dy, scale, shift  []float32
	scratch              int
	m                    *Model
}

func (t *dwTask) Run(w, lo, hi int) {
	if t.fn1 != nil {
		t.fn1(t.dy, t.x, t.scale, t.shift, t.m.k.dwView[w], t.m.ctx.Scratch(w)[:t.scratch], lo, hi)
		return
	}
	t.fn(t.x, t.dy, t.scale, t.shift, t.m.k.dwView[w], t.m.ctx.Scratch(w)[:t.scratch], lo, hi)
}

// conv3x3Dw runs a specialized 3x3 backward-weights convolution: each
// worker sums its images into its own partial, and the partials are
// added in worker order.
func (m *Model) conv3x3Dw(fn Conv3x3DwFunc, scratch, n, cin, cout int, dw, dy, x, scale, shift []float32) {
	size := cout * cin * 9
	for w := range m.k.dwView {
		m.k.dwView[w] = m.k.dwParts[w][:size]
		clear(m.k.dwView[w])
	}
	t := &m.k.dw
	t.fn, t.fn1, t.x, t.dy, t.scale, t.shift, t.scratch, t.m = fn, nil, x, dy, scale, shift, scratch, m
	m.ctx.Parallel(t, n)
	packed := m.k.packed[:size]
	check(SumConv3x3Dw(packed, m.k.dwView, cout, cin))
	check(UnpackConv3x3Weights(dw, packed, cout, cin))
}

// dwPadTask runs a 3x3 backward-weights kernel of one image of 8 input
// channels on each image of an input with fewer channels, in the plain
// layout: the image is copied into the worker's blocked buffer, whose
// other channels stay zero, as padTask does, and the kernel adds the
// image's gradient to the worker's partial.
type dwPadTask struct {
	fn                      Conv3x3DwFunc
	x, dy                   []float32
	cin, hw, dyLen, scratch int
	m                       *Model
}

func (t *dwPadTask) Run(w, lo, hi int) {
	xb := t.m.k.padImage[w][:8*t.hw]
	for i := lo; i < hi; i++ {
		blockImage(xb, t.x, i, t.cin, t.hw)
		t.fn(xb, t.dy[i*t.dyLen:(i+1)*t.dyLen], nil, nil, t.m.k.dwView[w], t.m.ctx.Scratch(w)[:t.scratch], 0, 1)
	}
}

// conv3x3DwPad runs the backward-weights convolution of conv3x3Pad's: the
// workers' partials of the gradient padded to 8 input channels are added
// in worker order, and dw gets its cin channels.
func (m *Model) conv3x3DwPad(fn Conv3x3DwFunc, scratch, n, cin, cout int, dw, dy, x, scale, shift []float32) {
	size := cout * 8 * 9
	for w := range m.k.dwView {
		m.k.dwView[w] = m.k.dwParts[w][:size]
		clear(m.k.dwView[w])
	}
	t := &m.k.dwPad
	t.fn, t.x, t.dy, t.scratch, t.m = fn, x, dy, scratch, m
	t.cin, t.hw, t.dyLen = cin, len(x)/(n*cin), len(dy)/n
	m.ctx.Parallel(t, n)
	packed := m.k.packed[:size]
	check(SumConv3x3Dw(packed, m.k.dwView, cout, 8))
	for o := range cout {
		for i := range cin {
			for k := range 9 {
				dw[(o*cin+i)*9+k] = packed[packedIndex(o, i, k, 8)]
			}
		}
	}
}

// conv1x1Dw runs a specialized 1x1 backward-weights convolution: the
// workers' partials, packed like the forward's weights, are added in
// worker order in float64.
func (m *Model) conv1x1Dw(fn Conv1x1DwFunc, scratch, n, cin, cout int, dw, dy, x, scale, shift []float32) {
	size := cout * cin
	for w := range m.k.dwView {
		m.k.dwView[w] = m.k.dwParts[w][:size]
		clear(m.k.dwView[w])
	}
	t := &m.k.dw
	t.fn, t.fn1, t.x, t.dy, t.scale, t.shift, t.scratch, t.m = nil, fn, x, dy, scale, shift, scratch, m
	m.ctx.Parallel(t, n)
	packed := m.k.packed[:size]
	for i := range packed {
		var s float64
		for _, p := range m.k.dwView {
			s += float64(p[i])
		}
		packed[i] = float32(s)
	}
	check(UnpackConv1x1Weights(dw, packed, cout, cin))
}
`

// winogradDriverSource is the driver of the Winograd kernels, in the
// packages that have them.
const winogradDriverSource = `
// winograd3x3 runs a Winograd kernel of n images, cin to cout channels,
// over the workers, and reduces its statistics like conv3x3. packed, when
// not nil, keeps the 36 transformed matrices of the weights w between
// calls of Infer: they are computed only when the weights changed
// (m.refold); when nil (training), into the shared buffer on every call.
func (m *Model) winograd3x3(fn Conv3x3Func, scratch, n, cin, cout int, x, w, packed, bias, scale, shift, res, y, sum, sumsq []float32) {
	if packed == nil || m.refold {
		if packed == nil {
			packed = m.k.packed[:36*cout*cin]
		}
		check(PackWinogradWeights(packed, w, cout, cin))
	}
	m.conv(fn, scratch, n, cout, packed, x, bias, scale, shift, res, y, sum, sumsq)
}
`

// kernelPlan collects the specialized kernels a package's ops use and
// the sizes of the buffers their drivers need.
type kernelPlan struct {
	set                             kernels.Set
	seen                            map[string]bool
	noWinograd                      bool // Options.NoWinograd
	unitChains                      bool // some block runs unitFwd
	packedLen, statsLen, dwPartLen  int
	dyImageLen, daImageLen, partLen int // buffers of convBwd
	vecLen                          int
	scratchLen                      int
	padImageLen                     int // conv3x3Pad's blocked image
}

func newKernelPlan(noWinograd bool) *kernelPlan {
	return &kernelPlan{seen: map[string]bool{}, noWinograd: noWinograd}
}

// winograd returns the Winograd kernel that computes op, when one does:
// a 3x3 convolution of at least two images with stride 1 and pad 1,
// blocked activations and whole channel blocks, in inference or in
// training (with the statistics epilogue). Batches of one image keep the
// direct kernel, whose output channels are split over the workers.
func (k *kernelPlan) winograd(op *ir.Op) (kernels.Winograd, bool) {
	if k.noWinograd || op.Kind != ir.Conv2D && op.Kind != ir.Conv2DFused {
		return kernels.Winograd{}, false
	}
	x, w := op.Args[0], op.Args[1]
	acts := []*ir.Value{x, op.Results[0]}
	f := fusion(op)
	wk := kernels.Winograd{Prologue: f.Prologue, Bias: f.Bias, Residual: f.Residual, ReLU: f.ReLU, Stats: f.Stats}
	if r := residualOf(op); r != nil {
		acts = append(acts, r)
	}
	cout, cin, stride, ok := is3x3(op, w, acts...)
	if !ok || stride != 1 || x.Type.Shape[0] < 2 {
		return kernels.Winograd{}, false
	}
	xs := x.Type.Shape
	wk.N, wk.Cin, wk.Cout, wk.H, wk.W = xs[0], cin, cout, xs[2], xs[3]
	return wk, wk.Validate() == nil
}

// fusion returns the prologue and epilogue flags of a forward
// convolution op (conv2d with or without bias, or conv2d_fused), as a
// Conv3x3 with no shape.
func fusion(op *ir.Op) kernels.Conv3x3 {
	var f kernels.Conv3x3
	if op.Kind == ir.Conv2D {
		f.Bias = len(op.Args) == 3
		return f
	}
	f.Bias, f.Residual, f.ReLU, f.Stats = op.Bool("bias"), op.Bool("residual"), op.Bool("relu"), op.Bool("stats")
	switch op.Str("prologue") {
	case "relu":
		f.Prologue = kernels.PrologueReLU
	case "affine_relu":
		f.Prologue = kernels.PrologueAffineReLU
	}
	return f
}

// winogradDx returns the Winograd kernel of one image that computes the
// stride-1 3x3 conv2d_dx op inside a backward chain (convBwd, one image at
// a time): the forward convolution of dy with the rotated kernel, from
// cout to cin channels. It records the kernel.
func (k *kernelPlan) winogradDx(op *ir.Op) (kernels.Winograd, bool) {
	if k.noWinograd || op.Kind != ir.Conv2DDx {
		return kernels.Winograd{}, false
	}
	dy, w, dx := op.Args[0], op.Args[1], op.Results[0]
	cout, cin, stride, ok := is3x3(op, w, dy, dx)
	if !ok || stride != 1 {
		return kernels.Winograd{}, false
	}
	xs := dx.Type.Shape
	wk := kernels.Winograd{N: 1, Cin: cout, Cout: cin, H: xs[2], W: xs[3]}
	if wk.Validate() != nil {
		return kernels.Winograd{}, false
	}
	k.addWinograd(wk)
	return wk, true
}

// addWinograd records a Winograd kernel, its GEMM and their buffers.
func (k *kernelPlan) addWinograd(c kernels.Winograd) {
	if !k.seen[c.Name()] {
		k.seen[c.Name()] = true
		k.set.Winograds = append(k.set.Winograds, c)
	}
	k.add1x1(c.GEMM())
	k.scratchLen = max(k.scratchLen, c.ScratchLen())
	k.packedLen = max(k.packedLen, c.WLen())
}

// is1x1 reports whether op's weight w is a 1x1 kernel from cin to cout
// channels with pad 0, stride 1 or 2, and whether every activation of
// the op is blocked.
func is1x1(op *ir.Op, w *ir.Value, acts ...*ir.Value) (cout, cin, stride int, ok bool) {
	s := w.Type.Shape
	if len(s) != 4 || s[2] != 1 || s[3] != 1 || s[0]%8 != 0 || s[1]%8 != 0 {
		return 0, 0, 0, false
	}
	if op.Int("pad") != 0 || (op.Int("stride") != 1 && op.Int("stride") != 2) {
		return 0, 0, 0, false
	}
	for _, a := range acts {
		if a.Type.Layout != ir.NCHW8c {
			return 0, 0, 0, false
		}
	}
	return s[0], s[1], op.Int("stride"), true
}

// add1x1 records a 1x1 kernel and its buffers.
func (k *kernelPlan) add1x1(c kernels.Conv1x1) {
	if !k.seen[c.Name()] {
		k.seen[c.Name()] = true
		k.set.Conv1x1s = append(k.set.Conv1x1s, c)
	}
	k.packedLen = max(k.packedLen, c.Cout*c.Cin)
	k.scratchLen = max(k.scratchLen, c.ScratchLen())
}

// add3x3 records a forward 3x3 kernel and its buffers: packed float32s
// of packed weights (the whole convolution's, for a kernel of half of it).
func (k *kernelPlan) add3x3(c kernels.Conv3x3, packed int) {
	if !k.seen[c.Name()] {
		k.seen[c.Name()] = true
		k.set.Convs = append(k.set.Convs, c)
	}
	k.packedLen = max(k.packedLen, packed)
	k.scratchLen = max(k.scratchLen, c.ScratchLen())
}

// is3x3 reports whether op's weight w is a 3x3 kernel from cin to cout
// channels with pad 1, stride 1 or 2, and whether every activation of
// the op is blocked.
func is3x3(op *ir.Op, w *ir.Value, acts ...*ir.Value) (cout, cin, stride int, ok bool) {
	s := w.Type.Shape
	if len(s) != 4 || s[2] != 3 || s[3] != 3 || s[0]%8 != 0 || s[1]%8 != 0 {
		return 0, 0, 0, false
	}
	if op.Int("pad") != 1 || (op.Int("stride") != 1 && op.Int("stride") != 2) {
		return 0, 0, 0, false
	}
	for _, a := range acts {
		if a.Type.Layout != ir.NCHW8c {
			return 0, 0, 0, false
		}
	}
	return s[0], s[1], op.Int("stride"), true
}

// special writes the call of a specialized kernel for c.Op, or returns
// nil when none applies.
func (k *kernelPlan) special(c *OpCall) jen.Code {
	op := c.Op
	nilf := jen.Nil()
	switch op.Kind {
	case ir.Conv2D, ir.Conv2DFused:
		x, w, y := op.Args[0], op.Args[1], op.Results[0]
		acts := []*ir.Value{x, y}
		var bias, scale, shift, res, packed jen.Code = nilf, nilf, nilf, nilf, nilf
		if c.Packed != nil {
			packed = c.Packed
		}
		kc := kernels.Conv3x3{}
		i := 2
		if op.Kind == ir.Conv2D {
			if len(op.Args) == 3 {
				bias, kc.Bias = c.Args[2], true
			}
		} else {
			if op.Bool("bias") {
				bias, kc.Bias = c.Args[i], true
				i++
			}
			switch op.Str("prologue") {
			case "relu":
				kc.Prologue = kernels.PrologueReLU
			case "affine_relu":
				kc.Prologue = kernels.PrologueAffineReLU
				scale, shift = c.Args[i], c.Args[i+1]
				i += 2
			}
			if op.Bool("residual") {
				res, kc.Residual = c.Args[i], true
				acts = append(acts, op.Args[i])
			}
			kc.ReLU, kc.Stats = op.Bool("relu"), op.Bool("stats")
		}
		var sum, sumsq jen.Code = nilf, nilf
		if kc.Stats {
			sum, sumsq = c.Results[1], c.Results[2]
		}
		xs := x.Type.Shape
		if cout, cin, stride, ok := is1x1(op, w, acts...); ok {
			k1 := kernels.Conv1x1{Op: kernels.Conv1x1Fwd, N: xs[0], Cin: cin, Cout: cout, H: xs[2], W: xs[3], Stride: stride,
				Prologue: kc.Prologue, Bias: kc.Bias, Residual: kc.Residual, ReLU: kc.ReLU, Stats: kc.Stats}
			if k1.Validate() != nil {
				return nil
			}
			if h := k1; splits(h.N, cout, h.Stats) {
				h.Cout = cout / 2
				if h.Validate() == nil {
					k.add1x1(h)
					k.packedLen = max(k.packedLen, cout*cin)
					return jen.Id("m").Dot("conv1x1Split").Call(jen.Id(h.Name()), jen.Lit(h.ScratchLen()), jen.Lit(cin), jen.Lit(cout),
						c.Args[0], c.Args[1], packed, bias, scale, shift, res, c.Results[0])
				}
			}
			k.add1x1(k1)
			if kc.Stats {
				k.statsLen = max(k.statsLen, k1.N*2*cout)
			}
			return jen.Id("m").Dot("conv1x1").Call(jen.Id(k1.Name()), jen.Lit(k1.ScratchLen()), jen.Lit(k1.N), jen.Lit(cin), jen.Lit(cout),
				c.Args[0], c.Args[1], packed, bias, scale, shift, res, c.Results[0], sum, sumsq)
		}
		if code := k.padded(op, kc, c, packed, bias, sum, sumsq); code != nil {
			return code
		}
		if wk, ok := k.winograd(op); ok {
			k.addWinograd(wk)
			if wk.Stats {
				k.statsLen = max(k.statsLen, wk.N*2*wk.Cout)
			}
			return jen.Id("m").Dot("winograd3x3").Call(jen.Id(wk.Name()), jen.Lit(wk.ScratchLen()), jen.Lit(wk.N), jen.Lit(wk.Cin), jen.Lit(wk.Cout),
				c.Args[0], c.Args[1], packed, bias, scale, shift, res, c.Results[0], sum, sumsq)
		}
		cout, cin, stride, ok := is3x3(op, w, acts...)
		if !ok {
			return nil
		}
		kc.N, kc.Cin, kc.Cout, kc.H, kc.W, kc.Stride = xs[0], cin, cout, xs[2], xs[3], stride
		if kc.Validate() != nil {
			return nil
		}
		if h := kc; splits(h.N, cout, h.Stats) {
			h.Cout = cout / 2
			if h.Validate() == nil {
				k.add3x3(h, cout*cin*9)
				return jen.Id("m").Dot("conv3x3Split").Call(jen.Id(h.Name()), jen.Lit(h.ScratchLen()), jen.Lit(cin), jen.Lit(cout),
					c.Args[0], c.Args[1], packed, bias, scale, shift, res, c.Results[0])
			}
		}
		if kc.Stats {
			k.statsLen = max(k.statsLen, kc.N*2*cout)
		}
		k.add3x3(kc, cout*cin*9)
		return jen.Id("m").Dot("conv3x3").Call(jen.Id(kc.Name()), jen.Lit(kc.ScratchLen()), jen.Lit(kc.N), jen.Lit(cin), jen.Lit(cout),
			c.Args[0], c.Args[1], packed, bias, scale, shift, res, c.Results[0], sum, sumsq)
	case ir.Conv2DDx:
		d, ok := k.dxKernel(op)
		if !ok {
			return nil
		}
		return jen.Id("m").Dot(d.driver).Call(jen.Id(d.name), jen.Lit(d.scratch), jen.Lit(d.n), jen.Lit(d.cin), jen.Lit(d.cout),
			c.Results[0], c.Args[0], c.Args[1])
	case ir.Conv2DDw, ir.Conv2DDwFused:
		d, ok := k.dwKernel(op)
		if !ok {
			return nil
		}
		var scale, shift jen.Code = nilf, nilf
		if op.Kind == ir.Conv2DDwFused && op.Str("prologue") == "affine_relu" {
			scale, shift = c.Args[2], c.Args[3]
		}
		return jen.Id("m").Dot(d.driver).Call(jen.Id(d.name), jen.Lit(d.scratch), jen.Lit(d.n), jen.Lit(d.cin), jen.Lit(d.cout),
			c.Results[0], c.Args[0], c.Args[1], scale, shift)
	}
	return nil
}

// padded writes the call of conv3x3Pad for a 3x3 convolution whose input
// has fewer than 8 channels, in the plain layout (the stem of a CIFAR
// net), to blocked output channels, or returns nil: each image is copied
// into 8 blocked channels, the missing ones zero, and convolved by the
// kernel of one image of 8 input channels, with the weights padded to
// match.
func (k *kernelPlan) padded(op *ir.Op, kc kernels.Conv3x3, c *OpCall, packed, bias, sum, sumsq jen.Code) jen.Code {
	x, w, y := op.Args[0], op.Args[1], op.Results[0]
	s, xs := w.Type.Shape, x.Type.Shape
	if len(s) != 4 || s[2] != 3 || s[3] != 3 || s[1] >= 8 || s[0]%8 != 0 || len(xs) != 4 ||
		x.Type.Layout != ir.NCHW || y.Type.Layout != ir.NCHW8c || kc.Prologue != kernels.PrologueNone || kc.Residual ||
		op.Int("pad") != 1 || (op.Int("stride") != 1 && op.Int("stride") != 2) {
		return nil
	}
	cout, cin := s[0], s[1]
	kc.N, kc.Cin, kc.Cout, kc.H, kc.W, kc.Stride = 1, 8, cout, xs[2], xs[3], op.Int("stride")
	if kc.Validate() != nil {
		return nil
	}
	k.add3x3(kc, cout*8*9)
	k.padImageLen = max(k.padImageLen, 8*xs[2]*xs[3])
	if kc.Stats {
		k.statsLen = max(k.statsLen, xs[0]*2*cout)
	}
	return jen.Id("m").Dot("conv3x3Pad").Call(jen.Id(kc.Name()), jen.Lit(kc.ScratchLen()), jen.Lit(xs[0]), jen.Lit(cin), jen.Lit(cout),
		c.Args[0], c.Args[1], packed, bias, c.Results[0], sum, sumsq)
}

// splits reports whether a forward convolution of a batch of n images to
// cout channels runs as two halves of its output channels, each on a
// worker, with a kernel specialized to cout/2 (conv1x1Split,
// conv3x3Split): for a single image, where splitting the batch leaves a
// core idle. The statistics epilogue of training is not split.
func splits(n, cout int, stats bool) bool {
	return n == 1 && cout%16 == 0 && !stats
}

// dwKernel adds the specialized kernel of the conv2d_dw or
// conv2d_dw_fused op to the plan, if one applies; its driver is
// "conv1x1Dw" or "conv3x3Dw".
func (k *kernelPlan) dwKernel(op *ir.Op) (dxCall, bool) {
	dy, x, dw := op.Args[0], op.Args[1], op.Results[0]
	prologue := kernels.PrologueNone
	if op.Kind == ir.Conv2DDwFused {
		switch op.Str("prologue") {
		case "relu":
			prologue = kernels.PrologueReLU
		case "affine_relu":
			prologue = kernels.PrologueAffineReLU
		}
	}
	xs := x.Type.Shape
	if op.Int("kernel") == 1 {
		cout, cin, stride, ok := is1x1(op, dw, dy, x)
		if !ok {
			return dxCall{}, false
		}
		k1 := kernels.Conv1x1{Op: kernels.Conv1x1Dw, N: xs[0], Cin: cin, Cout: cout, H: xs[2], W: xs[3], Stride: stride, Prologue: prologue}
		if k1.Validate() != nil {
			return dxCall{}, false
		}
		k.add1x1(k1)
		k.dwPartLen = max(k.dwPartLen, cout*cin)
		return dxCall{"conv1x1Dw", k1.Name(), k1.ScratchLen(), k1.N, cin, cout}, true
	}
	if op.Int("kernel") != 3 {
		return dxCall{}, false
	}
	if d, ok := k.dwPadded(op, prologue); ok {
		return d, true
	}
	cout, cin, stride, ok := is3x3(op, dw, dy, x)
	if !ok {
		return dxCall{}, false
	}
	kw := kernels.Conv3x3Dw{N: xs[0], Cin: cin, Cout: cout, H: xs[2], W: xs[3], Stride: stride, Prologue: prologue}
	if kw.Validate() != nil {
		return dxCall{}, false
	}
	k.addDw(kw, cout*cin*9)
	return dxCall{"conv3x3Dw", kw.Name(), kw.ScratchLen(), kw.N, cin, cout}, true
}

// dwPadded adds the kernel of conv3x3DwPad for the backward-weights
// convolution of a 3x3 convolution that conv3x3Pad runs forward (fewer
// than 8 input channels in the plain layout, the stem of a CIFAR net), if
// op is one: the kernel of one image of 8 input channels, on each image
// copied into 8 blocked channels.
func (k *kernelPlan) dwPadded(op *ir.Op, prologue kernels.Prologue) (dxCall, bool) {
	dy, x, dw := op.Args[0], op.Args[1], op.Results[0]
	s, xs := dw.Type.Shape, x.Type.Shape
	if len(s) != 4 || s[2] != 3 || s[3] != 3 || s[1] >= 8 || s[0]%8 != 0 || len(xs) != 4 ||
		x.Type.Layout != ir.NCHW || dy.Type.Layout != ir.NCHW8c || prologue != kernels.PrologueNone ||
		op.Int("pad") != 1 || (op.Int("stride") != 1 && op.Int("stride") != 2) {
		return dxCall{}, false
	}
	cout, cin := s[0], s[1]
	kw := kernels.Conv3x3Dw{N: 1, Cin: 8, Cout: cout, H: xs[2], W: xs[3], Stride: op.Int("stride")}
	if kw.Validate() != nil {
		return dxCall{}, false
	}
	k.addDw(kw, cout*8*9)
	k.padImageLen = max(k.padImageLen, 8*xs[2]*xs[3])
	return dxCall{"conv3x3DwPad", kw.Name(), kw.ScratchLen(), xs[0], cin, cout}, true
}

// addDw records a 3x3 backward-weights kernel and the buffers its driver
// needs: a gradient of size floats, packed and in each worker's partial.
func (k *kernelPlan) addDw(kw kernels.Conv3x3Dw, size int) {
	if !k.seen[kw.Name()] {
		k.seen[kw.Name()] = true
		k.set.Dws = append(k.set.Dws, kw)
	}
	k.packedLen = max(k.packedLen, size)
	k.dwPartLen = max(k.dwPartLen, size)
	k.scratchLen = max(k.scratchLen, kw.ScratchLen())
}

// dxCall is a specialized backward kernel and its driver's constant
// arguments.
type dxCall struct {
	driver, name          string // "conv1x1Dx", "conv3x3Dw", ...; the kernel
	scratch, n, cin, cout int
}

// dxKernel adds the specialized kernel of the conv2d_dx op to the plan,
// if one applies.
func (k *kernelPlan) dxKernel(op *ir.Op) (dxCall, bool) {
	dy, w, dx := op.Args[0], op.Args[1], op.Results[0]
	xs := dx.Type.Shape
	if cout, cin, stride, ok := is1x1(op, w, dy, dx); ok {
		k1 := kernels.Conv1x1{Op: kernels.Conv1x1Dx, N: xs[0], Cin: cin, Cout: cout, H: xs[2], W: xs[3], Stride: stride}
		if k1.Validate() != nil {
			return dxCall{}, false
		}
		k.add1x1(k1)
		return dxCall{"conv1x1Dx", k1.Name(), k1.ScratchLen(), k1.N, cin, cout}, true
	}
	cout, cin, stride, ok := is3x3(op, w, dy, dx)
	if !ok {
		return dxCall{}, false
	}
	kd := kernels.Conv3x3Dx{N: xs[0], Cin: cin, Cout: cout, H: xs[2], W: xs[3], Stride: stride}
	if kd.Validate() != nil {
		return dxCall{}, false
	}
	if !k.seen[kd.Name()] {
		k.seen[kd.Name()] = true
		k.set.Dxs = append(k.set.Dxs, kd)
	}
	k.packedLen = max(k.packedLen, cout*cin*9)
	k.scratchLen = max(k.scratchLen, kd.ScratchLen())
	return dxCall{"conv3x3Dx", kd.Name(), kd.ScratchLen(), kd.N, cin, cout}, true
}

// driverFile returns the drivers' source for package pkg, with the
// buffer sizes of k.
func (k *kernelPlan) driverFile(pkg string) []byte {
	src := strings.Replace(driversSource, "package PKG", header+"\n\npackage "+pkg, 1)
	if len(k.set.Winograds) > 0 {
		src += winogradDriverSource
	}
	if k.unitChains {
		src = strings.Replace(src, "\tdwPad   dwPadTask\n", "\tdwPad   dwPadTask\n\tunit    unitTask\n", 1)
		src += unitDriverSource
	}
	src += fmt.Sprintf("\n// Sizes of the kernels' buffers, in float32s (partLen in float64s).\nconst (\n\tpackedLen = %d\n\tstatsLen = %d\n\tdwPartLen = %d\n\tdyImageLen = %d\n\tdaImageLen = %d\n\tpartLen = %d\n\tvecLen = %d\n\tpadImageLen = %d\n)\n",
		max(k.packedLen, 1), max(k.statsLen, 1), max(k.dwPartLen, 1), max(k.dyImageLen, 1), max(k.daImageLen, 1), max(k.partLen, 1), max(k.vecLen, 1), max(k.padImageLen, 1))
	return []byte(src)
}

package nn

import (
	"fmt"
	"math"
)

// opTask is the reusable Task of every kernel in this file and in
// channel.go, dense.go, pool.go and optim.go: a kernel fills it and runs
// fn over [0, n) with spread. Each kernel keeps its own in the Ctx (under
// its opKey), so that a call allocates nothing: a Task made per call
// would escape to the workers. Field meanings are each kernel's; its
// range function names them on its first line.
type opTask struct {
	fn      func(t *opTask, w, lo, hi int)
	c       *Ctx
	a, b, d Act          // shapes
	y       [5][]float32 // results, in the op's order
	x       [5][]float32 // arguments, in the op's order
	lab     []int32
	f       [3]float64 // float attributes
	k       [3]int     // int attributes
	u       uint64
}

// Run implements Task.
func (t *opTask) Run(w, lo, hi int) { t.fn(t, w, lo, hi) }

// opKey names a kernel's opTask in its Ctx. It is a small integer so
// that using it as a map key of type any allocates nothing.
type opKey uint8

const (
	keyReLU opKey = iota + 1
	keySigmoid
	keyAdd
	keyMul
	keyScale
	keyDropout
	keyReLUGrad
	keySigmoidGrad
	keyBNStats
	keyBNNorm
	keyBNNormGrad
	keyBNStatsGrad
	keyBNStatsGradAdd
	keyChanSum
	keyAffineReLU
	keyAffineReLUGrad
	keyAffineReLUGradAdd
	keyStatsGrad
	keyRelayout
	keyBNFold
	keySGD
	keyGAP
	keyGAPGrad
	keyLinear
	keyLinearDx
	keyLinearDw
	keySoftmaxCE
	keySoftmaxCEGrad
	keySubsamplePad
	keySubsamplePadGrad
	keyMaxPool
	keyMaxPoolGrad
)

func newOpTask() any { return new(opTask) }

// opTaskFor returns c's task for kernel k, reset, with fn set.
func (c *Ctx) opTaskFor(k opKey, fn func(t *opTask, w, lo, hi int)) *opTask {
	t := c.local(k, newOpTask).(*opTask)
	*t = opTask{fn: fn, c: c}
	return t
}

// parMin is the work (elements touched) below which a kernel runs on the
// calling goroutine: waking the workers would cost more than it saves.
// The choice depends on the shape only, so results stay deterministic.
const parMin = 1 << 14

// spread runs t over [0, n): on the calling goroutine as worker 0 when
// work is small, otherwise split over the workers by c.Parallel.
func (t *opTask) spread(n, work int) {
	if n <= 0 {
		return
	}
	if work < parMin || t.c.threads == 1 {
		t.fn(t, 0, 0, n)
		return
	}
	t.c.Parallel(t, n)
}

// clearWide zeroes the first m float64s of every worker's Wide scratch,
// where a reduction accumulates its partial results.
func (c *Ctx) clearWide(kernel string, m int) {
	for w := range c.threads {
		if len(c.wide[w]) < m {
			panic(fmt.Sprintf("BUG: nn.%s: worker %d has %d float64s of wide scratch, want %d", kernel, w, len(c.wide[w]), m))
		}
		clear(c.wide[w][:m])
	}
}

// sumWide adds every worker's first m wide partials into worker 0's, in
// worker order, and returns them: the same additions in the same order
// on every run with the same thread count.
func (c *Ctx) sumWide(m int) []float64 {
	total := c.wide[0][:m]
	for w := 1; w < c.threads; w++ {
		for i, v := range c.wide[w][:m] {
			total[i] += v
		}
	}
	return total
}

// mustLen panics when s does not have n elements: generated code passes
// compiler-checked shapes, so a mismatch is a bug.
func mustLen(kernel, what string, s []float32, n int) {
	if len(s) != n {
		panic(fmt.Sprintf("BUG: nn.%s: %s has %d elements, want %d", kernel, what, len(s), n))
	}
}

// mustAct panics when a is not a valid shape.
func mustAct(kernel string, a Act) {
	if a.N < 0 || a.C < 0 || a.H < 0 || a.W < 0 || (a.Blocked && a.C%8 != 0) {
		panic(fmt.Sprintf("BUG: nn.%s: invalid shape %+v", kernel, a))
	}
}

// rows is an activation seen as rows that each hold one image's pixels of
// one channel (plain) or of one block of 8 channels (blocked), so that
// per-channel kernels find the channels of a row once and loop over its
// pixels with the lanes innermost.
type rows struct {
	count  int // number of rows
	groups int // rows per image
	lanes  int // channels per row: 1 or 8
	pix    int // pixels per row: H*W
	size   int // elements per row: pix*lanes
}

func rowsOf(a Act) rows {
	r := rows{count: a.N * a.C, groups: a.C, lanes: 1, pix: a.H * a.W}
	if a.Blocked {
		r.count, r.groups, r.lanes = a.N*a.C/8, a.C/8, 8
	}
	r.size = r.pix * r.lanes
	return r
}

// first is the first channel of row u.
func (r rows) first(u int) int { return u % r.groups * r.lanes }

// lanesOf returns the row kernels' per-lane constants (see simd.go) for
// a row whose first channel is ch0, from the per-channel vector v.
func (r rows) lanesOf(v []float32, ch0 int) (k [8]float32) {
	if r.lanes == 8 {
		return [8]float32(v[ch0 : ch0+8])
	}
	for l := range k {
		k[l] = v[ch0]
	}
	return k
}

// spreadLanes copies lane 0 of k into every lane when the row has one
// channel, so that k holds a row kernel's constants either way.
func (r rows) spreadLanes(k *[8]float32) {
	if r.lanes == 1 {
		for l := range k {
			k[l] = k[0]
		}
	}
}

// fold adds the per-lane sums of a row kernel (8 float64s) into the
// per-channel partials part, indexed from the row's first channel.
func (r rows) fold(part, sums []float64) {
	if r.lanes == 8 {
		part = part[:8]
		for l, v := range sums[:8] {
			part[l] += v
		}
		return
	}
	s := 0.0
	for _, v := range sums[:8] {
		s += v
	}
	part[0] += s
}

// ReLU sets y = max(x, 0), keeping NaN (as the interpreter does, so that
// a diverged step shows). y may be x.
func ReLU(c *Ctx, y, x []float32, a Act) {
	n := unaryCheck("ReLU", y, x, a)
	c.opTaskFor(keyReLU, reluRange).setUnary(y, x).spread(n, n)
}

func reluRange(t *opTask, _, lo, hi int) {
	reluVec(t.y[0][lo:hi], t.x[0][lo:hi])
}

// Sigmoid sets y = 1/(1+exp(-x)), computed in float64 without overflow.
// y may be x.
func Sigmoid(c *Ctx, y, x []float32, a Act) {
	n := unaryCheck("Sigmoid", y, x, a)
	c.opTaskFor(keySigmoid, sigmoidRange).setUnary(y, x).spread(n, 8*n)
}

func sigmoidRange(t *opTask, _, lo, hi int) {
	y, x := t.y[0][lo:hi], t.x[0][lo:hi]
	y = y[:len(x)]
	for i, v := range x {
		y[i] = float32(sigmoid64(float64(v)))
	}
}

func sigmoid64(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// Add sets z = x + y. z may be x or y.
func Add(c *Ctx, z, x, y []float32, a Act) {
	n := binaryCheck("Add", z, x, y, a)
	c.opTaskFor(keyAdd, addRange).setBinary(z, x, y).spread(n, n)
}

func addRange(t *opTask, _, lo, hi int) {
	addVec(t.y[0][lo:hi], t.x[0][lo:hi], t.x[1][lo:hi])
}

// Mul sets z = x * y elementwise. z may be x or y.
func Mul(c *Ctx, z, x, y []float32, a Act) {
	n := binaryCheck("Mul", z, x, y, a)
	c.opTaskFor(keyMul, mulRange).setBinary(z, x, y).spread(n, n)
}

func mulRange(t *opTask, _, lo, hi int) {
	mulVec(t.y[0][lo:hi], t.x[0][lo:hi], t.x[1][lo:hi])
}

// Scale sets y = factor*x + offset, in float64. y may be x.
func Scale(c *Ctx, y, x []float32, a Act, factor, offset float64) {
	n := unaryCheck("Scale", y, x, a)
	t := c.opTaskFor(keyScale, scaleRange).setUnary(y, x)
	t.f[0], t.f[1] = factor, offset
	t.spread(n, n)
}

func scaleRange(t *opTask, _, lo, hi int) {
	y, x := t.y[0][lo:hi], t.x[0][lo:hi]
	f, o := t.f[0], t.f[1]
	y = y[:len(x)]
	for i, v := range x {
		y[i] = float32(f*float64(v) + o)
	}
}

// ReLUGrad sets dx = dy where y > 0, else 0 (y being the ReLU's output).
// dx may be dy or y.
func ReLUGrad(c *Ctx, dx, dy, y []float32, a Act) {
	n := binaryCheck("ReLUGrad", dx, dy, y, a)
	c.opTaskFor(keyReLUGrad, reluGradRange).setBinary(dx, dy, y).spread(n, n)
}

func reluGradRange(t *opTask, _, lo, hi int) {
	reluGradVec(t.y[0][lo:hi], t.x[0][lo:hi], t.x[1][lo:hi])
}

// SigmoidGrad sets dx = dy*y*(1-y) (y being the sigmoid's output), in
// float64. dx may be dy or y.
func SigmoidGrad(c *Ctx, dx, dy, y []float32, a Act) {
	n := binaryCheck("SigmoidGrad", dx, dy, y, a)
	c.opTaskFor(keySigmoidGrad, sigmoidGradRange).setBinary(dx, dy, y).spread(n, n)
}

func sigmoidGradRange(t *opTask, _, lo, hi int) {
	dx, dy, y := t.y[0][lo:hi], t.x[0][lo:hi], t.x[1][lo:hi]
	dx, y = dx[:len(dy)], y[:len(dy)]
	for i, g := range dy {
		s := float64(y[i])
		dx[i] = float32(float64(g) * s * (1 - s))
	}
}

// Dropout sets mask to 1/(1-rate) or 0 and y = x*mask, exactly as the
// interpreter: element i (its index in logical NCHW order, whatever the
// layout) is kept when u_i >= rate, where u_i is the top 53 bits of
// splitmix64(seed*0x9E3779B97F4A7C15 + step*0xBF58476D1CE4E5B9 + i) as
// a fraction. The mask is thus a pure function of (seed, step, i), the
// same on every run, layout and thread count.
func Dropout(c *Ctx, y, mask, x []float32, step int64, a Act, rate float64, seed int64) {
	mustAct("Dropout", a)
	n := a.Len()
	mustLen("Dropout", "y", y, n)
	mustLen("Dropout", "mask", mask, n)
	mustLen("Dropout", "x", x, n)
	t := c.opTaskFor(keyDropout, dropoutRange)
	t.a = a
	t.y[0], t.y[1], t.x[0] = y, mask, x
	t.f[0], t.f[1] = rate, 1/(1-rate)
	t.u = uint64(seed)*dropoutGolden + uint64(step)*0xBF58476D1CE4E5B9
	r := rowsOf(a)
	t.spread(r.count, 4*n)
}

func dropoutRange(t *opTask, _, lo, hi int) {
	y, mask, x := t.y[0], t.y[1], t.x[0]
	rate, keep, base := t.f[0], t.f[1], t.u
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		img, ch0 := u/r.groups, r.first(u)
		i := u * r.size
		for s := range r.pix {
			for l := range r.lanes {
				li := (img*t.a.C+ch0+l)*r.pix + s
				m := 0.0
				if float64(dropoutHash(base+uint64(li))>>11)/(1<<53) >= rate {
					m = keep
				}
				v := float64(x[i])
				mask[i] = float32(m)
				y[i] = float32(v * m)
				i++
			}
		}
	}
}

// dropoutGolden is 2^64 divided by the golden ratio, splitmix64's
// increment.
const dropoutGolden = 0x9E3779B97F4A7C15

// dropoutHash is the splitmix64 finalizer applied to x+dropoutGolden.
func dropoutHash(x uint64) uint64 {
	z := x + dropoutGolden
	z ^= z >> 30
	z *= 0xBF58476D1CE4E5B9
	z ^= z >> 27
	z *= 0x94D049BB133111EB
	z ^= z >> 31
	return z
}

func (t *opTask) setUnary(y, x []float32) *opTask {
	t.y[0], t.x[0] = y, x
	return t
}

func (t *opTask) setBinary(z, x, y []float32) *opTask {
	t.y[0], t.x[0], t.x[1] = z, x, y
	return t
}

func unaryCheck(kernel string, y, x []float32, a Act) int {
	mustAct(kernel, a)
	n := a.Len()
	mustLen(kernel, "result", y, n)
	mustLen(kernel, "argument", x, n)
	return n
}

func binaryCheck(kernel string, z, x, y []float32, a Act) int {
	n := unaryCheck(kernel, z, x, a)
	mustLen(kernel, "second argument", y, n)
	return n
}

package nn

import (
	"math"
	"os"

	"golang.org/x/sys/cpu"
)

// The streaming loops of the elementwise, BatchNorm and SGD kernels. Each
// has an AVX2+FMA form (simd_amd64.s, written by codegen/internal/nnasm,
// see gen.go) and a pure-Go twin here; the function without a suffix
// chooses. The twins compute in float64 as the interpreter does and are
// the reference the assembly is tested against. The assembly computes in
// float32 with fused multiply-adds and sums per lane in float32 over
// chunks of 512 elements, each chunk then added in float64: results agree
// with the twins to a few units in the last place of their terms, and
// add, mul, relu, its gradient and the dx of affineReLUGradRow and
// bnNormGradRow to the bit. simd_test.go checks both.
//
// The row kernels take one constant per lane and element i of a run uses
// lane i%8: a run of pixels of one 8-channel block (NCHW8c) then has one
// channel per lane, and a run of one channel (NCHW) has its constant
// broadcast to every lane. Their sums are per lane too. Every kernel
// reads element i of its arguments before it writes element i of its
// results, so a result may share storage with an argument.

// useAsm is true when the kernels run their assembly: the build has it
// (amd64 && !purego), the CPU has AVX2 and FMA, and RESNETC_PUREGO=1,
// which forces the pure-Go twins, is not set.
var useAsm = haveAsm && cpu.X86.HasAVX2 && cpu.X86.HasFMA && os.Getenv("RESNETC_PUREGO") != "1"

// UsesAsm reports whether the kernels run their assembly (true) or their
// pure-Go twins.
func UsesAsm() bool { return useAsm }

// The dispatchers test the constant haveAsm first, so that builds without
// the assembly compile the branch away and the twins' arguments stay on
// the stack.

// addVec sets z = x + y over len(x) elements.
func addVec(z, x, y []float32) {
	z, y = z[:len(x)], y[:len(x)]
	if haveAsm && useAsm {
		addAVX2(z, x, y)
		return
	}
	addGo(z, x, y)
}

// addGo adds in float32, which rounds exactly as the float64 sum rounded
// to float32 would.
func addGo(z, x, y []float32) {
	z, y = z[:len(x)], y[:len(x)]
	for i, v := range x {
		z[i] = v + y[i]
	}
}

// mulVec sets z = x * y over len(x) elements.
func mulVec(z, x, y []float32) {
	z, y = z[:len(x)], y[:len(x)]
	if haveAsm && useAsm {
		mulAVX2(z, x, y)
		return
	}
	mulGo(z, x, y)
}

func mulGo(z, x, y []float32) {
	z, y = z[:len(x)], y[:len(x)]
	for i, v := range x {
		z[i] = v * y[i]
	}
}

// reluVec sets y = max(x, 0) over len(x) elements, keeping NaN.
func reluVec(y, x []float32) {
	y = y[:len(x)]
	if haveAsm && useAsm {
		reluAVX2(y, x)
		return
	}
	reluGo(y, x)
}

func reluGo(y, x []float32) {
	y = y[:len(x)]
	for i, v := range x {
		if v <= 0 {
			v = 0
		}
		y[i] = v
	}
}

// reluGradVec sets dx = dy where y > 0, else 0, over len(dy) elements.
func reluGradVec(dx, dy, y []float32) {
	dx, y = dx[:len(dy)], y[:len(dy)]
	if haveAsm && useAsm {
		reluGradAVX2(dx, dy, y)
		return
	}
	reluGradGo(dx, dy, y)
}

func reluGradGo(dx, dy, y []float32) {
	dx, y = dx[:len(dy)], y[:len(dy)]
	for i, g := range dy {
		if !(y[i] > 0) {
			g = 0
		}
		dx[i] = g
	}
}

// sgdVec takes an SGD step on len(w) weights: m = mu*mom + g + decay*w,
// momOut = m, wOut = w - lr*m.
func sgdVec(wOut, momOut, w, g, mom []float32, mu, decay, lr float64) {
	wOut, momOut, g, mom = wOut[:len(w)], momOut[:len(w)], g[:len(w)], mom[:len(w)]
	if haveAsm && useAsm {
		sgdAVX2(wOut, momOut, w, g, mom, float32(mu), float32(decay), float32(lr))
		return
	}
	sgdGo(wOut, momOut, w, g, mom, mu, decay, lr)
}

// sgdGo computes in float64, wOut from the unrounded m, as the
// interpreter does.
func sgdGo(wOut, momOut, w, g, mom []float32, mu, decay, lr float64) {
	wOut, momOut, g, mom = wOut[:len(w)], momOut[:len(w)], g[:len(w)], mom[:len(w)]
	for i, wv := range w {
		v := float64(wv)
		m := mu*float64(mom[i]) + float64(g[i]) + decay*v
		momOut[i] = float32(m)
		wOut[i] = float32(v - lr*m)
	}
}

// affineReLURow sets y[i] = max(s[l]*x[i] + b[l], 0), l = i%8, keeping
// NaN.
func affineReLURow(y, x []float32, s, b *[8]float32) {
	y = y[:len(x)]
	if haveAsm && useAsm {
		affineReLUAVX2(y, x, s, b)
		return
	}
	affineReLUGo(y, x, s, b)
}

func affineReLUGo(y, x []float32, s, b *[8]float32) {
	y = y[:len(x)]
	for i, v := range x {
		l := i & 7
		y[i] = float32(reluF64(float64(s[l])*float64(v) + float64(b[l])))
	}
}

// affineReLUGradRow is the gradient of affineReLURow: with
// m = [s[l]*x[i] + b[l] > 0], l = i%8, it sets dx[i] = m*da[i]*s[l] and
// adds m*da[i]*x[i] to sums[l] and m*da[i] to sums[8+l].
func affineReLUGradRow(dx, da, x []float32, s, b *[8]float32, sums *[16]float64) {
	dx, da = dx[:len(x)], da[:len(x)]
	if haveAsm && useAsm {
		affineReLUGradAVX2(dx, da, x, s, b, sums)
		return
	}
	affineReLUGradGo(dx, da, x, s, b, sums)
}

func affineReLUGradGo(dx, da, x []float32, s, b *[8]float32, sums *[16]float64) {
	dx, da = dx[:len(x)], da[:len(x)]
	for i, x32 := range x {
		l, g := i&7, da[i]
		dx[i] = 0
		if affineOn(x32, s[l], b[l]) {
			dx[i] = g * s[l]
			sums[l] += float64(g * x32)
			sums[8+l] += float64(g)
		}
	}
}

// affineOn reports whether s*x + b > 0 as the assembly decides it: one
// fused multiply-add rounded to float32, so that a product too small for
// float32 counts as zero there too.
func affineOn(x, s, b float32) bool {
	return float32(math.FMA(float64(s), float64(x), float64(b))) > 0
}

// affineReLUGradAddRow is affineReLUGradRow adding z to dx: dx[i] =
// z[i] + m*da[i]*s[l].
func affineReLUGradAddRow(dx, da, x, z []float32, s, b *[8]float32, sums *[16]float64) {
	dx, da, z = dx[:len(x)], da[:len(x)], z[:len(x)]
	if haveAsm && useAsm {
		affineReLUGradAddAVX2(dx, da, x, z, s, b, sums)
		return
	}
	affineReLUGradAddGo(dx, da, x, z, s, b, sums)
}

func affineReLUGradAddGo(dx, da, x, z []float32, s, b *[8]float32, sums *[16]float64) {
	dx, da, z = dx[:len(x)], da[:len(x)], z[:len(x)]
	for i, x32 := range x {
		l, g := i&7, da[i]
		d := float32(0)
		if affineOn(x32, s[l], b[l]) {
			d = g * s[l]
			sums[l] += float64(g * x32)
			sums[8+l] += float64(g)
		}
		dx[i] = z[i] + d
	}
}

// statsGradRow sets dy[i] = s[l] + 2*q[l]*y[i], l = i%8.
func statsGradRow(dy, y []float32, s, q *[8]float32) {
	dy = dy[:len(y)]
	if haveAsm && useAsm {
		statsGradAVX2(dy, y, s, q)
		return
	}
	statsGradGo(dy, y, s, q)
}

func statsGradGo(dy, y []float32, s, q *[8]float32) {
	dy = dy[:len(y)]
	for i, v := range y {
		l := i & 7
		dy[i] = float32(float64(s[l]) + 2*float64(v)*float64(q[l]))
	}
}

// shiftAffineRow sets y[i] = (x[i] - m[l])*a[l] + b[l], l = i%8.
func shiftAffineRow(y, x []float32, m, a, b *[8]float32) {
	y = y[:len(x)]
	if haveAsm && useAsm {
		shiftAffineAVX2(y, x, m, a, b)
		return
	}
	shiftAffineGo(y, x, m, a, b)
}

func shiftAffineGo(y, x []float32, m, a, b *[8]float32) {
	y = y[:len(x)]
	for i, v := range x {
		l := i & 7
		y[i] = float32((float64(v)-float64(m[l]))*float64(a[l]) + float64(b[l]))
	}
}

// shiftAffineAddRow sets y[i] = (x[i] - m[l])*a[l] + b[l] + z[i], l = i%8.
func shiftAffineAddRow(y, x, z []float32, m, a, b *[8]float32) {
	y, z = y[:len(x)], z[:len(x)]
	if haveAsm && useAsm {
		shiftAffineAddAVX2(y, x, z, m, a, b)
		return
	}
	shiftAffineAddGo(y, x, z, m, a, b)
}

func shiftAffineAddGo(y, x, z []float32, m, a, b *[8]float32) {
	y, z = y[:len(x)], z[:len(x)]
	for i, v := range x {
		l := i & 7
		y[i] = float32((float64(v)-float64(m[l]))*float64(a[l])+float64(b[l])) + z[i]
	}
}

// bnNormGradRow sets dx[i] = dy[i]*a[l], l = i%8, and adds dy[i] to
// sums[l] and dy[i]*(x[i] - m[l]) to sums[8+l].
func bnNormGradRow(dx, dy, x []float32, m, a *[8]float32, sums *[16]float64) {
	dx, x = dx[:len(dy)], x[:len(dy)]
	if haveAsm && useAsm {
		bnNormGradAVX2(dx, dy, x, m, a, sums)
		return
	}
	bnNormGradGo(dx, dy, x, m, a, sums)
}

func bnNormGradGo(dx, dy, x []float32, m, a *[8]float32, sums *[16]float64) {
	dx, x = dx[:len(dy)], x[:len(dy)]
	for i, g32 := range dy {
		l := i & 7
		g := float64(g32)
		d := float64(x[i]) - float64(m[l])
		dx[i] = float32(g * float64(a[l]))
		sums[l] += g
		sums[8+l] += g * d
	}
}

// momentsRow adds d = x[i] - shift[l], l = i%8, to sums[l] and d*d to
// sums[8+l]: the sums of a batch mean and of a variance about shift.
func momentsRow(x []float32, shift *[8]float32, sums *[16]float64) {
	if haveAsm && useAsm {
		momentsAVX2(x, shift, sums)
		return
	}
	momentsGo(x, shift, sums)
}

func momentsGo(x []float32, shift *[8]float32, sums *[16]float64) {
	for i, v := range x {
		l := i & 7
		d := float64(v) - float64(shift[l])
		sums[l] += d
		sums[8+l] += d * d
	}
}

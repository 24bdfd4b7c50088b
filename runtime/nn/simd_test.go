package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/cpu"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// asmRunnable reports whether this test binary can call the assembly:
// the build carries it and the CPU has AVX2 and FMA. It does not look at
// RESNETC_PUREGO, which only chooses what the kernels run.
var asmRunnable = haveAsm && cpu.X86.HasAVX2 && cpu.X86.HasFMA

// requireAsm fails t when RESNETC_REQUIRE_ASM=1 and the assembly cannot
// run, so that a CI job meant to test the assembly cannot pass by testing
// only the twins.
func requireAsm(t *testing.T) {
	t.Helper()
	if os.Getenv("RESNETC_REQUIRE_ASM") == "1" && (!asmRunnable || !UsesAsm()) {
		t.Fatalf("RESNETC_REQUIRE_ASM=1 but the assembly is not selected (build has it: %v, AVX2: %v, FMA: %v, RESNETC_PUREGO=%q)",
			haveAsm, cpu.X86.HasAVX2, cpu.X86.HasFMA, os.Getenv("RESNETC_PUREGO"))
	}
}

func TestSIMDDispatch(t *testing.T) {
	requireAsm(t)
	want := asmRunnable && os.Getenv("RESNETC_PUREGO") != "1"
	if UsesAsm() != want {
		t.Errorf("UsesAsm() = %v, want %v (build has assembly: %v, CPU: %v)", UsesAsm(), want, haveAsm, asmRunnable)
	}
	t.Logf("assembly selected: %v", UsesAsm())
}

// simdLens are the stream lengths the assembly is checked on: empty,
// every remainder of a group of 8 and of the unrolled loop's 32, and
// around the 512-element chunks that sums are flushed by.
var simdLens = []int{0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 39, 63, 64, 65, 100, 255, 511, 512, 513, 1023, 1024, 1031, 1543}

// simdKernel is an assembly kernel and its twin, called the same way.
type simdKernel struct {
	name      string
	ins, outs int // streams read and written
	consts    int // per-lane constants
	sums      bool
	// run calls the assembly (asm) or the twin.
	run func(asm bool, out, in [][]float32, k [][8]float32, sums *[16]float64)
	// tol is the tolerance of output o's element i against the twin's,
	// zero for the same bits.
	tol func(o, i int, in [][]float32, k [][8]float32) float64
	// term is the magnitude of element i's term in sum s: the sums are
	// checked to a tolerance relative to the sum of these over a lane.
	term func(s, i int, in [][]float32, k [][8]float32) float64
	// alias lists the ways the memory plan may share storage: each is
	// a set of (output, input) pairs.
	alias [][][2]int
	// lo and hi bound the random inputs.
	lo, hi float64
}

func abs32(v float32) float64 { return math.Abs(float64(v)) }

// rel32 is the tolerance of a float32 result computed in float32 with
// fused multiply-adds against one computed in float64: a few units in the
// last place of the magnitude of the terms.
const rel32 = 4e-7

// relSum is the tolerance of a per-lane sum: float32 partial sums of up
// to 64 terms per accumulator, each rounded once.
const relSum = 4e-6

var simdKernels = []simdKernel{
	{
		name: "add", ins: 2, outs: 1, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, _ [][8]float32, _ *[16]float64) {
			if asm {
				addAVX2(out[0], in[0], in[1])
			} else {
				addGo(out[0], in[0], in[1])
			}
		},
		alias: [][][2]int{{{0, 0}}, {{0, 1}}},
	},
	{
		name: "mul", ins: 2, outs: 1, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, _ [][8]float32, _ *[16]float64) {
			if asm {
				mulAVX2(out[0], in[0], in[1])
			} else {
				mulGo(out[0], in[0], in[1])
			}
		},
		alias: [][][2]int{{{0, 0}}, {{0, 1}}},
	},
	{
		name: "relu", ins: 1, outs: 1, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, _ [][8]float32, _ *[16]float64) {
			if asm {
				reluAVX2(out[0], in[0])
			} else {
				reluGo(out[0], in[0])
			}
		},
		alias: [][][2]int{{{0, 0}}},
	},
	{
		name: "reluGrad", ins: 2, outs: 1, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, _ [][8]float32, _ *[16]float64) {
			if asm {
				reluGradAVX2(out[0], in[0], in[1])
			} else {
				reluGradGo(out[0], in[0], in[1])
			}
		},
		alias: [][][2]int{{{0, 0}}, {{0, 1}}},
	},
	{
		// k[0] holds momentum, decay and the learning rate.
		name: "sgd", ins: 3, outs: 2, consts: 1, lo: -1, hi: 1,
		run: func(asm bool, out, in [][]float32, k [][8]float32, _ *[16]float64) {
			mu, decay, lr := k[0][0], k[0][1], k[0][2]
			if asm {
				sgdAVX2(out[0], out[1], in[0], in[1], in[2], mu, decay, lr)
			} else {
				sgdGo(out[0], out[1], in[0], in[1], in[2], float64(mu), float64(decay), float64(lr))
			}
		},
		tol: func(o, i int, in [][]float32, k [][8]float32) float64 {
			m := abs32(k[0][0]*in[2][i]) + abs32(in[1][i]) + abs32(k[0][1]*in[0][i])
			if o == 1 {
				return rel32 * m
			}
			return rel32 * (abs32(in[0][i]) + abs32(k[0][2])*m)
		},
		alias: [][][2]int{{{0, 0}}, {{1, 2}}, {{0, 0}, {1, 2}}},
	},
	{
		name: "affineReLU", ins: 1, outs: 1, consts: 2, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, k [][8]float32, _ *[16]float64) {
			if asm {
				affineReLUAVX2(out[0], in[0], &k[0], &k[1])
			} else {
				affineReLUGo(out[0], in[0], &k[0], &k[1])
			}
		},
		tol: func(_, i int, in [][]float32, k [][8]float32) float64 {
			return rel32 * (abs32(k[0][i%8]*in[0][i]) + abs32(k[1][i%8]))
		},
		alias: [][][2]int{{{0, 0}}},
	},
	{
		name: "affineReLUGrad", ins: 2, outs: 1, consts: 2, sums: true, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, k [][8]float32, sums *[16]float64) {
			if asm {
				affineReLUGradAVX2(out[0], in[0], in[1], &k[0], &k[1], sums)
			} else {
				affineReLUGradGo(out[0], in[0], in[1], &k[0], &k[1], sums)
			}
		},
		term: func(s, i int, in [][]float32, _ [][8]float32) float64 {
			if s == 0 {
				return abs32(in[0][i]) * abs32(in[1][i])
			}
			return abs32(in[0][i])
		},
		alias: [][][2]int{{{0, 0}}, {{0, 1}}},
	},
	{
		name: "affineReLUGradAdd", ins: 3, outs: 1, consts: 2, sums: true, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, k [][8]float32, sums *[16]float64) {
			if asm {
				affineReLUGradAddAVX2(out[0], in[0], in[1], in[2], &k[0], &k[1], sums)
			} else {
				affineReLUGradAddGo(out[0], in[0], in[1], in[2], &k[0], &k[1], sums)
			}
		},
		term: func(s, i int, in [][]float32, _ [][8]float32) float64 {
			if s == 0 {
				return abs32(in[0][i]) * abs32(in[1][i])
			}
			return abs32(in[0][i])
		},
		alias: [][][2]int{{{0, 0}}, {{0, 1}}, {{0, 2}}},
	},
	{
		name: "statsGrad", ins: 1, outs: 1, consts: 2, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, k [][8]float32, _ *[16]float64) {
			if asm {
				statsGradAVX2(out[0], in[0], &k[0], &k[1])
			} else {
				statsGradGo(out[0], in[0], &k[0], &k[1])
			}
		},
		tol: func(_, i int, in [][]float32, k [][8]float32) float64 {
			return rel32 * (abs32(k[0][i%8]) + 2*abs32(k[1][i%8])*abs32(in[0][i]))
		},
		alias: [][][2]int{{{0, 0}}},
	},
	{
		name: "shiftAffineAdd", ins: 2, outs: 1, consts: 3, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, k [][8]float32, _ *[16]float64) {
			if asm {
				shiftAffineAddAVX2(out[0], in[0], in[1], &k[0], &k[1], &k[2])
			} else {
				shiftAffineAddGo(out[0], in[0], in[1], &k[0], &k[1], &k[2])
			}
		},
		tol: func(_, i int, in [][]float32, k [][8]float32) float64 {
			l := i % 8
			return rel32 * (math.Abs(float64(in[0][i])-float64(k[0][l]))*abs32(k[1][l]) + abs32(k[2][l]) + abs32(in[1][i]))
		},
		alias: [][][2]int{{{0, 0}}, {{0, 1}}},
	},
	{
		name: "shiftAffine", ins: 1, outs: 1, consts: 3, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, k [][8]float32, _ *[16]float64) {
			if asm {
				shiftAffineAVX2(out[0], in[0], &k[0], &k[1], &k[2])
			} else {
				shiftAffineGo(out[0], in[0], &k[0], &k[1], &k[2])
			}
		},
		tol: func(_, i int, in [][]float32, k [][8]float32) float64 {
			l := i % 8
			return rel32 * (math.Abs(float64(in[0][i])-float64(k[0][l]))*abs32(k[1][l]) + abs32(k[2][l]))
		},
		alias: [][][2]int{{{0, 0}}},
	},
	{
		name: "bnNormGrad", ins: 2, outs: 1, consts: 2, sums: true, lo: -2, hi: 2,
		run: func(asm bool, out, in [][]float32, k [][8]float32, sums *[16]float64) {
			if asm {
				bnNormGradAVX2(out[0], in[0], in[1], &k[0], &k[1], sums)
			} else {
				bnNormGradGo(out[0], in[0], in[1], &k[0], &k[1], sums)
			}
		},
		term: func(s, i int, in [][]float32, k [][8]float32) float64 {
			if s == 0 {
				return abs32(in[0][i])
			}
			return abs32(in[0][i]) * math.Abs(float64(in[1][i])-float64(k[0][i%8]))
		},
		alias: [][][2]int{{{0, 0}}, {{0, 1}}},
	},
	{
		name: "moments", ins: 1, consts: 1, sums: true, lo: 1, hi: 3,
		run: func(asm bool, _, in [][]float32, k [][8]float32, sums *[16]float64) {
			if asm {
				momentsAVX2(in[0], &k[0], sums)
			} else {
				momentsGo(in[0], &k[0], sums)
			}
		},
		term: func(s, i int, in [][]float32, k [][8]float32) float64 {
			d := math.Abs(float64(in[0][i]) - float64(k[0][i%8]))
			if s == 0 {
				return d
			}
			return d * d
		},
	},
}

// guard is the value around and past every stream: a NaN no kernel makes,
// so that a store outside a result shows, and so does a read past an
// argument's end that reaches a sum.
var guard = math.Float32frombits(0x7fc0dead)

// guardSlack is the number of guard elements on each side of a stream.
const guardSlack = 16

// stream returns v at offset off of a guarded buffer, and the buffer.
func stream(v []float32, off int) (s, buf []float32) {
	buf = make([]float32, off+len(v)+guardSlack)
	for i := range buf {
		buf[i] = guard
	}
	s = buf[off : off+len(v)]
	copy(s, v)
	return s, buf
}

// checkGuards reports elements of buf outside [off, off+n) that are not
// guard.
func checkGuards(t *testing.T, what string, buf []float32, off, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < off || i >= off+n) && math.Float32bits(v) != math.Float32bits(guard) {
			t.Errorf("%s: element %d outside [%d, %d) written: %v", what, i, off, off+n, v)
			return
		}
	}
}

// specials are the values that the special inputs mix in.
var specials = []float32{
	float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
	float32(math.Copysign(0, -1)), 0, math.SmallestNonzeroFloat32, 1e-40,
}

// simdInputs draws a kernel's inputs for length n. With special, some
// elements of every stream and some constants are NaN, infinite, signed
// zero or subnormal, and stream j is zero over [8j+8, 8j+16) and
// constant j in lane (j+5)%8, so that comparisons with zero meet
// exact zeros in every lane.
func simdInputs(k simdKernel, n int, special bool, seed uint64) (in [][]float32, c [][8]float32) {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	for range k.ins {
		in = append(in, f32s(random(r, n, k.lo, k.hi)))
	}
	for range k.consts {
		var v [8]float32
		for l := range v {
			v[l] = float32(-2 + 4*r.Float64())
		}
		c = append(c, v)
	}
	if k.name == "sgd" {
		c[0] = [8]float32{0.9, 5e-4, 0.1}
	}
	if special {
		for j, s := range in {
			for i := 8*j + 8; i < min(8*j+16, n); i++ {
				s[i] = 0
			}
			for m := 0; m < len(specials) && n > 0; m++ {
				s[(m*7919+j*104729)%n] = specials[(m+j)%len(specials)]
			}
		}
		if k.name != "sgd" {
			for j := range c {
				c[j][(j+3)%8] = specials[j%len(specials)]
				c[j][(j+5)%8] = 0
			}
		}
	}
	return in, c
}

// agree reports whether got is want within tol, NaN matching NaN and an
// infinity only itself; tol 0 asks for the same bits.
func agree(got, want float32, tol float64) bool {
	if tol == 0 {
		return math.Float32bits(got) == math.Float32bits(want)
	}
	g, w := float64(got), float64(want)
	if math.IsNaN(w) || math.IsNaN(g) {
		return math.IsNaN(w) && math.IsNaN(g)
	}
	if math.IsInf(w, 0) || math.IsInf(g, 0) {
		return g == w
	}
	// Below the normal range a float32 has fewer digits: allow a unit
	// there too.
	return math.Abs(g-w) <= tol+2*math.SmallestNonzeroFloat32 || math.IsNaN(tol) || math.IsInf(tol, 1)
}

// sumsAgree reports whether per-lane sums got are want within tol.
func sumsAgree(got, want, tol float64) bool {
	if math.IsNaN(want) || math.IsNaN(got) {
		return math.IsNaN(want) && math.IsNaN(got)
	}
	if math.IsInf(want, 0) || math.IsInf(got, 0) {
		return got == want
	}
	return math.Abs(got-want) <= tol || math.IsNaN(tol) || math.IsInf(tol, 1)
}

// runSIMD runs k (assembly or twin) on fresh guarded copies of in at
// offset off and returns the results, the sums (started at 0.25*i, so
// that adding to them is checked) and the buffers.
func runSIMD(k simdKernel, asm bool, in [][]float32, c [][8]float32, off int) (out [][]float32, sums [16]float64, bufs [][]float32) {
	n := len(in[0])
	args := make([][]float32, len(in))
	for i, v := range in {
		args[i], _ = stream(v, off)
	}
	for range k.outs {
		o, buf := stream(make([]float32, n), off)
		for i := range o {
			o[i] = guard
		}
		out, bufs = append(out, o), append(bufs, buf)
	}
	for i := range sums {
		sums[i] = 0.25 * float64(i)
	}
	k.run(asm, out, args, c, &sums)
	return out, sums, bufs
}

// TestSIMDTwins checks every assembly kernel against its twin on every
// length of simdLens, at aligned and unaligned starts, on plain and on
// special inputs (NaN, infinities, signed zeros, subnormals), and in
// every in-place form the memory plan uses. Results outside the streams
// must stay untouched and reads past their ends must not reach a sum.
func TestSIMDTwins(t *testing.T) {
	requireAsm(t)
	if !asmRunnable {
		t.Log("no assembly in this build or on this CPU: nothing to compare")
		return
	}
	for ki, k := range simdKernels {
		for _, special := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/special=%v", k.name, special), func(t *testing.T) {
				for _, n := range simdLens {
					for _, off := range []int{0, 1, 5} {
						in, c := simdInputs(k, n, special, uint64(ki))
						what := fmt.Sprintf("n=%d off=%d", n, off)
						got, gs, bufs := runSIMD(k, true, in, c, off)
						want, ws, _ := runSIMD(k, false, in, c, off)
						compareSIMD(t, k, what, in, c, got, want, gs, ws)
						for o, buf := range bufs {
							checkGuards(t, fmt.Sprintf("%s output %d", what, o), buf, off, n)
						}
						for _, al := range k.alias {
							for _, asm := range []bool{true, false} {
								checkInPlace(t, k, asm, al, in, c, off, what)
							}
						}
					}
				}
			})
		}
	}
}

// compareSIMD compares the assembly's results and sums with the twin's.
func compareSIMD(t *testing.T, k simdKernel, what string, in [][]float32, c [][8]float32, got, want [][]float32, gs, ws [16]float64) {
	t.Helper()
	bad := 0
	for o := range got {
		for i := range got[o] {
			tol := 0.0
			if k.tol != nil {
				tol = k.tol(o, i, in, c)
			}
			if !agree(got[o][i], want[o][i], tol) {
				if bad < 3 {
					t.Errorf("%s: output %d[%d] = %v (%#08x), twin %v (%#08x), tolerance %.3g",
						what, o, i, got[o][i], math.Float32bits(got[o][i]), want[o][i], math.Float32bits(want[o][i]), tol)
				}
				bad++
			}
		}
	}
	if !k.sums {
		if gs != ws {
			t.Errorf("%s: a kernel without sums changed them", what)
		}
		return
	}
	for s := range 2 {
		for l := range 8 {
			mag := 0.0
			for i := l; i < len(in[0]); i += 8 {
				mag += k.term(s, i, in, c)
			}
			j := 8*s + l
			if !sumsAgree(gs[j], ws[j], relSum*mag) {
				t.Errorf("%s: sum %d lane %d = %v, twin %v (tolerance %.3g)", what, s, l, gs[j], ws[j], relSum*mag)
			}
		}
	}
}

// checkInPlace runs k with the results of al written into the storage
// of the arguments they name, and wants the bits of a run into fresh
// storage.
func checkInPlace(t *testing.T, k simdKernel, asm bool, al [][2]int, in [][]float32, c [][8]float32, off int, what string) {
	t.Helper()
	want, ws, _ := runSIMD(k, asm, in, c, off)
	args := make([][]float32, len(in))
	for i, v := range in {
		args[i], _ = stream(v, off)
	}
	out := make([][]float32, k.outs)
	for o := range out {
		out[o], _ = stream(make([]float32, len(in[0])), off)
	}
	for _, p := range al {
		out[p[0]] = args[p[1]]
	}
	var sums [16]float64
	for i := range sums {
		sums[i] = 0.25 * float64(i)
	}
	k.run(asm, out, args, c, &sums)
	for o := range out {
		if !same(out[o], want[o]) {
			t.Errorf("%s asm=%v: in place %v: output %d differs from a run into fresh storage", what, asm, al, o)
		}
	}
	for i := range sums {
		if math.Float64bits(sums[i]) != math.Float64bits(ws[i]) {
			t.Errorf("%s asm=%v: in place %v: sums differ from a run into fresh storage", what, asm, al)
			break
		}
	}
}

// TestSIMDLongSums checks that the assembly's sums stay accurate on a
// long row, a block of a 112x112 image (ImageNet's first stage), against
// float64 sums written here: the float32 partials are flushed to float64
// every 512 elements, which keeps the error near 5e-9 here; float32 sums
// over the whole row are off by up to 1e-6.
func TestSIMDLongSums(t *testing.T) {
	requireAsm(t)
	if !asmRunnable {
		t.Log("no assembly in this build or on this CPU: nothing to check")
		return
	}
	const n = 112 * 112 * 8
	r := rand.New(rand.NewPCG(40, 0))
	x := f32s(random(r, n, 100, 101)) // a large mean: float32 running sums would drift
	var shift [8]float32
	var sums [16]float64
	momentsAVX2(x, &shift, &sums)
	for l := range 8 {
		var s, q float64
		for i := l; i < n; i += 8 {
			v := float64(x[i])
			s += v
			q += v * v
		}
		if math.Abs(sums[l]-s) > 3e-8*s || math.Abs(sums[8+l]-q) > 3e-8*q {
			t.Errorf("lane %d: Σx = %v, Σx² = %v; want %v, %v", l, sums[l], sums[8+l], s, q)
		}
	}
}

// simdBenchLens are the benchmark lengths: a row that stays in L1 and a
// stream that does not fit in L2.
var simdBenchLens = []int{4096, 1 << 20}

// simdBytes is the memory each kernel moves per element.
var simdBytes = map[string]int{
	"add": 12, "mul": 12, "relu": 8, "reluGrad": 12, "sgd": 20, "affineReLU": 8,
	"affineReLUGrad": 12, "affineReLUGradAdd": 16, "statsGrad": 8, "shiftAffine": 8, "shiftAffineAdd": 12, "bnNormGrad": 12, "moments": 4,
}

// BenchmarkSIMD measures every kernel, assembly and twin, in GB/s and
// ns per element.
func BenchmarkSIMD(b *testing.B) {
	for ki, k := range simdKernels {
		for _, n := range simdBenchLens {
			in, c := simdInputs(k, n, false, uint64(ki))
			out := make([][]float32, k.outs)
			for o := range out {
				out[o] = make([]float32, n)
			}
			for _, asm := range []bool{true, false} {
				if asm && !asmRunnable {
					continue
				}
				name := "go"
				if asm {
					name = "asm"
				}
				b.Run(fmt.Sprintf("%s/n=%d/%s", k.name, n, name), func(b *testing.B) {
					var sums [16]float64
					b.SetBytes(int64(simdBytes[k.name] * n))
					for b.Loop() {
						k.run(asm, out, in, c, &sums)
					}
					b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/float64(n), "ns/elem")
				})
			}
		}
	}
}

// BenchmarkKernelsSIMD measures the exported kernels the profile of a
// training step shows, on one worker and a stage-1 activation of 8
// images (NCHW8c, 16 channels, 32x32), with the assembly and with the
// twins.
func BenchmarkKernelsSIMD(b *testing.B) {
	a := Act{N: 8, C: 16, H: 32, W: 32, Blocked: true}
	n, C := a.Len(), a.C
	c, err := NewCtx(1, 0, 2*C)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(41, 0))
	x, y, dy := f32s(random(r, n, -2, 2)), f32s(random(r, n, -2, 2)), make([]float32, n)
	v := [4][]float32{f32s(random(r, C, -1, 1)), f32s(random(r, C, -1, 1)), make([]float32, C), make([]float32, C)}
	lr := []float32{0.1}
	for _, k := range []struct {
		name  string
		bytes int
		f     func()
	}{
		{"AffineReLUGrad", 12, func() { AffineReLUGrad(c, dy, v[2], v[3], y, x, v[0], v[1], a) }},
		{"StatsGrad", 8, func() { StatsGrad(c, dy, v[0], v[1], y, a) }},
		{"Add", 12, func() { Add(c, dy, x, y, a) }},
		{"AffineReLU", 8, func() { AffineReLU(c, dy, x, v[0], v[1], a) }},
		{"BNStats", 8, func() { BNStats(c, v[2], v[3], x, a) }},
		{"SGD", 20, func() { SGD(c, dy, y, dy, x, y, lr, n, 0.9, 1e-4) }},
	} {
		for _, asm := range []bool{true, false} {
			if asm && !asmRunnable {
				continue
			}
			name := "go"
			if asm {
				name = "asm"
			}
			b.Run(k.name+"/"+name, func(b *testing.B) {
				saved := useAsm
				useAsm = asm
				defer func() { useAsm = saved }()
				b.SetBytes(int64(k.bytes * n))
				for b.Loop() {
					k.f()
				}
				b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/float64(n), "ns/elem")
			})
		}
	}
}

package kernels

import (
	"fmt"

	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// PeakAccumulators is the number of independent YMM accumulators of the
// peak loop. Two FMA pipes with a latency of four cycles need at least
// eight chains in flight; twelve leave slack for the loop branch and for
// cores with a longer latency.
const PeakAccumulators = 12

// PeakFLOPsPerIter is the work of one iteration of the peak loop: one
// 8-wide FMA (16 FLOPs) per accumulator.
const PeakFLOPsPerIter = PeakAccumulators * 16

// PeakSignature is the signature of the peak loop and of its twin: n
// iterations of acc[i] += a*b on every accumulator, returning lane 0 of
// the accumulators' sum, PeakAccumulators*n*a*b up to rounding.
const PeakSignature = "func(n int, a, b float32) float32"

const peakAsmName = "peakFMAAVX2"

// BuildPeak adds the peak loop to ctx: the machine's FMA throughput with
// no memory traffic, which every kernel benchmark divides by.
func BuildPeak(ctx *build.Context) {
	ctx.Function(peakAsmName)
	ctx.Attributes(attr.NOSPLIT)
	ctx.SignatureExpr(PeakSignature)
	ctx.Doc(fmt.Sprintf("%s runs n iterations of %d independent 8-wide FMAs.", peakAsmName, PeakAccumulators))
	n := ctx.GP64()
	ctx.Load(ctx.Param("n"), n)
	a, b := ymm[PeakAccumulators], ymm[PeakAccumulators+1]
	ab := func(name string) operand.Mem {
		r, err := ctx.Param(name).Resolve()
		if err != nil {
			panic("BUG: kernels: " + PeakSignature + ": " + err.Error())
		}
		return r.Addr
	}
	ctx.VBROADCASTSS(ab("a"), a)
	ctx.VBROADCASTSS(ab("b"), b)
	for i := range PeakAccumulators {
		ctx.VXORPS(ymm[i], ymm[i], ymm[i])
	}
	ctx.TESTQ(n, n)
	ctx.JLE(operand.LabelRef("reduce"))
	ctx.Label("loop")
	for i := range PeakAccumulators {
		ctx.VFMADD231PS(a, b, ymm[i])
	}
	ctx.DECQ(n)
	ctx.JNZ(operand.LabelRef("loop"))
	ctx.Label("reduce")
	for i := 1; i < PeakAccumulators; i++ {
		ctx.VADDPS(ymm[i], reg.Y0, reg.Y0)
	}
	ctx.Store(reg.X0, ctx.ReturnIndex(0))
	ctx.VZEROUPPER()
	ctx.RET()
}

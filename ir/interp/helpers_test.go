package interp

import (
	"fmt"
	"math"
	"testing"

	_ "github.com/resnetc/resnetc/internal/golden" // accept -update like every test package
	"github.com/resnetc/resnetc/ir"
)

// in declares an f32 input.
func in(g *ir.Graph, name string, dims ...int) *ir.Value {
	return g.Decl(ir.Input, name, ir.T32(dims...), nil)
}

// labelsIn declares an i32[n] input.
func labelsIn(g *ir.Graph, name string, n int) *ir.Value {
	return g.Decl(ir.Input, name, ir.Type{DType: ir.I32, Shape: ir.Shape{n}}, nil)
}

// tensor returns a tensor with the given shape and data.
func tensor(shape []int, data ...float64) *Tensor {
	t := NewTensor(shape...)
	if len(data) != len(t.Data) {
		panic(fmt.Sprintf("tensor: %d values for shape %v", len(data), shape))
	}
	copy(t.Data, data)
	return t
}

// mustRun verifies g (the tests' graphs are all valid) and runs it.
func mustRun(t *testing.T, g *ir.Graph, feeds map[string]*Tensor, opt Options) *Result {
	t.Helper()
	if err := ir.Verify(g); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	r, err := Run(g, feeds, opt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

// near reports whether got is within tol of want, relative to max(|want|, 1).
func near(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Max(math.Abs(want), 1)
}

// checkData fails t when got and want differ by more than tol (relative to
// max(|want|, 1)) anywhere.
func checkData(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		if !near(got[i], want[i], tol) || math.IsNaN(got[i]) != math.IsNaN(want[i]) {
			if bad < 5 {
				t.Errorf("%s[%d] = %.17g, want %.17g", what, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d mismatches in all", what, bad)
	}
}

// awayFromZero maps entries of t to sign(v)*(margin+|v|), so that a
// finite-difference step never crosses a kink at 0.
func awayFromZero(t *Tensor, margin float64) *Tensor {
	for i, v := range t.Data {
		t.Data[i] = math.Copysign(margin+math.Abs(v), v)
	}
	return t
}

// dot is Σ a_i b_i.
func dot(a, b *Tensor) float64 {
	s := 0.0
	for i := range a.Data {
		s += a.Data[i] * b.Data[i]
	}
	return s
}

// checkGrad compares the gradient output grad of the run of g against
// central finite differences of objective (a scalar function of a run,
// typically <dy, y>) with respect to every element of the feed wrt, in
// float64:
//
//	(objective(wrt + h e_i) - objective(wrt - h e_i)) / 2h
//
// The gradient op's answer is therefore checked against its forward op's
// numbers only, never against itself.
func checkGrad(t *testing.T, g *ir.Graph, feeds map[string]*Tensor, objective func(*Result) float64, wrt, grad string) {
	t.Helper()
	const h, tol = 1e-5, 1e-6
	r := mustRun(t, g, feeds, Options{})
	an := r.Outputs[grad]
	x := feeds[wrt]
	if an == nil || x == nil {
		t.Fatalf("no output %q or feed %q", grad, wrt)
	}
	if !an.Shape.Equal(x.Shape) {
		t.Fatalf("gradient %s is %v, but %s is %v", grad, an.Shape, wrt, x.Shape)
	}
	gmax := 0.0
	for _, v := range an.Data {
		gmax = math.Max(gmax, math.Abs(v))
	}
	if gmax == 0 {
		t.Fatalf("gradient %s is all zero: the check would be vacuous", grad)
	}
	bad := 0
	for i := range x.Data {
		orig := x.Data[i]
		x.Data[i] = orig + h
		fp := objective(mustRun(t, g, feeds, Options{}))
		x.Data[i] = orig - h
		fm := objective(mustRun(t, g, feeds, Options{}))
		x.Data[i] = orig
		fd := (fp - fm) / (2 * h)
		// Relative to the element, with a floor at a small fraction of the
		// largest gradient so that near-zero elements are not held to an
		// impossible standard.
		if d := math.Abs(fd - an.Data[i]); d > tol*math.Max(math.Abs(an.Data[i]), 1e-2*gmax) {
			if bad < 5 {
				t.Errorf("d/d%s[%d]: %s = %.12g, finite difference %.12g", wrt, i, grad, an.Data[i], fd)
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("d/d%s: %d of %d elements wrong", wrt, bad, len(x.Data))
	}
}

// seedDot returns the objective <feeds[dy], out[y]>.
func seedDot(feeds map[string]*Tensor, dy, y string) func(*Result) float64 {
	return func(r *Result) float64 { return dot(feeds[dy], r.Outputs[y]) }
}

package ir_test

import (
	"math"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	_ "github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
)

// TestPrint compares the printer with text written by hand from the
// format's description: values numbered in order, attributes sorted,
// names quoted, unset names and attributes omitted, layouts shown when not
// the default.
func TestPrint(t *testing.T) {
	g := ir.New("tiny \"net\"", ir.Train)
	x := g.Decl(ir.Input, "x", ir.Type{DType: ir.F32, Shape: ir.Shape{1, 8, 3, 3}, Layout: ir.NCHW8c}, nil)
	w := g.Decl(ir.Param, "w", ir.T32(8, 8, 3, 3), ir.Attrs{"std": 0.5, "init": "normal"})
	// conv2d is layout-free: its result takes the layout a pass sets, not
	// its input's.
	conv := g.MustOp(ir.Conv2D, "conv", ir.Attrs{"pad": 1, "stride": 2}, x, w)
	if l := conv.Result().Type.Layout; l != ir.NCHW {
		t.Fatalf("conv2d over an nchw8c input infers layout %v, want the default", l)
	}
	conv.Result().Type.Layout = ir.NCHW8c
	c := conv.Result()
	st := g.MustOp(ir.BNStats, "", nil, c)
	m := g.Decl(ir.State, "mean", ir.T32(8), nil)
	e := g.MustOp(ir.EMA, "ema", ir.Attrs{"momentum": 0.25, "scale": 1}, m, st.Results[0]).Result()
	g.AddOutput("y", c)
	g.AddUpdate(m, e)

	want := `graph "tiny \"net\"" train {
  %0 = input "x" : f32[1,8,3,3]@nchw8c
  %1 = param "w" {init="normal", std=0.5} : f32[8,8,3,3]
  %2 = conv2d(%0, %1) "conv" {pad=1, stride=2} : f32[1,8,2,2]@nchw8c
  %3, %4 = bnstats(%2) : f32[8], f32[8]
  %5 = state "mean" : f32[8]
  %6 = ema(%5, %3) "ema" {momentum=0.25, scale=1} : f32[8]
  output "y" %2
  update %5 <- %6
}
`
	got := ir.Print(g)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Print mismatch (-want +got):\n%s", d)
	}
	if line := ir.FormatOp(g, g.Ops[3]); line != "%3, %4 = bnstats(%2) : f32[8], f32[8]" {
		t.Errorf("FormatOp = %q", line)
	}
}

// TestPrintForeignValue: a value no op in the graph produces prints as %?,
// which Parse rejects rather than misreading.
func TestPrintForeignValue(t *testing.T) {
	other := ir.New("other", ir.Infer)
	z := other.Decl(ir.Input, "z", ir.T32(2), nil)
	g := ir.New("g", ir.Infer)
	g.AddOutput("z", z)
	text := ir.Print(g)
	want := "graph \"g\" infer {\n  output \"z\" %?\n}\n"
	if text != want {
		t.Fatalf("Print = %q, want %q", text, want)
	}
	if _, err := ir.Parse("g.ir", []byte(text)); err == nil {
		t.Error("Parse accepted a %? reference")
	}
}

// TestFormatAttr checks spellings against the format's rules and, for
// floats, against strconv.ParseFloat: the text must read back to the same
// bits and always look like a float.
func TestFormatAttr(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{0, "0"},
		{-3, "-3"},
		{math.MaxInt, "9223372036854775807"},
		{0.1, "0.1"},
		{1e-5, "1e-05"},
		{-6.0, "-6.0"},
		{1.0 / 3.0, "0.3333333333333333"},
		{1e300, "1e+300"},
		{5e-324, "5e-324"},
		{100.0, "100.0"},
		{math.Copysign(0, -1), "-0.0"},
		{math.Inf(1), "inf"},
		{math.Inf(-1), "-inf"},
		{math.NaN(), "nan"},
		{"a\"b\n∑", `"a\"b\n∑"`},
		{"", `""`},
		{true, "true"},
		{false, "false"},
		{[]int{}, "[]"},
		{[]int{1, -2, 3}, "[1,-2,3]"},
	} {
		got := ir.FormatAttr(c.v)
		if got != c.want {
			t.Errorf("FormatAttr(%#v) = %s, want %s", c.v, got, c.want)
		}
		f, ok := c.v.(float64)
		if !ok || math.IsInf(f, 0) || math.IsNaN(f) {
			continue
		}
		back, err := strconv.ParseFloat(got, 64)
		if err != nil || math.Float64bits(back) != math.Float64bits(f) {
			t.Errorf("FormatAttr(%v) = %s reads back as %v (%v)", f, got, back, err)
		}
	}
}

// TestPrintIdempotent: printing a parsed printout changes nothing, for
// every round-trip graph.
func TestPrintIdempotent(t *testing.T) {
	for name, g := range roundTripGraphs() {
		once := ir.Print(g)
		g2, err := ir.Parse(name, []byte(once))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		twice := ir.Print(g2)
		g3, err := ir.Parse(name, []byte(twice))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if thrice := ir.Print(g3); once != twice || twice != thrice {
			t.Errorf("%s: printing is not idempotent (-once +twice):\n%s", name, cmp.Diff(once, twice))
		}
	}
}

package resnet

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
)

// flatOp is an op without pointers: arguments and results are value
// numbers in the graph's order, so two graphs compare structurally.
type flatOp struct {
	Kind    ir.OpKind
	Name    string
	Args    []int
	Results []string // types
	Attrs   map[string]string
}

type flatGraph struct {
	Name    string
	Mode    ir.Mode
	Ops     []flatOp
	Outputs []string // name=value
	Updates [][2]int
}

// flatten numbers g's values in order and describes every op by kind,
// name, attributes, argument numbers and result types.
func flatten(g *ir.Graph) flatGraph {
	ids := map[*ir.Value]int{}
	for _, op := range g.Ops {
		for _, r := range op.Results {
			ids[r] = len(ids)
		}
	}
	id := func(v *ir.Value) int {
		if n, ok := ids[v]; ok {
			return n
		}
		return -1
	}
	f := flatGraph{Name: g.Name, Mode: g.Mode}
	for _, op := range g.Ops {
		fo := flatOp{Kind: op.Kind, Name: op.Name, Attrs: map[string]string{}}
		for _, a := range op.Args {
			fo.Args = append(fo.Args, id(a))
		}
		for _, r := range op.Results {
			fo.Results = append(fo.Results, r.Type.String())
		}
		for k, v := range op.Attrs {
			fo.Attrs[k] = fmt.Sprintf("%T %s", v, ir.FormatAttr(v))
		}
		f.Ops = append(f.Ops, fo)
	}
	for _, o := range g.Outputs {
		f.Outputs = append(f.Outputs, fmt.Sprintf("%s=%d", o.Name, id(o.Value)))
	}
	for _, u := range g.Updates {
		f.Updates = append(f.Updates, [2]int{id(u.Target), id(u.Value)})
	}
	return f
}

// TestPresetsLower lowers every preset in both modes, verifies the graph,
// and checks that its text form parses back to the same graph.
func TestPresetsLower(t *testing.T) {
	ps := Presets()
	if len(ps) == 0 {
		t.Fatal("no presets")
	}
	for _, p := range ps {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			lowerPreset(t, p)
		})
	}
}

func lowerPreset(t *testing.T, p Preset) {
	a, err := LoadPreset(p.Name)
	if err != nil {
		t.Fatal(err)
	}
	params := map[ir.Mode][]string{}
	for _, mode := range []ir.Mode{ir.Infer, ir.Train} {
		g, err := Lower(a, 2, mode)
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		if err := ir.Verify(g); err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		text := ir.Print(g)
		pg, err := ir.Parse(p.Name+".ir", []byte(text))
		if err != nil {
			t.Fatalf("%v: the printed graph does not parse: %v", mode, err)
		}
		if err := ir.Verify(pg); err != nil {
			t.Fatalf("%v: the parsed graph does not verify: %v", mode, err)
		}
		if ir.Print(pg) != text {
			t.Fatalf("%v: printing the parsed graph gives other text", mode)
		}
		// The text shows every kind, name, attribute, argument and type,
		// so equal text is equal structure. The pointer-free comparison
		// says so independently of the printer, on every preset but the
		// 1000-layer ones (their units are those of the shallower
		// presets, and they would double the test's time). cmp.Diff
		// explains a difference; reflect.DeepEqual finds one faster.
		if a.Units() <= 100 {
			if fg, fp := flatten(g), flatten(pg); !reflect.DeepEqual(fg, fp) {
				t.Fatalf("%v: Parse(Print(g)) differs from g (-lowered +parsed):\n%s", mode, cmp.Diff(fg, fp))
			}
		}
		for _, op := range g.Decls(ir.Param) {
			params[mode] = append(params[mode], op.Name+" "+op.Result().Type.String())
		}
		if (len(g.Updates) > 0) != (mode == ir.Train) {
			t.Errorf("%v: %d updates", mode, len(g.Updates))
		}
	}
	// Both modes have the same weights, in the same order.
	if d := cmp.Diff(params[ir.Infer], params[ir.Train]); d != "" || len(params[ir.Infer]) == 0 {
		t.Errorf("params differ between modes (-infer +train):\n%s", d)
	}
}

// TestPresetsDescribe checks every preset's statistics against the closed
// form and writes its table to testdata/describe.
func TestPresetsDescribe(t *testing.T) {
	for _, p := range Presets() {
		a, err := LoadPreset(p.Name)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		s, err := Describe(a, 1)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if w, bn, macs := closedForm(a); s.Weights != w || s.BNParams != bn || s.MACs != macs {
			t.Errorf("%s: weights %d, BN params %d, MACs %d; closed form %d, %d, %d", p.Name, s.Weights, s.BNParams, s.MACs, w, bn, macs)
		}
		checkRowsSum(t, s)
		if s.Name != p.Name || s.Depth != a.Depth || len(s.Stages) != len(a.Stages)+2 {
			t.Errorf("%s: name %q, depth %d, %d rows", p.Name, s.Name, s.Depth, len(s.Stages))
		}
		var b strings.Builder
		if err := s.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "../../testdata/describe/"+p.Name+".txt", []byte(b.String()))
	}
}

// TestPresetsPaper checks the parameter counts the paper reports for its
// presets (rounded to 0.1M) and ImageNet's compute.
func TestPresetsPaper(t *testing.T) {
	for name, millions := range map[string]float64{
		"resnet-110":         1.7,
		"preact-resnet-110":  1.7,
		"resnet-164":         1.7,
		"preact-resnet-164":  1.7,
		"resnet-1001":        10.2,
		"preact-resnet-1001": 10.2,
	} {
		a, err := LoadPreset(name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Describe(a, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := float64(int64(float64(s.Weights)/1e5+0.5)) / 10; got != millions {
			t.Errorf("%s: %d weights = %.1fM, the paper says %.1fM", name, s.Weights, got, millions)
		}
	}
}

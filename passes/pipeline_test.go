package passes

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/resnetc/resnetc/ir"
)

// TestPassTable checks the pipeline table: names unique and non-empty,
// every pass has a function and modes, and the written ordering
// constraints hold.
func TestPassTable(t *testing.T) {
	ps := Passes()
	if len(ps) == 0 {
		t.Fatal("no passes")
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if p.Name == "" || strings.ContainsAny(p.Name, " \t,") {
			t.Errorf("pass name %q: want a non-empty word", p.Name)
		}
		if seen[p.Name] {
			t.Errorf("pass %q is listed twice", p.Name)
		}
		seen[p.Name] = true
		if p.Fn == nil {
			t.Errorf("pass %q has no function", p.Name)
		}
		if len(p.Modes) == 0 {
			t.Errorf("pass %q applies to no mode", p.Name)
		}
	}
	if err := checkOrder(ps, order); err != nil {
		t.Error(err)
	}
	if !slices.ContainsFunc(ps, func(p Pass) bool {
		return p.Name == "autodiff" && p.Required && slices.Equal(p.Modes, []ir.Mode{ir.Train})
	}) {
		t.Errorf("autodiff is not a required train-mode pass")
	}
	ps[0].Name = "changed"
	if Passes()[0].Name == "changed" {
		t.Errorf("Passes returns the table itself, not a copy")
	}
}

// TestCheckOrder checks the ordering checker on tables that break it.
func TestCheckOrder(t *testing.T) {
	ps := []Pass{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	type rules = []struct{ before, after string }
	for _, c := range []struct {
		order rules
		want  string
	}{
		{rules{{"a", "b"}, {"b", "c"}, {"a", "c"}}, ""},
		{rules{{"a", "b"}, {"c", "b"}}, `pass "c" must run before "b"`},
		{rules{{"a", "a"}}, `pass "a" must run before "a"`},
		{rules{{"a", "fold-bn"}}, `order constraint a < fold-bn: no pass "fold-bn"`},
		{rules{{"layout", "c"}}, `order constraint layout < c: no pass "layout"`},
	} {
		err := checkOrder(ps, c.order)
		if got := errString(err); got != c.want {
			t.Errorf("checkOrder(%v) = %q, want %q", c.order, got, c.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestRun checks the real pipeline: a train graph becomes a training step
// that verifies, an infer graph is left as it is, and StopAfter names are
// checked.
func TestRun(t *testing.T) {
	g := lowerTiny(t, ir.Train)
	if _, err := Run(g, RunOptions{VerifyEach: true}); err != nil {
		t.Fatal(err)
	}
	if g.Output("loss") == nil || len(g.Decls(ir.Param)) == 0 {
		t.Errorf("Run on a train graph gave no training step")
	}

	g = lowerTiny(t, ir.Infer)
	if _, err := Run(g, RunOptions{VerifyEach: true}); err != nil {
		t.Fatal(err)
	}
	if numOpsOfKind(g, ir.BNFold) == 0 {
		t.Errorf("Run on an infer graph folded no BatchNorm")
	}
	if numOpsOfKind(g, ir.SGD) != 0 || g.Output("loss") != nil {
		t.Errorf("Run on an infer graph added a training step")
	}

	// With a budget, the remat pass recomputes until the plan fits it.
	g = lowerTiny(t, ir.Train)
	if _, err := Run(g.Clone(), RunOptions{Budget: -1}); err == nil || err.Error() != "budget -1 bytes is negative" {
		t.Errorf("negative budget: error %v", err)
	}
	full := g.Clone()
	if _, err := Run(full, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := PlanMemory(full)
	if err != nil {
		t.Fatal(err)
	}
	budget := tightestArena(t, full)
	c, err := Run(g, RunOptions{VerifyEach: true, Budget: budget})
	if err != nil {
		t.Fatalf("budget %d (no budget: %d): %v", budget, p.ArenaBytes, err)
	}
	if c.Remat == nil || c.Remat.OpsCloned == 0 || c.Remat.ArenaBytes > budget {
		t.Errorf("budget %d (no budget: %d): remat report %+v", budget, p.ArenaBytes, c.Remat)
	}
	if q, err := PlanMemory(g); err != nil || q.ArenaBytes > budget {
		t.Errorf("budget %d: planned arena after the pipeline %v, error %v", budget, q.ArenaBytes, err)
	}

	g = lowerTiny(t, ir.Train)
	if _, err := Run(g, RunOptions{StopAfter: "autodiff"}); err != nil || g.Output("loss") == nil {
		t.Errorf("StopAfter autodiff: error %v, loss output %v", err, g.Output("loss"))
	}

	g = lowerTiny(t, ir.Train)
	before := ir.Print(g)
	_, err = Run(g, RunOptions{StopAfter: "fold"})
	if want := `unknown pass "fold" (passes: fold-bn, fuse-bn-relu-conv, autodiff`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("StopAfter fold: error %v, want prefix %q", err, want)
	}
	if ir.Print(g) != before {
		t.Errorf("StopAfter with an unknown name changed the graph")
	}
	if _, err := Run(g, RunOptions{Disable: []string{"autodiff"}}); err == nil || !strings.Contains(err.Error(), `pass "autodiff" is required`) {
		t.Errorf("disabling autodiff: error %v, want one saying it is required", err)
	}
}

// TestRunWrapsErrors checks that a pass error from the real table is
// returned once wrapped with the pass name.
func TestRunWrapsErrors(t *testing.T) {
	g := linearGraph(ir.Train)
	g.Outputs[0].Name = "scores"
	_, err := Run(g, RunOptions{VerifyEach: true})
	if err == nil || err.Error() != `autodiff: graph has no output "logits"` {
		t.Fatalf("error %v, want exactly %q", err, `autodiff: graph has no output "logits"`)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Pass != "autodiff" {
		t.Errorf("error is not a pass *Error of autodiff")
	}
}

// recorder builds synthetic passes that record that they ran.
type recorder struct{ ran []string }

func (r *recorder) pass(name string, modes []ir.Mode, fn func(*ir.Graph) error) Pass {
	return Pass{Name: name, Modes: modes, Fn: func(g *ir.Graph, _ *Context) error {
		r.ran = append(r.ran, name)
		if fn != nil {
			return fn(g)
		}
		return nil
	}}
}

var both = []ir.Mode{ir.Infer, ir.Train}

// TestRunSynthetic checks the driver on synthetic tables: modes, StopAfter,
// Disable, error wrapping, panics and verification after each pass.
func TestRunSynthetic(t *testing.T) {
	boom := func(*ir.Graph) error { panic("BUG: boom") }
	fail := func(*ir.Graph) error { return errors.New("no good") }
	// break adds an output that refers to a value outside the graph.
	breakIt := func(g *ir.Graph) error {
		g.AddOutput("stray", &ir.Value{Type: ir.T32(1), Def: &ir.Op{Kind: ir.ReLU}})
		return nil
	}
	for _, c := range []struct {
		name    string
		passes  func(r *recorder) []Pass
		opts    RunOptions
		ran     []string
		wantErr string // prefix
	}{
		{"all", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, nil), r.pass("b", both, nil), r.pass("c", both, nil)}
		}, RunOptions{}, []string{"a", "b", "c"}, ""},
		{"modes", func(r *recorder) []Pass {
			return []Pass{r.pass("a", []ir.Mode{ir.Infer}, nil), r.pass("b", []ir.Mode{ir.Train}, nil)}
		}, RunOptions{}, []string{"b"}, ""},
		{"stop after", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, nil), r.pass("b", both, nil), r.pass("c", both, nil)}
		}, RunOptions{StopAfter: "b"}, []string{"a", "b"}, ""},
		{"stop after a skipped pass", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, nil), r.pass("b", []ir.Mode{ir.Infer}, nil), r.pass("c", both, nil)}
		}, RunOptions{StopAfter: "b"}, []string{"a"}, ""},
		{"unknown stop", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, nil), r.pass("b", both, nil)}
		}, RunOptions{StopAfter: "z"}, nil, `unknown pass "z" (passes: a, b)`},
		{"disable", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, nil), r.pass("b", both, nil), r.pass("c", both, nil)}
		}, RunOptions{Disable: []string{"b"}}, []string{"a", "c"}, ""},
		{"disable unknown", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, nil)}
		}, RunOptions{Disable: []string{"q"}}, nil, `unknown pass "q" (passes: a)`},
		{"error", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, nil), r.pass("b", both, fail), r.pass("c", both, nil)}
		}, RunOptions{}, []string{"a", "b"}, "b: no good"},
		{"panic", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, boom), r.pass("b", both, nil)}
		}, RunOptions{}, []string{"a"}, "a: panic: BUG: boom\n"},
		{"verify each", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, nil), r.pass("b", both, breakIt), r.pass("c", both, nil)}
		}, RunOptions{VerifyEach: true}, []string{"a", "b"}, `b: graph does not verify after the pass: output 1 "stray"`},
		{"no verify", func(r *recorder) []Pass {
			return []Pass{r.pass("a", both, nil), r.pass("b", both, breakIt), r.pass("c", both, nil)}
		}, RunOptions{}, []string{"a", "b", "c"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{}
			g := linearGraph(ir.Train)
			err := run(g, c.passes(r), c.opts, &Context{})
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case c.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), c.wantErr)):
				t.Errorf("error %v, want prefix %q", err, c.wantErr)
			}
			if !slices.Equal(r.ran, c.ran) {
				t.Errorf("ran %v, want %v", r.ran, c.ran)
			}
		})
	}

	// An invalid graph is reported before the first pass runs.
	r := &recorder{}
	g := linearGraph(ir.Train)
	breakIt(g)
	err := run(g, []Pass{r.pass("a", both, nil)}, RunOptions{VerifyEach: true}, &Context{})
	if err == nil || !strings.HasPrefix(err.Error(), "graph does not verify before the first pass") || len(r.ran) != 0 {
		t.Errorf("invalid input: error %v, ran %v", err, r.ran)
	}
}

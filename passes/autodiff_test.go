package passes

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/resnetc/resnetc/ir"
	"github.com/resnetc/resnetc/ir/resnet"
)

// tinyArch is a small full pre-activation network with a growing stage.
func tinyArch() *resnet.Arch {
	return &resnet.Arch{
		Name:       "tiny",
		InputH:     4,
		InputW:     4,
		InputC:     3,
		Classes:    3,
		Stem:       resnet.Stem{Kernel: 3, Stride: 1, Width: 4},
		Unit:       resnet.Basic,
		Order:      resnet.FullPreact,
		Shortcut:   resnet.Shortcut{Kind: resnet.Identity},
		Grow:       resnet.GrowB,
		Stages:     []resnet.Stage{{Units: 1, Width: 4, Stride: 1}, {Units: 1, Width: 8, Stride: 2}},
		BNEps:      1e-5,
		BNMomentum: 0.1,
	}
}

func lowerTiny(t *testing.T, mode ir.Mode) *ir.Graph {
	t.Helper()
	g, err := resnet.Lower(tinyArch(), 2, mode)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// linearGraph is a linear classifier: x [2,4] -> logits [2,3].
func linearGraph(mode ir.Mode) *ir.Graph {
	g := ir.New("linear", mode)
	x := g.Decl(ir.Input, "x", ir.T32(2, 4), nil)
	w := g.Decl(ir.Param, "fc.weight", ir.T32(3, 4), nil)
	b := g.Decl(ir.Param, "fc.bias", ir.T32(3), nil)
	g.AddOutput("logits", g.MustOp(ir.Linear, "fc", nil, x, w, b).Result())
	return g
}

// TestAutodiffStep checks the structure of the training step: the new
// inputs, the loss, one momentum state and sgd op per param with updates,
// the forward graph's running-statistics updates kept, and a graph that
// verifies.
func TestAutodiffStep(t *testing.T) {
	g := lowerTiny(t, ir.Train)
	fwdUpdates := append([]ir.Update(nil), g.Updates...)
	params := g.Decls(ir.Param)
	if err := Autodiff(g); err != nil {
		t.Fatal(err)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatalf("training step does not verify: %v", err)
	}
	labels, lr := g.Lookup("labels"), g.Lookup("lr")
	if labels == nil || labels.Kind != ir.Input || labels.Result().Type.String() != "i32[2]" {
		t.Errorf(`input "labels" is %v, want input i32[2]`, labels)
	}
	if lr == nil || lr.Kind != ir.Input || lr.Result().Type.String() != "f32[]" {
		t.Errorf(`input "lr" is %v, want input f32[]`, lr)
	}
	logits, loss := g.Output("logits"), g.Output("loss")
	if logits == nil || loss == nil {
		t.Fatalf("outputs %v, want logits and loss", g.Outputs)
	}
	if op := loss.Def; op.Kind != ir.SoftmaxCE || op.Args[0] != logits || op.Args[1] != labels.Result() {
		t.Errorf("loss is %s, want softmaxce(logits, labels)", ir.FormatOp(g, op))
	}
	if n := len(g.Decls(ir.Param)); n != len(params) {
		t.Errorf("%d params after autodiff, %d before", n, len(params))
	}
	if !cmp.Equal(g.Updates[:len(fwdUpdates)], fwdUpdates, cmp.Comparer(func(a, b *ir.Value) bool { return a == b })) {
		t.Errorf("the forward graph's updates were changed")
	}
	updates := map[*ir.Value]*ir.Value{}
	for _, u := range g.Updates {
		updates[u.Target] = u.Value
	}
	sgdOf := map[*ir.Value]*ir.Op{}
	for _, op := range g.Ops {
		if op.Kind == ir.SGD {
			if sgdOf[op.Args[0]] != nil {
				t.Errorf("two sgd ops for %s", op.Args[0].Def.Name)
			}
			sgdOf[op.Args[0]] = op
		}
	}
	for _, p := range params {
		w := p.Result()
		sgd := sgdOf[w]
		if sgd == nil {
			t.Errorf("param %q has no sgd op", p.Name)
			continue
		}
		if sgd.Name != p.Name+".sgd" || len(sgd.Attrs) != 0 {
			t.Errorf("sgd of %q is %s, want name %q and default attributes", p.Name, ir.FormatOp(g, sgd), p.Name+".sgd")
		}
		grad, m := sgd.Args[1], sgd.Args[2]
		if k := grad.Def.Kind; k.IsDecl() || !isGradientKind(k) && k != ir.Add {
			t.Errorf("gradient of %q comes from %s", p.Name, ir.FormatOp(g, grad.Def))
		}
		if m.Def.Kind != ir.State || m.Def.Name != p.Name+".momentum" || len(m.Def.Attrs) != 0 || !m.Type.Equal(w.Type) {
			t.Errorf("momentum of %q is %s, want a zero-initialized state %q of its type", p.Name, ir.FormatOp(g, m.Def), p.Name+".momentum")
		}
		if sgd.Args[3] != lr.Result() {
			t.Errorf("sgd of %q does not read lr", p.Name)
		}
		if updates[w] != sgd.Results[0] || updates[m] != sgd.Results[1] {
			t.Errorf("param %q and its momentum are not updated from its sgd op", p.Name)
		}
	}
}

// TestAutodiffWith checks that other hyperparameters appear as attributes
// and that invalid ones are rejected.
func TestAutodiffWith(t *testing.T) {
	g := linearGraph(ir.Train)
	if err := AutodiffWith(SGDOptions{Momentum: 0.5, Decay: 0})(g); err != nil {
		t.Fatal(err)
	}
	for _, op := range g.Ops {
		if op.Kind == ir.SGD {
			if op.Float("momentum") != 0.5 || op.Float("decay") != 0 || len(op.Attrs) != 2 {
				t.Errorf("%s: want momentum=0.5, decay=0.0", ir.FormatOp(g, op))
			}
		}
	}
	for _, o := range []SGDOptions{{Momentum: 1}, {Momentum: -0.1}, {Decay: -1}} {
		g := linearGraph(ir.Train)
		if err := AutodiffWith(o)(g); err == nil || !strings.HasPrefix(err.Error(), "autodiff: SGD") {
			t.Errorf("AutodiffWith(%+v): error %v, want one about the SGD options", o, err)
		}
	}
}

// TestAutodiffErrors checks that bad graphs are rejected with an error
// saying why, and are left unchanged.
func TestAutodiffErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		graph func() *ir.Graph
		want  string
	}{
		{"infer", func() *ir.Graph { return lowerTiny(t, ir.Infer) }, "autodiff: graph is in infer mode"},
		{"no logits", func() *ir.Graph {
			g := linearGraph(ir.Train)
			g.Outputs[0].Name = "scores"
			return g
		}, `autodiff: graph has no output "logits"`},
		{"twice", func() *ir.Graph {
			g := linearGraph(ir.Train)
			if err := Autodiff(g); err != nil {
				t.Fatal(err)
			}
			return g
		}, `autodiff: graph already has an output "loss"`},
		{"labels declared", func() *ir.Graph {
			g := linearGraph(ir.Train)
			g.Decl(ir.Input, "labels", ir.T32(2), nil)
			return g
		}, `autodiff: graph already declares "labels"`},
		{"logits rank", func() *ir.Graph {
			g := ir.New("conv", ir.Train)
			x := g.Decl(ir.Input, "x", ir.T32(2, 1, 3, 3), nil)
			w := g.Decl(ir.Param, "w", ir.T32(2, 1, 1, 1), nil)
			g.AddOutput("logits", g.MustOp(ir.Conv2D, "conv", nil, x, w).Result())
			return g
		}, `autodiff: output "logits" is f32[2,2,3,3], want f32[N,K]`},
		{"unused param", func() *ir.Graph {
			g := linearGraph(ir.Train)
			g.Decl(ir.Param, "orphan", ir.T32(3), nil)
			return g
		}, `autodiff: gradients: param "orphan" does not influence`},
		{"param updated", func() *ir.Graph {
			g := linearGraph(ir.Train)
			w := g.Lookup("fc.weight").Result()
			g.AddUpdate(w, g.MustOp(ir.Scale, "shrink", ir.Attrs{"factor": 0.5}, w).Result())
			return g
		}, `autodiff: param "fc.weight" already has an update`},
		{"gradient through ema", func() *ir.Graph {
			// A param whose only path to the logits is an ema.
			g := linearGraph(ir.Train)
			run := g.Decl(ir.State, "run", ir.T32(3), nil)
			p := g.Decl(ir.Param, "p", ir.T32(3), nil)
			e := g.MustOp(ir.EMA, "avg", nil, run, p).Result()
			l := g.Output("logits").Def
			l.Args[2] = g.MustOp(ir.Add, "bias", nil, l.Args[2], e).Result()
			// Keep the schedule order: move the linear to the end.
			g.Ops = append(removeOp(g.Ops, l), l)
			return g
		}, `autodiff: gradients: ema "avg": a gradient must flow through it, but ema`},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := c.graph()
			before := ir.Print(g)
			err := Autodiff(g)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error %v, want prefix %q", err, c.want)
			}
			if pe := (*Error)(nil); !errors.As(err, &pe) || pe.Pass != "autodiff" {
				t.Errorf("error %T is not a pass *Error of autodiff", err)
			}
			if d := cmp.Diff(before, ir.Print(g)); d != "" {
				t.Errorf("graph changed on error (-before +after):\n%s", d)
			}
		})
	}
}

func removeOp(ops []*ir.Op, op *ir.Op) []*ir.Op {
	var out []*ir.Op
	for _, o := range ops {
		if o != op {
			out = append(out, o)
		}
	}
	return out
}

// TestGradientsErrors checks Gradients' own errors, and that the graph is
// unchanged after each.
func TestGradientsErrors(t *testing.T) {
	type setup struct {
		g           *ir.Graph
		ys, dys, xs []*ir.Value
	}
	base := func() (*ir.Graph, *ir.Value, *ir.Value, *ir.Value) {
		g := ir.New("g", ir.Train)
		a := g.Decl(ir.Param, "a", ir.T32(2, 3), nil)
		b := g.Decl(ir.Param, "b", ir.T32(2, 3), nil)
		y := g.MustOp(ir.ReLU, "r", nil, a).Result()
		return g, a, b, y
	}
	for _, c := range []struct {
		name  string
		setup func() setup
		want  string
	}{
		{"seed count", func() setup {
			g, a, _, y := base()
			return setup{g, []*ir.Value{y}, nil, []*ir.Value{a}}
		}, "gradients: 1 values but 0 seeds"},
		{"not influencing", func() setup {
			g, _, b, y := base()
			dy := g.Decl(ir.Input, "dy", y.Type, nil)
			return setup{g, []*ir.Value{y}, []*ir.Value{dy}, []*ir.Value{b}}
		}, `gradients: param "b" does not influence`},
		{"nil seed", func() setup {
			g, a, _, y := base()
			return setup{g, []*ir.Value{y}, []*ir.Value{nil}, []*ir.Value{a}}
		}, `gradients: a nil seed (1) is only supported for a softmaxce loss, not for relu "r"`},
		{"seed type", func() setup {
			g, a, _, y := base()
			dy := g.Decl(ir.Input, "dy", ir.T32(3, 2), nil)
			return setup{g, []*ir.Value{y}, []*ir.Value{dy}, []*ir.Value{a}}
		}, `gradients: the seed of relu "r" is f32[3,2], want f32[2,3]`},
		{"foreign value", func() setup {
			g, a, _, y := base()
			other := ir.New("other", ir.Train)
			dy := other.Decl(ir.Input, "dy", y.Type, nil)
			return setup{g, []*ir.Value{y}, []*ir.Value{dy}, []*ir.Value{a}}
		}, `gradients: seed of y[0]: input "dy" is not a value of graph "g"`},
		{"nil x", func() setup {
			g, _, _, y := base()
			dy := g.Decl(ir.Input, "dy", y.Type, nil)
			return setup{g, []*ir.Value{y}, []*ir.Value{dy}, []*ir.Value{nil}}
		}, "gradients: x[0]: nil value"},
		{"i32 x", func() setup {
			g := ir.New("g", ir.Train)
			logits := g.Decl(ir.Param, "logits", ir.T32(2, 3), nil)
			labels := g.Decl(ir.Input, "labels", ir.Type{DType: ir.I32, Shape: ir.Shape{2}}, nil)
			loss := g.MustOp(ir.SoftmaxCE, "loss", nil, logits, labels).Result()
			return setup{g, []*ir.Value{loss}, []*ir.Value{nil}, []*ir.Value{labels}}
		}, `gradients: input "labels" is i32[2], only f32 values have gradients`},
		{"explicit seed into softmaxce", func() setup {
			g := ir.New("g", ir.Train)
			logits := g.Decl(ir.Param, "logits", ir.T32(2, 3), nil)
			labels := g.Decl(ir.Input, "labels", ir.Type{DType: ir.I32, Shape: ir.Shape{2}}, nil)
			loss := g.MustOp(ir.SoftmaxCE, "loss", nil, logits, labels).Result()
			y := g.MustOp(ir.Scale, "double", ir.Attrs{"factor": 2.0}, loss).Result()
			dy := g.Decl(ir.Input, "dy", y.Type, nil)
			return setup{g, []*ir.Value{y}, []*ir.Value{dy}, []*ir.Value{logits}}
		}, `gradients: softmaxce "loss": an explicit gradient reaches softmaxce`},
		{"through a gradient op", func() setup {
			g, a, _, y := base()
			z := g.MustOp(ir.ReLUGrad, "rg", nil, y, a).Result()
			dz := g.Decl(ir.Input, "dz", z.Type, nil)
			return setup{g, []*ir.Value{z}, []*ir.Value{dz}, []*ir.Value{a}}
		}, `gradients: relu_grad "rg": a gradient must flow through it, but gradient ops are not differentiated again`},
		{"invalid op", func() setup {
			g, a, _, y := base()
			y.Def.Args = append(y.Def.Args, a)
			dy := g.Decl(ir.Input, "dy", y.Type, nil)
			return setup{g, []*ir.Value{y}, []*ir.Value{dy}, []*ir.Value{a}}
		}, `gradients: op 2 is invalid: relu "r": has 2 arguments, want 1`},
		{"unnamed op", func() setup {
			g, a, _, _ := base()
			y := g.MustOp(ir.Sigmoid, "", nil, a).Result()
			return setup{g, []*ir.Value{y}, []*ir.Value{nil}, []*ir.Value{a}}
		}, `gradients: a nil seed (1) is only supported for a softmaxce loss, not for sigmoid (op 3)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.setup()
			before := ir.Print(s.g)
			_, err := Gradients(s.g, s.ys, s.dys, s.xs)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error %v, want prefix %q", err, c.want)
			}
			if d := cmp.Diff(before, ir.Print(s.g)); d != "" {
				t.Errorf("graph changed on error (-before +after):\n%s", d)
			}
		})
	}
}

// TestGradientsOnlyPath checks that only ops on a path from xs to ys are
// differentiated: y = relu(a) + b differentiated for b alone is the seed
// itself, with no op emitted, and an op off the path (relu(c), unused)
// gets no gradient.
func TestGradientsOnlyPath(t *testing.T) {
	g := ir.New("g", ir.Train)
	a := g.Decl(ir.Param, "a", ir.T32(2, 3), nil)
	b := g.Decl(ir.Param, "b", ir.T32(2, 3), nil)
	c := g.Decl(ir.Param, "c", ir.T32(2, 3), nil)
	r := g.MustOp(ir.ReLU, "r", nil, a).Result()
	g.MustOp(ir.ReLU, "unused", nil, c)
	y := g.MustOp(ir.Add, "y", nil, r, b).Result()
	dy := g.Decl(ir.Input, "dy", y.Type, nil)
	n := len(g.Ops)
	gx, err := Gradients(g, []*ir.Value{y}, []*ir.Value{dy}, []*ir.Value{b})
	if err != nil {
		t.Fatal(err)
	}
	if gx[0] != dy || len(g.Ops) != n {
		t.Errorf("gradient of b is %v with %d new ops, want the seed itself and none:\n%s", gx[0].Def, len(g.Ops)-n, ir.Print(g))
	}
	gx, err = Gradients(g, []*ir.Value{y}, []*ir.Value{dy}, []*ir.Value{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Ops) != n+1 || gx[0].Def.Kind != ir.ReLUGrad || gx[0].Def.Name != "r.dx" || gx[1] != dy {
		t.Errorf("gradients of a, b: want one relu_grad \"r.dx\" and the seed:\n%s", ir.Print(g))
	}
}

// TestGradientsSumOrder checks that a value's contributions are summed in
// reverse schedule order of its users, one add each after the first, named
// after the value, and that the output is the same every time.
func TestGradientsSumOrder(t *testing.T) {
	build := func() (*ir.Graph, []*ir.Value) {
		g := ir.New("g", ir.Train)
		x := g.Decl(ir.Param, "x", ir.T32(2, 3), nil)
		s := g.MustOp(ir.Scale, "s", ir.Attrs{"factor": 2.0}, x).Result() // user 1
		r := g.MustOp(ir.Sigmoid, "sig", nil, x).Result()                 // user 2
		m := g.MustOp(ir.Mul, "m", nil, x, r).Result()                    // user 3
		y := g.MustOp(ir.Add, "y", nil, g.MustOp(ir.Add, "sr", nil, s, m).Result(), r).Result()
		dy := g.Decl(ir.Input, "dy", y.Type, nil)
		gx, err := Gradients(g, []*ir.Value{y}, []*ir.Value{dy}, []*ir.Value{x})
		if err != nil {
			t.Fatal(err)
		}
		return g, gx
	}
	g, gx := build()
	g2, _ := build()
	if d := cmp.Diff(ir.Print(g), ir.Print(g2)); d != "" {
		t.Fatalf("two runs differ:\n%s", d)
	}
	// x's users in reverse order: m (mul, x is argument 0: m.da), sig, s.
	var sums []*ir.Op
	for _, op := range g.Ops {
		if op.Kind == ir.Add && strings.HasPrefix(op.Name, "x.") {
			sums = append(sums, op)
		}
	}
	if len(sums) != 2 || sums[0].Name != "x.dsum" || sums[1].Name != "x.dsum2" || gx[0] != sums[1].Result() {
		t.Fatalf("want sums x.dsum, x.dsum2 giving the gradient:\n%s", ir.Print(g))
	}
	if got := []string{sums[0].Args[0].Def.Name, sums[0].Args[1].Def.Name, sums[1].Args[1].Def.Name}; !cmp.Equal(got, []string{"m.da", "sig.dx", "s.dx"}) {
		t.Errorf("summed in the order %v, want [m.da sig.dx s.dx]:\n%s", got, ir.Print(g))
	}
	if sums[1].Args[0] != sums[0].Result() {
		t.Errorf("the second sum does not add to the first")
	}
}

// TestGradientsUnitSeeds checks that nil seeds of a softmaxce loss become
// the scale of softmaxce_grad: default (1) for one seed, 2 for two.
func TestGradientsUnitSeeds(t *testing.T) {
	for _, c := range []struct {
		seeds int
		attrs string
	}{{1, ""}, {2, " {scale=2.0}"}} {
		g := ir.New("g", ir.Train)
		logits := g.Decl(ir.Param, "logits", ir.T32(2, 3), nil)
		labels := g.Decl(ir.Input, "labels", ir.Type{DType: ir.I32, Shape: ir.Shape{2}}, nil)
		loss := g.MustOp(ir.SoftmaxCE, "loss", nil, logits, labels).Result()
		var ys, dys []*ir.Value
		for range c.seeds {
			ys, dys = append(ys, loss), append(dys, nil)
		}
		gx, err := Gradients(g, ys, dys, []*ir.Value{logits})
		if err != nil {
			t.Fatal(err)
		}
		want := `%3 = softmaxce_grad(%0, %1) "loss.dx"` + c.attrs + " : f32[2,3]"
		if got := ir.FormatOp(g, gx[0].Def); got != want {
			t.Errorf("%d seeds: gradient %s, want %s", c.seeds, got, want)
		}
	}
}

// TestGradientsOneStatistic checks that a bnstats with a gradient on only
// one statistic stands in a zero for the other.
func TestGradientsOneStatistic(t *testing.T) {
	g := ir.New("g", ir.Train)
	x := g.Decl(ir.Param, "x", ir.T32(2, 3), nil)
	st := g.MustOp(ir.BNStats, "bn", nil, x)
	dv := g.Decl(ir.Input, "dvar", ir.T32(3), nil)
	gx, err := Gradients(g, []*ir.Value{st.Results[1]}, []*ir.Value{dv}, []*ir.Value{x})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"%4 = scale(%3) \"bn.stats.dmean\" {factor=0.0} : f32[3]\n" +
		"%5 = bnstats_grad(%4, %3, %0, %1) \"bn.stats.dx\" : f32[2,3]"
	got := ir.FormatOp(g, g.Ops[3]) + "\n" + ir.FormatOp(g, g.Ops[4])
	if len(g.Ops) != 5 || got != want || gx[0] != g.Ops[4].Result() {
		t.Errorf("got\n%s\nwant\n%s", ir.Print(g), want)
	}
}

// TestGradientRulesCoverOpTable checks that every op kind is either a
// declaration, has a gradient rule, or is listed as not differentiable, so
// that a kind added to the op table gets a decision here.
func TestGradientRulesCoverOpTable(t *testing.T) {
	for _, k := range ir.Kinds() {
		_, rule := gradRules[k]
		_, none := noGradient[k]
		switch {
		case k.IsDecl() && (rule || none):
			t.Errorf("declaration kind %s has a gradient entry", k)
		case k.IsDecl():
		case rule && none:
			t.Errorf("op kind %s both has a gradient rule and is listed as not differentiable", k)
		case !rule && !none:
			t.Errorf("op kind %s has no gradient rule and is not listed as not differentiable", k)
		}
	}
	for k := range gradRules {
		if ir.Info(k) == nil {
			t.Errorf("gradient rule for unknown kind %s", k)
		}
	}
	for k := range noGradient {
		if ir.Info(k) == nil {
			t.Errorf("noGradient lists unknown kind %s", k)
		}
	}
}

package interp

import (
	"math"
	"strings"
	"testing"

	"github.com/resnetc/resnetc/ir"
)

func TestEveryKindHasAKernel(t *testing.T) {
	known := map[ir.OpKind]bool{}
	for _, k := range ir.Kinds() {
		known[k] = true
		if !k.IsDecl() && kernels[k] == nil {
			t.Errorf("no kernel for %s", k)
		}
	}
	for k := range kernels {
		if !known[k] {
			t.Errorf("kernel for %s, which ir does not define", k)
		}
	}
	if len(kernels) < 25 {
		t.Errorf("only %d kernels", len(kernels))
	}
}

// sgdGraph is one SGD step on a parameter w, with its update.
func sgdGraph() (*ir.Graph, *ir.Value) {
	g := ir.New("step", ir.Train)
	w := g.Decl(ir.Param, "w", ir.T32(2, 2), ir.Attrs{"init": "normal", "std": 0.1})
	mom := g.Decl(ir.State, "w.mom", ir.T32(2, 2), nil)
	gr := in(g, "g", 2, 2)
	lr := in(g, "lr")
	op := g.MustOp(ir.SGD, "sgd", ir.Attrs{"momentum": 0.5, "decay": 0.0}, w, gr, mom, lr)
	g.AddUpdate(w, op.Results[0])
	g.AddUpdate(mom, op.Results[1])
	sq := g.MustOp(ir.Mul, "", nil, op.Results[0], op.Results[0]).Result()
	g.AddOutput("w2", sq)
	return g, w
}

func TestRunResult(t *testing.T) {
	g, w := sgdGraph()
	feeds := map[string]*Tensor{
		"w":      tensor([]int{2, 2}, 1, 2, 3, 4),
		"w.mom":  tensor([]int{2, 2}, 0, 0, 0, 2),
		"g":      tensor([]int{2, 2}, 1, 1, 1, 1),
		"lr":     tensor(nil, 0.5),
		"unused": NewTensor(3), // feeds that name no declaration are ignored
	}
	r := mustRun(t, g, feeds, Options{})
	checkData(t, "w'", r.Updates["w"].Data, []float64{0.5, 1.5, 2.5, 3}, 0)
	checkData(t, "mom'", r.Updates["w.mom"].Data, []float64{1, 1, 1, 2}, 0)
	checkData(t, "w2", r.Outputs["w2"].Data, []float64{0.25, 2.25, 6.25, 9}, 0)
	if len(r.Updates) != 2 || len(r.Outputs) != 1 {
		t.Errorf("updates %v, outputs %v", len(r.Updates), len(r.Outputs))
	}
	n := 0
	for _, op := range g.Ops {
		for _, v := range op.Results {
			if r.Values[v] == nil {
				t.Errorf("no value for a result of %s", op)
			}
			n++
		}
	}
	if len(r.Values) != n {
		t.Errorf("%d values, want %d", len(r.Values), n)
	}
	// The result does not alias the feeds.
	r.Values[w].Data[0] = 99
	if feeds["w"].Data[0] != 1 {
		t.Error("changing a fed value in the result changed the feed")
	}
}

func TestRunErrors(t *testing.T) {
	g, _ := sgdGraph()
	good := func() map[string]*Tensor {
		return map[string]*Tensor{
			"w": NewTensor(2, 2), "w.mom": NewTensor(2, 2), "g": NewTensor(2, 2), "lr": NewTensor(),
		}
	}
	for _, c := range []struct {
		name   string
		change func(map[string]*Tensor)
		want   string
	}{
		{"missing", func(f map[string]*Tensor) { delete(f, "w.mom") }, `state "w.mom" is not fed`},
		{"nil", func(f map[string]*Tensor) { f["g"] = nil }, `input "g" is not fed`},
		{"shape", func(f map[string]*Tensor) { f["w"] = NewTensor(4) }, `param "w" is fed a tensor of shape [4], want [2,2]`},
		{"rank", func(f map[string]*Tensor) { f["lr"] = NewTensor(1) }, `input "lr" is fed a tensor of shape [1], want []`},
		{"data", func(f map[string]*Tensor) { f["g"].Data = f["g"].Data[:3] }, `input "g" is fed 3 values for shape [2,2]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := good()
			c.change(f)
			_, err := Run(g, f, Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := Run(g, good(), Options{}); err != nil {
		t.Errorf("unchanged feeds: %v", err)
	}
}

func TestLabelErrors(t *testing.T) {
	for _, k := range []ir.OpKind{ir.SoftmaxCE, ir.SoftmaxCEGrad} {
		g := ir.New("ce", ir.Train)
		g.MustOp(k, "head.loss", nil, in(g, "z", 3, 4), labelsIn(g, "y", 3))
		for _, c := range []struct {
			labels []float64
			want   string
		}{
			{[]float64{0, 4, 1}, string(k) + ` "head.loss": label 4 of example 1 is outside [0, 4)`},
			{[]float64{-1, 0, 1}, string(k) + ` "head.loss": label -1 of example 0 is outside [0, 4)`},
			{[]float64{0, 1, 1.5}, `input "y" is i32 but element 2 is 1.5`},
			{[]float64{0, 1, math.NaN()}, `input "y" is i32 but element 2 is NaN`},
		} {
			feeds := map[string]*Tensor{"z": NewTensor(3, 4), "y": tensor([]int{3}, c.labels...)}
			_, err := Run(g, feeds, Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s, labels %v: error %v, want one containing %q", k, c.labels, err, c.want)
			}
		}
		feeds := map[string]*Tensor{"z": NewTensor(3, 4), "y": tensor([]int{3}, 0, 3, 2)}
		if _, err := Run(g, feeds, Options{}); err != nil {
			t.Errorf("%s with valid labels: %v", k, err)
		}
	}
}

// TestRunMalformed feeds Run graphs that ir.Verify would reject: it must
// return an error, never panic.
func TestRunMalformed(t *testing.T) {
	feeds := map[string]*Tensor{"x": NewTensor(1, 2, 3, 3), "w": NewTensor(2, 2, 3, 3)}
	build := func() (*ir.Graph, *ir.Op) {
		g := ir.New("bad", ir.Infer)
		x := in(g, "x", 1, 2, 3, 3)
		w := in(g, "w", 2, 2, 3, 3)
		op := g.MustOp(ir.Conv2D, "c", ir.Attrs{"pad": 1}, x, w)
		g.AddOutput("y", op.Result())
		return g, op
	}
	for _, c := range []struct {
		name   string
		mutate func(g *ir.Graph, op *ir.Op)
		want   string
	}{
		{"out of order", func(g *ir.Graph, op *ir.Op) { g.Ops[0], g.Ops[2] = g.Ops[2], g.Ops[0] }, "not computed before"},
		{"unknown kind", func(g *ir.Graph, op *ir.Op) { op.Kind = "bogus" }, "unknown op kind"},
		{"nil op", func(g *ir.Graph, op *ir.Op) { g.Ops[1] = nil }, "op 1 is nil"},
		{"nil arg", func(g *ir.Graph, op *ir.Op) { op.Args[1] = nil }, "argument 1 is nil"},
		{"wrong result", func(g *ir.Graph, op *ir.Op) { op.Results[0].Type = ir.T32(1, 2, 2, 2) }, "but its arguments give"},
		{"missing result", func(g *ir.Graph, op *ir.Op) { op.Results = nil }, "has 0 results"},
		{"bad attr", func(g *ir.Graph, op *ir.Op) { op.Attrs["pad"] = "one" }, "attribute pad"},
		{"output", func(g *ir.Graph, op *ir.Op) { g.Outputs[0].Value = &ir.Value{Type: ir.T32(1)} }, `output "y"`},
		{"update target", func(g *ir.Graph, op *ir.Op) { g.AddUpdate(op.Result(), op.Result()) }, "not a declaration"},
		{"decl type", func(g *ir.Graph, op *ir.Op) { g.Ops[0].Results[0].Type.Shape = ir.Shape{1, 0} }, "dimension < 1"},
		{"decl arg", func(g *ir.Graph, op *ir.Op) { g.Ops[1].Args = op.Results }, "no arguments"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, op := build()
			c.mutate(g, op)
			_, err := Run(g, feeds, Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := Run(nil, nil, Options{}); err == nil {
		t.Error("nil graph: no error")
	}
}

func TestFloat32(t *testing.T) {
	g := ir.New("f32", ir.Infer)
	x := in(g, "x", 2)
	y := g.MustOp(ir.Scale, "", ir.Attrs{"factor": 1.0, "offset": math.Ldexp(1, -30)}, x).Result()
	g.AddOutput("y", y)
	feeds := map[string]*Tensor{"x": tensor([]int{2}, 1, 1.0/3)}
	f64 := mustRun(t, g, feeds, Options{}).Outputs["y"].Data
	f32 := mustRun(t, g, feeds, Options{Float32: true}).Outputs["y"].Data
	// 1 + 2^-30 is exact in float64 and rounds to 1 in float32.
	if f64[0] != 1+math.Ldexp(1, -30) || f32[0] != 1 {
		t.Errorf("1 + 2^-30: float64 run %v, float32 run %v", f64[0], f32[0])
	}
	// The fed 1/3 is rounded to float32 before the op reads it.
	if want := float64(float32(float64(float32(1.0/3)) + math.Ldexp(1, -30))); f32[1] != want {
		t.Errorf("1/3 + 2^-30 in float32 = %v, want %v", f32[1], want)
	}
}

// TestFloat32Network runs the network of TestGradNetwork both ways: in
// float32 mode every f32 value must be a float32, and the results must
// agree with float64 to float32 accuracy.
func TestFloat32Network(t *testing.T) {
	g := ir.New("net", ir.Train)
	x := in(g, "x", 2, 3, 6, 6)
	w := in(g, "w", 4, 3, 3, 3)
	gamma, beta := in(g, "gamma", 4), in(g, "beta", 4)
	fw, fb := in(g, "fw", 3, 4), in(g, "fb", 3)
	labels := labelsIn(g, "labels", 2)
	c := g.MustOp(ir.Conv2D, "", ir.Attrs{"pad": 1, "stride": 2}, x, w).Result()
	st := g.MustOp(ir.BNStats, "", nil, c)
	bn := g.MustOp(ir.BNNorm, "", nil, c, st.Results[0], st.Results[1], gamma, beta).Result()
	d := g.MustOp(ir.Dropout, "", ir.Attrs{"rate": 0.25, "seed": 3}, g.MustOp(ir.ReLU, "", nil, bn).Result())
	logits := g.MustOp(ir.Linear, "", nil, g.MustOp(ir.GAP, "", nil, d.Results[0]).Result(), fw, fb).Result()
	g.AddOutput("loss", g.MustOp(ir.SoftmaxCE, "", nil, logits, labels).Result())
	g.AddOutput("dlogits", g.MustOp(ir.SoftmaxCEGrad, "", nil, logits, labels).Result())
	feeds := map[string]*Tensor{
		"x": Random(1, -1, 1, 2, 3, 6, 6), "w": Random(2, -1, 1, 4, 3, 3, 3),
		"gamma": Random(3, 0.5, 1.5, 4), "beta": Random(4, -1, 1, 4),
		"fw": Random(5, -1, 1, 3, 4), "fb": Random(6, -1, 1, 3), "labels": Labels(7, 3, 2),
	}
	r32 := mustRun(t, g, feeds, Options{Float32: true, Step: 5})
	r64 := mustRun(t, g, feeds, Options{Step: 5})
	for v, tv := range r32.Values {
		if v.Type.DType != ir.F32 {
			continue
		}
		for i, e := range tv.Data {
			if float64(float32(e)) != e {
				t.Fatalf("%s result %d element %d = %v is not a float32", v.Def, v.Index, i, e)
			}
		}
		checkData(t, string(v.Def.Kind), tv.Data, r64.Values[v].Data, 1e-5)
	}
}

func TestRandom(t *testing.T) {
	a := Random(42, -2, 3, 10, 10)
	b := Random(42, -2, 3, 10, 10)
	c := Random(43, -2, 3, 10, 10)
	same, lo, hi := 0, math.Inf(1), math.Inf(-1)
	for i := range a.Data {
		if a.Data[i] != b.Data[i] {
			t.Fatal("same seed, different values")
		}
		if a.Data[i] == c.Data[i] {
			same++
		}
		lo, hi = math.Min(lo, a.Data[i]), math.Max(hi, a.Data[i])
	}
	if same > 0 {
		t.Errorf("seeds 42 and 43 share %d values", same)
	}
	if lo < -2 || hi >= 3 || lo > -1.5 || hi < 2.5 {
		t.Errorf("values span [%v, %v], want most of [-2, 3)", lo, hi)
	}
	if s := Random(1, 0, 1); len(s.Data) != 1 || len(s.Shape) != 0 {
		t.Errorf("scalar: %+v", s)
	}
	l := Labels(1, 3, 300)
	counts := map[float64]int{}
	for _, v := range l.Data {
		counts[v]++
	}
	if len(counts) != 3 || counts[0] < 70 || counts[1] < 70 || counts[2] < 70 {
		t.Errorf("label counts %v, want about 100 each of 0, 1, 2", counts)
	}
}

func TestInit(t *testing.T) {
	build := func(extra bool) *ir.Graph {
		g := ir.New("init", ir.Train)
		if extra {
			g.Decl(ir.Param, "a.first", ir.T32(7), ir.Attrs{"init": "normal", "std": 1.0})
		}
		in(g, "x", 2, 2)
		g.Decl(ir.Param, "conv.weight", ir.T32(100, 10, 3, 3), ir.Attrs{"init": "normal", "std": 0.5})
		g.Decl(ir.Param, "conv2.weight", ir.T32(100, 10, 3, 3), ir.Attrs{"init": "normal", "std": 0.5})
		g.Decl(ir.Param, "fc.weight", ir.T32(50, 100), ir.Attrs{"init": "uniform", "bound": 0.25})
		g.Decl(ir.Param, "bn.gamma", ir.T32(4), ir.Attrs{"init": "ones"})
		g.Decl(ir.Param, "gate.bias", ir.T32(4), ir.Attrs{"init": "const", "value": -6})
		g.Decl(ir.State, "bn.mean", ir.T32(4), nil)
		return g
	}
	g := build(false)
	w := Init(g, 1)
	if _, ok := w["x"]; ok || len(w) != 6 {
		t.Fatalf("Init returned %d tensors (inputs included: %v), want the 6 params and states", len(w), ok)
	}
	for name, tv := range w {
		if !tv.Shape.Equal(g.Lookup(name).Results[0].Type.Shape) {
			t.Errorf("%s: shape %v", name, tv.Shape)
		}
		for _, v := range tv.Data {
			if float64(float32(v)) != v {
				t.Fatalf("%s: %v is not a float32", name, v)
			}
		}
	}
	checkData(t, "ones", w["bn.gamma"].Data, []float64{1, 1, 1, 1}, 0)
	checkData(t, "const", w["gate.bias"].Data, []float64{-6, -6, -6, -6}, 0)
	checkData(t, "zeros", w["bn.mean"].Data, []float64{0, 0, 0, 0}, 0)

	// Sample moments of 9000 normal draws (std 0.5) and 5000 uniform draws
	// on [-0.25, 0.25] (std 0.25/sqrt(3)).
	moments := func(d []float64) (mean, std, maxAbs float64) {
		for _, v := range d {
			mean += v
			maxAbs = math.Max(maxAbs, math.Abs(v))
		}
		mean /= float64(len(d))
		for _, v := range d {
			std += (v - mean) * (v - mean)
		}
		return mean, math.Sqrt(std / float64(len(d))), maxAbs
	}
	if m, s, _ := moments(w["conv.weight"].Data); math.Abs(m) > 0.02 || math.Abs(s-0.5) > 0.02 {
		t.Errorf("normal(0, 0.5): sample mean %v, std %v", m, s)
	}
	if m, s, mx := moments(w["fc.weight"].Data); math.Abs(m) > 0.01 || math.Abs(s-0.25/math.Sqrt(3)) > 0.005 || mx > 0.25 || mx < 0.24 {
		t.Errorf("uniform(±0.25): sample mean %v, std %v, max |v| %v", m, s, mx)
	}

	// Deterministic, seed-dependent, and independent of the other layers.
	again := Init(build(true), 1)
	other := Init(g, 2)
	for name := range w {
		checkData(t, name+" with a layer added", again[name].Data, w[name].Data, 0)
	}
	if other["conv.weight"].Data[0] == w["conv.weight"].Data[0] {
		t.Error("seeds 1 and 2 give the same first weight")
	}
	// Two declarations alike but for their names draw different values.
	same := 0
	for i, v := range w["conv.weight"].Data {
		if v == w["conv2.weight"].Data[i] {
			same++
		}
	}
	if same > 0 {
		t.Errorf("conv.weight and conv2.weight share %d values", same)
	}
}

package ir_test

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	_ "github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
)

// coverTrain builds a small, valid training graph that uses every op kind
// a training step can contain. The ops are type-correct rather than a
// meaningful network; names, attributes and layouts exercise the printer.
func coverTrain() *ir.Graph {
	g := ir.New("cover \"train\" ∑ \t\x00\xff", ir.Train)
	x := g.Decl(ir.Input, "x", ir.T32(2, 3, 4, 4), nil)
	labels := g.Decl(ir.Input, "labels", ir.Type{DType: ir.I32, Shape: ir.Shape{2}}, nil)
	lr := g.Decl(ir.Input, "lr", ir.T32(), nil)
	x8 := g.Decl(ir.Input, "x8c", ir.Type{DType: ir.F32, Shape: ir.Shape{2, 8, 4, 4}, Layout: ir.NCHW8c}, nil)
	w := g.Decl(ir.Param, "stem.conv.weight", ir.T32(8, 3, 3, 3), ir.Attrs{"init": "normal", "std": 0.2721655269759087})
	b := g.Decl(ir.Param, "stem.conv.bias", ir.T32(8), ir.Attrs{"init": "const", "value": -3})
	w8 := g.Decl(ir.Param, "blocked.weight", ir.T32(8, 8, 1, 1), ir.Attrs{"init": "uniform", "bound": 1.0 / 3.0})
	gamma := g.Decl(ir.Param, "bn.gamma", ir.T32(8), ir.Attrs{"init": "ones"})
	beta := g.Decl(ir.Param, "bn.beta", ir.T32(8), nil)
	rmean := g.Decl(ir.State, "bn.running_mean", ir.T32(8), nil)
	rvar := g.Decl(ir.State, "bn.running_var", ir.T32(8), ir.Attrs{"init": "const", "value": 1.0})
	mom := g.Decl(ir.State, "stem.conv.weight.momentum", ir.T32(8, 3, 3, 3), nil)
	wfc := g.Decl(ir.Param, "fc.weight", ir.T32(10, 16), ir.Attrs{"init": "uniform", "bound": 0.25})
	bfc := g.Decl(ir.Param, "fc.bias", ir.T32(10), nil)

	conv := g.MustOp(ir.Conv2D, "stem.conv", ir.Attrs{"pad": 1}, x, w, b).Result()
	g.MustOp(ir.Conv2D, "", ir.Attrs{"stride": 2, "pad": 1}, x, w)
	// conv2d is layout-free: the layout pass chooses its result's layout.
	blockedOp := g.MustOp(ir.Conv2D, "blocked", nil, x8, w8)
	blockedOp.Results[0].Type.Layout = ir.NCHW8c
	blocked := blockedOp.Result()
	blockedRelu := g.MustOp(ir.ReLU, "blocked.relu", nil, blocked).Result()
	st := g.MustOp(ir.BNStats, "bn", nil, conv)
	mean, vr := st.Results[0], st.Results[1]
	bn := g.MustOp(ir.BNNorm, "bn", ir.Attrs{"eps": 1e-5}, conv, mean, vr, gamma, beta).Result()
	emaMean := g.MustOp(ir.EMA, "bn.ema_mean", ir.Attrs{"momentum": 0.1}, rmean, mean).Result()
	emaVar := g.MustOp(ir.EMA, "bn.ema_var", ir.Attrs{"momentum": 0.1, "scale": 32.0 / 31.0}, rvar, vr).Result()
	r := g.MustOp(ir.ReLU, "s1.u1.relu", nil, bn).Result()
	s := g.MustOp(ir.Sigmoid, "gate ‹g›", nil, bn).Result()
	a := g.MustOp(ir.Add, "add", nil, r, s).Result()
	m := g.MustOp(ir.Mul, "mul", nil, a, conv).Result()
	sc := g.MustOp(ir.Scale, "scale", ir.Attrs{"factor": -6.0, "offset": 1.0 / 3.0}, m).Result()
	drop := g.MustOp(ir.Dropout, "drop", ir.Attrs{"rate": 0.5, "seed": math.MaxInt}, sc)
	sp := g.MustOp(ir.SubsamplePad, "optA", ir.Attrs{"channels": 16}, drop.Results[0]).Result()
	mp := g.MustOp(ir.MaxPool, "pool", ir.Attrs{"kernel": 3, "stride": 1, "pad": 1}, sp).Result()
	gp := g.MustOp(ir.GAP, "gap", nil, mp).Result()
	logits := g.MustOp(ir.Linear, "fc", nil, gp, wfc, bfc).Result()
	loss := g.MustOp(ir.SoftmaxCE, "loss", nil, logits, labels).Result()
	dlogits := g.MustOp(ir.SoftmaxCEGrad, "loss.grad", ir.Attrs{"scale": 1e300}, logits, labels).Result()
	dgp := g.MustOp(ir.LinearDx, "fc.dx", nil, dlogits, wfc).Result()
	g.MustOp(ir.LinearDw, "fc.dw", nil, dlogits, gp)
	dmp := g.MustOp(ir.GAPGrad, "gap.grad", ir.Attrs{"in_h": 2, "in_w": 2}, dgp).Result()
	dsp := g.MustOp(ir.MaxPoolGrad, "pool.grad", ir.Attrs{"kernel": 3, "stride": 1, "pad": 1}, dmp, sp).Result()
	dy := g.MustOp(ir.SubsamplePadGrad, "optA.grad", ir.Attrs{"channels": 8, "in_h": 4, "in_w": 4}, dsp).Result()
	drelu := g.MustOp(ir.ReLUGrad, "relu.grad", nil, dy, r).Result()
	g.MustOp(ir.SigmoidGrad, "gate.grad", nil, dy, s)
	bng := g.MustOp(ir.BNNormGrad, "bn.grad", ir.Attrs{"eps": 1e-5}, drelu, conv, mean, vr, gamma)
	dconv := g.MustOp(ir.BNStatsGrad, "bnstats.grad", nil, bng.Results[1], bng.Results[2], conv, mean).Result()
	dx := g.MustOp(ir.Conv2DDx, "stem.conv.dx", ir.Attrs{"pad": 1, "in_h": 4, "in_w": 4}, dconv, w).Result()
	dw := g.MustOp(ir.Conv2DDw, "stem.conv.dw", ir.Attrs{"pad": 1, "kernel": 3}, dconv, x).Result()
	db := g.MustOp(ir.ChanSum, "stem.conv.db", nil, dconv).Result()
	sgd := g.MustOp(ir.SGD, "stem.conv.sgd", ir.Attrs{"momentum": 0.9, "decay": 1e-4}, w, dw, mom, lr)

	// A fused, blocked pre-activation conv and its backward: statistics
	// from a conv epilogue, BatchNorm as scale and shift, recomputed
	// prologue in the weight gradient.
	f1 := g.MustOp(ir.Conv2DFused, "f1", ir.Attrs{"prologue": "none", "bias": false, "stats": true}, x8, w8)
	f1.Results[0].Type.Layout = ir.NCHW8c
	fy, fsum, fsumsq := f1.Results[0], f1.Results[1], f1.Results[2]
	fm := g.MustOp(ir.Moments, "f2.bn.moments", ir.Attrs{"count": 32}, fsum, fsumsq)
	fmean, fvar := fm.Results[0], fm.Results[1]
	fa := g.MustOp(ir.BNAffine, "f2.bn", nil, fmean, fvar, gamma, beta)
	fscale, fshift := fa.Results[0], fa.Results[1]
	f2 := g.MustOp(ir.Conv2DFused, "f2", ir.Attrs{"prologue": "affine_relu", "residual": true, "relu": true, "stats": true},
		fy, w8, fscale, fshift, blockedRelu)
	f2.Results[0].Type.Layout = ir.NCHW8c
	fy2 := f2.Results[0]
	fdy := g.MustOp(ir.StatsGrad, "f2.stats.grad", nil, f2.Results[1], f2.Results[2], fy2).Result()
	fdz := g.MustOp(ir.ReLUGrad, "f2.relu.grad", nil, fdy, fy2).Result()
	g.MustOp(ir.Conv2DDwFused, "f2.dw", ir.Attrs{"kernel": 1, "prologue": "affine_relu"}, fdz, fy, fscale, fshift)
	g.MustOp(ir.Conv2DDwFused, "f1.dw", ir.Attrs{"kernel": 1, "stride": 1, "pad": 0, "prologue": "relu"}, fdz, x8)
	fdaOp := g.MustOp(ir.Conv2DDx, "f2.dx", ir.Attrs{"in_h": 4, "in_w": 4}, fdz, w8)
	fdaOp.Results[0].Type.Layout = ir.NCHW8c
	far := g.MustOp(ir.AffineReLUGrad, "f2.prologue.grad", nil, fdaOp.Result(), fy, fscale, fshift)
	fbg := g.MustOp(ir.BNAffineGrad, "f2.bn.grad", ir.Attrs{"eps": 1e-3}, far.Results[1], far.Results[2], fmean, fvar, gamma)
	fmg := g.MustOp(ir.MomentsGrad, "f2.bn.moments.grad", ir.Attrs{"count": 32}, fbg.Results[0], fbg.Results[1], fmean)
	fdx := g.MustOp(ir.Add, "f1.dy", nil, far.Results[0],
		g.MustOp(ir.StatsGrad, "f1.stats.grad", nil, fmg.Results[0], fmg.Results[1], fy).Result()).Result()
	fdxPlain := g.MustOp(ir.Relayout, "f1.dy.nchw", ir.Attrs{"layout": "nchw"}, fdx).Result()

	g.AddOutput("loss", loss)
	g.AddOutput("dx", dx)
	g.AddOutput("logits ‹10›", logits)
	g.AddOutput("f1.dy", fdxPlain)
	g.AddUpdate(beta, fbg.Results[3])
	g.AddUpdate(w, sgd.Results[0])
	g.AddUpdate(mom, sgd.Results[1])
	g.AddUpdate(rmean, emaMean)
	g.AddUpdate(rvar, emaVar)
	g.AddUpdate(b, db)
	return g
}

// coverInfer builds a small, valid inference graph: every op an inference
// step can contain.
func coverInfer() *ir.Graph {
	g := ir.New("preact-resnet-20", ir.Infer)
	x := g.Decl(ir.Input, "x", ir.T32(2, 3, 8, 8), nil)
	labels := g.Decl(ir.Input, "labels", ir.Type{DType: ir.I32, Shape: ir.Shape{2}}, nil)
	w := g.Decl(ir.Param, "stem.conv.weight", ir.T32(4, 3, 3, 3), ir.Attrs{"init": "normal", "std": 0.27})
	mean := g.Decl(ir.State, "bn.mean", ir.T32(4), nil)
	vr := g.Decl(ir.State, "bn.var", ir.T32(4), ir.Attrs{"init": "ones"})
	gamma := g.Decl(ir.Param, "bn.gamma", ir.T32(4), ir.Attrs{"init": "ones"})
	beta := g.Decl(ir.Param, "bn.beta", ir.T32(4), nil)
	wfc := g.Decl(ir.Param, "fc.weight", ir.T32(5, 8), nil)
	bfc := g.Decl(ir.Param, "fc.bias", ir.T32(5), nil)

	c := g.MustOp(ir.Conv2D, "stem.conv", ir.Attrs{"stride": 2, "pad": 1}, x, w).Result()
	bn := g.MustOp(ir.BNNorm, "bn", ir.Attrs{"eps": 2e-5}, c, mean, vr, gamma, beta).Result()
	r := g.MustOp(ir.ReLU, "relu", nil, bn).Result()
	s := g.MustOp(ir.Sigmoid, "gate", nil, r).Result()
	one := g.MustOp(ir.Scale, "1-g", ir.Attrs{"factor": -1, "offset": 1.0}, s).Result()
	m := g.MustOp(ir.Mul, "gated", nil, one, r).Result()
	a := g.MustOp(ir.Add, "sum", nil, m, c).Result()
	p := g.MustOp(ir.MaxPool, "pool", ir.Attrs{"kernel": 3, "stride": 2, "pad": 1}, a).Result()
	sp := g.MustOp(ir.SubsamplePad, "optA", ir.Attrs{"stride": 1, "channels": 8}, p).Result()
	gp := g.MustOp(ir.GAP, "gap", nil, sp).Result()
	logits := g.MustOp(ir.Linear, "fc", nil, gp, wfc, bfc).Result()
	loss := g.MustOp(ir.SoftmaxCE, "loss", nil, logits, labels).Result()
	g.AddOutput("logits", logits)
	g.AddOutput("loss", loss)

	// A folded, fused, blocked unit: BatchNorm folded into a conv's
	// weights, or applied as a prologue, on NCHW8c tensors.
	xb := g.Decl(ir.Input, "xb", ir.T32(2, 8, 4, 4), nil)
	wb := g.Decl(ir.Param, "u.conv1.weight", ir.T32(8, 8, 3, 3), ir.Attrs{"init": "normal", "std": 0.17})
	w1 := g.Decl(ir.Param, "u.proj.weight", ir.T32(8, 8, 1, 1), nil)
	b1 := g.Decl(ir.Param, "u.proj.bias", ir.T32(8), nil)
	ub := make([]*ir.Value, 4)
	for i, n := range []string{"mean", "var", "gamma", "beta"} {
		ub[i] = g.Decl(ir.State, "u.bn."+n, ir.T32(8), nil)
	}
	blocked := g.MustOp(ir.Relayout, "u.in", ir.Attrs{"layout": "nchw8c"}, xb).Result()
	fold := g.MustOp(ir.BNFold, "u.conv1.fold", nil, append([]*ir.Value{wb}, ub...)...)
	foldB := g.MustOp(ir.BNFold, "u.proj.fold", ir.Attrs{"eps": 1e-3}, append([]*ir.Value{w1, b1}, ub...)...)
	aff := g.MustOp(ir.BNAffine, "u.bn", ir.Attrs{"eps": 2e-5}, ub...)
	act := g.MustOp(ir.AffineReLU, "u.act", nil, blocked, aff.Results[0], aff.Results[1]).Result()
	conv1 := g.MustOp(ir.Conv2DFused, "u.conv1",
		ir.Attrs{"stride": 1, "pad": 1, "prologue": "affine_relu", "bias": true, "residual": true, "relu": true, "stats": false},
		blocked, fold.Results[0], fold.Results[1], aff.Results[0], aff.Results[1], act)
	conv1.Results[0].Type.Layout = ir.NCHW8c
	conv2 := g.MustOp(ir.Conv2DFused, "u.proj", ir.Attrs{"stride": 2, "prologue": "relu", "bias": true, "stats": true},
		conv1.Result(), foldB.Results[0], foldB.Results[1])
	conv2.Results[0].Type.Layout = ir.NCHW8c
	g.AddOutput("u", g.MustOp(ir.Relayout, "u.out", ir.Attrs{"layout": "nchw"}, conv2.Results[0]).Result())
	return g
}

// coverAttrs is a graph whose declarations carry attribute values of every
// type and awkward floats. Declarations are not checked against the op
// table by Parse, so it parses (and round-trips) though Verify rejects it.
func coverAttrs() *ir.Graph {
	g := ir.New("", ir.Train)
	g.Decl(ir.Input, "ints", ir.T32(1), ir.Attrs{
		"zero": 0, "neg": -3, "max": math.MaxInt, "min": math.MinInt,
		"list": []int{1, -2, 3}, "empty": []int{}, "one": []int{7},
	})
	g.Decl(ir.Input, "floats", ir.T32(1), ir.Attrs{
		"tenth": 0.1, "eps": 1e-5, "neg6": -6.0, "third": 1.0 / 3.0, "huge": 1e300,
		"tiny": 5e-324, "max": math.MaxFloat64, "negzero": math.Copysign(0, -1), "zero": 0.0,
		"big": 1e21, "mid": 123456789.0, "hundred": 100.0, "inf": math.Inf(1), "ninf": math.Inf(-1),
		"nan": math.NaN(), "small": -2.5e-300,
	})
	g.Decl(ir.Input, "misc", ir.Type{DType: ir.I32, Shape: ir.Shape{3}}, ir.Attrs{
		"yes": true, "no": false, "s": "q\"uote\\ \n\t ∑ \x00\xff", "blank": "",
	})
	g.Decl(ir.State, "", ir.Type{DType: ir.F32, Shape: ir.Shape{1, 8, 1, 1}, Layout: ir.NCHW8c}, nil)
	return g
}

// Canonical form: a pointer-free copy of a graph, in which values are
// numbered in definition order, so that go-cmp can diff two graphs and
// report where they differ. Every field of the IR is represented.

type canonGraph struct {
	Name    string
	Mode    ir.Mode
	Ops     []canonOp
	Outputs []canonUse
	Updates []canonUpdate
}

type canonOp struct {
	Kind    ir.OpKind
	Name    string
	Args    []int // value numbers; -1 unknown, -2 nil
	Results []canonValue
	Attrs   map[string]string // "go type: value", floats exactly
}

type canonValue struct {
	ID     int
	DType  ir.DType
	Shape  []int
	Layout ir.Layout
	Def    int // index of the op Def points to; -1 outside the graph
	Index  int
}

type canonUse struct {
	Name  string
	Value int
}

type canonUpdate struct{ Target, Value int }

func canon(g *ir.Graph) canonGraph {
	ids := map[*ir.Value]int{}
	opIndex := map[*ir.Op]int{}
	for i, op := range g.Ops {
		opIndex[op] = i
		for _, r := range op.Results {
			if _, ok := ids[r]; !ok {
				ids[r] = len(ids)
			}
		}
	}
	num := func(v *ir.Value) int {
		if v == nil {
			return -2
		}
		if id, ok := ids[v]; ok {
			return id
		}
		return -1
	}
	c := canonGraph{Name: g.Name, Mode: g.Mode}
	for _, op := range g.Ops {
		co := canonOp{Kind: op.Kind, Name: op.Name}
		for _, a := range op.Args {
			co.Args = append(co.Args, num(a))
		}
		for _, r := range op.Results {
			def, ok := opIndex[r.Def]
			if !ok {
				def = -1
			}
			co.Results = append(co.Results, canonValue{
				ID: num(r), DType: r.Type.DType, Shape: append([]int(nil), r.Type.Shape...),
				Layout: r.Type.Layout, Def: def, Index: r.Index,
			})
		}
		if len(op.Attrs) > 0 {
			co.Attrs = map[string]string{}
			for k, v := range op.Attrs {
				co.Attrs[k] = canonAttr(v)
			}
		}
		c.Ops = append(c.Ops, co)
	}
	for _, o := range g.Outputs {
		c.Outputs = append(c.Outputs, canonUse{o.Name, num(o.Value)})
	}
	for _, u := range g.Updates {
		c.Updates = append(c.Updates, canonUpdate{num(u.Target), num(u.Value)})
	}
	return c
}

// canonAttr spells an attribute with its Go type and its exact value: the
// shortest float that parses to the same bits, with the sign of zero.
func canonAttr(v any) string {
	if f, ok := v.(float64); ok {
		return "float64: " + strconv.FormatFloat(f, 'g', -1, 64)
	}
	return fmt.Sprintf("%T: %#v", v, v)
}

func roundTripGraphs() map[string]*ir.Graph {
	return map[string]*ir.Graph{
		"train": coverTrain(),
		"infer": coverInfer(),
		"attrs": coverAttrs(),
		"empty": ir.New("empty", ir.Infer),
	}
}

func TestRoundTripCoversEveryKind(t *testing.T) {
	used := map[ir.OpKind]bool{}
	for _, g := range roundTripGraphs() {
		for _, op := range g.Ops {
			used[op.Kind] = true
		}
	}
	for _, k := range ir.Kinds() {
		if !used[k] {
			t.Errorf("op kind %s is in no round-trip graph; add it to coverTrain or coverInfer", k)
		}
	}
}

func TestValidGraphsVerify(t *testing.T) {
	for _, name := range []string{"train", "infer", "empty"} {
		if err := ir.Verify(roundTripGraphs()[name]); err != nil {
			t.Errorf("%s: Verify: %v", name, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for name, g := range roundTripGraphs() {
		t.Run(name, func(t *testing.T) {
			text := ir.Print(g)
			got, err := ir.Parse(name+".ir", []byte(text))
			if err != nil {
				t.Fatalf("Parse(Print(g)): %v\n%s", err, text)
			}
			if d := cmp.Diff(canon(g), canon(got)); d != "" {
				t.Errorf("Parse(Print(g)) mismatch (-want +got):\n%s", d)
			}
			if again := ir.Print(got); again != text {
				t.Errorf("Print(Parse(Print(g))) mismatch (-want +got):\n%s", cmp.Diff(text, again))
			}
			if name != "attrs" {
				if err := ir.Verify(got); err != nil {
					t.Errorf("Verify(Parse(Print(g))): %v", err)
				}
			}
		})
	}
}

// TestRoundTripAttrTypes checks the Go type and exact value of each parsed
// attribute against the literal the graph was built from.
func TestRoundTripAttrTypes(t *testing.T) {
	g := coverAttrs()
	got, err := ir.Parse("attrs.ir", []byte(ir.Print(g)))
	if err != nil {
		t.Fatal(err)
	}
	for i, op := range g.Ops {
		for k, want := range op.Attrs {
			v := got.Ops[i].Attrs[k]
			if fmt.Sprintf("%T", v) != fmt.Sprintf("%T", want) {
				t.Errorf("%s.%s: parsed a %T, want %T", op.Name, k, v, want)
				continue
			}
			if f, ok := want.(float64); ok {
				g := v.(float64)
				if math.Float64bits(f) != math.Float64bits(g) && !(math.IsNaN(f) && math.IsNaN(g)) {
					t.Errorf("%s.%s = %v (bits %x), want %v (bits %x)", op.Name, k, g, math.Float64bits(g), f, math.Float64bits(f))
				}
			}
		}
	}
}

// TestCanonDetectsDifferences shows that the round-trip comparison fails
// on every kind of structural difference.
func TestCanonDetectsDifferences(t *testing.T) {
	find := func(g *ir.Graph, name string) *ir.Op {
		for _, op := range g.Ops {
			if op.Name == name {
				return op
			}
		}
		t.Fatalf("no op %q", name)
		return nil
	}
	mutations := map[string]func(g *ir.Graph){
		"graph name":         func(g *ir.Graph) { g.Name += "x" },
		"mode":               func(g *ir.Graph) { g.Mode = ir.Infer },
		"kind":               func(g *ir.Graph) { find(g, "s1.u1.relu").Kind = ir.Sigmoid },
		"op name":            func(g *ir.Graph) { find(g, "add").Name = "add2" },
		"int to float":       func(g *ir.Graph) { find(g, "stem.conv").Attrs["pad"] = 1.0 },
		"float sign of zero": func(g *ir.Graph) { find(g, "scale").Attrs["offset"] = math.Copysign(0, -1) },
		"float last bit": func(g *ir.Graph) {
			find(g, "scale").Attrs["offset"] = math.Nextafter(1.0/3.0, 1)
		},
		"attr dropped": func(g *ir.Graph) { delete(find(g, "pool").Attrs, "pad") },
		"args swapped": func(g *ir.Graph) {
			op := find(g, "add")
			op.Args[0], op.Args[1] = op.Args[1], op.Args[0]
		},
		"arg dropped": func(g *ir.Graph) { op := find(g, "fc"); op.Args = op.Args[:2] },
		"shape":       func(g *ir.Graph) { find(g, "gap").Results[0].Type.Shape[1]++ },
		"rank":        func(g *ir.Graph) { r := find(g, "gap").Results[0]; r.Type.Shape = append(r.Type.Shape, 1) },
		"layout":      func(g *ir.Graph) { find(g, "gap").Results[0].Type.Layout = ir.NCHW8c },
		"dtype":       func(g *ir.Graph) { find(g, "gap").Results[0].Type.DType = ir.I32 },
		"index":       func(g *ir.Graph) { find(g, "gap").Results[0].Index = 1 },
		"def":         func(g *ir.Graph) { find(g, "gap").Results[0].Def = find(g, "fc") },
		"result dropped": func(g *ir.Graph) {
			op := find(g, "drop")
			op.Results = op.Results[:1]
		},
		"op dropped":   func(g *ir.Graph) { g.Ops = g.Ops[:len(g.Ops)-1] },
		"ops swapped":  func(g *ir.Graph) { g.Ops[1], g.Ops[2] = g.Ops[2], g.Ops[1] },
		"output name":  func(g *ir.Graph) { g.Outputs[0].Name = "Loss" },
		"output value": func(g *ir.Graph) { g.Outputs[0].Value = g.Outputs[1].Value },
		"update":       func(g *ir.Graph) { g.Updates[0], g.Updates[1] = g.Updates[1], g.Updates[0] },
		"update gone":  func(g *ir.Graph) { g.Updates = g.Updates[1:] },
	}
	base := canon(coverTrain())
	for name, mutate := range mutations {
		g := coverTrain()
		mutate(g)
		if cmp.Diff(base, canon(g)) == "" {
			t.Errorf("%s: canonical forms compare equal", name)
		}
	}
	if d := cmp.Diff(base, canon(coverTrain().Clone())); d != "" {
		t.Errorf("a clone differs (-want +got):\n%s", d)
	}
}

const validText = `# A small graph, with comments and blank lines.
graph "g" train {   # the header

  %0 = input "x" : f32[2,3,4,4]
  %1 = param "w" {init="normal", std=0.5} : f32[8,3,3,3]   # He init
  %2 = conv2d(%0, %1) "conv" {pad=1} : f32[2,8,4,4]
  %3, %4 = bnstats(%2) "bn" : f32[8], f32[8]
  %5 = state "m" : f32[8]
  %6 = ema(%5, %3) {momentum=0.1} : f32[8]
  output "y" %2
  update %5 <- %6
}
`

func TestParseComments(t *testing.T) {
	g, err := ir.Parse("g.ir", []byte(validText))
	if err != nil {
		t.Fatal(err)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatal(err)
	}
	want := ir.New("g", ir.Train)
	x := want.Decl(ir.Input, "x", ir.T32(2, 3, 4, 4), nil)
	w := want.Decl(ir.Param, "w", ir.T32(8, 3, 3, 3), ir.Attrs{"init": "normal", "std": 0.5})
	c := want.MustOp(ir.Conv2D, "conv", ir.Attrs{"pad": 1}, x, w).Result()
	st := want.MustOp(ir.BNStats, "bn", nil, c)
	m := want.Decl(ir.State, "m", ir.T32(8), nil)
	e := want.MustOp(ir.EMA, "", ir.Attrs{"momentum": 0.1}, m, st.Results[0]).Result()
	want.AddOutput("y", c)
	want.AddUpdate(m, e)
	if d := cmp.Diff(canon(want), canon(g)); d != "" {
		t.Errorf("mismatch (-want +got):\n%s", d)
	}
	crlf, err := ir.Parse("g.ir", []byte(strings.ReplaceAll(validText, "\n", "\r\n")))
	if err != nil {
		t.Fatalf("CRLF line ends: %v", err)
	}
	if d := cmp.Diff(canon(want), canon(crlf)); d != "" {
		t.Errorf("CRLF line ends: mismatch (-want +got):\n%s", d)
	}
}

// TestParseNumbering checks that value numbers need not be dense or in
// order: they only name values.
func TestParseNumbering(t *testing.T) {
	src := `graph "g" infer {
  %7 = input "x" : f32[1,2]
  %100 = relu(%7) : f32[1,2]
  %3 = add(%100, %7) : f32[1,2]
  output "y" %3
}`
	g, err := ir.Parse("g.ir", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := ir.New("g", ir.Infer)
	x := want.Decl(ir.Input, "x", ir.T32(1, 2), nil)
	r := want.MustOp(ir.ReLU, "", nil, x).Result()
	want.AddOutput("y", want.MustOp(ir.Add, "", nil, r, x).Result())
	if d := cmp.Diff(canon(want), canon(g)); d != "" {
		t.Errorf("mismatch (-want +got):\n%s", d)
	}
}

// TestParseCycle: a forward reference parses, so that Verify can say the
// graph has a cycle rather than the parser saying a value is undefined.
func TestParseCycle(t *testing.T) {
	src := `graph "g" infer {
  %0 = input "x" : f32[1,2]
  %1 = add(%0, %2) "a" : f32[1,2]
  %2 = relu(%1) "r" : f32[1,2]
  output "y" %2
}
`
	g, err := ir.Parse("g.ir", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if g.Ops[1].Args[1] != g.Ops[2].Results[0] || g.Ops[2].Args[0] != g.Ops[1].Results[0] {
		t.Fatal("forward reference not resolved to the later op's result")
	}
	err = ir.Verify(g)
	want := `cycle: op 1 add "a" -> op 2 relu "r" -> op 1 add "a"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Verify: %v\nwant an error containing %s", err, want)
	}
}

// parseErrorCases are malformed texts, each with the position and a part
// of the message of the first error Parse must report.
var parseErrorCases = []struct {
	name, src string
	pos, msg  string
}{
	{"empty", ``, "g.ir:1:1", `expected "graph", found end of file`},
	{"only comments", "# nothing\n\n", "g.ir:3:1", `expected "graph", found end of file`},
	{"no header", "%0 = input \"x\" : f32[1]\n}\n", "g.ir:1:1", `expected "graph", found "%0"`},
	{"unquoted name", "graph g infer {\n}\n", "g.ir:1:7", `expected graph name (a quoted string), found "g"`},
	{"bad mode", "graph \"g\" fast {\n}\n", "g.ir:1:11", `expected mode "infer" or "train", found "fast"`},
	{"no brace", "graph \"g\" infer\n}\n", "g.ir:1:16", `expected "{", found end of line`},
	{"no closing brace", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1]\n", "g.ir:3:1", `expected "}" closing the graph, found end of file`},
	{"after closing brace", "graph \"g\" infer {\n}\n%0 = input \"x\" : f32[1]\n", "g.ir:3:1", "expected end of file after the graph's closing brace"},
	{"bracket for paren", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1,2]\n  %1 = relu(%0] : f32[1,2]\n}\n", "g.ir:3:15", `expected ")" or ",", found "]"`},
	{"bad statement", "graph \"g\" infer {\n  relu(%0)\n}\n", "g.ir:2:3", `expected an op ("%N = ..."), "output", "update" or "}", found "relu"`},
	{"no equals", "graph \"g\" infer {\n  %0 input \"x\" : f32[1]\n}\n", "g.ir:2:6", `expected "," or "=", found "input"`},
	{"unknown kind", "graph \"g\" infer {\n  %0 = inptu \"x\" : f32[1]\n}\n", "g.ir:2:8", `unknown op kind "inptu"`},
	{"decl with args", "graph \"g\" infer {\n  %0 = input(\"x\") : f32[1]\n}\n", "g.ir:2:13", "input declarations take no arguments"},
	{"no paren", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1]\n  %1 = relu %0 : f32[1]\n}\n", "g.ir:3:13", `expected "(", found "%0"`},
	{"undefined", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1]\n  %1 = add(%0, %9) : f32[1]\n}\n", "g.ir:3:16", "%9 is not defined"},
	{"undefined output", "graph \"g\" infer {\n  output \"y\" %4\n}\n", "g.ir:2:14", "%4 is not defined"},
	{"undefined update", "graph \"g\" train {\n  %0 = param \"w\" : f32[1]\n  update %0 <- %1\n}\n", "g.ir:3:16", "%1 is not defined"},
	{"redefined", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1]\n  %0 = input \"y\" : f32[1]\n}\n", "g.ir:3:3", "%0 is already defined at g.ir:2:3"},
	{"redefined in one op", "graph \"g\" train {\n  %0 = input \"x\" : f32[1,2]\n  %1, %1 = bnstats(%0) : f32[2], f32[2]\n}\n", "g.ir:3:7", "%1 is already defined at g.ir:3:3"},
	{"bad value", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1]\n  %1 = relu(%?) : f32[1]\n}\n", "g.ir:3:13", `expected value number after "%"`},
	{"huge value number", "graph \"g\" infer {\n  %99999999999999999999 = input \"x\" : f32[1]\n}\n", "g.ir:2:3", "value number %99999999999999999999 is too large"},
	{"inferred shape", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1,2]\n  %1 = relu(%0) \"r\" : f32[1,3]\n}\n", "g.ir:3:23", `relu "r": result 0 is written f32[1,3], but the op table infers f32[1,2]`},
	{"inferred layout", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1,8,1,1]\n  %1 = relu(%0) : f32[1,8,1,1]@nchw8c\n}\n", "g.ir:3:19", "written f32[1,8,1,1]@nchw8c, but the op table infers f32[1,8,1,1]"},
	{"inferred count", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1,2]\n  %1, %2 = relu(%0) : f32[1,2], f32[1,2]\n}\n", "g.ir:3:3", "has 2 results, but the op table infers 1"},
	{"arity", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1,2]\n  %1 = relu(%0, %0) \"r\" : f32[1,2]\n}\n", "g.ir:3:3", `relu "r": has 2 arguments, want 1`},
	{"attr type", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1,2]\n  %1 = scale(%0) {factor=\"two\"} : f32[1,2]\n}\n", "g.ir:3:3", "attribute factor is a string, want float"},
	{"types count", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1,2]\n  %1 = relu(%0) : f32[1,2], f32[1,2]\n}\n", "g.ir:3:17", "1 results but 2 types"},
	{"no colon", "graph \"g\" infer {\n  %0 = input \"x\" f32[1]\n}\n", "g.ir:2:18", `expected ":", found "f32"`},
	{"bad dtype", "graph \"g\" infer {\n  %0 = input \"x\" : f64[1]\n}\n", "g.ir:2:20", `expected type (f32[...] or i32[...]), found "f64"`},
	{"bad layout", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1]@nhwc\n}\n", "g.ir:2:27", `expected layout "nchw" or "nchw8c", found "nhwc"`},
	{"zero dim", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1,0]\n}\n", "g.ir:2:26", "dimension 0 is out of range"},
	{"negative dim", "graph \"g\" infer {\n  %0 = input \"x\" : f32[-1]\n}\n", "g.ir:2:24", "dimension -1 is out of range"},
	{"rank", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1,1,1,1,1,1,1,1,1]\n}\n", "g.ir:2:40", "rank is above 8"},
	{"elements", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1048576,1048576,2]\n}\n", "g.ir:2:40", "tensor has more than 1099511627776 elements"},
	{"huge dim", "graph \"g\" infer {\n  %0 = input \"x\" : f32[99999999999999999999]\n}\n", "g.ir:2:24", "dimension 99999999999999999999 is out of range"},
	{"dims separator", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1;2]\n}\n", "g.ir:2:25", `unexpected character ';'`},
	{"unterminated string", "graph \"g\" infer {\n  %0 = input \"x : f32[1]\n}\n", "g.ir:2:14", "string not terminated"},
	{"bad escape", "graph \"g\" infer {\n  %0 = input \"\\q\" : f32[1]\n}\n", "g.ir:2:14", `malformed string "\q"`},
	{"attr no value", "graph \"g\" infer {\n  %0 = input \"x\" {a=} : f32[1]\n}\n", "g.ir:2:21", "expected attribute value (integer, float, string, true, false or [integers]), found \"}\""},
	{"attr no equals", "graph \"g\" infer {\n  %0 = input \"x\" {a 1} : f32[1]\n}\n", "g.ir:2:21", `expected "=", found "1"`},
	{"attr name", "graph \"g\" infer {\n  %0 = input \"x\" {1=1} : f32[1]\n}\n", "g.ir:2:19", `expected attribute name, found "1"`},
	{"attr separator", "graph \"g\" infer {\n  %0 = input \"x\" {a=1 b=2} : f32[1]\n}\n", "g.ir:2:23", `expected "}" or ",", found "b"`},
	{"attr twice", "graph \"g\" infer {\n  %0 = input \"x\" {a=1, a=2} : f32[1]\n}\n", "g.ir:2:24", "attribute a is given twice"},
	{"float syntax", "graph \"g\" infer {\n  %0 = input \"x\" {a=1e} : f32[1]\n}\n", "g.ir:2:21", `malformed number "1e"`},
	{"float hex", "graph \"g\" infer {\n  %0 = input \"x\" {a=0x1p3} : f32[1]\n}\n", "g.ir:2:21", `malformed number "0x1p3"`},
	{"leading point", "graph \"g\" infer {\n  %0 = input \"x\" {a=.5} : f32[1]\n}\n", "g.ir:2:21", `unexpected character '.'`},
	{"float range", "graph \"g\" infer {\n  %0 = input \"x\" {a=1e999} : f32[1]\n}\n", "g.ir:2:21", `float 1e999 is out of range`},
	{"int range", "graph \"g\" infer {\n  %0 = input \"x\" {a=9223372036854775808} : f32[1]\n}\n", "g.ir:2:21", `integer 9223372036854775808 is out of range`},
	{"bad ident value", "graph \"g\" infer {\n  %0 = input \"x\" {a=NaN} : f32[1]\n}\n", "g.ir:2:21", `found "NaN"`},
	{"neg nan", "graph \"g\" infer {\n  %0 = input \"x\" {a=-nan} : f32[1]\n}\n", "g.ir:2:21", `malformed number "-nan"`},
	{"list of floats", "graph \"g\" infer {\n  %0 = input \"x\" {a=[1,2.5]} : f32[1]\n}\n", "g.ir:2:24", `expected integer in list, found "2.5"`},
	{"list separator", "graph \"g\" infer {\n  %0 = input \"x\" {a=[1 2]} : f32[1]\n}\n", "g.ir:2:24", `expected "]" or ",", found "2"`},
	{"output name", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1]\n  output y %0\n}\n", "g.ir:3:10", `expected output name (a quoted string), found "y"`},
	{"update arrow", "graph \"g\" train {\n  %0 = param \"w\" : f32[1]\n  update %0 = %0\n}\n", "g.ir:3:13", `expected "<-", found "="`},
	{"trailing tokens", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1] f32\n}\n", "g.ir:2:27", `expected end of line, found "f32"`},
	{"stray character", "graph \"g\" infer {\n  %0 = input \"x\" : f32[1] $\n}\n", "g.ir:2:27", `unexpected character '$'`},
	{"brace with tokens", "graph \"g\" infer {\n} x\n", "g.ir:2:3", `expected end of line, found "x"`},
}

func TestParseErrors(t *testing.T) {
	for _, c := range parseErrorCases {
		t.Run(c.name, func(t *testing.T) {
			g, err := ir.Parse("g.ir", []byte(c.src))
			if err == nil {
				t.Fatalf("parsed without error:\n%s", ir.Print(g))
			}
			if g != nil {
				t.Errorf("returned a graph with the error")
			}
			var list ir.ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is a %T, want a non-empty ir.ErrorList", err)
			}
			first := list[0].Error()
			if !strings.HasPrefix(first, c.pos+": ") || !strings.Contains(first, c.msg) {
				t.Errorf("first error:\n  %s\nwant %s: ...%s...\nall errors:\n%v", first, c.pos, c.msg, err)
			}
			for _, e := range list {
				if strings.Contains(e.Msg, "\n") {
					t.Errorf("error spans lines: %q", e.Msg)
				}
			}
		})
	}
}

// TestParseErrorList checks that errors on several lines are all
// reported, in order, without cascading from one bad line, and that the
// list stops at ten.
func TestParseErrorList(t *testing.T) {
	src := `graph "g" infer {
  %0 = input "x" : f32[1,2]
  %1 = relu(%0] "a" : f32[1,2]
  %2 = relu(%1) "b" : f32[1,2]
  %3 = relu(%2) "c" : f32[1,5]
  %4 = relu(%8) "d" : f32[1,2]
}
`
	_, err := ir.Parse("g.ir", []byte(src))
	var list ir.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error is a %T, want ir.ErrorList", err)
	}
	want := []string{
		`g.ir:3:15: expected ")" or ",", found "]"`,
		`g.ir:5:23: relu "c": result 0 is written f32[1,5], but the op table infers f32[1,2]`,
		`g.ir:6:13: %8 is not defined`,
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("errors mismatch (-want +got):\n%s", d)
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("Error() = %q, want the errors one per line", err.Error())
	}

	var b strings.Builder
	b.WriteString("graph \"g\" infer {\n")
	for i := range 30 {
		fmt.Fprintf(&b, "  %%%d = relu(%%%d) : f32[1]\n", i, 1000+i)
	}
	b.WriteString("}\n")
	_, err = ir.Parse("g.ir", []byte(b.String()))
	if !errors.As(err, &list) {
		t.Fatalf("error is a %T, want ir.ErrorList", err)
	}
	if len(list) != 11 || list[10].Msg != "too many errors" {
		t.Errorf("got %d errors, want 10 and \"too many errors\":\n%v", len(list), err)
	}
}

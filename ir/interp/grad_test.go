package interp

import (
	"fmt"
	"testing"

	"github.com/resnetc/resnetc/ir"
)

// Every gradient op is checked against central finite differences of its
// forward op, run through Run on a tiny graph.

func TestGradConv2D(t *testing.T) {
	for _, c := range []struct {
		n, cin, h, w, cout, k, stride, pad int
	}{
		{2, 3, 5, 6, 4, 3, 1, 1},
		{2, 3, 5, 6, 4, 3, 2, 1},
		{1, 2, 6, 5, 3, 3, 2, 0}, // the last row and column of x are never read
		{2, 3, 5, 5, 2, 1, 2, 0}, // projection shortcut
		{1, 2, 4, 3, 2, 3, 1, 3}, // padding wider than the kernel's reach
		{1, 2, 7, 7, 3, 5, 2, 2},
	} {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			g := ir.New("conv", ir.Train)
			x := in(g, "x", c.n, c.cin, c.h, c.w)
			w := in(g, "w", c.cout, c.cin, c.k, c.k)
			b := in(g, "b", c.cout)
			at := ir.Attrs{"stride": c.stride, "pad": c.pad}
			y := g.MustOp(ir.Conv2D, "y", at, x, w, b).Result()
			dy := in(g, "dy", y.Type.Shape...)
			dx := g.MustOp(ir.Conv2DDx, "", ir.Attrs{"stride": c.stride, "pad": c.pad, "in_h": c.h, "in_w": c.w}, dy, w).Result()
			dw := g.MustOp(ir.Conv2DDw, "", ir.Attrs{"stride": c.stride, "pad": c.pad, "kernel": c.k}, dy, x).Result()
			db := g.MustOp(ir.ChanSum, "", nil, dy).Result()
			g.AddOutput("y", y)
			g.AddOutput("dx", dx)
			g.AddOutput("dw", dw)
			g.AddOutput("db", db)
			feeds := map[string]*Tensor{
				"x":  Random(1, -1, 1, x.Type.Shape...),
				"w":  Random(2, -1, 1, w.Type.Shape...),
				"b":  Random(3, -1, 1, c.cout),
				"dy": Random(4, -1, 1, y.Type.Shape...),
			}
			obj := seedDot(feeds, "dy", "y")
			checkGrad(t, g, feeds, obj, "x", "dx")
			checkGrad(t, g, feeds, obj, "w", "dw")
			checkGrad(t, g, feeds, obj, "b", "db")
		})
	}
}

func TestGradLinear(t *testing.T) {
	g := ir.New("linear", ir.Train)
	x := in(g, "x", 3, 4)
	w := in(g, "w", 5, 4)
	b := in(g, "b", 5)
	y := g.MustOp(ir.Linear, "fc", nil, x, w, b).Result()
	dy := in(g, "dy", 3, 5)
	g.AddOutput("y", y)
	g.AddOutput("dx", g.MustOp(ir.LinearDx, "", nil, dy, w).Result())
	g.AddOutput("dw", g.MustOp(ir.LinearDw, "", nil, dy, x).Result())
	g.AddOutput("db", g.MustOp(ir.ChanSum, "", nil, dy).Result())
	feeds := map[string]*Tensor{
		"x": Random(1, -1, 1, 3, 4), "w": Random(2, -1, 1, 5, 4), "b": Random(3, -1, 1, 5), "dy": Random(4, -1, 1, 3, 5),
	}
	obj := seedDot(feeds, "dy", "y")
	checkGrad(t, g, feeds, obj, "x", "dx")
	checkGrad(t, g, feeds, obj, "w", "dw")
	checkGrad(t, g, feeds, obj, "b", "db")
}

// bnGraph builds bnnorm and bnnorm_grad over x of the given shape, with
// mean and var fed as independent inputs.
func bnGraph(shape ...int) (*ir.Graph, map[string]*Tensor) {
	c := shape[1]
	g := ir.New("bn", ir.Train)
	x := in(g, "x", shape...)
	mean, vr, gamma, beta := in(g, "mean", c), in(g, "var", c), in(g, "gamma", c), in(g, "beta", c)
	at := ir.Attrs{"eps": 1e-3}
	y := g.MustOp(ir.BNNorm, "bn", at, x, mean, vr, gamma, beta).Result()
	dy := in(g, "dy", shape...)
	gr := g.MustOp(ir.BNNormGrad, "", at, dy, x, mean, vr, gamma)
	g.AddOutput("y", y)
	for i, n := range []string{"dx", "dmean", "dvar", "dgamma", "dbeta"} {
		g.AddOutput(n, gr.Results[i])
	}
	feeds := map[string]*Tensor{
		"x":     Random(1, -2, 2, shape...),
		"mean":  Random(2, -0.5, 0.5, c),
		"var":   Random(3, 0.2, 2, c),
		"gamma": Random(4, 0.5, 1.5, c),
		"beta":  Random(5, -1, 1, c),
		"dy":    Random(6, -1, 1, shape...),
	}
	return g, feeds
}

func TestGradBNNorm(t *testing.T) {
	for _, shape := range [][]int{{2, 3, 3, 4}, {5, 3}} {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			g, feeds := bnGraph(shape...)
			obj := seedDot(feeds, "dy", "y")
			for _, v := range []string{"x", "mean", "var", "gamma", "beta"} {
				checkGrad(t, g, feeds, obj, v, "d"+v)
			}
		})
	}
}

func TestGradBNStats(t *testing.T) {
	for _, shape := range [][]int{{2, 3, 3, 4}, {5, 3}} {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			c := shape[1]
			g := ir.New("bnstats", ir.Train)
			x := in(g, "x", shape...)
			st := g.MustOp(ir.BNStats, "", nil, x)
			dm, dv := in(g, "dmean", c), in(g, "dvar", c)
			g.AddOutput("mean", st.Results[0])
			g.AddOutput("var", st.Results[1])
			g.AddOutput("dx", g.MustOp(ir.BNStatsGrad, "", nil, dm, dv, x, st.Results[0]).Result())
			feeds := map[string]*Tensor{
				"x": Random(1, -2, 3, shape...), "dmean": Random(2, -1, 1, c), "dvar": Random(3, -1, 1, c),
			}
			obj := func(r *Result) float64 {
				return dot(feeds["dmean"], r.Outputs["mean"]) + dot(feeds["dvar"], r.Outputs["var"])
			}
			checkGrad(t, g, feeds, obj, "x", "dx")
		})
	}
}

// TestGradBatchNorm checks the true training-mode BN gradient: bnnorm of
// the batch's own statistics, differentiated through both bnnorm_grad and
// bnstats_grad.
func TestGradBatchNorm(t *testing.T) {
	for _, shape := range [][]int{{2, 3, 3, 4}, {6, 2}} {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			c := shape[1]
			g := ir.New("batchnorm", ir.Train)
			x, gamma, beta := in(g, "x", shape...), in(g, "gamma", c), in(g, "beta", c)
			st := g.MustOp(ir.BNStats, "", nil, x)
			mean, vr := st.Results[0], st.Results[1]
			y := g.MustOp(ir.BNNorm, "bn", nil, x, mean, vr, gamma, beta).Result()
			dy := in(g, "dy", shape...)
			gr := g.MustOp(ir.BNNormGrad, "", nil, dy, x, mean, vr, gamma)
			dxs := g.MustOp(ir.BNStatsGrad, "", nil, gr.Results[1], gr.Results[2], x, mean).Result()
			g.AddOutput("y", y)
			g.AddOutput("dx", g.MustOp(ir.Add, "", nil, gr.Results[0], dxs).Result())
			g.AddOutput("dgamma", gr.Results[3])
			g.AddOutput("dbeta", gr.Results[4])
			feeds := map[string]*Tensor{
				"x": Random(1, -2, 3, shape...), "gamma": Random(2, 0.5, 1.5, c), "beta": Random(3, -1, 1, c),
				"dy": Random(4, -1, 1, shape...),
			}
			obj := seedDot(feeds, "dy", "y")
			checkGrad(t, g, feeds, obj, "x", "dx")
			checkGrad(t, g, feeds, obj, "gamma", "dgamma")
			checkGrad(t, g, feeds, obj, "beta", "dbeta")
		})
	}
}

// TestGradActivations checks the gradient ops that read the forward
// output: dx = grad(dy, fwd(x)).
func TestGradActivations(t *testing.T) {
	for _, c := range []struct {
		fwd, grad ir.OpKind
	}{
		{ir.ReLU, ir.ReLUGrad},
		{ir.Sigmoid, ir.SigmoidGrad},
	} {
		t.Run(string(c.fwd), func(t *testing.T) {
			g := ir.New("act", ir.Train)
			x := in(g, "x", 2, 3, 2, 2)
			y := g.MustOp(c.fwd, "", nil, x).Result()
			dy := in(g, "dy", 2, 3, 2, 2)
			g.AddOutput("y", y)
			g.AddOutput("dx", g.MustOp(c.grad, "", nil, dy, y).Result())
			feeds := map[string]*Tensor{
				"x":  awayFromZero(Random(1, -3, 3, 2, 3, 2, 2), 0.1),
				"dy": Random(2, -1, 1, 2, 3, 2, 2),
			}
			checkGrad(t, g, feeds, seedDot(feeds, "dy", "y"), "x", "dx")
		})
	}
}

func TestGradSubsamplePad(t *testing.T) {
	for _, c := range []struct{ h, w, stride, extra int }{{5, 5, 2, 2}, {4, 6, 2, 3}, {3, 3, 1, 1}, {7, 5, 3, 0}} {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			g := ir.New("sp", ir.Train)
			x := in(g, "x", 2, 3, c.h, c.w)
			y := g.MustOp(ir.SubsamplePad, "", ir.Attrs{"stride": c.stride, "channels": 3 + c.extra}, x).Result()
			dy := in(g, "dy", y.Type.Shape...)
			g.AddOutput("y", y)
			g.AddOutput("dx", g.MustOp(ir.SubsamplePadGrad, "",
				ir.Attrs{"stride": c.stride, "channels": 3, "in_h": c.h, "in_w": c.w}, dy).Result())
			feeds := map[string]*Tensor{"x": Random(1, -1, 1, x.Type.Shape...), "dy": Random(2, -1, 1, y.Type.Shape...)}
			checkGrad(t, g, feeds, seedDot(feeds, "dy", "y"), "x", "dx")
		})
	}
}

func TestGradMaxPool(t *testing.T) {
	for _, c := range []struct{ h, w, k, stride, pad int }{
		{5, 5, 3, 2, 1}, // the ImageNet stem's pool, odd size
		{4, 6, 2, 2, 0},
		{4, 5, 3, 1, 1}, // overlapping windows: gradients add up
		{6, 6, 3, 2, 0},
	} {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			g := ir.New("pool", ir.Train)
			x := in(g, "x", 2, 2, c.h, c.w)
			at := ir.Attrs{"kernel": c.k, "stride": c.stride, "pad": c.pad}
			y := g.MustOp(ir.MaxPool, "", at, x).Result()
			dy := in(g, "dy", y.Type.Shape...)
			g.AddOutput("y", y)
			g.AddOutput("dx", g.MustOp(ir.MaxPoolGrad, "", at, dy, x).Result())
			// Random values are distinct by far more than the step, so no
			// window's maximum changes under the perturbation.
			feeds := map[string]*Tensor{"x": Random(1, -1, 1, x.Type.Shape...), "dy": Random(2, -1, 1, y.Type.Shape...)}
			checkGrad(t, g, feeds, seedDot(feeds, "dy", "y"), "x", "dx")
		})
	}
}

func TestGradGAP(t *testing.T) {
	g := ir.New("gap", ir.Train)
	x := in(g, "x", 2, 3, 3, 5)
	y := g.MustOp(ir.GAP, "", nil, x).Result()
	dy := in(g, "dy", 2, 3)
	g.AddOutput("y", y)
	g.AddOutput("dx", g.MustOp(ir.GAPGrad, "", ir.Attrs{"in_h": 3, "in_w": 5}, dy).Result())
	feeds := map[string]*Tensor{"x": Random(1, -1, 1, 2, 3, 3, 5), "dy": Random(2, -1, 1, 2, 3)}
	checkGrad(t, g, feeds, seedDot(feeds, "dy", "y"), "x", "dx")
}

func TestGradSoftmaxCE(t *testing.T) {
	const scale = 0.7
	g := ir.New("ce", ir.Train)
	z := in(g, "z", 4, 5)
	y := labelsIn(g, "y", 4)
	g.AddOutput("loss", g.MustOp(ir.SoftmaxCE, "", nil, z, y).Result())
	g.AddOutput("dz", g.MustOp(ir.SoftmaxCEGrad, "", ir.Attrs{"scale": scale}, z, y).Result())
	feeds := map[string]*Tensor{"z": Random(1, -3, 3, 4, 5), "y": tensor([]int{4}, 0, 4, 2, 2)}
	checkGrad(t, g, feeds, func(r *Result) float64 { return scale * r.Outputs["loss"].Data[0] }, "z", "dz")
}

// TestGradNetwork differentiates a small network end to end (conv, BN with
// batch statistics, ReLU, max pool, option A shortcut, residual add,
// sigmoid gate, global pooling, linear, softmax cross-entropy) by chaining
// the gradient ops by hand, and checks the weight and input gradients
// against finite differences of the loss: the gradient ops must compose.
func TestGradNetwork(t *testing.T) {
	g := ir.New("net", ir.Train)
	x := in(g, "x", 2, 2, 6, 6)
	w1 := in(g, "w1", 3, 2, 3, 3)
	gamma, beta := in(g, "gamma", 3), in(g, "beta", 3)
	w2 := in(g, "w2", 4, 3, 3, 3)
	fw, fb := in(g, "fw", 5, 4), in(g, "fb", 5)
	labels := labelsIn(g, "labels", 2)

	op := func(k ir.OpKind, at ir.Attrs, args ...*ir.Value) *ir.Op { return g.MustOp(k, "", at, args...) }
	c1 := op(ir.Conv2D, ir.Attrs{"pad": 1}, x, w1).Result() // [2,3,6,6]
	st := op(ir.BNStats, nil, c1)                           // batch statistics
	bn := op(ir.BNNorm, nil, c1, st.Results[0], st.Results[1], gamma, beta).Result()
	r1 := op(ir.ReLU, nil, bn).Result()
	p := op(ir.MaxPool, ir.Attrs{"kernel": 3, "stride": 2, "pad": 1}, r1).Result() // [2,3,3,3]
	c2 := op(ir.Conv2D, ir.Attrs{"pad": 1}, p, w2).Result()                        // [2,4,3,3]
	sc := op(ir.SubsamplePad, ir.Attrs{"stride": 1, "channels": 4}, p).Result()    // option A
	gate := op(ir.Sigmoid, nil, c2).Result()
	gated := op(ir.Mul, nil, gate, c2).Result()
	sum := op(ir.Add, nil, gated, sc).Result()
	pooled := op(ir.GAP, nil, sum).Result()
	logits := op(ir.Linear, nil, pooled, fw, fb).Result()
	loss := op(ir.SoftmaxCE, nil, logits, labels).Result()

	dlogits := op(ir.SoftmaxCEGrad, nil, logits, labels).Result()
	dfw := op(ir.LinearDw, nil, dlogits, pooled).Result()
	dfb := op(ir.ChanSum, nil, dlogits).Result()
	dpooled := op(ir.LinearDx, nil, dlogits, fw).Result()
	dsum := op(ir.GAPGrad, ir.Attrs{"in_h": 3, "in_w": 3}, dpooled).Result()
	// sum = sigmoid(c2)*c2 + sc
	dgate := op(ir.Mul, nil, dsum, c2).Result()
	dc2 := op(ir.Add, nil,
		op(ir.Mul, nil, dsum, gate).Result(),
		op(ir.SigmoidGrad, nil, dgate, gate).Result()).Result()
	dw2 := op(ir.Conv2DDw, ir.Attrs{"pad": 1, "kernel": 3}, dc2, p).Result()
	dp := op(ir.Add, nil,
		op(ir.Conv2DDx, ir.Attrs{"pad": 1, "in_h": 3, "in_w": 3}, dc2, w2).Result(),
		op(ir.SubsamplePadGrad, ir.Attrs{"stride": 1, "channels": 3, "in_h": 3, "in_w": 3}, dsum).Result()).Result()
	dr1 := op(ir.MaxPoolGrad, ir.Attrs{"kernel": 3, "stride": 2, "pad": 1}, dp, r1).Result()
	dbn := op(ir.ReLUGrad, nil, dr1, r1).Result()
	bg := op(ir.BNNormGrad, nil, dbn, c1, st.Results[0], st.Results[1], gamma)
	dc1 := op(ir.Add, nil, bg.Results[0],
		op(ir.BNStatsGrad, nil, bg.Results[1], bg.Results[2], c1, st.Results[0]).Result()).Result()
	dw1 := op(ir.Conv2DDw, ir.Attrs{"pad": 1, "kernel": 3}, dc1, x).Result()
	dx := op(ir.Conv2DDx, ir.Attrs{"pad": 1, "in_h": 6, "in_w": 6}, dc1, w1).Result()

	for name, v := range map[string]*ir.Value{
		"loss": loss, "dx": dx, "dw1": dw1, "dgamma": bg.Results[3], "dbeta": bg.Results[4],
		"dw2": dw2, "dfw": dfw, "dfb": dfb,
	} {
		g.AddOutput(name, v)
	}
	feeds := map[string]*Tensor{
		"x": Random(1, -1, 1, 2, 2, 6, 6), "w1": Random(2, -0.5, 0.5, 3, 2, 3, 3),
		"gamma": Random(3, 0.5, 1.5, 3), "beta": Random(4, -0.5, 0.5, 3),
		"w2": Random(5, -0.5, 0.5, 4, 3, 3, 3), "fw": Random(6, -1, 1, 5, 4), "fb": Random(7, -1, 1, 5),
		"labels": tensor([]int{2}, 3, 1),
	}
	obj := func(r *Result) float64 { return r.Outputs["loss"].Data[0] }
	for _, wrt := range []string{"x", "w1", "gamma", "beta", "w2", "fw", "fb"} {
		checkGrad(t, g, feeds, obj, wrt, "d"+wrt)
	}
}

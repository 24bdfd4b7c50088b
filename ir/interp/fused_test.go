package interp

import (
	"fmt"
	"slices"
	"testing"

	"github.com/resnetc/resnetc/ir"
)

// The fused and layout ops are checked against the plain ops they stand
// for, run on the same inputs, and their gradient ops against finite
// differences of the fused forward ops.

// fusedFlags are the optional parts of a conv2d_fused.
type fusedFlags struct {
	prologue                    string
	bias, residual, relu, stats bool
	stride, pad                 int
}

func (f fusedFlags) attrs() ir.Attrs {
	return ir.Attrs{
		"stride": f.stride, "pad": f.pad, "prologue": f.prologue,
		"bias": f.bias, "residual": f.residual, "relu": f.relu, "stats": f.stats,
	}
}

// fusedArgs lists conv2d_fused's arguments in the op table's order:
// x, w, [b], [scale, shift], [r].
func fusedArgs(f fusedFlags, x, w, b, scale, shift, r *ir.Value) []*ir.Value {
	args := []*ir.Value{x, w}
	if f.bias {
		args = append(args, b)
	}
	if f.prologue == "affine_relu" {
		args = append(args, scale, shift)
	}
	if f.residual {
		args = append(args, r)
	}
	return args
}

// affineAsBN builds scale*x + shift out of a bnnorm whose mean is 0 and
// whose var + eps is exactly 1, so the oracle uses only plain ops; zero and
// threeQuarters are inputs fed with 0 and 0.75.
func affineAsBN(g *ir.Graph, x, scale, shift, zero, threeQuarters *ir.Value) *ir.Value {
	return g.MustOp(ir.BNNorm, "", ir.Attrs{"eps": 0.25}, x, zero, threeQuarters, scale, shift).Result()
}

// fill64 returns a vector of n copies of v.
func fill64(n int, v float64) *Tensor {
	t := NewTensor(n)
	for i := range t.Data {
		t.Data[i] = v
	}
	return t
}

// TestConv2DFusedAgainstComposition runs every combination of prologue,
// bias, residual, ReLU and statistics, at stride 1 and 2 and pad 0 and 1,
// against the plain ops the fusion replaces: relu or bnnorm+relu, conv2d
// with its bias, add, relu, and the channel sums of y and y*y.
func TestConv2DFusedAgainstComposition(t *testing.T) {
	const n, cin, h, w, cout = 2, 3, 5, 6, 4
	feeds := map[string]*Tensor{
		"x": Random(1, -1, 1, n, cin, h, w),
		"w": Random(2, -1, 1, cout, cin, 3, 3),
		"b": Random(3, -1, 1, cout),
		// Shifts mostly positive: a padded position must contribute 0,
		// not max(shift, 0), and this makes the difference show.
		"scale": Random(4, -1.5, 1.5, cin),
		"shift": Random(5, -0.3, 1, cin),
		"zero":  NewTensor(cin),
		"3/4":   fill64(cin, 0.75),
	}
	for _, prologue := range []string{"none", "relu", "affine_relu"} {
		for mask := range 16 {
			for _, sp := range [][2]int{{1, 0}, {1, 1}, {2, 0}, {2, 1}} {
				f := fusedFlags{
					prologue: prologue,
					bias:     mask&1 != 0, residual: mask&2 != 0, relu: mask&4 != 0, stats: mask&8 != 0,
					stride: sp[0], pad: sp[1],
				}
				t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
					g := ir.New("fused", ir.Train)
					x, wt := in(g, "x", n, cin, h, w), in(g, "w", cout, cin, 3, 3)
					b, scale, shift := in(g, "b", cout), in(g, "scale", cin), in(g, "shift", cin)
					zero, tq := in(g, "zero", cin), in(g, "3/4", cin)
					ho, wo := (h+2*f.pad-3)/f.stride+1, (w+2*f.pad-3)/f.stride+1
					r := in(g, "r", n, cout, ho, wo)
					feeds["r"] = Random(6, -1, 1, n, cout, ho, wo)

					fused := g.MustOp(ir.Conv2DFused, "fused", f.attrs(), fusedArgs(f, x, wt, b, scale, shift, r)...)
					g.AddOutput("y", fused.Results[0])

					a := x
					switch f.prologue {
					case "relu":
						a = g.MustOp(ir.ReLU, "", nil, x).Result()
					case "affine_relu":
						a = g.MustOp(ir.ReLU, "", nil, affineAsBN(g, x, scale, shift, zero, tq)).Result()
					}
					convArgs := []*ir.Value{a, wt}
					if f.bias {
						convArgs = append(convArgs, b)
					}
					y := g.MustOp(ir.Conv2D, "", ir.Attrs{"stride": f.stride, "pad": f.pad}, convArgs...).Result()
					if f.residual {
						y = g.MustOp(ir.Add, "", nil, y, r).Result()
					}
					if f.relu {
						y = g.MustOp(ir.ReLU, "", nil, y).Result()
					}
					g.AddOutput("want y", y)
					if f.stats {
						g.AddOutput("sum", fused.Results[1])
						g.AddOutput("sumsq", fused.Results[2])
						g.AddOutput("want sum", g.MustOp(ir.ChanSum, "", nil, y).Result())
						g.AddOutput("want sumsq", g.MustOp(ir.ChanSum, "", nil, g.MustOp(ir.Mul, "", nil, y, y).Result()).Result())
					}
					res := mustRun(t, g, feeds, Options{})
					for _, o := range []string{"y", "sum", "sumsq"} {
						if want := res.Outputs["want "+o]; want != nil {
							checkData(t, o, res.Outputs[o].Data, want.Data, 1e-12)
						}
					}
				})
			}
		}
	}
}

// TestConv2DFusedPadding pins the padding rule by hand: with prologue
// affine_relu, a padded position is 0 after the prologue, so a 3x3 sum of
// ones over a 1x1 input sees only the one real element.
func TestConv2DFusedPadding(t *testing.T) {
	x := tensor([]int{1, 1, 1, 1}, 2)
	w := tensor([]int{1, 1, 3, 3}, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	scale, shift := tensor([]int{1}, 0.5), tensor([]int{1}, 3)
	out := run1(t, ir.Conv2DFused, ir.Attrs{"pad": 1, "prologue": "affine_relu", "stats": true}, x, w, scale, shift)
	// 0.5*2 + 3 = 4 at the centre; the eight padded neighbours add nothing.
	checkData(t, "y", out[0].Data, []float64{4}, 0)
	checkData(t, "sum", out[1].Data, []float64{4}, 0)
	checkData(t, "sumsq", out[2].Data, []float64{16}, 0)
}

// TestBNFold checks that the folded conv equals the conv followed by
// inference BatchNorm, with and without a conv bias, and for a linear
// layer's rank-2 weight.
func TestBNFold(t *testing.T) {
	const eps = 1e-3
	for _, c := range []struct {
		name        string
		linear      bool
		bias        bool
		stride, pad int
	}{
		{"conv", false, false, 1, 1},
		{"conv bias", false, true, 1, 1},
		{"conv stride 2", false, false, 2, 0},
		{"conv bias stride 2", false, true, 2, 1},
		{"linear", true, true, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			const cout = 4
			g := ir.New("fold", ir.Infer)
			var x, w *ir.Value
			feeds := map[string]*Tensor{
				"b":     Random(3, -1, 1, cout),
				"mean":  Random(4, -0.5, 0.5, cout),
				"var":   Random(5, 0.2, 2, cout),
				"gamma": Random(6, -1.5, 1.5, cout),
				"beta":  Random(7, -1, 1, cout),
			}
			if c.linear {
				x, w = in(g, "x", 3, 5), in(g, "w", cout, 5)
			} else {
				x, w = in(g, "x", 2, 3, 5, 5), in(g, "w", cout, 3, 3, 3)
			}
			feeds["x"] = Random(1, -1, 1, x.Type.Shape...)
			feeds["w"] = Random(2, -1, 1, w.Type.Shape...)
			b := in(g, "b", cout)
			mean, vr, gamma, beta := in(g, "mean", cout), in(g, "var", cout), in(g, "gamma", cout), in(g, "beta", cout)
			at := ir.Attrs{"eps": eps}
			foldArgs := []*ir.Value{w}
			if c.bias {
				foldArgs = append(foldArgs, b)
			}
			fold := g.MustOp(ir.BNFold, "", at, append(foldArgs, mean, vr, gamma, beta)...)
			wf, bf := fold.Results[0], fold.Results[1]
			if !wf.Type.Equal(w.Type) || !bf.Type.Equal(ir.T32(cout)) {
				t.Fatalf("bnfold results %v, %v", wf.Type, bf.Type)
			}

			var folded, plain *ir.Value
			if c.linear {
				folded = g.MustOp(ir.Linear, "", nil, x, wf, bf).Result()
				plain = g.MustOp(ir.Linear, "", nil, x, w, b).Result()
			} else {
				conv := ir.Attrs{"stride": c.stride, "pad": c.pad}
				folded = g.MustOp(ir.Conv2D, "", conv, x, wf, bf).Result()
				args := []*ir.Value{x, w}
				if c.bias {
					args = append(args, b)
				}
				plain = g.MustOp(ir.Conv2D, "", conv, args...).Result()
			}
			g.AddOutput("folded", folded)
			g.AddOutput("bn", g.MustOp(ir.BNNorm, "", at, plain, mean, vr, gamma, beta).Result())
			res := mustRun(t, g, feeds, Options{})
			checkData(t, "folded", res.Outputs["folded"].Data, res.Outputs["bn"].Data, 1e-12)
		})
	}
}

// bnFeeds are random per-channel BatchNorm parameters, var positive and
// gamma of either sign.
func bnFeeds(c int) map[string]*Tensor {
	return map[string]*Tensor{
		"mean":  Random(21, -0.5, 0.5, c),
		"var":   Random(22, 0.1, 2, c),
		"gamma": Random(23, -1.5, 1.5, c),
		"beta":  Random(24, -1, 1, c),
	}
}

// TestBNAffine checks scale*x + shift, computed here from bnaffine's
// results, and affine_relu against bnnorm and relu(bnnorm).
func TestBNAffine(t *testing.T) {
	for _, shape := range [][]int{{2, 3, 2, 3}, {5, 3}} {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			c := shape[1]
			g := ir.New("affine", ir.Infer)
			x := in(g, "x", shape...)
			mean, vr, gamma, beta := in(g, "mean", c), in(g, "var", c), in(g, "gamma", c), in(g, "beta", c)
			at := ir.Attrs{"eps": 0.01}
			aff := g.MustOp(ir.BNAffine, "", at, mean, vr, gamma, beta)
			bn := g.MustOp(ir.BNNorm, "", at, x, mean, vr, gamma, beta).Result()
			g.AddOutput("scale", aff.Results[0])
			g.AddOutput("shift", aff.Results[1])
			g.AddOutput("bn", bn)
			g.AddOutput("affine_relu", g.MustOp(ir.AffineReLU, "", nil, x, aff.Results[0], aff.Results[1]).Result())
			g.AddOutput("relu(bn)", g.MustOp(ir.ReLU, "", nil, bn).Result())
			feeds := bnFeeds(c)
			feeds["x"] = Random(1, -2, 2, shape...)
			res := mustRun(t, g, feeds, Options{})

			scale, shift := res.Outputs["scale"].Data, res.Outputs["shift"].Data
			xs := feeds["x"].Data
			affine := make([]float64, len(xs))
			per := len(xs) / shape[0] / c
			zeros := 0
			for i, v := range xs {
				ch := i / per % c
				affine[i] = scale[ch]*v + shift[ch]
				if affine[i] <= 0 {
					zeros++
				}
			}
			if zeros == 0 || zeros == len(xs) {
				t.Fatalf("%d of %d pre-activations are negative: the ReLU check would be vacuous", zeros, len(xs))
			}
			checkData(t, "scale*x+shift", affine, res.Outputs["bn"].Data, 1e-13)
			checkData(t, "affine_relu", res.Outputs["affine_relu"].Data, res.Outputs["relu(bn)"].Data, 1e-13)
		})
	}
}

// TestMoments checks moments of the channel sums of x and x*x against
// bnstats(x).
func TestMoments(t *testing.T) {
	for _, shape := range [][]int{{3, 4, 3, 5}, {6, 2}} {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			g := ir.New("moments", ir.Train)
			x := in(g, "x", shape...)
			sum := g.MustOp(ir.ChanSum, "", nil, x).Result()
			sumsq := g.MustOp(ir.ChanSum, "", nil, g.MustOp(ir.Mul, "", nil, x, x).Result()).Result()
			count := ir.Shape(shape).Elems() / shape[1]
			m := g.MustOp(ir.Moments, "", ir.Attrs{"count": count}, sum, sumsq)
			st := g.MustOp(ir.BNStats, "", nil, x)
			g.AddOutput("mean", m.Results[0])
			g.AddOutput("var", m.Results[1])
			g.AddOutput("bnstats mean", st.Results[0])
			g.AddOutput("bnstats var", st.Results[1])
			res := mustRun(t, g, map[string]*Tensor{"x": Random(1, -1, 3, shape...)}, Options{})
			checkData(t, "mean", res.Outputs["mean"].Data, res.Outputs["bnstats mean"].Data, 1e-13)
			checkData(t, "var", res.Outputs["var"].Data, res.Outputs["bnstats var"].Data, 1e-12)
		})
	}
	// By hand: channel 0 holds 1, 2, 3, 4 (sum 10, sumsq 30: mean 2.5, var
	// 1.25); channel 1 holds 1, -1, 1, -1 (sum 0, sumsq 4: mean 0, var 1).
	out := run1(t, ir.Moments, ir.Attrs{"count": 4}, tensor([]int{2}, 10, 0), tensor([]int{2}, 30, 4))
	checkData(t, "mean", out[0].Data, []float64{2.5, 0}, 0)
	checkData(t, "var", out[1].Data, []float64{1.25, 1}, 0)
}

// TestRelayout checks that a layout changes nothing the interpreter
// computes: relayout is the identity, and a conv over a blocked tensor
// gives what it gives over the plain one.
func TestRelayout(t *testing.T) {
	g := ir.New("layout", ir.Infer)
	x := in(g, "x", 2, 8, 3, 3)
	w := in(g, "w", 8, 8, 3, 3)
	x8 := g.MustOp(ir.Relayout, "", ir.Attrs{"layout": "nchw8c"}, x).Result()
	if x8.Type.Layout != ir.NCHW8c {
		t.Fatalf("relayout result is %v", x8.Type)
	}
	c8op := g.MustOp(ir.Conv2D, "", ir.Attrs{"pad": 1}, x8, w)
	c8op.Results[0].Type.Layout = ir.NCHW8c
	back := g.MustOp(ir.Relayout, "", ir.Attrs{"layout": "nchw"}, c8op.Result()).Result()
	g.AddOutput("x8", x8)
	g.AddOutput("back", back)
	g.AddOutput("plain", g.MustOp(ir.Conv2D, "", ir.Attrs{"pad": 1}, x, w).Result())
	feeds := map[string]*Tensor{"x": Random(1, -1, 1, 2, 8, 3, 3), "w": Random(2, -1, 1, 8, 8, 3, 3)}
	res := mustRun(t, g, feeds, Options{})
	checkData(t, "x8", res.Outputs["x8"].Data, feeds["x"].Data, 0)
	checkData(t, "back", res.Outputs["back"].Data, res.Outputs["plain"].Data, 0)
}

// TestGradConv2DDwFused checks conv2d_dw_fused against finite differences
// of conv2d_fused in its weight, for every prologue, and against conv2d_dw
// of the prologue's output computed by plain ops.
func TestGradConv2DDwFused(t *testing.T) {
	for _, prologue := range []string{"none", "relu", "affine_relu"} {
		for _, sp := range [][2]int{{1, 1}, {2, 1}, {2, 0}} {
			t.Run(fmt.Sprintf("%s stride=%d pad=%d", prologue, sp[0], sp[1]), func(t *testing.T) {
				f := fusedFlags{prologue: prologue, stride: sp[0], pad: sp[1]}
				g := ir.New("dw", ir.Train)
				x, w := in(g, "x", 2, 3, 5, 5), in(g, "w", 4, 3, 3, 3)
				scale, shift := in(g, "scale", 3), in(g, "shift", 3)
				zero, tq := in(g, "zero", 3), in(g, "3/4", 3)
				y := g.MustOp(ir.Conv2DFused, "", f.attrs(), fusedArgs(f, x, w, nil, scale, shift, nil)...).Result()
				dy := in(g, "dy", y.Type.Shape...)
				dwArgs := []*ir.Value{dy, x}
				a := x
				switch prologue {
				case "relu":
					a = g.MustOp(ir.ReLU, "", nil, x).Result()
				case "affine_relu":
					dwArgs = append(dwArgs, scale, shift)
					a = g.MustOp(ir.ReLU, "", nil, affineAsBN(g, x, scale, shift, zero, tq)).Result()
				}
				g.AddOutput("y", y)
				g.AddOutput("dw", g.MustOp(ir.Conv2DDwFused, "",
					ir.Attrs{"stride": f.stride, "pad": f.pad, "kernel": 3, "prologue": prologue}, dwArgs...).Result())
				g.AddOutput("conv2d_dw", g.MustOp(ir.Conv2DDw, "",
					ir.Attrs{"stride": f.stride, "pad": f.pad, "kernel": 3}, dy, a).Result())
				feeds := map[string]*Tensor{
					"x": Random(1, -1, 1, 2, 3, 5, 5), "w": Random(2, -1, 1, 4, 3, 3, 3),
					"scale": Random(3, -1.5, 1.5, 3), "shift": Random(4, -0.5, 0.5, 3),
					"zero": NewTensor(3), "3/4": fill64(3, 0.75),
					"dy": Random(5, -1, 1, y.Type.Shape...),
				}
				checkGrad(t, g, feeds, seedDot(feeds, "dy", "y"), "w", "dw")
				res := mustRun(t, g, feeds, Options{})
				checkData(t, "dw", res.Outputs["dw"].Data, res.Outputs["conv2d_dw"].Data, 1e-12)
			})
		}
	}
}

// affineFeeds returns x, scale and shift for an affine_relu over shape
// whose pre-activations scale*x+shift are all at least margin away from
// the ReLU's kink, so that finite differences never cross it.
func affineFeeds(shape []int, margin float64) (x, scale, shift *Tensor) {
	c := shape[1]
	scale = awayFromZero(Random(31, -1, 1, c), 0.5)
	shift = Random(32, -0.5, 0.5, c)
	pre := awayFromZero(Random(33, -1.5, 1.5, shape...), margin)
	x = NewTensor(shape...)
	per := len(x.Data) / shape[0] / c
	for i, m := range pre.Data {
		ch := i / per % c
		x.Data[i] = (m - shift.Data[ch]) / scale.Data[ch]
	}
	return x, scale, shift
}

func TestGradAffineReLU(t *testing.T) {
	for _, shape := range [][]int{{2, 3, 2, 3}, {6, 2}} {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			c := shape[1]
			g := ir.New("affine_relu", ir.Train)
			x, scale, shift := in(g, "x", shape...), in(g, "scale", c), in(g, "shift", c)
			y := g.MustOp(ir.AffineReLU, "", nil, x, scale, shift).Result()
			da := in(g, "da", shape...)
			gr := g.MustOp(ir.AffineReLUGrad, "", nil, da, x, scale, shift)
			g.AddOutput("y", y)
			for i, name := range []string{"dx", "dscale", "dshift"} {
				g.AddOutput(name, gr.Results[i])
			}
			feeds := map[string]*Tensor{"da": Random(34, -1, 1, shape...)}
			feeds["x"], feeds["scale"], feeds["shift"] = affineFeeds(shape, 0.1)
			obj := seedDot(feeds, "da", "y")
			for _, v := range []string{"x", "scale", "shift"} {
				checkGrad(t, g, feeds, obj, v, "d"+v)
			}
		})
	}
}

func TestGradBNAffine(t *testing.T) {
	const c = 5
	g := ir.New("bnaffine", ir.Train)
	mean, vr, gamma, beta := in(g, "mean", c), in(g, "var", c), in(g, "gamma", c), in(g, "beta", c)
	at := ir.Attrs{"eps": 1e-3}
	aff := g.MustOp(ir.BNAffine, "", at, mean, vr, gamma, beta)
	ds, dt := in(g, "dscale", c), in(g, "dshift", c)
	gr := g.MustOp(ir.BNAffineGrad, "", at, ds, dt, mean, vr, gamma)
	g.AddOutput("scale", aff.Results[0])
	g.AddOutput("shift", aff.Results[1])
	for i, name := range []string{"dmean", "dvar", "dgamma", "dbeta"} {
		g.AddOutput(name, gr.Results[i])
	}
	feeds := bnFeeds(c)
	feeds["dscale"], feeds["dshift"] = Random(25, -1, 1, c), Random(26, -1, 1, c)
	obj := func(r *Result) float64 {
		return dot(feeds["dscale"], r.Outputs["scale"]) + dot(feeds["dshift"], r.Outputs["shift"])
	}
	for _, v := range []string{"mean", "var", "gamma", "beta"} {
		checkGrad(t, g, feeds, obj, v, "d"+v)
	}
}

func TestGradMoments(t *testing.T) {
	const c, count = 4, 7
	g := ir.New("moments", ir.Train)
	sum, sumsq := in(g, "sum", c), in(g, "sumsq", c)
	at := ir.Attrs{"count": count}
	m := g.MustOp(ir.Moments, "", at, sum, sumsq)
	dm, dv := in(g, "dmean", c), in(g, "dvar", c)
	gr := g.MustOp(ir.MomentsGrad, "", at, dm, dv, m.Results[0])
	g.AddOutput("mean", m.Results[0])
	g.AddOutput("var", m.Results[1])
	g.AddOutput("dsum", gr.Results[0])
	g.AddOutput("dsumsq", gr.Results[1])
	feeds := map[string]*Tensor{
		"sum": Random(1, -5, 5, c), "sumsq": Random(2, 5, 20, c),
		"dmean": Random(3, -1, 1, c), "dvar": Random(4, -1, 1, c),
	}
	obj := func(r *Result) float64 {
		return dot(feeds["dmean"], r.Outputs["mean"]) + dot(feeds["dvar"], r.Outputs["var"])
	}
	checkGrad(t, g, feeds, obj, "sum", "dsum")
	checkGrad(t, g, feeds, obj, "sumsq", "dsumsq")
}

// TestGradStats checks stats_grad as the gradient of the sums epilogue:
// through a conv2d_fused's residual (y = conv + r, so dy/dr is the
// identity), and through channel sums of a rank-2 tensor and its square.
func TestGradStats(t *testing.T) {
	t.Run("conv2d_fused", func(t *testing.T) {
		g := ir.New("stats", ir.Train)
		x, w, r := in(g, "x", 2, 3, 4, 4), in(g, "w", 4, 3, 3, 3), in(g, "r", 2, 4, 2, 2)
		f := g.MustOp(ir.Conv2DFused, "", ir.Attrs{"stride": 2, "pad": 1, "residual": true, "stats": true}, x, w, r)
		ds, dss := in(g, "dsum", 4), in(g, "dsumsq", 4)
		g.AddOutput("sum", f.Results[1])
		g.AddOutput("sumsq", f.Results[2])
		g.AddOutput("dr", g.MustOp(ir.StatsGrad, "", nil, ds, dss, f.Results[0]).Result())
		feeds := map[string]*Tensor{
			"x": Random(1, -1, 1, 2, 3, 4, 4), "w": Random(2, -1, 1, 4, 3, 3, 3), "r": Random(3, -1, 1, 2, 4, 2, 2),
			"dsum": Random(4, -1, 1, 4), "dsumsq": Random(5, -1, 1, 4),
		}
		obj := func(r *Result) float64 {
			return dot(feeds["dsum"], r.Outputs["sum"]) + dot(feeds["dsumsq"], r.Outputs["sumsq"])
		}
		checkGrad(t, g, feeds, obj, "r", "dr")
	})
	t.Run("rank 2", func(t *testing.T) {
		g := ir.New("stats", ir.Train)
		x := in(g, "x", 5, 3)
		g.AddOutput("sum", g.MustOp(ir.ChanSum, "", nil, x).Result())
		g.AddOutput("sumsq", g.MustOp(ir.ChanSum, "", nil, g.MustOp(ir.Mul, "", nil, x, x).Result()).Result())
		ds, dss := in(g, "dsum", 3), in(g, "dsumsq", 3)
		g.AddOutput("dx", g.MustOp(ir.StatsGrad, "", nil, ds, dss, x).Result())
		feeds := map[string]*Tensor{"x": Random(1, -2, 2, 5, 3), "dsum": Random(2, -1, 1, 3), "dsumsq": Random(3, -1, 1, 3)}
		obj := func(r *Result) float64 {
			return dot(feeds["dsum"], r.Outputs["sum"]) + dot(feeds["dsumsq"], r.Outputs["sumsq"])
		}
		checkGrad(t, g, feeds, obj, "x", "dx")
	})
}

// fusedChain builds the training step of a fused pre-activation conv: a
// first conv2d_fused accumulates its output's statistics; moments and
// bnaffine turn them into the next BatchNorm's scale and shift; a second
// conv2d_fused normalizes and rectifies on the fly (prologue affine_relu)
// and adds a bias and a residual, rectifies and accumulates statistics
// again. The backward ops are chained by hand from the fused gradient ops.
// The objective <dy, y> + <dsum, sum> + <dsumsq, sumsq> reaches every
// gradient op.
func fusedChain(stride, pad int) (*ir.Graph, map[string]*Tensor, func(*Result) float64) {
	const n, c0, c1, c2, hw = 2, 3, 4, 4, 5
	g := ir.New("chain", ir.Train)
	x0, w0 := in(g, "x0", n, c0, hw, hw), in(g, "w0", c1, c0, 3, 3)
	gamma, beta := in(g, "gamma", c1), in(g, "beta", c1)
	w, b := in(g, "w", c2, c1, 3, 3), in(g, "b", c2)
	op := func(k ir.OpKind, at ir.Attrs, args ...*ir.Value) *ir.Op { return g.MustOp(k, "", at, args...) }

	first := op(ir.Conv2DFused, ir.Attrs{"pad": 1, "stats": true}, x0, w0)
	x := first.Results[0] // [n, c1, hw, hw], the pre-BatchNorm tensor
	count := n * hw * hw
	mom := op(ir.Moments, ir.Attrs{"count": count}, first.Results[1], first.Results[2])
	mean, vr := mom.Results[0], mom.Results[1]
	aff := op(ir.BNAffine, nil, mean, vr, gamma, beta)
	scale, shift := aff.Results[0], aff.Results[1]
	ho := (hw+2*pad-3)/stride + 1
	r := in(g, "r", n, c2, ho, ho)
	f := fusedFlags{prologue: "affine_relu", bias: true, residual: true, relu: true, stats: true, stride: stride, pad: pad}
	second := op(ir.Conv2DFused, f.attrs(), fusedArgs(f, x, w, b, scale, shift, r)...)
	y := second.Results[0]

	dy, dsum, dsumsq := in(g, "dy", n, c2, ho, ho), in(g, "dsum", c2), in(g, "dsumsq", c2)
	dyAll := op(ir.Add, nil, dy, op(ir.StatsGrad, nil, dsum, dsumsq, y).Result()).Result()
	dz := op(ir.ReLUGrad, nil, dyAll, y).Result()
	db := op(ir.ChanSum, nil, dz).Result()
	dw := op(ir.Conv2DDwFused, ir.Attrs{"stride": stride, "pad": pad, "kernel": 3, "prologue": "affine_relu"}, dz, x, scale, shift).Result()
	da := op(ir.Conv2DDx, ir.Attrs{"stride": stride, "pad": pad, "in_h": hw, "in_w": hw}, dz, w).Result()
	arg := op(ir.AffineReLUGrad, nil, da, x, scale, shift)
	bag := op(ir.BNAffineGrad, nil, arg.Results[1], arg.Results[2], mean, vr, gamma)
	mg := op(ir.MomentsGrad, ir.Attrs{"count": count}, bag.Results[0], bag.Results[1], mean)
	dx := op(ir.Add, nil, arg.Results[0], op(ir.StatsGrad, nil, mg.Results[0], mg.Results[1], x).Result()).Result()
	dw0 := op(ir.Conv2DDwFused, ir.Attrs{"pad": 1, "kernel": 3}, dx, x0).Result()
	dx0 := op(ir.Conv2DDx, ir.Attrs{"pad": 1, "in_h": hw, "in_w": hw}, dx, w0).Result()

	for name, v := range map[string]*ir.Value{
		"y": y, "sum": second.Results[1], "sumsq": second.Results[2],
		"dx0": dx0, "dw0": dw0, "dgamma": bag.Results[2], "dbeta": bag.Results[3],
		"dw": dw, "db": db, "dr": dz,
	} {
		g.AddOutput(name, v)
	}
	feeds := map[string]*Tensor{
		"x0": Random(1, -1, 1, n, c0, hw, hw), "w0": Random(2, -0.5, 0.5, c1, c0, 3, 3),
		"gamma": Random(3, 0.5, 1.5, c1), "beta": Random(4, -0.5, 0.5, c1),
		"w": Random(5, -0.5, 0.5, c2, c1, 3, 3), "b": Random(6, -0.5, 0.5, c2),
		"r":  Random(7, -1, 1, n, c2, ho, ho),
		"dy": Random(8, -1, 1, n, c2, ho, ho), "dsum": Random(9, -0.1, 0.1, c2), "dsumsq": Random(10, -0.1, 0.1, c2),
	}
	obj := func(r *Result) float64 {
		return dot(feeds["dy"], r.Outputs["y"]) + dot(feeds["dsum"], r.Outputs["sum"]) + dot(feeds["dsumsq"], r.Outputs["sumsq"])
	}
	return g, feeds, obj
}

// TestGradFusedChain checks every gradient of fusedChain against finite
// differences of its objective: the fused gradient ops compose into the
// exact training-mode BatchNorm gradient.
func TestGradFusedChain(t *testing.T) {
	for _, sp := range [][2]int{{1, 1}, {2, 1}} {
		t.Run(fmt.Sprintf("stride=%d pad=%d", sp[0], sp[1]), func(t *testing.T) {
			g, feeds, obj := fusedChain(sp[0], sp[1])
			for _, wrt := range []string{"x0", "w0", "gamma", "beta", "w", "b", "r"} {
				checkGrad(t, g, feeds, obj, wrt, "d"+wrt)
			}
		})
	}
}

// TestFloat32Fused runs fusedChain in float32 mode: every f32 value must be
// a float32, and agree with the float64 run to float32 accuracy.
func TestFloat32Fused(t *testing.T) {
	g, feeds, _ := fusedChain(1, 1)
	r32 := mustRun(t, g, feeds, Options{Float32: true})
	r64 := mustRun(t, g, feeds, Options{})
	for v, tv := range r32.Values {
		for i, e := range tv.Data {
			if float64(float32(e)) != e {
				t.Fatalf("%s result %d element %d = %v is not a float32", v.Def, v.Index, i, e)
			}
		}
		checkData(t, string(v.Def.Kind), tv.Data, r64.Values[v].Data, 1e-5)
	}
	if slices.Equal(r32.Outputs["y"].Data, r64.Outputs["y"].Data) {
		t.Error("float32 and float64 runs agree exactly: nothing was rounded")
	}
}

package interp

import (
	"fmt"
	"math"
	"testing"

	"github.com/resnetc/resnetc/ir"
)

// im2colConv is an independent conv2d: pad x explicitly, unfold each
// example into a [C*Kh*Kw, Ho*Wo] matrix and multiply by the weight seen as
// a [Cout, C*Kh*Kw] matrix.
func im2colConv(x, w *Tensor, b []float64, stride, pad int) []float64 {
	n, c, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cout, kh, kw := w.Shape[0], w.Shape[2], w.Shape[3]
	hp, wp := h+2*pad, wd+2*pad
	ho, wo := (hp-kh)/stride+1, (wp-kw)/stride+1
	var out []float64
	for e := range n {
		padded := make([][][]float64, c)
		for ch := range c {
			padded[ch] = make([][]float64, hp)
			for r := range hp {
				padded[ch][r] = make([]float64, wp)
				if r >= pad && r < pad+h {
					copy(padded[ch][r][pad:], x.Data[((e*c+ch)*h+r-pad)*wd:][:wd])
				}
			}
		}
		rows := c * kh * kw
		col := make([][]float64, rows)
		for ch := range c {
			for ki := range kh {
				for kj := range kw {
					row := make([]float64, 0, ho*wo)
					for i := range ho {
						for j := range wo {
							row = append(row, padded[ch][i*stride+ki][j*stride+kj])
						}
					}
					col[(ch*kh+ki)*kw+kj] = row
				}
			}
		}
		for o := range cout {
			wrow := w.Data[o*rows : (o+1)*rows]
			for q := range ho * wo {
				s := 0.0
				if b != nil {
					s = b[o]
				}
				for r := range rows {
					s += wrow[r] * col[r][q]
				}
				out = append(out, s)
			}
		}
	}
	return out
}

func TestConv2DAgainstIm2col(t *testing.T) {
	for _, c := range []struct {
		n, cin, h, w, cout, kh, kw, stride, pad int
		bias                                    bool
	}{
		{2, 3, 7, 5, 4, 3, 3, 1, 1, true},
		{2, 3, 7, 5, 4, 3, 3, 1, 1, false},
		{1, 3, 7, 5, 2, 3, 3, 2, 1, true},
		{2, 2, 7, 7, 3, 3, 3, 2, 0, false},
		{1, 2, 5, 3, 3, 3, 3, 1, 3, true},
		{1, 4, 9, 7, 2, 1, 1, 2, 0, false},  // 1x1 projection
		{1, 2, 6, 5, 2, 2, 3, 1, 0, true},   // non-square kernel
		{1, 3, 11, 9, 2, 7, 7, 2, 3, false}, // ImageNet-style stem
	} {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			g := ir.New("conv", ir.Train)
			x := in(g, "x", c.n, c.cin, c.h, c.w)
			w := in(g, "w", c.cout, c.cin, c.kh, c.kw)
			args := []*ir.Value{x, w}
			feeds := map[string]*Tensor{
				"x": Random(11, -1, 1, c.n, c.cin, c.h, c.w),
				"w": Random(12, -1, 1, c.cout, c.cin, c.kh, c.kw),
			}
			var bias []float64
			if c.bias {
				args = append(args, in(g, "b", c.cout))
				feeds["b"] = Random(13, -1, 1, c.cout)
				bias = feeds["b"].Data
			}
			y := g.MustOp(ir.Conv2D, "", ir.Attrs{"stride": c.stride, "pad": c.pad}, args...).Result()
			g.AddOutput("y", y)
			r := mustRun(t, g, feeds, Options{})
			checkData(t, "y", r.Outputs["y"].Data, im2colConv(feeds["x"], feeds["w"], bias, c.stride, c.pad), 1e-12)
		})
	}
}

// run1 runs a single op of kind k over the given inputs and returns its
// results.
func run1(t *testing.T, k ir.OpKind, at ir.Attrs, args ...*Tensor) []*Tensor {
	t.Helper()
	g := ir.New(string(k), ir.Train)
	feeds := map[string]*Tensor{}
	var vals []*ir.Value
	for i, a := range args {
		name := fmt.Sprintf("a%d", i)
		typ := ir.T32(a.Shape...)
		if (k == ir.SoftmaxCE || k == ir.SoftmaxCEGrad) && i == 1 {
			typ.DType = ir.I32
		}
		vals = append(vals, g.Decl(ir.Input, name, typ, nil))
		feeds[name] = a
	}
	op, err := g.AddOp(k, "op", at, vals...)
	if err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, g, feeds, Options{})
	var out []*Tensor
	for _, v := range op.Results {
		out = append(out, r.Values[v])
	}
	return out
}

func TestMaxPoolByHand(t *testing.T) {
	x := tensor([]int{1, 1, 4, 4},
		1, 5, 2, 0,
		3, 4, 8, 6,
		9, 0, 1, 1,
		2, 7, 1, 3)
	y := run1(t, ir.MaxPool, ir.Attrs{"kernel": 2, "stride": 2}, x)[0]
	checkData(t, "k2s2", y.Data, []float64{5, 8, 9, 3}, 0)

	// Padding never wins: with every value negative a zero pad would.
	neg := tensor([]int{1, 1, 3, 3},
		-5, -4, -9,
		-1, -8, -7,
		-6, -2, -3)
	y = run1(t, ir.MaxPool, ir.Attrs{"kernel": 3, "stride": 2, "pad": 1}, neg)[0]
	// Windows (rows/cols -1..1, -1..1), (-1..1, 1..3), (1..3, -1..1), (1..3, 1..3).
	checkData(t, "padded", y.Data, []float64{-1, -4, -1, -2}, 0)

	// Ties: the gradient goes to the first maximum in row-major window order.
	tie := tensor([]int{1, 1, 2, 3},
		1, 4, 4,
		4, 2, 4)
	dy := tensor([]int{1, 1, 1, 2}, 10, 100)
	dx := run1(t, ir.MaxPoolGrad, ir.Attrs{"kernel": 2, "stride": 1}, dy, tie)[0]
	// Window 0 covers columns 0-1: first 4 at (0,1). Window 1 covers
	// columns 1-2: first 4 at (0,1) again.
	checkData(t, "tie", dx.Data, []float64{0, 110, 0, 0, 0, 0}, 0)
}

func TestSubsamplePadByHand(t *testing.T) {
	x := NewTensor(1, 2, 3, 3)
	for i := range x.Data {
		x.Data[i] = float64(i)
	}
	y := run1(t, ir.SubsamplePad, ir.Attrs{"stride": 2, "channels": 4}, x)[0]
	if !y.Shape.Equal(ir.Shape{1, 4, 2, 2}) {
		t.Fatalf("shape %v", y.Shape)
	}
	checkData(t, "y", y.Data, []float64{0, 2, 6, 8, 9, 11, 15, 17, 0, 0, 0, 0, 0, 0, 0, 0}, 0)

	dx := run1(t, ir.SubsamplePadGrad, ir.Attrs{"stride": 2, "channels": 2, "in_h": 3, "in_w": 3}, y)[0]
	checkData(t, "dx", dx.Data, []float64{
		0, 0, 2, 0, 0, 0, 6, 0, 8,
		9, 0, 11, 0, 0, 0, 15, 0, 17}, 0)
}

func TestGAPByHand(t *testing.T) {
	x := tensor([]int{2, 1, 2, 2}, 1, 2, 3, 4, -4, 0, 0, 8)
	checkData(t, "gap", run1(t, ir.GAP, nil, x)[0].Data, []float64{2.5, 1}, 0)
	dx := run1(t, ir.GAPGrad, ir.Attrs{"in_h": 1, "in_w": 2}, tensor([]int{1, 2}, 4, -2))[0]
	checkData(t, "gap_grad", dx.Data, []float64{2, 2, -1, -1}, 0)
}

func TestLinearByHand(t *testing.T) {
	x := tensor([]int{2, 3}, 1, 2, 3, -1, 0, 1)
	w := tensor([]int{2, 3}, 1, 0, -1, 2, 1, 0)
	b := tensor([]int{2}, 10, 20)
	// Row 0: (1-3)+10, (2+2)+20. Row 1: (-1-1)+10, (-2+0)+20.
	checkData(t, "linear", run1(t, ir.Linear, nil, x, w, b)[0].Data, []float64{8, 24, 8, 18}, 0)
	cs := run1(t, ir.ChanSum, nil, tensor([]int{2, 2, 1, 2}, 1, 2, 3, 4, 5, 6, 7, 8))[0]
	checkData(t, "chansum", cs.Data, []float64{1 + 2 + 5 + 6, 3 + 4 + 7 + 8}, 0)
}

// textbookCE is -mean log(softmax(z)[y]) computed directly, without any
// shift (valid for moderate logits).
func textbookCE(z [][]float64, y []int) (loss float64, grad [][]float64) {
	for n, row := range z {
		sum := 0.0
		for _, v := range row {
			sum += math.Exp(v)
		}
		loss -= math.Log(math.Exp(row[y[n]]) / sum)
		g := make([]float64, len(row))
		for k, v := range row {
			g[k] = math.Exp(v) / sum
			if k == y[n] {
				g[k]--
			}
			g[k] /= float64(len(z))
		}
		grad = append(grad, g)
	}
	return loss / float64(len(z)), grad
}

func TestSoftmaxCEByFormula(t *testing.T) {
	z := [][]float64{{1, 2, 0.5, -1}, {0, 0, 0, 0}, {3, -2, 1, 2.5}}
	y := []int{1, 3, 0}
	zt := tensor([]int{3, 4}, append(append(append([]float64{}, z[0]...), z[1]...), z[2]...)...)
	yt := tensor([]int{3}, 1, 3, 0)
	loss, grad := textbookCE(z, y)
	checkData(t, "loss", run1(t, ir.SoftmaxCE, nil, zt, yt)[0].Data, []float64{loss}, 1e-14)
	var flat []float64
	for _, g := range grad {
		for _, v := range g {
			flat = append(flat, 2.5*v)
		}
	}
	checkData(t, "grad", run1(t, ir.SoftmaxCEGrad, ir.Attrs{"scale": 2.5}, zt, yt)[0].Data, flat, 1e-14)

	// Large logits: the textbook formula overflows, a shift does not change
	// the answer.
	big := zt.Clone()
	for i := range big.Data {
		big.Data[i] += 1000
	}
	checkData(t, "shifted loss", run1(t, ir.SoftmaxCE, nil, big, yt)[0].Data, []float64{loss}, 1e-12)
	checkData(t, "shifted grad", run1(t, ir.SoftmaxCEGrad, ir.Attrs{"scale": 2.5}, big, yt)[0].Data, flat, 1e-12)
}

func TestBatchNormByFormula(t *testing.T) {
	// Rank 2: channel 0 holds 1, 3, 5, 7 (mean 4, variance 5); channel 1
	// holds 2, 2, 2, 2 (mean 2, variance 0).
	x := tensor([]int{4, 2}, 1, 2, 3, 2, 5, 2, 7, 2)
	st := run1(t, ir.BNStats, nil, x)
	checkData(t, "mean", st[0].Data, []float64{4, 2}, 1e-15)
	checkData(t, "var", st[1].Data, []float64{5, 0}, 1e-15)

	// Rank 4 against E[x²] - E[x]² computed here.
	x4 := Random(5, -2, 3, 3, 2, 2, 3)
	st = run1(t, ir.BNStats, nil, x4)
	for c := range 2 {
		var s, s2, m float64
		for n := range 3 {
			for k := range 6 {
				v := x4.Data[(n*2+c)*6+k]
				s += v
				s2 += v * v
				m++
			}
		}
		mean := s / m
		if !near(st[0].Data[c], mean, 1e-14) || !near(st[1].Data[c], s2/m-mean*mean, 1e-12) {
			t.Errorf("channel %d: mean, var = %v, %v; want %v, %v", c, st[0].Data[c], st[1].Data[c], mean, s2/m-mean*mean)
		}
	}

	// bnnorm: gamma*(x-mean)/sqrt(var+eps)+beta with eps 0.25 on x = [2, 6] for
	// one channel, mean 4, var 3.75: (x-4)/2 * 3 + 1.
	y := run1(t, ir.BNNorm, ir.Attrs{"eps": 0.25}, tensor([]int{2, 1}, 2, 6),
		tensor([]int{1}, 4), tensor([]int{1}, 3.75), tensor([]int{1}, 3), tensor([]int{1}, 1))[0]
	checkData(t, "bnnorm", y.Data, []float64{-2, 4}, 1e-15)
}

func TestSGDAndEMAByHand(t *testing.T) {
	out := run1(t, ir.SGD, ir.Attrs{"momentum": 0.9, "decay": 1e-4},
		tensor([]int{2}, 1, -2), tensor([]int{2}, 0.5, 0), tensor([]int{2}, 0.2, 1), tensor(nil, 0.1))
	// mom' = 0.9*0.2 + 0.5 + 1e-4*1 = 0.6801; w' = 1 - 0.1*0.6801.
	// mom' = 0.9*1 + 0 + 1e-4*-2 = 0.8998;   w' = -2 - 0.1*0.8998.
	checkData(t, "w'", out[0].Data, []float64{0.93199, -2.08998}, 1e-15)
	checkData(t, "mom'", out[1].Data, []float64{0.6801, 0.8998}, 1e-15)

	e := run1(t, ir.EMA, ir.Attrs{"momentum": 0.1, "scale": 2}, tensor([]int{2}, 1, 10), tensor([]int{2}, 3, 0))[0]
	checkData(t, "ema", e.Data, []float64{0.9 + 0.6, 9}, 1e-15)
}

func TestElementwiseByHand(t *testing.T) {
	x := tensor([]int{5}, -2, -0.5, 0, 0.5, 3)
	u := tensor([]int{5}, 1, 2, 3, 4, 5)
	checkData(t, "relu", run1(t, ir.ReLU, nil, x)[0].Data, []float64{0, 0, 0, 0.5, 3}, 0)
	checkData(t, "relu_grad", run1(t, ir.ReLUGrad, nil, u, x)[0].Data, []float64{0, 0, 0, 4, 5}, 0)
	checkData(t, "add", run1(t, ir.Add, nil, x, u)[0].Data, []float64{-1, 1.5, 3, 4.5, 8}, 0)
	checkData(t, "mul", run1(t, ir.Mul, nil, x, u)[0].Data, []float64{-2, -1, 0, 2, 15}, 0)
	checkData(t, "scale", run1(t, ir.Scale, ir.Attrs{"factor": 0.5, "offset": -6}, x)[0].Data,
		[]float64{-7, -6.25, -6, -5.75, -4.5}, 0)
	checkData(t, "sigmoid_grad", run1(t, ir.SigmoidGrad, nil, u, tensor([]int{5}, 0.5, 0.25, 0, 1, 0.9))[0].Data,
		[]float64{0.25, 2 * 0.25 * 0.75, 0, 0, 5 * 0.9 * 0.1}, 1e-15)

	// Sigmoid against 1/(1+exp(-x)), and finite at the extremes where the
	// naive form overflows in one branch or the other.
	s := tensor([]int{7}, -1000, -30, -1, 0, 2, 30, 1000)
	got := run1(t, ir.Sigmoid, nil, s)[0].Data
	for i, v := range s.Data {
		want := 1 / (1 + math.Exp(-v))
		if !near(got[i], want, 1e-15) || math.IsNaN(got[i]) {
			t.Errorf("sigmoid(%v) = %v, want %v", v, got[i], want)
		}
	}
	if got[0] != 0 || got[6] != 1 {
		t.Errorf("sigmoid(∓1000) = %v, %v; want 0, 1", got[0], got[6])
	}
}

// TestSplitmix64KnownAnswers pins the generator that dropout masks and
// seeded data depend on to published splitmix64 outputs (a splitmix64
// generator with state 0 returns these three values first).
func TestSplitmix64KnownAnswers(t *testing.T) {
	r := rng{}
	for i, want := range []uint64{0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F} {
		if got := r.next(); got != want {
			t.Errorf("output %d = %#x, want %#x", i, got, want)
		}
	}
}

func TestDropout(t *testing.T) {
	const rate = 0.3
	shape := []int{4, 5, 10, 100} // 20000 elements
	x := Random(1, 0.5, 1.5, shape...)
	mask := func(seed int, step int64) (y, m *Tensor) {
		t.Helper()
		g := ir.New("drop", ir.Train)
		op := g.MustOp(ir.Dropout, "", ir.Attrs{"rate": rate, "seed": seed}, in(g, "x", shape...))
		r := mustRun(t, g, map[string]*Tensor{"x": x}, Options{Step: step})
		return r.Values[op.Results[0]], r.Values[op.Results[1]]
	}
	y, m := mask(7, 3)
	kept := 0
	for i, v := range m.Data {
		switch v {
		case 1 / (1 - rate):
			kept++
		case 0:
		default:
			t.Fatalf("mask[%d] = %v, want 0 or %v", i, v, 1/(1-rate))
		}
		if y.Data[i] != x.Data[i]*v {
			t.Fatalf("y[%d] = %v, want x*mask = %v", i, y.Data[i], x.Data[i]*v)
		}
	}
	if f := float64(kept) / float64(len(m.Data)); math.Abs(f-(1-rate)) > 0.015 {
		t.Errorf("kept fraction %.4f, want about %.2f", f, 1-rate)
	}

	// The formula of the doc comment, spelled out again, for the first
	// elements: generated code reproduces exactly this.
	seed, step := uint64(7), uint64(3)
	for i := range 64 {
		z := seed*0x9E3779B97F4A7C15 + step*0xBF58476D1CE4E5B9 + uint64(i) + 0x9E3779B97F4A7C15
		z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		z ^= z >> 31
		u := float64(z>>11) / (1 << 53)
		if want := u >= rate; (m.Data[i] != 0) != want {
			t.Fatalf("mask[%d] = %v, but u = %v", i, m.Data[i], u)
		}
	}

	differs := func(a, b *Tensor) int {
		n := 0
		for i := range a.Data {
			if a.Data[i] != b.Data[i] {
				n++
			}
		}
		return n
	}
	_, again := mask(7, 3)
	if n := differs(m, again); n != 0 {
		t.Errorf("same seed and step: %d mask elements differ", n)
	}
	_, next := mask(7, 4)
	_, other := mask(8, 3)
	// Independent masks disagree on 2*0.3*0.7 = 42% of the elements.
	for what, t2 := range map[string]*Tensor{"next step": next, "other seed": other} {
		if n := differs(m, t2); n < len(m.Data)/3 {
			t.Errorf("%s: only %d of %d mask elements differ", what, n, len(m.Data))
		}
	}
}

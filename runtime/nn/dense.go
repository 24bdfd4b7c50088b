package nn

import (
	"fmt"
	"math"
)

// The head of the network: global average pooling, the linear layer and
// the softmax cross-entropy loss, and their gradients. Rank-2 tensors
// ([batch, features]) are plain row-major.

// GAP sets y[n, c] (plain [N, C]) to the mean of x's channel c of image n
// over its H*W pixels, summed in float64.
func GAP(c *Ctx, y, x []float32, a Act) {
	mustAct("GAP", a)
	mustLen("GAP", "x", x, a.Len())
	mustLen("GAP", "y", y, a.N*a.C)
	t := c.opTaskFor(keyGAP, gapRange)
	t.a = a
	t.y[0], t.x[0] = y, x
	t.spread(rowsOf(a).count, a.Len())
}

func gapRange(t *opTask, _, lo, hi int) {
	y, x := t.y[0], t.x[0]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		acc := sumLanes(x[u*r.size:(u+1)*r.size], r.lanes)
		out := u/r.groups*t.a.C + r.first(u)
		for l := range r.lanes {
			y[out+l] = float32(acc[l] / float64(r.pix))
		}
	}
}

// GAPGrad sets every pixel of dx's channel c of image n to dy[n, c]/(H*W),
// a being dx's shape.
func GAPGrad(c *Ctx, dx, dy []float32, a Act) {
	mustAct("GAPGrad", a)
	mustLen("GAPGrad", "dx", dx, a.Len())
	mustLen("GAPGrad", "dy", dy, a.N*a.C)
	t := c.opTaskFor(keyGAPGrad, gapGradRange)
	t.a = a
	t.y[0], t.x[0] = dx, dy
	t.spread(rowsOf(a).count, a.Len())
}

func gapGradRange(t *opTask, _, lo, hi int) {
	dx, dy := t.y[0], t.x[0]
	r := rowsOf(t.a)
	for u := lo; u < hi; u++ {
		var g [8]float32
		in := u/r.groups*t.a.C + r.first(u)
		for l := range r.lanes {
			g[l] = float32(float64(dy[in+l]) / float64(r.pix))
		}
		row := dx[u*r.size : (u+1)*r.size]
		for i := 0; i < len(row); i += r.lanes {
			copy(row[i:i+r.lanes], g[:r.lanes])
		}
	}
}

// Linear sets y = x wᵀ + b: x is [batch, in], w is [out, in], b is [out]
// and y is [batch, out]; each output is one float64 dot product.
func Linear(c *Ctx, y, x, w, b []float32, batch, in, out int) {
	mustLen("Linear", "y", y, batch*out)
	mustLen("Linear", "x", x, batch*in)
	mustLen("Linear", "w", w, out*in)
	mustLen("Linear", "b", b, out)
	t := c.opTaskFor(keyLinear, linearRange)
	t.y[0] = y
	t.x[0], t.x[1], t.x[2] = x, w, b
	t.k[0], t.k[1] = in, out
	t.spread(batch, batch*in*out)
}

func linearRange(t *opTask, _, lo, hi int) {
	y, x, w, b := t.y[0], t.x[0], t.x[1], t.x[2]
	in, out := t.k[0], t.k[1]
	for n := lo; n < hi; n++ {
		xr := x[n*in : (n+1)*in]
		for k := range out {
			wr := w[k*in : (k+1)*in]
			wr = wr[:len(xr)]
			sum := 0.0
			for i, v := range xr {
				sum += float64(v) * float64(wr[i])
			}
			y[n*out+k] = float32(sum + float64(b[k]))
		}
	}
}

// LinearDx sets dx = dy w ([batch, out] times [out, in]), the gradient of
// Linear with respect to x, summing over out in order in float64. Wide
// scratch: in per worker.
func LinearDx(c *Ctx, dx, dy, w []float32, batch, in, out int) {
	mustLen("LinearDx", "dx", dx, batch*in)
	mustLen("LinearDx", "dy", dy, batch*out)
	mustLen("LinearDx", "w", w, out*in)
	c.clearWide("LinearDx", in)
	t := c.opTaskFor(keyLinearDx, linearDxRange)
	t.y[0] = dx
	t.x[0], t.x[1] = dy, w
	t.k[0], t.k[1] = in, out
	t.spread(batch, batch*in*out)
}

func linearDxRange(t *opTask, w, lo, hi int) {
	dx, dy, wt := t.y[0], t.x[0], t.x[1]
	in, out := t.k[0], t.k[1]
	acc := t.c.wide[w][:in]
	for n := lo; n < hi; n++ {
		clear(acc)
		for k := range out {
			g := float64(dy[n*out+k])
			wr := wt[k*in : (k+1)*in]
			wr = wr[:len(acc)]
			for i, v := range wr {
				acc[i] += g * float64(v)
			}
		}
		row := dx[n*in : (n+1)*in]
		for i, v := range acc {
			row[i] = float32(v)
		}
	}
}

// LinearDw sets dw = dyᵀ x ([out, batch] times [batch, in]), the gradient
// of Linear with respect to w, summing over the batch in order in
// float64. Wide scratch: in per worker.
func LinearDw(c *Ctx, dw, dy, x []float32, batch, in, out int) {
	mustLen("LinearDw", "dw", dw, out*in)
	mustLen("LinearDw", "dy", dy, batch*out)
	mustLen("LinearDw", "x", x, batch*in)
	c.clearWide("LinearDw", in)
	t := c.opTaskFor(keyLinearDw, linearDwRange)
	t.y[0] = dw
	t.x[0], t.x[1] = dy, x
	t.k[0], t.k[1], t.k[2] = in, out, batch
	t.spread(out, batch*in*out)
}

func linearDwRange(t *opTask, w, lo, hi int) {
	dw, dy, x := t.y[0], t.x[0], t.x[1]
	in, out, batch := t.k[0], t.k[1], t.k[2]
	acc := t.c.wide[w][:in]
	for k := lo; k < hi; k++ {
		clear(acc)
		for n := range batch {
			g := float64(dy[n*out+k])
			xr := x[n*in : (n+1)*in]
			xr = xr[:len(acc)]
			for i, v := range xr {
				acc[i] += g * float64(v)
			}
		}
		row := dw[k*in : (k+1)*in]
		for i, v := range acc {
			row[i] = float32(v)
		}
	}
}

// SoftmaxCE sets loss[0] to the mean over the batch of the cross-entropy
// logsumexp(z_n) - z_n[labels[n]] of the logits z ([batch, classes]), in
// float64. Labels are in [0, classes): generated code checks them before
// the step. Wide scratch: 1 per worker.
func SoftmaxCE(c *Ctx, loss, logits []float32, labels []int32, batch, classes int) {
	mustLen("SoftmaxCE", "loss", loss, 1)
	mustLen("SoftmaxCE", "logits", logits, batch*classes)
	mustLabels("SoftmaxCE", labels, batch, classes)
	c.clearWide("SoftmaxCE", 1)
	t := c.opTaskFor(keySoftmaxCE, softmaxCERange)
	t.x[0], t.lab, t.k[0] = logits, labels, classes
	t.spread(batch, 8*batch*classes)
	loss[0] = float32(c.sumWide(1)[0] / float64(batch))
}

func softmaxCERange(t *opTask, w, lo, hi int) {
	z, labels, K := t.x[0], t.lab, t.k[0]
	sum := 0.0
	for n := lo; n < hi; n++ {
		row := z[n*K : (n+1)*K]
		sum += logSumExp(row) - float64(row[labels[n]])
	}
	t.c.wide[w][0] = sum
}

// SoftmaxCEGrad sets dz = scale*(softmax(z) - onehot(labels))/batch, the
// gradient of SoftmaxCE's loss times scale, in float64.
func SoftmaxCEGrad(c *Ctx, dz, logits []float32, labels []int32, batch, classes int, scale float64) {
	mustLen("SoftmaxCEGrad", "dz", dz, batch*classes)
	mustLen("SoftmaxCEGrad", "logits", logits, batch*classes)
	mustLabels("SoftmaxCEGrad", labels, batch, classes)
	t := c.opTaskFor(keySoftmaxCEGrad, softmaxCEGradRange)
	t.y[0], t.x[0], t.lab = dz, logits, labels
	t.k[0], t.k[1], t.f[0] = classes, batch, scale
	t.spread(batch, 8*batch*classes)
}

func softmaxCEGradRange(t *opTask, _, lo, hi int) {
	dz, z, labels := t.y[0], t.x[0], t.lab
	K, N, s := t.k[0], float64(t.k[1]), t.f[0]
	for n := lo; n < hi; n++ {
		row, out := z[n*K:(n+1)*K], dz[n*K:(n+1)*K]
		lse := logSumExp(row)
		y := int(labels[n])
		for k, v := range row {
			p := math.Exp(float64(v) - lse)
			if k == y {
				p--
			}
			out[k] = float32(s * p / N)
		}
	}
}

// logSumExp returns log Σ exp(z[k]) in float64, shifted by the maximum so
// that nothing overflows.
func logSumExp(z []float32) float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, float64(v))
	}
	if math.IsInf(m, 0) {
		return m
	}
	sum := 0.0
	for _, v := range z {
		sum += math.Exp(float64(v) - m)
	}
	return m + math.Log(sum)
}

// mustLabels panics unless labels holds batch classes in [0, classes).
func mustLabels(kernel string, labels []int32, batch, classes int) {
	if len(labels) != batch {
		panic(fmt.Sprintf("BUG: nn.%s: %d labels, want %d", kernel, len(labels), batch))
	}
	for n, y := range labels {
		if y < 0 || int(y) >= classes {
			panic(fmt.Sprintf("BUG: nn.%s: label %d of example %d is outside [0, %d) (the caller checks labels)", kernel, y, n, classes))
		}
	}
}

package nn

// SGD takes one step of SGD with momentum and weight decay on n weights:
// m = momentum*mom + g + decay*w, mom' = m, w' = w - lr[0]*m: in float32
// with fused multiply-adds where the assembly runs, else in float64 with
// w' computed from the unrounded m (as the interpreter does). lr is
// a one-element slice (the step's learning rate, an input). The memory
// plan writes the step into the weights and momentum it reads: wOut may
// be w and momOut may be mom.
func SGD(c *Ctx, wOut, momOut, w, g, mom, lr []float32, n int, momentum, decay float64) {
	mustLen("SGD", "wOut", wOut, n)
	mustLen("SGD", "momOut", momOut, n)
	mustLen("SGD", "w", w, n)
	mustLen("SGD", "g", g, n)
	mustLen("SGD", "mom", mom, n)
	mustLen("SGD", "lr", lr, 1)
	t := c.opTaskFor(keySGD, sgdRange)
	t.y[0], t.y[1] = wOut, momOut
	t.x[0], t.x[1], t.x[2] = w, g, mom
	t.f[0], t.f[1], t.f[2] = momentum, decay, float64(lr[0])
	t.spread(n, 5*n)
}

func sgdRange(t *opTask, _, lo, hi int) {
	sgdVec(t.y[0][lo:hi], t.y[1][lo:hi], t.x[0][lo:hi], t.x[1][lo:hi], t.x[2][lo:hi], t.f[0], t.f[1], t.f[2])
}

// EMA sets y = (1-momentum)*run + momentum*scale*stat over n elements,
// in float64: the running-statistics update of BatchNorm (scale turns a
// biased batch variance into an unbiased one when the lowering asks for
// it). The memory plan writes it into the state it reads: y may be run.
// The vectors are per-channel, so it runs on the calling goroutine.
func EMA(c *Ctx, y, run, stat []float32, n int, momentum, scale float64) {
	mustLen("EMA", "y", y, n)
	mustLen("EMA", "run", run, n)
	mustLen("EMA", "stat", stat, n)
	for i := range n {
		y[i] = float32((1-momentum)*float64(run[i]) + momentum*scale*float64(stat[i]))
	}
}

package passes

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/resnetc/resnetc/ir"
)

// SGDOptions are the hyperparameters of the update Autodiff appends:
// m' = Momentum*m + g + Decay*w, w' = w - lr*m' (the sgd op).
type SGDOptions struct {
	Momentum float64 // in [0, 1)
	Decay    float64 // L2 weight decay, >= 0
}

// DefaultSGD is the paper's recipe: momentum 0.9, weight decay 1e-4.
var DefaultSGD = SGDOptions{Momentum: 0.9, Decay: 1e-4}

// Autodiff turns a train-mode forward graph with an output "logits" into
// one training step, so that a step is a single static graph the later
// passes and the code generator see whole. It declares the inputs "labels"
// (i32[N]) and "lr" (f32[]), appends the mean cross-entropy "loss" (a new
// output; "logits" stays), the backward ops of every param, and for each
// param a momentum state "<param>.momentum" and an sgd op "<param>.sgd"
// with DefaultSGD, whose results update the param and its momentum. The
// forward graph's own updates (running statistics) are kept.
//
// The forward graph may be plain or already fused by FuseBNReLUConv: the
// fused ops have gradient rules of their own, which recompute a conv's
// normalized and rectified input from the pre-BN tensor it reads.
//
// On error the graph is left as it was.
func Autodiff(g *ir.Graph) error { return AutodiffWith(DefaultSGD)(g) }

// AutodiffWith returns the Autodiff pass with other SGD hyperparameters.
func AutodiffWith(o SGDOptions) func(*ir.Graph) error {
	return func(g *ir.Graph) error {
		if err := autodiff(g, o); err != nil {
			return &Error{Pass: "autodiff", Err: err}
		}
		return nil
	}
}

func autodiff(g *ir.Graph, o SGDOptions) (err error) {
	if !(o.Momentum >= 0 && o.Momentum < 1) {
		return fmt.Errorf("SGD momentum %v, want 0 <= momentum < 1", o.Momentum)
	}
	if !(o.Decay >= 0) || math.IsInf(o.Decay, 1) {
		return fmt.Errorf("SGD decay %v, want a finite value >= 0", o.Decay)
	}
	if g == nil {
		return errors.New("nil graph")
	}
	if g.Mode != ir.Train {
		return fmt.Errorf("graph is in %s mode; the training step is built from a train-mode forward graph", g.Mode)
	}
	logits := g.Output("logits")
	if logits == nil {
		return errors.New(`graph has no output "logits"`)
	}
	if g.Output("loss") != nil {
		return errors.New(`graph already has an output "loss" (autodiff has already run?)`)
	}
	for _, name := range []string{"labels", "lr"} {
		if g.Lookup(name) != nil {
			return fmt.Errorf("graph already declares %q (autodiff has already run?)", name)
		}
	}
	if t := logits.Type; t.DType != ir.F32 || len(t.Shape) != 2 {
		return fmt.Errorf(`output "logits" is %v, want f32[N,K]`, t)
	}
	params := g.Decls(ir.Param)
	updated := map[*ir.Value]bool{}
	for _, u := range g.Updates {
		updated[u.Target] = true
	}
	for _, p := range params {
		if updated[p.Result()] {
			return fmt.Errorf("param %q already has an update", p.Name)
		}
		if name := p.Name + ".momentum"; g.Lookup(name) != nil {
			return fmt.Errorf("graph already declares %q", name)
		}
	}

	// Everything below only appends; undo it all on error.
	nOps, nOut, nUpd := len(g.Ops), len(g.Outputs), len(g.Updates)
	defer func() {
		if err != nil {
			g.Ops = slices.Delete(g.Ops, nOps, len(g.Ops))
			g.Outputs = g.Outputs[:nOut]
			g.Updates = g.Updates[:nUpd]
		}
	}()

	labels := g.Decl(ir.Input, "labels", ir.Type{DType: ir.I32, Shape: ir.Shape{logits.Type.Shape[0]}}, nil)
	lossOp, err := g.AddOp(ir.SoftmaxCE, "loss", nil, logits, labels)
	if err != nil {
		return err
	}
	loss := lossOp.Result()
	ws := make([]*ir.Value, len(params))
	for i, p := range params {
		ws[i] = p.Result()
	}
	grads, err := Gradients(g, []*ir.Value{loss}, []*ir.Value{nil}, ws)
	if err != nil {
		return err
	}
	lr := g.Decl(ir.Input, "lr", ir.T32(), nil)
	attrs := ir.Attrs{}
	setNonDefault(attrs, ir.SGD, "momentum", o.Momentum)
	setNonDefault(attrs, ir.SGD, "decay", o.Decay)
	for i, p := range params {
		w := ws[i]
		mt := w.Type
		mt.Shape = slices.Clone(mt.Shape)
		m := g.Decl(ir.State, p.Name+".momentum", mt, nil)
		sgd, err := g.AddOp(ir.SGD, p.Name+".sgd", attrs.Clone(), w, grads[i], m, lr)
		if err != nil {
			return err
		}
		g.AddUpdate(w, sgd.Results[0])
		g.AddUpdate(m, sgd.Results[1])
	}
	g.AddOutput("loss", loss)
	return nil
}

// setNonDefault sets attrs[name] = v unless v is the op table's default
// for that attribute of kind, so printed graphs show only what differs.
func setNonDefault(attrs ir.Attrs, kind ir.OpKind, name string, v float64) {
	for _, s := range ir.Info(kind).Attrs {
		if s.Name == name {
			if d, ok := s.Default.(float64); ok && d == v {
				return
			}
		}
	}
	attrs[name] = v
}

// Gradients appends to g the ops of the vector-Jacobian product of ys
// with seeds dys, and returns the gradient of the sum of <dys[i], ys[i]>
// with respect to each of xs. Reverse-mode differentiation is how a
// training step gets every weight gradient in one backward sweep.
//
// ys, dys and xs must be values of g; dys[i] has ys[i]'s type, or is nil
// to seed a softmaxce loss with 1 (its gradient op carries the constant).
// Only ops on a path from xs to ys are differentiated. A value used several
// times gets its contributions summed with add ops, in reverse schedule
// order of its users, so the output is deterministic. Gradient ops are named
// after the forward op ("s1.u1.conv1.dx", "s1.u1.conv1.dw"); sums after the
// value ("s1.u1.relu1.dsum").
//
// It is an error if an x does not influence ys, if a gradient would have to
// flow through an op that has none (ema, gradient ops, sgd, bnfold), or if an
// explicit seed reaches a softmaxce. On error g is left as it was.
func Gradients(g *ir.Graph, ys, dys, xs []*ir.Value) ([]*ir.Value, error) {
	n := len(g.Ops)
	gx, err := gradients(g, ys, dys, xs)
	if err != nil {
		g.Ops = slices.Delete(g.Ops, n, len(g.Ops))
		return nil, err
	}
	return gx, nil
}

// differ holds the state of one reverse sweep.
type differ struct {
	g     *ir.Graph
	index map[*ir.Op]int
	live  map[*ir.Value]bool      // depends on some x
	grad  map[*ir.Value]*ir.Value // accumulated gradient
	unit  map[*ir.Value]int       // number of nil (unit) seeds of a softmaxce loss
	sums  map[*ir.Value]int       // add ops emitted so far per value, for names
	// centred holds, for a conv2d_fused whose statistics feed exactly one
	// moments op over its whole output, that op's (dmean, dvar, mean):
	// the conv's rule then emits bnstats_grad, dmean/M + 2(y-mean)dvar/M,
	// instead of moments_grad and stats_grad, whose sum dsum + 2y*dsumsq
	// cancels catastrophically in float32 when |mean| is not small
	// against the spread of y.
	centred map[*ir.Op][3]*ir.Value
}

func gradients(g *ir.Graph, ys, dys, xs []*ir.Value) ([]*ir.Value, error) {
	if len(ys) != len(dys) {
		return nil, fmt.Errorf("gradients: %d values but %d seeds", len(ys), len(dys))
	}
	d := &differ{
		g:     g,
		index: make(map[*ir.Op]int, len(g.Ops)),
		live:  map[*ir.Value]bool{},
		grad:  map[*ir.Value]*ir.Value{},
		unit:  map[*ir.Value]int{},
		sums:  map[*ir.Value]int{},
	}
	for i, op := range g.Ops {
		if op == nil {
			return nil, fmt.Errorf("gradients: op %d is nil", i)
		}
		d.index[op] = i
	}
	for i, x := range xs {
		if err := d.member(x); err != nil {
			return nil, fmt.Errorf("gradients: x[%d]: %v", i, err)
		}
		if x.Type.DType != ir.F32 {
			return nil, fmt.Errorf("gradients: %s is %v, only f32 values have gradients", d.describe(x), x.Type)
		}
		d.live[x] = true
	}
	for i, y := range ys {
		if err := d.member(y); err != nil {
			return nil, fmt.Errorf("gradients: y[%d]: %v", i, err)
		}
		dy := dys[i]
		if dy == nil {
			if y.Def.Kind != ir.SoftmaxCE {
				return nil, fmt.Errorf("gradients: a nil seed (1) is only supported for a softmaxce loss, not for %s", d.describe(y))
			}
			d.unit[y]++
			continue
		}
		if err := d.member(dy); err != nil {
			return nil, fmt.Errorf("gradients: seed of y[%d]: %v", i, err)
		}
		if !dy.Type.Equal(y.Type) {
			return nil, fmt.Errorf("gradients: the seed of %s is %v, want %v", d.describe(y), dy.Type, y.Type)
		}
		if err := d.accumulate(y, dy); err != nil {
			return nil, err
		}
	}

	// Forward: which values depend on some x. A dropout mask does not
	// depend on its input: it is fixed by the seed and the step.
	ops := slices.Clone(g.Ops)
	for _, op := range ops {
		if op.Kind.IsDecl() || !slices.ContainsFunc(op.Args, func(a *ir.Value) bool { return d.live[a] }) {
			continue
		}
		for i, r := range op.Results {
			if op.Kind == ir.Dropout && i == 1 {
				continue
			}
			d.live[r] = true
		}
	}

	// Backward: every op with a gradient on a result and a live argument.
	for i := len(ops) - 1; i >= 0; i-- {
		op := ops[i]
		if op.Kind.IsDecl() {
			continue
		}
		if !slices.ContainsFunc(op.Results, func(r *ir.Value) bool { return d.grad[r] != nil || d.unit[r] > 0 }) {
			continue
		}
		if !slices.ContainsFunc(op.Args, func(a *ir.Value) bool { return d.live[a] }) {
			continue
		}
		// The rules index arguments and results as the op table says;
		// check that first, so an unverified graph is an error.
		types, err := ir.InferTypes(op)
		if err == nil && len(types) != len(op.Results) {
			err = fmt.Errorf("has %d results, want %d", len(op.Results), len(types))
		}
		if err != nil {
			return nil, fmt.Errorf("gradients: op %d is invalid: %v", i, err)
		}
		rule, ok := gradRules[op.Kind]
		if !ok {
			if why, ok := noGradient[op.Kind]; ok {
				return nil, fmt.Errorf("gradients: %s: a gradient must flow through it, but %s", d.describeOp(op), why)
			}
			return nil, fmt.Errorf("gradients: %s: no gradient rule for %s", d.describeOp(op), op.Kind)
		}
		if err := rule(d, op); err != nil {
			return nil, fmt.Errorf("gradients: %s: %w", d.describeOp(op), err)
		}
	}

	gx := make([]*ir.Value, len(xs))
	for i, x := range xs {
		if d.unit[x] > 0 {
			return nil, fmt.Errorf("gradients: %s is itself a seeded loss; its gradient is the constant 1", d.describe(x))
		}
		if d.grad[x] == nil {
			return nil, fmt.Errorf("gradients: %s does not influence the differentiated values", d.describe(x))
		}
		gx[i] = d.grad[x]
	}
	return gx, nil
}

// member checks that v is a value of the graph.
func (d *differ) member(v *ir.Value) error {
	if v == nil {
		return errors.New("nil value")
	}
	if v.Def == nil {
		return errors.New("value has no defining op")
	}
	if _, ok := d.index[v.Def]; !ok || v.Index < 0 || v.Index >= len(v.Def.Results) || v.Def.Results[v.Index] != v {
		return fmt.Errorf("%s is not a value of graph %q", v.Def, d.g.Name)
	}
	return nil
}

// describe names a value for errors: its op, and the op's position when
// the op has no name.
func (d *differ) describe(v *ir.Value) string {
	s := d.describeOp(v.Def)
	if len(v.Def.Results) > 1 {
		s += fmt.Sprintf(" result %d", v.Index)
	}
	return s
}

// describeOp names an op for errors.
func (d *differ) describeOp(op *ir.Op) string {
	if op.Name == "" {
		return fmt.Sprintf("%s (op %d)", op, d.index[op])
	}
	return op.String()
}

// accumulate adds c to the gradient of v.
func (d *differ) accumulate(v, c *ir.Value) error {
	if !c.Type.Equal(v.Type) {
		return fmt.Errorf("gradient contribution %v for %s, want %v", c.Type, d.describe(v), v.Type)
	}
	prev := d.grad[v]
	if prev == nil {
		d.grad[v] = c
		return nil
	}
	d.sums[v]++
	name := ""
	if base := v.Def.Name; base != "" {
		if v.Index > 0 {
			base += "#" + strconv.Itoa(v.Index)
		}
		name = base + ".dsum"
		if k := d.sums[v]; k > 1 {
			name += strconv.Itoa(k)
		}
	}
	sum, err := d.g.AddOp(ir.Add, name, nil, prev, c)
	if err != nil {
		return err
	}
	d.grad[v] = sum.Result()
	return nil
}

// emit appends one gradient op named after the forward op fwd.
func (d *differ) emit(fwd *ir.Op, suffix string, kind ir.OpKind, attrs ir.Attrs, args ...*ir.Value) (*ir.Op, error) {
	name := ""
	if fwd.Name != "" {
		name = fwd.Name + "." + suffix
	}
	return d.g.AddOp(kind, name, attrs, args...)
}

// emit1 is emit for single-result ops, contributing the result to the
// gradient of fwd's argument i.
func (d *differ) emit1(fwd *ir.Op, i int, suffix string, kind ir.OpKind, attrs ir.Attrs, args ...*ir.Value) error {
	if !d.live[fwd.Args[i]] {
		return nil
	}
	op, err := d.emit(fwd, suffix, kind, attrs, args...)
	if err != nil {
		return err
	}
	return d.accumulate(fwd.Args[i], op.Result())
}

// pass contributes dy itself to the gradient of fwd's argument i.
func (d *differ) pass(fwd *ir.Op, i int, dy *ir.Value) error {
	if !d.live[fwd.Args[i]] {
		return nil
	}
	return d.accumulate(fwd.Args[i], dy)
}

// onlyReader reports whether op is the only op of the graph that reads v
// (graph outputs count as readers).
func (d *differ) onlyReader(v *ir.Value, op *ir.Op) bool {
	for _, o := range d.g.Outputs {
		if o.Value == v {
			return false
		}
	}
	for _, other := range d.g.Ops {
		if other == op {
			continue
		}
		for _, a := range other.Args {
			if a == v {
				return false
			}
		}
	}
	return true
}

// copyAttrs returns the named attributes that op sets explicitly, so a
// gradient op repeats the forward op's geometry as written.
func copyAttrs(op *ir.Op, names ...string) ir.Attrs {
	a := ir.Attrs{}
	for _, n := range names {
		if v, ok := op.Attrs[n]; ok {
			a[n] = v
		}
	}
	return a
}

// gradRules maps each differentiable op kind to the function that emits
// its gradient ops. A rule runs only for an op with a gradient on some
// result (the dy of result 0 may still be nil for multi-result ops) and
// at least one live argument; it contributes only to live arguments.
var gradRules = map[ir.OpKind]func(*differ, *ir.Op) error{
	ir.Conv2D:       (*differ).conv2D,
	ir.BNStats:      (*differ).bnStats,
	ir.BNNorm:       (*differ).bnNorm,
	ir.ReLU:         (*differ).relu,
	ir.Sigmoid:      (*differ).sigmoid,
	ir.Add:          (*differ).add,
	ir.Mul:          (*differ).mul,
	ir.Scale:        (*differ).scale,
	ir.Dropout:      (*differ).dropout,
	ir.SubsamplePad: (*differ).subsamplePad,
	ir.MaxPool:      (*differ).maxPool,
	ir.GAP:          (*differ).gap,
	ir.Linear:       (*differ).linear,
	ir.SoftmaxCE:    (*differ).softmaxCE,

	ir.Conv2DFused: (*differ).conv2DFused,
	ir.BNAffine:    (*differ).bnAffine,
	ir.Moments:     (*differ).moments,
	ir.AffineReLU:  (*differ).affineReLU,
	ir.Relayout:    (*differ).relayout,
}

// noGradient lists the op kinds that are not differentiable, with the
// reason given when a gradient would have to flow through one.
var noGradient = map[ir.OpKind]string{
	ir.EMA: "ema (a running-statistics update) is not differentiable",
	ir.SGD: "sgd (the optimizer update) is not differentiable",

	ir.Conv2DDx:         gradientOp,
	ir.Conv2DDw:         gradientOp,
	ir.ChanSum:          gradientOp,
	ir.BNNormGrad:       gradientOp,
	ir.BNStatsGrad:      gradientOp,
	ir.ReLUGrad:         gradientOp,
	ir.SigmoidGrad:      gradientOp,
	ir.SubsamplePadGrad: gradientOp,
	ir.MaxPoolGrad:      gradientOp,
	ir.GAPGrad:          gradientOp,
	ir.LinearDx:         gradientOp,
	ir.LinearDw:         gradientOp,
	ir.SoftmaxCEGrad:    gradientOp,
	ir.Conv2DDwFused:    gradientOp,
	ir.AffineReLUGrad:   gradientOp,
	ir.BNAffineGrad:     gradientOp,
	ir.MomentsGrad:      gradientOp,
	ir.StatsGrad:        gradientOp,

	ir.BNFold: "bnfold (BatchNorm folded into conv weights) belongs to inference graphs, which are not trained",
}

const gradientOp = "gradient ops are not differentiated again"

// dy returns the gradient of fwd's only differentiable result, or nil.
func (d *differ) dy(fwd *ir.Op) *ir.Value { return d.grad[fwd.Results[0]] }

func (d *differ) conv2D(op *ir.Op) error {
	dy, x, w := d.dy(op), op.Args[0], op.Args[1]
	if d.live[x] {
		a := copyAttrs(op, "stride", "pad")
		a["in_h"], a["in_w"] = x.Type.Shape[2], x.Type.Shape[3]
		if err := d.emit1(op, 0, "dx", ir.Conv2DDx, a, dy, w); err != nil {
			return err
		}
	}
	if d.live[w] {
		k := w.Type.Shape[2]
		if w.Type.Shape[3] != k {
			return fmt.Errorf("kernel %dx%d is not square; conv2d_dw supports square kernels only", k, w.Type.Shape[3])
		}
		a := copyAttrs(op, "stride", "pad")
		a["kernel"] = k
		if err := d.emit1(op, 1, "dw", ir.Conv2DDw, a, dy, x); err != nil {
			return err
		}
	}
	if len(op.Args) == 3 {
		return d.emit1(op, 2, "db", ir.ChanSum, nil, dy)
	}
	return nil
}

func (d *differ) bnStats(op *ir.Op) error {
	x := op.Args[0]
	mean, variance := op.Results[0], op.Results[1]
	dmean, dvar := d.grad[mean], d.grad[variance]
	// A statistic with no gradient contributes nothing: stand in a zero
	// of the other's type (both are f32[C]) rather than a new op kind.
	var err error
	if dmean == nil {
		dmean, err = d.zero(op, "stats.dmean", dvar)
	} else if dvar == nil {
		dvar, err = d.zero(op, "stats.dvar", dmean)
	}
	if err != nil {
		return err
	}
	if !d.live[x] {
		return nil
	}
	// The gradient x already has (through the normalization, which the
	// reverse sweep reaches first) is bnstats_grad's addend, saving an add
	// and a pass over the tensor.
	args := []*ir.Value{dmean, dvar, x, mean}
	if prev := d.grad[x]; prev != nil {
		args = append(args, prev)
	}
	bg, err := d.emit(op, "stats.dx", ir.BNStatsGrad, nil, args...)
	if err != nil {
		return err
	}
	d.grad[x] = bg.Result()
	return nil
}

// zero returns scale(like){factor=0}, a zero of like's type.
func (d *differ) zero(fwd *ir.Op, suffix string, like *ir.Value) (*ir.Value, error) {
	op, err := d.emit(fwd, suffix, ir.Scale, ir.Attrs{"factor": 0.0}, like)
	if err != nil {
		return nil, err
	}
	return op.Result(), nil
}

func (d *differ) bnNorm(op *ir.Op) error {
	x, mean, variance, gamma := op.Args[0], op.Args[1], op.Args[2], op.Args[3]
	bg, err := d.emit(op, "grad", ir.BNNormGrad, copyAttrs(op, "eps"), d.dy(op), x, mean, variance, gamma)
	if err != nil {
		return err
	}
	// Results: dx, dmean, dvar, dgamma, dbeta, in argument order.
	for i := range 5 {
		if err := d.pass(op, i, bg.Results[i]); err != nil {
			return err
		}
	}
	return nil
}

func (d *differ) relu(op *ir.Op) error {
	return d.emit1(op, 0, "dx", ir.ReLUGrad, nil, d.dy(op), op.Result())
}

func (d *differ) sigmoid(op *ir.Op) error {
	return d.emit1(op, 0, "dx", ir.SigmoidGrad, nil, d.dy(op), op.Result())
}

func (d *differ) add(op *ir.Op) error {
	dy := d.dy(op)
	if err := d.pass(op, 0, dy); err != nil {
		return err
	}
	return d.pass(op, 1, dy)
}

func (d *differ) mul(op *ir.Op) error {
	dy, a, b := d.dy(op), op.Args[0], op.Args[1]
	if err := d.emit1(op, 0, "da", ir.Mul, nil, dy, b); err != nil {
		return err
	}
	return d.emit1(op, 1, "db", ir.Mul, nil, dy, a)
}

func (d *differ) scale(op *ir.Op) error {
	return d.emit1(op, 0, "dx", ir.Scale, ir.Attrs{"factor": op.Float("factor")}, d.dy(op))
}

func (d *differ) dropout(op *ir.Op) error {
	dy := d.dy(op)
	if dy == nil { // only the mask, which is constant, has a gradient
		return nil
	}
	return d.emit1(op, 0, "dx", ir.Mul, nil, dy, op.Results[1])
}

func (d *differ) subsamplePad(op *ir.Op) error {
	x := op.Args[0]
	a := copyAttrs(op, "stride")
	a["channels"], a["in_h"], a["in_w"] = x.Type.Shape[1], x.Type.Shape[2], x.Type.Shape[3]
	return d.emit1(op, 0, "dx", ir.SubsamplePadGrad, a, d.dy(op))
}

func (d *differ) maxPool(op *ir.Op) error {
	return d.emit1(op, 0, "dx", ir.MaxPoolGrad, copyAttrs(op, "kernel", "stride", "pad"), d.dy(op), op.Args[0])
}

func (d *differ) gap(op *ir.Op) error {
	x := op.Args[0]
	a := ir.Attrs{"in_h": x.Type.Shape[2], "in_w": x.Type.Shape[3]}
	return d.emit1(op, 0, "dx", ir.GAPGrad, a, d.dy(op))
}

func (d *differ) linear(op *ir.Op) error {
	dy := d.dy(op)
	if err := d.emit1(op, 0, "dx", ir.LinearDx, nil, dy, op.Args[1]); err != nil {
		return err
	}
	if err := d.emit1(op, 1, "dw", ir.LinearDw, nil, dy, op.Args[0]); err != nil {
		return err
	}
	return d.emit1(op, 2, "db", ir.ChanSum, nil, dy)
}

func (d *differ) softmaxCE(op *ir.Op) error {
	loss := op.Result()
	if d.grad[loss] != nil {
		return errors.New("an explicit gradient reaches softmaxce; only a nil (unit) seed of the loss is supported")
	}
	a := ir.Attrs{}
	if n := d.unit[loss]; n != 1 {
		a["scale"] = float64(n)
	}
	return d.emit1(op, 0, "dx", ir.SoftmaxCEGrad, a, op.Args[0], op.Args[1])
}

// The fused ops of FuseBNReLUConv, which runs on the forward graph before
// autodiff, and the layout pass's relayout.

// conv2DFused differentiates y = relu?(conv(prologue(x), w) + b + r), with
// sum = Σ y and sumsq = Σ y² when it has statistics:
//
//	dy' = dy + stats_grad(dsum, dsumsq, y)   (with statistics)
//	dz  = relu_grad(dy', y)                  (relu epilogue; y > 0 ⇔ z > 0)
//	dr  = dz,  db = chansum(dz)
//	dw  = conv2d_dw_fused(dz, x, [scale, shift]){prologue}
//	da  = conv2d_dx(dz, w)
//	dx  = da (none), relu_grad(da, x) (relu: x > 0 ⇔ relu(x) > 0),
//	      or dx, dscale, dshift = affine_relu_grad(da, x, scale, shift)
//
// The weight gradient recomputes the prologue from x, the stored pre-BN
// tensor, so no normalized or rectified activation is kept for it. Without
// a prologue it is the plain conv2d_dw.
func (d *differ) conv2DFused(op *ir.Op) error {
	x, w, y := op.Args[0], op.Args[1], op.Results[0]
	prologue := op.Str("prologue")
	bias, scale, shift, residual := -1, -1, -1, -1
	i := 2
	if op.Bool("bias") {
		bias, i = i, i+1
	}
	if prologue == "affine_relu" {
		scale, shift, i = i, i+1, i+2
	}
	if op.Bool("residual") {
		residual = i
	}

	dy := d.grad[y]
	if c, ok := d.centred[op]; ok {
		args := []*ir.Value{c[0], c[1], y, c[2]}
		if dy != nil {
			args = append(args, dy) // the gradient y already has, added in the same pass
		}
		bg, err := d.emit(op, "stats.dy", ir.BNStatsGrad, nil, args...)
		if err != nil {
			return err
		}
		dy = bg.Result()
	}
	if op.Bool("stats") && (d.grad[op.Results[1]] != nil || d.grad[op.Results[2]] != nil) {
		dsum, dsumsq := d.grad[op.Results[1]], d.grad[op.Results[2]]
		var err error
		if dsum == nil {
			dsum, err = d.zero(op, "stats.dsum", dsumsq)
		} else if dsumsq == nil {
			dsumsq, err = d.zero(op, "stats.dsumsq", dsum)
		}
		if err != nil {
			return err
		}
		sg, err := d.emit(op, "stats.dy", ir.StatsGrad, nil, dsum, dsumsq, y)
		if err != nil {
			return err
		}
		if dy == nil {
			dy = sg.Result()
		} else {
			sum, err := d.emit(op, "dy", ir.Add, nil, dy, sg.Result())
			if err != nil {
				return err
			}
			dy = sum.Result()
		}
	}
	if dy == nil {
		panic(fmt.Sprintf("BUG: the gradient rule of %s ran with no gradient on any result", op))
	}
	dz := dy
	if op.Bool("relu") {
		rg, err := d.emit(op, "dz", ir.ReLUGrad, nil, dy, y)
		if err != nil {
			return err
		}
		dz = rg.Result()
	}
	if residual >= 0 {
		if err := d.pass(op, residual, dz); err != nil {
			return err
		}
	}
	if bias >= 0 {
		if err := d.emit1(op, bias, "db", ir.ChanSum, nil, dz); err != nil {
			return err
		}
	}
	if d.live[w] {
		k := w.Type.Shape[2]
		if w.Type.Shape[3] != k {
			return fmt.Errorf("kernel %dx%d is not square; the weight gradient supports square kernels only", k, w.Type.Shape[3])
		}
		a := copyAttrs(op, "stride", "pad")
		a["kernel"] = k
		var err error
		if prologue == "none" {
			err = d.emit1(op, 1, "dw", ir.Conv2DDw, a, dz, x)
		} else {
			a["prologue"] = prologue
			args := []*ir.Value{dz, x}
			if scale >= 0 {
				args = append(args, op.Args[scale], op.Args[shift])
			}
			err = d.emit1(op, 1, "dw", ir.Conv2DDwFused, a, args...)
		}
		if err != nil {
			return err
		}
	}
	if !d.live[x] && (scale < 0 || !d.live[op.Args[scale]] && !d.live[op.Args[shift]]) {
		return nil
	}
	a := copyAttrs(op, "stride", "pad")
	a["in_h"], a["in_w"] = x.Type.Shape[2], x.Type.Shape[3]
	if prologue == "none" {
		return d.emit1(op, 0, "dx", ir.Conv2DDx, a, dz, w)
	}
	da, err := d.emit(op, "da", ir.Conv2DDx, a, dz, w)
	if err != nil {
		return err
	}
	if prologue == "relu" {
		return d.emit1(op, 0, "dx", ir.ReLUGrad, nil, da.Result(), x)
	}
	return d.affineReLUGrad(op, "prologue.grad", da.Result(), []int{0, scale, shift})
}

// affineReLUGrad emits the affine_relu_grad of fwd's arguments at
// positions pos (x, scale, shift) for the gradient da of the activation
// and passes its results back to them. When x already has a gradient, it
// is the op's addend: the sum is formed in the same pass over the tensor.
func (d *differ) affineReLUGrad(fwd *ir.Op, suffix string, da *ir.Value, pos []int) error {
	x := fwd.Args[pos[0]]
	args := []*ir.Value{da, x, fwd.Args[pos[1]], fwd.Args[pos[2]]}
	prev := d.grad[x]
	if d.live[x] && prev != nil {
		args = append(args, prev)
	}
	ag, err := d.emit(fwd, suffix, ir.AffineReLUGrad, nil, args...)
	if err != nil {
		return err
	}
	for j, i := range pos {
		if j == 0 && len(args) == 5 {
			d.grad[x] = ag.Results[0]
			continue
		}
		if err := d.pass(fwd, i, ag.Results[j]); err != nil {
			return err
		}
	}
	return nil
}

// pair returns the gradients of op's two results, with a zero (named by
// suffix0 or suffix1) standing in for a missing one; both are f32[C].
func (d *differ) pair(op *ir.Op, suffix0, suffix1 string) (*ir.Value, *ir.Value, error) {
	g0, g1 := d.grad[op.Results[0]], d.grad[op.Results[1]]
	var err error
	if g0 == nil {
		g0, err = d.zero(op, suffix0, g1)
	} else if g1 == nil {
		g1, err = d.zero(op, suffix1, g0)
	}
	return g0, g1, err
}

// bnAffine differentiates scale, shift = bnaffine(mean, var, gamma, beta).
func (d *differ) bnAffine(op *ir.Op) error {
	dscale, dshift, err := d.pair(op, "affine.dscale", "affine.dshift")
	if err != nil {
		return err
	}
	a := op.Args
	bg, err := d.emit(op, "affine.grad", ir.BNAffineGrad, copyAttrs(op, "eps"), dscale, dshift, a[0], a[1], a[2])
	if err != nil {
		return err
	}
	// Results: dmean, dvar, dgamma, dbeta, in argument order.
	for i := range 4 {
		if err := d.pass(op, i, bg.Results[i]); err != nil {
			return err
		}
	}
	return nil
}

// moments differentiates mean, var = moments(sum, sumsq). When sum and
// sumsq are the statistics of one conv2d_fused over its whole output and
// nothing else reads them, the gradient is left to the conv, which sends
// it straight into its output in the centred form (see differ.centred).
func (d *differ) moments(op *ir.Op) error {
	dmean, dvar, err := d.pair(op, "moments.dmean", "moments.dvar")
	if err != nil {
		return err
	}
	if conv := op.Args[0].Def; conv != nil && conv.Kind == ir.Conv2DFused && conv.Bool("stats") &&
		op.Args[0] == conv.Results[1] && op.Args[1] == conv.Results[2] && d.onlyReader(conv.Results[1], op) && d.onlyReader(conv.Results[2], op) {
		y := conv.Results[0].Type.Shape
		if len(y) == 4 && op.Int("count") == y[0]*y[2]*y[3] {
			if d.centred == nil {
				d.centred = map[*ir.Op][3]*ir.Value{}
			}
			d.centred[conv] = [3]*ir.Value{dmean, dvar, op.Results[0]}
			return nil
		}
	}
	mg, err := d.emit(op, "moments.grad", ir.MomentsGrad, copyAttrs(op, "count"), dmean, dvar, op.Results[0])
	if err != nil {
		return err
	}
	for i := range 2 {
		if err := d.pass(op, i, mg.Results[i]); err != nil {
			return err
		}
	}
	return nil
}

// affineReLU differentiates max(scale*x + shift, 0), recomputing the mask
// from x.
func (d *differ) affineReLU(op *ir.Op) error {
	return d.affineReLUGrad(op, "grad", d.dy(op), []int{0, 1, 2})
}

// relayout sends the gradient back in the argument's layout.
func (d *differ) relayout(op *ir.Op) error {
	a := ir.Attrs{"layout": op.Args[0].Type.Layout.String()}
	return d.emit1(op, 0, "dx", ir.Relayout, a, d.dy(op))
}

package resnet

import (
	"fmt"
	"math"

	"github.com/resnetc/resnetc/ir"
)

// Op-table defaults the lowering leaves unset, so that printed graphs show
// only what differs from them.
const (
	defaultEps      = 1e-5
	defaultMomentum = 0.1
)

// Bounds on what Lower accepts, far beyond any real network, so that no
// size, byte count or multiply-accumulate count can overflow an int64.
const (
	maxLowerElems = 1 << 40 // elements of any one tensor
	maxLowerUnits = 1 << 20 // residual units
	maxLowerMACs  = 1 << 60 // multiply-accumulates per image
)

// Lower builds the forward graph of a for the given batch size: input "x"
// f32[batch, C, H, W], output "logits" f32[batch, classes]. In Train mode
// BatchNorm uses batch statistics and updates its running statistics (the
// graph's updates), and dropout shortcuts draw a mask; the loss, backward
// pass and optimizer are added by the autodiff pass. Ops and tensors are
// named after the DSL's structure ("s2.u1.conv1", "s2.u1.bn1.gamma") because
// those names are what saved weights and generated code are read by.
//
// Lower checks a first (an Arch can be built in Go without the parser) and
// returns an error for anything it cannot lower.
func Lower(a *Arch, batch int, mode ir.Mode) (*ir.Graph, error) {
	if err := checkLowerable(a, batch, mode); err != nil {
		return nil, err
	}
	l := &lowering{a: a, g: ir.New(a.Name, mode), batch: batch}
	l.net()
	return l.g, nil
}

// archWhere names a position for an error: the statement's position when the
// Arch came from a file, else the network's name.
func archWhere(a *Arch, p Pos) string {
	if p.File != "" || p.Line != 0 {
		return p.String()
	}
	return fmt.Sprintf("resnet %q", a.Name)
}

// checkLowerable reports the first reason a cannot be lowered at this batch
// size and mode. It checks everything the op table would otherwise reject,
// so that the lowering itself cannot fail.
func checkLowerable(a *Arch, batch int, mode ir.Mode) error {
	if a == nil {
		return fmt.Errorf("lower: nil architecture")
	}
	name := archWhere(a, Pos{})
	if batch < 1 {
		return fmt.Errorf("%s: batch size %d, want at least 1", name, batch)
	}
	if mode != ir.Infer && mode != ir.Train {
		return fmt.Errorf("%s: %v is not a graph mode (want infer or train)", name, mode)
	}
	if a.InputH < 1 || a.InputW < 1 || a.InputC < 1 {
		return fmt.Errorf("%s: input %dx%dx%d, want positive height, width and channels", archWhere(a, a.InputPos), a.InputH, a.InputW, a.InputC)
	}
	if a.Classes < 1 {
		return fmt.Errorf("%s: %d classes, want at least 1", archWhere(a, a.ClassesPos), a.Classes)
	}
	st := a.Stem
	if st.Kernel < 1 || st.Stride < 1 || st.Width < 1 {
		return fmt.Errorf("%s: stem conv%dx%d/%d of width %d, want a positive kernel, stride and width", archWhere(a, st.Pos), st.Kernel, st.Kernel, st.Stride, st.Width)
	}
	switch a.Unit {
	case Basic, OneLayer, Bottleneck:
	default:
		return fmt.Errorf("%s: %v is not a unit kind", archWhere(a, a.UnitPos), a.Unit)
	}
	switch a.Order {
	case Original, BNAfterAdd, ReLUBeforeAdd, ReLUOnlyPreact, FullPreact:
	default:
		return fmt.Errorf("%s: %v is not an activation order", archWhere(a, a.UnitPos), a.Order)
	}
	if a.Grow != GrowA && a.Grow != GrowB {
		return fmt.Errorf("%s: %v is not a grow shortcut (want A or projection)", archWhere(a, a.UnitPos), a.Grow)
	}
	if err := checkShortcut(a); err != nil {
		return err
	}
	if !(a.BNEps > 0) || math.IsInf(a.BNEps, 0) {
		return fmt.Errorf("%s: BatchNorm eps %v, want a positive number", name, a.BNEps)
	}
	if !(a.BNMomentum >= 0 && a.BNMomentum <= 1) {
		return fmt.Errorf("%s: BatchNorm momentum %v, want 0 <= momentum <= 1", name, a.BNMomentum)
	}
	if len(a.Stages) == 0 {
		return fmt.Errorf("%s: no stages", name)
	}
	units := 0
	for i, s := range a.Stages {
		where := archWhere(a, s.Pos)
		if s.Units < 1 || s.Width < 1 || s.Stride < 1 {
			return fmt.Errorf("%s: stage %d has %d units of width %d, stride %d; want positive counts", where, i+1, s.Units, s.Width, s.Stride)
		}
		if a.Unit == Bottleneck && s.Width%4 != 0 {
			return fmt.Errorf("%s: stage %d: bottleneck width %d is not divisible by 4", where, i+1, s.Width)
		}
		if s.Units > maxLowerUnits || units+s.Units > maxLowerUnits {
			return fmt.Errorf("%s: more than %d units", where, maxLowerUnits)
		}
		units += s.Units
	}
	if want := a.Unit.LayersPerUnit()*units + 2; a.Depth != 0 && a.Depth != want {
		return fmt.Errorf("%s: depth %d, but the stages hold %d %v units: depth %d", archWhere(a, a.DepthPos), a.Depth, units, a.Unit, want)
	}

	// Geometry: every tensor's size, and the widths option A must pad.
	// Sizes are bounded in floating point first so that no count computed
	// from them (elements, bytes, multiply-accumulates) can overflow.
	tooBig := func(what string, dims ...int) error {
		n := 1.0
		for _, d := range dims {
			n *= float64(d)
		}
		if n > maxLowerElems {
			return fmt.Errorf("%s: %s has %.3g elements, more than %d", name, what, n, int64(maxLowerElems))
		}
		return nil
	}
	if err := tooBig("the input", batch, a.InputC, a.InputH, a.InputW); err != nil {
		return err
	}
	if err := tooBig("the stem weight", st.Width, a.InputC, st.Kernel, st.Kernel); err != nil {
		return err
	}
	if err := tooBig("the head weight", a.Classes, a.Stages[len(a.Stages)-1].Width); err != nil {
		return err
	}
	h, w := convSize(a.InputH, st.Kernel, st.Stride), convSize(a.InputW, st.Kernel, st.Stride)
	if err := tooBig("the stem output", batch, st.Width, h, w); err != nil {
		return err
	}
	macs := float64(h) * float64(w) * float64(st.Width) * float64(a.InputC) * float64(st.Kernel*st.Kernel)
	if st.MaxPool {
		h, w = poolSize(h), poolSize(w)
	}
	cin := st.Width
	for i, s := range a.Stages {
		h, w = convSize(h, 3, s.Stride), convSize(w, 3, s.Stride)
		wide := max(cin, s.Width)
		what := fmt.Sprintf("stage %d's widest tensor", i+1)
		if err := tooBig(what, batch, wide, h, w); err != nil {
			return err
		}
		if err := tooBig(fmt.Sprintf("stage %d's widest weight", i+1), wide, wide, 3, 3); err != nil {
			return err
		}
		// At most four convs a unit (three in F, one shortcut or gate),
		// none larger than 3x3 from and to the widest width.
		macs += float64(s.Units) * 4 * float64(h) * float64(w) * float64(wide) * float64(wide) * 9
		if a.Grow == GrowA && a.Shortcut.Kind != Conv1x1 && s.Width < cin {
			return fmt.Errorf("%s: stage %d narrows the width from %d to %d; option A can only zero-pad (use grow=projection)",
				archWhere(a, s.Pos), i+1, cin, s.Width)
		}
		cin = s.Width
	}
	if macs > maxLowerMACs {
		return fmt.Errorf("%s: about %.3g multiply-accumulates per image, more than %d", name, macs, int64(maxLowerMACs))
	}
	if mode == ir.Train && batch*h*w == 1 {
		return fmt.Errorf("%s: training BatchNorm needs more than one value per channel, but the last stage is %dx%d at batch 1",
			name, h, w)
	}
	return nil
}

func checkShortcut(a *Arch) error {
	sc := a.Shortcut
	where := archWhere(a, a.UnitPos)
	finite := func(what string, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s: shortcut %v: %s %v is not a finite number", where, sc.Kind, what, v)
		}
		return nil
	}
	switch sc.Kind {
	case Identity, Conv1x1:
	case Scale:
		if err := finite("shortcut factor", sc.ShortcutScale); err != nil {
			return err
		}
		return finite("branch factor", sc.BranchScale)
	case Gate, ShortcutGate:
		return finite("gate bias", sc.GateBias)
	case DropoutShort:
		if !(sc.DropRate >= 0 && sc.DropRate < 1) {
			return fmt.Errorf("%s: dropout rate %v, want 0 <= rate < 1", where, sc.DropRate)
		}
	default:
		return fmt.Errorf("%s: %v is not a shortcut kind", where, sc.Kind)
	}
	return nil
}

// convSize is the output size of a conv with kernel k, stride s and padding
// k/2 (every conv of the network) over n positions; the 1x1 and 3x3 convs of
// a unit agree on it.
func convSize(n, k, s int) int { return (n+2*(k/2)-k)/s + 1 }

// poolSize is the output size of the stem's 3x3 stride-2 max pool, pad 1.
func poolSize(n int) int { return (n+2-3)/2 + 1 }

// lowering holds the state of one Lower call.
type lowering struct {
	a     *Arch
	g     *ir.Graph
	batch int
	units int // units lowered so far: the running index seeds dropout masks
}

func (l *lowering) net() {
	a := l.a
	x := l.g.Decl(ir.Input, "x", ir.T32(l.batch, a.InputC, a.InputH, a.InputW), nil)
	x = l.stem(x)
	cin := a.Stem.Width
	for si, s := range a.Stages {
		for ui := range s.Units {
			stride := 1
			if ui == 0 {
				stride = s.Stride
			}
			x = l.unit(fmt.Sprintf("s%d.u%d.", si+1, ui+1), x, cin, s.Width, stride)
			cin = s.Width
		}
	}
	switch a.Order {
	case FullPreact:
		x = l.relu("head.relu", l.bn("head.bn", x))
	case ReLUOnlyPreact:
		x = l.relu("head.relu", x)
	}
	x = l.op1(ir.GAP, "head.gap", nil, x)
	in := x.Type.Shape[1]
	w := l.param("head.fc.weight", ir.T32(a.Classes, in), ir.Attrs{"init": "uniform", "bound": 1 / math.Sqrt(float64(in))})
	b := l.param("head.fc.bias", ir.T32(a.Classes), nil)
	l.g.AddOutput("logits", l.op1(ir.Linear, "head.fc", nil, x, w, b))
}

// stem lowers the first conv and what follows it (see Stem).
func (l *lowering) stem(x *ir.Value) *ir.Value {
	st := l.a.Stem
	x = l.conv("stem.conv", x, st.Kernel, st.Width, st.Stride)
	switch {
	case st.MaxPool || !l.a.Order.Preact():
		x = l.relu("stem.relu", l.bn("stem.bn", x))
	case l.a.Order == ReLUOnlyPreact:
		x = l.bn("stem.bn", x)
	}
	if st.MaxPool {
		x = l.op1(ir.MaxPool, "stem.pool", ir.Attrs{"kernel": 3, "stride": 2, "pad": 1}, x)
	}
	return x
}

// unitConv is one weight layer of a unit's residual branch F.
type unitConv struct{ k, width, stride int }

// unitConvs lists F's convs for a unit of output width w and stride s; the
// stride sits on the first conv (for bottlenecks the first 1x1, as in the
// reference implementation).
func unitConvs(kind UnitKind, w, s int) []unitConv {
	switch kind {
	case Basic:
		return []unitConv{{3, w, s}, {3, w, 1}}
	case OneLayer:
		return []unitConv{{3, w, s}}
	case Bottleneck:
		return []unitConv{{1, w / 4, s}, {3, w / 4, 1}, {1, w, 1}}
	}
	panic(fmt.Sprintf("BUG: unit kind %v", kind))
}

// unit lowers one residual unit with input x of cin channels, output width
// w and stride s; p is the unit's name prefix ("s2.u1.").
func (l *lowering) unit(p string, x *ir.Value, cin, w, s int) *ir.Value {
	a := l.a
	l.units++
	first := l.units == 1
	grow := cin != w || s != 1
	// After a max-pool stem the input is already activated: the first unit
	// of a pre-activation net skips its first activation.
	skip := first && a.Stem.MaxPool && a.Order.Preact()
	// Otherwise the first unit and every growing unit of a pre-activation
	// net activate x once, and both paths read the result.
	share := a.Order.Preact() && (first || grow) && !skip
	n := func(layer string, i int) string { return fmt.Sprintf("%s%s%d", p, layer, i) }

	// The residual branch F.
	xs, f := x, x
	convs := unitConvs(a.Unit, w, s)
	for j, c := range convs {
		i, last := j+1, j == len(convs)-1
		switch a.Order {
		case Original, BNAfterAdd, ReLUBeforeAdd:
			f = l.conv(n("conv", i), f, c.k, c.width, c.stride)
			if !last || a.Order != BNAfterAdd {
				f = l.bn(n("bn", i), f)
			}
			if !last || a.Order == ReLUBeforeAdd {
				f = l.relu(n("relu", i), f)
			}
		case ReLUOnlyPreact:
			if j > 0 || !skip {
				f = l.relu(n("relu", i), f)
			}
			if j == 0 && share {
				xs = f
			}
			f = l.bn(n("bn", i), l.conv(n("conv", i), f, c.k, c.width, c.stride))
		case FullPreact:
			if j > 0 || !skip {
				f = l.relu(n("relu", i), l.bn(n("bn", i), f))
			}
			if j == 0 && share {
				xs = f
			}
			f = l.conv(n("conv", i), f, c.k, c.width, c.stride)
		}
	}

	// The shortcut h.
	sc := a.Shortcut
	h := xs
	switch {
	case sc.Kind == Conv1x1 || grow && a.Grow == GrowB:
		h = l.conv(p+"shortcut.conv", h, 1, w, s)
		if !a.Order.Preact() {
			h = l.bn(p+"shortcut.bn", h)
		}
	case grow:
		attrs := ir.Attrs{"channels": w}
		if s != 2 {
			attrs["stride"] = s
		}
		h = l.op1(ir.SubsamplePad, p+"shortcut", attrs, h)
	}
	if sc.Kind == DropoutShort && l.g.Mode == ir.Train {
		op := l.g.MustOp(ir.Dropout, p+"shortcut.dropout", ir.Attrs{"rate": sc.DropRate, "seed": l.units}, h)
		h = op.Results[0]
	}

	// Combine the two paths.
	switch sc.Kind {
	case Scale:
		if sc.ShortcutScale != 1 {
			h = l.op1(ir.Scale, p+"shortcut.scale", ir.Attrs{"factor": sc.ShortcutScale}, h)
		}
		if sc.BranchScale != 1 {
			f = l.op1(ir.Scale, p+"branch.scale", ir.Attrs{"factor": sc.BranchScale}, f)
		}
	case Gate, ShortcutGate:
		wg := l.convWeight(p+"gate.conv", 1, xs.Type.Shape[1], w)
		bg := l.param(p+"gate.conv.bias", ir.T32(w), constInit(sc.GateBias))
		g := l.op1(ir.Sigmoid, p+"gate", nil, l.op1(ir.Conv2D, p+"gate.conv", convAttrs(1, s), xs, wg, bg))
		ng := l.op1(ir.Scale, p+"gate.complement", ir.Attrs{"factor": -1.0, "offset": 1.0}, g)
		h = l.op1(ir.Mul, p+"shortcut.gated", nil, ng, h)
		if sc.Kind == Gate {
			f = l.op1(ir.Mul, p+"branch.gated", nil, g, f)
		}
	}
	y := l.op1(ir.Add, p+"add", nil, h, f)

	switch a.Order {
	case Original:
		y = l.relu(p+"relu", y)
	case BNAfterAdd:
		y = l.relu(p+"relu", l.bn(p+"bn", y))
	}
	return y
}

// constInit is the init attribute of a tensor filled with v.
func constInit(v float64) ir.Attrs {
	if v == 0 {
		return nil
	}
	return ir.Attrs{"init": "const", "value": v}
}

func convAttrs(k, stride int) ir.Attrs {
	attrs := ir.Attrs{}
	if stride != 1 {
		attrs["stride"] = stride
	}
	if k/2 != 0 {
		attrs["pad"] = k / 2
	}
	return attrs
}

// convWeight declares the weight of a KxK conv, He-initialized as in the
// reference implementation: N(0, sqrt(2/(k*k*cout))).
func (l *lowering) convWeight(layer string, k, cin, cout int) *ir.Value {
	std := math.Sqrt(2 / float64(k*k*cout))
	return l.param(layer+".weight", ir.T32(cout, cin, k, k), ir.Attrs{"init": "normal", "std": std})
}

// conv lowers a bias-free KxK conv with padding k/2.
func (l *lowering) conv(layer string, x *ir.Value, k, cout, stride int) *ir.Value {
	wt := l.convWeight(layer, k, x.Type.Shape[1], cout)
	return l.op1(ir.Conv2D, layer, convAttrs(k, stride), x, wt)
}

// bn lowers a BatchNorm layer: running statistics in Infer mode; batch
// statistics and running-average updates in Train mode.
func (l *lowering) bn(layer string, x *ir.Value) *ir.Value {
	a, g := l.a, l.g
	c := ir.T32(x.Type.Shape[1])
	gamma := l.param(layer+".gamma", c, ir.Attrs{"init": "ones"})
	beta := l.param(layer+".beta", c, nil)
	norm := ir.Attrs{}
	if a.BNEps != defaultEps {
		norm["eps"] = a.BNEps
	}
	if g.Mode == ir.Infer {
		mean := g.Decl(ir.State, layer+".mean", c, nil)
		vr := g.Decl(ir.State, layer+".var", c, ir.Attrs{"init": "ones"})
		return l.op1(ir.BNNorm, layer, norm, x, mean, vr, gamma, beta)
	}
	stats := g.MustOp(ir.BNStats, layer, nil, x)
	bm, bv := stats.Results[0], stats.Results[1]
	y := l.op1(ir.BNNorm, layer, norm, x, bm, bv, gamma, beta)
	mean := g.Decl(ir.State, layer+".mean", c, nil)
	vr := g.Decl(ir.State, layer+".var", c, ir.Attrs{"init": "ones"})
	ema := ir.Attrs{}
	if a.BNMomentum != defaultMomentum {
		ema["momentum"] = a.BNMomentum
	}
	g.AddUpdate(mean, l.op1(ir.EMA, layer, ema, mean, bm))
	// The running variance is unbiased: M values per channel.
	m := x.Type.Shape.Elems() / x.Type.Shape[1]
	if m < 2 {
		panic(fmt.Sprintf("BUG: %s: training BatchNorm over %d value per channel", layer, m))
	}
	ema = ema.Clone()
	ema["scale"] = float64(m) / float64(m-1)
	g.AddUpdate(vr, l.op1(ir.EMA, layer, ema, vr, bv))
	return y
}

func (l *lowering) relu(name string, x *ir.Value) *ir.Value {
	return l.op1(ir.ReLU, name, nil, x)
}

func (l *lowering) param(name string, t ir.Type, attrs ir.Attrs) *ir.Value {
	return l.g.Decl(ir.Param, name, t, attrs)
}

// op1 appends an op with one result. checkLowerable has ruled out every
// argument the op table could reject, so an error here is a bug.
func (l *lowering) op1(kind ir.OpKind, name string, attrs ir.Attrs, args ...*ir.Value) *ir.Value {
	return l.g.MustOp(kind, name, attrs, args...).Result()
}

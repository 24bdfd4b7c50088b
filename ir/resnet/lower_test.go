package resnet

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/resnetc/resnetc/internal/golden"
	"github.com/resnetc/resnetc/ir"
)

// lowerTestNet returns a small net of the given family, built in Go: input
// 8x8x3, 3 classes, stages 1x8 2x16/2 (output widths; the bottleneck's
// inner widths are 2 and 4). The stem is conv3x3 8, or conv3x3 4 for
// bottlenecks so that, as in the CIFAR bottleneck nets, the first unit
// widens its input.
func lowerTestNet(kind UnitKind, order Order, sc Shortcut, grow Grow) *Arch {
	stem := 8
	if kind == Bottleneck {
		stem = 4
	}
	return &Arch{
		Name:   fmt.Sprintf("%v-%v-%v-%v", kind, order, sc.Kind, grow),
		InputH: 8, InputW: 8, InputC: 3,
		Classes:  3,
		Stem:     Stem{Kernel: 3, Stride: 1, Width: stem},
		Unit:     kind,
		Order:    order,
		Shortcut: sc,
		Grow:     grow,
		Stages:   []Stage{{Units: 1, Width: 8, Stride: 1}, {Units: 2, Width: 16, Stride: 2}},
		BNEps:    1e-5, BNMomentum: 0.1,
	}
}

// withMaxPool gives a the ImageNet-style stem: conv7x7/2 4 then a 3x3/2
// max pool, on a 16x16 input; the first unit widens its input.
func withMaxPool(a *Arch) *Arch {
	b := *a
	b.Name += "-maxpool"
	b.InputH, b.InputW = 16, 16
	b.Stem = Stem{Kernel: 7, Stride: 2, Width: 4, MaxPool: true}
	return &b
}

var (
	allKinds  = []UnitKind{Basic, OneLayer, Bottleneck}
	allOrders = []Order{Original, BNAfterAdd, ReLUBeforeAdd, ReLUOnlyPreact, FullPreact}
	allGrows  = []Grow{GrowA, GrowB}
	// allShortcuts holds every kind; the scale factors exercise both an
	// omitted (λ=1) and a present scale op.
	allShortcuts = []Shortcut{
		{Kind: Identity},
		{Kind: Scale, ShortcutScale: 0.5, BranchScale: 1},
		{Kind: Scale, ShortcutScale: 1, BranchScale: 0.5},
		{Kind: Gate, GateBias: -6},
		{Kind: ShortcutGate, GateBias: 0},
		{Kind: Conv1x1},
		{Kind: DropoutShort, DropRate: 0.5},
	}
)

// unitPrefixes lists the name prefixes of a's units in order: "s1.u1.", ...
func unitPrefixes(a *Arch) []string {
	var ps []string
	for si, s := range a.Stages {
		for ui := range s.Units {
			ps = append(ps, fmt.Sprintf("s%d.u%d.", si+1, ui+1))
		}
	}
	return ps
}

func mustLower(t *testing.T, a *Arch, batch int, mode ir.Mode) *ir.Graph {
	t.Helper()
	g, err := Lower(a, batch, mode)
	if err != nil {
		t.Fatalf("Lower(%s, %d, %v): %v", a.Name, batch, mode, err)
	}
	if err := ir.Verify(g); err != nil {
		t.Fatalf("Lower(%s, %d, %v) does not verify: %v", a.Name, batch, mode, err)
	}
	return g
}

// computeOps returns g's ops that are not declarations, in order.
func computeOps(g *ir.Graph) []*ir.Op {
	var ops []*ir.Op
	for _, op := range g.Ops {
		if !op.Kind.IsDecl() {
			ops = append(ops, op)
		}
	}
	return ops
}

// findOp returns the one op of the given kind and name, failing t if there
// is not exactly one.
func findOp(t *testing.T, g *ir.Graph, kind ir.OpKind, name string) *ir.Op {
	t.Helper()
	var found []*ir.Op
	for _, op := range g.Ops {
		if op.Kind == kind && op.Name == name {
			found = append(found, op)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d %s ops named %q, want 1", g.Name, len(found), kind, name)
	}
	return found[0]
}

// hasOp reports whether g holds an op of the given name (any kind).
func hasOp(g *ir.Graph, name string) bool {
	for _, op := range g.Ops {
		if op.Name == name {
			return true
		}
	}
	return false
}

var declNameRE = regexp.MustCompile(`\.(weight|bias|gamma|beta|mean|var)$`)

var opNameRE = regexp.MustCompile(`^(stem|head|s[1-9][0-9]*\.u[1-9][0-9]*)\.[a-z][a-z0-9]*(\.[a-z][a-z0-9]*)*$`)

// TestLowerEveryVariant lowers every unit kind x order x shortcut x grow,
// with both stems, in both modes, and checks what must hold of all of
// them.
func TestLowerEveryVariant(t *testing.T) {
	n := 0
	for _, kind := range allKinds {
		for _, order := range allOrders {
			for _, sc := range allShortcuts {
				for _, grow := range allGrows {
					base := lowerTestNet(kind, order, sc, grow)
					for _, a := range []*Arch{base, withMaxPool(base)} {
						for _, mode := range []ir.Mode{ir.Infer, ir.Train} {
							checkLowered(t, a, mode)
							n++
						}
					}
				}
			}
		}
	}
	if want := 3 * 5 * len(allShortcuts) * 2 * 2 * 2; n != want {
		t.Fatalf("lowered %d variants, want %d", n, want)
	}
}

func checkLowered(t *testing.T, a *Arch, mode ir.Mode) {
	t.Helper()
	const batch = 2
	g := mustLower(t, a, batch, mode)
	where := fmt.Sprintf("%s %v", a.Name, mode)
	if g.Name != a.Name || g.Mode != mode {
		t.Errorf("%s: graph %q %v", where, g.Name, g.Mode)
	}
	x := g.Lookup("x")
	if x == nil || x.Kind != ir.Input || !x.Result().Type.Equal(ir.T32(batch, a.InputC, a.InputH, a.InputW)) {
		t.Fatalf("%s: input x is %v", where, x)
	}
	if len(g.Decls(ir.Input)) != 1 {
		t.Errorf("%s: %d inputs, want only x", where, len(g.Decls(ir.Input)))
	}
	if len(g.Outputs) != 1 || g.Output("logits") == nil || !g.Output("logits").Type.Equal(ir.T32(batch, a.Classes)) {
		t.Fatalf("%s: outputs %v, want logits f32[%d,%d]", where, g.Outputs, batch, a.Classes)
	}

	uses := g.Uses()
	kinds := map[ir.OpKind]int{}
	for _, op := range g.Ops {
		kinds[op.Kind]++
		switch {
		case op.Kind == ir.Input:
		case op.Kind.IsDecl():
			if len(uses[op.Result()]) == 0 {
				t.Errorf("%s: %s is never read", where, op)
			}
			if !declNameRE.MatchString(op.Name) || !opNameRE.MatchString(op.Name) {
				t.Errorf("%s: declaration name %q", where, op.Name)
			}
		default:
			if !opNameRE.MatchString(op.Name) {
				t.Errorf("%s: op name %q", where, op.Name)
			}
			// Every computed value is used, except a dropout mask (for
			// the backward pass) and the logits (an output).
			for i, r := range op.Results {
				if len(uses[r]) == 0 && r != g.Output("logits") && !(op.Kind == ir.Dropout && i == 1) && op.Kind != ir.EMA {
					t.Errorf("%s: result %d of %s is never read", where, i, op)
				}
			}
		}
	}

	// BatchNorm and dropout by mode.
	units := a.Units()
	wantDropout := 0
	if a.Shortcut.Kind == DropoutShort && mode == ir.Train {
		wantDropout = units
	}
	if kinds[ir.Dropout] != wantDropout {
		t.Errorf("%s: %d dropout ops, want %d", where, kinds[ir.Dropout], wantDropout)
	}
	if mode == ir.Infer {
		if kinds[ir.BNStats]+kinds[ir.EMA] != 0 || len(g.Updates) != 0 {
			t.Errorf("%s: inference graph has %d bnstats, %d ema, %d updates", where, kinds[ir.BNStats], kinds[ir.EMA], len(g.Updates))
		}
	} else {
		if kinds[ir.BNStats] != kinds[ir.BNNorm] || kinds[ir.EMA] != 2*kinds[ir.BNNorm] || len(g.Updates) != kinds[ir.EMA] {
			t.Errorf("%s: %d bnnorm, %d bnstats, %d ema, %d updates; want one bnstats and two ema and updates per bnnorm",
				where, kinds[ir.BNNorm], kinds[ir.BNStats], kinds[ir.EMA], len(g.Updates))
		}
		for _, u := range g.Updates {
			if u.Target.Def.Kind != ir.State || u.Value.Def.Kind != ir.EMA || u.Value.Def.Args[0] != u.Target {
				t.Errorf("%s: update %s <- %s", where, u.Target.Def, u.Value.Def)
			}
		}
	}
	if kinds[ir.State] != 2*kinds[ir.BNNorm] || kinds[ir.Param] < 2*kinds[ir.BNNorm] {
		t.Errorf("%s: %d states and %d params for %d BatchNorms", where, kinds[ir.State], kinds[ir.Param], kinds[ir.BNNorm])
	}

	// Each unit has its body's convs, named conv1..convL, and one add.
	for _, p := range unitPrefixes(a) {
		for i := 1; i <= a.Unit.LayersPerUnit(); i++ {
			c := findOp(t, g, ir.Conv2D, fmt.Sprintf("%sconv%d", p, i))
			if k := c.Args[1].Type.Shape[2]; k != 1 && k != 3 {
				t.Errorf("%s: %s has a %dx%d kernel", where, c, k, k)
			}
		}
		if hasOp(g, fmt.Sprintf("%sconv%d", p, a.Unit.LayersPerUnit()+1)) {
			t.Errorf("%s: unit %s has more than %d convs", where, p, a.Unit.LayersPerUnit())
		}
		findOp(t, g, ir.Add, p+"add")
	}
	// The unit's gate: one per unit, or none.
	wantGates := 0
	if a.Shortcut.Kind == Gate || a.Shortcut.Kind == ShortcutGate {
		wantGates = units
	}
	if kinds[ir.Sigmoid] != wantGates {
		t.Errorf("%s: %d sigmoid ops, want %d", where, kinds[ir.Sigmoid], wantGates)
	}
	// The pre-activation of the first unit is skipped after a max pool.
	firstAct := "s1.u1.relu1"
	if a.Order == FullPreact {
		firstAct = "s1.u1.bn1"
	}
	if a.Order.Preact() && hasOp(g, firstAct) == a.Stem.MaxPool {
		t.Errorf("%s: op %s present: %v, want %v", where, firstAct, hasOp(g, firstAct), !a.Stem.MaxPool)
	}
	if kinds[ir.MaxPool] != map[bool]int{false: 0, true: 1}[a.Stem.MaxPool] {
		t.Errorf("%s: %d max pools", where, kinds[ir.MaxPool])
	}
}

// TestLowerAttrs checks the attributes the reference implementation
// prescribes: He-initialized convs without bias, FC init, BatchNorm init,
// and that attributes equal to the op table's defaults are not set.
func TestLowerAttrs(t *testing.T) {
	a := lowerTestNet(Bottleneck, Original, Shortcut{Kind: Gate, GateBias: -6}, GrowB)
	a.BNEps, a.BNMomentum = 2e-5, 0.05
	g := mustLower(t, a, 2, ir.Train)
	checked := map[string]bool{}
	for _, op := range g.Ops {
		switch op.Kind {
		case ir.Conv2D:
			w := op.Args[1].Def
			k, cout, cin := w.Result().Type.Shape[2], w.Result().Type.Shape[0], w.Result().Type.Shape[1]
			if w.Name != op.Name+".weight" || w.Str("init") != "normal" || w.Float("std") != math.Sqrt(2.0/float64(k*k*cout)) {
				t.Errorf("%s: weight %s %v, want normal with std sqrt(2/(%d*%d*%d))", op.Name, w.Name, w.Attrs, k, k, cout)
			}
			if cin != op.Args[0].Type.Shape[1] {
				t.Errorf("%s: weight has %d inputs, input has %d channels", op.Name, cin, op.Args[0].Type.Shape[1])
			}
			if _, ok := op.Attrs["pad"]; ok != (k == 3) || (ok && op.Int("pad") != 1) {
				t.Errorf("%s: attrs %v for a %dx%d kernel", op.Name, op.Attrs, k, k)
			}
			if s, ok := op.Attrs["stride"]; ok && s != 2 {
				t.Errorf("%s: stride attribute %v", op.Name, s)
			}
			gate := strings.HasSuffix(op.Name, ".gate.conv")
			if (len(op.Args) == 3) != gate {
				t.Errorf("%s: %d arguments", op.Name, len(op.Args))
			}
			if gate {
				b := op.Args[2].Def
				if b.Name != op.Name+".bias" || b.Str("init") != "const" || b.Float("value") != -6 {
					t.Errorf("%s: bias %s %v, want const -6", op.Name, b.Name, b.Attrs)
				}
			}
			checked["conv"] = true
		case ir.Linear:
			w, b := op.Args[1].Def, op.Args[2].Def
			if w.Name != "head.fc.weight" || w.Str("init") != "uniform" || w.Float("bound") != 1/math.Sqrt(16) {
				t.Errorf("%s: weight %s %v", op.Name, w.Name, w.Attrs)
			}
			if b.Name != "head.fc.bias" || len(b.Attrs) != 0 {
				t.Errorf("%s: bias %s %v, want zeros", op.Name, b.Name, b.Attrs)
			}
			checked["fc"] = true
		case ir.BNNorm:
			gamma, beta := op.Args[3].Def, op.Args[4].Def
			if gamma.Name != op.Name+".gamma" || gamma.Str("init") != "ones" || beta.Name != op.Name+".beta" || len(beta.Attrs) != 0 {
				t.Errorf("%s: gamma %s %v, beta %s %v", op.Name, gamma.Name, gamma.Attrs, beta.Name, beta.Attrs)
			}
			if op.Float("eps") != 2e-5 {
				t.Errorf("%s: eps %v", op.Name, op.Float("eps"))
			}
			checked["bn"] = true
		case ir.EMA:
			run := op.Args[0].Def
			x := findOp(t, g, ir.BNStats, op.Name).Args[0].Type.Shape
			m := float64(x[0] * x[2] * x[3])
			want := 1.0
			switch run.Name {
			case op.Name + ".mean":
				if len(run.Attrs) != 0 {
					t.Errorf("%s: running mean %v, want zeros", op.Name, run.Attrs)
				}
				if _, ok := op.Attrs["scale"]; ok {
					t.Errorf("%s: mean EMA has a scale", op.Name)
				}
			case op.Name + ".var":
				if run.Str("init") != "ones" {
					t.Errorf("%s: running variance %v, want ones", op.Name, run.Attrs)
				}
				want = m / (m - 1)
			default:
				t.Errorf("%s: EMA of %s", op.Name, run.Name)
			}
			if op.Float("scale") != want || op.Float("momentum") != 0.05 {
				t.Errorf("%s: EMA of %s: %v, want scale %v, momentum 0.05", op.Name, run.Name, op.Attrs, want)
			}
			checked["ema"] = true
		}
	}
	if len(checked) != 4 {
		t.Errorf("checked only %v", checked)
	}

	// At the default eps and momentum, no attribute is set.
	a.BNEps, a.BNMomentum = 1e-5, 0.1
	g = mustLower(t, a, 2, ir.Train)
	for _, op := range g.Ops {
		_, eps := op.Attrs["eps"]
		_, mom := op.Attrs["momentum"]
		if eps || mom {
			t.Errorf("%s %q: attrs %v at the default eps and momentum", op.Kind, op.Name, op.Attrs)
		}
	}
}

// unitInput returns the name of the op whose output enters the unit after
// prefix prev ("" for the first unit), for a net with a CIFAR stem.
func unitInput(order Order, prev string) string {
	if prev == "" {
		switch order {
		case FullPreact:
			return "stem.conv"
		case ReLUOnlyPreact:
			return "stem.bn"
		}
		return "stem.relu"
	}
	switch order {
	case Original, BNAfterAdd:
		return prev + "relu"
	}
	return prev + "add"
}

// TestLowerOrders checks the placement of BatchNorm and ReLU in each of
// the five orders of Fig. 4, and which tensor the shortcut reads.
func TestLowerOrders(t *testing.T) {
	for _, kind := range []UnitKind{Basic, Bottleneck} {
		for _, order := range allOrders {
			a := lowerTestNet(kind, order, Shortcut{Kind: Identity}, GrowB)
			for _, mode := range []ir.Mode{ir.Infer, ir.Train} {
				t.Run(fmt.Sprintf("%v/%v/%v", kind, order, mode), func(t *testing.T) {
					checkOrder(t, a, mustLower(t, a, 2, mode))
				})
			}
		}
	}
}

func checkOrder(t *testing.T, a *Arch, g *ir.Graph) {
	uses := g.Uses()
	ops := computeOps(g)
	index := map[*ir.Op]int{}
	for i, op := range ops {
		index[op] = i
	}
	next := func(op *ir.Op) *ir.Op {
		if i := index[op] + 1; i < len(ops) {
			return ops[i]
		}
		return nil
	}
	// users returns "kind name" of every reader of v, in order.
	users := func(v *ir.Value) []string {
		var s []string
		for _, u := range uses[v] {
			s = append(s, fmt.Sprintf("%s %s", u.Kind, u.Name))
		}
		return s
	}
	last := a.Unit.LayersPerUnit()
	prefixes := unitPrefixes(a)
	var grows []bool
	cin := a.Stem.Width
	for _, s := range a.Stages {
		for u := range s.Units {
			grows = append(grows, cin != s.Width || u == 0 && s.Stride != 1)
			cin = s.Width
		}
	}
	prev := ""
	for ui, p := range prefixes {
		grow := grows[ui]
		in := findUnitInput(t, g, a.Order, prev)
		add := findOp(t, g, ir.Add, p+"add")
		h, f := add.Args[0], add.Args[1]
		var fName string
		var fKind ir.OpKind
		switch a.Order {
		case Original, ReLUOnlyPreact:
			fKind, fName = ir.BNNorm, fmt.Sprintf("%sbn%d", p, last)
		case BNAfterAdd, FullPreact:
			fKind, fName = ir.Conv2D, fmt.Sprintf("%sconv%d", p, last)
		case ReLUBeforeAdd:
			fKind, fName = ir.ReLU, fmt.Sprintf("%srelu%d", p, last)
		}
		if f.Def.Kind != fKind || f.Def.Name != fName {
			t.Errorf("%s: F ends with %s, want %s %q", p, f.Def, fKind, fName)
		}
		got := users(add.Result())
		switch a.Order {
		case Original:
			if want := []string{"relu " + p + "relu"}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: add is read by %v, want %v", p, got, want)
			}
		case BNAfterAdd:
			if len(got) == 0 || !strings.HasSuffix(got[0], " "+p+"bn") || len(got) != map[ir.Mode]int{ir.Infer: 1, ir.Train: 2}[g.Mode] {
				t.Errorf("%s: add is read by %v, want only the BatchNorm %sbn", p, got, p)
			}
			bn := findOp(t, g, ir.BNNorm, p+"bn")
			if want := []string{"relu " + p + "relu"}; fmt.Sprint(users(bn.Result())) != fmt.Sprint(want) {
				t.Errorf("%s: bn is read by %v, want %v", p, users(bn.Result()), want)
			}
		default:
			for _, u := range uses[add.Result()] {
				if strings.HasPrefix(u.Name, p) {
					t.Errorf("%s: add is read by %s of its own unit", p, u)
				}
			}
		}
		if a.Order == FullPreact {
			// Nothing but the next unit's first BatchNorm (or the head's)
			// follows the add.
			n := next(add)
			want := "head.bn"
			if ui+1 < len(prefixes) {
				want = prefixes[ui+1] + "bn1"
			}
			if n == nil || n.Name != want || (n.Kind != ir.BNNorm && n.Kind != ir.BNStats) || n.Args[0] != add.Result() {
				t.Errorf("%s: add is followed by %v, want the BatchNorm %s of its output", p, n, want)
			}
		}

		// The shortcut reads the unit's input, or its pre-activation when
		// the unit is the first or grows.
		var act string
		switch a.Order {
		case FullPreact, ReLUOnlyPreact:
			if prev == "" || grow {
				act = p + "relu1"
			}
		}
		hsrc := h
		if grow {
			sc := findOp(t, g, ir.Conv2D, p+"shortcut.conv")
			if a.Order.Preact() {
				if h != sc.Result() {
					t.Errorf("%s: shortcut is %s, want %s (no BatchNorm under pre-activation)", p, h.Def, sc)
				}
			} else if h.Def.Name != p+"shortcut.bn" || h.Def.Args[0] != sc.Result() {
				t.Errorf("%s: shortcut is %s, want the BatchNorm of %s", p, h.Def, sc)
			}
			hsrc = sc.Args[0]
		}
		if act != "" {
			r := findOp(t, g, ir.ReLU, act)
			if hsrc != r.Result() {
				t.Errorf("%s: shortcut reads %s, want the shared pre-activation %s", p, hsrc.Def, r)
			}
			if c := findOp(t, g, ir.Conv2D, p+"conv1"); c.Args[0] != r.Result() {
				t.Errorf("%s: conv1 reads %s, want %s", p, c.Args[0].Def, r)
			}
		} else if hsrc.Def != in {
			t.Errorf("%s: shortcut reads %s, want the unit input %s", p, hsrc.Def, in)
		}
		// conv1 reads the unit input, through its pre-activation when the
		// order has one.
		c1 := findOp(t, g, ir.Conv2D, p+"conv1").Args[0].Def
		switch a.Order {
		case FullPreact:
			bn := findOp(t, g, ir.BNNorm, p+"bn1")
			if c1.Name != p+"relu1" || c1.Args[0] != bn.Result() || bn.Args[0].Def != in {
				t.Errorf("%s: conv1 does not read relu1(bn1(%s))", p, in)
			}
		case ReLUOnlyPreact:
			if c1.Name != p+"relu1" || c1.Args[0].Def != in {
				t.Errorf("%s: conv1 does not read relu1(%s)", p, in)
			}
		default:
			if c1 != in {
				t.Errorf("%s: conv1 reads %s, want %s", p, c1, in)
			}
		}
		prev = p
	}

	// The head.
	gap := findOp(t, g, ir.GAP, "head.gap")
	want := map[Order]string{FullPreact: "head.relu", ReLUOnlyPreact: "head.relu"}[a.Order]
	if want == "" {
		want = findUnitInput(t, g, a.Order, prev).Name
	}
	if gap.Args[0].Def.Name != want {
		t.Errorf("head.gap reads %s, want %s", gap.Args[0].Def, want)
	}
	if a.Order == FullPreact {
		bn := findOp(t, g, ir.BNNorm, "head.bn")
		if bn.Args[0].Def.Name != prev+"add" {
			t.Errorf("head.bn reads %s, want the last add", bn.Args[0].Def)
		}
	}
	if hasOp(g, "head.bn") != (a.Order == FullPreact) || hasOp(g, "head.relu") != a.Order.Preact() {
		t.Errorf("head has bn %v, relu %v", hasOp(g, "head.bn"), hasOp(g, "head.relu"))
	}
	// The stem.
	for name, want := range map[string]bool{
		"stem.bn":   a.Order != FullPreact,
		"stem.relu": !a.Order.Preact(),
		"stem.pool": false,
	} {
		if hasOp(g, name) != want {
			t.Errorf("stem has %s: %v, want %v", name, !want, want)
		}
	}
}

func findUnitInput(t *testing.T, g *ir.Graph, order Order, prev string) *ir.Op {
	t.Helper()
	name := unitInput(order, prev)
	for _, op := range g.Ops {
		if op.Name == name && op.Kind != ir.BNStats && !op.Kind.IsDecl() && op.Kind != ir.EMA {
			return op
		}
	}
	t.Fatalf("no op %s", name)
	return nil
}

// TestLowerMaxPoolStem checks the ImageNet stem: conv-BN-ReLU-maxpool in
// every order, and under pre-activation the first unit's first activation
// is skipped: its conv1 and shortcut read the pool directly.
func TestLowerMaxPoolStem(t *testing.T) {
	for _, order := range allOrders {
		a := withMaxPool(lowerTestNet(Bottleneck, order, Shortcut{Kind: Identity}, GrowB))
		g := mustLower(t, a, 2, ir.Infer)
		conv := findOp(t, g, ir.Conv2D, "stem.conv")
		if conv.Int("stride") != 2 || conv.Int("pad") != 3 || conv.Result().Type.Shape[2] != 8 {
			t.Errorf("%v: stem conv %v -> %v", order, conv.Attrs, conv.Result().Type)
		}
		bn := findOp(t, g, ir.BNNorm, "stem.bn")
		relu := findOp(t, g, ir.ReLU, "stem.relu")
		pool := findOp(t, g, ir.MaxPool, "stem.pool")
		if bn.Args[0] != conv.Result() || relu.Args[0] != bn.Result() || pool.Args[0] != relu.Result() {
			t.Errorf("%v: stem is not conv-bn-relu-pool", order)
		}
		if pool.Int("kernel") != 3 || pool.Int("stride") != 2 || pool.Int("pad") != 1 || pool.Result().Type.Shape[2] != 4 {
			t.Errorf("%v: pool %v -> %v", order, pool.Attrs, pool.Result().Type)
		}
		c1 := findOp(t, g, ir.Conv2D, "s1.u1.conv1")
		sc := findOp(t, g, ir.Conv2D, "s1.u1.shortcut.conv")
		if a.Order.Preact() {
			if c1.Args[0] != pool.Result() || sc.Args[0] != pool.Result() {
				t.Errorf("%v: s1.u1 reads %s and %s, want the pool for both", order, c1.Args[0].Def, sc.Args[0].Def)
			}
			if hasOp(g, "s1.u1.relu1") || hasOp(g, "s1.u1.bn1") != (order == ReLUOnlyPreact) {
				t.Errorf("%v: s1.u1 has relu1 %v, bn1 %v", order, hasOp(g, "s1.u1.relu1"), hasOp(g, "s1.u1.bn1"))
			}
			// Later growing units share their activation again.
			if r := findOp(t, g, ir.ReLU, "s2.u1.relu1"); findOp(t, g, ir.Conv2D, "s2.u1.shortcut.conv").Args[0] != r.Result() {
				t.Errorf("%v: s2.u1's shortcut does not read relu1", order)
			}
		} else if c1.Args[0] != pool.Result() || sc.Args[0] != pool.Result() {
			t.Errorf("%v: s1.u1 does not read the pool", order)
		}
	}
}

// TestLowerShortcuts checks the ops each shortcut kind of Fig. 2 adds
// around the add.
func TestLowerShortcuts(t *testing.T) {
	lower := func(sc Shortcut, grow Grow, mode ir.Mode) *ir.Graph {
		return mustLower(t, lowerTestNet(Basic, Original, sc, grow), 2, mode)
	}
	args := func(op *ir.Op) [2]*ir.Op { return [2]*ir.Op{op.Args[0].Def, op.Args[1].Def} }

	// Identity with option A: subsample_pad at the growing unit, stride 2
	// is the default and not written.
	g := lower(Shortcut{Kind: Identity}, GrowA, ir.Infer)
	sp := findOp(t, g, ir.SubsamplePad, "s2.u1.shortcut")
	if len(sp.Attrs) != 1 || sp.Int("channels") != 16 || sp.Args[0].Def.Name != "s1.u1.relu" {
		t.Errorf("option A: %s %v reads %s", sp, sp.Attrs, sp.Args[0].Def)
	}
	if add := findOp(t, g, ir.Add, "s2.u1.add"); args(add) != [2]*ir.Op{sp, findOp(t, g, ir.BNNorm, "s2.u1.bn2")} {
		t.Errorf("option A: add reads %v", args(add))
	}
	if hasOp(g, "s2.u2.shortcut") || hasOp(g, "s1.u1.shortcut") || len(g.Decls(ir.Param)) != 3+3*6+2 {
		t.Errorf("option A: shortcut ops on non-growing units, or extra params")
	}
	// Option A at stride 1 (a stage that only widens) writes the stride.
	a := lowerTestNet(Basic, Original, Shortcut{Kind: Identity}, GrowA)
	a.Stages[0].Width = 12
	g = mustLower(t, a, 2, ir.Infer)
	if sp := findOp(t, g, ir.SubsamplePad, "s1.u1.shortcut"); sp.Int("stride") != 1 || sp.Int("channels") != 12 {
		t.Errorf("option A at stride 1: %v", sp.Attrs)
	}

	// conv1x1: a projection with BatchNorm on every unit.
	g = lower(Shortcut{Kind: Conv1x1}, GrowA, ir.Infer)
	for _, p := range []string{"s1.u1.", "s2.u1.", "s2.u2."} {
		c := findOp(t, g, ir.Conv2D, p+"shortcut.conv")
		bn := findOp(t, g, ir.BNNorm, p+"shortcut.bn")
		if bn.Args[0] != c.Result() || findOp(t, g, ir.Add, p+"add").Args[0] != bn.Result() {
			t.Errorf("conv1x1: %s shortcut is not conv-bn into the add", p)
		}
	}

	// Scaling: the factor-1 side has no scale op.
	for _, c := range []struct{ s, f float64 }{{0, 1}, {0.5, 1}, {0.5, 0.5}, {1, 1}, {1, 0.25}} {
		g := lower(Shortcut{Kind: Scale, ShortcutScale: c.s, BranchScale: c.f}, GrowA, ir.Infer)
		for _, p := range []string{"s1.u1.", "s2.u1."} {
			add := findOp(t, g, ir.Add, p+"add")
			for i, side := range []struct {
				name   string
				factor float64
			}{{p + "shortcut.scale", c.s}, {p + "branch.scale", c.f}} {
				d := add.Args[i].Def
				if side.factor == 1 {
					if hasOp(g, side.name) {
						t.Errorf("scale(%v, %v): %s present", c.s, c.f, side.name)
					}
					continue
				}
				if d.Kind != ir.Scale || d.Name != side.name || d.Float("factor") != side.factor || len(d.Attrs) != 1 {
					t.Errorf("scale(%v, %v): add argument %d is %s %v", c.s, c.f, i, d, d.Attrs)
				}
			}
		}
	}

	// Gating: g = sigmoid(conv(x) + b) over the unit input, y = (1-g)h + gF
	// (exclusive) or (1-g)h + F (shortcut-only).
	for _, kind := range []ShortcutKind{Gate, ShortcutGate} {
		g := lower(Shortcut{Kind: kind, GateBias: -6}, GrowA, ir.Infer)
		for _, p := range []string{"s1.u1.", "s2.u1.", "s2.u2."} {
			gc := findOp(t, g, ir.Conv2D, p+"gate.conv")
			sig := findOp(t, g, ir.Sigmoid, p+"gate")
			inv := findOp(t, g, ir.Scale, p+"gate.complement")
			sm := findOp(t, g, ir.Mul, p+"shortcut.gated")
			add := findOp(t, g, ir.Add, p+"add")
			f := findOp(t, g, ir.BNNorm, p+"bn2")
			h := add.Args[0].Def
			if sig.Args[0] != gc.Result() || inv.Args[0] != sig.Result() || inv.Float("factor") != -1 || inv.Float("offset") != 1 {
				t.Errorf("%v %s: gate is not 1-sigmoid(conv)", kind, p)
			}
			if gc.Args[2].Def.Float("value") != -6 || gc.Result().Type.Shape[1] != add.Result().Type.Shape[1] {
				t.Errorf("%v %s: gate conv %v", kind, p, gc.Result().Type)
			}
			want := "s1.u1.relu"
			if p == "s1.u1." {
				want = "stem.relu"
			} else if p == "s2.u2." {
				want = "s2.u1.relu"
			}
			if gc.Args[0].Def.Name != want {
				t.Errorf("%v %s: gate reads %s, want %s", kind, p, gc.Args[0].Def, want)
			}
			if h != sm || sm.Args[0] != inv.Result() {
				t.Errorf("%v %s: add's shortcut argument is %s", kind, p, h)
			}
			if kind == Gate {
				bm := findOp(t, g, ir.Mul, p+"branch.gated")
				if add.Args[1] != bm.Result() || args(bm) != [2]*ir.Op{sig, f} {
					t.Errorf("%v %s: branch is not g*F", kind, p)
				}
			} else if add.Args[1] != f.Result() || hasOp(g, p+"branch.gated") {
				t.Errorf("%v %s: branch is gated", kind, p)
			}
		}
	}
	// A zero gate bias is the default init.
	g = lower(Shortcut{Kind: Gate, GateBias: 0}, GrowA, ir.Infer)
	if b := g.Lookup("s1.u1.gate.conv.bias"); b == nil || len(b.Attrs) != 0 {
		t.Errorf("gate bias 0: %v", b)
	}

	// Dropout: on the shortcut in training, a distinct seed per unit;
	// absent in inference.
	g = lower(Shortcut{Kind: DropoutShort, DropRate: 0.5}, GrowA, ir.Train)
	seeds := map[int]bool{}
	for _, p := range []string{"s1.u1.", "s2.u1.", "s2.u2."} {
		d := findOp(t, g, ir.Dropout, p+"shortcut.dropout")
		if d.Float("rate") != 0.5 || findOp(t, g, ir.Add, p+"add").Args[0] != d.Results[0] {
			t.Errorf("dropout %s: %v, or not on the add's shortcut", p, d.Attrs)
		}
		seeds[d.Int("seed")] = true
	}
	if len(seeds) != 3 {
		t.Errorf("dropout seeds %v, want three distinct", seeds)
	}
	if d := findOp(t, g, ir.Dropout, "s2.u1.shortcut.dropout"); d.Args[0].Def.Kind != ir.SubsamplePad {
		t.Errorf("dropout at the growing unit reads %s, want the option A shortcut", d.Args[0].Def)
	}
	g = lower(Shortcut{Kind: DropoutShort, DropRate: 0.5}, GrowA, ir.Infer)
	if add := findOp(t, g, ir.Add, "s1.u1.add"); add.Args[0].Def.Name != "stem.relu" {
		t.Errorf("inference dropout: add reads %s", add.Args[0].Def)
	}
}

// TestLowerErrors checks that architectures Lower cannot build are errors
// that name the problem, never panics.
func TestLowerErrors(t *testing.T) {
	good := func() *Arch { return lowerTestNet(Basic, Original, Shortcut{Kind: Identity}, GrowA) }
	for _, c := range []struct {
		name  string
		edit  func(a *Arch)
		batch int
		mode  ir.Mode
		want  string
	}{
		{"batch", func(a *Arch) {}, 0, ir.Infer, "batch size 0"},
		{"mode", func(a *Arch) {}, 1, 0, "mode"},
		{"input", func(a *Arch) { a.InputC = 0 }, 1, ir.Infer, "input 8x8x0"},
		{"classes", func(a *Arch) { a.Classes = -1 }, 1, ir.Infer, "-1 classes"},
		{"stem", func(a *Arch) { a.Stem.Stride = 0 }, 1, ir.Infer, "stem"},
		{"unit", func(a *Arch) { a.Unit = 0 }, 1, ir.Infer, "unit kind"},
		{"order", func(a *Arch) { a.Order = 9 }, 1, ir.Infer, "order"},
		{"grow", func(a *Arch) { a.Grow = 0 }, 1, ir.Infer, "grow"},
		{"shortcut", func(a *Arch) { a.Shortcut.Kind = 0 }, 1, ir.Infer, "shortcut kind"},
		{"rate", func(a *Arch) { a.Shortcut = Shortcut{Kind: DropoutShort, DropRate: 1} }, 1, ir.Train, "dropout rate 1"},
		{"scale", func(a *Arch) { a.Shortcut = Shortcut{Kind: Scale, ShortcutScale: math.NaN(), BranchScale: 1} }, 1, ir.Infer, "NaN"},
		{"gate", func(a *Arch) { a.Shortcut = Shortcut{Kind: Gate, GateBias: math.Inf(-1)} }, 1, ir.Infer, "-Inf"},
		{"eps", func(a *Arch) { a.BNEps = 0 }, 1, ir.Infer, "eps"},
		{"momentum", func(a *Arch) { a.BNMomentum = 1.5 }, 1, ir.Infer, "momentum"},
		{"no stages", func(a *Arch) { a.Stages = nil }, 1, ir.Infer, "no stages"},
		{"units", func(a *Arch) { a.Stages[1].Units = 0 }, 1, ir.Infer, "stage 2 has 0 units"},
		{"bottleneck width", func(a *Arch) { a.Unit = Bottleneck; a.Stages[1].Width = 18 }, 1, ir.Infer, "not divisible by 4"},
		{"narrow A", func(a *Arch) { a.Stages[1].Width = 4 }, 1, ir.Infer, "narrows the width from 8 to 4"},
		{"depth", func(a *Arch) { a.Depth = 20; a.DepthPos = Pos{File: "n.arch", Line: 4, Col: 5} }, 1, ir.Infer, "n.arch:4:5: depth 20"},
		{"stage pos", func(a *Arch) { a.Stages[1].Stride = 0; a.Stages[1].Pos = Pos{File: "n.arch", Line: 7, Col: 12} }, 1, ir.Infer, "n.arch:7:12: stage 2"},
		{"huge input", func(a *Arch) { a.InputH = 1 << 40 }, 1, ir.Infer, "the input has"},
		{"huge kernel", func(a *Arch) { a.Stem.Kernel = math.MaxInt }, 1, ir.Infer, "stem weight"},
		{"huge width", func(a *Arch) { a.Stages[1].Width = 1 << 30 }, 1, ir.Infer, "stage 2"},
		{"huge units", func(a *Arch) { a.Stages[0].Units = math.MaxInt }, 1, ir.Infer, "units"},
		{"huge batch", func(a *Arch) {}, math.MaxInt, ir.Infer, "input"},
		{"train 1x1 batch 1", func(a *Arch) { a.InputH, a.InputW = 2, 2 }, 1, ir.Train, "more than one value per channel"},
	} {
		a := good()
		c.edit(a)
		g, err := Lower(a, c.batch, c.mode)
		if err == nil || g != nil {
			t.Errorf("%s: Lower = %v, %v; want an error", c.name, g != nil, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", c.name, err, c.want)
		}
		if !strings.Contains(err.Error(), a.Name) && !strings.Contains(err.Error(), "n.arch:") {
			t.Errorf("%s: error %q names neither the network nor a position", c.name, err)
		}
	}
	if _, err := Lower(nil, 1, ir.Infer); err == nil {
		t.Errorf("Lower(nil) gave no error")
	}
	// The same 1x1 net at batch 2 trains, and infers at batch 1.
	a := good()
	a.InputH, a.InputW = 2, 2
	mustLower(t, a, 2, ir.Train)
	mustLower(t, a, 1, ir.Infer)
}

// TestLowerNoPanic lowers random architectures, most of them valid and
// some with one field set to a value that may be invalid: Lower either
// returns an error or a graph that verifies, and never panics.
func TestLowerNoPanic(t *testing.T) {
	r := uint64(1)
	next := func(n int) int { // xorshift: deterministic, dependency-free
		r ^= r << 13
		r ^= r >> 7
		r ^= r << 17
		return int(r % uint64(n))
	}
	pick := func(vals ...int) int { return vals[next(len(vals))] }
	odd := []int{0, -1, 1, 2, 3, 5, 1 << 21, math.MaxInt}
	oddF := []float64{0, 1, 0.5, -6, 1e-5, -1, 2, math.NaN(), math.Inf(1)}
	ok, failed := 0, 0
	for range 2000 {
		a := &Arch{
			Name:   "random",
			InputH: pick(1, 2, 3, 8), InputW: pick(1, 2, 7, 8), InputC: pick(1, 3),
			Classes:  pick(1, 3),
			Stem:     Stem{Kernel: pick(1, 2, 3, 7), Stride: pick(1, 2, 3), Width: pick(4, 8), MaxPool: next(4) == 0},
			Unit:     allKinds[next(3)],
			Order:    allOrders[next(5)],
			Shortcut: allShortcuts[next(len(allShortcuts))],
			Grow:     allGrows[next(2)],
			BNEps:    1e-5, BNMomentum: 0.1,
		}
		for range 1 + next(3) {
			a.Stages = append(a.Stages, Stage{Units: pick(1, 2), Width: pick(4, 8, 16), Stride: pick(1, 2, 3)})
		}
		batch, mode := pick(1, 2), []ir.Mode{ir.Infer, ir.Train}[next(2)]
		i, v, f := next(2)*next(24), odd[next(len(odd))], oddF[next(len(oddF))]
		st := &a.Stages[next(len(a.Stages))]
		switch i {
		case 1:
			a.InputH = v
		case 2:
			a.InputW = v
		case 3:
			a.InputC = v
		case 4:
			a.Classes = v
		case 5:
			a.Depth = v
		case 6:
			a.Stem.Kernel = v
		case 7:
			a.Stem.Stride = v
		case 8:
			a.Stem.Width = v
		case 9:
			a.Unit = UnitKind(v)
		case 10:
			a.Order = Order(v)
		case 11:
			a.Shortcut.Kind = ShortcutKind(v)
		case 12:
			a.Shortcut.ShortcutScale, a.Shortcut.BranchScale = f, f
		case 13:
			a.Shortcut.GateBias = f
		case 14:
			a.Shortcut.DropRate = f
		case 15:
			a.Grow = Grow(v)
		case 16:
			a.BNEps = f
		case 17:
			a.BNMomentum = f
		case 18:
			st.Units = v
		case 19:
			st.Width = v
		case 20:
			st.Stride = v
		case 21:
			a.Stages = nil
		case 22:
			batch = v
		case 23:
			mode = ir.Mode(v)
		}
		g, err := Lower(a, batch, mode)
		if err != nil {
			failed++
			continue
		}
		if err := ir.Verify(g); err != nil {
			t.Fatalf("%+v: graph does not verify: %v", a, err)
		}
		ok++
	}
	if ok < 500 || failed < 300 {
		t.Errorf("%d architectures lowered and %d failed; the test explores too little", ok, failed)
	}
}

// goldenNet is a tiny network of one family for a golden file.
type goldenNet struct {
	name string
	arch *Arch
	mode ir.Mode
}

func goldenNets() []goldenNet {
	cifar := func(name string, kind UnitKind, order Order, sc Shortcut, grow Grow, widths ...int) *Arch {
		a := &Arch{
			Name: name, InputH: 8, InputW: 8, InputC: 3, Classes: 10,
			Stem: Stem{Kernel: 3, Stride: 1, Width: 8}, Unit: kind, Order: order, Shortcut: sc, Grow: grow,
			BNEps: 1e-5, BNMomentum: 0.1,
		}
		for i, w := range widths {
			a.Stages = append(a.Stages, Stage{Units: 1, Width: w, Stride: min(i+1, 2)})
		}
		a.Depth = kind.LayersPerUnit()*a.Units() + 2
		return a
	}
	id := Shortcut{Kind: Identity}
	imagenet := cifar("preact-imagenet-8", Bottleneck, FullPreact, id, GrowB, 16, 32)
	imagenet.InputH, imagenet.InputW = 16, 16
	imagenet.Stem = Stem{Kernel: 7, Stride: 2, Width: 8, MaxPool: true}
	return []goldenNet{
		{"basic-original-a", cifar("resnet-8", Basic, Original, id, GrowA, 8, 16, 32), ir.Infer},
		{"basic-full-preact", cifar("preact-resnet-8", Basic, FullPreact, id, GrowA, 8, 16, 32), ir.Train},
		{"bottleneck-original-projection", cifar("resnet-11", Bottleneck, Original, id, GrowB, 16, 32, 64), ir.Infer},
		{"bottleneck-full-preact", cifar("preact-resnet-11", Bottleneck, FullPreact, id, GrowB, 16, 32, 64), ir.Train},
		{"1layer-original-a", cifar("resnet-5-1layer", OneLayer, Original, id, GrowA, 8, 16, 32), ir.Infer},
		{"imagenet-stem-preact", imagenet, ir.Infer},
		{"bn-after-add", cifar("resnet-8-bn-after-add", Basic, BNAfterAdd, id, GrowA, 8, 16, 32), ir.Infer},
		{"relu-before-add", cifar("resnet-8-relu-before-add", Basic, ReLUBeforeAdd, id, GrowA, 8, 16, 32), ir.Infer},
		{"relu-only-preact", cifar("resnet-8-relu-only-preact", Basic, ReLUOnlyPreact, id, GrowA, 8, 16, 32), ir.Infer},
		{"shortcut-scale", cifar("resnet-6-scale-0.5-0.5", Basic, Original, Shortcut{Kind: Scale, ShortcutScale: 0.5, BranchScale: 0.5}, GrowA, 8, 16), ir.Infer},
		{"shortcut-gate", cifar("resnet-6-gate-neg6", Basic, Original, Shortcut{Kind: Gate, GateBias: -6}, GrowA, 8, 16), ir.Infer},
		{"shortcut-shortcut-gate", cifar("resnet-6-shortcut-gate-0", Basic, Original, Shortcut{Kind: ShortcutGate}, GrowA, 8, 16), ir.Infer},
		{"shortcut-conv1x1", cifar("resnet-6-conv1x1", Basic, Original, Shortcut{Kind: Conv1x1}, GrowA, 8, 16), ir.Infer},
		{"shortcut-dropout", cifar("resnet-6-dropout-0.5", Basic, Original, Shortcut{Kind: DropoutShort, DropRate: 0.5}, GrowA, 8, 16), ir.Train},
	}
}

// TestLowerGolden compares the printed IR of a small network of each
// family with testdata/lower, and checks that each golden file parses back
// to a graph that verifies and prints identically.
func TestLowerGolden(t *testing.T) {
	for _, c := range goldenNets() {
		t.Run(c.name, func(t *testing.T) {
			g := mustLower(t, c.arch, 2, c.mode)
			path := "../../testdata/lower/" + c.name + ".ir"
			golden.Check(t, path, []byte(ir.Print(g)))
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			pg, err := ir.Parse(path, src)
			if err != nil {
				t.Fatalf("golden file does not parse: %v", err)
			}
			if err := ir.Verify(pg); err != nil {
				t.Fatalf("golden file does not verify: %v", err)
			}
			if got := ir.Print(pg); got != string(src) {
				t.Errorf("Print(Parse(%s)) differs from the file:\n%s", path, got)
			}
		})
	}
}

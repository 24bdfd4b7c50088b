package resnet

import "fmt"

// Pos is a position in a DSL file.
type Pos struct {
	File      string
	Line, Col int // 1-based; Col counts bytes
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// UnitKind is the body of a residual unit.
type UnitKind uint8

const (
	Basic      UnitKind = iota + 1 // two 3x3 convs, widths w, w
	OneLayer                       // one 3x3 conv ("ResNet-110(1layer)")
	Bottleneck                     // 1x1 (w/4), 3x3 (w/4), 1x1 (w): the stage width is the unit's output width
)

// LayersPerUnit is the number of weight layers in one unit, the factor in
// the depth formula depth = LayersPerUnit*units + 2.
func (k UnitKind) LayersPerUnit() int {
	switch k {
	case Basic:
		return 2
	case OneLayer:
		return 1
	case Bottleneck:
		return 3
	}
	panic(fmt.Sprintf("BUG: unit kind %d", k))
}

func (k UnitKind) String() string {
	switch k {
	case Basic:
		return "basic"
	case OneLayer:
		return "1-layer"
	case Bottleneck:
		return "bottleneck"
	}
	return fmt.Sprintf("unitkind(%d)", int(k))
}

// Order is where BatchNorm and ReLU sit in a unit: the five designs of the
// paper's Fig. 4. In every order "BN" follows a weight layer unless moved.
type Order uint8

const (
	// Original (a): conv-BN-ReLU-conv-BN, add, ReLU.
	Original Order = iota + 1
	// BNAfterAdd (b): conv-BN-ReLU-conv, add, BN, ReLU.
	BNAfterAdd
	// ReLUBeforeAdd (c): conv-BN-ReLU-conv-BN-ReLU, add.
	ReLUBeforeAdd
	// ReLUOnlyPreact (d): ReLU-conv-BN-ReLU-conv-BN, add.
	ReLUOnlyPreact
	// FullPreact (e): BN-ReLU-conv-BN-ReLU-conv, add.
	FullPreact
)

// Preact reports whether the order activates a unit's input inside the
// unit (orders d and e), so the stem does not and the head must.
func (o Order) Preact() bool { return o == ReLUOnlyPreact || o == FullPreact }

func (o Order) String() string {
	switch o {
	case Original:
		return "original"
	case BNAfterAdd:
		return "bn-after-add"
	case ReLUBeforeAdd:
		return "relu-before-add"
	case ReLUOnlyPreact:
		return "relu-only-preact"
	case FullPreact:
		return "full-preact"
	}
	return fmt.Sprintf("order(%d)", int(o))
}

// ShortcutKind is what the shortcut path h(x) does: the designs of the
// paper's Fig. 2.
type ShortcutKind uint8

const (
	Identity     ShortcutKind = iota + 1 // h(x) = x
	Scale                                // y = λs*h(x) + λf*F(x)            (Fig. 2b)
	Gate                                 // y = (1-g(x))*h(x) + g(x)*F(x)    (Fig. 2c, exclusive gating)
	ShortcutGate                         // y = (1-g(x))*h(x) + F(x)         (Fig. 2d, shortcut-only gating)
	Conv1x1                              // h(x) = 1x1 conv on every unit    (Fig. 2e)
	DropoutShort                         // h(x) = dropout(x, rate)          (Fig. 2f)
)

func (k ShortcutKind) String() string {
	switch k {
	case Identity:
		return "identity"
	case Scale:
		return "scale"
	case Gate:
		return "gate"
	case ShortcutGate:
		return "shortcut-gate"
	case Conv1x1:
		return "conv1x1"
	case DropoutShort:
		return "dropout"
	}
	return fmt.Sprintf("shortcut(%d)", int(k))
}

// Shortcut is a shortcut kind with its parameters.
//
// The gate is g(x) = sigmoid(conv1x1(x) + b), a 1x1 conv with bias over the
// unit's input (stride and output width as the unit's), its bias
// initialized to GateBias and its weight as every conv's. The scaling,
// gating or dropout applies to h(x) of every unit; at a unit where the
// dimensions grow, h(x) is the Grow shortcut rather than the identity.
type Shortcut struct {
	Kind          ShortcutKind
	ShortcutScale float64 // λs, for Scale
	BranchScale   float64 // λf, for Scale
	GateBias      float64 // b_g init, for Gate and ShortcutGate
	DropRate      float64 // for DropoutShort, in [0, 1)
}

// Grow is the shortcut used where a unit changes width or resolution.
type Grow uint8

const (
	GrowA Grow = iota + 1 // option A: stride-2 subsampling, zero-padded extra channels, no parameters
	GrowB                 // option B: 1x1 conv projection (stride as the unit's)
)

func (g Grow) String() string {
	switch g {
	case GrowA:
		return "A"
	case GrowB:
		return "projection"
	}
	return fmt.Sprintf("grow(%d)", int(g))
}

// Stem is the network's first layer: a KxK conv of the given width and
// stride (pad K/2), optionally followed by a 3x3 stride-2 max pool (pad 1).
// Without the pool (the CIFAR stem), the stem is conv-BN-ReLU under the
// post-activation orders, the bare conv under full pre-activation and
// conv-BN under ReLU-only pre-activation: the first unit supplies the rest.
// With the pool (the ImageNet stem), it is always conv-BN-ReLU-maxpool and,
// under a pre-activation order, the first unit skips its own first
// activation (as the reference ImageNet code does).
type Stem struct {
	Kernel, Stride, Width int
	MaxPool               bool
	Pos                   Pos
}

// Stage is a run of units at one resolution: Units units of output width
// Width; the first unit has stride Stride, the rest stride 1.
type Stage struct {
	Units  int // 0 when the stage count comes from the depth
	Width  int
	Stride int
	Pos    Pos
}

// Arch is a parsed architecture: what the DSL says, with defaults filled.
type Arch struct {
	Name                   string
	InputH, InputW, InputC int
	Classes                int
	// Depth is the number of weight layers counted the paper's way:
	// LayersPerUnit*units + 2 (the stem conv and the FC). After Parse it is
	// always consistent with the stage unit counts.
	Depth    int
	Stem     Stem
	Unit     UnitKind
	Order    Order
	Shortcut Shortcut
	Grow     Grow
	Stages   []Stage
	// BatchNorm settings, as in the reference implementation by default.
	BNEps      float64 // 1e-5
	BNMomentum float64 // 0.1: running = 0.9*running + 0.1*batch

	// Positions of statements, for errors found after parsing.
	DepthPos, UnitPos, InputPos, ClassesPos Pos
}

// Units returns the total number of residual units.
func (a *Arch) Units() int {
	n := 0
	for _, s := range a.Stages {
		n += s.Units
	}
	return n
}

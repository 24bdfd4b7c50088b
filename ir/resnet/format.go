package resnet

import (
	"fmt"
	"strconv"
	"strings"
)

// Format prints the architecture as canonical DSL text: every statement
// and unit option spelled out, in the order of the reference in doc.go, so
// that Parse of the result gives back a (positions aside). A net whose
// stages all have the same unit count is written with its depth and
// uncounted stages, so the text still says which depths fit it; other
// nets list their counts.
func (a *Arch) Format() string {
	var b strings.Builder
	stmt := func(kw, format string, args ...any) {
		fmt.Fprintf(&b, "    %-7s %s\n", kw, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(&b, "resnet %s {\n", a.Name)
	stmt("input", "%dx%dx%d", a.InputH, a.InputW, a.InputC)
	stmt("classes", "%d", a.Classes)

	known, uniform := len(a.Stages) > 0, true
	for _, s := range a.Stages {
		known = known && s.Units > 0
		uniform = uniform && s.Units == a.Stages[0].Units
	}
	counted := known && (!uniform || a.Depth == 0)
	switch {
	case a.Depth == 0:
	case known && uniform:
		per := 0
		if a.Unit >= Basic && a.Unit <= Bottleneck {
			per = a.Unit.LayersPerUnit() * len(a.Stages)
		}
		stmt("depth", "%-8d # %dn+2: %d %s units per stage", a.Depth, per, a.Stages[0].Units, a.Unit)
	default:
		stmt("depth", "%d", a.Depth)
	}

	conv := fmt.Sprintf("conv%dx%d", a.Stem.Kernel, a.Stem.Kernel)
	if a.Stem.Stride != 1 {
		conv += "/" + strconv.Itoa(a.Stem.Stride)
	}
	pool := ""
	if a.Stem.MaxPool {
		pool = " maxpool3x3/2"
	}
	stmt("stem", "%s %d%s", conv, a.Stem.Width, pool)
	stmt("unit", "%s order=%s shortcut=%s grow=%s", a.Unit, a.Order, formatShortcut(a.Shortcut), a.Grow)

	var stages []string
	for _, s := range a.Stages {
		t := strconv.Itoa(s.Width)
		if counted {
			t = strconv.Itoa(s.Units) + "x" + t
		}
		if s.Stride != 1 {
			t += "/" + strconv.Itoa(s.Stride)
		}
		stages = append(stages, t)
	}
	stmt("stages", "%s", strings.Join(stages, " "))
	stmt("bn", "eps=%s momentum=%s", formatNumber(a.BNEps), formatNumber(a.BNMomentum))
	b.WriteString("}\n")
	return b.String()
}

func formatShortcut(s Shortcut) string {
	switch s.Kind {
	case Scale:
		return fmt.Sprintf("scale(%s, %s)", formatNumber(s.ShortcutScale), formatNumber(s.BranchScale))
	case Gate, ShortcutGate:
		return fmt.Sprintf("%s(%s)", s.Kind, formatNumber(s.GateBias))
	case DropoutShort:
		return fmt.Sprintf("dropout(%s)", formatNumber(s.DropRate))
	}
	return s.Kind.String()
}

// formatNumber prints v in the fewest digits that parse back to exactly v,
// with the exponent as people write it (1e-5, not 1e-05).
func formatNumber(v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if mant, exp, ok := strings.Cut(s, "e"); ok {
		sign := exp[:1]
		if sign == "+" {
			sign = ""
		}
		exp = strings.TrimLeft(exp[1:], "0")
		s = mant + "e" + sign + exp
	}
	return s
}

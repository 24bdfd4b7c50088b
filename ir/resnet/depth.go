package resnet

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// paperDepths are the depths the paper trains for a unit kind on the
// three CIFAR stages, quoted when a depth does not fit.
var paperDepths = map[UnitKind][]int{
	Basic:      {20, 56, 110},
	Bottleneck: {164, 1001},
	OneLayer:   {110},
}

// standardDepth is one of the ImageNet tables: nets whose stages have
// different unit counts, so a depth cannot be spread uniformly.
type standardDepth struct {
	unit   UnitKind
	depth  int
	counts []int
}

// standardDepths are the four-stage ImageNet ResNets of the original paper
// and this one.
var standardDepths = []standardDepth{
	{Basic, 18, []int{2, 2, 2, 2}},
	{Basic, 34, []int{3, 4, 6, 3}},
	{Bottleneck, 50, []int{3, 4, 6, 3}},
	{Bottleneck, 101, []int{3, 4, 23, 3}},
	{Bottleneck, 152, []int{3, 8, 36, 3}},
	{Bottleneck, 200, []int{3, 24, 36, 3}},
}

// unitsPerStage returns n such that depth = L*stages*n + 2 for units of
// kind (L layers each), or a message saying which depths fit.
func unitsPerStage(kind UnitKind, stages, depth int) (int, string) {
	per := kind.LayersPerUnit() * stages
	if depth > 2 && (depth-2)%per == 0 {
		return (depth - 2) / per, ""
	}
	examples := paperDepths[kind]
	if stages != 3 || examples == nil {
		examples = []int{per + 2, 2*per + 2, 3*per + 2}
	}
	var ex []string
	for _, d := range examples {
		ex = append(ex, strconv.Itoa(d))
	}
	var near []string
	if n := (depth - 2) / per; depth > 2 && n >= 1 {
		near = append(near, strconv.Itoa(per*n+2))
	}
	if n := max(depth-2, 0)/per + 1; per*n+2 <= maxDepth {
		near = append(near, strconv.Itoa(per*n+2))
	}
	s := "s"
	if stages == 1 {
		s = ""
	}
	msg := fmt.Sprintf("depth %d does not fit %s units in %d stage%s: depth must be %dn+2 (for example %s)",
		depth, kind, stages, s, per, strings.Join(ex, ", "))
	if len(near) > 0 {
		msg += "; nearest: " + strings.Join(near, " or ")
	}
	return 0, msg
}

// SetDepth instantiates the architecture at depth d, the paper's way of
// naming a deeper or shallower net of the same design (the -depth flag).
//
// When every stage has the same unit count (the CIFAR nets), the counts
// become n = (d-2)/(L*S) for S stages of units with L layers, which must be
// a positive integer. When the counts differ between stages (the ImageNet
// nets), or are those of a standard table, d must be one of the standard
// depths: bottleneck units in 4 stages 50, 101, 152 or 200; basic units in
// 4 stages 18 or 34. On error the architecture is unchanged.
func (a *Arch) SetDepth(d int) error {
	switch a.Unit {
	case Basic, OneLayer, Bottleneck:
	default:
		return fmt.Errorf("cannot set the depth of an architecture with unit kind %v", a.Unit)
	}
	if len(a.Stages) == 0 {
		return errors.New("cannot set the depth of an architecture with no stages")
	}
	if d < 1 || d > maxDepth {
		return fmt.Errorf("depth %d is out of range; want 1 to %d", d, maxDepth)
	}
	counts := make([]int, len(a.Stages))
	uniform := true
	for i, s := range a.Stages {
		counts[i] = s.Units
		uniform = uniform && s.Units == a.Stages[0].Units
	}
	var table []standardDepth
	inTable := false
	for _, t := range standardDepths {
		if t.unit == a.Unit && len(t.counts) == len(a.Stages) {
			table = append(table, t)
			inTable = inTable || slices.Equal(t.counts, counts)
		}
	}
	if uniform && !inTable {
		n, msg := unitsPerStage(a.Unit, len(a.Stages), d)
		if msg != "" {
			return errors.New(msg)
		}
		for i := range a.Stages {
			a.Stages[i].Units = n
		}
		a.Depth = d
		return nil
	}
	if len(table) == 0 {
		return fmt.Errorf("the stages have different unit counts (%s), and %s units in %d stages have no standard depths; give the counts in the stages statement instead",
			joinInts(counts, ", "), a.Unit, len(a.Stages))
	}
	var valid []string
	for _, t := range table {
		if t.depth == d {
			for i := range a.Stages {
				a.Stages[i].Units = t.counts[i]
			}
			a.Depth = d
			return nil
		}
		valid = append(valid, strconv.Itoa(t.depth))
	}
	return fmt.Errorf("depth %d is not a standard depth for %s units in %d stages; want %s",
		d, a.Unit, len(a.Stages), andOrList(valid, "or"))
}

func joinInts(xs []int, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, sep)
}

// andOrList formats items as "a, b <conj> c".
func andOrList(items []string, conj string) string {
	if len(items) == 1 {
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " " + conj + " " + items[len(items)-1]
}

package resnet

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// layers is the depth formula's factor per unit kind, written out here
// rather than taken from UnitKind.LayersPerUnit.
var layers = map[UnitKind]int{Basic: 2, OneLayer: 1, Bottleneck: 3}

func rep(n, times int) []int {
	s := make([]int, times)
	for i := range s {
		s[i] = n
	}
	return s
}

// presetWant is what the paper (FACTS.md) says a preset is.
type presetWant struct {
	name     string
	depth    int
	imagenet bool
	classes  int
	unit     UnitKind
	order    Order
	shortcut Shortcut
	grow     Grow
	counts   []int
}

var (
	identity = Shortcut{Kind: Identity}
	n3x18    = rep(18, 3)
)

var presetWants = []presetWant{
	{"resnet-20", 20, false, 10, Basic, Original, identity, GrowA, rep(3, 3)},
	{"resnet-56", 56, false, 10, Basic, Original, identity, GrowA, rep(9, 3)},
	{"preact-resnet-20", 20, false, 10, Basic, FullPreact, identity, GrowA, rep(3, 3)},
	{"preact-resnet-56", 56, false, 10, Basic, FullPreact, identity, GrowA, rep(9, 3)},
	{"resnet-110", 110, false, 10, Basic, Original, identity, GrowA, n3x18},
	{"resnet-1202", 1202, false, 10, Basic, Original, identity, GrowA, rep(200, 3)},
	{"preact-resnet-110", 110, false, 10, Basic, FullPreact, identity, GrowA, n3x18},
	{"resnet-110-1layer", 110, false, 10, OneLayer, Original, identity, GrowA, rep(36, 3)},
	{"preact-resnet-110-1layer", 110, false, 10, OneLayer, FullPreact, identity, GrowA, rep(36, 3)},
	{"resnet-164", 164, false, 10, Bottleneck, Original, identity, GrowB, n3x18},
	{"preact-resnet-164", 164, false, 10, Bottleneck, FullPreact, identity, GrowB, n3x18},
	{"resnet-1001", 1001, false, 10, Bottleneck, Original, identity, GrowB, rep(111, 3)},
	{"preact-resnet-1001", 1001, false, 10, Bottleneck, FullPreact, identity, GrowB, rep(111, 3)},
	{"resnet-164-cifar100", 164, false, 100, Bottleneck, Original, identity, GrowB, n3x18},
	{"preact-resnet-164-cifar100", 164, false, 100, Bottleneck, FullPreact, identity, GrowB, n3x18},
	{"resnet-1001-cifar100", 1001, false, 100, Bottleneck, Original, identity, GrowB, rep(111, 3)},
	{"preact-resnet-1001-cifar100", 1001, false, 100, Bottleneck, FullPreact, identity, GrowB, rep(111, 3)},
	{"resnet-152", 152, true, 1000, Bottleneck, Original, identity, GrowB, []int{3, 8, 36, 3}},
	{"resnet-200", 200, true, 1000, Bottleneck, Original, identity, GrowB, []int{3, 24, 36, 3}},
	{"preact-resnet-152", 152, true, 1000, Bottleneck, FullPreact, identity, GrowB, []int{3, 8, 36, 3}},
	{"preact-resnet-200", 200, true, 1000, Bottleneck, FullPreact, identity, GrowB, []int{3, 24, 36, 3}},
	{"resnet-110-scale-0-1", 110, false, 10, Basic, Original, Shortcut{Kind: Scale, ShortcutScale: 0, BranchScale: 1}, GrowA, n3x18},
	{"resnet-110-scale-0.5-1", 110, false, 10, Basic, Original, Shortcut{Kind: Scale, ShortcutScale: 0.5, BranchScale: 1}, GrowA, n3x18},
	{"resnet-110-scale-0.5-0.5", 110, false, 10, Basic, Original, Shortcut{Kind: Scale, ShortcutScale: 0.5, BranchScale: 0.5}, GrowA, n3x18},
	{"resnet-110-gate-0", 110, false, 10, Basic, Original, Shortcut{Kind: Gate, GateBias: 0}, GrowA, n3x18},
	{"resnet-110-gate-neg6", 110, false, 10, Basic, Original, Shortcut{Kind: Gate, GateBias: -6}, GrowA, n3x18},
	{"resnet-110-gate-neg7", 110, false, 10, Basic, Original, Shortcut{Kind: Gate, GateBias: -7}, GrowA, n3x18},
	{"resnet-110-shortcut-gate-0", 110, false, 10, Basic, Original, Shortcut{Kind: ShortcutGate, GateBias: 0}, GrowA, n3x18},
	{"resnet-110-shortcut-gate-neg6", 110, false, 10, Basic, Original, Shortcut{Kind: ShortcutGate, GateBias: -6}, GrowA, n3x18},
	{"resnet-110-conv1x1", 110, false, 10, Basic, Original, Shortcut{Kind: Conv1x1}, GrowA, n3x18},
	{"resnet-110-dropout-0.5", 110, false, 10, Basic, Original, Shortcut{Kind: DropoutShort, DropRate: 0.5}, GrowA, n3x18},
	{"resnet-110-bn-after-add", 110, false, 10, Basic, BNAfterAdd, identity, GrowA, n3x18},
	{"resnet-110-relu-before-add", 110, false, 10, Basic, ReLUBeforeAdd, identity, GrowA, n3x18},
	{"resnet-110-relu-only-preact", 110, false, 10, Basic, ReLUOnlyPreact, identity, GrowA, n3x18},
	{"resnet-164-bn-after-add", 164, false, 10, Bottleneck, BNAfterAdd, identity, GrowB, n3x18},
	{"resnet-164-relu-before-add", 164, false, 10, Bottleneck, ReLUBeforeAdd, identity, GrowB, n3x18},
	{"resnet-164-relu-only-preact", 164, false, 10, Bottleneck, ReLUOnlyPreact, identity, GrowB, n3x18},
	{"resnet-basic", 110, false, 10, Basic, Original, identity, GrowA, n3x18},
	{"preact-resnet-basic", 110, false, 10, Basic, FullPreact, identity, GrowA, n3x18},
	{"resnet-1layer", 110, false, 10, OneLayer, Original, identity, GrowA, rep(36, 3)},
	{"preact-resnet-1layer", 110, false, 10, OneLayer, FullPreact, identity, GrowA, rep(36, 3)},
	{"resnet-bottleneck", 164, false, 10, Bottleneck, Original, identity, GrowB, n3x18},
	{"preact-resnet-bottleneck", 164, false, 10, Bottleneck, FullPreact, identity, GrowB, n3x18},
}

// TestPresetList checks that the presets are exactly the expected ones,
// sorted, each documented and named as its file.
func TestPresetList(t *testing.T) {
	ps := Presets()
	var got, want []string
	for _, p := range ps {
		got = append(got, p.Name)
		if p.Doc == "" || !strings.HasPrefix(p.Source, "# "+p.Doc+"\n") {
			t.Errorf("%s: Doc %q is not the file's first comment line", p.Name, p.Doc)
		}
		if !strings.Contains(p.Source, "\nresnet "+p.Name+" {\n") {
			t.Errorf("%s: the file does not declare resnet %s", p.Name, p.Name)
		}
	}
	for _, w := range presetWants {
		want = append(want, w.name)
	}
	slices.Sort(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("preset names mismatch (-want +got):\n%s", d)
	}
	ps[0].Name = "changed"
	if Presets()[0].Name == "changed" {
		t.Errorf("Presets returns the package's own slice")
	}
}

// TestPresetFields checks every preset against what the paper says it is.
func TestPresetFields(t *testing.T) {
	for _, w := range presetWants {
		a, err := LoadPreset(w.name)
		if err != nil {
			t.Errorf("%s: %v", w.name, err)
			continue
		}
		var counts []int
		units := 0
		for _, s := range a.Stages {
			counts = append(counts, s.Units)
			units += s.Units
		}
		if a.Name != w.name || a.Depth != w.depth || a.Classes != w.classes || a.Unit != w.unit ||
			a.Order != w.order || a.Shortcut != w.shortcut || a.Grow != w.grow || !slices.Equal(counts, w.counts) {
			t.Errorf("%s: got %s depth %d, %d classes, %v %v %+v grow %v, counts %v; want depth %d, %d classes, %v %v %+v grow %v, counts %v",
				w.name, a.Name, a.Depth, a.Classes, a.Unit, a.Order, a.Shortcut, a.Grow, counts,
				w.depth, w.classes, w.unit, w.order, w.shortcut, w.grow, w.counts)
		}
		if d := layers[w.unit]*units + 2; d != w.depth {
			t.Errorf("%s: %d %v units give depth %d, not %d", w.name, units, w.unit, d, w.depth)
		}
		if a.BNEps != 1e-5 || a.BNMomentum != 0.1 {
			t.Errorf("%s: bn eps=%v momentum=%v, want the defaults", w.name, a.BNEps, a.BNMomentum)
		}
		var widths, strides []int
		for _, s := range a.Stages {
			widths = append(widths, s.Width)
			strides = append(strides, s.Stride)
		}
		var wantStem Stem
		var wantWidths, wantStrides []int
		h := 32
		switch {
		case w.imagenet:
			h, wantStem = 224, Stem{Kernel: 7, Stride: 2, Width: 64, MaxPool: true}
			wantWidths, wantStrides = []int{256, 512, 1024, 2048}, []int{1, 2, 2, 2}
		case w.unit == Bottleneck:
			wantStem, wantWidths, wantStrides = Stem{Kernel: 3, Stride: 1, Width: 16}, []int{64, 128, 256}, []int{1, 2, 2}
		default:
			wantStem, wantWidths, wantStrides = Stem{Kernel: 3, Stride: 1, Width: 16}, []int{16, 32, 64}, []int{1, 2, 2}
		}
		a.Stem.Pos = Pos{}
		if a.InputH != h || a.InputW != h || a.InputC != 3 || a.Stem != wantStem ||
			!slices.Equal(widths, wantWidths) || !slices.Equal(strides, wantStrides) {
			t.Errorf("%s: input %dx%dx%d, stem %+v, widths %v, strides %v; want %dx%dx3, %+v, %v, %v",
				w.name, a.InputH, a.InputW, a.InputC, a.Stem, widths, strides, h, h, wantStem, wantWidths, wantStrides)
		}
		// Uniform nets are written with a depth and no counts, so that
		// SetDepth and the text agree on what the net is.
		src := presetSource(t, w.name)
		if uniform := !w.imagenet; uniform && strings.Contains(src, "x16 ") {
			t.Errorf("%s: a uniform net lists unit counts", w.name)
		}
	}
}

func presetSource(t *testing.T, name string) string {
	t.Helper()
	for _, p := range Presets() {
		if p.Name == name {
			return p.Source
		}
	}
	t.Fatalf("no preset %s", name)
	return ""
}

// TestPresetFormatRoundTrip checks that every preset formats to text that
// parses back to the same architecture, and that formatting is idempotent.
func TestPresetFormatRoundTrip(t *testing.T) {
	for _, p := range Presets() {
		a, err := LoadPreset(p.Name)
		if err != nil {
			t.Errorf("%s: %v", p.Name, err)
			continue
		}
		text := a.Format()
		b, err := Parse("format.arch", []byte(text))
		if err != nil {
			t.Errorf("%s: Format output does not parse: %v\n%s", p.Name, err, text)
			continue
		}
		if d := cmp.Diff(a, b, ignorePos); d != "" {
			t.Errorf("%s: round trip mismatch (-want +got):\n%s", p.Name, d)
		}
		if b.Format() != text {
			t.Errorf("%s: Format is not idempotent", p.Name)
		}
	}
}

func TestLoadPresetErrors(t *testing.T) {
	for name, want := range map[string]string{
		"resnet-11":          `unknown preset "resnet-11"; closest: resnet-110,`,
		"preact-resnet164":   `unknown preset "preact-resnet164"; closest: preact-resnet-164,`,
		"RESNET-1001":        "unknown preset",
		"":                   `unknown preset ""; closest: `,
		"resnet-110.arch":    `unknown preset "resnet-110.arch"; closest: resnet-110,`,
		"../presets/resnet-": "unknown preset",
	} {
		_, err := LoadPreset(name)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("LoadPreset(%q) = %v, want an error starting %q", name, err, want)
		}
	}
}

// TestFamilyPresets checks that the families instantiate at other depths
// with the paper's formula, e.g. 272 = 9*30+2.
func TestFamilyPresets(t *testing.T) {
	for _, c := range []struct {
		name  string
		depth int
		n     int
	}{
		{"preact-resnet-bottleneck", 272, 30},
		{"resnet-bottleneck", 1001, 111},
		{"resnet-basic", 1202, 200},
		{"preact-resnet-basic", 20, 3},
		{"resnet-1layer", 56, 18},
		{"preact-resnet-1layer", 5, 1},
	} {
		a, err := LoadPreset(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.SetDepth(c.depth); err != nil {
			t.Errorf("%s: SetDepth(%d): %v", c.name, c.depth, err)
			continue
		}
		if got := []int{a.Stages[0].Units, a.Stages[1].Units, a.Stages[2].Units}; !slices.Equal(got, rep(c.n, 3)) || a.Depth != c.depth {
			t.Errorf("%s at depth %d: counts %v, depth %d; want %d per stage", c.name, c.depth, got, a.Depth, c.n)
		}
	}
}

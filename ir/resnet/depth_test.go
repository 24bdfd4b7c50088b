package resnet

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fits finds n >= 1 with per*n+2 == d by search, the oracle for the
// depth formula.
func fits(per, d int) (int, bool) {
	for n := 1; per*n+2 <= d; n++ {
		if per*n+2 == d {
			return n, true
		}
	}
	return 0, false
}

// uniformSrc is a net of S uncounted stages of the given unit kind.
func uniformSrc(kind string, stages, depth int) string {
	var widths []string
	for i := range stages {
		w := 16 << i
		if kind == "bottleneck" {
			w *= 4
		}
		s := fmt.Sprint(w)
		if i > 0 {
			s += "/2"
		}
		widths = append(widths, s)
	}
	return fmt.Sprintf("resnet u {\n  input 64x64x3\n  classes 10\n  depth %d\n  stem conv3x3 16\n  unit %s\n  stages %s\n}\n",
		depth, kind, strings.Join(widths, " "))
}

// TestParseDepth checks, for each unit kind and stage count, that Parse
// accepts exactly the depths of the paper's formula and spreads them
// evenly, and names the valid form otherwise.
func TestParseDepth(t *testing.T) {
	for _, kind := range []struct {
		name string
		l    int
	}{{"basic", 2}, {"1-layer", 1}, {"bottleneck", 3}} {
		for _, stages := range []int{1, 3, 4} {
			per := kind.l * stages
			form := fmt.Sprintf("depth must be %dn+2", per)
			for d := 1; d <= 120; d++ {
				a, err := Parse("d.arch", []byte(uniformSrc(kind.name, stages, d)))
				n, ok := fits(per, d)
				switch {
				case ok && err != nil:
					t.Errorf("%s, %d stages, depth %d: %v", kind.name, stages, d, err)
				case ok && (a.Depth != d || a.Units() != n*stages || a.Stages[stages-1].Units != n):
					t.Errorf("%s, %d stages, depth %d: depth %d, %d units; want %d per stage", kind.name, stages, d, a.Depth, a.Units(), n)
				case !ok && (err == nil || !strings.Contains(err.Error(), form) || !strings.HasPrefix(err.Error(), "d.arch:4:9: ")):
					t.Errorf("%s, %d stages, depth %d: error %v, want one at d.arch:4:9 saying %q", kind.name, stages, d, err, form)
				}
			}
		}
	}
}

// TestSetDepthUniform checks SetDepth on nets with equal stage counts
// against the same oracle, and that a failed call changes nothing.
func TestSetDepthUniform(t *testing.T) {
	for _, c := range []struct {
		preset string
		per    int
		form   string
	}{
		{"resnet-basic", 6, "6n+2 (for example 20, 56, 110)"},
		{"preact-resnet-1layer", 3, "3n+2 (for example 110)"},
		{"preact-resnet-bottleneck", 9, "9n+2 (for example 164, 1001)"},
		{"resnet-1001-cifar100", 9, "9n+2"},
	} {
		for _, d := range []int{-1, 0, 1, 2, 3, 5, 8, 11, 14, 20, 21, 56, 100, 110, 164, 272, 1001, 1202, 99999, 100000, 100001} {
			a, err := LoadPreset(c.preset)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := LoadPreset(c.preset)
			err = a.SetDepth(d)
			n, ok := fits(c.per, d)
			ok = ok && d <= 100000
			switch {
			case ok && err != nil:
				t.Errorf("%s: SetDepth(%d): %v", c.preset, d, err)
			case ok:
				if a.Depth != d || !slices.Equal([]int{a.Stages[0].Units, a.Stages[1].Units, a.Stages[2].Units}, rep(n, 3)) {
					t.Errorf("%s: SetDepth(%d) gives depth %d, stages %+v; want %d units per stage", c.preset, d, a.Depth, a.Stages, n)
				}
			case err == nil:
				t.Errorf("%s: SetDepth(%d) succeeded, want an error", c.preset, d)
			default:
				if d >= 1 && d <= 100000 && !strings.Contains(err.Error(), c.form) {
					t.Errorf("%s: SetDepth(%d): %v; want it to name %q", c.preset, d, err, c.form)
				}
				if diff := cmp.Diff(before, a); diff != "" {
					t.Errorf("%s: failed SetDepth(%d) changed the arch:\n%s", c.preset, d, diff)
				}
			}
		}
	}
}

func TestSetDepthMessages(t *testing.T) {
	a, _ := LoadPreset("resnet-20")
	for d, want := range map[int]string{
		21:     "depth 21 does not fit basic units in 3 stages: depth must be 6n+2 (for example 20, 56, 110); nearest: 20 or 26",
		7:      "depth 7 does not fit basic units in 3 stages: depth must be 6n+2 (for example 20, 56, 110); nearest: 8",
		0:      "depth 0 is out of range; want 1 to 100000",
		99999:  "depth 99999 does not fit basic units in 3 stages: depth must be 6n+2 (for example 20, 56, 110); nearest: 99998",
		100001: "depth 100001 is out of range; want 1 to 100000",
	} {
		if err := a.SetDepth(d); err == nil || err.Error() != want {
			t.Errorf("SetDepth(%d) = %v, want %q", d, err, want)
		}
	}
}

// TestStandardDepths checks the ImageNet tables against the depth
// formula: each row's counts must give its depth.
func TestStandardDepths(t *testing.T) {
	for _, s := range standardDepths {
		sum := 0
		for _, c := range s.counts {
			sum += c
		}
		if got := layers[s.unit]*sum + 2; got != s.depth {
			t.Errorf("%v %v: counts give depth %d, not %d", s.unit, s.counts, got, s.depth)
		}
	}
}

// TestSetDepthImageNet checks the table-driven depths of nets whose
// stages differ.
func TestSetDepthImageNet(t *testing.T) {
	bottleneck := map[int][]int{50: {3, 4, 6, 3}, 101: {3, 4, 23, 3}, 152: {3, 8, 36, 3}, 200: {3, 24, 36, 3}}
	for _, preset := range []string{"resnet-152", "preact-resnet-200"} {
		for d, counts := range bottleneck {
			a, err := LoadPreset(preset)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.SetDepth(d); err != nil {
				t.Errorf("%s: SetDepth(%d): %v", preset, d, err)
				continue
			}
			if got := stageCounts(a); !slices.Equal(got, counts) || a.Depth != d {
				t.Errorf("%s: SetDepth(%d) gives counts %v depth %d, want %v", preset, d, got, a.Depth, counts)
			}
			if _, err := Parse("x.arch", []byte(a.Format())); err != nil {
				t.Errorf("%s at depth %d does not format to valid text: %v", preset, d, err)
			}
		}
		for _, d := range []int{18, 34, 110, 164, 1001} {
			a, _ := LoadPreset(preset)
			err := a.SetDepth(d)
			want := fmt.Sprintf("depth %d is not a standard depth for bottleneck units in 4 stages; want 50, 101, 152 or 200", d)
			if err == nil || err.Error() != want {
				t.Errorf("%s: SetDepth(%d) = %v, want %q", preset, d, err, want)
			}
		}
	}

	// A basic ImageNet net: ResNet-18's counts are equal, but they are a
	// table row, so the table applies.
	src := "resnet r18 { input 224x224x3; classes 1000; stem conv7x7/2 64 maxpool3x3/2; unit basic grow=B; stages 2x64 2x128/2 2x256/2 2x512/2 }"
	a, err := Parse("r18.arch", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if a.Depth != 18 {
		t.Errorf("ResNet-18 parses to depth %d", a.Depth)
	}
	if err := a.SetDepth(34); err != nil || !slices.Equal(stageCounts(a), []int{3, 4, 6, 3}) {
		t.Errorf("SetDepth(34) = %v, counts %v; want [3 4 6 3]", err, stageCounts(a))
	}
	if err := a.SetDepth(18); err != nil || !slices.Equal(stageCounts(a), []int{2, 2, 2, 2}) {
		t.Errorf("SetDepth(18) = %v, counts %v; want [2 2 2 2]", err, stageCounts(a))
	}
	if err := a.SetDepth(26); err == nil || !strings.Contains(err.Error(), "want 18 or 34") {
		t.Errorf("SetDepth(26) = %v, want an error listing 18 or 34", err)
	}

	// Different counts with no table: no depth but its own.
	a, err = Parse("odd.arch", []byte("resnet odd { input 32x32x3; classes 10; stem conv3x3 16; unit 1-layer; stages 1x16 2x32/2 3x64/2 }"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetDepth(8); err == nil || !strings.Contains(err.Error(), "different unit counts (1, 2, 3)") {
		t.Errorf("SetDepth(8) on counts 1,2,3 = %v, want an error naming the counts", err)
	}
	if a.Depth != 8 || !slices.Equal(stageCounts(a), []int{1, 2, 3}) {
		t.Errorf("failed SetDepth changed the arch: depth %d, counts %v", a.Depth, stageCounts(a))
	}
}

func stageCounts(a *Arch) []int {
	var c []int
	for _, s := range a.Stages {
		c = append(c, s.Units)
	}
	return c
}

func TestSetDepthInvalidArch(t *testing.T) {
	for _, a := range []*Arch{{}, {Unit: Basic}, {Unit: 9, Stages: []Stage{{Units: 1}}}} {
		if err := a.SetDepth(20); err == nil {
			t.Errorf("SetDepth on %+v succeeded", a)
		}
	}
}

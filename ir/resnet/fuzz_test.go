package resnet

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse checks that Parse never panics, that its errors are well
// formed, and that whatever it accepts is within the limits and formats to
// text that parses back to the same architecture.
func FuzzParse(f *testing.F) {
	for _, p := range Presets() {
		f.Add([]byte(p.Source))
	}
	for _, c := range malformed {
		f.Add([]byte(c.src))
	}
	f.Add([]byte(goodSrc))
	f.Fuzz(func(t *testing.T, src []byte) {
		a, err := Parse("fuzz.arch", src)
		if err != nil {
			checkErrors(t, err)
			return
		}
		checkArch(t, a)
		text := a.Format()
		b, err := Parse("format.arch", []byte(text))
		if err != nil {
			t.Fatalf("Format output does not parse: %v\n%s\nfrom\n%q", err, text, src)
		}
		if d := cmp.Diff(a, b, ignorePos); d != "" {
			t.Fatalf("round trip mismatch (-want +got):\n%s\n%s", d, text)
		}
		if again := b.Format(); again != text {
			t.Fatalf("Format is not idempotent:\n%s\nthen\n%s", text, again)
		}
	})
}

// checkErrors checks the shape of a Parse error: a sorted, bounded list of
// one-line messages with positions in the parsed file.
func checkErrors(t *testing.T, err error) {
	t.Helper()
	var list ErrorList
	if !errors.As(err, &list) || len(list) == 0 || len(list) > maxErrors {
		t.Fatalf("error %v (%T) is not an ErrorList of 1 to %d entries", err, err, maxErrors)
	}
	for i, e := range list {
		if e.Pos.File != "fuzz.arch" || e.Pos.Line < 1 || e.Pos.Col < 1 || e.Msg == "" || strings.Contains(e.Msg, "\n") {
			t.Fatalf("malformed error %q at %+v", e.Msg, e.Pos)
		}
		if i > 0 && compareErrors(list[i-1], e) > 0 {
			t.Fatalf("errors not sorted: %v before %v", list[i-1], e)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("Error() is not one line: %q", err)
	}
}

// checkArch checks the invariants Parse promises, with the depth formula
// written out independently.
func checkArch(t *testing.T, a *Arch) {
	t.Helper()
	units := 0
	for _, s := range a.Stages {
		if s.Units < 1 || s.Width < 1 || s.Width > maxWidth || s.Stride < 1 {
			t.Fatalf("bad stage %+v", s)
		}
		if a.Unit == Bottleneck && s.Width%4 != 0 {
			t.Fatalf("bottleneck width %d", s.Width)
		}
		units += s.Units
	}
	if a.Depth != layers[a.Unit]*units+2 || a.Depth > maxDepth {
		t.Fatalf("depth %d for %d %v units", a.Depth, units, a.Unit)
	}
	if len(a.Stages) < 1 || len(a.Stages) > maxStages || a.Classes < 1 || a.Classes > maxClasses ||
		a.InputH < 1 || a.InputH > maxSide || a.InputW < 1 || a.InputW > maxSide || a.InputC < 1 || a.InputC > maxWidth ||
		a.Stem.Kernel%2 != 1 || a.Stem.Width < 1 || a.Stem.Stride < 1 {
		t.Fatalf("arch outside the limits: %+v", a)
	}
	if a.Order < Original || a.Order > FullPreact || a.Shortcut.Kind < Identity || a.Shortcut.Kind > DropoutShort || a.Grow < GrowA || a.Grow > GrowB {
		t.Fatalf("enum out of range: %+v", a)
	}
	if a.Shortcut.DropRate < 0 || a.Shortcut.DropRate >= 1 || a.BNEps <= 0 || a.BNMomentum <= 0 || a.BNMomentum > 1 {
		t.Fatalf("parameter out of range: %+v", a)
	}
	if a.Name == "" || !validName(a.Name) {
		t.Fatalf("bad name %q", a.Name)
	}
}

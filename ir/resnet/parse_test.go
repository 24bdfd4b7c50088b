package resnet

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	_ "github.com/resnetc/resnetc/internal/golden"
)

// ignorePos compares architectures without their source positions.
var ignorePos = cmpopts.IgnoreTypes(Pos{})

// goodSrc is a valid file; the malformed cases are edits of it. Every
// statement's arguments start at column 13.
const goodSrc = `resnet r {
    input   32x32x3
    classes 10
    depth   20
    stem    conv3x3 16
    unit    basic
    stages  16 32/2 64/2
}
`

// edit returns goodSrc with old replaced by new; old must occur.
func edit(pairs ...string) string {
	s := goodSrc
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			panic(fmt.Sprintf("test case edits %q, which is not in the source", pairs[i]))
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

type badCase struct {
	name string
	src  string
	pos  string // file:line:col of the first error
	msg  string // a fragment of its message
}

// malformed is the table of bad inputs; FuzzParse also uses it as seeds.
var malformed = []badCase{
	{"unknown unit kind", edit("unit    basic", "unit    bottlenek"), "bad.arch:6:13",
		`unknown unit kind "bottlenek"; want basic, 1-layer or bottleneck`},
	{"missing unit kind", edit("unit    basic", "unit"), "bad.arch:6:9",
		"unexpected end of line in the unit statement; want a unit kind"},
	{"missing brace", edit("}\n", ""), "bad.arch:8:1", `unexpected end of file; want "}"`},
	{"missing brace no newline", edit("64/2\n}\n", "64/2"), "bad.arch:7:25", `unexpected end of file; want "}"`},
	{"negative width", edit("stages  16", "stages  -16"), "bad.arch:7:13", `width must be a positive integer, found "-16"`},
	{"zero width", edit("32/2", "0/2"), "bad.arch:7:16", `width must be a positive integer, found "0"`},
	{"empty width", edit("16 32/2 64/2", "3x16 3x/2 3x64/2"), "bad.arch:7:20", "width must be a positive integer, found nothing"},
	{"width too large", edit("64/2", "65537/2"), "bad.arch:7:21", `width "65537" is too large; the limit is 65536`},
	{"basic depth", edit("depth   20", "depth   21"), "bad.arch:4:13",
		"depth 21 does not fit basic units in 3 stages: depth must be 6n+2 (for example 20, 56, 110); nearest: 20 or 26"},
	{"basic depth 100", edit("depth   20", "depth   100"), "bad.arch:4:13",
		"depth 100 does not fit basic units in 3 stages: depth must be 6n+2 (for example 20, 56, 110); nearest: 98 or 104"},
	{"basic depth too small", edit("depth   20", "depth   5"), "bad.arch:4:13", "6n+2 (for example 20, 56, 110); nearest: 8"},
	{"bottleneck depth", edit("unit    basic", "unit    bottleneck", "16 32/2 64/2", "64 128/2 256/2", "depth   20", "depth   100"),
		"bad.arch:4:13", "depth 100 does not fit bottleneck units in 3 stages: depth must be 9n+2 (for example 164, 1001); nearest: 92 or 101"},
	{"1-layer depth", edit("unit    basic", "unit    1-layer", "depth   20", "depth   21"),
		"bad.arch:4:13", "depth 21 does not fit 1-layer units in 3 stages: depth must be 3n+2 (for example 110); nearest: 20 or 23"},
	{"basic depth 4 stages", edit("64/2", "64/2 128/2", "depth   20", "depth   20"),
		"bad.arch:4:13", "depth 20 does not fit basic units in 4 stages: depth must be 8n+2 (for example 10, 18, 26); nearest: 18 or 26"},
	{"bottleneck depth 1 stage", edit("unit    basic", "unit    bottleneck", "16 32/2 64/2", "64", "depth   20", "depth   4"),
		"bad.arch:4:13", "does not fit bottleneck units in 1 stage: depth must be 3n+2 (for example 5, 8, 11); nearest: 5"},
	{"depth required", edit("    depth   20\n", ""), "bad.arch:6:5", "the stages give no unit counts, so a depth statement is needed"},
	{"depth mismatch", edit("16 32/2 64/2", "3x16 3x32/2 4x64/2"), "bad.arch:4:13",
		"depth 20 does not match the stages: 3+3+4 = 10 basic units make depth 22 (2*10+2)"},
	{"depth zero", edit("depth   20", "depth   0"), "bad.arch:4:13", `depth must be a positive integer, found "0"`},
	{"depth too large", edit("depth   20", "depth   100001"), "bad.arch:4:13", `depth "100001" is too large; the limit is 100000`},
	{"counts too deep", edit("    depth   20\n", "", "16 32/2 64/2", "20000x16 20000x32/2 20000x64/2"), "bad.arch:6:5",
		"the stages' 60000 basic units make depth 120002; the limit is 100000"},
	{"bad stride", edit("32/2", "32/0"), "bad.arch:7:19", `stride must be a positive integer, found "0"`},
	{"bad stride word", edit("32/2", "32/two"), "bad.arch:7:19", `stride must be a positive integer, found "two"`},
	{"empty stride", edit("32/2", "32/"), "bad.arch:7:19", "stride must be a positive integer, found nothing"},
	{"bad count", edit("16 32/2 64/2", "3x16 -3x32/2 3x64/2"), "bad.arch:7:18", `unit count must be a positive integer, found "-3"`},
	{"duplicate statement", edit("    depth   20\n", "    depth   20\n    classes 100\n"), "bad.arch:5:5",
		"duplicate classes statement; the first is at bad.arch:3:5"},
	{"unknown option", edit("unit    basic", "unit    basic colour=red"), "bad.arch:6:19",
		`unknown unit option "colour"; want order, shortcut or grow`},
	{"duplicate option", edit("unit    basic", "unit    basic order=original order=full-preact"), "bad.arch:6:34",
		"duplicate unit option order; the first is at bad.arch:6:19"},
	{"option without value", edit("unit    basic", "unit    basic order full-preact"), "bad.arch:6:25",
		`unexpected "full-preact" after order; want "=" and a value`},
	{"option at end", edit("unit    basic", "unit    basic grow="), "bad.arch:6:24", "unexpected end of line after grow=; want a value"},
	{"unknown order", edit("unit    basic", "unit    basic order=prect"), "bad.arch:6:25",
		`unknown order "prect"; want original, bn-after-add, relu-before-add, relu-only-preact or full-preact`},
	{"unknown grow", edit("unit    basic", "unit    basic grow=C"), "bad.arch:6:24", `unknown grow "C"; want A or projection (B)`},
	{"unknown shortcut", edit("unit    basic", "unit    basic shortcut=highway"), "bad.arch:6:28", `unknown shortcut "highway"`},
	{"bad number", edit("unit    basic", "unit    basic shortcut=gate(x6)"), "bad.arch:6:33", `gate bias must be a number, found "x6"`},
	{"bad number inf", edit("unit    basic", "unit    basic shortcut=scale(inf, 1)"), "bad.arch:6:34", `shortcut scale λs must be a number, found "inf"`},
	{"number out of range", edit("unit    basic", "unit    basic shortcut=gate(1e999)"), "bad.arch:6:33", `gate bias "1e999" is out of range`},
	{"scale arity", edit("unit    basic", "unit    basic shortcut=scale(0.5)"), "bad.arch:6:33",
		"shortcut scale takes 2 parameters, found 1; e.g. scale(0.5, 0.5)"},
	{"empty parens", edit("unit    basic", "unit    basic shortcut=gate()"), "bad.arch:6:32", "shortcut gate takes 1 parameter, found 0"},
	{"unclosed paren", edit("unit    basic", "unit    basic shortcut=gate(-6"), "bad.arch:6:32", `unclosed "(" in shortcut gate`},
	{"missing comma", edit("unit    basic", "unit    basic shortcut=scale(1 1)"), "bad.arch:6:36", `unexpected "1" in shortcut scale; want "," or ")"`},
	{"no parameters", edit("unit    basic", "unit    basic shortcut=gate"), "bad.arch:6:32", "shortcut gate needs 1 parameter, e.g. gate(-6)"},
	{"identity parameters", edit("unit    basic", "unit    basic shortcut=identity(1)"), "bad.arch:6:36", "shortcut identity takes no parameters"},
	{"dropout rate", edit("unit    basic", "unit    basic shortcut=dropout(1)"), "bad.arch:6:36", "dropout rate must be in [0, 1), found 1"},
	{"dropout negative", edit("unit    basic", "unit    basic shortcut=dropout(-0.1)"), "bad.arch:6:36", "dropout rate must be in [0, 1), found -0.1"},
	{"mixed counts", edit("16 32/2 64/2", "3x16 32/2 3x64/2"), "bad.arch:7:18",
		`stage 2 gives no unit count but stage 1 does; give every stage a count (e.g. "3x32/2") or none`},
	{"mixed counts reversed", edit("16 32/2 64/2", "16 3x32/2 64/2"), "bad.arch:7:16",
		"stage 2 gives a unit count but stage 1 does not"},
	{"bottleneck width", edit("unit    basic", "unit    bottleneck", "16 32/2 64/2", "64 130/2 256/2"), "bad.arch:7:16",
		"bottleneck width 130 is not divisible by 4"},
	{"grow A shrinks", edit("16 32/2 64/2", "16 32/2 16/2"), "bad.arch:7:21",
		"grow=A cannot shrink 32 channels to 16 (option A only pads with zeros); use grow=projection"},
	{"grow A shrinks from stem", edit("stem    conv3x3 16", "stem    conv3x3 32"), "bad.arch:7:13", "grow=A cannot shrink 32 channels to 16"},
	{"spatial zero in stage", edit("32x32x3", "2x2x3"), "bad.arch:7:24",
		"stride 2 of stage 3 would shrink its 1x1 input to zero; want a stride of at most 1"},
	{"spatial zero in stem", edit("32x32x3", "1x5x3", "conv3x3 16", "conv3x3/2 16"), "bad.arch:5:21",
		"stem stride 2 would shrink the 1x5 input to zero"},
	{"spatial zero in pool", edit("32x32x3", "2x2x3", "conv3x3 16", "conv7x7/2 16 maxpool3x3/2"), "bad.arch:5:26",
		"maxpool3x3/2 would shrink the stem's 1x1 output to zero"},
	{"too many stages", edit("16 32/2 64/2", "16 16 16 16 16 16 16 16 16 16 16 16 16 16 16 16 16"), "bad.arch:7:61", "too many stages: at most 16"},
	{"no stages", edit("stages  16 32/2 64/2", "stages"), "bad.arch:7:11", "unexpected end of line in the stages statement"},
	{"unknown statement", edit("    classes 10", "    klasses 10"), "bad.arch:3:5",
		`unknown statement "klasses"; want input, classes, depth, stem, unit, stages or bn`},
	{"missing statement", edit("    classes 10\n", ""), "bad.arch:7:1",
		"missing classes statement (every network needs input, classes, stem, unit and stages)"},
	{"missing statements", "resnet r {}", "bad.arch:1:11", "missing input, classes, stem, unit and stages statements"},
	{"empty file", "", "bad.arch:1:1", `unexpected end of file; want "resnet NAME {"`},
	{"only comments", "# nothing here\n\n", "bad.arch:3:1", `unexpected end of file; want "resnet NAME {"`},
	{"wrong keyword", "network r {}", "bad.arch:1:1", `unexpected "network"; want "resnet NAME {"`},
	{"junk after brace", goodSrc + "x\n", "bad.arch:9:1",
		`unexpected "x" after the closing "}"; want end of file (one network per file)`},
	{"second network", goodSrc + goodSrc, "bad.arch:9:1", `unexpected "resnet" after the closing "}"`},
	{"missing name", "resnet {\n}\n", "bad.arch:1:8", `unexpected "{"; want the network's name after "resnet"`},
	{"bad name", edit("resnet r {", "resnet r@1 {"), "bad.arch:1:8", `invalid network name "r@1"; want letters, digits, "-", "_" and "."`},
	{"missing open brace", edit("resnet r {", "resnet r"), "bad.arch:1:9", `unexpected end of line; want "{" after the network's name`},
	{"stray brace", edit("    classes 10\n", "    classes 10\n    {\n"), "bad.arch:4:5", `unexpected "{"; want a statement or "}"`},
	{"classes zero", edit("classes 10", "classes 0"), "bad.arch:3:13", `classes must be a positive integer, found "0"`},
	{"classes too many", edit("classes 10", "classes 1000001"), "bad.arch:3:13", `classes "1000001" is too large; the limit is 1000000`},
	{"classes twice", edit("classes 10", "classes 10 20"), "bad.arch:3:16", `unexpected "20" at the end of the classes statement; want classes N`},
	{"classes missing", edit("classes 10", "classes"), "bad.arch:3:12", "unexpected end of line in the classes statement; want classes N"},
	{"classes punctuation", edit("classes 10", "classes = 10"), "bad.arch:3:13", `unexpected "=" in the classes statement`},
	{"input two sides", edit("32x32x3", "32x32"), "bad.arch:2:13", `input must be HxWxC, e.g. 32x32x3; found "32x32"`},
	{"input zero", edit("32x32x3", "32x0x3"), "bad.arch:2:16", `input width must be a positive integer, found "0"`},
	{"input too large", edit("32x32x3", "5000x32x3"), "bad.arch:2:13", `input height "5000" is too large; the limit is 4096`},
	{"input huge number", edit("32x32x3", "32x32x99999999999999999999999999"), "bad.arch:2:19", `input channels "99999999999999999999999999" is too large`},
	{"stem not conv", edit("conv3x3 16", "pool3x3 16"), "bad.arch:5:13", `stem must start with conv<K>x<K>[/<stride>], e.g. conv3x3 or conv7x7/2; found "pool3x3"`},
	{"stem even kernel", edit("conv3x3 16", "conv4x4 16"), "bad.arch:5:17", "stem kernel size must be odd"},
	{"stem kernel not square", edit("conv3x3 16", "conv3x5 16"), "bad.arch:5:13", "stem kernel must be square, found 3x5"},
	{"stem kernel too large", edit("conv3x3 16", "conv17x17 16"), "bad.arch:5:17", `stem kernel size "17" is too large; the limit is 15`},
	{"stem missing width", edit("conv3x3 16", "conv3x3"), "bad.arch:5:20", "unexpected end of line in the stem statement; want stem conv<K>x<K>"},
	{"stem bad width", edit("conv3x3 16", "conv3x3 sixteen"), "bad.arch:5:21", `stem width must be a positive integer, found "sixteen"`},
	{"stem unknown pool", edit("conv3x3 16", "conv3x3 16 avgpool"), "bad.arch:5:24", `unknown stem pooling "avgpool"; want maxpool3x3/2`},
	{"bn unknown option", edit("}\n", "    bn eps=1e-3 decay=0.9\n}\n"), "bad.arch:8:17", `unknown bn option "decay"; want eps or momentum`},
	{"bn eps", edit("}\n", "    bn eps=0\n}\n"), "bad.arch:8:12", "bn eps must be positive, found 0"},
	{"bn momentum", edit("}\n", "    bn momentum=1.5\n}\n"), "bad.arch:8:17", "bn momentum must be in (0, 1], found 1.5"},
	{"bn bad number", edit("}\n", "    bn eps=1e-\n}\n"), "bad.arch:8:12", `bn eps must be a number, found "1e-"`},
}

func TestParseErrors(t *testing.T) {
	for _, c := range malformed {
		t.Run(c.name, func(t *testing.T) {
			a, err := Parse("bad.arch", []byte(c.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error at %s containing %q; got\n%s", c.pos, c.msg, a.Format())
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty ErrorList", err, err)
			}
			first := list[0]
			if got := first.Pos.String(); got != c.pos || !strings.Contains(first.Msg, c.msg) {
				t.Errorf("first error\n  %s\nwant at %s, containing\n  %s", first, c.pos, c.msg)
			}
			if s := err.Error(); strings.Contains(s, "\n") || !strings.HasPrefix(s, c.pos+": ") {
				t.Errorf("Error() = %q, want one line starting with %q", s, c.pos+": ")
			}
			var e *Error
			if !errors.As(err, &e) || e != first {
				t.Errorf("errors.As does not find the first *Error")
			}
		})
	}
}

// TestParseSeveralErrors checks that independent mistakes are reported
// together, in source order, and that the one-line message counts them.
func TestParseSeveralErrors(t *testing.T) {
	src := edit("classes 10", "classes ten", "unit    basic", "unit    basic order=sideways", "stages  16", "stages  -16")
	_, err := Parse("bad.arch", []byte(src))
	list, ok := err.(ErrorList)
	if !ok {
		t.Fatalf("error %v is not an ErrorList", err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Pos.String())
	}
	want := []string{"bad.arch:3:13", "bad.arch:6:25", "bad.arch:7:13"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("error positions mismatch (-want +got):\n%s\n%v", d, err)
	}
	if s := err.Error(); !strings.HasSuffix(s, "(and 2 more errors)") || !strings.HasPrefix(s, "bad.arch:3:13: classes") {
		t.Errorf("Error() = %q", s)
	}
}

// TestParseErrorLimit checks that a file of garbage yields a bounded list.
func TestParseErrorLimit(t *testing.T) {
	src := "resnet r {\n" + strings.Repeat("    bogus 1\n", 100) + "}\n"
	_, err := Parse("bad.arch", []byte(src))
	list, ok := err.(ErrorList)
	if !ok || len(list) != maxErrors {
		t.Fatalf("got %d errors (%v), want %d", len(list), err, maxErrors)
	}
	if !strings.HasSuffix(err.Error(), fmt.Sprintf("(and %d more errors)", maxErrors-1)) {
		t.Errorf("Error() = %q", err)
	}
}

// TestParseFull checks every field of a file that uses every statement
// against a hand-written expectation, positions included.
func TestParseFull(t *testing.T) {
	src := `# a comment line
resnet My_net.v2 {   # trailing comment
	input   224x192x3
    classes 1000
    stem    conv7x7/2 64 maxpool3x3/2
    unit    bottleneck shortcut=scale(0.5, -1.5e-1) grow=A order=relu-only-preact
    stages  3x256 8x512/2 36x1024/2 3x2048/2
    depth   152
    bn      momentum=0.01 eps=2e-5
}
`
	a, err := Parse("full.arch", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	p := func(line, col int) Pos { return Pos{File: "full.arch", Line: line, Col: col} }
	want := &Arch{
		Name: "My_net.v2", InputH: 224, InputW: 192, InputC: 3, Classes: 1000, Depth: 152,
		Stem:     Stem{Kernel: 7, Stride: 2, Width: 64, MaxPool: true, Pos: p(5, 5)},
		Unit:     Bottleneck,
		Order:    ReLUOnlyPreact,
		Shortcut: Shortcut{Kind: Scale, ShortcutScale: 0.5, BranchScale: -0.15},
		Grow:     GrowA,
		Stages: []Stage{
			{Units: 3, Width: 256, Stride: 1, Pos: p(7, 13)},
			{Units: 8, Width: 512, Stride: 2, Pos: p(7, 19)},
			{Units: 36, Width: 1024, Stride: 2, Pos: p(7, 27)},
			{Units: 3, Width: 2048, Stride: 2, Pos: p(7, 37)},
		},
		BNEps: 2e-5, BNMomentum: 0.01,
		DepthPos: p(8, 5), UnitPos: p(6, 5), InputPos: p(3, 2), ClassesPos: p(4, 5),
	}
	if d := cmp.Diff(want, a); d != "" {
		t.Errorf("mismatch (-want +got):\n%s", d)
	}
}

// base is a small valid net for TestParseForms.
func base() *Arch {
	return &Arch{
		Name: "r", InputH: 32, InputW: 32, InputC: 3, Classes: 10, Depth: 20,
		Stem:     Stem{Kernel: 3, Stride: 1, Width: 16},
		Unit:     Basic,
		Order:    Original,
		Shortcut: Shortcut{Kind: Identity},
		Grow:     GrowA,
		Stages:   []Stage{{Units: 3, Width: 16, Stride: 1}, {Units: 3, Width: 32, Stride: 2}, {Units: 3, Width: 64, Stride: 2}},
		BNEps:    1e-5, BNMomentum: 0.1,
	}
}

// TestParseForms checks the accepted spellings and the defaults, each as
// a change to base().
func TestParseForms(t *testing.T) {
	for _, c := range []struct {
		name string
		src  string
		want func(a *Arch)
	}{
		{"defaults", goodSrc, func(a *Arch) {}},
		{"semicolons", "resnet r { input 32x32x3; classes 10; depth 20; stem conv3x3 16; unit basic; stages 16 32/2 64/2 }", func(a *Arch) {}},
		{"semicolons and newlines", "\n\nresnet r {;;\n input 32x32x3;\n classes 10 ; depth 20\nstem conv3x3 16;unit basic\nstages 16 32/2 64/2;}\n\n", func(a *Arch) {}},
		{"CRLF and tabs", strings.ReplaceAll(strings.ReplaceAll(goodSrc, "\n", "\r\n"), "    ", "\t"), func(a *Arch) {}},
		{"no trailing newline", strings.TrimSuffix(goodSrc, "\n"), func(a *Arch) {}},
		{"comments", edit("resnet r {", "# header\nresnet r { # open", "classes 10", "classes 10# ten", "}\n", "} # end\n# more\n"), func(a *Arch) {}},
		{"counted stages", edit("    depth   20\n", "", "16 32/2 64/2", "1x16 2x32/2 4x64/2"), func(a *Arch) {
			a.Stages[0].Units, a.Stages[1].Units, a.Stages[2].Units = 1, 2, 4
			a.Depth = 2*7 + 2
		}},
		{"counted stages with depth", edit("depth   20", "depth   16", "16 32/2 64/2", "1x16 2x32/2 4x64/2"), func(a *Arch) {
			a.Stages[0].Units, a.Stages[1].Units, a.Stages[2].Units = 1, 2, 4
			a.Depth = 16
		}},
		{"stride 3 and stride 1", edit("16 32/2 64/2", "16/1 32/3 64"), func(a *Arch) {
			a.Stages[1].Stride, a.Stages[2].Stride = 3, 1
		}},
		{"bottleneck defaults to projection", edit("unit    basic", "unit    bottleneck", "16 32/2 64/2", "64 128/2 256/2"), func(a *Arch) {
			a.Unit, a.Grow = Bottleneck, GrowB
			a.Stages[0].Width, a.Stages[1].Width, a.Stages[2].Width = 64, 128, 256
			a.Stages[0].Units, a.Stages[1].Units, a.Stages[2].Units = 2, 2, 2
		}},
		{"1-layer", edit("unit    basic", "unit    1-layer", "depth   20", "depth   29"), func(a *Arch) {
			a.Unit, a.Depth = OneLayer, 29
			a.Stages[0].Units, a.Stages[1].Units, a.Stages[2].Units = 9, 9, 9
		}},
		{"grow B alias", edit("unit    basic", "unit    basic grow=B"), func(a *Arch) { a.Grow = GrowB }},
		{"grow projection", edit("unit    basic", "unit    basic grow = projection"), func(a *Arch) { a.Grow = GrowB }},
		{"order", edit("unit    basic", "unit    basic order=bn-after-add"), func(a *Arch) { a.Order = BNAfterAdd }},
		{"scale", edit("unit    basic", "unit    basic shortcut=scale( 0 ,1 )"), func(a *Arch) {
			a.Shortcut = Shortcut{Kind: Scale, ShortcutScale: 0, BranchScale: 1}
		}},
		{"gate", edit("unit    basic", "unit    basic shortcut=gate(-6)"), func(a *Arch) { a.Shortcut = Shortcut{Kind: Gate, GateBias: -6} }},
		{"shortcut gate", edit("unit    basic", "unit    basic shortcut=shortcut-gate(+.5e1)"), func(a *Arch) {
			a.Shortcut = Shortcut{Kind: ShortcutGate, GateBias: 5}
		}},
		{"conv1x1", edit("unit    basic", "unit    basic shortcut=conv1x1"), func(a *Arch) { a.Shortcut = Shortcut{Kind: Conv1x1} }},
		{"conv1x1 may narrow under grow A", edit("unit    basic", "unit    basic shortcut=conv1x1", "64/2", "8/2"), func(a *Arch) {
			a.Shortcut = Shortcut{Kind: Conv1x1}
			a.Stages[2].Width = 8
		}},
		{"dropout", edit("unit    basic", "unit    basic shortcut=dropout(0.)"), func(a *Arch) { a.Shortcut = Shortcut{Kind: DropoutShort} }},
		{"dropout almost 1", edit("unit    basic", "unit    basic shortcut=dropout(0.999)"), func(a *Arch) {
			a.Shortcut = Shortcut{Kind: DropoutShort, DropRate: 0.999}
		}},
		{"bn", edit("}\n", "    bn eps=1E-3 momentum=1\n}\n"), func(a *Arch) { a.BNEps, a.BNMomentum = 1e-3, 1 }},
		{"bn empty", edit("}\n", "    bn\n}\n"), func(a *Arch) {}},
		{"imagenet stem", edit("32x32x3", "224x224x3", "conv3x3 16", "conv7x7/2 16 maxpool3x3/2"), func(a *Arch) {
			a.InputH, a.InputW = 224, 224
			a.Stem = Stem{Kernel: 7, Stride: 2, Width: 16, MaxPool: true}
		}},
		{"1x1 input", edit("32x32x3", "1x1x1", "16 32/2 64/2", "16 32 64"), func(a *Arch) {
			a.InputH, a.InputW, a.InputC = 1, 1, 1
			a.Stages[1].Stride, a.Stages[2].Stride = 1, 1
		}},
		{"stride equal to the map", edit("32x32x3", "4x4x3", "16 32/2 64/2", "16/4 32 64"), func(a *Arch) {
			a.InputH, a.InputW = 4, 4
			a.Stages[0].Stride, a.Stages[1].Stride, a.Stages[2].Stride = 4, 1, 1
		}},
		{"limits", edit("32x32x3", "4096x4096x65536", "classes 10", "classes 1000000", "depth   20", "depth   98"), func(a *Arch) {
			a.InputH, a.InputW, a.InputC, a.Classes, a.Depth = 4096, 4096, 65536, 1000000, 98
			a.Stages[0].Units, a.Stages[1].Units, a.Stages[2].Units = 16, 16, 16
		}},
		{"16 stages", edit("16 32/2 64/2", strings.Repeat("16 ", 16), "depth   20", "depth   34"), func(a *Arch) {
			a.Stages = nil
			for range 16 {
				a.Stages = append(a.Stages, Stage{Units: 1, Width: 16, Stride: 1})
			}
			a.Depth = 34
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse("good.arch", []byte(c.src))
			if err != nil {
				t.Fatalf("%v\n%s", err, c.src)
			}
			want := base()
			c.want(want)
			if d := cmp.Diff(want, got, ignorePos); d != "" {
				t.Errorf("mismatch (-want +got):\n%s", d)
			}
		})
	}
}

// TestFormatRoundTrip checks that Format prints text that parses back to
// the same architecture, for values a preset does not use, and that
// formatting is idempotent.
func TestFormatRoundTrip(t *testing.T) {
	for _, mod := range []func(a *Arch){
		func(a *Arch) {},
		func(a *Arch) { a.Shortcut = Shortcut{Kind: Scale, ShortcutScale: -0.125, BranchScale: 1e21} },
		func(a *Arch) { a.Shortcut = Shortcut{Kind: Gate, GateBias: 1e-300} },
		func(a *Arch) { a.Shortcut = Shortcut{Kind: ShortcutGate, GateBias: -7.25} },
		func(a *Arch) { a.Shortcut = Shortcut{Kind: DropoutShort, DropRate: 0.1 + 0.2} },
		func(a *Arch) { a.Shortcut = Shortcut{Kind: Conv1x1} },
		func(a *Arch) { a.BNEps, a.BNMomentum = 1.5e-7, 0.3333333333333333 },
		func(a *Arch) { a.Order, a.Grow = ReLUBeforeAdd, GrowB },
		func(a *Arch) { a.Stages[1].Units, a.Depth = 5, 24 },
		func(a *Arch) { a.Stem = Stem{Kernel: 1, Stride: 3, Width: 8, MaxPool: true} },
	} {
		a := base()
		mod(a)
		text := a.Format()
		b, err := Parse("format.arch", []byte(text))
		if err != nil {
			t.Errorf("Format output does not parse: %v\n%s", err, text)
			continue
		}
		if d := cmp.Diff(a, b, ignorePos); d != "" {
			t.Errorf("round trip mismatch (-want +got):\n%s\n%s", d, text)
		}
		if again := b.Format(); again != text {
			t.Errorf("Format is not idempotent:\n%s\nthen\n%s", text, again)
		}
	}
}

// TestFormatText checks the canonical layout on one example.
func TestFormatText(t *testing.T) {
	a := base()
	a.Shortcut = Shortcut{Kind: Scale, ShortcutScale: 0.5, BranchScale: 1}
	want := `resnet r {
    input   32x32x3
    classes 10
    depth   20       # 6n+2: 3 basic units per stage
    stem    conv3x3 16
    unit    basic order=original shortcut=scale(0.5, 1) grow=A
    stages  16 32/2 64/2
    bn      eps=1e-5 momentum=0.1
}
`
	if d := cmp.Diff(want, a.Format()); d != "" {
		t.Errorf("mismatch (-want +got):\n%s", d)
	}
	a.Stages[0].Units = 2
	a.Depth = 18
	if got := a.Format(); !strings.Contains(got, "    depth   18\n") || !strings.Contains(got, "stages  2x16 3x32/2 3x64/2\n") {
		t.Errorf("counted stages are not listed:\n%s", got)
	}
}

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{
		1e-5: "1e-5", 0.1: "0.1", -6: "-6", 0: "0", 1e21: "1e21", 2.5e-300: "2.5e-300", 123456789: "1.23456789e8",
	} {
		if got := formatNumber(v); got != want {
			t.Errorf("formatNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestIsNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-6": true, "+6": true, "1.": true, ".5": true, "1.5e-3": true, "1E+3": true, "1e3": true,
		"": false, "-": false, ".": false, "e3": false, "1e": false, "1e+": false, "inf": false, "NaN": false,
		"0x10": false, "1_000": false, "1.2.3": false, "--1": false, "1e3.5": false,
	} {
		if got := isNumber(s); got != want {
			t.Errorf("isNumber(%q) = %v, want %v", s, got, want)
		}
	}
}
